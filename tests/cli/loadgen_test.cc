#include "cli/loadgen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/feed_server.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

constexpr char kChildBundleVar[] = "FEEDRANK_LOADGEN_CHILD_BUNDLE";
constexpr char kChildPortFileVar[] = "FEEDRANK_LOADGEN_CHILD_PORT_FILE";

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteSmallBundle(testing::SmallSynth(3000, 100), dir_.Sub("bundle"));
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.bundle_dir = dir_.Sub("bundle");
    auto server = FeedServer::Start(options);
    ASSERT_TRUE(server.ok());
    server_ = *std::move(server);
    ASSERT_TRUE(server_->Load().ok());
    auto bundle = server_->snapshots().Current()->bundle;
    for (int i = 0; i < 100; ++i) users_.push_back(bundle->catalog->user_id(i));
  }

  LoadgenOptions Options() const {
    LoadgenOptions o;
    o.target = absl::StrCat("127.0.0.1:", server_->port());
    o.users = users_;
    o.duration_s = 1;
    o.warmup_s = 0.2;
    o.concurrency = 4;
    return o;
  }

  testing::TempDir dir_;
  std::unique_ptr<FeedServer> server_;
  std::vector<uint64_t> users_;
};

int64_t Errors(const LoadgenReport& report) {
  int64_t n = 0;
  for (const auto& [code, count] : report.errors) n += count;
  return n;
}

TEST_F(LoadgenTest, ClosedLoopCountsEveryCall) {
  LoadgenOptions o = Options();
  o.requests = 200;
  o.duration_s = 30;
  auto report = RunLoadgen(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->ok, 200);
  EXPECT_TRUE(report->errors.empty());
  EXPECT_GT(report->qps, 0);
  EXPECT_LE(report->p50, report->p99);
  EXPECT_LE(report->p99, report->max);
  EXPECT_THAT(FormatReport(*report), ::testing::HasSubstr("p99.9"));
  EXPECT_THAT(ReportJson(*report), ::testing::HasSubstr("\"ok\":200"));
}

TEST_F(LoadgenTest, IntervalsCoverTheWholeRunAndCountEveryCall) {
  LoadgenOptions o = Options();
  o.warmup_s = 0;
  o.duration_s = 1.2;
  o.interval_s = 0.25;
  std::vector<LoadgenInterval> seen;
  o.on_interval = [&](const LoadgenInterval& i) { seen.push_back(i); };
  auto report = RunLoadgen(o);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(seen.size(), report->intervals.size());
  ASSERT_GE(seen.size(), 4u);
  int64_t ok = 0;
  double last_end = 0;
  for (const LoadgenInterval& i : report->intervals) {
    ok += i.ok;
    EXPECT_GT(i.end_s, last_end);
    last_end = i.end_s;
    EXPECT_EQ(i.errors, 0);
    if (i.ok > 0) {
      EXPECT_LE(i.p50, i.p99);
      EXPECT_LE(i.p99, i.max);
    }
  }
  // Without a warm-up every call is measured, and each is in one interval.
  EXPECT_EQ(ok, report->ok);
  EXPECT_NEAR(report->intervals[0].end_s, 0.25, 0.2);
  EXPECT_THAT(FormatInterval(report->intervals[0], true), HasSubstr("\"p99_ms\":"));
  EXPECT_THAT(FormatInterval(report->intervals[0], false), HasSubstr("p99"));
}

TEST(LoadgenUpsertTest, UpsertIdsBoundTheLiveCatalogue) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(1000, 50, "flat"), dir.Sub("bundle"));
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.admin_address = "127.0.0.1:0";
  options.bundle_dir = dir.Sub("bundle");
  options.live.wal_dir = dir.Sub("wal");
  options.live.sync = WalSync::kNever;
  auto server = FeedServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Load().ok());
  LoadgenOptions o;
  o.target = absl::StrCat("127.0.0.1:", (*server)->port());
  o.admin_target = absl::StrCat("127.0.0.1:", (*server)->admin_port());
  o.duration_s = 1;
  o.warmup_s = 0;
  o.concurrency = 2;
  o.upserts_per_second = 400;
  o.upsert_batch = 10;
  o.upsert_dim = 32;
  o.upsert_ids = 25;
  auto report = RunLoadgen(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(report->upserted, 100);
  EXPECT_EQ(report->upsert_errors, 0);
  v1::GetStatusResponse status;
  ASSERT_TRUE((*server)->GetStatus(&status).ok());
  // Every batch after the first few replaced earlier videos.
  EXPECT_EQ(status.delta_videos(), 25u);
  (*server)->Shutdown();
}

TEST_F(LoadgenTest, ManyShortRunsEndCleanly) {
  // Exercises the end of a run many times: a completion racing the run's
  // return once used the driver after it was gone and hung the process.
  LoadgenOptions o = Options();
  o.requests = 10;
  o.warmup_s = 0;
  o.concurrency = 8;
  for (int i = 0; i < 40; ++i) {
    auto report = RunLoadgen(o);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->ok + Errors(*report), 10);
  }
}

TEST_F(LoadgenTest, OpenLoopCountsErrorsByCode) {
  LoadgenOptions o = Options();
  o.qps = 200;
  o.count = 0;  // INVALID_ARGUMENT for every call
  auto report = RunLoadgen(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->ok, 0);
  ASSERT_EQ(report->errors.count("INVALID_ARGUMENT"), 1u);
  EXPECT_GT(report->errors.at("INVALID_ARGUMENT"), 50);
}

// The server of LoadgenAloneTest, in a child process: this binary run again
// with --gtest_filter=LoadgenChildServer.*. Serves the bundle named by
// $FEEDRANK_LOADGEN_CHILD_BUNDLE, writes its port to
// $FEEDRANK_LOADGEN_CHILD_PORT_FILE and stops when its stdin closes (so also
// when the parent dies). Skipped in any other run.
TEST(LoadgenChildServer, ServeUntilStdinCloses) {
  const char* bundle = std::getenv(kChildBundleVar);
  const char* port_file = std::getenv(kChildPortFileVar);
  if (bundle == nullptr || port_file == nullptr) {
    GTEST_SKIP() << "runs only as the server process of LoadgenAloneTest";
  }
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.bundle_dir = bundle;
  auto server = FeedServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Load().ok());
  const std::string tmp = absl::StrCat(port_file, ".tmp");
  testing::WriteFile(tmp, absl::StrCat((*server)->port()));
  ASSERT_EQ(std::rename(tmp.c_str(), port_file), 0);
  char byte;
  while (read(STDIN_FILENO, &byte, 1) > 0) {
  }
  (*server)->Shutdown();
}

// RunLoadgen as the only gRPC user of its process, as in `feedrank loadgen`:
// the server runs in a child process (LoadgenChildServer).
class LoadgenAloneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteSmallBundle(testing::SmallSynth(3000, 100), dir_.Sub("bundle"));
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    ASSERT_GT(n, 0);
    exe[n] = '\0';
    // The child's environment: ours, with its two variables and without
    // gtest's sharding and output settings (which would hide or clobber it).
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const absl::string_view var = *e;
      if (!absl::StartsWith(var, "GTEST_")) env.emplace_back(var);
    }
    env.push_back(absl::StrCat(kChildBundleVar, "=", dir_.Sub("bundle")));
    env.push_back(absl::StrCat(kChildPortFileVar, "=", dir_.Sub("port")));
    std::vector<char*> envp;
    for (std::string& var : env) envp.push_back(var.data());
    envp.push_back(nullptr);
    std::string arg0 = exe, arg1 = "--gtest_filter=LoadgenChildServer.*";
    char* argv[] = {arg0.data(), arg1.data(), nullptr};

    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
    stdin_ = pipe_fds[1];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[0], STDIN_FILENO);
    const std::string log = dir_.Sub("server.log");
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int spawned = posix_spawn(&child_, exe, &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[0]);
    ASSERT_EQ(spawned, 0) << std::strerror(spawned);

    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (!std::filesystem::exists(dir_.Sub("port")) && absl::Now() < give_up) {
      int status;
      if (waitpid(child_, &status, WNOHANG) == child_) {
        child_ = 0;
        FAIL() << "server exited; its log:\n" << testing::ReadFile(log);
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_TRUE(std::filesystem::exists(dir_.Sub("port"))) << "no server; its log:\n"
                                                           << testing::ReadFile(log);
    target_ = absl::StrCat("127.0.0.1:", testing::ReadFile(dir_.Sub("port")));
  }

  void TearDown() override {
    if (stdin_ >= 0) close(stdin_);  // the child's cue to stop
    if (child_ <= 0) return;
    int status = 0;
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (waitpid(child_, &status, WNOHANG) == 0) {
      if (absl::Now() > give_up) {
        ADD_FAILURE() << "server did not stop; killing it";
        kill(child_, SIGKILL);
        waitpid(child_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "server: " << testing::ReadFile(dir_.Sub("server.log"));
  }

  testing::TempDir dir_;
  int stdin_ = -1;
  pid_t child_ = 0;
  std::string target_;
};

TEST_F(LoadgenAloneTest, ShortRunsWithTightDeadlinesEndCleanly) {
  // Ends many runs while calls are still completing: deadlines expiring on
  // gRPC's timer thread, calls the server refuses at once, the open-loop cap.
  // The last completion once destroyed the stub and the channel on a gRPC
  // thread, inside gRPC's completion processing; with no other gRPC user in
  // the process that also shut gRPC down from there: a double free or a
  // crash that an ASan build of this test hit within a few dozen runs. (A
  // release build may only corrupt the heap silently.)
  const absl::Time give_up = absl::Now() + absl::Seconds(6);
  int runs = 0;
  for (; runs < 60 && absl::Now() < give_up; ++runs) {
    LoadgenOptions o;
    o.target = target_;
    o.warmup_s = 0;
    o.concurrency = 64;
    o.deadline_ms = 1 + runs % 5;
    if (runs % 3 == 1) o.count = 0;  // refused at once
    if (runs % 4 == 3) {
      o.requests = 50;  // closed loop: exactly 50 calls
      o.duration_s = 30;
    } else {
      // Calls n = 0..99 are due at n / 2000 s < 0.05 s: exactly 100 arrivals,
      // each answered, failed or counted as CLIENT_OVERFLOW.
      o.qps = 2000;
      o.duration_s = 0.05;
    }
    auto report = RunLoadgen(o);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->ok + Errors(*report), o.qps > 0 ? 100 : 50)
        << "run " << runs << ": " << FormatReport(*report);
  }
  EXPECT_GE(runs, 20);
}

// A loopback port that refuses connections: bound, so that nothing else can
// take it, but not listening.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
      ADD_FAILURE() << "no loopback port: " << std::strerror(errno);
    }
    port_ = ntohs(address.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) close(fd_);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;

  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(LoadgenTest, RefusesBadOptionsAndUnreachableTargets) {
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  const struct {
    const char* field;
    std::function<void(LoadgenOptions*)> set;
  } kBad[] = {
      {"target", [](LoadgenOptions* o) { o->target = ""; }},
      {"concurrency", [](LoadgenOptions* o) { o->concurrency = 0; }},
      {"concurrency", [](LoadgenOptions* o) { o->concurrency = 100001; }},
      {"qps", [](LoadgenOptions* o) { o->qps = -1; }},
      {"qps", [&](LoadgenOptions* o) { o->qps = kNaN; }},
      {"qps", [](LoadgenOptions* o) { o->qps = 1e-6; }},
      {"qps", [](LoadgenOptions* o) { o->qps = 1e9; }},
      {"requests", [](LoadgenOptions* o) { o->requests = -1; }},
      {"duration_s", [](LoadgenOptions* o) { o->duration_s = -1; }},
      {"duration_s", [&](LoadgenOptions* o) { o->duration_s = kNaN; }},
      {"duration_s",
       [](LoadgenOptions* o) {
         o->duration_s = std::numeric_limits<double>::infinity();
       }},
      {"duration_s",
       [](LoadgenOptions* o) {
         o->duration_s = 0;
         o->requests = 0;
       }},
      {"warmup_s", [](LoadgenOptions* o) { o->warmup_s = -0.5; }},
      {"warmup_s", [&](LoadgenOptions* o) { o->warmup_s = kNaN; }},
      {"warmup_s", [](LoadgenOptions* o) { o->warmup_s = 1e7; }},
      {"count", [](LoadgenOptions* o) { o->count = -1; }},
      {"count", [](LoadgenOptions* o) { o->count = 1000001; }},
      {"exclude", [](LoadgenOptions* o) { o->exclude = -1; }},
      {"exclude", [](LoadgenOptions* o) { o->exclude = 1000001; }},
      {"deadline_ms", [](LoadgenOptions* o) { o->deadline_ms = 0; }},
      {"deadline_ms", [](LoadgenOptions* o) { o->deadline_ms = 3600001; }},
      {"cold_fraction", [](LoadgenOptions* o) { o->cold_fraction = -0.1; }},
      {"cold_fraction", [](LoadgenOptions* o) { o->cold_fraction = 1.5; }},
      {"cold_fraction", [&](LoadgenOptions* o) { o->cold_fraction = kNaN; }},
      {"serving_timeout_s", [](LoadgenOptions* o) { o->serving_timeout_s = 0; }},
      {"serving_timeout_s", [&](LoadgenOptions* o) { o->serving_timeout_s = kNaN; }},
      {"serving_timeout_s", [](LoadgenOptions* o) { o->serving_timeout_s = 1e7; }},
      {"interval_s", [](LoadgenOptions* o) { o->interval_s = 0.01; }},
      {"interval_s", [&](LoadgenOptions* o) { o->interval_s = kNaN; }},
      {"upsert_ids", [](LoadgenOptions* o) { o->upsert_ids = -1; }},
      {"upsert_ids", [](LoadgenOptions* o) { o->upsert_ids = 1000000001; }},
      {"interval_s", [](LoadgenOptions* o) { o->interval_s = 2e6; }},
  };
  for (const auto& bad : kBad) {
    LoadgenOptions o = Options();
    bad.set(&o);
    const absl::Status status = RunLoadgen(o).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << bad.field << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(bad.field));
  }

  // The edges are fine: count 0 is sent (and refused by the server).
  LoadgenOptions edges = Options();
  edges.requests = 5;
  edges.duration_s = 0;
  edges.warmup_s = 0;
  edges.count = 0;
  edges.cold_fraction = 1;
  auto report = RunLoadgen(edges);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->errors["INVALID_ARGUMENT"], 5);

  // Nothing listens: Unavailable once serving_timeout_s has passed.
  RefusingPort refusing;
  LoadgenOptions o = Options();
  o.target = absl::StrCat("127.0.0.1:", refusing.port());
  o.serving_timeout_s = 0.3;
  const absl::Time start = absl::Now();
  const absl::Status status = RunLoadgen(o).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("not SERVING"));
  EXPECT_GE(absl::Now() - start, absl::Seconds(0.3));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace feedrank

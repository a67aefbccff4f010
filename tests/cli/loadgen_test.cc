#include "cli/loadgen.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>

#include "server/feed_server.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

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

TEST_F(LoadgenTest, ShortRunsWithTightDeadlinesEndCleanly) {
  // Ends many runs while calls are still completing: deadlines expiring on
  // gRPC's timer thread, calls the server refuses at once, the open-loop cap.
  // The last completion once destroyed the stub and the channel on a gRPC
  // thread, inside gRPC's completion processing: a double free that an ASan
  // build of this test reported in about one run in ten (a release build may
  // only corrupt the heap silently).
  const absl::Time give_up = absl::Now() + absl::Seconds(6);
  int runs = 0;
  for (; runs < 60 && absl::Now() < give_up; ++runs) {
    LoadgenOptions o = Options();
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
      {"duration_s", [](LoadgenOptions* o) {
         o->duration_s = std::numeric_limits<double>::infinity();
       }},
      {"duration_s", [](LoadgenOptions* o) {
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
  };
  for (const auto& bad : kBad) {
    LoadgenOptions o = Options();
    bad.set(&o);
    const absl::Status status = RunLoadgen(o).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad.field << ": " << status;
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

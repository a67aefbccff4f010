// The `feedrank` binary as a user runs it, as real processes.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "cli/client.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

TEST(ProcessTest, AFifoInABundleFailsServeAndBuildAtOnce) {
  // A FIFO with no writer used to block `serve` and `build` forever, even
  // against SIGTERM (the signals were blocked until the load ended).
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  const std::string ids = BundlePath(dir.Sub("bundle"), kVideoIdsFile);
  ASSERT_EQ(::unlink(ids.c_str()), 0);
  ASSERT_EQ(::mkfifo(ids.c_str(), 0644), 0);
  std::string output;
  const auto start = std::chrono::steady_clock::now();
  const int serve = testing::RunProcess({testing::FeedrankBinary(), "serve", "--bundle",
                                         dir.Sub("bundle"), "--address", "127.0.0.1:0"},
                                        20, &output);
  EXPECT_NE(serve, -1) << "serve hung on a FIFO";
  EXPECT_NE(serve, 0);
  EXPECT_THAT(output, HasSubstr("not a regular file (a FIFO)"));
  const int build = testing::RunProcess({testing::FeedrankBinary(), "build", "--from",
                                         dir.Sub("bundle"), "--out", dir.Sub("out")},
                                        20, &output);
  EXPECT_NE(build, -1) << "build hung on a FIFO";
  EXPECT_NE(build, 0);
  EXPECT_THAT(output, HasSubstr("not a regular file"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

TEST(ProcessTest, BuildRefusesAnExistingOutputBeforeBuilding) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  testing::WriteFile(dir.Sub("out"), "");
  std::string output;
  const int code = testing::RunProcess({testing::FeedrankBinary(), "build", "--from",
                                        dir.Sub("bundle"), "--out", dir.Sub("out")},
                                       20, &output);
  EXPECT_NE(code, 0);
  EXPECT_THAT(output, HasSubstr("already exists"));
  EXPECT_THAT(output, ::testing::Not(HasSubstr("build: index")));
}

TEST(ProcessTest, SigtermStopsAServingProcess) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string bin = testing::FeedrankBinary();
    const std::string bundle = dir.Sub("bundle");
    ::execl(bin.c_str(), bin.c_str(), "serve", "--bundle", bundle.c_str(), "--address",
            "127.0.0.1:0", "--drain-grace", "200ms", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // -1: it did not stop on SIGTERM within 20 s (and was killed).
  EXPECT_EQ(testing::StopProcess(pid), 0);
}

TEST(ProcessTest, SigtermDrainsEvenWhenAThreadStartedBeforeMainTakesIt) {
  // A thread started by a library before main (OpenBLAS's pool) has no
  // signal mask from serve; with the library preloaded, one of several
  // SIGTERMs sent to the process lands on it. Each run must exit 0 through
  // the drain, never die of the signal.
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  for (int run = 0; run < 3; ++run) {
    const std::string log = dir.Sub(absl::StrCat("log", run));
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("LD_PRELOAD", EARLY_THREAD_PRELOAD, 1);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      const std::string bin = testing::FeedrankBinary();
      const std::string bundle = dir.Sub("bundle");
      ::execl(bin.c_str(), bin.c_str(), "serve", "--bundle", bundle.c_str(), "--address",
              "127.0.0.1:0", "--drain-grace", "0s", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ASSERT_GT(testing::WaitForListeningPort(log, 20), 0) << testing::ReadFile(log);
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << "\n"
                                   << testing::ReadFile(log);
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_THAT(testing::ReadFile(log), HasSubstr("received SIGTERM"));
  }
}

TEST(ProcessTest, SighupReloadsTheConfig) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  testing::WriteFile(dir.Sub("config"), "version: \"first\"\n");
  const std::string log = dir.Sub("log");
  const int pid = testing::StartProcess(
      {testing::FeedrankBinary(), "serve", "--bundle", dir.Sub("bundle"), "--config",
       dir.Sub("config"), "--address", "127.0.0.1:0", "--watch-interval", "0s",
       "--drain-grace", "0s"},
      log);
  const int port = testing::WaitForListeningPort(log, 20);
  ASSERT_GT(port, 0) << testing::ReadFile(log);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitForServing(channel, "feedrank.v1.FeedRanker", absl::Seconds(20)).ok());
  auto stub = v1::FeedRanker::NewStub(channel);
  auto version = [&] {
    v1::RankFeedRequest request;
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->RankFeed(&context, request, &response).ok());
    return response.config_version();
  };
  EXPECT_EQ(version(), "first");
  testing::WriteFile(dir.Sub("config"), "version: \"second\"\n");
  // Not watched (--watch-interval 0s): only SIGHUP reloads.
  EXPECT_EQ(version(), "first");
  ::kill(pid, SIGHUP);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string now;
  while ((now = version()) != "second" && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(now, "second");
  // A bad config on SIGHUP: refused, logged, still serving.
  testing::WriteFile(dir.Sub("config"), "version: \"third\" params { max_count: 0 }\n");
  ::kill(pid, SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(version(), "second");
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("refused"));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// Acknowledged live updates survive a SIGKILL (the update log, synced per
// batch by default), replayed over the bundle on restart.
TEST(ProcessTest, AcknowledgedUpdatesSurviveSigkill) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(2000, 100, "hnsw"), dir.Sub("bundle"));
  auto bundle = LoadBundle(dir.Sub("bundle"));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  const Catalog& catalog = *(*bundle)->catalog;
  std::string log = dir.Sub("log");
  auto start = [&] {
    const int pid = testing::StartProcess(
        {testing::FeedrankBinary(), "serve", "--bundle", dir.Sub("bundle"), "--address",
         "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--wal-dir", dir.Sub("wal"),
         "--watch-interval", "0s"},
        log);
    return pid;
  };
  int pid = start();
  int admin_port = testing::WaitForListeningPort(log, 20, "admin on ");
  ASSERT_GT(admin_port, 0) << testing::ReadFile(log);
  auto admin = v1::FeedAdmin::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", admin_port), grpc::InsecureChannelCredentials()));
  // Wait for the bundle (updates before it are FAILED_PRECONDITION).
  const int port = testing::WaitForListeningPort(log, 20);
  ASSERT_TRUE(WaitForServing(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                 grpc::InsecureChannelCredentials()),
                             "feedrank.v1.FeedRanker", absl::Seconds(20))
                  .ok())
      << testing::ReadFile(log);
  // 30 uploads, one per call, each aimed at a user; 10 takedowns.
  constexpr int kUploads = 30;
  for (int i = 0; i < kUploads; ++i) {
    v1::UpsertVideosRequest request;
    v1::VideoUpdate* v = request.add_videos();
    v->set_id(880000000 + i);
    const float* e = catalog.user_embedding(i);
    for (int d = 0; d < catalog.dim(); ++d) v->add_embedding(4 * e[d]);
    v->set_popularity(1e6f);
    v1::UpdateResponse ack;
    grpc::ClientContext context;
    ASSERT_TRUE(admin->UpsertVideos(&context, request, &ack).ok());
  }
  std::set<uint64_t> deleted;
  v1::DeleteVideosRequest takedown;
  for (int i = 0; i < 10; ++i) {
    takedown.add_ids(catalog.video_id(i));
    deleted.insert(catalog.video_id(i));
  }
  {
    v1::UpdateResponse ack;
    grpc::ClientContext context;
    ASSERT_TRUE(admin->DeleteVideos(&context, takedown, &ack).ok());
    EXPECT_EQ(ack.sequence(), uint64_t(kUploads + 1));
  }
  // Engagement events through the command line (a RecordEventsRequest), an
  // hour after the bundle's data time (earlier ones the bundle would hold).
  {
    std::ofstream events(dir.Sub("events.textproto"));
    for (int i = 10; i < 13; ++i) {
      events << "events { user_id: " << catalog.user_id(i)
             << " video_id: " << catalog.video_id(i)
             << " time_ms: 1793494800000 positive: true }\n";
    }
  }
  std::string out;
  ASSERT_EQ(testing::RunProcess({testing::FeedrankBinary(), "admin", "record-events",
                                 "--file", dir.Sub("events.textproto"), "--target",
                                 absl::StrCat("127.0.0.1:", admin_port)},
                                30, &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("acknowledged as update 32: 3 events recorded"));
  // Killed at once after the last acknowledgement.
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));

  log = dir.Sub("log2");  // the restart's own log
  pid = start();
  admin_port = testing::WaitForListeningPort(log, 20, "admin on ");
  const int port2 = testing::WaitForListeningPort(log, 20);
  ASSERT_GT(port2, 0);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port2),
                                     grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitForServing(channel, "feedrank.v1.FeedRanker", absl::Seconds(20)).ok());
  admin = v1::FeedAdmin::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", admin_port), grpc::InsecureChannelCredentials()));
  v1::GetStatusResponse after;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(admin->GetStatus(&context, v1::GetStatusRequest(), &after).ok());
  }
  EXPECT_EQ(after.recovered_records(), uint64_t(kUploads + 2));
  EXPECT_EQ(after.recovered_bytes_cut(), 0);
  EXPECT_EQ(after.delta_videos(), uint64_t(kUploads));
  EXPECT_EQ(after.tombstones(), 10u);
  EXPECT_EQ(after.events_recorded(), 3u);
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("replayed 32 records"));
  auto stub = v1::FeedRanker::NewStub(channel);
  for (int i = 0; i < kUploads; ++i) {
    v1::RankFeedRequest request;
    request.set_user_id(catalog.user_id(i));
    request.set_count(50);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->RankFeed(&context, request, &response).ok());
    bool found = false;
    for (const auto& item : response.items()) {
      found |= item.video_id() == 880000000u + i;
      EXPECT_EQ(deleted.count(item.video_id()), 0u);
    }
    EXPECT_TRUE(found) << "upload " << i << " lost";
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, &status, 0);
}

// Polls `path` (up to `timeout_s`) until it contains `text`.
bool WaitForText(const std::string& path, const std::string& text, double timeout_s) {
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(int64_t(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < until) {
    if (testing::ReadFile(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(ProcessTest, SigtermAndSigkillDuringABundleSwapUnderLoadLoseNothing) {
  // Version 1 is small; version 2 is large enough that its load takes a
  // while. The server serves 1 under load, is told (SIGHUP) to load 2, and
  // gets the signal while "loading bundle" is the last thing it said.
  testing::TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("root").c_str(), 0755), 0);
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("root/1"));
  std::string output;
  ASSERT_EQ(testing::RunProcess({testing::FeedrankBinary(), "synth", "--videos", "300000",
                                 "--users", "1000", "--index", "flat", "--version",
                                 "big-v2", "--out", dir.Sub("v2")},
                                300, &output),
            0)
      << output;
  for (const int signal : {SIGTERM, SIGKILL}) {
    SCOPED_TRACE(signal == SIGTERM ? "SIGTERM" : "SIGKILL");
    const std::string log = dir.Sub(absl::StrCat("serve-", signal, ".log"));
    auto serve = [&](const std::string& log_path) {
      return testing::StartProcess(
          {testing::FeedrankBinary(), "serve", "--bundle-root", dir.Sub("root"),
           "--address", "127.0.0.1:0", "--watch-interval", "0s", "--drain-grace", "0s"},
          log_path);
    };
    int pid = serve(log);
    int port = testing::WaitForListeningPort(log, 30);
    ASSERT_GT(port, 0) << testing::ReadFile(log);
    std::string target = absl::StrCat("127.0.0.1:", port);
    ASSERT_TRUE(
        WaitForServing(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()),
                       "feedrank.v1.FeedRanker", absl::Seconds(30))
            .ok())
        << testing::ReadFile(log);
    const std::string load_log = dir.Sub(absl::StrCat("loadgen-", signal, ".log"));
    const int loadgen = testing::StartProcess(
        {testing::FeedrankBinary(), "loadgen", "--target", target, "--bundle",
         dir.Sub("root/1"), "--concurrency", "4", "--duration", "60s"},
        load_log);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_EQ(::rename(dir.Sub("v2").c_str(), dir.Sub("root/2").c_str()), 0);
    ::kill(pid, SIGHUP);
    ASSERT_TRUE(WaitForText(log, "loading bundle " + dir.Sub("root/2"), 30))
        << testing::ReadFile(log);
    ::kill(pid, signal);
    const int code = testing::WaitForExit(pid, 20);
    const bool mid_load =
        testing::ReadFile(log).find("serving bundle big-v2") == std::string::npos;
    ::testing::Test::RecordProperty(
        signal == SIGTERM ? "sigterm_mid_load" : "sigkill_mid_load",
        mid_load ? "yes" : "no");
    if (signal == SIGTERM) {
      // A stop interrupts the load and drains: a clean exit, without waiting
      // for the load to finish (SIGHUP's reload once ran on the thread that
      // takes the signals, so a SIGTERM waited for the whole load).
      EXPECT_EQ(code, 0) << testing::ReadFile(log);
      EXPECT_TRUE(mid_load) << testing::ReadFile(log);
    } else {
      EXPECT_EQ(code, 128 + SIGKILL);
    }
    testing::StopProcess(loadgen);

    // Restarted, it serves the complete newest version: a load leaves
    // nothing behind that a restart could trip over.
    const std::string log2 = dir.Sub(absl::StrCat("restart-", signal, ".log"));
    pid = serve(log2);
    port = testing::WaitForListeningPort(log2, 30);
    ASSERT_GT(port, 0) << testing::ReadFile(log2);
    target = absl::StrCat("127.0.0.1:", port);
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    ASSERT_TRUE(WaitForServing(channel, "feedrank.v1.FeedRanker", absl::Seconds(60)).ok())
        << testing::ReadFile(log2);
    v1::RankFeedRequest request;
    request.set_user_id(1);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(
        v1::FeedRanker::NewStub(channel)->RankFeed(&context, request, &response).ok());
    EXPECT_EQ(response.bundle_version(), "big-v2");
    EXPECT_EQ(response.items_size(), 20);
    EXPECT_EQ(testing::StopProcess(pid), 0) << testing::ReadFile(log2);
    ASSERT_EQ(::rename(dir.Sub("root/2").c_str(), dir.Sub("v2").c_str()), 0);
  }
}

TEST(ProcessTest, ThePythonExampleClientGetsAFeed) {
  // Stubs from Debian's protoc 3.21 + grpc_python_plugin, then the example
  // client against a real server.
  if (::access("/usr/bin/python3", X_OK) != 0 ||
      ::access("/usr/bin/grpc_python_plugin", X_OK) != 0) {
    GTEST_SKIP()
        << "needs /usr/bin/python3 and protobuf-compiler-grpc (scripts/setup.sh)";
  }
  testing::TempDir dir;
  std::string output;
  ASSERT_EQ(
      testing::RunProcess(
          {std::string(FEEDRANK_SOURCE_DIR) + "/scripts/python-stubs.sh", dir.Sub("py")},
          60, &output),
      0)
      << output;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  const std::string log = dir.Sub("log");
  const int pid = testing::StartProcess(
      {testing::FeedrankBinary(), "serve", "--bundle", dir.Sub("bundle"), "--address",
       "127.0.0.1:0", "--drain-grace", "0s"},
      log);
  const int port = testing::WaitForListeningPort(log, 20);
  ASSERT_GT(port, 0) << testing::ReadFile(log);
  ::setenv("PYTHONPATH", dir.Sub("py").c_str(), 1);
  const int code = testing::RunProcess(
      {"/usr/bin/python3",
       std::string(FEEDRANK_SOURCE_DIR) + "/examples/python/rank_feed.py", "--target",
       absl::StrCat("127.0.0.1:", port), "--user", "12345", "--count", "7"},
      60, &output);
  ::unsetenv("PYTHONPATH");
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  ASSERT_EQ(code, 0) << output;
  EXPECT_THAT(output, HasSubstr("bundle synth-500-s11"));
  EXPECT_THAT(output, HasSubstr("cold_start True"));
  EXPECT_THAT(output, HasSubstr("  7  video "));
  EXPECT_THAT(output, HasSubstr("click="));
}

TEST(ProcessTest, FlagsAreCheckedAndExitCodesAreAsDocumented) {
  std::string output;
  const std::string bin = testing::FeedrankBinary();
  EXPECT_EQ(testing::RunProcess({bin, "--version"}, 10, &output), 0);
  EXPECT_THAT(output, HasSubstr("feedrank 0."));
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> bad = {
      {{"serve", "--bundle", "b", "--drain-grace", "nan"}, "not a duration"},
      {{"serve", "--bundle", "b", "--drain-timeout", "-5s"}, "outside"},
      {{"serve", "--bundle", "b", "--workers", "100000"}, "not in range"},
      {{"serve", "--bundle", "b", "--max-request-bytes", "-1"}, "not in range"},
      {{"serve", "--bundle", "b", "--max-request-bytes", "0"}, "not in range"},
      {{"serve", "--bundle", "b", "--address", "localhost"}, "no port"},
      {{"serve", "--bundle", "b", "--address", "localhost:70000"}, "[0, 65535]"},
      {{"serve"}, "exactly one of"},
      {{"serve", "--bundle", "b", "--no-such-flag"}, "no-such-flag"},
      {{"loadgen", "--target", "x:1", "--duration", "10"}, "not a duration"},
  };
  for (const Case& c : bad) {
    std::vector<std::string> argv = {bin};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    EXPECT_EQ(testing::RunProcess(argv, 10, &output), 2)
        << c.args.back() << ": " << output;
    EXPECT_THAT(output, HasSubstr(c.says));
  }
  // A bundle that does not exist: a run-time failure, exit 1.
  EXPECT_EQ(testing::RunProcess({bin, "serve", "--bundle", "/nonexistent/bundle",
                                 "--address", "127.0.0.1:0"},
                                20, &output),
            1);
  EXPECT_THAT(output, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace feedrank

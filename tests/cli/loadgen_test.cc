#include "cli/loadgen.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/feed_server.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

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

TEST_F(LoadgenTest, RefusesBadOptionsAndUnreachableTargets) {
  LoadgenOptions o = Options();
  o.concurrency = 0;
  EXPECT_EQ(RunLoadgen(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace feedrank

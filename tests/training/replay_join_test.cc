// JoinReplayLog (`feedrank replay-join`) on real files: a request log as the
// server writes it, a CSV outcome log and its mapping.
#include "training/replay_join.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "replay/replay_log.h"
#include "replay/request_log.h"
#include "tests/test_util.h"
#include "training/interaction_log.h"

namespace feedrank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kMapping[] = R"pb(
  user_column: "user"
  item_column: "video"
  time_column: "ts"
  play_time_column: "play_ms"
  duration_column: "dur_ms"
  objectives { name: "like" column: "liked" }
  objectives { name: "watch" kind: WATCH_RATIO }
  retrieval_objective: "watch"
)pb";

v1::ReplayRecord Request(uint64_t user, int64_t time_ms, const std::string& id) {
  v1::ReplayRecord r;
  r.mutable_request()->set_user_id(user);
  r.mutable_request()->set_request_id(id);
  r.mutable_request()->add_exclude_ids(7);
  r.set_time_ms(time_ms);
  r.mutable_served()->set_bundle_version("b1");
  r.mutable_served()->add_video_ids(11);
  r.mutable_served()->add_video_ids(12);
  return r;
}

void WriteLog(const std::string& path, const std::vector<v1::ReplayRecord>& records) {
  auto writer = ReplayLogWriter::Open(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (const v1::ReplayRecord& r : records) ASSERT_TRUE((*writer)->Append(r).ok());
  ASSERT_TRUE((*writer)->Close().ok());
}

class JoinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mapping = ParseLogMapping(kMapping);
    ASSERT_TRUE(mapping.ok()) << mapping.status();
    options_.mapping = *mapping;
    options_.window = absl::Seconds(10);
    options_.outcomes_path = dir_.Sub("outcomes.csv");
    options_.out_path = dir_.Sub("replay.log");
  }

  // Requests: r0 user 1 at 1000, r1 user 2 at 2000, r2 user 1 at 5000.
  void WriteRequests(const std::string& path) {
    WriteLog(path,
             {Request(1, 1000, "r0"), Request(2, 2000, "r1"), Request(1, 5000, "r2")});
  }

  // Rows out of time order; each video id says where it should go.
  void WriteOutcomes() {
    testing::WriteFile(options_.outcomes_path,
                       "user,video,ts,liked,play_ms,dur_ms\n"
                       "1,113,5000,0,1000,2000\n"  // r2: at the next request
                       "1,101,1000,1,4000,2000\n"  // r0: at its time
                       "1,102,4999,0,500,0\n"      // r0: unknown duration
                       "1,900,500,1,1,1\n"         // before any request
                       "2,901,12000,1,1,1\n"       // r1's window is [2000, 12000)
                       "2,121,11999,1,1,4\n"       // r1
                       "3,902,3000,1,1,1\n"        // no request of user 3
                       "1,114,14999,1,1,1\n"       // r2, last ms of its window
                       "1,103,4999,1,1,1\n");      // r0, tie: after 102
  }

  testing::TempDir dir_;
  ReplayJoinOptions options_;
};

TEST_F(JoinTest, EachOutcomeJoinsTheUsersLatestRequestWithinTheWindow) {
  for (const std::string out : {"replay.log", "replay.jsonl"}) {
    SCOPED_TRACE(out);
    WriteRequests(dir_.Sub("requests.log"));
    WriteOutcomes();
    options_.request_logs = {dir_.Sub("requests.log")};
    options_.out_path = dir_.Sub(out);
    auto stats = JoinReplayLog(options_);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->requests, 3);
    EXPECT_EQ(stats->requests_with_outcomes, 3);
    EXPECT_EQ(stats->outcomes, 9);
    EXPECT_EQ(stats->outcomes_joined, 6);
    EXPECT_EQ(stats->outcomes_unmatched, 3);
    EXPECT_EQ(stats->skipped_records, 0);

    auto records = ReadReplayLog(options_.out_path, BadRecordPolicy::kFail);
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), 3u);
    auto videos = [](const v1::ReplayRecord& r) {
      std::vector<uint64_t> v;
      for (const v1::ReplayOutcome& o : r.outcomes()) v.push_back(o.video_id());
      return v;
    };
    const auto& r = *records;
    // Input order; each request as it was, with the outcomes added.
    EXPECT_EQ(r[0].request().request_id(), "r0");
    EXPECT_EQ(r[1].request().request_id(), "r1");
    EXPECT_EQ(r[2].request().request_id(), "r2");
    EXPECT_THAT(r[0].request().exclude_ids(), ElementsAre(7u));
    EXPECT_THAT(r[0].served().video_ids(), ElementsAre(11u, 12u));
    EXPECT_EQ(r[0].served().bundle_version(), "b1");
    EXPECT_EQ(r[2].time_ms(), 5000);
    EXPECT_THAT(videos(r[0]), ElementsAre(101u, 102u, 103u));
    EXPECT_THAT(videos(r[1]), ElementsAre(121u));
    EXPECT_THAT(videos(r[2]), ElementsAre(113u, 114u));
    for (const v1::ReplayRecord& record : r) {
      EXPECT_THAT(record.objectives(), ElementsAre("like", "watch"));
      EXPECT_EQ(record.positive_objective(), "watch");
    }
    const v1::ReplayOutcome& first = r[0].outcomes(0);
    EXPECT_EQ(first.time_ms(), 1000);
    EXPECT_THAT(first.labels(), ElementsAre(1.f, 1.f));  // 4000 / 2000, clipped
    const v1::ReplayOutcome& unknown = r[0].outcomes(1);
    EXPECT_EQ(unknown.labels(0), 0.f);
    EXPECT_TRUE(std::isnan(unknown.labels(1)));
    EXPECT_THAT(r[1].outcomes(0).labels(), ElementsAre(1.f, 0.25f));
  }
}

TEST_F(JoinTest, ARotatedLogIsJoinedAcrossItsFiles) {
  // r0 in the older file, r2 (the user's next request) in the newer one: an
  // outcome after r2 goes to r2, not to r0.
  const std::string path = dir_.Sub("requests.log");
  WriteLog(RequestLogFilePath(path, 1), {Request(1, 1000, "r0"), Request(2, 2000, "r1")});
  WriteLog(path, {Request(1, 5000, "r2")});
  WriteOutcomes();
  auto files = RequestLogFiles(path, *FileSystem::Real());
  ASSERT_TRUE(files.ok());
  options_.request_logs = *files;
  auto stats = JoinReplayLog(options_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->requests, 3);
  EXPECT_EQ(stats->outcomes_joined, 6);
  auto records = ReadReplayLog(options_.out_path, BadRecordPolicy::kFail);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].outcomes_size(), 3);
  EXPECT_EQ((*records)[2].request().request_id(), "r2");
  EXPECT_EQ((*records)[2].outcomes_size(), 2);
}

TEST_F(JoinTest, ABadRequestRecordFailsOrIsSkippedAsAskedAndFailureWritesNothing) {
  const std::string path = dir_.Sub("requests.log");
  WriteRequests(path);
  // A length prefix promising more bytes than follow: a truncated record.
  testing::WriteFile(path, testing::ReadFile(path) + std::string("\x20\x08\x01", 3));
  WriteOutcomes();
  testing::WriteFile(options_.out_path, "earlier output");
  options_.request_logs = {path};
  auto failed = JoinReplayLog(options_);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kDataLoss) << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr(path));
  EXPECT_EQ(testing::ReadFile(options_.out_path), "earlier output");

  options_.on_bad_record = BadRecordPolicy::kSkip;
  auto skipped = JoinReplayLog(options_);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_EQ(skipped->requests, 3);
  EXPECT_EQ(skipped->skipped_records, 1);
  ASSERT_EQ(skipped->problems.size(), 1u);
  EXPECT_THAT(skipped->problems[0], HasSubstr(path));
  auto records = ReadReplayLog(options_.out_path, BadRecordPolicy::kFail);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 3u);
}

TEST_F(JoinTest, BadInputIsRefusedByNameAndWritesNothing) {
  const std::string path = dir_.Sub("requests.log");
  WriteRequests(path);
  options_.request_logs = {path};
  auto refused = [&](const std::string& what) {
    auto stats = JoinReplayLog(options_);
    EXPECT_FALSE(stats.ok()) << what;
    EXPECT_FALSE(FileSystem::Real()->Exists(options_.out_path).value()) << what;
    return stats.status();
  };
  // A column the mapping names is not in the header.
  testing::WriteFile(options_.outcomes_path, "user,video,ts,play_ms,dur_ms\n1,2,3,4,5\n");
  absl::Status s = refused("no liked column");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'liked' is not a column"));
  // A bad value, named with its line.
  testing::WriteFile(options_.outcomes_path,
                     "user,video,ts,liked,play_ms,dur_ms\n1,x,3,1,4,5\n");
  s = refused("bad id");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("outcomes.csv:2: column 'video'"));
  WriteOutcomes();
  options_.outcomes_path = dir_.Sub("missing.csv");
  EXPECT_EQ(refused("missing outcomes").code(), absl::StatusCode::kNotFound);
  options_.outcomes_path = dir_.Sub("outcomes.csv");
  options_.request_logs = {dir_.Sub("missing.log")};
  EXPECT_EQ(refused("missing requests").code(), absl::StatusCode::kNotFound);
  options_.request_logs = {};
  EXPECT_THAT(refused("no requests").message(), HasSubstr("--requests"));
  options_.request_logs = {path};
  options_.window = absl::ZeroDuration();
  EXPECT_THAT(refused("zero window").message(), HasSubstr("--window: 0 is outside"));
  options_.window = absl::Minutes(30);
  options_.out_path = path;
  EXPECT_THAT(JoinReplayLog(options_).status().message(),
              HasSubstr("is also a --requests input"));
  auto requests = ReadReplayLog(path, BadRecordPolicy::kFail);
  ASSERT_TRUE(requests.ok());
  EXPECT_EQ(requests->size(), 3u);
}

}  // namespace
}  // namespace feedrank

// `feedrank serve --request-log ...` then `feedrank replay-join` as
// processes: the flags, the rotated files, the counts on stderr and the exit
// codes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/client.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "replay/replay_log.h"
#include "replay/request_log.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

constexpr char kMapping[] = R"pb(
  user_column: "user_id"
  item_column: "video_id"
  time_column: "time_ms"
  objectives { name: "click" column: "click" }
)pb";

TEST(ReplayJoinProcessTest, ServeLogsRequestsAndReplayJoinAddsTheirOutcomes) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(800, 30, "flat"), dir.Sub("bundle"));
  const std::string log_path = dir.Sub("requests.log");
  const std::string server_log = dir.Sub("server.log");
  const int pid = testing::StartProcess(
      {testing::FeedrankBinary(), "serve", "--bundle", dir.Sub("bundle"), "--address",
       "127.0.0.1:0", "--drain-grace", "0s", "--request-log", log_path,
       "--request-log-sample", "1", "--request-log-max-bytes", "4KiB",
       "--request-log-keep", "100"},
      server_log);
  const int port = testing::WaitForListeningPort(server_log, 20);
  ASSERT_GT(port, 0) << testing::ReadFile(server_log);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitForServing(channel, "feedrank.v1.FeedRanker", absl::Seconds(20)).ok());
  auto stub = v1::FeedRanker::NewStub(channel);
  constexpr int kCalls = 40;
  for (int i = 0; i < kCalls; ++i) {
    v1::RankFeedRequest request;
    request.set_user_id(1000 + i);  // one request per user
    request.set_request_id(absl::StrCat("q", i));
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->RankFeed(&context, request, &response).ok());
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << testing::ReadFile(server_log);
  EXPECT_THAT(testing::ReadFile(server_log), HasSubstr("40 records written, 0 dropped"));

  auto files = RequestLogFiles(log_path, *FileSystem::Real());
  ASSERT_TRUE(files.ok());
  ASSERT_GT(files->size(), 1u) << "4KiB files: the log rotated";
  // The outcomes: the first video of every page clicked a second later, and
  // one click of a user who made no request.
  std::string csv = "user_id,video_id,time_ms,click\n";
  for (const std::string& file : *files) {
    auto records = ReadReplayLog(file, BadRecordPolicy::kFail);
    ASSERT_TRUE(records.ok()) << records.status();
    for (const v1::ReplayRecord& r : *records) {
      ASSERT_GT(r.served().video_ids_size(), 0);
      absl::StrAppend(&csv, r.request().user_id(), ",", r.served().video_ids(0), ",",
                      r.time_ms() + 1000, ",1\n");
    }
  }
  absl::StrAppend(&csv, "5,1,1800000000000,1\n");
  testing::WriteFile(dir.Sub("outcomes.csv"), csv);
  testing::WriteFile(dir.Sub("mapping.textproto"), kMapping);

  std::vector<std::string> join = {testing::FeedrankBinary(),
                                   "replay-join",
                                   "--requests",
                                   absl::StrJoin(*files, ","),
                                   "--outcomes",
                                   dir.Sub("outcomes.csv"),
                                   "--mapping",
                                   dir.Sub("mapping.textproto"),
                                   "--window",
                                   "30m",
                                   "--out",
                                   dir.Sub("replay.jsonl")};
  std::string output;
  ASSERT_EQ(testing::RunProcess(join, 60, &output), 0) << output;
  EXPECT_THAT(output, HasSubstr("40 requests (40 with outcomes, 0 bad records skipped); "
                                "41 outcomes: 40 joined, 1 matched no request"));
  auto joined = ReadReplayLog(dir.Sub("replay.jsonl"), BadRecordPolicy::kFail);
  ASSERT_TRUE(joined.ok()) << joined.status();
  ASSERT_EQ(joined->size(), size_t(kCalls));
  for (int i = 0; i < kCalls; ++i) {
    const v1::ReplayRecord& r = (*joined)[i];
    EXPECT_EQ(r.request().request_id(), absl::StrCat("q", i));
    EXPECT_EQ(r.positive_objective(), "click");
    ASSERT_EQ(r.outcomes_size(), 1);
    EXPECT_EQ(r.outcomes(0).video_id(), r.served().video_ids(0));
  }

  // A torn record at the end of the newest file: refused, or skipped.
  testing::WriteFile(log_path, testing::ReadFile(log_path) + "\x7f");
  join.back() = dir.Sub("replay2.log");
  EXPECT_EQ(testing::RunProcess(join, 60, &output), 1) << output;
  EXPECT_THAT(output, HasSubstr(log_path));
  EXPECT_FALSE(FileSystem::Real()->Exists(dir.Sub("replay2.log")).value());
  join.push_back("--on-bad-record=skip");
  EXPECT_EQ(testing::RunProcess(join, 60, &output), 0) << output;
  EXPECT_THAT(output, HasSubstr("1 bad records skipped"));
  EXPECT_THAT(output, HasSubstr("skipped: " + log_path));

  // A column the mapping names that the log lacks: usage error (2), by name.
  testing::WriteFile(
      dir.Sub("mapping.textproto"),
      absl::StrCat(kMapping, "objectives { name: \"like\" column: \"liked\" }"));
  EXPECT_EQ(testing::RunProcess(join, 60, &output), 2) << output;
  EXPECT_THAT(output, HasSubstr("'liked' is not a column"));
}

}  // namespace
}  // namespace feedrank

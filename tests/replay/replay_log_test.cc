#include "replay/replay_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

v1::ReplayRecord Record(uint64_t user, int outcomes) {
  v1::ReplayRecord r;
  r.mutable_request()->set_user_id(user);
  r.mutable_request()->set_request_id("r" + std::to_string(user));
  r.mutable_request()->add_exclude_ids(7);
  r.set_time_ms(1000 + user);
  r.add_objectives("click");
  r.add_objectives("like");
  r.set_positive_objective("like");
  for (int i = 0; i < outcomes; ++i) {
    v1::ReplayOutcome* o = r.add_outcomes();
    o->set_video_id(100 + i);
    o->set_time_ms(2000 + i);
    o->add_labels(1);
    o->add_labels(i == 0 ? std::nanf("") : 0.0f);
  }
  return r;
}

void WriteLog(const std::string& path, const std::vector<v1::ReplayRecord>& records) {
  auto writer = ReplayLogWriter::Open(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (const auto& r : records) ASSERT_TRUE((*writer)->Append(r).ok());
  ASSERT_TRUE((*writer)->Close().ok());
}

class ReplayLogTest : public ::testing::TestWithParam<const char*> {
 protected:
  std::string Path(const std::string& stem) { return dir_.Sub(stem + GetParam()); }
  testing::TempDir dir_;
};

TEST_P(ReplayLogTest, RecordsRoundTripInEitherFormat) {
  std::vector<v1::ReplayRecord> records;
  for (int i = 0; i < 300; ++i) records.push_back(Record(i, i % 4));
  const std::string path = Path("log");
  WriteLog(path, records);
  ReplayLogReadStats stats;
  auto read = ReadReplayLog(path, BadRecordPolicy::kFail, &stats);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    // NaN labels survive (JSON "NaN"), so compare the bytes.
    EXPECT_EQ((*read)[i].SerializeAsString(), records[i].SerializeAsString()) << i;
  }
  EXPECT_EQ(stats.records, 300);
  EXPECT_EQ(stats.skipped, 0);
}

TEST_P(ReplayLogTest, MismatchedLabelsAreABadRecordWithItsOffset) {
  std::vector<v1::ReplayRecord> records = {Record(1, 2), Record(2, 2), Record(3, 2)};
  records[1].mutable_outcomes(1)->add_labels(0.5);  // 3 labels, 2 objectives
  const std::string path = Path("labels");
  WriteLog(path, records);
  auto failed = ReadReplayLog(path, BadRecordPolicy::kFail);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(failed.status().message(), HasSubstr(path));
  EXPECT_THAT(failed.status().message(), HasSubstr("outcomes[1] has 3 labels"));
  // The second record starts where the first ends.
  const size_t second = std::string(GetParam()) == ".jsonl"
                            ? testing::ReadFile(path).find('\n') + 1
                            : records[0].ByteSizeLong() + 1;
  EXPECT_THAT(failed.status().message(),
              HasSubstr("bad record at byte " + std::to_string(second)));
  ReplayLogReadStats stats;
  auto skipped = ReadReplayLog(path, BadRecordPolicy::kSkip, &stats);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  ASSERT_EQ(skipped->size(), 2u);
  EXPECT_EQ((*skipped)[0].request().user_id(), 1u);
  EXPECT_EQ((*skipped)[1].request().user_id(), 3u);
  EXPECT_EQ(stats.skipped, 1);
  ASSERT_EQ(stats.problems.size(), 1u);
  EXPECT_THAT(stats.problems[0], HasSubstr("outcomes[1] has 3 labels"));
}

INSTANTIATE_TEST_SUITE_P(Formats, ReplayLogTest, ::testing::Values(".bin", ".jsonl"));

TEST(ReplayLogBinaryTest, ATruncatedRecordIsReportedAtItsOffset) {
  testing::TempDir dir;
  const std::string path = dir.Sub("log.bin");
  WriteLog(path, {Record(1, 3), Record(2, 3)});
  const std::string bytes = testing::ReadFile(path);
  const size_t first = Record(1, 3).ByteSizeLong() + 1;  // one-byte length prefix
  ASSERT_LT(first, 128u + 1);
  testing::WriteFile(path, bytes.substr(0, bytes.size() - 5));
  auto failed = ReadReplayLog(path, BadRecordPolicy::kFail);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(),
              HasSubstr("bad record at byte " + std::to_string(first) + ": truncated"));
  // Skipped: the first record is kept, the truncated one counted.
  ReplayLogReadStats stats;
  auto skipped = ReadReplayLog(path, BadRecordPolicy::kSkip, &stats);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_EQ(skipped->size(), 1u);
  EXPECT_EQ(stats.skipped, 1);
}

TEST(ReplayLogBinaryTest, CorruptBytesAreSkippedByTheirLength) {
  testing::TempDir dir;
  const std::string path = dir.Sub("log.bin");
  WriteLog(path, {Record(1, 1), Record(2, 1), Record(3, 1)});
  std::string bytes = testing::ReadFile(path);
  const size_t first = Record(1, 1).ByteSizeLong() + 1;
  // Field tag 0 is invalid protobuf: the second record's first byte.
  bytes[first + 1] = 0;
  testing::WriteFile(path, bytes);
  auto failed = ReadReplayLog(path, BadRecordPolicy::kFail);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(),
              HasSubstr("bad record at byte " + std::to_string(first)));
  EXPECT_THAT(failed.status().message(), HasSubstr("do not parse"));
  ReplayLogReadStats stats;
  auto skipped = ReadReplayLog(path, BadRecordPolicy::kSkip, &stats);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  ASSERT_EQ(skipped->size(), 2u);
  EXPECT_EQ((*skipped)[1].request().user_id(), 3u);
}

TEST(ReplayLogBinaryTest, AnImpossibleLengthStopsTheReadWithItsOffset) {
  testing::TempDir dir;
  const std::string path = dir.Sub("log.bin");
  WriteLog(path, {Record(1, 1)});
  std::string bytes = testing::ReadFile(path);
  const size_t first = bytes.size();
  bytes += std::string("\xff\xff\xff\xff\x7f", 5);  // ~34 GB
  bytes += "garbage";
  testing::WriteFile(path, bytes);
  auto failed = ReadReplayLog(path, BadRecordPolicy::kFail);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(
      failed.status().message(),
      HasSubstr("bad record at byte " + std::to_string(first) + ": length prefix"));
  ReplayLogReadStats stats;
  auto skipped = ReadReplayLog(path, BadRecordPolicy::kSkip, &stats);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(skipped->size(), 1u);
  EXPECT_EQ(stats.skipped, 1);
  EXPECT_THAT(stats.problems[0], HasSubstr("cannot be framed"));
}

TEST(ReplayLogJsonTest, UnknownFieldsAndBadJsonNameTheLine) {
  testing::TempDir dir;
  const std::string path = dir.Sub("log.jsonl");
  testing::WriteFile(path,
                     "{\"request\": {\"user_id\": \"1\"}, \"time_ms\": \"5\"}\n"
                     "\n"
                     "{\"request\": {\"user_id\": \"2\"}, \"tme_ms\": \"5\"}\n"
                     "{not json\n"
                     "{\"request\": {\"user_id\": \"4\"}}");  // no final newline
  auto failed = ReadReplayLog(path, BadRecordPolicy::kFail);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("(line 3)"));
  EXPECT_THAT(failed.status().message(), HasSubstr("tme_ms"));
  ReplayLogReadStats stats;
  auto skipped = ReadReplayLog(path, BadRecordPolicy::kSkip, &stats);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  ASSERT_EQ(skipped->size(), 2u);
  EXPECT_EQ((*skipped)[0].time_ms(), 5);
  EXPECT_EQ((*skipped)[1].request().user_id(), 4u);
  EXPECT_EQ(stats.skipped, 2);
  EXPECT_THAT(stats.problems[1], HasSubstr("(line 4)"));
}

TEST(ReplayLogTest, AMissingFileIsNotFound) {
  auto read = ReadReplayLog("/nonexistent/log.bin", BadRecordPolicy::kFail);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace feedrank

// The write-ahead log on real files, with faults injected through the file
// interface: torn and corrupt tails, fsync failures, a full disk with short
// writes, truncation after a compaction.
#include "base/wal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tests/test_env.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Reopened {
  std::unique_ptr<WriteAheadLog> log;
  std::vector<std::pair<uint64_t, std::string>> records;
  WalRecovery recovery;
};

Reopened Open(const WalOptions& options, FileSystem* fs = FileSystem::Real()) {
  Reopened out;
  auto log = WriteAheadLog::Open(
      options, fs,
      [&](uint64_t seq, absl::string_view payload) {
        out.records.emplace_back(seq, std::string(payload));
        return absl::OkStatus();
      },
      &out.recovery);
  EXPECT_TRUE(log.ok()) << log.status();
  if (log.ok()) out.log = *std::move(log);
  return out;
}

std::vector<std::string> Payloads(const Reopened& r) {
  std::vector<std::string> out;
  for (const auto& [seq, payload] : r.records) out.push_back(payload);
  return out;
}

// The newest segment that holds records (past its 20-byte header).
std::string LastNonEmptySegment(const std::string& dir) {
  std::string last;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".wal" && entry.file_size() > 20 &&
        entry.path().string() > last)
      last = entry.path().string();
  }
  return last;
}

TEST(WalTest, RecordsComeBackInOrderAndSequencesContinue) {
  testing::TempDir dir;
  WalOptions options;
  options.dir = dir.Sub("wal");
  {
    Reopened r = Open(options);
    EXPECT_EQ(r.recovery.records, 0);
    for (int i = 1; i <= 5; ++i) {
      auto seq = r.log->Append(absl::StrCat("update-", i));
      ASSERT_TRUE(seq.ok()) << seq.status();
      EXPECT_EQ(*seq, uint64_t(i));
    }
  }
  Reopened r = Open(options);
  EXPECT_THAT(Payloads(r),
              ElementsAre("update-1", "update-2", "update-3", "update-4", "update-5"));
  EXPECT_EQ(r.records.back().first, 5u);
  EXPECT_EQ(r.recovery.last_seq, 5u);
  EXPECT_TRUE(r.recovery.cuts.empty());
  EXPECT_EQ(*r.log->Append("update-6"), 6u);
  r.log.reset();
  EXPECT_EQ(Open(options).records.size(), 6u);
}

TEST(WalTest, ATornTailIsCutAndReportedAndWritingResumes) {
  testing::TempDir dir;
  WalOptions options;
  options.dir = dir.Sub("wal");
  {
    Reopened r = Open(options);
    for (int i = 0; i < 4; ++i)
      ASSERT_TRUE(r.log->Append(std::string(100, 'a' + i)).ok());
  }
  const std::string segment = LastNonEmptySegment(options.dir);
  const auto size = std::filesystem::file_size(segment);
  std::filesystem::resize_file(segment, size - 30);  // the last record torn
  Reopened r = Open(options);
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ(r.recovery.bytes_cut, int64_t(116 - 30));
  ASSERT_EQ(r.recovery.cuts.size(), 1u);
  EXPECT_THAT(r.recovery.cuts[0], HasSubstr("torn record"));
  EXPECT_EQ(*r.log->Append("after"), 4u);  // the torn record's seq, reused
  r.log.reset();
  Reopened again = Open(options);
  EXPECT_THAT(Payloads(again).back(), "after");
  EXPECT_EQ(again.records.size(), 4u);
}

TEST(WalTest, ACorruptRecordCutsTheRestOfItsSegment) {
  testing::TempDir dir;
  WalOptions options;
  options.dir = dir.Sub("wal");
  {
    Reopened r = Open(options);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(r.log->Append(std::string(50, 'x')).ok());
  }
  const std::string segment = LastNonEmptySegment(options.dir);
  std::string data = testing::ReadFile(segment);
  data[20 + 2 * (16 + 50) + 16 + 7] ^= 0x40;  // a payload byte of the third record
  testing::WriteFile(segment, data);
  Reopened r = Open(options);
  EXPECT_EQ(r.records.size(), 2u);
  ASSERT_EQ(r.recovery.cuts.size(), 1u);
  EXPECT_THAT(r.recovery.cuts[0], HasSubstr("checksum mismatch"));
  EXPECT_EQ(r.recovery.bytes_cut, 3 * (16 + 50));
}

TEST(WalTest, AFailedFsyncRefusesTheRecordAndItIsNeverReplayed) {
  testing::TempDir dir;
  testing::FaultFileSystem fs;
  WalOptions options;
  options.dir = dir.Sub("wal");
  {
    Reopened r = Open(options, &fs);
    ASSERT_TRUE(r.log->Append("kept-1").ok());
    fs.fail_sync = true;
    auto refused = r.log->Append("refused");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(refused.status().message(), HasSubstr("fsync failed"));
    // Still refused while the disk fails; then writing resumes.
    EXPECT_FALSE(r.log->Append("refused-too").ok());
    fs.fail_sync = false;
    EXPECT_EQ(*r.log->Append("kept-2"), 2u);
  }
  Reopened r = Open(options, &fs);
  EXPECT_THAT(Payloads(r), ElementsAre("kept-1", "kept-2"));
  EXPECT_EQ(r.recovery.records_voided, 1);  // "refused" reached the file
}

TEST(WalTest, AFullDiskWithShortWritesRefusesAndLosesNothingAcknowledged) {
  testing::TempDir dir;
  testing::FaultFileSystem fs;
  fs.short_writes = true;
  WalOptions options;
  options.dir = dir.Sub("wal");
  std::vector<std::string> acknowledged;
  {
    Reopened r = Open(options, &fs);
    for (int i = 0; i < 3; ++i) {
      const std::string p = absl::StrCat("ok-", i);
      ASSERT_TRUE(r.log->Append(p).ok());
      acknowledged.push_back(p);
    }
    fs.write_budget_bytes = 10;  // part of the next record's header fits
    auto refused = r.log->Append(std::string(200, 'z'));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(refused.status().message(), HasSubstr("no space left"));
    fs.write_budget_bytes = -1;
    ASSERT_TRUE(r.log->Append("ok-3").ok());
    acknowledged.push_back("ok-3");
  }
  Reopened r = Open(options, &fs);
  EXPECT_EQ(Payloads(r), acknowledged);
  EXPECT_EQ(r.recovery.cuts.size(), 1u);  // the short write's torn bytes
}

TEST(WalTest, TruncateBeforeDropsCompactedSegments) {
  testing::TempDir dir;
  WalOptions options;
  options.dir = dir.Sub("wal");
  options.segment_bytes = 1024;
  {
    Reopened r = Open(options);
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(r.log->Append(std::string(100, 'q')).ok());
    const int64_t before = r.log->bytes();
    ASSERT_TRUE(r.log->TruncateBefore(30).ok());
    EXPECT_LT(r.log->bytes(), before);
  }
  Reopened r = Open(options);
  ASSERT_FALSE(r.records.empty());
  EXPECT_LE(r.records.front().first, 30u);  // every record from 30 on is kept
  EXPECT_GT(r.records.front().first, 1u);   // older segments are gone
  EXPECT_EQ(r.records.back().first, 40u);
}

TEST(WalTest, BadInputIsRefused) {
  testing::TempDir dir;
  WalOptions options;
  options.dir = dir.Sub("wal");
  options.max_record_bytes = 16;
  Reopened r = Open(options);
  EXPECT_EQ(r.log->Append(std::string(17, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(r.log->Append("fits").ok());
  r.log.reset();
  auto failing = WriteAheadLog::Open(
      options, FileSystem::Real(),
      [](uint64_t, absl::string_view) { return absl::DataLossError("replay refused"); },
      nullptr);
  EXPECT_EQ(failing.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseWalSync("sometimes").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseWalSync("interval"), WalSync::kInterval);
}

}  // namespace
}  // namespace feedrank

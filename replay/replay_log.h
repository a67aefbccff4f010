// Reading and writing replay logs (proto/feedrank/v1/replay.proto): records
// framed by a varint length (binary) or one JSON object per line (a path
// ending in ".jsonl").
//
// A bad record (a truncated or unparsable one, unknown JSON fields, outcome
// labels that do not match the objectives) is reported with the file and its
// byte offset (and line, for JSON), and under BadRecordPolicy::kSkip skipped
// and counted; it is never dropped silently.
#ifndef FEEDRANK_REPLAY_REPLAY_LOG_H_
#define FEEDRANK_REPLAY_REPLAY_LOG_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "feedrank/v1/replay.pb.h"

namespace feedrank {

enum class ReplayLogFormat { kBinary, kJsonLines };
// kJsonLines for a path ending in ".jsonl", else kBinary.
ReplayLogFormat ReplayLogFormatFor(const std::string& path);

enum class BadRecordPolicy {
  kFail,  // the first bad record is an error
  kSkip,  // bad records are skipped, counted and the first few kept
};

// Records larger than this are taken for a corrupt length.
inline constexpr uint64_t kMaxReplayRecordBytes = 64 << 20;

struct ReplayLogReadStats {
  int64_t records = 0;  // read and returned
  int64_t skipped = 0;  // bad, skipped under kSkip
  // The first few problems, each naming the file and offset.
  std::vector<std::string> problems;
};

// Checks what the reader checks beyond parsing: one label per objective in
// each outcome, a positive objective that is one of the objectives.
// InvalidArgument naming the field.
absl::Status ValidateReplayRecord(const v1::ReplayRecord& record);

class ReplayLogReader {
 public:
  static absl::StatusOr<std::unique_ptr<ReplayLogReader>> Open(
      const std::string& path, BadRecordPolicy policy,
      FileSystem& fs = *FileSystem::Real());
  ~ReplayLogReader();

  // The next good record into `record`; false at the end of the file.
  // Errors: DataLoss (a bad record under kFail, or a length prefix that
  // cannot be framed, after which nothing more can be read), naming the
  // path and byte offset; those of ReadableFile::Read.
  absl::StatusOr<bool> Next(v1::ReplayRecord* record);

  const ReplayLogReadStats& stats() const { return stats_; }
  // Bytes consumed so far and the file's size (for a progress line).
  uint64_t offset() const { return offset_; }
  uint64_t size() const;

 private:
  ReplayLogReader(std::unique_ptr<ReadableFile> file, ReplayLogFormat format,
                  BadRecordPolicy policy);
  // Makes at least `n` bytes available at buffer_[pos_..]; false at EOF
  // with fewer.
  absl::StatusOr<bool> Fill(size_t n);
  // A bad record at `at`: an error under kFail, else counted.
  absl::Status Bad(uint64_t at, const std::string& what);
  enum class Step { kRecord, kSkipped, kEnd };
  absl::StatusOr<Step> NextBinary(v1::ReplayRecord* record);
  absl::StatusOr<Step> NextJson(v1::ReplayRecord* record);
  // Validates a parsed record at `at`: kRecord, or kSkipped / an error.
  absl::StatusOr<Step> Check(uint64_t at, const v1::ReplayRecord& record);

  std::unique_ptr<ReadableFile> file_;
  ReplayLogFormat format_;
  BadRecordPolicy policy_;
  std::string buffer_;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t offset_ = 0;  // of buffer_[pos_] in the file
  int64_t line_ = 0;
  bool stop_ = false;
  ReplayLogReadStats stats_;
};

// Reads a whole log. `stats` may be null.
absl::StatusOr<std::vector<v1::ReplayRecord>> ReadReplayLog(
    const std::string& path, BadRecordPolicy policy, ReplayLogReadStats* stats = nullptr,
    FileSystem& fs = *FileSystem::Real());

// Appends records to a new file in the format its name selects. Not
// thread-safe.
class ReplayLogWriter {
 public:
  // Creates (truncates) `path`.
  static absl::StatusOr<std::unique_ptr<ReplayLogWriter>> Open(
      const std::string& path, FileSystem& fs = *FileSystem::Real());
  // As Open, in the given format whatever the name.
  static absl::StatusOr<std::unique_ptr<ReplayLogWriter>> Open(
      const std::string& path, ReplayLogFormat format,
      FileSystem& fs = *FileSystem::Real());
  ~ReplayLogWriter();

  absl::Status Append(const v1::ReplayRecord& record);
  // Hands the buffered records to the file (Append buffers up to 64 KiB).
  absl::Status Flush();
  // Flushes and closes; Append after Close is an error.
  absl::Status Close();
  uint64_t bytes_written() const { return bytes_; }
  int64_t records_written() const { return records_; }

 private:
  ReplayLogWriter(std::unique_ptr<WritableFile> file, ReplayLogFormat format)
      : file_(std::move(file)), format_(format) {}

  std::unique_ptr<WritableFile> file_;
  ReplayLogFormat format_;
  std::string pending_;
  uint64_t bytes_ = 0;
  int64_t records_ = 0;
};

}  // namespace feedrank

#endif  // FEEDRANK_REPLAY_REPLAY_LOG_H_

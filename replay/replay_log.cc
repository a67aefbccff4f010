#include "replay/replay_log.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/quote.h"
#include "base/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/util/json_util.h"

namespace feedrank {
namespace {

constexpr size_t kReadChunk = 1 << 16;
constexpr size_t kMaxProblemsKept = 10;
constexpr size_t kWriteBuffer = 1 << 16;

}  // namespace

ReplayLogFormat ReplayLogFormatFor(const std::string& path) {
  return absl::EndsWith(path, ".jsonl") ? ReplayLogFormat::kJsonLines
                                        : ReplayLogFormat::kBinary;
}

absl::Status ValidateReplayRecord(const v1::ReplayRecord& record) {
  const int objectives = record.objectives_size();
  for (int i = 0; i < record.outcomes_size(); ++i) {
    const int labels = record.outcomes(i).labels_size();
    if (labels != objectives) {
      return absl::InvalidArgumentError(absl::StrCat("outcomes[", i, "] has ", labels,
                                                     " labels; the record names ",
                                                     objectives, " objectives"));
    }
  }
  if (!record.positive_objective().empty()) {
    bool found = false;
    for (const std::string& name : record.objectives())
      found |= name == record.positive_objective();
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("positive_objective ", QuoteForError(record.positive_objective()),
                       " is not one of the record's objectives"));
    }
  }
  if (record.time_ms() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_ms ", record.time_ms(), " is negative"));
  }
  return absl::OkStatus();
}

ReplayLogReader::ReplayLogReader(std::unique_ptr<ReadableFile> file,
                                 ReplayLogFormat format, BadRecordPolicy policy)
    : file_(std::move(file)), format_(format), policy_(policy) {}

ReplayLogReader::~ReplayLogReader() = default;

absl::StatusOr<std::unique_ptr<ReplayLogReader>> ReplayLogReader::Open(
    const std::string& path, BadRecordPolicy policy, FileSystem& fs) {
  ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, fs.OpenForRead(path));
  return std::unique_ptr<ReplayLogReader>(
      new ReplayLogReader(std::move(file), ReplayLogFormatFor(path), policy));
}

uint64_t ReplayLogReader::size() const { return file_->size(); }

absl::StatusOr<bool> ReplayLogReader::Fill(size_t n) {
  while (buffer_.size() - pos_ < n && !eof_) {
    if (pos_ > 0) {
      buffer_.erase(0, pos_);
      pos_ = 0;
    }
    const size_t old = buffer_.size();
    const size_t want = std::max(kReadChunk, n - old);
    buffer_.resize(old + want);
    ASSIGN_OR_RETURN(size_t got, file_->Read(buffer_.data() + old, want));
    buffer_.resize(old + got);
    if (got == 0) eof_ = true;
  }
  return buffer_.size() - pos_ >= n;
}

absl::Status ReplayLogReader::Bad(uint64_t at, const std::string& what) {
  std::string where = absl::StrCat(file_->path(), ": bad record at byte ", at);
  if (format_ == ReplayLogFormat::kJsonLines)
    absl::StrAppend(&where, " (line ", line_, ")");
  const std::string problem = absl::StrCat(where, ": ", what);
  if (policy_ == BadRecordPolicy::kFail) {
    return absl::DataLossError(
        absl::StrCat(problem, " (--on-bad-record=skip skips and counts bad records)"));
  }
  ++stats_.skipped;
  if (stats_.problems.size() < kMaxProblemsKept) stats_.problems.push_back(problem);
  return absl::OkStatus();
}

absl::StatusOr<bool> ReplayLogReader::Next(v1::ReplayRecord* record) {
  while (!stop_) {
    ASSIGN_OR_RETURN(Step step, format_ == ReplayLogFormat::kBinary ? NextBinary(record)
                                                                    : NextJson(record));
    if (step == Step::kEnd) break;
    if (step == Step::kSkipped) continue;
    ++stats_.records;
    return true;
  }
  return false;
}

absl::StatusOr<ReplayLogReader::Step> ReplayLogReader::Check(
    uint64_t at, const v1::ReplayRecord& record) {
  absl::Status valid = ValidateReplayRecord(record);
  if (valid.ok()) return Step::kRecord;
  RETURN_IF_ERROR(Bad(at, std::string(valid.message())));
  return Step::kSkipped;
}

absl::StatusOr<ReplayLogReader::Step> ReplayLogReader::NextBinary(
    v1::ReplayRecord* record) {
  const uint64_t at = offset_;
  ASSIGN_OR_RETURN(bool any, Fill(1));
  if (!any) return Step::kEnd;
  // The length prefix: a varint of at most 10 bytes.
  ASSIGN_OR_RETURN(bool full, Fill(10));
  (void)full;
  const size_t avail = buffer_.size() - pos_;
  uint64_t length = 0;
  size_t prefix = 0;
  {
    google::protobuf::io::CodedInputStream in(
        reinterpret_cast<const uint8_t*>(buffer_.data() + pos_),
        static_cast<int>(std::min<size_t>(avail, 10)));
    if (!in.ReadVarint64(&length)) {
      stop_ = true;
      RETURN_IF_ERROR(Bad(at, avail < 10
                                  ? "the file ends inside a length prefix"
                                  : "unreadable length prefix; the rest of the file "
                                    "cannot be framed"));
      return Step::kEnd;
    }
    prefix = static_cast<size_t>(in.CurrentPosition());
  }
  if (length > kMaxReplayRecordBytes) {
    stop_ = true;
    RETURN_IF_ERROR(
        Bad(at, absl::StrCat("length prefix ", length, " exceeds ", kMaxReplayRecordBytes,
                             " bytes; the rest of the file cannot be framed")));
    return Step::kEnd;
  }
  ASSIGN_OR_RETURN(bool whole, Fill(prefix + length));
  if (!whole) {
    stop_ = true;
    RETURN_IF_ERROR(Bad(
        at, absl::StrCat("truncated: the record says ", length,
                         " bytes and the file has ", buffer_.size() - pos_ - prefix)));
    return Step::kEnd;
  }
  const bool parsed =
      record->ParseFromArray(buffer_.data() + pos_ + prefix, static_cast<int>(length));
  pos_ += prefix + length;
  offset_ += prefix + length;
  if (!parsed) {
    RETURN_IF_ERROR(
        Bad(at, absl::StrCat("the ", length,
                             " bytes do not parse as a feedrank.v1.ReplayRecord")));
    return Step::kSkipped;
  }
  return Check(at, *record);
}

absl::StatusOr<ReplayLogReader::Step> ReplayLogReader::NextJson(
    v1::ReplayRecord* record) {
  while (true) {
    // One line: up to '\n' or the end of the file.
    size_t newline;
    while ((newline = buffer_.find('\n', pos_)) == std::string::npos && !eof_) {
      ASSIGN_OR_RETURN(bool more, Fill(buffer_.size() - pos_ + 1));
      (void)more;
      if (buffer_.size() - pos_ > kMaxReplayRecordBytes) {
        stop_ = true;
        ++line_;
        RETURN_IF_ERROR(Bad(offset_, absl::StrCat("a line longer than ",
                                                  kMaxReplayRecordBytes, " bytes")));
        return Step::kEnd;
      }
    }
    if (pos_ == buffer_.size() && eof_) return Step::kEnd;
    const size_t end = newline == std::string::npos ? buffer_.size() : newline;
    const uint64_t at = offset_;
    absl::string_view line(buffer_.data() + pos_, end - pos_);
    const size_t consumed = end - pos_ + (newline == std::string::npos ? 0 : 1);
    ++line_;
    const bool blank = line.find_first_not_of(" \t\r") == absl::string_view::npos;
    absl::Status parsed = absl::OkStatus();
    if (!blank) {
      record->Clear();
      google::protobuf::util::JsonParseOptions options;
      options.ignore_unknown_fields = false;
      const auto status = google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(line.data(), line.size()), record, options);
      if (!status.ok()) parsed = absl::InvalidArgumentError(status.message().ToString());
    }
    pos_ += consumed;
    offset_ += consumed;
    if (blank) continue;
    if (!parsed.ok()) {
      RETURN_IF_ERROR(
          Bad(at, absl::StrCat("not a feedrank.v1.ReplayRecord: ", parsed.message())));
      return Step::kSkipped;
    }
    return Check(at, *record);
  }
}

absl::StatusOr<std::vector<v1::ReplayRecord>> ReadReplayLog(const std::string& path,
                                                            BadRecordPolicy policy,
                                                            ReplayLogReadStats* stats,
                                                            FileSystem& fs) {
  ASSIGN_OR_RETURN(std::unique_ptr<ReplayLogReader> reader,
                   ReplayLogReader::Open(path, policy, fs));
  std::vector<v1::ReplayRecord> records;
  v1::ReplayRecord record;
  while (true) {
    ASSIGN_OR_RETURN(bool got, reader->Next(&record));
    if (!got) break;
    records.push_back(std::move(record));
    record.Clear();
  }
  if (stats != nullptr) *stats = reader->stats();
  return records;
}

absl::StatusOr<std::unique_ptr<ReplayLogWriter>> ReplayLogWriter::Open(
    const std::string& path, FileSystem& fs) {
  return Open(path, ReplayLogFormatFor(path), fs);
}

absl::StatusOr<std::unique_ptr<ReplayLogWriter>> ReplayLogWriter::Open(
    const std::string& path, ReplayLogFormat format, FileSystem& fs) {
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, fs.OpenForWrite(path));
  return std::unique_ptr<ReplayLogWriter>(new ReplayLogWriter(std::move(file), format));
}

ReplayLogWriter::~ReplayLogWriter() {
  if (file_ != nullptr) (void)Close();
}

absl::Status ReplayLogWriter::Append(const v1::ReplayRecord& record) {
  if (file_ == nullptr)
    return absl::FailedPreconditionError("replay log writer is closed");
  const size_t before = pending_.size();
  if (format_ == ReplayLogFormat::kBinary) {
    const size_t length = record.ByteSizeLong();
    uint8_t prefix[10];
    uint8_t* end =
        google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(length, prefix);
    pending_.append(reinterpret_cast<const char*>(prefix), end - prefix);
    if (!record.AppendToString(&pending_)) {
      pending_.resize(before);
      return absl::InternalError("cannot encode a replay record");
    }
  } else {
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    std::string json;
    if (!google::protobuf::util::MessageToJsonString(record, &json, print).ok()) {
      return absl::InternalError("cannot encode a replay record as JSON");
    }
    pending_.append(json);
    pending_.push_back('\n');
  }
  bytes_ += pending_.size() - before;
  ++records_;
  if (pending_.size() >= kWriteBuffer) return Flush();
  return absl::OkStatus();
}

absl::Status ReplayLogWriter::Flush() {
  if (pending_.empty()) return absl::OkStatus();
  if (file_ == nullptr)
    return absl::FailedPreconditionError("replay log writer is closed");
  absl::Status s = file_->Append(pending_);
  pending_.clear();
  return s;
}

absl::Status ReplayLogWriter::Close() {
  if (file_ == nullptr) return absl::OkStatus();
  absl::Status s = Flush();
  absl::Status closed = file_->Close();
  file_.reset();
  if (!s.ok()) return s;
  return closed;
}

}  // namespace feedrank

#include "base/wal.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/files.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

constexpr char kMagic[8] = {'F', 'R', 'W', 'A', 'L', '0', '0', '1'};
constexpr size_t kHeaderBytes = 8 + 8 + 4;
constexpr size_t kRecordHeaderBytes = 4 + 4 + 8;
constexpr char kSuffix[] = ".wal";

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

uint32_t Crc(absl::string_view a, absl::string_view b = {}) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(a.data()), static_cast<uInt>(a.size()));
  crc = crc32(crc, reinterpret_cast<const Bytef*>(b.data()), static_cast<uInt>(b.size()));
  return static_cast<uint32_t>(crc);
}

std::string Header(uint64_t first_seq) {
  std::string h(kHeaderBytes, '\0');
  std::memcpy(h.data(), kMagic, 8);
  PutU64(h.data() + 8, first_seq);
  PutU32(h.data() + 16, Crc(absl::string_view(h.data(), 16)));
  return h;
}

struct Record {
  uint64_t seq;
  std::string payload;
};

}  // namespace

std::string WalSegmentName(uint64_t first_seq) {
  return absl::StrFormat("%020d%s", first_seq, kSuffix);
}

absl::StatusOr<WalSync> ParseWalSync(absl::string_view text) {
  if (text == "always") return WalSync::kAlways;
  if (text == "interval") return WalSync::kInterval;
  if (text == "never") return WalSync::kNever;
  return absl::InvalidArgumentError(
      absl::StrCat("WAL sync policy '", text, "': use always, interval or never"));
}

const char* WalSyncName(WalSync sync) {
  switch (sync) {
    case WalSync::kAlways:
      return "always";
    case WalSync::kInterval:
      return "interval";
    case WalSync::kNever:
      return "never";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<WriteAheadLog>> WriteAheadLog::Open(
    const WalOptions& options, FileSystem* fs, const ReplayFn& replay,
    WalRecovery* recovery) {
  if (options.dir.empty()) return absl::InvalidArgumentError("WAL dir is empty");
  if (options.max_record_bytes == 0 || options.segment_bytes < 1024) {
    return absl::InvalidArgumentError(
        "WAL options: max_record_bytes must be > 0 and segment_bytes >= 1024");
  }
  WalRecovery local;
  WalRecovery& r = recovery != nullptr ? *recovery : local;
  r = WalRecovery();
  ASSIGN_OR_RETURN(const bool exists, fs->Exists(options.dir));
  if (!exists) RETURN_IF_ERROR(fs->CreateDir(options.dir));
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs->ListDir(options.dir));
  std::unique_ptr<WriteAheadLog> log(new WriteAheadLog(options, fs));
  std::vector<Record> records;
  MutexLock lock(&log->mu_);
  for (const std::string& name : names) {
    if (name.size() != 20 + 4 || name.substr(20) != kSuffix) continue;
    uint64_t named_seq;
    if (!absl::SimpleAtoi(name.substr(0, 20), &named_seq)) continue;
    const std::string path = absl::StrCat(options.dir, "/", name);
    ASSIGN_OR_RETURN(std::string data, ReadFileToString(*fs, path, uint64_t{1} << 40));
    ++r.segments;
    log->segments_.emplace_back(named_seq, static_cast<int64_t>(data.size()));
    auto cut = [&](size_t offset, absl::string_view why) {
      r.bytes_cut += static_cast<int64_t>(data.size() - offset);
      r.cuts.push_back(absl::StrCat(path, " at byte ", offset, " of ", data.size(), ": ",
                                    why, "; ", data.size() - offset, " bytes cut"));
    };
    if (data.size() < kHeaderBytes || std::memcmp(data.data(), kMagic, 8) != 0 ||
        GetU32(data.data() + 16) != Crc(absl::string_view(data.data(), 16))) {
      cut(0, "no valid segment header");
      continue;
    }
    const uint64_t first_seq = GetU64(data.data() + 8);
    // Records at or above this seq in earlier segments were refused.
    while (!records.empty() && records.back().seq >= first_seq) {
      records.pop_back();
      ++r.records_voided;
    }
    if (!records.empty() && first_seq > records.back().seq + 1) {
      r.cuts.push_back(absl::StrCat(path, ": sequences [", records.back().seq + 1, ", ",
                                    first_seq,
                                    ") are missing (cut from an earlier segment)"));
    }
    uint64_t expect = first_seq;
    size_t offset = kHeaderBytes;
    while (offset < data.size()) {
      if (data.size() - offset < kRecordHeaderBytes) {
        cut(offset, "a torn record header");
        break;
      }
      const uint32_t length = GetU32(data.data() + offset);
      const uint32_t crc = GetU32(data.data() + offset + 4);
      if (length > options.max_record_bytes) {
        cut(offset,
            absl::StrCat("a record length of ", length, " bytes, above the limit"));
        break;
      }
      if (data.size() - offset - kRecordHeaderBytes < length) {
        cut(offset, "a torn record (shorter than its length)");
        break;
      }
      const absl::string_view seq_bytes(data.data() + offset + 8, 8);
      const absl::string_view payload(data.data() + offset + kRecordHeaderBytes, length);
      if (Crc(seq_bytes, payload) != crc) {
        cut(offset, "a checksum mismatch");
        break;
      }
      const uint64_t seq = GetU64(seq_bytes.data());
      if (seq != expect) {
        cut(offset, absl::StrCat("sequence ", seq, " where ", expect, " was expected"));
        break;
      }
      records.push_back({seq, std::string(payload)});
      ++expect;
      offset += kRecordHeaderBytes + length;
    }
  }
  for (const Record& record : records) {
    RETURN_IF_ERROR(replay(record.seq, record.payload));
    r.bytes_kept += static_cast<int64_t>(kRecordHeaderBytes + record.payload.size());
  }
  r.records = static_cast<int64_t>(records.size());
  // Sequence numbers continue after the highest one ever used, so a voided
  // seq is never confused with a later record of an older segment.
  uint64_t last = records.empty() ? 0 : records.back().seq;
  for (const auto& [first, bytes] : log->segments_)
    last = std::max(last, first == 0 ? 0 : first - 1);
  r.last_seq = records.empty() ? 0 : records.back().seq;
  log->last_seq_ = last;
  RETURN_IF_ERROR(log->StartSegment(last + 1));
  return log;
}

WriteAheadLog::~WriteAheadLog() {
  MutexLock lock(&mu_);
  CloseSegment();
}

absl::Status WriteAheadLog::StartSegment(uint64_t first_seq) {
  CloseSegment();
  const std::string path = absl::StrCat(options_.dir, "/", WalSegmentName(first_seq));
  // A segment of this name exists when the previous one failed at once:
  // it holds at most a refused record, and is replaced.
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, fs_->OpenForWrite(path));
  const std::string header = Header(first_seq);
  absl::Status status = file->Append(header);
  if (status.ok()) status = file->Sync();
  if (status.ok()) status = fs_->SyncDir(options_.dir);
  if (!status.ok()) {
    file->Close().IgnoreError();
    return status;
  }
  segments_.erase(std::remove_if(segments_.begin(), segments_.end(),
                                 [&](const auto& s) { return s.first == first_seq; }),
                  segments_.end());
  segments_.emplace_back(first_seq, static_cast<int64_t>(header.size()));
  file_ = std::move(file);
  file_bytes_ = static_cast<int64_t>(header.size());
  return absl::OkStatus();
}

void WriteAheadLog::CloseSegment() {
  if (file_ == nullptr) return;
  file_->Close().IgnoreError();
  file_.reset();
}

absl::StatusOr<uint64_t> WriteAheadLog::Append(absl::string_view payload) {
  if (payload.size() > options_.max_record_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("WAL record of ", payload.size(),
                                                   " bytes is above the limit of ",
                                                   options_.max_record_bytes));
  }
  MutexLock lock(&mu_);
  const uint64_t seq = last_seq_ + 1;
  if (file_ == nullptr || file_bytes_ >= options_.segment_bytes) {
    RETURN_IF_ERROR(StartSegment(seq));
  }
  char header[kRecordHeaderBytes];
  PutU32(header, static_cast<uint32_t>(payload.size()));
  PutU64(header + 8, seq);
  PutU32(header + 4, Crc(absl::string_view(header + 8, 8), payload));
  std::string record(header, kRecordHeaderBytes);
  record.append(payload.data(), payload.size());
  absl::Status status = file_->Append(record);
  const absl::Time now = absl::Now();
  if (status.ok() && (options_.sync == WalSync::kAlways ||
                      (options_.sync == WalSync::kInterval &&
                       now - last_sync_ >= options_.sync_interval))) {
    status = file_->Sync();
    if (status.ok()) last_sync_ = now;
  }
  if (!status.ok()) {
    // What reached the disk of this record is voided by the next segment,
    // which starts at this seq.
    CloseSegment();
    return status;
  }
  file_bytes_ += static_cast<int64_t>(record.size());
  segments_.back().second = file_bytes_;
  last_seq_ = seq;
  return seq;
}

absl::Status WriteAheadLog::Sync() {
  MutexLock lock(&mu_);
  if (file_ == nullptr) return absl::OkStatus();
  absl::Status status = file_->Sync();
  if (!status.ok()) {
    CloseSegment();
    return status;
  }
  last_sync_ = absl::Now();
  return absl::OkStatus();
}

absl::Status WriteAheadLog::TruncateBefore(uint64_t seq) {
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(StartSegment(last_seq_ + 1));
  // Segment i holds seqs [first_i, first_{i+1}); it can go when
  // first_{i+1} <= seq.
  std::vector<std::pair<uint64_t, int64_t>> kept;
  for (size_t i = 0; i < segments_.size(); ++i) {
    const bool removable = i + 1 < segments_.size() && segments_[i + 1].first <= seq;
    if (!removable) {
      kept.push_back(segments_[i]);
      continue;
    }
    RETURN_IF_ERROR(fs_->RemoveAll(
        absl::StrCat(options_.dir, "/", WalSegmentName(segments_[i].first))));
  }
  segments_ = std::move(kept);
  return fs_->SyncDir(options_.dir);
}

absl::Status WriteAheadLog::AdvanceTo(uint64_t seq) {
  MutexLock lock(&mu_);
  if (seq <= last_seq_) return absl::OkStatus();
  RETURN_IF_ERROR(StartSegment(seq + 1));
  last_seq_ = seq;
  return absl::OkStatus();
}

uint64_t WriteAheadLog::last_seq() const {
  MutexLock lock(&mu_);
  return last_seq_;
}

int64_t WriteAheadLog::bytes() const {
  MutexLock lock(&mu_);
  int64_t total = 0;
  for (const auto& s : segments_) total += s.second;
  return total;
}

}  // namespace feedrank

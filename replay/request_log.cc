#include "replay/request_log.h"

#include <chrono>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

// The writer wakes at least this often, so records reach the file within
// about this long at any rate; a ranking thread wakes it only when the queue
// fills up (a wake-up per call would put a futex call on the request path).
constexpr auto kWriterPoll = std::chrono::milliseconds(100);
// At most one error line per this long; the rest are counted into the next.
constexpr int64_t kErrorLogIntervalMs = 10'000;

uint64_t SampleThreshold(double rate) {
  if (!(rate > 0)) return 0;
  if (rate >= 1) return UINT64_MAX;
  return static_cast<uint64_t>(std::ldexp(rate, 64));
}

// splitmix64: a few instructions per draw, per thread, no lock.
uint64_t NextRandom() {
  thread_local uint64_t state = [] {
    std::random_device device;
    return (uint64_t{device()} << 32) ^ device() ^ reinterpret_cast<uintptr_t>(&state);
  }();
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t EntryBytes(const RequestLogEntry& e) {
  return sizeof(e) + e.request.size() + e.video_ids.size() * sizeof(uint64_t) +
         e.bundle_version.size() + e.config_version.size() + e.arms.size() * 32;
}

}  // namespace

absl::Status ValidateRequestLogOptions(const RequestLogOptions& o) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (!(o.sample_rate >= 0 && o.sample_rate <= 1)) {
    return bad("--request-log-sample: ", o.sample_rate, " is outside [0, 1]");
  }
  if (o.max_bytes != 0 && o.max_bytes < kMinRequestLogBytes) {
    return bad("--request-log-max-bytes: ", o.max_bytes, " is below the minimum of ",
               kMinRequestLogBytes, " (0 = never rotate)");
  }
  if (o.keep < 0 || o.keep > 10000) {
    return bad("--request-log-keep: ", o.keep, " is outside [0, 10000]");
  }
  if (o.max_queued < 1 || o.max_queued > (1 << 24)) {
    return bad("request log max_queued: ", o.max_queued, " is outside [1, 2^24]");
  }
  if (o.max_queued_bytes < 1) return bad("request log max_queued_bytes must be >= 1");
  if (!o.path.empty() && absl::EndsWith(o.path, "/")) {
    return bad("--request-log: ", o.path, " names a directory, not a file");
  }
  return absl::OkStatus();
}

std::string RequestLogFilePath(const std::string& path, int index) {
  if (index == 0) return path;
  constexpr absl::string_view kJson = ".jsonl";
  if (absl::EndsWith(path, kJson)) {
    return absl::StrCat(path.substr(0, path.size() - kJson.size()), ".", index, kJson);
  }
  return absl::StrCat(path, ".", index);
}

absl::StatusOr<std::vector<std::string>> RequestLogFiles(const std::string& path,
                                                         FileSystem& fs) {
  std::vector<std::string> rotated;
  for (int i = 1;; ++i) {
    const std::string name = RequestLogFilePath(path, i);
    ASSIGN_OR_RETURN(bool exists, fs.Exists(name));
    if (!exists) break;
    rotated.push_back(name);
  }
  std::vector<std::string> files(rotated.rbegin(), rotated.rend());
  ASSIGN_OR_RETURN(bool current, fs.Exists(path));
  if (current) files.push_back(path);
  return files;
}

RequestLog::RequestLog(const RequestLogOptions& options, FileSystem& fs)
    : options_(options),
      fs_(fs),
      sample_threshold_(SampleThreshold(options.sample_rate)) {}

absl::StatusOr<std::unique_ptr<RequestLog>> RequestLog::Open(
    const RequestLogOptions& options, FileSystem& fs) {
  RETURN_IF_ERROR(ValidateRequestLogOptions(options));
  if (options.path.empty()) return absl::InvalidArgumentError("--request-log: no path");
  std::unique_ptr<RequestLog> log(new RequestLog(options, fs));
  if (absl::Status opened = log->EnsureOpen(); !opened.ok()) {
    return absl::Status(opened.code(), absl::StrCat("--request-log ", options.path,
                                                    ": cannot open: ", opened.message()));
  }
  log->writer_thread_ = std::thread([l = log.get()] { l->Run(); });
  return log;
}

RequestLog::~RequestLog() { Close(); }

bool RequestLog::Full() const {
  return static_cast<int>(queue_.size()) >= std::max(1, options_.max_queued / 4) ||
         queued_bytes_ >= options_.max_queued_bytes / 4;
}

bool RequestLog::Sample() const {
  if (sample_threshold_ == UINT64_MAX) return true;
  if (sample_threshold_ == 0) return false;
  return NextRandom() < sample_threshold_;
}

void RequestLog::Submit(RequestLogEntry&& entry) {
  const uint64_t bytes = EntryBytes(entry);
  bool wake = false;
  {
    MutexLock lock(&mu_);
    if (closed_ || static_cast<int>(queue_.size()) >= options_.max_queued ||
        queued_bytes_ + bytes > options_.max_queued_bytes) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(std::move(entry));
    queued_bytes_ += bytes;
    wake = Full();
  }
  if (wake) wake_.Signal();
}

void RequestLog::Close() {
  MutexLock close_lock(&close_mu_);
  {
    MutexLock lock(&mu_);
    if (closed_ && !writer_thread_.joinable()) return;
    closed_ = true;
  }
  wake_.SignalAll();
  if (writer_thread_.joinable()) writer_thread_.join();
  // The thread has written everything; nothing else touches writer_ now.
  if (writer_ != nullptr) {
    const int64_t pending = unflushed_;
    unflushed_ = 0;
    absl::Status closed = writer_->Close();
    writer_.reset();
    if (closed.ok()) {
      written_.fetch_add(pending, std::memory_order_relaxed);
    } else {
      failed_.fetch_add(pending, std::memory_order_relaxed);
      ReportError(closed);
    }
  }
}

RequestLogCounts RequestLog::counts() const {
  RequestLogCounts c;
  c.written = written_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  c.failed = failed_.load(std::memory_order_relaxed);
  return c;
}

void RequestLog::Run() {
  std::deque<RequestLogEntry> batch;
  while (true) {
    bool closing;
    {
      MutexLock lock(&mu_);
      wake_.WaitFor(&mu_, kWriterPoll, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closed_ || Full();
      });
      batch.swap(queue_);
      queued_bytes_ = 0;
      closing = closed_;
    }
    for (RequestLogEntry& entry : batch) Write(entry);
    batch.clear();
    Flush();
    if (closing) {
      MutexLock lock(&mu_);
      if (queue_.empty()) return;
    }
  }
}

absl::Status RequestLog::Rotate() {
  if (options_.keep == 0) return fs_.RemoveAll(options_.path);
  for (int i = options_.keep; i >= 1; --i) {
    const std::string from = RequestLogFilePath(options_.path, i - 1);
    ASSIGN_OR_RETURN(bool exists, fs_.Exists(from));
    if (exists) RETURN_IF_ERROR(fs_.Rename(from, RequestLogFilePath(options_.path, i)));
  }
  return absl::OkStatus();
}

absl::Status RequestLog::EnsureOpen() {
  if (writer_ != nullptr) return absl::OkStatus();
  auto info = fs_.Stat(options_.path);
  if (info.ok() && info->is_directory) {
    return absl::FailedPreconditionError(absl::StrCat(options_.path, " is a directory"));
  }
  if (info.ok() && info->size > 0) RETURN_IF_ERROR(Rotate());
  ASSIGN_OR_RETURN(writer_, ReplayLogWriter::Open(options_.path, fs_));
  unflushed_ = 0;
  return absl::OkStatus();
}

void RequestLog::Write(RequestLogEntry& entry) {
  if (absl::Status opened = EnsureOpen(); !opened.ok()) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    ReportError(opened);
    return;
  }
  v1::ReplayRecord record;
  if (!record.mutable_request()->ParseFromString(entry.request)) {
    // The server parsed these bytes before ranking them: not expected.
    failed_.fetch_add(1, std::memory_order_relaxed);
    ReportError(absl::InternalError("a logged request does not parse"));
    return;
  }
  record.set_time_ms(entry.time_ms);
  record.set_known_user(entry.known_user);
  v1::ServedPage* served = record.mutable_served();
  served->set_bundle_version(std::move(entry.bundle_version));
  served->set_config_version(std::move(entry.config_version));
  served->set_catalog_version(entry.catalog_version);
  served->mutable_video_ids()->Add(entry.video_ids.begin(), entry.video_ids.end());
  for (std::string& arm : entry.arms) served->add_arms(std::move(arm));
  served->set_latency_us(entry.latency_us);
  served->set_degraded(entry.degraded);
  if (absl::Status appended = writer_->Append(record); !appended.ok()) {
    ++unflushed_;  // this record was lost with the buffered ones
    Abandon(appended);
    return;
  }
  ++unflushed_;
  if (options_.max_bytes > 0 && writer_->bytes_written() >= options_.max_bytes) {
    const int64_t pending = unflushed_;
    unflushed_ = 0;
    absl::Status closed = writer_->Close();
    writer_.reset();  // the next record rotates this file away and opens a new one
    if (closed.ok()) {
      written_.fetch_add(pending, std::memory_order_relaxed);
    } else {
      failed_.fetch_add(pending, std::memory_order_relaxed);
      ReportError(closed);
    }
  }
}

void RequestLog::Flush() {
  if (writer_ == nullptr || unflushed_ == 0) return;
  if (absl::Status flushed = writer_->Flush(); !flushed.ok()) {
    Abandon(flushed);
    return;
  }
  written_.fetch_add(unflushed_, std::memory_order_relaxed);
  unflushed_ = 0;
}

void RequestLog::Abandon(const absl::Status& error) {
  failed_.fetch_add(unflushed_, std::memory_order_relaxed);
  unflushed_ = 0;
  ReportError(error);
  // The file may end in part of a record: the next record starts a new file
  // (this one is rotated away; a reader reports the torn end, or skips it).
  writer_->Close().IgnoreError();
  writer_.reset();
}

void RequestLog::ReportError(const absl::Status& error) {
  const int64_t now = SteadyMillis();
  if (last_error_ms_ >= 0 && now - last_error_ms_ < kErrorLogIntervalMs) {
    ++errors_not_reported_;
    return;
  }
  last_error_ms_ = now;
  const int64_t before = std::exchange(errors_not_reported_, 0);
  LogError(
      "request log %s: %s; records are being lost (%d written, %d dropped, %d "
      "failed so far%s)",
      options_.path, error.ToString(), written_.load(), dropped_.load(), failed_.load(),
      before > 0 ? absl::StrCat("; ", before, " errors not logged before") : "");
}

}  // namespace feedrank

// RequestLog: the server's log of sampled, answered RankFeed calls, written
// as a replay log (replay/replay_log.h) so `feedrank replay-join` can add the
// outcomes that followed and `feedrank replay` can rank the requests again.
//
// Each record holds the request as received (its bytes, parsed off the
// request path), the server's receive time (Unix ms) and what served it
// (bundle, config and catalogue versions, the page's video ids, latency,
// degraded). Only calls answered OK are logged: a replay needs a request the
// server ranked and the page it returned.
//
// OFF THE REQUEST PATH: a ranking thread only draws the sampling decision
// (Sample(): a per-thread generator, no lock) and, when sampled, moves a
// compact entry into a bounded queue (Submit(): one short lock, no I/O, never
// blocks on the writer). A thread of the log's own parses the requests,
// builds the records and writes them with ReplayLogWriter. When the queue is
// full the entry is dropped and counted; a write that fails is logged (at
// most one line per 10 s) and its records counted as failed; neither fails
// or delays a call. Every submitted entry ends up counted exactly once:
// written + dropped + failed = submitted, once Close() has returned.
//
// Files: `path` (binary varint-delimited, or JSON lines when it ends in
// ".jsonl"). Once the current file reaches `max_bytes` it is closed and
// rotated: path -> path.1 -> path.2 ... -> path.<keep> (the oldest beyond
// `keep` is deleted); a JSON-lines log `x.jsonl` rotates to `x.1.jsonl`, ...
// so the name still selects the format. A file is rotated only between
// records, so no record is split across files; a file may exceed
// `max_bytes` by its last record. A non-empty file left at `path` by an
// earlier run is rotated away when the log opens, never truncated.
//
// Thread-safety: Sample, Submit and the counters may be called from any
// thread; Close from one.
#ifndef FEEDRANK_REPLAY_REQUEST_LOG_H_
#define FEEDRANK_REPLAY_REQUEST_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "base/mutex.h"
#include "replay/replay_log.h"

namespace feedrank {

struct RequestLogOptions {
  // The current file; "" = no request log.
  std::string path;
  // Share of answered calls logged, in [0, 1]. The default keeps a busy
  // replica's log small (1000 QPS -> 10 records/s); raise it to collect a
  // replay set quickly.
  double sample_rate = 0.01;
  // Rotate once the current file reaches this many bytes; 0 = never.
  // Otherwise at least kMinRequestLogBytes.
  uint64_t max_bytes = uint64_t{256} << 20;
  // Rotated files kept (path.1 ... path.<keep>), in [0, 10000].
  int keep = 5;
  // Entries waiting for the writer at most, and their bytes at most; beyond
  // either, entries are dropped.
  int max_queued = 10000;
  uint64_t max_queued_bytes = uint64_t{64} << 20;
};

inline constexpr uint64_t kMinRequestLogBytes = 4096;

// Checks the options' ranges. Errors: InvalidArgument naming the option (by
// its `feedrank serve` flag).
absl::Status ValidateRequestLogOptions(const RequestLogOptions& options);

// The name of file `index` of the log at `path`: `path` for 0, then the
// rotated ones (`path.1`, or `x.1.jsonl` for `x.jsonl`).
std::string RequestLogFilePath(const std::string& path, int index);

// The files of the log at `path` that exist, oldest first (path.<keep> ...
// path.1, path): the order their records were written in.
absl::StatusOr<std::vector<std::string>> RequestLogFiles(const std::string& path,
                                                         FileSystem& fs);

// What a ranking thread hands to the log for one sampled call.
struct RequestLogEntry {
  // The serialized feedrank.v1.RankFeedRequest, as received.
  std::string request;
  // Receive time, Unix ms.
  int64_t time_ms = 0;
  std::string bundle_version;
  std::string config_version;
  uint64_t catalog_version = 0;
  // The page, in order.
  std::vector<uint64_t> video_ids;
  // The arm of each layer that served it, "layer/arm".
  std::vector<std::string> arms;
  int64_t latency_us = 0;
  bool degraded = false;
  bool known_user = false;
};

// The counts behind feedrank_request_log_records_total.
struct RequestLogCounts {
  int64_t written = 0;  // records whose bytes reached the file system
  int64_t dropped = 0;  // entries refused because the queue was full
  int64_t failed = 0;   // records lost to a write, rotation or open error, or
                        // to a request that did not parse
};

class RequestLog {
 public:
  // Validates the options and opens `options.path` (rotating a non-empty
  // file there away first), so an unwritable place is refused at start.
  // Errors: InvalidArgument for options out of range; the file system's
  // (NotFound for a missing directory, PermissionDenied, ...), naming the
  // path. `fs` is borrowed and must outlive the log.
  static absl::StatusOr<std::unique_ptr<RequestLog>> Open(
      const RequestLogOptions& options, FileSystem& fs);
  // Close()s.
  ~RequestLog();

  // Whether to log this call: true with probability sample_rate, from a
  // generator of the calling thread's.
  bool Sample() const;

  // Queues `entry` for the writer, or drops and counts it when the queue is
  // full or the log is closed. Never blocks on I/O.
  void Submit(RequestLogEntry&& entry);

  // Writes every queued entry, closes the file and stops the writer.
  // Idempotent; entries submitted afterwards are dropped.
  void Close();

  RequestLogCounts counts() const;
  const RequestLogOptions& options() const { return options_; }

 private:
  RequestLog(const RequestLogOptions& options, FileSystem& fs);
  void Run();
  // The queue holds enough to wake the writer before its poll.
  bool Full() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens the current file when none is open (rotating a non-empty one away).
  absl::Status EnsureOpen();
  absl::Status Rotate();
  void Write(RequestLogEntry& entry);
  // Pushes buffered records to the file; counts them written or failed.
  void Flush();
  // Closes the file after an error (its unflushed records failed).
  void Abandon(const absl::Status& error);
  void ReportError(const absl::Status& error);

  const RequestLogOptions options_;
  FileSystem& fs_;
  const uint64_t sample_threshold_;  // Sample() is true below this

  Mutex mu_;
  CondVar wake_;
  std::deque<RequestLogEntry> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_thread_;
  Mutex close_mu_;  // serialises Close()

  // The writer thread's.
  std::unique_ptr<ReplayLogWriter> writer_;
  int64_t unflushed_ = 0;  // records appended since the last flush
  int64_t last_error_ms_ = -1;
  int64_t errors_not_reported_ = 0;

  std::atomic<int64_t> written_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> failed_{0};
};

}  // namespace feedrank

#endif  // FEEDRANK_REPLAY_REQUEST_LOG_H_

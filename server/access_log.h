// AccessLog: one JSON line per RankFeed call, for the people who run the
// service (not the training pipeline's impression log):
//
//   {"ts":"2026-12-02T01:02:03.456Z","method":"RankFeed","request_id":"r1",
//    "user":42,"code":"OK","latency_ms":1.234,"items":20,"degraded":"",
//    "bundle":"b7","config":"c3","message":""}
//
// Successful calls are sampled at `sample_rate`; failed ones are always
// logged, up to `max_error_lines_per_second` (the rest are counted, and the
// count goes out with the next line), so a flood of bad calls cannot flood
// the disk. Lines are formatted by the caller and written by a thread of
// the log's own: a slow disk never stalls a ranking thread (when its
// bounded queue is full, lines are dropped and counted).
//
// Thread-safety: Record may be called from any thread.
#ifndef FEEDRANK_SERVER_ACCESS_LOG_H_
#define FEEDRANK_SERVER_ACCESS_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/env.h"
#include "base/mutex.h"

namespace feedrank {

struct AccessLogOptions {
  // File to append to; "-" = stderr; "" = no access log.
  std::string path;
  // Share of successful calls logged, in [0, 1].
  double sample_rate = 0.01;
  // Failed calls logged per second at most (0 = none).
  int max_error_lines_per_second = 20;
  // Lines waiting for the writer at most.
  int max_queued_lines = 10000;
};

// What one call's line says.
struct AccessEntry {
  absl::string_view method;
  absl::string_view request_id;
  uint64_t user_id = 0;
  int code = 0;  // gRPC status code
  absl::string_view message;
  int64_t latency_micros = 0;
  int items = 0;
  // Degradation causes, comma-separated ("" = none).
  std::string degraded;
  absl::string_view bundle_version;
  absl::string_view config_version;
};

class AccessLog {
 public:
  // Opens (appends to) the file. Errors: InvalidArgument for options out of
  // range; the file system's when the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(const AccessLogOptions& options);
  // Writes what is queued, then closes.
  ~AccessLog();

  void Record(const AccessEntry& entry);

  int64_t written() const { return written_.load(std::memory_order_relaxed); }
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  explicit AccessLog(const AccessLogOptions& options) : options_(options) {}
  void Write();
  void Enqueue(std::string line);

  const AccessLogOptions options_;
  int fd_ = -1;
  bool own_fd_ = false;
  Mutex mu_;
  CondVar wake_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
  // Error-line rate limit: a one-second window.
  std::atomic<int64_t> window_second_{0};
  std::atomic<int> window_lines_{0};
  std::atomic<int64_t> suppressed_{0};
  std::atomic<int64_t> written_{0};
  std::atomic<int64_t> dropped_{0};
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_ACCESS_LOG_H_

#include "server/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

// Per thread: a cheap generator for the sampling decision.
bool Sampled(double rate) {
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0, 1)(rng) < rate;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(
    const AccessLogOptions& options) {
  if (!(options.sample_rate >= 0 && options.sample_rate <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "access log sample rate ", options.sample_rate, " is outside [0, 1]"));
  }
  if (options.max_error_lines_per_second < 0 || options.max_queued_lines < 1) {
    return absl::InvalidArgumentError(
        "access log limits must be >= 0 (errors per second), >= 1 (queue)");
  }
  std::unique_ptr<AccessLog> log(new AccessLog(options));
  if (options.path == "-") {
    log->fd_ = STDERR_FILENO;
  } else {
    log->fd_ =
        ::open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log->fd_ < 0) {
      return absl::ErrnoToStatus(errno,
                                 absl::StrCat(options.path, ": cannot open access log"));
    }
    log->own_fd_ = true;
  }
  log->writer_ = std::thread([l = log.get()] { l->Write(); });
  return log;
}

AccessLog::~AccessLog() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.SignalAll();
  if (writer_.joinable()) writer_.join();
  if (own_fd_) ::close(fd_);
}

void AccessLog::Record(const AccessEntry& e) {
  const bool ok = e.code == 0;
  if (ok) {
    if (!Sampled(options_.sample_rate)) return;
  } else {
    const int64_t second = absl::ToUnixSeconds(absl::Now());
    int64_t window = window_second_.load(std::memory_order_relaxed);
    if (window != second && window_second_.compare_exchange_strong(
                                window, second, std::memory_order_relaxed)) {
      window_lines_.store(0, std::memory_order_relaxed);
    }
    if (window_lines_.fetch_add(1, std::memory_order_relaxed) >=
        options_.max_error_lines_per_second) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  const int64_t suppressed = ok ? 0 : suppressed_.exchange(0, std::memory_order_relaxed);
  std::string line = absl::StrCat(
      "{\"ts\":\"",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      "\",\"method\":", JsonString(e.method),
      ",\"request_id\":", JsonString(e.request_id), ",\"user\":", e.user_id,
      ",\"code\":\"", StatusCodeName(e.code),
      "\",\"latency_ms\":", absl::StrFormat("%.3f", double(e.latency_micros) / 1000.0),
      ",\"items\":", e.items, ",\"degraded\":", JsonString(e.degraded),
      ",\"bundle\":", JsonString(e.bundle_version),
      ",\"config\":", JsonString(e.config_version),
      ",\"message\":", JsonString(e.message));
  if (suppressed > 0)
    absl::StrAppend(&line, ",\"errors_not_logged_before\":", suppressed);
  line += "}\n";
  Enqueue(std::move(line));
}

void AccessLog::Enqueue(std::string line) {
  {
    MutexLock lock(&mu_);
    if (static_cast<int>(queue_.size()) >= options_.max_queued_lines) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(std::move(line));
  }
  wake_.Signal();
}

void AccessLog::Write() {
  while (true) {
    std::deque<std::string> batch;
    {
      MutexLock lock(&mu_);
      wake_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      });
      if (queue_.empty()) return;  // stopping, all written
      batch.swap(queue_);
    }
    std::string text;
    for (const std::string& line : batch) text += line;
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        dropped_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (done == text.size())
      written_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
  }
}

}  // namespace feedrank

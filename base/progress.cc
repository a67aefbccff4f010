#include "base/progress.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "base/log.h"

namespace feedrank {

ProgressLog::ProgressLog(std::string what)
    : what_(std::move(what)),
      start_ns_(absl::GetCurrentTimeNanos()),
      last_ns_(start_ns_) {}

void ProgressLog::operator()(int64_t done, int64_t total) {
  const int64_t now = absl::GetCurrentTimeNanos();
  if (done != total && now - last_ns_ < 5'000'000'000) return;
  last_ns_ = now;
  const double elapsed = (now - start_ns_) / 1e9;
  LogInfo("%s: %d/%d (%.0f%%), %.1fs elapsed, ~%.0fs left", what_, done, total,
          100.0 * done / std::max<int64_t>(total, 1), elapsed,
          elapsed * (total - done) / std::max<int64_t>(done, 1));
}

}  // namespace feedrank

// Guardrails of experiment arms (config.proto Arm.guardrail): a monitor that
// watches each guarded arm's calls over its window and, when the arm breaks
// a limit, has the SnapshotManager serve the arm's users as their
// experiment's control (SnapshotManager::RevertArm). The trip is logged,
// counted (feedrank_guardrail_trips_total), exposed (feedrank_arm_reverted,
// FeedAdmin.GetConfig) and holds until the arm's definition changes.
//
// The monitor samples the arms' cumulative counts (ServerMetrics::ReadArm)
// once per tick and compares each sample with the oldest one still inside
// the window, so a window is never longer than `window_seconds` and spans
// at most one tick less before the first trip can happen.
//
// Thread-safety: Tick is called from one thread (the monitor's); the rest is
// immutable.
#ifndef FEEDRANK_SERVER_GUARDRAILS_H_
#define FEEDRANK_SERVER_GUARDRAILS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "feedrank/v1/config.pb.h"
#include "server/metrics.h"
#include "server/snapshot_manager.h"

namespace feedrank {

// One broken limit: which, and the words for the log.
struct GuardrailBreach {
  std::string limit;   // p99, error_rate or degraded_share
  std::string reason;  // e.g. "p99 latency 212.4 ms > 50 ms over 240 calls in 5 s"
};

// The q-quantile (0 < q < 1) of the durations in `latency`, in
// milliseconds, interpolated linearly inside its bucket as Prometheus's
// histogram_quantile does; the last finite bound when it falls in +Inf;
// 0 with no observations.
double HistogramQuantileMs(const DurationHistogram::Totals& latency, double q);

// The counts of an arm over a window: `now` minus `then`.
ArmTotals Delta(const ArmTotals& now, const ArmTotals& then);

// Checks `window` (an arm's calls over `seconds`) against `limits` (window
// and min_calls resolved, as ExperimentConfig keeps them). The first limit
// broken in the order p99, error_rate, degraded_share; none when the window
// holds fewer than min_calls calls.
std::optional<GuardrailBreach> CheckGuardrail(const v1::Guardrail& limits,
                                              const ArmTotals& window, double seconds);

class GuardrailMonitor {
 public:
  // Borrowed; must outlive the monitor.
  GuardrailMonitor(SnapshotManager* snapshots, ServerMetrics* metrics)
      : snapshots_(snapshots), metrics_(metrics) {}

  // Samples every guarded arm of the current snapshot at `now_ms` (a
  // monotonic clock in milliseconds) and reverts those that broke a limit.
  // Returns how many tripped.
  int Tick(int64_t now_ms);

 private:
  struct Sample {
    int64_t ms;
    ArmTotals totals;
  };
  SnapshotManager* snapshots_;
  ServerMetrics* metrics_;
  // By (metrics slot, arm fingerprint): a changed arm starts a new history.
  std::map<std::pair<int, uint64_t>, std::deque<Sample>> history_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_GUARDRAILS_H_

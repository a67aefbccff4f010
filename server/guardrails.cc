#include "server/guardrails.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_format.h"

namespace feedrank {

double HistogramQuantileMs(const DurationHistogram::Totals& latency, double q) {
  uint64_t count = 0;
  for (uint64_t b : latency.buckets) count += b;
  if (count == 0) return 0;
  const double rank = q * double(count);
  uint64_t below = 0;
  const auto& bounds = DurationHistogram::kBounds;
  for (size_t i = 0; i < latency.buckets.size(); ++i) {
    const uint64_t in = latency.buckets[i];
    if (in > 0 && double(below + in) >= rank) {
      if (i >= bounds.size()) return bounds.back() * 1e3;  // +Inf: the last bound
      const double lo = i == 0 ? 0.0 : bounds[i - 1];
      const double hi = bounds[i];
      const double within = (rank - double(below)) / double(in);
      return (lo + (hi - lo) * std::clamp(within, 0.0, 1.0)) * 1e3;
    }
    below += in;
  }
  return bounds.back() * 1e3;
}

ArmTotals Delta(const ArmTotals& now, const ArmTotals& then) {
  ArmTotals d;
  d.calls = now.calls - then.calls;
  d.errors = now.errors - then.errors;
  d.degraded = now.degraded - then.degraded;
  for (size_t i = 0; i < d.latency.buckets.size(); ++i)
    d.latency.buckets[i] = now.latency.buckets[i] - then.latency.buckets[i];
  d.latency.sum_micros = now.latency.sum_micros - then.latency.sum_micros;
  return d;
}

std::optional<GuardrailBreach> CheckGuardrail(const v1::Guardrail& limits,
                                              const ArmTotals& window, double seconds) {
  if (window.calls == 0 || window.calls < limits.min_calls()) return std::nullopt;
  const std::string over =
      absl::StrFormat("over %d calls in %.0f s", window.calls, seconds);
  if (limits.max_p99_ms() > 0) {
    const double p99 = HistogramQuantileMs(window.latency, 0.99);
    if (p99 > limits.max_p99_ms()) {
      return GuardrailBreach{"p99", absl::StrFormat("p99 latency %.1f ms > %g ms %s", p99,
                                                    limits.max_p99_ms(), over)};
    }
  }
  if (limits.max_error_rate() > 0) {
    const double rate = double(window.errors) / double(window.calls);
    if (rate > limits.max_error_rate()) {
      return GuardrailBreach{
          "error_rate", absl::StrFormat("error rate %.4f > %g (%d failed) %s", rate,
                                        limits.max_error_rate(), window.errors, over)};
    }
  }
  if (limits.max_degraded_share() > 0) {
    const double share = double(window.degraded) / double(window.calls);
    if (share > limits.max_degraded_share()) {
      return GuardrailBreach{
          "degraded_share",
          absl::StrFormat("degraded share %.4f > %g (%d degraded) %s", share,
                          limits.max_degraded_share(), window.degraded, over)};
    }
  }
  return std::nullopt;
}

int GuardrailMonitor::Tick(int64_t now_ms) {
  std::shared_ptr<const Snapshot> snapshot = snapshots_->Current();
  if (snapshot == nullptr) return 0;
  const ExperimentConfig& e = *snapshot->experiments;
  std::set<std::pair<int, uint64_t>> live;
  int tripped = 0;
  for (int id = 0; id < e.arm_count(); ++id) {
    const v1::Guardrail* limits = e.guardrail(id);
    if (limits == nullptr || !e.arm(id).reverted_to.empty()) continue;
    if (id >= static_cast<int>(snapshot->arm_slots.size())) continue;
    const int slot = snapshot->arm_slots[id];
    if (slot < 0) continue;
    const auto key = std::make_pair(slot, e.arm_fingerprint(id));
    live.insert(key);
    std::deque<Sample>& samples = history_[key];
    samples.push_back({now_ms, metrics_->ReadArm(slot)});
    const int64_t window_ms = int64_t(limits->window_seconds()) * 1000;
    // The oldest sample still inside the window starts it.
    while (samples.size() > 1 && now_ms - samples.front().ms > window_ms)
      samples.pop_front();
    if (samples.size() < 2) continue;
    const ArmTotals window = Delta(samples.back().totals, samples.front().totals);
    const double seconds = double(now_ms - samples.front().ms) / 1000.0;
    const std::optional<GuardrailBreach> breach =
        CheckGuardrail(*limits, window, seconds);
    if (!breach.has_value()) continue;
    if (snapshots_->RevertArm(id, e.arm_fingerprint(id), breach->reason).ok()) {
      metrics_->RecordGuardrailTrip(slot, breach->limit);
      ++tripped;
      history_.erase(key);
      live.erase(key);
    }
  }
  // Forget the histories of arms that are gone or changed.
  for (auto it = history_.begin(); it != history_.end();) {
    it = live.count(it->first) ? std::next(it) : history_.erase(it);
  }
  return tripped;
}

}  // namespace feedrank

// ServerMetrics: what the server counts and measures, exposed in the
// Prometheus text format (prometheus-cpp's Exposer serves it on its own HTTP
// address, --metrics-address).
//
// Recording is on the request path, so it is lock-free and uncontended:
// every instrument is a fixed array of relaxed atomic counters (a histogram
// is one per bucket plus a sum), updated with one fetch_add each, in one of
// kShards cache-line-aligned copies chosen by the CPU the caller runs on, so
// threads running at once never write the same line; nothing allocates. The exposition
// sums the shards when scraped (Collect), converting to prometheus-cpp's MetricFamily.
// The values that change only on loads (the served versions) sit behind a mutex that
// requests never take.
//
// Thread-safety: all methods are thread-safe.
#ifndef FEEDRANK_SERVER_METRICS_H_
#define FEEDRANK_SERVER_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "base/mutex.h"
#include "ranking/ranker.h"
#include "replay/request_log.h"

namespace feedrank {

// A histogram of durations with fixed bounds (seconds), lock-free.
class DurationHistogram {
 public:
  // Upper bounds: 50 us to 10 s, about 3 per decade; plus +Inf.
  static constexpr std::array<double, 16> kBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};

  void Observe(int64_t micros);
  // Counts per bucket (not cumulative) and the sum, added into `totals`.
  struct Totals {
    std::array<uint64_t, kBounds.size() + 1> buckets{};
    uint64_t sum_micros = 0;
    // Cumulative counts per bound (then +Inf), the count and the sum, as the
    // exposition needs them.
    prometheus::ClientMetric::Histogram Exposition() const;
  };
  void AddTo(Totals* totals) const;
  prometheus::ClientMetric::Histogram Snapshot() const;
  uint64_t count() const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_micros_{0};
};

// The RPC methods measured (labels of the request metrics).
enum class Method : uint8_t { kRankFeed = 0, kNumMethods = 1 };
const char* MethodName(Method method);

enum class LoadKind : uint8_t { kBundle = 0, kConfig = 1, kNumKinds = 2 };
enum class LoadOutcome : uint8_t { kOk = 0, kRefused = 1, kNumOutcomes = 2 };

// The labels of one experiment arm in the per-arm metrics.
struct ArmLabels {
  std::string layer;
  std::string experiment;
  std::string arm;
};

// An arm's cumulative counts (ServerMetrics::ReadArm), for guardrails.
struct ArmTotals {
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t degraded = 0;
  DurationHistogram::Totals latency;
};

// A bundle served, for feedrank_bundle_file_bytes.
struct ServedBundle {
  std::string name;  // "default" or a RankingConfig.bundles name
  std::string version;
  std::string dir;
  int64_t file_bytes = 0;
};

// A reverted arm, for feedrank_arm_reverted.
// The live catalogue's figures (server/live_updates.h), read at scrape time.
struct LiveCounts {
  int64_t batches = 0;       // applied
  int64_t refused = 0;       // bad batches and batches the log refused
  int64_t log_failures = 0;  // of those, refused by the log
  int64_t delta_videos = 0;
  int64_t tombstones = 0;
  int64_t delta_users = 0;
  int64_t wal_bytes = 0;
  uint64_t wal_last_sequence = 0;
  int64_t compactions = 0;
  int64_t compaction_failures = 0;
  double last_compaction_seconds = 0;
};

struct RevertedArmLabels {
  ArmLabels arm;
  std::string reverted_to;
};

class ServerMetrics : public prometheus::Collectable {
 public:
  // Per-arm metrics hold at most this many (layer, experiment, arm) label
  // sets over the process's life, and this many objectives.
  static constexpr int kMaxArms = 128;
  static constexpr int kMaxObjectives = 8;

  ServerMetrics();

  // One finished call: its gRPC code and duration from arrival to finish.
  void RecordCall(Method method, int grpc_code, int64_t micros);
  // What one ranking did (its stage times, candidate counts, causes).
  void RecordRanking(const RankResult& result);
  // A load of a bundle or a config, and how long it took.
  void RecordLoad(LoadKind kind, LoadOutcome outcome, int64_t micros);
  // The versions now served (info gauges).
  void SetServing(const std::string& bundle_version, const std::string& bundle_dir,
                  const std::string& config_version);
  // Gauges read at scrape time (queue depth, calls in flight).
  void SetQueueDepth(std::function<double()> read);
  // The request log's counts, read at scrape time
  // (feedrank_request_log_records_total); the family is absent until set.
  void SetRequestLogCounts(std::function<RequestLogCounts()> read);
  // The live catalogue's figures (feedrank_live_*, feedrank_wal_*,
  // feedrank_compaction*).
  void SetLiveCounts(std::function<LiveCounts()> read);
  // The slot of an arm's per-arm metrics, registered on first use (at load
  // time, never on the request path); stable for the process's life. -1 once
  // kMaxArms label sets are taken (the arm is then not measured; logged).
  int ArmSlot(const ArmLabels& labels);
  // The objectives of the predicted-value metrics (the served model's).
  void SetObjectives(const std::vector<std::string>& objectives);
  // One call answered by an arm (not pinned): its code and latency, whether
  // degraded, and the mean prediction per objective over its page (empty
  // when the model did not run). Lock-free. No-op for slot -1.
  void RecordArmCall(int slot, int grpc_code, int64_t micros, bool degraded,
                     const float* mean_predictions, int objectives);
  ArmTotals ReadArm(int slot) const;
  // A guardrail tripped on the arm in `slot`; `limit` is p99, error_rate or
  // degraded_share.
  void RecordGuardrailTrip(int slot, const std::string& limit);
  // Read at scrape time (feedrank_arm_reverted).
  void SetReverted(std::function<std::vector<RevertedArmLabels>()> read);
  // A config refused: `source` file or admin, `reason` a short category
  // (ConfigRefusalReason).
  void RecordConfigRefusal(const std::string& source, const std::string& reason);
  // The bundles served side by side.
  void SetBundles(std::vector<ServedBundle> bundles);
  uint64_t config_refusals(const std::string& source, const std::string& reason) const;
  uint64_t guardrail_trips(int slot) const;

  void AddInFlight(int delta) {
    ThisThreadsShard().in_flight.fetch_add(delta, std::memory_order_relaxed);
  }

  // Current values, for tests and reports.
  uint64_t calls(Method method, int grpc_code) const;
  uint64_t rankings() const;

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  static constexpr int kCodes = 17;
  static constexpr int kMethods = static_cast<int>(Method::kNumMethods);
  static constexpr int kStages = static_cast<int>(RankStage::kNumStages);
  static constexpr int kCauses = static_cast<int>(DegradeCause::kNumCauses);
  static constexpr int kSources = 4;  // ann, popular, fresh, trending
  static constexpr int kKinds = static_cast<int>(LoadKind::kNumKinds);
  static constexpr int kOutcomes = static_cast<int>(LoadOutcome::kNumOutcomes);

  // What each call records, one copy per shard.
  struct alignas(64) Shard {
    std::array<std::array<std::atomic<uint64_t>, kCodes>, kMethods> calls{};
    std::array<DurationHistogram, kMethods> call_seconds;
    std::array<DurationHistogram, kStages> stage_seconds;
    std::atomic<uint64_t> rankings{0};
    std::array<std::atomic<uint64_t>, kCauses> degraded{};
    std::atomic<uint64_t> cold_start{0};
    std::atomic<uint64_t> exact_fallbacks{0};
    // [source][0 = retrieved, 1 = kept]
    std::array<std::array<std::atomic<uint64_t>, 2>, kSources> candidates{};
    std::atomic<uint64_t> scored{0};
    std::atomic<uint64_t> creator_capped{0};
    std::atomic<int64_t> in_flight{0};
    struct Arm {
      std::atomic<uint64_t> calls{0};
      std::atomic<uint64_t> errors{0};
      std::atomic<uint64_t> degraded{0};
      DurationHistogram latency;
      // Calls with predictions, and the sums of their page means, in
      // millionths (fixed point, so one fetch_add).
      std::atomic<uint64_t> predicted{0};
      std::array<std::atomic<int64_t>, kMaxObjectives> predicted_micros{};
    };
    std::array<Arm, kMaxArms> arms;
  };
  static constexpr int kShards = 8;
  Shard& ThisThreadsShard();
  // Sums of one counter over the shards.
  template <typename Get>
  uint64_t Sum(Get get) const;
  DurationHistogram::Totals SumHistogram(
      const std::function<const DurationHistogram&(const Shard&)>& get) const;

  std::array<Shard, kShards> shards_;
  std::array<std::array<std::atomic<uint64_t>, kOutcomes>, kKinds> loads_{};
  std::array<DurationHistogram, kKinds> load_seconds_;
  std::array<std::atomic<int64_t>, kKinds> last_load_unix_ms_{};

  mutable Mutex mu_;
  std::string bundle_version_ ABSL_GUARDED_BY(mu_);
  std::string bundle_dir_ ABSL_GUARDED_BY(mu_);
  std::string config_version_ ABSL_GUARDED_BY(mu_);
  std::function<double()> queue_depth_ ABSL_GUARDED_BY(mu_);
  std::function<RequestLogCounts()> request_log_counts_ ABSL_GUARDED_BY(mu_);
  std::function<LiveCounts()> live_counts_ ABSL_GUARDED_BY(mu_);
  std::vector<ArmLabels> arm_labels_ ABSL_GUARDED_BY(mu_);
  bool arms_full_logged_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> objectives_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int, std::string>, uint64_t> guardrail_trips_ ABSL_GUARDED_BY(mu_);
  std::function<std::vector<RevertedArmLabels>()> reverted_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, uint64_t> config_refusals_
      ABSL_GUARDED_BY(mu_);
  std::vector<ServedBundle> bundles_ ABSL_GUARDED_BY(mu_);
  const int64_t start_unix_ms_;
};

// Resident memory of this process (/proc/self/statm), bytes; 0 when unknown.
int64_t ResidentBytes();

// The category of a refused config's status, for
// feedrank_config_refusals_total: parse, overlap, arms_split, salt,
// field_conflict, unknown_objective, unknown_bundle, unknown_arm, bundle,
// guardrail, out_of_range or other.
std::string ConfigRefusalReason(const absl::Status& status);

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_METRICS_H_

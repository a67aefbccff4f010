#include "server/metrics.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "absl/strings/match.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

const char* const kSourceNames[4] = {"ann", "popular", "fresh", "trending"};
const char* const kKindNames[2] = {"bundle", "config"};
const char* const kOutcomeNames[2] = {"ok", "refused"};

ClientMetric Sample(std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  return m;
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void DurationHistogram::Observe(int64_t micros) {
  micros = std::max<int64_t>(0, micros);
  const double seconds = double(micros) * 1e-6;
  const size_t bucket =
      std::lower_bound(kBounds.begin(), kBounds.end(), seconds) - kBounds.begin();
  buckets_[bucket].fetch_add(1, kRelaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(micros), kRelaxed);
}

uint64_t DurationHistogram::count() const {
  uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(kRelaxed);
  return total;
}

void DurationHistogram::AddTo(Totals* totals) const {
  for (size_t i = 0; i < buckets_.size(); ++i)
    totals->buckets[i] += buckets_[i].load(kRelaxed);
  totals->sum_micros += sum_micros_.load(kRelaxed);
}

ClientMetric::Histogram DurationHistogram::Totals::Exposition() const {
  ClientMetric::Histogram h;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound =
        i < kBounds.size() ? kBounds[i] : std::numeric_limits<double>::infinity();
    h.bucket.push_back(bucket);
  }
  h.sample_count = cumulative;
  h.sample_sum = double(sum_micros) * 1e-6;
  return h;
}

ClientMetric::Histogram DurationHistogram::Snapshot() const {
  Totals totals;
  AddTo(&totals);
  return totals.Exposition();
}

const char* MethodName(Method method) {
  switch (method) {
    case Method::kRankFeed:
      return "RankFeed";
    case Method::kNumMethods:
      break;
  }
  return "unknown";
}

ServerMetrics::ServerMetrics() : start_unix_ms_(NowUnixMs()) {}

ServerMetrics::Shard& ServerMetrics::ThisThreadsShard() {
  // By the CPU the caller runs on (a few nanoseconds through the vDSO): two
  // threads running at once are on two CPUs, so they write different shards
  // however threads come and go.
  const int cpu = sched_getcpu();
  return shards_[static_cast<unsigned>(cpu < 0 ? 0 : cpu) % kShards];
}

template <typename Get>
uint64_t ServerMetrics::Sum(Get get) const {
  uint64_t total = 0;
  for (const Shard& shard : shards_) total += get(shard).load(kRelaxed);
  return total;
}

DurationHistogram::Totals ServerMetrics::SumHistogram(
    const std::function<const DurationHistogram&(const Shard&)>& get) const {
  DurationHistogram::Totals totals;
  for (const Shard& shard : shards_) get(shard).AddTo(&totals);
  return totals;
}

void ServerMetrics::RecordCall(Method method, int grpc_code, int64_t micros) {
  Shard& s = ThisThreadsShard();
  const int m = static_cast<int>(method);
  s.calls[m][std::clamp(grpc_code, 0, kCodes - 1)].fetch_add(1, kRelaxed);
  s.call_seconds[m].Observe(micros);
}

void ServerMetrics::RecordRanking(const RankResult& result) {
  Shard& shard = ThisThreadsShard();
  const RankStats& s = result.stats;
  shard.rankings.fetch_add(1, kRelaxed);
  for (int i = 0; i < kStages; ++i) shard.stage_seconds[i].Observe(s.stage_micros[i]);
  for (int c = 0; c < kCauses; ++c) {
    if (result.has_cause(static_cast<DegradeCause>(c)))
      shard.degraded[c].fetch_add(1, kRelaxed);
  }
  if (result.cold_start) shard.cold_start.fetch_add(1, kRelaxed);
  if (s.search.exact_fallback) shard.exact_fallbacks.fetch_add(1, kRelaxed);
  const int32_t retrieved[kSources] = {s.ann_retrieved, s.popular_retrieved,
                                       s.fresh_retrieved, s.trending_retrieved};
  const int32_t kept[kSources] = {s.ann_kept, s.popular_kept, s.fresh_kept,
                                  s.trending_kept};
  for (int i = 0; i < kSources; ++i) {
    shard.candidates[i][0].fetch_add(static_cast<uint64_t>(retrieved[i]), kRelaxed);
    shard.candidates[i][1].fetch_add(static_cast<uint64_t>(kept[i]), kRelaxed);
  }
  shard.scored.fetch_add(static_cast<uint64_t>(s.scored), kRelaxed);
  shard.creator_capped.fetch_add(static_cast<uint64_t>(s.creator_capped), kRelaxed);
}

void ServerMetrics::RecordLoad(LoadKind kind, LoadOutcome outcome, int64_t micros) {
  const int k = static_cast<int>(kind);
  loads_[k][static_cast<int>(outcome)].fetch_add(1, kRelaxed);
  load_seconds_[k].Observe(micros);
  if (outcome == LoadOutcome::kOk) last_load_unix_ms_[k].store(NowUnixMs(), kRelaxed);
}

void ServerMetrics::SetServing(const std::string& bundle_version,
                               const std::string& bundle_dir,
                               const std::string& config_version) {
  MutexLock lock(&mu_);
  bundle_version_ = bundle_version;
  bundle_dir_ = bundle_dir;
  config_version_ = config_version;
}

void ServerMetrics::SetQueueDepth(std::function<double()> read) {
  MutexLock lock(&mu_);
  queue_depth_ = std::move(read);
}

void ServerMetrics::SetLiveCounts(std::function<LiveCounts()> read) {
  MutexLock lock(&mu_);
  live_counts_ = std::move(read);
}

void ServerMetrics::SetRequestLogCounts(std::function<RequestLogCounts()> read) {
  MutexLock lock(&mu_);
  request_log_counts_ = std::move(read);
}

int ServerMetrics::ArmSlot(const ArmLabels& labels) {
  MutexLock lock(&mu_);
  for (size_t i = 0; i < arm_labels_.size(); ++i) {
    const ArmLabels& l = arm_labels_[i];
    if (l.layer == labels.layer && l.experiment == labels.experiment &&
        l.arm == labels.arm) {
      return static_cast<int>(i);
    }
  }
  if (arm_labels_.size() >= kMaxArms) {
    if (!arms_full_logged_) {
      LogWarning(
          "metrics: more than %d arms seen; arm '%s' of layer '%s' and later ones "
          "are not measured per arm (restart to reset)",
          kMaxArms, labels.arm, labels.layer);
      arms_full_logged_ = true;
    }
    return -1;
  }
  arm_labels_.push_back(labels);
  return static_cast<int>(arm_labels_.size()) - 1;
}

void ServerMetrics::SetObjectives(const std::vector<std::string>& objectives) {
  MutexLock lock(&mu_);
  objectives_ = objectives;
  if (objectives_.size() > kMaxObjectives) objectives_.resize(kMaxObjectives);
}

void ServerMetrics::RecordArmCall(int slot, int grpc_code, int64_t micros, bool degraded,
                                  const float* mean_predictions, int objectives) {
  if (slot < 0 || slot >= kMaxArms) return;
  Shard::Arm& a = ThisThreadsShard().arms[slot];
  a.calls.fetch_add(1, kRelaxed);
  if (grpc_code != 0) a.errors.fetch_add(1, kRelaxed);
  if (degraded) a.degraded.fetch_add(1, kRelaxed);
  a.latency.Observe(micros);
  if (objectives > 0 && mean_predictions != nullptr) {
    a.predicted.fetch_add(1, kRelaxed);
    for (int o = 0; o < std::min(objectives, kMaxObjectives); ++o) {
      const float v = mean_predictions[o];
      if (!std::isfinite(v)) continue;
      a.predicted_micros[o].fetch_add(std::llround(double(v) * 1e6), kRelaxed);
    }
  }
}

ArmTotals ServerMetrics::ReadArm(int slot) const {
  ArmTotals t;
  if (slot < 0 || slot >= kMaxArms) return t;
  for (const Shard& shard : shards_) {
    const Shard::Arm& a = shard.arms[slot];
    t.calls += a.calls.load(kRelaxed);
    t.errors += a.errors.load(kRelaxed);
    t.degraded += a.degraded.load(kRelaxed);
    a.latency.AddTo(&t.latency);
  }
  return t;
}

void ServerMetrics::RecordGuardrailTrip(int slot, const std::string& limit) {
  MutexLock lock(&mu_);
  ++guardrail_trips_[{slot, limit}];
}

uint64_t ServerMetrics::guardrail_trips(int slot) const {
  MutexLock lock(&mu_);
  uint64_t n = 0;
  for (const auto& [key, count] : guardrail_trips_) {
    if (key.first == slot) n += count;
  }
  return n;
}

void ServerMetrics::SetReverted(std::function<std::vector<RevertedArmLabels>()> read) {
  MutexLock lock(&mu_);
  reverted_ = std::move(read);
}

void ServerMetrics::RecordConfigRefusal(const std::string& source,
                                        const std::string& reason) {
  MutexLock lock(&mu_);
  ++config_refusals_[{source, reason}];
}

uint64_t ServerMetrics::config_refusals(const std::string& source,
                                        const std::string& reason) const {
  MutexLock lock(&mu_);
  auto it = config_refusals_.find({source, reason});
  return it == config_refusals_.end() ? 0 : it->second;
}

void ServerMetrics::SetBundles(std::vector<ServedBundle> bundles) {
  MutexLock lock(&mu_);
  bundles_ = std::move(bundles);
}

int64_t ResidentBytes() {
  long pages_total = 0, pages_resident = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%ld %ld", &pages_total, &pages_resident) != 2)
      pages_resident = 0;
    std::fclose(statm);
  }
  return int64_t(pages_resident) * sysconf(_SC_PAGESIZE);
}

std::string ConfigRefusalReason(const absl::Status& status) {
  const absl::string_view m = status.message();
  auto has = [&](absl::string_view s) { return absl::StrContains(m, s); };
  // Most specific first: a message may name a range and a bundle at once.
  if (has("guardrail")) return "guardrail";
  if (has("overlaps")) return "overlap";
  if (has("are in no arm") || has("is not within the experiment")) return "arms_split";
  if (has("salt")) return "salt";
  if (has("a field belongs to one layer")) return "field_conflict";
  if (has("is not an objective")) return "unknown_objective";
  if (has("is not among bundles")) return "unknown_bundle";
  if (has("is not one of its arms")) return "unknown_arm";
  if (has("bundles[") || has("bundle dir")) return "bundle";
  if (has("is outside") || has("must be") || has("exceeds") || has("are all 0") ||
      has("is not finite") || has("is empty") || has("more than")) {
    return "out_of_range";
  }
  // TextFormat's errors: "line:column: message" (unknown fields among them).
  if (has("Message type") || has("Expected") || has("Unknown") || has("parse") ||
      has("textproto")) {
    return "parse";
  }
  return "other";
}

uint64_t ServerMetrics::calls(Method method, int grpc_code) const {
  return Sum([&](const Shard& s) -> const std::atomic<uint64_t>& {
    return s.calls[static_cast<int>(method)][grpc_code];
  });
}

uint64_t ServerMetrics::rankings() const {
  return Sum([](const Shard& s) -> const std::atomic<uint64_t>& { return s.rankings; });
}

std::vector<MetricFamily> ServerMetrics::Collect() const {
  std::vector<MetricFamily> out;
  {
    MetricFamily f =
        Family("feedrank_requests_total",
               "Calls finished, by method and gRPC status code.", MetricType::Counter);
    for (int m = 0; m < kMethods; ++m) {
      for (int c = 0; c < kCodes; ++c) {
        const uint64_t n = calls(Method(m), c);
        // OK always, other codes once seen: a stable, short exposition.
        if (n == 0 && c != 0) continue;
        ClientMetric s =
            Sample({{"method", MethodName(Method(m))}, {"code", StatusCodeName(c)}});
        s.counter.value = double(n);
        f.metric.push_back(std::move(s));
      }
    }
    out.push_back(std::move(f));
  }
  {
    MetricFamily f = Family("feedrank_request_duration_seconds",
                            "Time from a call's arrival to its answer, by method.",
                            MetricType::Histogram);
    for (int m = 0; m < kMethods; ++m) {
      ClientMetric s = Sample({{"method", MethodName(Method(m))}});
      s.histogram = SumHistogram([m](const Shard& x) -> const DurationHistogram& {
                      return x.call_seconds[m];
                    }).Exposition();
      f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(f));
  }
  {
    MetricFamily f =
        Family("feedrank_stage_duration_seconds",
               "Time of each ranking stage, per ranked call.", MetricType::Histogram);
    for (int i = 0; i < kStages; ++i) {
      ClientMetric s = Sample({{"stage", RankStageName(RankStage(i))}});
      s.histogram = SumHistogram([i](const Shard& x) -> const DurationHistogram& {
                      return x.stage_seconds[i];
                    }).Exposition();
      f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(f));
  }
  auto counter = [&](const char* name, const char* help, uint64_t value) {
    MetricFamily f = Family(name, help, MetricType::Counter);
    ClientMetric s;
    s.counter.value = double(value);
    f.metric.push_back(std::move(s));
    out.push_back(std::move(f));
  };
  auto sum = [&](auto get) {
    return Sum([&](const Shard& x) -> const std::atomic<uint64_t>& { return get(x); });
  };
  counter("feedrank_rankings_total", "Calls that were ranked (answered OK).", rankings());
  {
    MetricFamily f =
        Family("feedrank_degraded_total",
               "Ranked calls answered with less work, by cause.", MetricType::Counter);
    for (int c = 0; c < kCauses; ++c) {
      ClientMetric s = Sample({{"cause", DegradeCauseName(DegradeCause(c))}});
      s.counter.value = double(sum(
          [c](const Shard& x) -> const std::atomic<uint64_t>& { return x.degraded[c]; }));
      f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(f));
  }
  counter(
      "feedrank_cold_start_total", "Ranked calls for users the bundle does not know.",
      sum([](const Shard& x) -> const std::atomic<uint64_t>& { return x.cold_start; }));
  counter("feedrank_ann_exact_fallback_total",
          "ANN searches that fell back to an exact scan (very selective exclude lists).",
          sum([](const Shard& x) -> const std::atomic<uint64_t>& {
            return x.exact_fallbacks;
          }));
  {
    MetricFamily f =
        Family("feedrank_candidates_total",
               "Candidates per source: returned by the source (retrieved) and "
               "left after dedup and the exclude list (kept).",
               MetricType::Counter);
    for (int i = 0; i < kSources; ++i) {
      for (int k = 0; k < 2; ++k) {
        ClientMetric s = Sample(
            {{"source", kSourceNames[i]}, {"phase", k == 0 ? "retrieved" : "kept"}});
        s.counter.value =
            double(sum([i, k](const Shard& x) -> const std::atomic<uint64_t>& {
              return x.candidates[i][k];
            }));
        f.metric.push_back(std::move(s));
      }
    }
    out.push_back(std::move(f));
  }
  counter("feedrank_scored_candidates_total", "Candidates that went through the model.",
          sum([](const Shard& x) -> const std::atomic<uint64_t>& { return x.scored; }));
  counter("feedrank_creator_capped_total", "Items left off pages by the per-creator cap.",
          sum([](const Shard& x) -> const std::atomic<uint64_t>& {
            return x.creator_capped;
          }));
  {
    MetricFamily f = Family("feedrank_in_flight_calls",
                            "Calls received and not yet answered.", MetricType::Gauge);
    ClientMetric s;
    int64_t in_flight = 0;
    for (const Shard& x : shards_) in_flight += x.in_flight.load(kRelaxed);
    s.gauge.value = double(in_flight);
    f.metric.push_back(std::move(s));
    out.push_back(std::move(f));
  }
  {
    MetricFamily f =
        Family("feedrank_loads_total", "Loads of bundles and configs, by outcome.",
               MetricType::Counter);
    MetricFamily d = Family("feedrank_load_duration_seconds",
                            "Time of each load (read, validate, warm, calibrate).",
                            MetricType::Histogram);
    MetricFamily t =
        Family("feedrank_last_load_timestamp_seconds",
               "When the last successful load of each kind ended.", MetricType::Gauge);
    for (int k = 0; k < kKinds; ++k) {
      for (int o = 0; o < kOutcomes; ++o) {
        ClientMetric s = Sample({{"kind", kKindNames[k]}, {"outcome", kOutcomeNames[o]}});
        s.counter.value = double(loads_[k][o].load(kRelaxed));
        f.metric.push_back(std::move(s));
      }
      ClientMetric h = Sample({{"kind", kKindNames[k]}});
      h.histogram = load_seconds_[k].Snapshot();
      d.metric.push_back(std::move(h));
      ClientMetric g = Sample({{"kind", kKindNames[k]}});
      g.gauge.value = double(last_load_unix_ms_[k].load(kRelaxed)) / 1000.0;
      t.metric.push_back(std::move(g));
    }
    out.push_back(std::move(f));
    out.push_back(std::move(d));
    out.push_back(std::move(t));
  }
  std::function<double()> queue_depth;
  std::function<RequestLogCounts()> request_log_counts;
  std::function<LiveCounts()> live_counts;
  {
    MutexLock lock(&mu_);
    MetricFamily b =
        Family("feedrank_bundle_info", "The bundle served (value 1).", MetricType::Gauge);
    if (!bundle_version_.empty()) {
      ClientMetric s = Sample({{"version", bundle_version_}, {"dir", bundle_dir_}});
      s.gauge.value = 1;
      b.metric.push_back(std::move(s));
    }
    out.push_back(std::move(b));
    MetricFamily c = Family("feedrank_config_info",
                            "The ranking config served (value 1).", MetricType::Gauge);
    if (!bundle_version_.empty()) {
      ClientMetric s = Sample({{"version", config_version_}});
      s.gauge.value = 1;
      c.metric.push_back(std::move(s));
    }
    out.push_back(std::move(c));
    queue_depth = queue_depth_;
    request_log_counts = request_log_counts_;
    live_counts = live_counts_;
  }
  if (live_counts) {
    const LiveCounts c = live_counts();
    auto one = [&](const char* name, const char* help, MetricType type, double value) {
      MetricFamily f = Family(name, help, type);
      ClientMetric s;
      (type == MetricType::Counter ? s.counter.value : s.gauge.value) = value;
      f.metric.push_back(std::move(s));
      out.push_back(std::move(f));
    };
    MetricFamily b = Family("feedrank_live_batches_total",
                            "Live update batches (FeedAdmin Upsert/Delete calls), by "
                            "outcome: applied, or refused (a bad batch, or the update "
                            "log could not take it).",
                            MetricType::Counter);
    for (const auto& [outcome, n] :
         {std::pair<const char*, int64_t>{"applied", c.batches},
          {"refused", c.refused}}) {
      ClientMetric s = Sample({{"outcome", outcome}});
      s.counter.value = double(n);
      b.metric.push_back(std::move(s));
    }
    out.push_back(std::move(b));
    one("feedrank_live_log_failures_total",
        "Batches refused because the update log could not write or sync them.",
        MetricType::Counter, double(c.log_failures));
    one("feedrank_live_delta_videos", "Videos in the live delta (not yet compacted).",
        MetricType::Gauge, double(c.delta_videos));
    one("feedrank_live_tombstones",
        "Rows deleted or replaced by live updates (base and delta rows; compaction drops "
        "them).",
        MetricType::Gauge, double(c.tombstones));
    one("feedrank_live_delta_users", "Users with a live embedding (not yet compacted).",
        MetricType::Gauge, double(c.delta_users));
    one("feedrank_wal_bytes", "Bytes of the update log on disk.", MetricType::Gauge,
        double(c.wal_bytes));
    one("feedrank_wal_last_sequence", "Sequence number of the last logged batch.",
        MetricType::Gauge, double(c.wal_last_sequence));
    MetricFamily k =
        Family("feedrank_compactions_total",
               "Compactions of the live delta into a new bundle, by outcome.",
               MetricType::Counter);
    for (const auto& [outcome, n] : {std::pair<const char*, int64_t>{"ok", c.compactions},
                                     {"failed", c.compaction_failures}}) {
      ClientMetric s = Sample({{"outcome", outcome}});
      s.counter.value = double(n);
      k.metric.push_back(std::move(s));
    }
    out.push_back(std::move(k));
    one("feedrank_compaction_last_seconds", "How long the last compaction took.",
        MetricType::Gauge, c.last_compaction_seconds);
  }
  {
    MetricFamily f = Family("feedrank_queue_depth", "Calls waiting for a ranking thread.",
                            MetricType::Gauge);
    ClientMetric s;
    s.gauge.value = queue_depth ? queue_depth() : 0;
    f.metric.push_back(std::move(s));
    out.push_back(std::move(f));
  }
  if (request_log_counts) {
    const RequestLogCounts c = request_log_counts();
    MetricFamily f = Family("feedrank_request_log_records_total",
                            "Sampled calls for the request log, by outcome: written, "
                            "dropped (queue full) or failed (write error).",
                            MetricType::Counter);
    for (const auto& [outcome, n] :
         {std::pair<const char*, int64_t>{"written", c.written},
          {"dropped", c.dropped},
          {"failed", c.failed}}) {
      ClientMetric s = Sample({{"outcome", outcome}});
      s.counter.value = double(n);
      f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(f));
  }
  {
    std::vector<ArmLabels> arm_labels;
    std::vector<std::string> objectives;
    std::map<std::pair<int, std::string>, uint64_t> trips;
    std::function<std::vector<RevertedArmLabels>()> reverted;
    std::map<std::pair<std::string, std::string>, uint64_t> refusals;
    std::vector<ServedBundle> bundles;
    {
      MutexLock lock(&mu_);
      arm_labels = arm_labels_;
      objectives = objectives_;
      trips = guardrail_trips_;
      reverted = reverted_;
      refusals = config_refusals_;
      bundles = bundles_;
    }
    auto arm_sample = [&](int slot) {
      const ArmLabels& l = arm_labels[slot];
      return Sample({{"layer", l.layer}, {"experiment", l.experiment}, {"arm", l.arm}});
    };
    MetricFamily calls_f =
        Family("feedrank_arm_requests_total",
               "Calls answered per experiment arm (pinned calls excluded), any code.",
               MetricType::Counter);
    MetricFamily errors_f = Family("feedrank_arm_errors_total",
                                   "Calls of an arm that failed after the arm was "
                                   "assigned (pinned calls excluded).",
                                   MetricType::Counter);
    MetricFamily degraded_f =
        Family("feedrank_arm_degraded_total",
               "Answers of an arm marked degraded (pinned calls excluded).",
               MetricType::Counter);
    MetricFamily latency_f = Family("feedrank_arm_request_duration_seconds",
                                    "Time from arrival to answer per arm (pinned calls "
                                    "excluded).",
                                    MetricType::Histogram);
    MetricFamily pred_sum = Family("feedrank_arm_predicted_value_sum",
                                   "Sum over an arm's answers of the mean prediction of "
                                   "an objective over the page; divide by "
                                   "feedrank_arm_predicted_value_count for the mean.",
                                   MetricType::Counter);
    MetricFamily pred_count =
        Family("feedrank_arm_predicted_value_count",
               "Answers of an arm with model predictions.", MetricType::Counter);
    for (int slot = 0; slot < static_cast<int>(arm_labels.size()); ++slot) {
      uint64_t n = 0, e = 0, d = 0, p = 0;
      std::array<int64_t, kMaxObjectives> micros{};
      DurationHistogram::Totals latency;
      for (const Shard& shard : shards_) {
        const Shard::Arm& a = shard.arms[slot];
        n += a.calls.load(kRelaxed);
        e += a.errors.load(kRelaxed);
        d += a.degraded.load(kRelaxed);
        p += a.predicted.load(kRelaxed);
        for (int o = 0; o < kMaxObjectives; ++o)
          micros[o] += a.predicted_micros[o].load(kRelaxed);
        a.latency.AddTo(&latency);
      }
      ClientMetric s = arm_sample(slot);
      s.counter.value = double(n);
      calls_f.metric.push_back(s);
      s.counter.value = double(e);
      errors_f.metric.push_back(s);
      s.counter.value = double(d);
      degraded_f.metric.push_back(s);
      ClientMetric h = arm_sample(slot);
      h.histogram = latency.Exposition();
      latency_f.metric.push_back(std::move(h));
      s.counter.value = double(p);
      pred_count.metric.push_back(s);
      for (size_t o = 0; o < objectives.size(); ++o) {
        ClientMetric v = arm_sample(slot);
        v.label.push_back({"objective", objectives[o]});
        v.counter.value = double(micros[o]) * 1e-6;
        pred_sum.metric.push_back(std::move(v));
      }
    }
    for (MetricFamily* f :
         {&calls_f, &errors_f, &degraded_f, &latency_f, &pred_sum, &pred_count}) {
      out.push_back(std::move(*f));
    }
    MetricFamily trips_f = Family("feedrank_guardrail_trips_total",
                                  "Guardrail trips per arm and limit broken (p99, "
                                  "error_rate, degraded_share).",
                                  MetricType::Counter);
    for (const auto& [key, count] : trips) {
      if (key.first < 0 || key.first >= static_cast<int>(arm_labels.size())) continue;
      ClientMetric s = arm_sample(key.first);
      s.label.push_back({"limit", key.second});
      s.counter.value = double(count);
      trips_f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(trips_f));
    MetricFamily reverted_f =
        Family("feedrank_arm_reverted",
               "Arms a guardrail reverted: their users are served as reverted_to "
               "(value 1).",
               MetricType::Gauge);
    if (reverted) {
      for (const RevertedArmLabels& r : reverted()) {
        ClientMetric s = Sample({{"layer", r.arm.layer},
                                 {"experiment", r.arm.experiment},
                                 {"arm", r.arm.arm},
                                 {"reverted_to", r.reverted_to}});
        s.gauge.value = 1;
        reverted_f.metric.push_back(std::move(s));
      }
    }
    out.push_back(std::move(reverted_f));
    MetricFamily refusals_f = Family("feedrank_config_refusals_total",
                                     "Configs refused, by source (file, admin) and "
                                     "reason; the previous config kept serving.",
                                     MetricType::Counter);
    for (const auto& [key, count] : refusals) {
      ClientMetric s = Sample({{"source", key.first}, {"reason", key.second}});
      s.counter.value = double(count);
      refusals_f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(refusals_f));
    MetricFamily bytes_f = Family("feedrank_bundle_file_bytes",
                                  "Bytes of each bundle served side by side (its files, "
                                  "held in memory).",
                                  MetricType::Gauge);
    for (const ServedBundle& b : bundles) {
      ClientMetric s =
          Sample({{"bundle", b.name}, {"version", b.version}, {"dir", b.dir}});
      s.gauge.value = double(b.file_bytes);
      bytes_f.metric.push_back(std::move(s));
    }
    out.push_back(std::move(bytes_f));
  }
  {
    // As the Prometheus client libraries name it: from /proc/self/statm.
    MetricFamily f = Family("process_resident_memory_bytes",
                            "Resident memory of the server process.", MetricType::Gauge);
    ClientMetric s;
    s.gauge.value = double(ResidentBytes());
    f.metric.push_back(std::move(s));
    out.push_back(std::move(f));
  }
  {
    MetricFamily f = Family("feedrank_start_timestamp_seconds",
                            "When the server started.", MetricType::Gauge);
    ClientMetric s;
    s.gauge.value = double(start_unix_ms_) / 1000.0;
    f.metric.push_back(std::move(s));
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace feedrank

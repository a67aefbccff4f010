// Ranker: one feed request, from user id to a ranked page, in plain C++ (no
// gRPC) so the server and offline replay run the same code.
//
//   user lookup (cold start: mean user) -> exclude list -> candidate sources
//   (ANN, popular, fresh) -> dedup -> features -> one batched model pass ->
//   value model (+ freshness boost) -> per-creator cap -> top `count`.
//
// The deadline sets the budget: before each costly stage the ranker compares
// the time left with the stage's measured cost (RankerCosts) and shrinks or
// skips it, marking the result degraded, rather than answer late.
//
// Thread-safety: immutable; Rank may run concurrently from any thread (each
// thread keeps its own scratch memory, so a warm thread allocates nothing
// beyond the result's own vectors).
#ifndef FEEDRANK_RANKING_RANKER_H_
#define FEEDRANK_RANKING_RANKER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "ranking/bundle.h"
#include "ranking/features.h"
#include "ranking/options.h"

namespace feedrank {

using SteadyTime = std::chrono::steady_clock::time_point;

enum class CandidateSource { kAnn = 1, kPopular = 2, kFresh = 3, kColdStart = 4 };

const char* SourceName(CandidateSource source);

struct RankRequest {
  uint64_t user_id = 0;
  // Page size; unset = options.default_count.
  std::optional<int> count;
  absl::Span<const uint64_t> exclude_ids;
  FeatureContext context;
  bool debug = false;
  // No deadline by default.
  SteadyTime deadline = SteadyTime::max();
};

struct RankedVideo {
  uint64_t video_id;
  uint64_t creator_id;
  float score;
  CandidateSource source;
};

struct StageTime {
  const char* stage;
  int64_t micros;
};

struct RankDebug {
  int ann_candidates = 0;
  int popular_candidates = 0;
  int fresh_candidates = 0;
  int scored_candidates = 0;
  int excluded = 0;
  int creator_capped = 0;
  bool exclude_pushed_down = false;
  int ann_beam_width = 0;
  std::vector<StageTime> stages;
};

struct RankResult {
  std::vector<RankedVideo> items;
  // items.size() x num_objectives, row-major; empty when the model was
  // skipped for lack of time.
  std::vector<float> predictions;
  bool cold_start = false;
  bool degraded = false;
  std::string degraded_reason;
  RankDebug debug;  // filled when RankRequest.debug is set
};

// Measured costs that drive the deadline budget. Calibrate() measures them;
// tests may set them.
struct RankerCosts {
  // Features + model, per candidate row.
  double score_ns_per_row = 1000;
  // One ANN search with the configured options.
  double ann_micros = 500;
  // Kept free for assembling and sending the response.
  double reserve_micros = 200;
};

class Ranker {
 public:
  Ranker(std::shared_ptr<const Bundle> bundle, RankingOptions options,
         RankerCosts costs);

  // Ranks one page. Errors (nothing else is changed):
  //   InvalidArgument   count outside [1, max_count] or too many exclude ids;
  //                     the message names the field.
  //   DeadlineExceeded  the deadline passed before ranking started.
  absl::Status Rank(const RankRequest& request, RankResult* result) const;

  // Touches the bundle's memory, then measures the costs of this bundle and
  // options on this machine by running a few rankings (which also warms the
  // calling thread's scratch).
  static RankerCosts Calibrate(std::shared_ptr<const Bundle> bundle,
                               const RankingOptions& options);

  const Bundle& bundle() const { return *bundle_; }
  const std::shared_ptr<const Bundle>& bundle_ptr() const { return bundle_; }
  const RankingOptions& options() const { return options_; }
  const RankerCosts& costs() const { return costs_; }

 private:
  std::shared_ptr<const Bundle> bundle_;
  RankingOptions options_;
  RankerCosts costs_;
};

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_RANKER_H_

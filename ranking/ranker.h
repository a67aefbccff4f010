// Ranker: one feed request, from the viewer to a ranked page, in plain C++
// (no gRPC), as named stages over one per-request CandidateBatch:
//
//   Retrieve  exclude list -> sources (ANN over the view, popular, fresh) ->
//             dedup -> candidates with their source and retrieval score
//   Score     features -> one batched model pass -> value model (+ freshness)
//   Assemble  order -> per-creator cap -> the page of `count`
//
// Rank() runs the three; the server, offline replay, a shard (Retrieve +
// Score over its slice) and a root (Assemble over merged shard results) call
// the same functions. What is ranked is a CatalogView (base catalogue, delta,
// tombstones); the Ranker itself holds what does not change with the
// catalogue: the model, the options and the measured costs.
//
// The deadline sets the budget: before each costly stage the ranker compares
// the time left (on the injected Clock) with the stage's measured cost
// (RankerCosts) and shrinks or skips it, marking the result degraded, rather
// than answer late.
//
// Stage timings and candidate counts are always recorded in RankStats (a
// fixed-size struct), for metrics and debug output alike.
//
// Thread-safety: immutable; Rank and the stages may run concurrently from any
// thread. Rank keeps per-thread scratch memory: A WARM THREAD ALLOCATES
// NOTHING BUT THE RESULT'S OWN VECTORS AND STRINGS, and nothing at all when
// the caller reuses its RankResult (tests/ranking/allocation_test.cc).
#ifndef FEEDRANK_RANKING_RANKER_H_
#define FEEDRANK_RANKING_RANKER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/env.h"
#include "embeddings/catalog_view.h"
#include "ranking/bundle.h"
#include "ranking/features.h"
#include "ranking/options.h"

namespace feedrank {

enum class CandidateSource : uint8_t {
  kAnn = 1,
  kPopular = 2,
  kFresh = 3,
  kColdStart = 4,
  kTrending = 5
};

// Why a page was ranked with less work; a bit set in RankResult.
enum class DegradeCause : uint8_t {
  kAnnSkipped = 0,    // no time for the ANN search: popular and fresh only
  kRerankShrunk = 1,  // the model scored only the best-retrieved candidates
  kModelSkipped = 2,  // no time for the model: retrieval order
  kNumCauses = 3,
};
// Stable lower-case name, e.g. "ann_skipped" (a metric label).
const char* DegradeCauseName(DegradeCause cause);

enum class RankStage : uint8_t {
  kPrepare = 0,   // exclude list -> rows
  kAnn = 1,       // the ANN source
  kLists = 2,     // the popular, fresh and trending sources
  kFeatures = 3,  // feature rows
  kModel = 4,     // model pass and value model
  kAssemble = 5,  // order, creator cap, page
  kNumStages = 6,
};
// Stable lower-case name, e.g. "ann".
const char* RankStageName(RankStage stage);

struct RankRequest {
  uint64_t user_id = 0;
  // Page size; unset = options.default_count. Checked against
  // [1, max_count] as given (no clamping).
  std::optional<int64_t> count;
  absl::Span<const uint64_t> exclude_ids;
  FeatureContext context;
  // No deadline by default.
  SteadyTime deadline = SteadyTime::max();
};

struct RankedVideo {
  uint64_t video_id;
  uint64_t creator_id;
  float score;
  CandidateSource source;
};

// What one ranking did; always filled.
struct RankStats {
  // Time spent in each stage (0 for a stage that did not run).
  int64_t stage_micros[static_cast<int>(RankStage::kNumStages)] = {};
  // What each source returned, before dedup and filtering.
  int32_t ann_retrieved = 0;
  int32_t popular_retrieved = 0;
  int32_t fresh_retrieved = 0;
  int32_t trending_retrieved = 0;
  // What each source contributed, after dedup and the exclude list.
  int32_t ann_kept = 0;
  int32_t popular_kept = 0;
  int32_t fresh_kept = 0;
  int32_t trending_kept = 0;
  // Candidates of the sources dropped by the request's exclude list (an
  // exclude list pushed into the ANN search never reaches this count for
  // ANN: those rows are not returned at all).
  int32_t excluded = 0;
  // Candidates that went through the model.
  int32_t scored = 0;
  // Items left off the page by the per-creator cap.
  int32_t creator_capped = 0;
  bool exclude_pushed_down = false;
  // The ANN search's beam width / nprobe as used, and whether it fell back
  // to an exact scan.
  SearchStats search;

  int64_t micros(RankStage stage) const { return stage_micros[static_cast<int>(stage)]; }
};

struct RankResult {
  std::vector<RankedVideo> items;
  // items.size() x num_objectives, row-major; empty when the model was
  // skipped for lack of time.
  std::vector<float> predictions;
  bool cold_start = false;
  // Bit set of DegradeCause; 0 = not degraded.
  uint32_t degrade_causes = 0;
  // Human-readable account of the causes, with the numbers; empty when not
  // degraded.
  std::string degraded_reason;
  RankStats stats;

  bool degraded() const { return degrade_causes != 0; }
  bool has_cause(DegradeCause cause) const {
    return (degrade_causes >> static_cast<int>(cause)) & 1;
  }
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

struct RankerOptions {
  RankingOptions ranking;
  RankerCosts costs;
  // Time source of the deadline budget and stage timings. Borrowed; must
  // outlive the Ranker. Default: the real clock.
  const Clock* clock = Clock::Real();
};

// A candidate between stages.
struct Candidate {
  // Row of the view the candidate came from; -1 for a candidate that came
  // from elsewhere (a root merging shard results), which then carries its
  // ids below.
  int32_t row = -1;
  CandidateSource source = CandidateSource::kAnn;
  float retrieval_score = 0;
  // Value-model score (retrieval score when unscored), plus freshness.
  float score = 0;
  // Row of its predictions in CandidateBatch::predictions, -1 = unscored.
  int32_t prediction = -1;
  uint64_t video_id = 0;    // only when row < 0
  uint64_t creator_id = 0;  // only when row < 0
};

class CreatorCounter;

// One request's candidates as they pass through the stages, and the
// per-thread memory the stages reuse (allocation-free once warm). Not
// thread-safe; one per thread (Rank keeps a thread_local one).
struct CandidateBatch {
  CandidateBatch();
  ~CandidateBatch();
  CandidateBatch(const CandidateBatch&) = delete;
  CandidateBatch& operator=(const CandidateBatch&) = delete;

  // Set by Retrieve (or by a root from its shards' answers).
  UserQuery user;
  std::vector<Candidate> candidates;  // retrieval order
  AlignedVector<float> predictions;   // one row of `heads` per scored candidate
  int heads = 0;
  RankStats stats;
  uint32_t degrade_causes = 0;
  std::string degraded_reason;

  // Scratch.
  SearchScratch search;
  MarkTable excluded_marks;
  MarkTable taken_marks;
  std::vector<Hit> hits;
  std::vector<int32_t> rows;
  AlignedVector<float> features;
  std::vector<float> history;  // the user's history mean (dim)
  ModelScratch model;
  std::vector<int32_t> order;
  std::vector<int32_t> capped;
  std::unique_ptr<CreatorCounter> creators;

  // Forgets the previous request (keeps the memory).
  void Clear();
};

class Ranker {
 public:
  // Checks `options` against the bundle: one objective weight per model
  // head, an ANN index when ann_candidates > 0, a clock. Errors:
  // InvalidArgument naming the problem.
  static absl::StatusOr<std::unique_ptr<Ranker>> Create(
      std::shared_ptr<const Bundle> bundle, RankerOptions options);

  // Ranks one page against `view`. Errors (nothing else is changed):
  //   InvalidArgument     count outside [1, max_count] or too many exclude
  //                       ids; the message names the field.
  //   DeadlineExceeded    the deadline passed before ranking started.
  //   FailedPrecondition  `view` has another embedding dimension than the
  //                       model's features.
  absl::Status Rank(const CatalogView& view, const RankRequest& request,
                    RankResult* result) const;
  // The same against the bundle's own catalogue (no live updates).
  absl::Status Rank(const RankRequest& request, RankResult* result) const {
    return Rank(*bundle_->view, request, result);
  }

  // The stages. Each REQUIRES the previous one's output in `batch`.
  //
  // The checks of Rank (field ranges, deadline, view), with `now` the start.
  absl::Status Validate(const CatalogView& view, const RankRequest& request,
                        SteadyTime now) const;
  // The viewer as `view` knows them (cold start: the mean user) into
  // `batch->user`, with their history as of the request time when the
  // model's features use it.
  void LookUpUser(const CatalogView& view, const RankRequest& request,
                  CandidateBatch* batch) const;
  // Candidates for `batch->user` from the sources, in retrieval order,
  // deduplicated, without excluded or tombstoned rows.
  void Retrieve(const CatalogView& view, const RankRequest& request,
                CandidateBatch* batch) const;
  // Features, model and value model for as many candidates as the deadline
  // allows (the rest keep their retrieval score), then the freshness boost.
  void Score(const CatalogView& view, const RankRequest& request,
             CandidateBatch* batch) const;
  // Orders the candidates, applies the creator cap and writes the page.
  // `view` (null at a root) resolves the ids of candidates with a row.
  void Assemble(const CatalogView* view, const RankRequest& request,
                CandidateBatch* batch, RankResult* result) const;

  // Touches the bundle's memory, then measures the costs of this bundle and
  // options on this machine by running a few rankings on `clock` (which
  // also warms the calling thread's scratch).
  static RankerCosts Calibrate(std::shared_ptr<const Bundle> bundle,
                               const RankingOptions& options,
                               const Clock* clock = Clock::Real());

  const Bundle& bundle() const { return *bundle_; }
  const std::shared_ptr<const Bundle>& bundle_ptr() const { return bundle_; }
  const RankingOptions& options() const { return options_.ranking; }
  const RankerCosts& costs() const { return options_.costs; }

 private:
  Ranker(std::shared_ptr<const Bundle> bundle, RankerOptions options)
      : bundle_(std::move(bundle)), options_(std::move(options)) {}

  std::shared_ptr<const Bundle> bundle_;
  RankerOptions options_;
};

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_RANKER_H_

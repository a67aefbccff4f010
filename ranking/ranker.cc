#include "ranking/ranker.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/simd.h"

namespace feedrank {

// Per-creator item counts of one page, allocation-free once warm: an
// open-addressing table sized for the largest page, reset in O(1) per page by
// a generation tag. At most `count` distinct creators are inserted per page
// (a creator is inserted only by adding its first item).
class CreatorCounter {
 public:
  // Starts a page of at most `max_items` items.
  void Begin(size_t max_items) {
    size_t capacity = 64;
    while (capacity < 2 * max_items) capacity *= 2;
    if (keys_.size() < capacity) {
      keys_.assign(capacity, 0);
      counts_.assign(capacity, 0);
      tags_.assign(capacity, 0);
      generation_ = 0;
    }
    mask_ = keys_.size() - 1;
    if (++generation_ == 0) {
      std::fill(tags_.begin(), tags_.end(), 0);
      generation_ = 1;
    }
  }
  // Items of `creator` on the page so far (a reference to update).
  uint16_t& Count(uint64_t creator) {
    size_t slot = (creator * 0x9E3779B97F4A7C15ull) >> 32 & mask_;
    while (tags_[slot] == generation_ && keys_[slot] != creator)
      slot = (slot + 1) & mask_;
    if (tags_[slot] != generation_) {
      tags_[slot] = generation_;
      keys_[slot] = creator;
      counts_[slot] = 0;
    }
    return counts_[slot];
  }

 private:
  std::vector<uint64_t> keys_;
  std::vector<uint16_t> counts_;
  std::vector<uint32_t> tags_;
  uint32_t generation_ = 0;
  size_t mask_ = 0;
};

namespace {

double MicrosUntil(SteadyTime deadline, SteadyTime now) {
  if (deadline == SteadyTime::max()) return 1e18;
  return std::chrono::duration<double, std::micro>(deadline - now).count();
}

// Stage timer: each Lap() charges the time since the previous one to a stage.
class StageClock {
 public:
  StageClock(const Clock* clock, RankStats* stats)
      : clock_(clock), stats_(stats), last_(clock->Now()) {}
  SteadyTime last() const { return last_; }
  void Lap(RankStage stage) {
    const SteadyTime now = clock_->Now();
    stats_->stage_micros[static_cast<int>(stage)] += MicrosBetween(last_, now);
    last_ = now;
  }

 private:
  const Clock* clock_;
  RankStats* stats_;
  SteadyTime last_;
};

CandidateBatch& ThreadBatch() {
  thread_local CandidateBatch batch;
  return batch;
}

// Marks `cause` and appends its account to the reason text (in place: no
// temporary strings).
template <typename... Parts>
void DegradeBatch(CandidateBatch* batch, DegradeCause cause, const Parts&... parts) {
  batch->degrade_causes |= 1u << static_cast<int>(cause);
  if (!batch->degraded_reason.empty()) batch->degraded_reason.append("; ");
  absl::StrAppend(&batch->degraded_reason, parts...);
}

}  // namespace

const char* DegradeCauseName(DegradeCause cause) {
  switch (cause) {
    case DegradeCause::kAnnSkipped:
      return "ann_skipped";
    case DegradeCause::kRerankShrunk:
      return "rerank_shrunk";
    case DegradeCause::kModelSkipped:
      return "model_skipped";
    case DegradeCause::kNumCauses:
      break;
  }
  return "unknown";
}

const char* RankStageName(RankStage stage) {
  switch (stage) {
    case RankStage::kPrepare:
      return "prepare";
    case RankStage::kAnn:
      return "ann";
    case RankStage::kLists:
      return "lists";
    case RankStage::kFeatures:
      return "features";
    case RankStage::kModel:
      return "model";
    case RankStage::kAssemble:
      return "assemble";
    case RankStage::kNumStages:
      break;
  }
  return "unknown";
}

CandidateBatch::CandidateBatch() : creators(std::make_unique<CreatorCounter>()) {}
CandidateBatch::~CandidateBatch() = default;

void CandidateBatch::Clear() {
  user = UserQuery();
  candidates.clear();
  heads = 0;
  stats = RankStats();
  degrade_causes = 0;
  degraded_reason.clear();
}

absl::StatusOr<std::unique_ptr<Ranker>> Ranker::Create(
    std::shared_ptr<const Bundle> bundle, RankerOptions options) {
  if (bundle == nullptr || bundle->model == nullptr || bundle->catalog == nullptr) {
    return absl::InvalidArgumentError("ranker: no bundle");
  }
  if (options.clock == nullptr) return absl::InvalidArgumentError("ranker: no clock");
  const RankingOptions& o = options.ranking;
  const int heads = bundle->model->num_objectives();
  if (static_cast<int>(o.objective_weights.size()) != heads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ranker: ", o.objective_weights.size(), " objective weights for a model with ",
        heads, " objectives; resolve the config against this bundle's model"));
  }
  if (o.ann_candidates > 0 && !bundle->catalog->has_index()) {
    return absl::InvalidArgumentError(
        "ranker: ann_candidates > 0 but the bundle's catalogue has no index");
  }
  if (o.default_count < 1 || o.default_count > o.max_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("ranker: default_count ", o.default_count, " outside [1, max_count ",
                     o.max_count, "]"));
  }
  return std::unique_ptr<Ranker>(new Ranker(std::move(bundle), std::move(options)));
}

absl::Status Ranker::Validate(const CatalogView& view, const RankRequest& request,
                              SteadyTime now) const {
  const RankingOptions& o = options_.ranking;
  const int64_t count = request.count.value_or(o.default_count);
  if (count < 1 || count > o.max_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("count: ", count, " is outside [1, ", o.max_count, "]"));
  }
  if (request.exclude_ids.size() > size_t(o.max_exclude_ids)) {
    return absl::InvalidArgumentError(
        absl::StrCat("exclude_ids: ", request.exclude_ids.size(), " ids, at most ",
                     o.max_exclude_ids, " are allowed"));
  }
  if (now >= request.deadline) {
    return absl::DeadlineExceededError("deadline passed before ranking started");
  }
  if (view.dim() != static_cast<int>(bundle_->manifest.dim())) {
    return absl::FailedPreconditionError(
        absl::StrCat("catalogue view of dimension ", view.dim(),
                     " for a model of dimension ", bundle_->manifest.dim()));
  }
  return absl::OkStatus();
}

void Ranker::LookUpUser(const CatalogView& view, const RankRequest& request,
                        CandidateBatch* batch) const {
  batch->user = feedrank::LookUpUser(view, request.user_id);
  if (!bundle_->features.uses_engagement()) return;
  AddHistory(view, bundle_->engagement.get(), request.user_id, request.context.now_ms,
             &batch->user, &batch->history);
}

void Ranker::Retrieve(const CatalogView& view, const RankRequest& request,
                      CandidateBatch* batch) const {
  const RankingOptions& o = options_.ranking;
  const RankerCosts& costs = options_.costs;
  RankStats& stats = batch->stats;
  StageClock clock(options_.clock, &stats);
  const UserQuery& user = batch->user;

  // Exclude list, as rows; ids not in the view cannot be returned anyway.
  const int32_t rows = view.num_rows();
  batch->excluded_marks.EnsureSize(rows);
  batch->taken_marks.EnsureSize(rows);
  RowFilter excluded(&batch->excluded_marks);
  for (uint64_t id : request.exclude_ids) {
    if (auto row = view.VideoRow(id)) excluded.Exclude(*row);
  }
  const bool push_down = excluded.count() > size_t(o.exclude_pushdown_threshold);
  stats.exclude_pushed_down = push_down;
  clock.Lap(RankStage::kPrepare);

  std::vector<Candidate>& candidates = batch->candidates;
  RowFilter taken(&batch->taken_marks);
  if (o.ann_candidates > 0) {
    const double left = MicrosUntil(request.deadline, clock.last());
    if (left < costs.ann_micros + costs.reserve_micros) {
      DegradeBatch(batch, DegradeCause::kAnnSkipped, "ann skipped: ", int64_t(left),
                   "us left");
    } else {
      SearchOptions search;
      // A post-filtered exclude list is fetched on top, so the source stays
      // full; tombstones are always filtered inside the search.
      search.k = o.ann_candidates + (push_down ? 0 : static_cast<int>(excluded.count()));
      search.beam_width = o.ann_beam_width;
      search.nprobe = o.ivf_nprobe;
      RowPredicate accept;
      if (push_down) accept.Exclude(&excluded);
      view.Search(user.embedding, search, accept, &batch->search, &batch->hits,
                  &stats.search);
      stats.ann_retrieved = static_cast<int32_t>(batch->hits.size());
      const CandidateSource source =
          user.known ? CandidateSource::kAnn : CandidateSource::kColdStart;
      for (const Hit& hit : batch->hits) {
        if (stats.ann_kept == o.ann_candidates) break;
        if (excluded.Excluded(hit.row)) {
          ++stats.excluded;
          continue;
        }
        Candidate c;
        c.row = hit.row;
        c.source = source;
        c.retrieval_score = hit.score;
        candidates.push_back(c);
        taken.Exclude(hit.row);
        ++stats.ann_kept;
      }
    }
  }
  clock.Lap(RankStage::kAnn);

  const size_t dim = view.dim();
  // Offers `row` from `source`: counted as excluded, skipped as a duplicate,
  // or added. True when added.
  auto offer = [&](int32_t row, CandidateSource source) {
    if (excluded.Excluded(row)) {
      ++stats.excluded;
      return false;
    }
    if (taken.Excluded(row)) return false;
    taken.Exclude(row);
    Candidate c;
    c.row = row;
    c.source = source;
    c.retrieval_score = simd::Dot(user.embedding, view.video_embedding(row), dim);
    candidates.push_back(c);
    return true;
  };
  // Adds up to `want` rows of `list`, resuming after the `*retrieved` rows
  // an earlier pass over it visited (so none is counted twice).
  auto add_list = [&](CatalogView::List list, int want, CandidateSource source,
                      int32_t* retrieved) {
    int32_t added = 0;
    if (want <= 0) return added;
    const int32_t skip = *retrieved;
    int32_t visited = 0;
    view.ForEachListed(list, [&](int32_t row) {
      if (visited++ < skip) return true;
      ++*retrieved;
      added += offer(row, source);
      return added < want;
    });
    return added;
  };
  stats.popular_kept = add_list(CatalogView::List::kPopular, o.popular_candidates,
                                CandidateSource::kPopular, &stats.popular_retrieved);
  stats.fresh_kept = add_list(CatalogView::List::kFresh, o.fresh_candidates,
                              CandidateSource::kFresh, &stats.fresh_retrieved);
  if (o.trending_candidates > 0) {
    const EngagementState::Reader trends(bundle_->engagement.get(),
                                         request.context.now_ms);
    trends.ForEachTrending(view, [&](int32_t row) {
      ++stats.trending_retrieved;
      stats.trending_kept += offer(row, CandidateSource::kTrending);
      return stats.trending_kept < o.trending_candidates;
    });
  }
  // A page holds `count` items unless the catalogue less the exclude list
  // cannot fill it (ranker.proto). When the sources kept fewer candidates
  // than that (an arm with few ANN candidates, a count above them all, ANN
  // skipped for time), the popular list, resumed where it stopped, fills the
  // pool up to it.
  const size_t count = static_cast<size_t>(request.count.value_or(o.default_count));
  if (candidates.size() < count) {
    stats.popular_kept +=
        add_list(CatalogView::List::kPopular, static_cast<int>(count - candidates.size()),
                 CandidateSource::kPopular, &stats.popular_retrieved);
  }
  clock.Lap(RankStage::kLists);
}

void Ranker::Score(const CatalogView& view, const RankRequest& request,
                   CandidateBatch* batch) const {
  const RankingOptions& o = options_.ranking;
  const RankerCosts& costs = options_.costs;
  RankStats& stats = batch->stats;
  StageClock clock(options_.clock, &stats);
  std::vector<Candidate>& candidates = batch->candidates;

  // Rerank as many candidates as the config and the time left allow, in
  // retrieval order.
  size_t rerank = candidates.size();
  if (o.rerank_candidates >= 0 && size_t(o.rerank_candidates) < rerank) {
    rerank = static_cast<size_t>(o.rerank_candidates);
    if (rerank > 0) candidates.resize(rerank);
  }
  if (rerank > 0) {
    const double left =
        MicrosUntil(request.deadline, clock.last()) - costs.reserve_micros;
    const double fits = costs.score_ns_per_row > 0
                            ? std::max(0.0, left) * 1000.0 / costs.score_ns_per_row
                            : 1e18;
    if (fits < double(rerank)) {
      rerank = static_cast<size_t>(fits);
      if (rerank == 0 || rerank < size_t(o.min_rerank_candidates)) {
        DegradeBatch(batch, DegradeCause::kModelSkipped, "model skipped: ", int64_t(left),
                     "us left, room for ", rerank, " candidates, min_rerank_candidates ",
                     o.min_rerank_candidates);
        rerank = 0;
      } else {
        DegradeBatch(batch, DegradeCause::kRerankShrunk, "reranked ", rerank, " of ",
                     candidates.size(), " candidates: ", int64_t(left), "us left");
        candidates.resize(rerank);
      }
    }
  }
  const ScoringModel& model = *bundle_->model;
  const int heads = model.num_objectives();
  batch->heads = heads;
  if (rerank > 0) {
    std::vector<int32_t>& rows = batch->rows;
    rows.resize(rerank);
    for (size_t i = 0; i < rerank; ++i) rows[i] = candidates[i].row;
    const size_t width = bundle_->features.width();
    if (batch->features.size() < rerank * width) batch->features.resize(rerank * width);
    bundle_->features.Build(view, batch->user, request.context, bundle_->engagement.get(),
                            rows, batch->features.data());
    clock.Lap(RankStage::kFeatures);
    if (batch->predictions.size() < rerank * heads)
      batch->predictions.resize(rerank * heads);
    model.Predict(batch->features.data(), static_cast<int>(rerank),
                  batch->predictions.data(), &batch->model, o.scoring_precision);
    const float* weights = o.objective_weights.data();
    for (size_t i = 0; i < rerank; ++i) {
      const float* p = &batch->predictions[i * heads];
      float score = 0;
      for (int h = 0; h < heads; ++h) score += weights[h] * p[h];
      candidates[i].score = score;
      candidates[i].prediction = static_cast<int32_t>(i);
    }
    stats.scored = static_cast<int32_t>(rerank);
  } else {
    for (Candidate& c : candidates) c.score = c.retrieval_score;
  }
  if (o.freshness_boost > 0) {
    const double per_hour = 1.0 / o.freshness_half_life_hours;
    for (Candidate& c : candidates) {
      const double age_hours =
          std::max<int64_t>(0, request.context.now_ms - view.upload_time_ms(c.row)) /
          3.6e6;
      c.score += o.freshness_boost * static_cast<float>(std::exp2(-age_hours * per_hour));
    }
  }
  clock.Lap(RankStage::kModel);
}

void Ranker::Assemble(const CatalogView* view, const RankRequest& request,
                      CandidateBatch* batch, RankResult* result) const {
  const RankingOptions& o = options_.ranking;
  RankStats& stats = batch->stats;
  StageClock clock(options_.clock, &stats);
  const std::vector<Candidate>& candidates = batch->candidates;
  const size_t count = static_cast<size_t>(request.count.value_or(o.default_count));
  auto video_id = [&](const Candidate& c) {
    return c.row >= 0 && view != nullptr ? view->video_id(c.row) : c.video_id;
  };
  auto creator_id = [&](const Candidate& c) {
    return c.row >= 0 && view != nullptr ? view->creator_id(c.row) : c.creator_id;
  };

  // Best first; ties by video id, so the order does not depend on rows
  // (a root merging shards has none).
  std::vector<int32_t>& order = batch->order;
  order.resize(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  const auto better = [&](int32_t a, int32_t b) {
    const Candidate& x = candidates[a];
    const Candidate& y = candidates[b];
    if (x.score != y.score) return x.score > y.score;
    return video_id(x) < video_id(y);
  };
  // A page needs the best few of the candidates in order, not all of them:
  // sort a prefix (four pages, room for the creator cap to skip), and the
  // rest only when the walk below reaches it.
  size_t sorted = std::min(order.size(), std::max<size_t>(4 * count, 64));
  std::partial_sort(order.begin(), order.begin() + sorted, order.end(), better);

  result->items.clear();
  result->predictions.clear();
  result->items.reserve(count);
  const int heads = batch->heads;
  bool all_scored = true;
  auto add = [&](const Candidate& c, uint64_t creator) {
    result->items.push_back({video_id(c), creator, c.score, c.source});
    all_scored &= c.prediction >= 0;
    if (c.prediction >= 0 && heads > 0) {
      const float* p = &batch->predictions[size_t(c.prediction) * heads];
      result->predictions.insert(result->predictions.end(), p, p + heads);
    }
  };
  // At most creator_cap per creator; when that leaves the page short, the
  // best capped items fill it (a page is short only when the candidates
  // cannot fill it).
  const int cap = o.creator_cap;
  std::vector<int32_t>& capped = batch->capped;
  capped.clear();
  if (cap > 0) batch->creators->Begin(count);
  for (size_t pos = 0; pos < order.size(); ++pos) {
    if (result->items.size() == count) break;
    if (pos == sorted) {
      std::sort(order.begin() + sorted, order.end(), better);
      sorted = order.size();
    }
    const Candidate& c = candidates[order[pos]];
    const int32_t i = order[pos];
    const uint64_t creator = creator_id(c);
    if (cap > 0) {
      uint16_t& seen = batch->creators->Count(creator);
      if (seen >= cap) {
        capped.push_back(i);
        continue;
      }
      ++seen;
    }
    add(c, creator);
  }
  size_t refilled = 0;
  for (; refilled < capped.size() && result->items.size() < count; ++refilled) {
    const Candidate& c = candidates[capped[refilled]];
    add(c, creator_id(c));
  }
  stats.creator_capped = static_cast<int32_t>(capped.size() - refilled);
  // Predictions are per item or not at all.
  if (!all_scored) result->predictions.clear();
  clock.Lap(RankStage::kAssemble);

  result->cold_start = !batch->user.known;
  result->degrade_causes = batch->degrade_causes;
  result->degraded_reason.assign(batch->degraded_reason);
  result->stats = stats;
}

absl::Status Ranker::Rank(const CatalogView& view, const RankRequest& request,
                          RankResult* result) const {
  const absl::Status valid = Validate(view, request, options_.clock->Now());
  if (!valid.ok()) return valid;
  CandidateBatch& batch = ThreadBatch();
  batch.Clear();
  LookUpUser(view, request, &batch);
  Retrieve(view, request, &batch);
  Score(view, request, &batch);
  Assemble(&view, request, &batch, result);
  return absl::OkStatus();
}

RankerCosts Ranker::Calibrate(std::shared_ptr<const Bundle> bundle,
                              const RankingOptions& options, const Clock* clock) {
  bundle->catalog->TouchMemory();
  // Free costs so that calibration itself is never budget-limited.
  const Ranker ranker(bundle, RankerOptions{options, RankerCosts{0.0, 0.0, 0.0}, clock});
  const Catalog& catalog = *bundle->catalog;
  std::vector<double> ann, per_row;
  RankResult result;
  constexpr int kRuns = 24;
  for (int i = 0; i < kRuns; ++i) {
    RankRequest request;
    const int32_t users = catalog.num_users();
    // Spread over known users; cold start when there are none.
    request.user_id =
        users > 0 ? catalog.user_id(static_cast<int32_t>(int64_t(i) * 7919 % users)) : 0;
    request.count = std::min(options.default_count, options.max_count);
    if (!ranker.Rank(request, &result).ok()) continue;
    if (i < 4) continue;  // warm-up
    const RankStats& stats = result.stats;
    ann.push_back(double(stats.micros(RankStage::kAnn)));
    if (stats.scored > 0) {
      per_row.push_back(
          double(stats.micros(RankStage::kFeatures) + stats.micros(RankStage::kModel)) *
          1000.0 / stats.scored);
    }
  }
  auto median = [](std::vector<double> v, double fallback) {
    if (v.empty()) return fallback;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  RankerCosts costs;
  // Medians, doubled: a loaded machine is slower than an idle one.
  costs.ann_micros = 2 * median(ann, costs.ann_micros);
  costs.score_ns_per_row = std::max(50.0, 2 * median(per_row, costs.score_ns_per_row));
  return costs;
}

}  // namespace feedrank

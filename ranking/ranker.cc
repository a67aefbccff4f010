#include "ranking/ranker.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/simd.h"

namespace feedrank {
namespace {

using Clock = std::chrono::steady_clock;

struct Candidate {
  int32_t row;
  CandidateSource source;
  float retrieval_score;
  float score;
};

// Per-thread working memory, reused across requests.
struct RankScratch {
  SearchScratch search;
  MarkTable excluded;
  MarkTable taken;
  std::vector<Hit> hits;
  std::vector<Candidate> candidates;
  std::vector<int32_t> rows;
  std::vector<float> features;
  std::vector<float> predictions;
  ModelScratch model;
  std::vector<int32_t> order;
  std::vector<uint16_t> creator_counts;
  std::vector<int32_t> touched_creators;
};

RankScratch& ThreadScratch() {
  thread_local RankScratch scratch;
  return scratch;
}

double MicrosUntil(SteadyTime deadline, SteadyTime now) {
  if (deadline == SteadyTime::max()) return 1e18;
  return std::chrono::duration<double, std::micro>(deadline - now).count();
}

}  // namespace

const char* SourceName(CandidateSource source) {
  switch (source) {
    case CandidateSource::kAnn:
      return "ann";
    case CandidateSource::kPopular:
      return "popular";
    case CandidateSource::kFresh:
      return "fresh";
    case CandidateSource::kColdStart:
      return "cold_start";
  }
  return "?";
}

Ranker::Ranker(std::shared_ptr<const Bundle> bundle, RankingOptions options,
               RankerCosts costs)
    : bundle_(std::move(bundle)), options_(std::move(options)), costs_(costs) {}

absl::Status Ranker::Rank(const RankRequest& request, RankResult* result) const {
  SteadyTime last = Clock::now();
  const int count = request.count.value_or(options_.default_count);
  if (count < 1 || count > options_.max_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "count: ", count, " is outside [1, ", options_.max_count, "]"));
  }
  if (request.exclude_ids.size() > size_t(options_.max_exclude_ids)) {
    return absl::InvalidArgumentError(
        absl::StrCat("exclude_ids: ", request.exclude_ids.size(),
                     " ids, at most ", options_.max_exclude_ids, " are allowed"));
  }
  if (last >= request.deadline) {
    return absl::DeadlineExceededError("deadline passed before ranking started");
  }
  result->items.clear();
  result->predictions.clear();
  result->degraded = false;
  result->degraded_reason.clear();
  result->debug = RankDebug();
  RankDebug& debug = result->debug;
  auto mark = [&](const char* stage) {
    if (!request.debug) return;
    const SteadyTime now = Clock::now();
    debug.stages.push_back(
        {stage, std::chrono::duration_cast<std::chrono::microseconds>(now - last)
                    .count()});
    last = now;
  };
  auto degrade = [&](const std::string& reason) {
    result->degraded = true;
    if (!result->degraded_reason.empty()) result->degraded_reason += "; ";
    result->degraded_reason += reason;
  };

  const Catalog& catalog = *bundle_->catalog;
  const int32_t n_videos = catalog.num_videos();
  RankScratch& s = ThreadScratch();
  if (s.excluded.size() != size_t(n_videos)) s.excluded.Reset(n_videos);
  if (s.taken.size() != size_t(n_videos)) s.taken.Reset(n_videos);
  if (s.creator_counts.size() != size_t(catalog.num_creators())) {
    s.creator_counts.assign(catalog.num_creators(), 0);
  }

  // The viewer.
  const UserQuery user = LookUpUser(catalog, request.user_id);
  result->cold_start = !user.known;

  // Exclude list, as rows; ids not in the catalogue cannot be returned anyway.
  RowFilter excluded(&s.excluded);
  for (uint64_t id : request.exclude_ids) {
    if (auto row = catalog.VideoRow(id)) excluded.Exclude(*row);
  }
  const bool push_down =
      excluded.count() > size_t(options_.exclude_pushdown_threshold);
  debug.exclude_pushed_down = push_down;
  mark("exclude");

  // Candidate sources.
  std::vector<Candidate>& candidates = s.candidates;
  candidates.clear();
  RowFilter taken(&s.taken);
  if (options_.ann_candidates > 0) {
    const double left = MicrosUntil(request.deadline, Clock::now());
    if (left < costs_.ann_micros + costs_.reserve_micros) {
      degrade(absl::StrCat("ann skipped: ", int64_t(left), "us left"));
    } else {
      SearchOptions search;
      search.k = options_.ann_candidates +
                 (push_down ? 0 : static_cast<int>(excluded.count()));
      search.beam_width = options_.ann_beam_width;
      search.nprobe = options_.ivf_nprobe;
      debug.ann_beam_width = std::max(
          search.k, search.beam_width > 0 ? search.beam_width
                                          : catalog.index().default_beam_width());
      catalog.index().Search(user.embedding, search, push_down ? &excluded : nullptr,
                             &s.search, &s.hits);
      const CandidateSource source =
          user.known ? CandidateSource::kAnn : CandidateSource::kColdStart;
      for (const Hit& hit : s.hits) {
        if (debug.ann_candidates == options_.ann_candidates) break;
        if (excluded.Excluded(hit.row)) {
          ++debug.excluded;
          continue;
        }
        candidates.push_back({hit.row, source, hit.score, 0.f});
        taken.Exclude(hit.row);
        ++debug.ann_candidates;
      }
    }
  }
  mark("ann");
  const size_t dim = catalog.dim();
  auto add_list = [&](absl::Span<const int32_t> rows, int want,
                      CandidateSource source) {
    int added = 0;
    for (int32_t row : rows) {
      if (added == want) break;
      if (excluded.Excluded(row)) {
        ++debug.excluded;
        continue;
      }
      if (taken.Excluded(row)) continue;
      taken.Exclude(row);
      candidates.push_back(
          {row, source, simd::Dot(user.embedding, catalog.video_embedding(row), dim),
           0.f});
      ++added;
    }
    return added;
  };
  debug.popular_candidates = add_list(catalog.popular_rows(),
                                      options_.popular_candidates,
                                      CandidateSource::kPopular);
  debug.fresh_candidates =
      add_list(catalog.fresh_rows(), options_.fresh_candidates, CandidateSource::kFresh);
  mark("sources");

  // Rerank as many candidates as the time left allows, in retrieval order.
  size_t rerank = candidates.size();
  {
    const double left = MicrosUntil(request.deadline, Clock::now()) -
                        costs_.reserve_micros;
    const double fits = costs_.score_ns_per_row > 0
                            ? std::max(0.0, left) * 1000.0 / costs_.score_ns_per_row
                            : 1e18;
    if (fits < double(rerank)) {
      rerank = static_cast<size_t>(fits);
      if (rerank == 0 || rerank < size_t(options_.min_rerank_candidates)) {
        degrade(absl::StrCat("model skipped: ", int64_t(left), "us left, room for ",
                             rerank, " candidates, min_rerank_candidates ",
                             options_.min_rerank_candidates));
        rerank = 0;
      } else {
        degrade(absl::StrCat("reranked ", rerank, " of ", candidates.size(),
                             " candidates: ", int64_t(left), "us left"));
        candidates.resize(rerank);
      }
    }
  }
  const int heads = bundle_->model->num_objectives();
  if (rerank > 0) {
    s.rows.resize(rerank);
    for (size_t i = 0; i < rerank; ++i) s.rows[i] = candidates[i].row;
    const int width = bundle_->features.width();
    if (s.features.size() < rerank * width) s.features.resize(rerank * width);
    bundle_->features.Build(catalog, user, request.context, s.rows,
                            s.features.data());
    mark("features");
    if (s.predictions.size() < rerank * heads) s.predictions.resize(rerank * heads);
    bundle_->model->Predict(s.features.data(), static_cast<int>(rerank),
                            s.predictions.data(), &s.model);
    const float* weights = options_.objective_weights.data();
    for (size_t i = 0; i < rerank; ++i) {
      const float* p = &s.predictions[i * heads];
      float score = 0;
      for (int h = 0; h < heads; ++h) score += weights[h] * p[h];
      candidates[i].score = score;
    }
    debug.scored_candidates = static_cast<int>(rerank);
    mark("model");
  } else {
    for (Candidate& c : candidates) c.score = c.retrieval_score;
  }
  if (options_.freshness_boost > 0) {
    const double per_hour = 1.0 / options_.freshness_half_life_hours;
    for (Candidate& c : candidates) {
      const double age_hours =
          std::max<int64_t>(0, request.context.now_ms - catalog.upload_time_ms(c.row)) /
          3.6e6;
      c.score += options_.freshness_boost *
                 static_cast<float>(std::exp2(-age_hours * per_hour));
    }
  }

  // Best first (ties by row, for determinism), at most creator_cap per
  // creator, `count` items.
  std::vector<int32_t>& order = s.order;
  order.resize(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const Candidate& x = candidates[a];
    const Candidate& y = candidates[b];
    return x.score > y.score || (x.score == y.score && x.row < y.row);
  });
  result->items.reserve(count);
  if (rerank > 0) result->predictions.reserve(size_t(count) * heads);
  const int cap = options_.creator_cap;
  for (int32_t i : order) {
    if (result->items.size() == size_t(count)) break;
    const Candidate& c = candidates[i];
    if (cap > 0) {
      const int32_t creator = catalog.creator_index(c.row);
      uint16_t& seen = s.creator_counts[creator];
      if (seen >= cap) {
        ++debug.creator_capped;
        continue;
      }
      if (seen == 0) s.touched_creators.push_back(creator);
      ++seen;
    }
    result->items.push_back({catalog.video_id(c.row), catalog.creator_id(c.row),
                             c.score, c.source});
    if (rerank > 0) {
      const float* p = &s.predictions[size_t(i) * heads];
      result->predictions.insert(result->predictions.end(), p, p + heads);
    }
  }
  for (int32_t creator : s.touched_creators) s.creator_counts[creator] = 0;
  s.touched_creators.clear();
  mark("assemble");
  return absl::OkStatus();
}

RankerCosts Ranker::Calibrate(std::shared_ptr<const Bundle> bundle,
                              const RankingOptions& options) {
  bundle->catalog->TouchMemory();
  // Generous costs so that calibration itself is never budget-limited.
  Ranker ranker(bundle, options, RankerCosts{0.0, 0.0, 0.0});
  const Catalog& catalog = *bundle->catalog;
  std::vector<double> ann, per_row;
  RankResult result;
  constexpr int kRuns = 24;
  for (int i = 0; i < kRuns; ++i) {
    RankRequest request;
    const int32_t users = catalog.num_users();
    // Spread over known users; cold start when there are none.
    request.user_id =
        users > 0 ? catalog.user_id(static_cast<int32_t>(int64_t(i) * 7919 % users))
                  : 0;
    request.count = std::min(options.default_count, options.max_count);
    request.debug = true;
    if (!ranker.Rank(request, &result).ok()) continue;
    double ann_us = 0, score_us = 0;
    for (const StageTime& stage : result.debug.stages) {
      const std::string name = stage.stage;
      if (name == "ann") ann_us += stage.micros;
      if (name == "features" || name == "model") score_us += stage.micros;
    }
    if (i < 4) continue;  // warm-up
    ann.push_back(ann_us);
    if (result.debug.scored_candidates > 0) {
      per_row.push_back(score_us * 1000.0 / result.debug.scored_candidates);
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

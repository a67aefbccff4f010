// RankFeedRequest handling (ranking/request.h, ranking/ranker.h): a request
// with arbitrary field values — user ids known and unknown, counts, exclude
// lists, client times, UTC offsets, devices, debug — converted as the server
// converts it, ranked through the stages against a small bundle, and turned
// into a response. Checks what the API promises of a page.
//
// Input: a serialised feedrank.v1.RankFeedRequest (corpus/rank_request).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <unordered_set>

#include "base/env.h"
#include "fuzz/fuzz_util.h"
#include "ranking/options.h"
#include "ranking/ranker.h"
#include "ranking/request.h"

namespace {

const feedrank::Ranker& TheRanker() {
  static const feedrank::Ranker* ranker = [] {
    const std::shared_ptr<const feedrank::Bundle>& bundle = feedrank::fuzz::SmallBundle();
    auto options =
        feedrank::ResolveOptions(feedrank::RankingConfig(), bundle->model->objectives());
    if (!options.ok()) std::abort();
    feedrank::RankerOptions ranker_options;
    ranker_options.ranking = *options;
    auto created = feedrank::Ranker::Create(bundle, ranker_options);
    if (!created.ok()) std::abort();
    return created->release();
  }();
  return *ranker;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  feedrank::v1::RankFeedRequest proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  const feedrank::Ranker& ranker = TheRanker();
  feedrank::RankRequest request;
  if (!feedrank::RankRequestFromProto(proto, *feedrank::Clock::Real(), &request).ok())
    return 0;
  feedrank::RankResult result;
  if (!ranker.Rank(request, &result).ok()) return 0;

  // The page: at most the count asked for (or the default), no id twice,
  // none of the excluded ids, finite scores, one prediction per objective
  // per item (or none when the model was skipped).
  const int64_t count = request.count.value_or(20);
  if (static_cast<int64_t>(result.items.size()) > count) std::abort();
  std::unordered_set<uint64_t> excluded(request.exclude_ids.begin(),
                                        request.exclude_ids.end());
  std::unordered_set<uint64_t> seen;
  for (const feedrank::RankedVideo& item : result.items) {
    if (!seen.insert(item.video_id).second) std::abort();
    if (excluded.count(item.video_id) != 0) std::abort();
    if (!std::isfinite(item.score)) std::abort();
  }
  // A full page unless the catalogue less the exclude list cannot fill it.
  const feedrank::CatalogView& view = *feedrank::fuzz::SmallBundle()->view;
  int64_t available = 0;
  for (int32_t row = 0; row < view.num_rows(); ++row) {
    if (view.live(row) && excluded.count(view.video_id(row)) == 0) ++available;
  }
  if (static_cast<int64_t>(result.items.size()) < std::min(count, available))
    std::abort();
  const size_t objectives = feedrank::fuzz::SmallBundle()->model->objectives().size();
  if (!result.predictions.empty() &&
      result.predictions.size() != result.items.size() * objectives) {
    std::abort();
  }
  for (float p : result.predictions) {
    if (!(p >= 0.0f && p <= 1.0f)) std::abort();
  }

  feedrank::ResponseInfo info;
  info.objectives = &feedrank::fuzz::SmallBundle()->model->objectives();
  info.bundle_version = "fuzz";
  info.config_version = "fuzz";
  feedrank::v1::RankFeedResponse response;
  feedrank::RankResultToProto(proto, result, info, &response);
  if (response.items_size() != static_cast<int>(result.items.size())) std::abort();
  return 0;
}

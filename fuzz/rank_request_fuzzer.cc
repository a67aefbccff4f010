// RankFeedRequest handling (ranking/request.h, ranking/ranker.h): a request
// with arbitrary field values — user ids known and unknown, counts, exclude
// lists, client times, UTC offsets, devices, debug — converted as the server
// converts it, ranked through the stages against a small bundle, and turned
// into a response. Checks what the API promises of a page. The request's
// arms come from a two-layer experiment config that allows pinning, so
// arbitrary pins (unknown layers, unknown arms, two of a layer) go through
// ExperimentConfig::Assign as the server's, and the page is ranked by the
// combination's own ranker with its own options.
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
#include "google/protobuf/text_format.h"
#include "ranking/experiments.h"
#include "ranking/options.h"
#include "ranking/ranker.h"
#include "ranking/request.h"

namespace {

// Layer "ranking" (arms control / treatment: page size and the
// click weight) and layer "retrieval" (arms wide / narrow: candidates).
constexpr char kExperiments[] = R"cfg(
version: "fuzz"
allow_pinning: true
layers {
  name: "ranking" salt: "r"
  experiments { name: "value" ranges { begin: 0 end: 10000 }
    arms { name: "control" ranges { begin: 0 end: 5000 } }
    arms { name: "treatment" ranges { begin: 5000 end: 10000 }
      overrides { default_count: 7 objective_weights { key: "click" value: 3 } } } }
}
layers {
  name: "retrieval" salt: "q"
  experiments { name: "depth" ranges { begin: 0 end: 6000 }
    arms { name: "wide" ranges { begin: 0 end: 3000 } overrides { ann_candidates: 300 } }
    arms { name: "narrow" ranges { begin: 3000 end: 6000 } overrides { ann_candidates: 20 } } }
}
)cfg";

struct Arms {
  feedrank::ExperimentConfig experiments;
  std::vector<std::unique_ptr<feedrank::Ranker>> rankers;  // by combination
};

const Arms& TheArms() {
  static const Arms* arms = [] {
    const std::shared_ptr<const feedrank::Bundle>& bundle = feedrank::fuzz::SmallBundle();
    feedrank::RankingConfig config;
    if (!google::protobuf::TextFormat::ParseFromString(kExperiments, &config))
      std::abort();
    auto experiments =
        feedrank::ExperimentConfig::Create(config, bundle->model->objectives());
    if (!experiments.ok()) std::abort();
    auto rankers = feedrank::CreateArmRankers(
        *experiments,
        [&](const std::string&)
            -> absl::StatusOr<std::shared_ptr<const feedrank::Bundle>> { return bundle; },
        feedrank::RankerCosts{}, feedrank::Clock::Real());
    if (!rankers.ok()) std::abort();
    return new Arms{*std::move(experiments), *std::move(rankers)};
  }();
  return *arms;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  feedrank::v1::RankFeedRequest proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  const Arms& arms = TheArms();
  std::vector<feedrank::ArmPin> pins;
  for (const auto& pin : proto.pin_arms()) pins.emplace_back(pin.layer(), pin.arm());
  feedrank::Assignment assignment;
  const absl::Status assigned =
      arms.experiments.Assign(proto.user_id(), pins, &assignment);
  if (!assigned.ok()) {
    // Refused pins are the caller's error, never anything else.
    if (!absl::IsInvalidArgument(assigned) || pins.empty()) std::abort();
    return 0;
  }
  if (assignment.arms.size() != 2 || assignment.pinned != !pins.empty()) std::abort();
  for (const auto& [layer, arm] : pins) {
    const feedrank::ArmAssignment* got = assignment.arms[layer == "ranking" ? 0 : 1];
    if (got == nullptr || got->arm != arm) std::abort();
  }
  if (assignment.combination < 0 ||
      assignment.combination >= static_cast<int>(arms.rankers.size()))
    std::abort();
  const feedrank::Ranker& ranker = *arms.rankers[assignment.combination];
  feedrank::RankRequest request;
  if (!feedrank::RankRequestFromProto(proto, *feedrank::Clock::Real(), &request).ok())
    return 0;
  feedrank::RankResult result;
  if (!ranker.Rank(request, &result).ok()) return 0;

  // The page: at most the count asked for (or the arm's default), no id
  // twice, none of the excluded ids, finite scores, one prediction per
  // objective per item (or none when the model was skipped).
  const int64_t count = request.count.value_or(assignment.options->default_count);
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

#include "ranking/request.h"

#include "absl/strings/str_cat.h"

namespace feedrank {
namespace {

DeviceType FromProto(v1::Device device) {
  switch (device) {
    case v1::DEVICE_ANDROID:
      return DeviceType::kAndroid;
    case v1::DEVICE_IOS:
      return DeviceType::kIos;
    case v1::DEVICE_WEB:
      return DeviceType::kWeb;
    default:
      return DeviceType::kUnspecified;
  }
}

v1::DegradedCause ToProto(DegradeCause cause) {
  switch (cause) {
    case DegradeCause::kAnnSkipped:
      return v1::DEGRADED_CAUSE_ANN_SKIPPED;
    case DegradeCause::kRerankShrunk:
      return v1::DEGRADED_CAUSE_RERANK_SHRUNK;
    case DegradeCause::kModelSkipped:
      return v1::DEGRADED_CAUSE_MODEL_SKIPPED;
    case DegradeCause::kNumCauses:
      break;
  }
  return v1::DEGRADED_CAUSE_UNSPECIFIED;
}

}  // namespace

v1::Source ToProto(CandidateSource source) {
  switch (source) {
    case CandidateSource::kAnn:
      return v1::SOURCE_ANN;
    case CandidateSource::kPopular:
      return v1::SOURCE_POPULAR;
    case CandidateSource::kFresh:
      return v1::SOURCE_FRESH;
    case CandidateSource::kColdStart:
      return v1::SOURCE_COLD_START;
    case CandidateSource::kTrending:
      return v1::SOURCE_TRENDING;
  }
  return v1::SOURCE_UNSPECIFIED;
}

absl::Status RankRequestFromProto(const v1::RankFeedRequest& proto, const Clock& clock,
                                  RankRequest* out) {
  if (proto.request_id().size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: ", proto.request_id().size(), " bytes, at most ",
                     kMaxRequestIdBytes));
  }
  const v1::RequestContext& ctx = proto.context();
  if (ctx.client_time_ms() < 0 || ctx.client_time_ms() > kMaxClientTimeMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("context.client_time_ms: ", ctx.client_time_ms(), " is outside [0, ",
                     kMaxClientTimeMs, "] (0 = now)"));
  }
  if (ctx.utc_offset_minutes() < -kMaxUtcOffsetMinutes ||
      ctx.utc_offset_minutes() > kMaxUtcOffsetMinutes) {
    return absl::InvalidArgumentError(
        absl::StrCat("context.utc_offset_minutes: ", ctx.utc_offset_minutes(),
                     " is outside [-840, 840]"));
  }
  out->user_id = proto.user_id();
  out->count.reset();
  if (proto.has_count()) out->count = int64_t{proto.count()};
  out->exclude_ids =
      absl::MakeConstSpan(proto.exclude_ids().data(), proto.exclude_ids().size());
  out->context.now_ms =
      ctx.client_time_ms() > 0 ? ctx.client_time_ms() : clock.UnixMillis();
  out->context.utc_offset_minutes = ctx.utc_offset_minutes();
  out->context.device = FromProto(ctx.device());
  return absl::OkStatus();
}

void RankResultToProto(const v1::RankFeedRequest& request, const RankResult& result,
                       const ResponseInfo& info, v1::RankFeedResponse* response) {
  const int heads =
      info.objectives == nullptr ? 0 : static_cast<int>(info.objectives->size());
  if (info.objectives != nullptr) {
    response->mutable_objectives()->Reserve(heads);
    for (const std::string& objective : *info.objectives)
      response->add_objectives(objective);
  }
  response->mutable_items()->Reserve(static_cast<int>(result.items.size()));
  const bool predictions = !result.predictions.empty() && heads > 0;
  for (size_t i = 0; i < result.items.size(); ++i) {
    const RankedVideo& video = result.items[i];
    v1::RankedItem* item = response->add_items();
    item->set_video_id(video.video_id);
    item->set_creator_id(video.creator_id);
    item->set_score(video.score);
    item->set_source(ToProto(video.source));
    if (predictions) {
      item->mutable_predictions()->Add(result.predictions.begin() + i * heads,
                                       result.predictions.begin() + (i + 1) * heads);
    }
  }
  response->set_bundle_version(std::string(info.bundle_version));
  response->set_config_version(std::string(info.config_version));
  response->set_degraded(result.degraded());
  if (result.degraded()) {
    response->set_degraded_reason(result.degraded_reason);
    for (int c = 0; c < static_cast<int>(DegradeCause::kNumCauses); ++c) {
      if (result.has_cause(static_cast<DegradeCause>(c))) {
        response->add_degraded_causes(ToProto(static_cast<DegradeCause>(c)));
      }
    }
  }
  response->set_request_id(request.request_id());
  response->set_cold_start(result.cold_start);
  if (request.debug()) {
    const RankStats& s = result.stats;
    v1::DebugInfo* debug = response->mutable_debug();
    for (int i = 0; i < static_cast<int>(RankStage::kNumStages); ++i) {
      v1::StageTiming* timing = debug->add_stages();
      timing->set_stage(RankStageName(static_cast<RankStage>(i)));
      timing->set_micros(s.stage_micros[i]);
    }
    debug->set_ann_candidates(s.ann_retrieved);
    debug->set_popular_candidates(s.popular_retrieved);
    debug->set_fresh_candidates(s.fresh_retrieved);
    debug->set_ann_kept(s.ann_kept);
    debug->set_popular_kept(s.popular_kept);
    debug->set_fresh_kept(s.fresh_kept);
    debug->set_trending_candidates(s.trending_retrieved);
    debug->set_trending_kept(s.trending_kept);
    debug->set_scored_candidates(s.scored);
    debug->set_excluded(s.excluded);
    debug->set_creator_capped(s.creator_capped);
    debug->set_exclude_pushed_down(s.exclude_pushed_down);
    debug->set_ann_beam_width(s.search.beam_width);
    debug->set_ivf_nprobe(s.search.nprobe);
    debug->set_ann_exact_fallback(s.search.exact_fallback);
    debug->set_catalog_version(info.catalog_version);
  }
}

}  // namespace feedrank

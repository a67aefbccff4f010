#include "ranking/request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_env.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

absl::Status Convert(const v1::RankFeedRequest& proto, RankRequest* out) {
  testing::FakeClock clock;
  clock.SetUnixMillis(1800000000000);
  return RankRequestFromProto(proto, clock, out);
}

TEST(RequestTest, FieldsAreCopiedAndNowDefaultsToTheClock) {
  v1::RankFeedRequest proto;
  proto.set_user_id(42);
  proto.set_count(4294967295u);
  proto.add_exclude_ids(7);
  proto.add_exclude_ids(8);
  proto.mutable_context()->set_utc_offset_minutes(-300);
  proto.mutable_context()->set_device(v1::DEVICE_IOS);
  RankRequest request;
  ASSERT_TRUE(Convert(proto, &request).ok());
  EXPECT_EQ(request.user_id, 42u);
  // Passed on as given: the ranker reports 4294967295, not a clamped value.
  EXPECT_EQ(request.count, int64_t{4294967295});
  EXPECT_THAT(
      std::vector<uint64_t>(request.exclude_ids.begin(), request.exclude_ids.end()),
      ::testing::ElementsAre(7, 8));
  EXPECT_EQ(request.context.now_ms, 1800000000000);
  EXPECT_EQ(request.context.utc_offset_minutes, -300);
  EXPECT_EQ(request.context.device, DeviceType::kIos);
  proto.mutable_context()->set_client_time_ms(1700000000000);
  proto.clear_count();
  proto.mutable_context()->set_device(static_cast<v1::Device>(77));  // a newer client's
  ASSERT_TRUE(Convert(proto, &request).ok());
  EXPECT_EQ(request.context.now_ms, 1700000000000);
  EXPECT_FALSE(request.count.has_value());
  EXPECT_EQ(request.context.device, DeviceType::kUnspecified);
}

TEST(RequestTest, OutOfRangeFieldsAreRefusedByName) {
  struct Case {
    std::function<void(v1::RankFeedRequest*)> mutate;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {[](v1::RankFeedRequest* r) { r->set_request_id(std::string(129, 'x')); },
       "request_id: 129 bytes, at most 128"},
      {[](v1::RankFeedRequest* r) { r->mutable_context()->set_client_time_ms(-1); },
       "context.client_time_ms: -1 is outside"},
      {[](v1::RankFeedRequest* r) {
         r->mutable_context()->set_client_time_ms(INT64_MAX);
       },
       "context.client_time_ms: 9223372036854775807 is outside"},
      {[](v1::RankFeedRequest* r) { r->mutable_context()->set_utc_offset_minutes(841); },
       "context.utc_offset_minutes: 841 is outside [-840, 840]"},
      {[](v1::RankFeedRequest* r) { r->mutable_context()->set_utc_offset_minutes(-841); },
       "context.utc_offset_minutes: -841"},
  };
  for (const Case& c : cases) {
    v1::RankFeedRequest proto;
    c.mutate(&proto);
    RankRequest request;
    const absl::Status status = Convert(proto, &request);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.problem;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.problem));
  }
}

TEST(RequestTest, ResponseCarriesPageVersionsCausesAndDebug) {
  RankResult result;
  result.items = {{11, 21, 0.9f, CandidateSource::kAnn},
                  {12, 22, 0.5f, CandidateSource::kFresh}};
  result.predictions = {0.1f, 0.2f, 0.3f, 0.4f};
  result.degrade_causes = (1u << int(DegradeCause::kRerankShrunk));
  result.degraded_reason = "reranked 100 of 570 candidates";
  result.stats.stage_micros[int(RankStage::kAnn)] = 77;
  result.stats.ann_retrieved = 510;
  result.stats.ann_kept = 500;
  result.stats.search.nprobe = 16;
  const std::vector<std::string> objectives = {"click", "like"};
  ResponseInfo info;
  info.objectives = &objectives;
  info.bundle_version = "b1";
  info.config_version = "c1";
  info.catalog_version = 9;
  v1::RankFeedRequest request;
  request.set_request_id("r");
  request.set_debug(true);
  v1::RankFeedResponse response;
  RankResultToProto(request, result, info, &response);
  ASSERT_EQ(response.items_size(), 2);
  EXPECT_EQ(response.items(1).video_id(), 12u);
  EXPECT_EQ(response.items(1).source(), v1::SOURCE_FRESH);
  EXPECT_THAT(response.items(1).predictions(), ::testing::ElementsAre(0.3f, 0.4f));
  EXPECT_EQ(response.bundle_version(), "b1");
  EXPECT_EQ(response.config_version(), "c1");
  EXPECT_TRUE(response.degraded());
  EXPECT_THAT(response.degraded_causes(),
              ::testing::ElementsAre(v1::DEGRADED_CAUSE_RERANK_SHRUNK));
  EXPECT_EQ(response.request_id(), "r");
  const v1::DebugInfo& d = response.debug();
  ASSERT_EQ(d.stages_size(), int(RankStage::kNumStages));
  EXPECT_EQ(d.stages(1).stage(), "ann");
  EXPECT_EQ(d.stages(1).micros(), 77);
  EXPECT_EQ(d.ann_candidates(), 510u);
  EXPECT_EQ(d.ann_kept(), 500u);
  EXPECT_EQ(d.ivf_nprobe(), 16u);
  EXPECT_EQ(d.catalog_version(), 9u);
  // Without debug, no debug section.
  request.set_debug(false);
  v1::RankFeedResponse plain;
  RankResultToProto(request, result, info, &plain);
  EXPECT_FALSE(plain.has_debug());
}

}  // namespace
}  // namespace feedrank

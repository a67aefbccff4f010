#include "ranking/ranker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

class RankerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bundle_ = new std::shared_ptr<const Bundle>(
        testing::MakeSmallBundle(testing::SmallSynth(6000, 400)));
  }
  static void TearDownTestSuite() { delete bundle_; }

  const Bundle& bundle() const { return **bundle_; }

  std::unique_ptr<Ranker> MakeRanker(const RankingConfig& config = RankingConfig(),
                                     RankerCosts costs = RankerCosts{0, 0, 0},
                                     const Clock* clock = Clock::Real()) const {
    auto options = ResolveOptions(config, bundle().model->objectives());
    EXPECT_TRUE(options.ok()) << options.status();
    auto ranker = Ranker::Create(*bundle_, RankerOptions{*options, costs, clock});
    EXPECT_TRUE(ranker.ok()) << ranker.status();
    return *std::move(ranker);
  }

  uint64_t KnownUser(int i) const { return bundle().catalog->user_id(i); }

  static std::shared_ptr<const Bundle>* bundle_;
};

std::shared_ptr<const Bundle>* RankerTest::bundle_ = nullptr;

TEST_F(RankerTest, PageIsFullSortedUniqueAndCapped) {
  auto ranker = MakeRanker();
  for (int u = 0; u < 20; ++u) {
    RankRequest request;
    request.user_id = KnownUser(u);
    request.count = 50;
    RankResult result;
    ASSERT_TRUE(ranker->Rank(request, &result).ok());
    ASSERT_EQ(result.items.size(), 50u);
    EXPECT_FALSE(result.cold_start);
    EXPECT_FALSE(result.degraded());
    std::set<uint64_t> ids;
    absl::flat_hash_map<uint64_t, int> per_creator;
    for (size_t i = 0; i < result.items.size(); ++i) {
      const RankedVideo& item = result.items[i];
      EXPECT_TRUE(ids.insert(item.video_id).second) << "duplicate " << item.video_id;
      EXPECT_LE(++per_creator[item.creator_id], 2) << "creator cap broken";
      if (i > 0) {
        EXPECT_GE(result.items[i - 1].score, item.score);
      }
      auto row = bundle().catalog->VideoRow(item.video_id);
      ASSERT_TRUE(row.has_value());
      EXPECT_EQ(bundle().catalog->creator_id(*row), item.creator_id);
    }
  }
}

TEST_F(RankerTest, ScoreIsTheWeightedSumOfPredictions) {
  RankingConfig config;
  (*config.mutable_params()->mutable_objective_weights())["click"] = 1.0f;
  (*config.mutable_params()->mutable_objective_weights())["like"] = 3.0f;
  auto ranker = MakeRanker(config);
  RankRequest request;
  request.user_id = KnownUser(3);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  const auto& objectives = bundle().model->objectives();
  const int heads = static_cast<int>(objectives.size());
  const int click = std::find(objectives.begin(), objectives.end(), "click") - objectives.begin();
  const int like = std::find(objectives.begin(), objectives.end(), "like") - objectives.begin();
  ASSERT_EQ(result.predictions.size(), result.items.size() * heads);
  for (size_t i = 0; i < result.items.size(); ++i) {
    const float* p = &result.predictions[i * heads];
    EXPECT_NEAR(result.items[i].score, p[click] + 3.0f * p[like], 1e-5);
    for (int h = 0; h < heads; ++h) {
      EXPECT_GT(p[h], 0.f);
      EXPECT_LT(p[h], 1.f);
    }
  }
}

TEST_F(RankerTest, WeightsChangeTheRanking) {
  RankingConfig share_only;
  (*share_only.mutable_params()->mutable_objective_weights())["share"] = 1.0f;
  RankingConfig long_view_only;
  (*long_view_only.mutable_params()->mutable_objective_weights())["long_view"] = 1.0f;
  RankRequest request;
  request.user_id = KnownUser(5);
  request.count = 20;
  RankResult a, b;
  ASSERT_TRUE(MakeRanker(share_only)->Rank(request, &a).ok());
  ASSERT_TRUE(MakeRanker(long_view_only)->Rank(request, &b).ok());
  std::vector<uint64_t> ids_a, ids_b;
  for (const auto& item : a.items) ids_a.push_back(item.video_id);
  for (const auto& item : b.items) ids_b.push_back(item.video_id);
  EXPECT_NE(ids_a, ids_b);
}

TEST_F(RankerTest, DeterministicAcrossCallsAndRankers) {
  RankRequest request;
  request.user_id = KnownUser(7);
  request.count = 30;
  request.context.now_ms = 1793491200000;
  RankResult first, second, third;
  ASSERT_TRUE(MakeRanker()->Rank(request, &first).ok());
  ASSERT_TRUE(MakeRanker()->Rank(request, &second).ok());
  auto ranker = MakeRanker();
  ASSERT_TRUE(ranker->Rank(request, &third).ok());
  ASSERT_TRUE(ranker->Rank(request, &third).ok());
  ASSERT_EQ(first.items.size(), second.items.size());
  for (size_t i = 0; i < first.items.size(); ++i) {
    EXPECT_EQ(first.items[i].video_id, second.items[i].video_id);
    EXPECT_EQ(first.items[i].score, second.items[i].score);
    EXPECT_EQ(first.items[i].video_id, third.items[i].video_id);
  }
  EXPECT_EQ(first.predictions, second.predictions);
}

TEST_F(RankerTest, ExcludedIdsNeverReturnedSmallAndPushedDown) {
  auto ranker = MakeRanker();
  RankRequest request;
  request.user_id = KnownUser(9);
  request.count = 40;
  RankResult baseline;
  ASSERT_TRUE(ranker->Rank(request, &baseline).ok());
  // Exclude the whole first page: post-filtered (40 ids <= 64).
  std::vector<uint64_t> exclude;
  for (const auto& item : baseline.items) exclude.push_back(item.video_id);
  exclude.push_back(424242);  // not in the catalogue: ignored
  request.exclude_ids = exclude;
  RankResult small;
  ASSERT_TRUE(ranker->Rank(request, &small).ok());
  EXPECT_FALSE(small.stats.exclude_pushed_down);
  EXPECT_EQ(small.items.size(), 40u);
  std::set<uint64_t> banned(exclude.begin(), exclude.end());
  for (const auto& item : small.items) EXPECT_EQ(banned.count(item.video_id), 0u);

  // A long list (every third video): pushed into the ANN search.
  std::vector<uint64_t> many = exclude;
  for (int32_t row = 0; row < bundle().catalog->num_videos(); row += 3) {
    many.push_back(bundle().catalog->video_id(row));
  }
  request.exclude_ids = many;
  RankResult big;
  ASSERT_TRUE(ranker->Rank(request, &big).ok());
  EXPECT_TRUE(big.stats.exclude_pushed_down);
  EXPECT_EQ(big.items.size(), 40u);
  EXPECT_EQ(big.stats.ann_kept, 500);
  std::set<uint64_t> banned_many(many.begin(), many.end());
  for (const auto& item : big.items) EXPECT_EQ(banned_many.count(item.video_id), 0u);
}

TEST_F(RankerTest, PostFilterOverFetchesSoAnnStaysFull) {
  auto ranker = MakeRanker();
  RankRequest request;
  request.user_id = KnownUser(11);
  RankResult baseline;
  ASSERT_TRUE(ranker->Rank(request, &baseline).ok());
  // Exclude 50 of the ANN's own top results (below the push-down threshold).
  SearchScratch scratch;
  std::vector<Hit> hits;
  const Catalog& catalog = *bundle().catalog;
  catalog.index().Search(catalog.user_embedding(*catalog.UserRow(request.user_id)),
                         SearchOptions{50, 0, 0}, RowPredicate(), &scratch, &hits);
  std::vector<uint64_t> exclude;
  for (const Hit& hit : hits) exclude.push_back(catalog.video_id(hit.row));
  request.exclude_ids = exclude;
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_FALSE(result.stats.exclude_pushed_down);
  EXPECT_EQ(result.stats.ann_kept, 500);
  EXPECT_GE(result.stats.excluded, 50);
}

TEST_F(RankerTest, CreatorCapOfOne) {
  RankingConfig config;
  config.mutable_params()->set_creator_cap(1);
  auto ranker = MakeRanker(config);
  RankRequest request;
  request.user_id = KnownUser(13);
  request.count = 60;
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  std::set<uint64_t> creators;
  for (const auto& item : result.items) {
    EXPECT_TRUE(creators.insert(item.creator_id).second);
  }
  EXPECT_EQ(result.items.size(), 60u);
}

TEST_F(RankerTest, ColdStartUserGetsAFullPage) {
  auto ranker = MakeRanker();
  RankRequest request;
  request.user_id = 987654321987ull;  // not in the bundle
  request.count = 25;
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.cold_start);
  EXPECT_EQ(result.items.size(), 25u);
  EXPECT_GT(result.stats.popular_kept, 0);
  EXPECT_GT(result.stats.fresh_kept, 0);
  for (const auto& item : result.items) {
    EXPECT_NE(item.source, CandidateSource::kAnn);
  }
}

TEST_F(RankerTest, PopularAndFreshSourcesContribute) {
  RankingConfig config;
  config.mutable_params()->set_ann_candidates(0);
  config.mutable_params()->set_popular_candidates(30);
  config.mutable_params()->set_fresh_candidates(30);
  auto ranker = MakeRanker(config);
  RankRequest request;
  request.user_id = KnownUser(1);
  request.count = 40;
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_EQ(result.stats.popular_kept + result.stats.fresh_kept,
            result.stats.scored);
  bool popular = false, fresh = false;
  for (const auto& item : result.items) {
    popular |= item.source == CandidateSource::kPopular;
    fresh |= item.source == CandidateSource::kFresh;
  }
  EXPECT_TRUE(popular);
  EXPECT_TRUE(fresh);
}

TEST_F(RankerTest, FreshnessBoostFavoursNewUploads) {
  RankingConfig boosted;
  boosted.mutable_params()->set_freshness_boost(100.0f);
  boosted.mutable_params()->set_freshness_half_life_hours(1.0f);
  RankRequest request;
  request.user_id = KnownUser(2);
  request.count = 10;
  request.context.now_ms = 1793491200000;  // the synthetic world's "now"
  RankResult plain, fresh;
  ASSERT_TRUE(MakeRanker()->Rank(request, &plain).ok());
  ASSERT_TRUE(MakeRanker(boosted)->Rank(request, &fresh).ok());
  auto mean_age_hours = [&](const RankResult& r) {
    double sum = 0;
    for (const auto& item : r.items) {
      const int32_t row = *bundle().catalog->VideoRow(item.video_id);
      sum += (request.context.now_ms - bundle().catalog->upload_time_ms(row)) / 3.6e6;
    }
    return sum / r.items.size();
  };
  EXPECT_LT(mean_age_hours(fresh), mean_age_hours(plain));
}

TEST_F(RankerTest, CountOutOfRangeIsRefusedWithTheFieldNamed) {
  auto ranker = MakeRanker();
  RankResult result;
  for (int count : {0, -1, 201}) {
    RankRequest request;
    request.user_id = KnownUser(0);
    request.count = count;
    absl::Status status = ranker->Rank(request, &result);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << count;
    EXPECT_THAT(std::string(status.message()), HasSubstr("count"));
  }
  RankRequest request;
  request.user_id = KnownUser(0);
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_EQ(result.items.size(), 20u);  // the default count
}

TEST_F(RankerTest, TooManyExcludeIdsIsRefused) {
  RankingConfig config;
  config.mutable_params()->set_max_exclude_ids(10);
  auto ranker = MakeRanker(config);
  std::vector<uint64_t> exclude(11, 1);
  RankRequest request;
  request.exclude_ids = exclude;
  RankResult result;
  absl::Status status = ranker->Rank(request, &result);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("exclude_ids"));
}

TEST_F(RankerTest, PassedDeadlineIsDeadlineExceeded) {
  auto ranker = MakeRanker();
  RankRequest request;
  request.deadline = std::chrono::steady_clock::now() - std::chrono::milliseconds(1);
  RankResult result;
  EXPECT_EQ(ranker->Rank(request, &result).code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RankerTest, TightBudgetShrinksTheRerankAndSaysSo) {
  // 100 us per candidate: a 20 ms budget fits ~190 of the ~570 candidates.
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{100'000, 0, 0});
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.degraded());
  EXPECT_THAT(result.degraded_reason, HasSubstr("reranked"));
  EXPECT_GE(result.stats.scored, 50);
  EXPECT_LT(result.stats.scored, 570);
  EXPECT_EQ(result.items.size(), 20u);
  EXPECT_FALSE(result.predictions.empty());
}

TEST_F(RankerTest, NoTimeForTheModelReturnsRetrievalOrder) {
  // 10 ms per candidate: not even min_rerank_candidates fit in 50 ms.
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{10'000'000, 0, 0});
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.degraded());
  EXPECT_THAT(result.degraded_reason, HasSubstr("model skipped"));
  EXPECT_EQ(result.items.size(), 20u);
  EXPECT_TRUE(result.predictions.empty());
  for (size_t i = 1; i < result.items.size(); ++i) {
    EXPECT_GE(result.items[i - 1].score, result.items[i].score);
  }
}

TEST_F(RankerTest, NoRoomForAnyCandidateSkipsTheModelEvenWithMinimumZero) {
  RankingConfig config;
  config.mutable_params()->set_min_rerank_candidates(0);
  auto ranker = MakeRanker(config, RankerCosts{10'000'000, 0, 0});
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_THAT(result.degraded_reason, HasSubstr("model skipped"));
  EXPECT_EQ(result.items.size(), 20u);
}

TEST_F(RankerTest, NoTimeForAnnFallsBackToPopularAndFresh) {
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{1, 1e9, 0});
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.degraded());
  EXPECT_THAT(result.degraded_reason, HasSubstr("ann skipped"));
  EXPECT_EQ(result.items.size(), 20u);
  for (const auto& item : result.items) EXPECT_NE(item.source, CandidateSource::kAnn);
}

TEST_F(RankerTest, CalibrateMeasuresPositiveCosts) {
  auto options = ResolveOptions(RankingConfig(), bundle().model->objectives());
  ASSERT_TRUE(options.ok());
  RankerCosts costs = Ranker::Calibrate(*bundle_, *options);
  EXPECT_GT(costs.ann_micros, 0);
  EXPECT_GT(costs.score_ns_per_row, 0);
}

}  // namespace
}  // namespace feedrank

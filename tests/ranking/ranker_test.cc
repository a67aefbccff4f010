#include "ranking/ranker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "tests/test_bundles.h"
#include "tests/test_env.h"

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
  const int click =
      std::find(objectives.begin(), objectives.end(), "click") - objectives.begin();
  const int like =
      std::find(objectives.begin(), objectives.end(), "like") - objectives.begin();
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

// scoring_precision bf16: the same candidates scored within the bf16
// tolerance of float, so the pages (almost) agree, and bf16 is as
// deterministic as float.
TEST_F(RankerTest, Bf16ScoringStaysCloseToFloat) {
  if (!bf16::Supported()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  RankingConfig config;
  config.mutable_params()->set_scoring_precision("bf16");
  auto bf16_ranker = MakeRanker(config);
  auto float_ranker = MakeRanker();
  size_t same = 0, total = 0;
  for (int u = 0; u < 20; ++u) {
    RankRequest request;
    request.user_id = KnownUser(u);
    request.count = 20;
    RankResult a, b, again;
    ASSERT_TRUE(bf16_ranker->Rank(request, &a).ok());
    ASSERT_TRUE(float_ranker->Rank(request, &b).ok());
    ASSERT_TRUE(bf16_ranker->Rank(request, &again).ok());
    ASSERT_EQ(a.items.size(), b.items.size());
    EXPECT_EQ(a.predictions, again.predictions);
    EXPECT_EQ(a.stats.scored, b.stats.scored);
    std::set<uint64_t> float_page;
    for (const auto& item : b.items) float_page.insert(item.video_id);
    for (const auto& item : a.items) same += float_page.count(item.video_id);
    total += a.items.size();
  }
  // Near-ties may swap at the page's edge; most of each page is shared.
  EXPECT_GE(double(same) / double(total), 0.8);
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

TEST_F(RankerTest, RerankCandidatesBoundsTheModelAndZeroIsRetrievalOrder) {
  RankRequest request;
  request.user_id = KnownUser(21);
  request.count = 20;
  RankingConfig bounded;
  bounded.mutable_params()->set_rerank_candidates(40);
  RankResult result;
  ASSERT_TRUE(MakeRanker(bounded)->Rank(request, &result).ok());
  EXPECT_EQ(result.stats.scored, 40);
  EXPECT_EQ(result.items.size(), 20u);
  EXPECT_FALSE(result.degraded());

  // 0: no model at all, and not a degradation: the page is the candidates
  // by retrieval score.
  RankingConfig none;
  none.mutable_params()->set_rerank_candidates(0);
  ASSERT_TRUE(MakeRanker(none)->Rank(request, &result).ok());
  EXPECT_EQ(result.stats.scored, 0);
  EXPECT_TRUE(result.predictions.empty());
  EXPECT_FALSE(result.degraded());
  ASSERT_EQ(result.items.size(), 20u);
  for (size_t i = 1; i < result.items.size(); ++i) {
    EXPECT_GE(result.items[i - 1].score, result.items[i].score);
  }
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

TEST_F(RankerTest, SourcesKeepingFewerThanTheCountAreFilledUpToAFullPage) {
  // An arm with few ANN candidates and no other source, asked for more than
  // they hold (found by the rank_request fuzzer: pages of 20 for a count of
  // 100). The next most popular videos fill the page.
  RankingConfig config;
  config.mutable_params()->set_ann_candidates(20);
  config.mutable_params()->set_popular_candidates(0);
  config.mutable_params()->set_fresh_candidates(0);
  auto ranker = MakeRanker(config);
  for (const uint64_t user : {KnownUser(3), uint64_t{987654321987ull}}) {
    RankRequest request;
    request.user_id = user;
    request.count = 100;
    RankResult result;
    ASSERT_TRUE(ranker->Rank(request, &result).ok());
    EXPECT_EQ(result.items.size(), 100u) << user;
    std::set<uint64_t> ids;
    for (const RankedVideo& item : result.items) ids.insert(item.video_id);
    EXPECT_EQ(ids.size(), 100u);
    EXPECT_GE(result.stats.popular_kept, 80);
  }
  // The fill resumes the popular list where its own pass stopped: no row is
  // counted twice, retrieved or excluded. Popular only (30), the 3 most
  // popular excluded, a count of 100.
  config.mutable_params()->set_ann_candidates(0);
  config.mutable_params()->set_popular_candidates(30);
  auto popular_only = MakeRanker(config);
  std::vector<uint64_t> top3;
  bundle().view->ForEachListed(CatalogView::List::kPopular, [&](int32_t row) {
    top3.push_back(bundle().view->video_id(row));
    return top3.size() < 3;
  });
  RankRequest request;
  request.user_id = KnownUser(3);
  request.count = 100;
  request.exclude_ids = top3;
  RankResult result;
  ASSERT_TRUE(popular_only->Rank(request, &result).ok());
  EXPECT_EQ(result.items.size(), 100u);
  EXPECT_EQ(result.stats.excluded, 3);
  EXPECT_EQ(result.stats.popular_kept, 100);
  EXPECT_EQ(result.stats.popular_retrieved, 103);
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
  EXPECT_EQ(result.stats.popular_kept + result.stats.fresh_kept, result.stats.scored);
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

// Budget tests run on a fake clock that does not move: the time left is
// exactly what the test says, however loaded the machine is.
TEST_F(RankerTest, PassedDeadlineIsDeadlineExceeded) {
  testing::FakeClock clock;
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{0, 0, 0}, &clock);
  RankRequest request;
  request.deadline = clock.Now();
  RankResult result;
  EXPECT_EQ(ranker->Rank(request, &result).code(), absl::StatusCode::kDeadlineExceeded);
  request.deadline = clock.Now() + std::chrono::microseconds(1);
  EXPECT_TRUE(ranker->Rank(request, &result).ok());
}

TEST_F(RankerTest, TightBudgetShrinksTheRerankAndSaysSo) {
  testing::FakeClock clock;
  // 100 us per candidate and a 20 ms budget less 200 us reserve: 198 fit.
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{100'000, 0, 200}, &clock);
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = clock.Now() + std::chrono::milliseconds(20);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.degraded());
  EXPECT_EQ(result.degrade_causes, 1u << int(DegradeCause::kRerankShrunk));
  EXPECT_THAT(result.degraded_reason,
              HasSubstr("reranked 198 of 570 candidates: 19800us left"));
  EXPECT_EQ(result.stats.scored, 198);
  EXPECT_EQ(result.items.size(), 20u);
  EXPECT_EQ(result.predictions.size(), 20u * bundle().model->num_objectives());
}

TEST_F(RankerTest, NoTimeForTheModelReturnsRetrievalOrder) {
  testing::FakeClock clock;
  // 10 ms per candidate: 4 fit in 50 ms, fewer than min_rerank_candidates.
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{10'000'000, 0, 0}, &clock);
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = clock.Now() + std::chrono::milliseconds(50);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_TRUE(result.has_cause(DegradeCause::kModelSkipped));
  EXPECT_THAT(result.degraded_reason,
              HasSubstr("model skipped: 50000us left, room for 5 candidates"));
  EXPECT_EQ(result.items.size(), 20u);
  EXPECT_TRUE(result.predictions.empty());
  EXPECT_EQ(result.stats.scored, 0);
  for (size_t i = 1; i < result.items.size(); ++i) {
    EXPECT_GE(result.items[i - 1].score, result.items[i].score);
  }
}

TEST_F(RankerTest, NoRoomForAnyCandidateSkipsTheModelEvenWithMinimumZero) {
  testing::FakeClock clock;
  RankingConfig config;
  config.mutable_params()->set_min_rerank_candidates(0);
  auto ranker = MakeRanker(config, RankerCosts{10'000'000, 0, 0}, &clock);
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = clock.Now() + std::chrono::microseconds(9999);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_THAT(result.degraded_reason, HasSubstr("model skipped"));
  EXPECT_EQ(result.items.size(), 20u);
}

TEST_F(RankerTest, NoTimeForAnnFallsBackToPopularAndFresh) {
  testing::FakeClock clock;
  auto ranker = MakeRanker(RankingConfig(), RankerCosts{1, 5000, 0}, &clock);
  RankRequest request;
  request.user_id = KnownUser(4);
  request.deadline = clock.Now() + std::chrono::microseconds(4999);
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_EQ(result.degrade_causes, 1u << int(DegradeCause::kAnnSkipped));
  EXPECT_THAT(result.degraded_reason, HasSubstr("ann skipped: 4999us left"));
  EXPECT_EQ(result.items.size(), 20u);
  EXPECT_EQ(result.stats.ann_retrieved, 0);
  for (const auto& item : result.items) EXPECT_NE(item.source, CandidateSource::kAnn);
  // One microsecond more and ANN runs.
  request.deadline = clock.Now() + std::chrono::microseconds(5001);
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_FALSE(result.has_cause(DegradeCause::kAnnSkipped));
}

TEST_F(RankerTest, CalibrateMeasuresWhatTheClockSays) {
  // Every clock read moves time by 1 ms, so each stage of a ranking takes
  // exactly 1 ms: ANN 1 ms, features + model 2 ms for 570 rows. The costs
  // are the medians, doubled.
  testing::FakeClock clock;
  clock.SetAutoAdvance(std::chrono::milliseconds(1));
  auto options = ResolveOptions(RankingConfig(), bundle().model->objectives());
  ASSERT_TRUE(options.ok());
  const RankerCosts costs = Ranker::Calibrate(*bundle_, *options, &clock);
  EXPECT_DOUBLE_EQ(costs.ann_micros, 2 * 1000.0);
  EXPECT_DOUBLE_EQ(costs.score_ns_per_row, 2 * 2000.0 * 1000.0 / 570);
  // And on the real clock: something positive.
  const RankerCosts real = Ranker::Calibrate(*bundle_, *options);
  EXPECT_GT(real.ann_micros, 0);
}

TEST_F(RankerTest, StatsAreAlwaysRecordedAndCountBeforeAndAfterDedup) {
  testing::FakeClock clock;
  clock.SetAutoAdvance(std::chrono::microseconds(10));
  RankingConfig config;
  config.mutable_params()->set_popular_candidates(200);
  auto ranker = MakeRanker(config, RankerCosts{0, 0, 0}, &clock);
  RankRequest request;
  request.user_id = KnownUser(6);
  std::vector<uint64_t> exclude = {
      bundle().catalog->video_id(bundle().catalog->popular_rows()[0])};
  request.exclude_ids = exclude;
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  const RankStats& s = result.stats;
  for (int i = 0; i < int(RankStage::kNumStages); ++i) {
    EXPECT_EQ(s.stage_micros[i], 10) << RankStageName(RankStage(i));
  }
  // ANN asked for 500 + 1 (the post-filtered exclude list), kept 500.
  EXPECT_EQ(s.ann_retrieved, 501);
  EXPECT_EQ(s.ann_kept, 500);
  // Popular: the excluded first row and every row ANN already had are
  // retrieved but not kept.
  EXPECT_EQ(s.popular_kept, 200);
  EXPECT_GT(s.popular_retrieved, s.popular_kept);
  EXPECT_GE(s.excluded, 1);
  EXPECT_EQ(s.scored, s.ann_kept + s.popular_kept + s.fresh_kept);
  // The beam width the search used, from the index's own rule.
  EXPECT_EQ(
      s.search.beam_width,
      bundle().catalog->index().EffectiveOptions(SearchOptions{501, 0, 0}).beam_width);
  EXPECT_EQ(s.search.nprobe, 0);
}

TEST_F(RankerTest, CreateChecksTheOptionsAgainstTheBundle) {
  auto options = ResolveOptions(RankingConfig(), bundle().model->objectives());
  ASSERT_TRUE(options.ok());
  RankingOptions short_weights = *options;
  short_weights.objective_weights.pop_back();
  auto ranker = Ranker::Create(*bundle_, RankerOptions{short_weights, RankerCosts{}});
  EXPECT_EQ(ranker.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ranker.status().message()), HasSubstr("5 objective weights"));
  EXPECT_FALSE(
      Ranker::Create(*bundle_, RankerOptions{*options, RankerCosts{}, nullptr}).ok());
  EXPECT_FALSE(Ranker::Create(nullptr, RankerOptions{*options, RankerCosts{}}).ok());
  // A catalogue without an index cannot serve an ANN source.
  auto data = Synthesize(testing::SmallSynth(500, 20));
  ASSERT_TRUE(data.ok());
  auto catalog = Catalog::Create(data->manifest, data->videos, data->users, nullptr);
  ASSERT_TRUE(catalog.ok());
  auto no_index = MakeBundle(data->manifest, *std::move(catalog), data->model);
  ASSERT_TRUE(no_index.ok()) << no_index.status();
  auto ann = Ranker::Create(*no_index, RankerOptions{*options, RankerCosts{}});
  EXPECT_THAT(std::string(ann.status().message()), HasSubstr("no index"));
  RankingOptions lists_only = *options;
  lists_only.ann_candidates = 0;
  EXPECT_TRUE(Ranker::Create(*no_index, RankerOptions{lists_only, RankerCosts{}}).ok());
}

TEST_F(RankerTest, CountIsCheckedAsGivenNotClamped) {
  auto ranker = MakeRanker();
  RankRequest request;
  request.count = int64_t{4294967295};
  RankResult result;
  const absl::Status status = ranker->Rank(request, &result);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("count: 4294967295 is outside [1, 200]"));
}

TEST_F(RankerTest, TheStagesCalledOneByOneGiveRanksPage) {
  auto ranker = MakeRanker();
  const CatalogView& view = *bundle().view;
  for (int u = 0; u < 5; ++u) {
    RankRequest request;
    request.user_id = KnownUser(u);
    request.context.now_ms = 1793491200000;
    RankResult whole, staged;
    ASSERT_TRUE(ranker->Rank(request, &whole).ok());
    CandidateBatch batch;
    ASSERT_TRUE(ranker->Validate(view, request, std::chrono::steady_clock::now()).ok());
    ranker->LookUpUser(view, request, &batch);
    ranker->Retrieve(view, request, &batch);
    EXPECT_EQ(batch.candidates.size(), 570u);
    ranker->Score(view, request, &batch);
    ranker->Assemble(&view, request, &batch, &staged);
    ASSERT_EQ(whole.items.size(), staged.items.size());
    for (size_t i = 0; i < whole.items.size(); ++i) {
      EXPECT_EQ(whole.items[i].video_id, staged.items[i].video_id);
      EXPECT_EQ(whole.items[i].score, staged.items[i].score);
    }
    ASSERT_EQ(whole.predictions.size(), staged.predictions.size());
    for (size_t i = 0; i < whole.predictions.size(); ++i) {
      ASSERT_EQ(whole.predictions[i], staged.predictions[i]) << i;
    }
  }
}

TEST_F(RankerTest, AssembleAtARootUsesTheCandidatesIdsAndCapsByCreator) {
  // A root has no rows: candidates carry their ids (merged shard answers).
  RankingConfig config;
  config.mutable_params()->set_creator_cap(1);
  auto ranker = MakeRanker(config);
  CandidateBatch batch;
  batch.user.known = true;
  for (int i = 0; i < 10; ++i) {
    Candidate c;
    c.video_id = 100 + i;
    c.creator_id = i < 6 ? 7 : 8 + i;  // six videos of creator 7
    c.score = 1.f - 0.01f * i;
    c.source = CandidateSource::kAnn;
    batch.candidates.push_back(c);
  }
  batch.candidates[9].score = batch.candidates[8].score;  // a tie: lower id first
  RankRequest request;
  request.count = 5;
  RankResult result;
  ranker->Assemble(nullptr, request, &batch, &result);
  std::vector<uint64_t> ids;
  for (const RankedVideo& v : result.items) ids.push_back(v.video_id);
  EXPECT_THAT(ids, ::testing::ElementsAre(100, 106, 107, 108, 109));
  EXPECT_EQ(result.stats.creator_capped, 5);
  // The cap gives way when it would leave the page short: the best capped
  // items fill it.
  request.count = 8;
  ranker->Assemble(nullptr, request, &batch, &result);
  ids.clear();
  for (const RankedVideo& v : result.items) ids.push_back(v.video_id);
  EXPECT_THAT(ids, ::testing::ElementsAre(100, 106, 107, 108, 109, 101, 102, 103));
  EXPECT_EQ(result.stats.creator_capped, 2);
}

// Assemble sorts a prefix of the candidates (four pages) and the rest only
// when the creator cap walks past it: the page must be what a full sort
// gives. 200 candidates in shuffled order, the best 150 all by one creator,
// cap 1: the walk passes the prefix of 64 to fill a page of 10, and the
// capped refill that follows must come in score order too.
TEST_F(RankerTest, AssembleWalksPastTheSortedPrefixInScoreOrder) {
  RankingConfig config;
  config.mutable_params()->set_creator_cap(1);
  auto ranker = MakeRanker(config);
  CandidateBatch batch;
  batch.user.known = true;
  std::vector<int> order(200);
  for (int i = 0; i < 200; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  for (int i : order) {  // i = rank by score, 0 best
    Candidate c;
    c.video_id = 1000 + i;
    c.creator_id = i < 150 ? 7 : 100 + i;
    c.score = 10.f - 0.01f * i;
    c.source = CandidateSource::kAnn;
    batch.candidates.push_back(c);
  }
  RankRequest request;
  request.count = 10;
  RankResult result;
  ranker->Assemble(nullptr, request, &batch, &result);
  std::vector<uint64_t> ids;
  for (const RankedVideo& v : result.items) ids.push_back(v.video_id);
  std::vector<uint64_t> want = {1000};
  for (int i = 150; i < 159; ++i) want.push_back(1000 + i);
  EXPECT_EQ(ids, want);
  // A page of 60 takes all 50 other creators, then the best capped videos
  // of creator 7 in order: 1001, 1002, ...
  request.count = 60;
  ranker->Assemble(nullptr, request, &batch, &result);
  ids.clear();
  for (const RankedVideo& v : result.items) ids.push_back(v.video_id);
  want = {1000};
  for (int i = 150; i < 200; ++i) want.push_back(1000 + i);
  for (int i = 1; i < 10; ++i) want.push_back(1000 + i);
  EXPECT_EQ(ids, want);
}

TEST_F(RankerTest, NearlyEverythingExcludedStillFillsThePage) {
  // HNSW, all but 30 videos excluded: the page is full (the contract), not
  // the 0-12 items the graph walk alone reaches.
  RankingConfig config;
  config.mutable_params()->set_max_exclude_ids(1000000);
  auto ranker = MakeRanker(config);
  std::vector<uint64_t> exclude;
  std::set<uint64_t> allowed;
  const Catalog& catalog = *bundle().catalog;
  for (int32_t row = 0; row < catalog.num_videos(); ++row) {
    if (row % 199 == 0 && allowed.size() < 30) {
      allowed.insert(catalog.video_id(row));
    } else {
      exclude.push_back(catalog.video_id(row));
    }
  }
  RankRequest request;
  request.user_id = KnownUser(3);
  request.exclude_ids = exclude;
  RankResult result;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_EQ(result.items.size(), 20u);
  for (const RankedVideo& v : result.items) EXPECT_TRUE(allowed.count(v.video_id));
  EXPECT_TRUE(result.stats.search.exact_fallback);
  // Asking for more than remain gives all that remain.
  request.count = 50;
  ASSERT_TRUE(ranker->Rank(request, &result).ok());
  EXPECT_EQ(result.items.size(), 30u);
}

TEST_F(RankerTest, TombstonedVideosNeverReachAPageAndDeltaVideosCan) {
  auto ranker = MakeRanker();
  const Catalog& catalog = *bundle().catalog;
  RankRequest request;
  request.user_id = KnownUser(8);
  request.count = 100;
  RankResult before;
  ASSERT_TRUE(ranker->Rank(request, &before).ok());
  // Delete the whole first page and the top popular and fresh videos; add a
  // video made for this user.
  auto tombstones = std::make_shared<RowBitmap>(catalog.num_videos());
  std::set<uint64_t> deleted;
  for (const RankedVideo& v : before.items) deleted.insert(v.video_id);
  for (int i = 0; i < 60; ++i) {
    deleted.insert(catalog.video_id(catalog.popular_rows()[i]));
    deleted.insert(catalog.video_id(catalog.fresh_rows()[i]));
  }
  for (uint64_t id : deleted) tombstones->Insert(*catalog.VideoRow(id));
  VideoColumns fresh;
  fresh.ids = {424242424242};
  const float* e = catalog.user_embedding(*catalog.UserRow(request.user_id));
  fresh.embeddings.assign(e, e + catalog.dim());
  for (float& x : fresh.embeddings) x *= 4;
  fresh.creator_ids = {1};
  fresh.duration_ms = {20000};
  fresh.upload_time_ms = {1793491100000};
  fresh.popularity = {500};
  auto delta = CatalogDelta::Create(catalog, fresh);
  ASSERT_TRUE(delta.ok());
  auto view = CatalogView::Create(bundle().catalog, *delta, tombstones, 1);
  ASSERT_TRUE(view.ok());
  RankResult after;
  ASSERT_TRUE(ranker->Rank(**view, request, &after).ok());
  EXPECT_EQ(after.items.size(), 100u);
  bool has_new = false;
  for (const RankedVideo& v : after.items) {
    EXPECT_EQ(deleted.count(v.video_id), 0u) << v.video_id;
    has_new |= v.video_id == 424242424242;
  }
  EXPECT_TRUE(has_new);
  // Features of a delta row come from the delta.
  const int32_t row = *(*view)->VideoRow(424242424242);
  std::vector<float> x(bundle().features.width());
  const UserQuery user = LookUpUser(catalog, request.user_id);
  bundle().features.Build(**view, user,
                          FeatureContext{1793491200000, 0, DeviceType::kUnspecified},
                          std::vector<int32_t>{row}, x.data());
  const std::vector<std::string> columns = bundle().features.ColumnNames();
  const size_t popularity =
      std::find(columns.begin(), columns.end(), "log_popularity") - columns.begin();
  ASSERT_LT(popularity, columns.size());
  EXPECT_FLOAT_EQ(x[popularity], std::log1p(500.f));
}

TEST_F(RankerTest, AViewOfAnotherDimensionIsRefused) {
  auto ranker = MakeRanker();
  auto other = testing::MakeSmallBundle([] {
    SynthOptions o = testing::SmallSynth(300, 20, "flat");
    o.dim = 16;
    return o;
  }());
  ASSERT_NE(other, nullptr);
  RankRequest request;
  RankResult result;
  EXPECT_EQ(ranker->Rank(*other->view, request, &result).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RankerTest, OneThreadRanksAgainstBundlesOfDifferentSizes) {
  // Per-thread scratch sized for one catalogue must serve another: marks,
  // heaps and buffers of the 6000-video bundle, then a 300-video one, and
  // back, on this one thread.
  auto small = testing::MakeSmallBundle(testing::SmallSynth(300, 30, "flat"));
  ASSERT_NE(small, nullptr);
  auto options = ResolveOptions(RankingConfig(), small->model->objectives());
  ASSERT_TRUE(options.ok());
  auto small_ranker =
      Ranker::Create(small, RankerOptions{*options, RankerCosts{0, 0, 0}});
  ASSERT_TRUE(small_ranker.ok());
  auto big_ranker = MakeRanker();
  for (int round = 0; round < 6; ++round) {
    const bool big = round % 2 == 0;
    const Ranker& r = big ? *big_ranker : **small_ranker;
    const Catalog& catalog = *r.bundle().catalog;
    for (int u = 0; u < 5; ++u) {
      RankRequest request;
      request.user_id = catalog.user_id(u);
      request.count = 40;
      std::vector<uint64_t> exclude;
      for (int i = 0; i < 100; ++i)
        exclude.push_back(catalog.video_id((i * 37 + u) % catalog.num_videos()));
      request.exclude_ids = exclude;
      RankResult result;
      ASSERT_TRUE(r.Rank(request, &result).ok());
      ASSERT_EQ(result.items.size(), 40u);
      std::set<uint64_t> ids;
      const std::set<uint64_t> banned(exclude.begin(), exclude.end());
      for (const RankedVideo& v : result.items) {
        ASSERT_TRUE(catalog.VideoRow(v.video_id).has_value()) << "not of this catalogue";
        ASSERT_TRUE(ids.insert(v.video_id).second);
        ASSERT_EQ(banned.count(v.video_id), 0u);
      }
    }
  }
}

TEST(RankerTrendingTest, TheTrendingSourceAddsTheMostLikedVideosOfTheLastHours) {
  // A bundle of its own: the events change what it ranks.
  std::shared_ptr<const Bundle> bundle =
      testing::MakeSmallBundle(testing::SmallSynth(2000, 100));
  const Catalog& catalog = *bundle->catalog;
  const int64_t now = 1793491200000;
  // The 30 least popular videos get likes, the later ones more of them;
  // one is on the exclude list.
  std::vector<int32_t> by_popularity(catalog.num_videos());
  std::iota(by_popularity.begin(), by_popularity.end(), 0);
  std::stable_sort(by_popularity.begin(), by_popularity.end(), [&](int32_t a, int32_t b) {
    return catalog.popularity(a) < catalog.popularity(b);
  });
  std::vector<EngagementEvent> events;
  for (int i = 0; i < 30; ++i) {
    for (int j = 0; j <= i; ++j) {
      events.push_back(
          {uint64_t(j), catalog.video_id(by_popularity[i]), now - 60000, true});
    }
  }
  bundle->engagement->Record(events);
  RankingConfig config;
  config.mutable_params()->set_trending_candidates(10);
  config.mutable_params()->set_ann_candidates(0);
  config.mutable_params()->set_fresh_candidates(0);
  auto options = ResolveOptions(config, bundle->model->objectives());
  ASSERT_TRUE(options.ok()) << options.status();
  auto ranker = Ranker::Create(bundle, RankerOptions{*options, RankerCosts{0, 0, 0}});
  ASSERT_TRUE(ranker.ok());
  RankRequest request;
  request.user_id = catalog.user_id(0);
  request.context.now_ms = now;
  const std::vector<uint64_t> exclude = {catalog.video_id(by_popularity[29])};
  request.exclude_ids = exclude;
  CandidateBatch batch;
  const CatalogView& view = *bundle->view;
  (*ranker)->LookUpUser(view, request, &batch);
  (*ranker)->Retrieve(view, request, &batch);
  std::vector<int32_t> trending;
  for (const Candidate& c : batch.candidates) {
    if (c.source == CandidateSource::kTrending) trending.push_back(c.row);
  }
  // The most liked first: rows 28, 27, ... (29 is excluded), ten of them,
  // unless the popular source took one first.
  ASSERT_EQ(batch.stats.trending_kept, 10);
  EXPECT_EQ(int(trending.size()), 10);
  EXPECT_EQ(batch.stats.excluded, 1);
  std::vector<int32_t> expected;
  for (int i = 28; int(expected.size()) < 10; --i) {
    const int32_t row = by_popularity[i];
    bool popular = false;
    for (const Candidate& c : batch.candidates) {
      popular |= c.row == row && c.source == CandidateSource::kPopular;
    }
    if (!popular) expected.push_back(row);
  }
  EXPECT_EQ(trending, expected);
  // Off by config.
  config.mutable_params()->set_trending_candidates(0);
  auto off = ResolveOptions(config, bundle->model->objectives());
  ASSERT_TRUE(off.ok());
  auto plain = Ranker::Create(bundle, RankerOptions{*off, RankerCosts{0, 0, 0}});
  CandidateBatch none;
  (*plain)->LookUpUser(view, request, &none);
  (*plain)->Retrieve(view, request, &none);
  EXPECT_EQ(none.stats.trending_retrieved, 0);
  // Bounded by the list's length.
  config.mutable_params()->set_trending_candidates(kTrendingTop + 1);
  EXPECT_THAT(
      std::string(ResolveOptions(config, bundle->model->objectives()).status().message()),
      HasSubstr("trending_candidates"));
}

class RankerIndexTypeTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RankerIndexTypeTest, FullUniquePagesOnEveryIndexType) {
  auto bundle = testing::MakeSmallBundle(testing::SmallSynth(4000, 100, GetParam()));
  ASSERT_NE(bundle, nullptr);
  auto options = ResolveOptions(RankingConfig(), bundle->model->objectives());
  ASSERT_TRUE(options.ok());
  auto ranker = Ranker::Create(bundle, RankerOptions{*options, RankerCosts{0, 0, 0}});
  ASSERT_TRUE(ranker.ok());
  const Catalog& catalog = *bundle->catalog;
  for (int u = 0; u < 10; ++u) {
    RankRequest request;
    request.user_id = catalog.user_id(u);
    request.count = 50;
    RankResult result;
    ASSERT_TRUE((*ranker)->Rank(request, &result).ok());
    ASSERT_EQ(result.items.size(), 50u);
    EXPECT_EQ(result.stats.ann_kept, 500);
    std::set<uint64_t> ids;
    for (const RankedVideo& v : result.items) ASSERT_TRUE(ids.insert(v.video_id).second);
    if (std::string(GetParam()) == "ivf") {
      EXPECT_GT(result.stats.search.nprobe, 0);
    }
    if (std::string(GetParam()) == "flat") {
      EXPECT_EQ(result.stats.search.beam_width, 0);
      EXPECT_EQ(result.stats.search.nprobe, 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, RankerIndexTypeTest,
                         ::testing::Values("hnsw", "ivf", "flat"));

}  // namespace
}  // namespace feedrank

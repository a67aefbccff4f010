// The report's baselines against small cases computed by hand.
#include "training/baselines.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

namespace feedrank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr int64_t kHour = 3600 * 1000;

TEST(RecentPopularityTest, CountsPositivesInTheWindowBeforeTheAsOfTime) {
  const std::vector<PositiveEvent> events = {
      {1, 10, 1 * kHour},  {2, 10, 2 * kHour},  {3, 10, 3 * kHour},  // item 10: early
      {1, 20, 9 * kHour},  {2, 20, 10 * kHour},                      // item 20: late
      {3, 30, 11 * kHour},                                           // item 30: latest
      {4, 40, 12 * kHour},  // at the as-of time: not before it
  };
  EXPECT_THAT(RecentPopularity(events, 12 * kHour, 4 * kHour, 10), ElementsAre(20, 30));
  EXPECT_THAT(RecentPopularity(events, 12 * kHour, 0, 10), ElementsAre(10, 20, 30));
  EXPECT_THAT(RecentPopularity(events, 12 * kHour, 0, 2), ElementsAre(10, 20));
  // Ties go to the smaller id.
  EXPECT_THAT(RecentPopularity(events, 12 * kHour, 2 * kHour, 10), ElementsAre(20, 30));
  EXPECT_THAT(RecentPopularity(events, 11 * kHour + 1, kHour + 1, 10),
              ElementsAre(20, 30));
  EXPECT_TRUE(RecentPopularity(events, 0, 0, 10).empty());
}

TEST(EaseTest, WeightsAreTheClosedFormOfAHandComputedCase) {
  // Users {1, 2}, {1, 2}, {3}; lambda 1: G = X'X + I = [[3,2,0],[2,3,0],[0,0,2]],
  // P = G^-1 = [[3/5,-2/5,0],[-2/5,3/5,0],[0,0,1/2]], B(i,j) = -P(i,j)/P(j,j).
  const std::vector<PositiveEvent> events = {
      {100, 1, 0}, {100, 2, 0}, {200, 1, 0},
      {200, 2, 0}, {300, 3, 0}, {300, 3, 5},  // a repeat counts once
  };
  auto ease = Ease::Fit(events, 1.0);
  ASSERT_TRUE(ease.ok()) << ease.status();
  EXPECT_EQ(ease->num_items(), 3);
  EXPECT_NEAR(ease->Weight(1, 2), 2.0 / 3.0, 1e-6);
  EXPECT_NEAR(ease->Weight(2, 1), 2.0 / 3.0, 1e-6);
  EXPECT_NEAR(ease->Weight(1, 3), 0.0, 1e-6);
  EXPECT_EQ(ease->Weight(1, 1), 0.0f);
  EXPECT_EQ(ease->Weight(1, 99), 0.0f);
  // A user who liked 1 is shown 2, then 3 (score 0, the tie broken by id).
  EXPECT_THAT(ease->Recommend({1}, {1}, 10), ElementsAre(2, 3));
  EXPECT_THAT(ease->Recommend({1, 1, 99}, {1}, 1), ElementsAre(2));
  EXPECT_TRUE(ease->Recommend({99}, {}, 10).empty());
  // A larger lambda shrinks the weight: 2 / (3 + lambda - 1) ... here 2/6.
  auto shrunk = Ease::Fit(events, 4.0);
  ASSERT_TRUE(shrunk.ok());
  // G = [[6,2,0],[2,6,0],[0,0,5]]: P(1,2) = -2/32, P(2,2) = 6/32 -> 1/3.
  EXPECT_NEAR(shrunk->Weight(1, 2), 1.0 / 3.0, 1e-6);
}

TEST(EaseTest, OnlyTheMostLikedItemsAreModelled) {
  // Item 1: 3 likes, item 2: 2, item 3: 2 (the tie goes to the smaller id).
  // With room for two, item 3 is left out: never recommended, ignored in a
  // history.
  const std::vector<PositiveEvent> events = {
      {10, 1, 0}, {11, 1, 0}, {12, 1, 0}, {10, 2, 0}, {11, 2, 0}, {12, 3, 0}, {10, 3, 0}};
  auto ease = Ease::Fit(events, 1.0, 2);
  ASSERT_TRUE(ease.ok()) << ease.status();
  EXPECT_EQ(ease->num_items(), 2);
  EXPECT_THAT(ease->Recommend({1}, {1}, 10), ElementsAre(2));
  EXPECT_TRUE(ease->Recommend({3}, {}, 10).empty());
}

TEST(EaseTest, BadFitsAreRefused) {
  EXPECT_EQ(Ease::Fit({{1, 1, 0}}, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ease::Fit({{1, 1, 0}}, 1, kEaseMaxItems + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ease::Fit({{1, 1, 0}}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ease::Fit({}, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

// Two disjoint groups: users 1-4 each like three of the items 10-13, users
// 5-8 three of the items 20-23 (user 1 has not seen 13, user 5 not 23). In
// two dimensions each group gets its own direction.
std::vector<PositiveEvent> TwoGroups() {
  std::vector<PositiveEvent> events;
  for (uint64_t group : {0, 1}) {
    for (uint64_t u = 0; u < 4; ++u) {
      for (uint64_t i = 0; i < 4; ++i) {
        if (i == 3 - u) continue;  // each user misses one item
        events.push_back({1 + 4 * group + u, 10 + 10 * group + i, 0});
      }
    }
  }
  return events;
}

AlsBaselineOptions TwoDimensions() {
  AlsBaselineOptions options;
  options.dim = 2;
  return options;
}

TEST(ImplicitAlsTest, RanksTheUsersOwnGroupFirst) {
  auto als = ImplicitAls::Fit(TwoGroups(), TwoDimensions());
  ASSERT_TRUE(als.ok()) << als.status();
  EXPECT_EQ(als->num_users(), 8);
  EXPECT_EQ(als->num_items(), 8);
  // User 1's unseen group-A item first, then group B; k above the catalogue.
  std::vector<uint64_t> ranked = als->Recommend(1, {10, 11, 12}, 100);
  ASSERT_EQ(ranked.size(), 5u);
  EXPECT_EQ(ranked[0], 13u);
  EXPECT_THAT(std::vector<uint64_t>(ranked.begin() + 1, ranked.end()),
              UnorderedElementsAre(20, 21, 22, 23));
  for (uint64_t b : {20, 21, 22, 23}) EXPECT_GT(*als->Score(1, 13), *als->Score(1, b));
  // Without exclusions the whole group A comes first.
  ranked = als->Recommend(1, {}, 4);
  EXPECT_THAT(ranked, UnorderedElementsAre(10, 11, 12, 13));
  // Likewise for group B.
  ranked = als->Recommend(5, {20, 21, 22}, 1);
  EXPECT_THAT(ranked, ElementsAre(23));
  EXPECT_TRUE(als->Recommend(5, {}, 0).empty());
  EXPECT_TRUE(als->Recommend(1, {10, 11, 12, 13, 20, 21, 22, 23}, 10).empty());
  // Unknown users and items.
  EXPECT_TRUE(als->Recommend(99, {}, 10).empty());
  EXPECT_FALSE(als->Score(99, 10).has_value());
  EXPECT_FALSE(als->Score(1, 99).has_value());
}

TEST(ImplicitAlsTest, TiesGoToTheSmallerItemId) {
  // Items 30 and 5 have the same users, so bit-identical vectors.
  const std::vector<PositiveEvent> events = {{1, 30, 0}, {1, 5, 0}, {2, 30, 0},
                                             {2, 5, 0},  {2, 7, 0}, {3, 7, 0}};
  auto als = ImplicitAls::Fit(events, TwoDimensions());
  ASSERT_TRUE(als.ok()) << als.status();
  ASSERT_EQ(*als->Score(3, 5), *als->Score(3, 30));
  EXPECT_THAT(als->Recommend(3, {7}, 10), ElementsAre(5, 30));
  EXPECT_THAT(als->Recommend(3, {7}, 1), ElementsAre(5));
}

TEST(ImplicitAlsTest, IsDeterministicForASeed) {
  AlsBaselineOptions options;
  options.seed = 7;
  auto a = ImplicitAls::Fit(TwoGroups(), options);
  auto b = ImplicitAls::Fit(TwoGroups(), options);
  ASSERT_TRUE(a.ok() && b.ok());
  for (uint64_t user = 1; user <= 8; ++user) {
    EXPECT_EQ(a->Recommend(user, {}, 8), b->Recommend(user, {}, 8));
    for (uint64_t item : {10, 11, 12, 13, 20, 21, 22, 23}) {
      EXPECT_EQ(*a->Score(user, item), *b->Score(user, item));
    }
  }
}

TEST(ImplicitAlsTest, BadFitsAreRefused) {
  auto refused = [](const AlsBaselineOptions& options,
                    const std::vector<PositiveEvent>& events = {{1, 1, 0}}) {
    absl::Status status = ImplicitAls::Fit(events, options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return std::string(status.message());
  };
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  AlsBaselineOptions o;
  for (int dim : {0, -1, kAlsMaxDim + 1}) {
    o = {};
    o.dim = dim;
    EXPECT_THAT(refused(o), HasSubstr("dim"));
  }
  for (float reg : {-0.1f, inf, nan}) {
    o = {};
    o.reg = reg;
    EXPECT_THAT(refused(o), HasSubstr("reg"));
  }
  for (float alpha : {-1.f, inf, nan}) {
    o = {};
    o.alpha = alpha;
    EXPECT_THAT(refused(o), HasSubstr("alpha"));
  }
  for (int epochs : {0, kAlsMaxEpochs + 1}) {
    o = {};
    o.epochs = epochs;
    EXPECT_THAT(refused(o), HasSubstr("epochs"));
  }
  EXPECT_THAT(refused({}, {}), HasSubstr("no positive"));
  // The bounds themselves are accepted.
  o = {};
  o.dim = 1;
  o.reg = 0;
  o.alpha = 0;
  o.epochs = 1;
  EXPECT_TRUE(ImplicitAls::Fit({{1, 1, 0}}, o).ok());
}

}  // namespace
}  // namespace feedrank

// The report's baselines against small cases computed by hand.
#include "training/baselines.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace feedrank {
namespace {

using ::testing::ElementsAre;

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

}  // namespace
}  // namespace feedrank

// The shared metrics against values computed by hand, and the bootstrap
// intervals' coverage on distributions whose true mean is known.
#include "evaluation/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace feedrank {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

bool AllNan(const Interval& x) {
  return std::isnan(x.value) && std::isnan(x.lo) && std::isnan(x.hi);
}

TEST(NdcgAtKTest, HandComputed) {
  // Relevant at ranks 1 and 3 of k = 3, 2 relevant in all:
  // DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5;
  // ideal = 1/log2(2) + 1/log2(3) = 1 + 0.6309297536 = 1.6309297536;
  // NDCG = 1.5 / 1.6309297536 = 0.9197207891.
  EXPECT_NEAR(NdcgAtK({true, false, true}, 2, 3), 0.9197207891481876, 1e-12);
  // More relevant items (5) than k = 3: the ideal is 3 hits,
  // 1 + 0.6309297536 + 0.5 = 2.1309297536; DCG of hits at ranks 1 and 2 is
  // 1.6309297536; NDCG = 1.6309297536 / 2.1309297536 = 0.7653606370.
  EXPECT_NEAR(NdcgAtK({true, true, false}, 5, 3), 0.7653606369886217, 1e-12);
  // A hit below rank k does not count.
  EXPECT_DOUBLE_EQ(NdcgAtK({false, false, false, true}, 1, 3), 0.0);
  // One relevant item, found at rank 2: 1/log2(3) over 1.
  EXPECT_NEAR(NdcgAtK({false, true}, 1, 10), 0.6309297535714575, 1e-12);
  EXPECT_DOUBLE_EQ(NdcgAtK({true, false}, 1, 10), 1.0);
  EXPECT_DOUBLE_EQ(NdcgAtK({false, false}, 0, 10), 0.0);  // nothing relevant
  EXPECT_DOUBLE_EQ(NdcgAtK({}, 3, 10), 0.0);              // an empty page
}

TEST(RecallAtKTest, HandComputed) {
  // 3 relevant, hits at ranks 2 and 4.
  const std::vector<bool> page = {false, true, false, true};
  // k = 2: 1 hit in the first 2 over min(2, 3) = 2 -> 0.5.
  EXPECT_DOUBLE_EQ(RecallAtK(page, 3, 2), 0.5);
  // k = 4: 2 hits over min(4, 3) = 3 -> 0.6667.
  EXPECT_DOUBLE_EQ(RecallAtK(page, 3, 4), 2.0 / 3.0);
  // k past the page's end: 1 hit over min(10, 4) = 4 -> 0.25.
  EXPECT_DOUBLE_EQ(RecallAtK({true}, 4, 10), 0.25);
  // k = 1 with 3 relevant: the one slot is filled -> 1 / min(1, 3) = 1.
  EXPECT_DOUBLE_EQ(RecallAtK({true, true}, 3, 1), 1.0);
  EXPECT_DOUBLE_EQ(RecallAtK({false, false}, 0, 2), 0.0);  // nothing relevant
}

TEST(HitAtKTest, HandComputed) {
  EXPECT_DOUBLE_EQ(HitAtK({false, false, true}, 2), 0.0);  // the hit is at rank 3
  EXPECT_DOUBLE_EQ(HitAtK({false, false, true}, 3), 1.0);
  EXPECT_DOUBLE_EQ(HitAtK({true, true}, 10), 1.0);  // two hits still count once
  EXPECT_DOUBLE_EQ(HitAtK({}, 10), 0.0);
}

TEST(AucTest, HandComputedWithTies) {
  // Positives 0.8 and 0.5, negatives 0.5 and 0.2. Pairs (positive,
  // negative): (0.8, 0.5) 1, (0.8, 0.2) 1, (0.5, 0.5) a tie 0.5,
  // (0.5, 0.2) 1 -> 3.5 / 4 = 0.875.
  EXPECT_DOUBLE_EQ(Auc({0.8f, 0.5f, 0.5f, 0.2f}, {1, 1, 0, 0}), 0.875);
  // Every score equal: each of the 2 * 1 pairs is a tie -> 0.5.
  EXPECT_DOUBLE_EQ(Auc({0.5f, 0.5f, 0.5f}, {1, 0, 0}), 0.5);
  // Positives 0.7, 0.3; negatives 0.7, 0.3: (0.7, 0.7) 0.5, (0.7, 0.3) 1,
  // (0.3, 0.7) 0, (0.3, 0.3) 0.5 -> 2 / 4 = 0.5.
  EXPECT_DOUBLE_EQ(Auc({0.7f, 0.7f, 0.3f, 0.3f}, {1, 0, 1, 0}), 0.5);
  // Positives 0.3, 0.6; negatives 0.4, 0.2: 0 + 1 + 1 + 1 -> 0.75.
  EXPECT_DOUBLE_EQ(Auc({0.3f, 0.6f, 0.4f, 0.2f}, {1, 1, 0, 0}), 0.75);
  EXPECT_DOUBLE_EQ(Auc({0.9f, 0.8f, 0.1f}, {1, 1, 0}), 1.0);
  EXPECT_DOUBLE_EQ(Auc({0.1f, 0.8f, 0.9f}, {1, 1, 0}), 0.0);
  // A label of 0.5 or more is positive: 0.6 is, 0.4 is not.
  EXPECT_DOUBLE_EQ(Auc({0.9f, 0.1f}, {0.6f, 0.4f}), 1.0);
  EXPECT_TRUE(std::isnan(Auc({0.3f}, {1})));           // no negative
  EXPECT_TRUE(std::isnan(Auc({0.3f, 0.2f}, {0, 0})));  // no positive
  EXPECT_TRUE(std::isnan(Auc({0.3f, 0.2f}, {1})));     // sizes differ
}

TEST(AucTest, NanScoresEndTheWalkInsteadOfStallingIt) {
  // A NaN equals nothing, not even itself: each is a step of its own (this
  // walk once looped forever on a model that predicted NaN).
  const float nan = std::nanf("");
  const double auc = Auc({nan, 0.9f, nan, 0.1f}, {1, 1, 0, 0});
  EXPECT_TRUE(std::isfinite(auc) || std::isnan(auc));
  EXPECT_DOUBLE_EQ(Auc({0.9f, 0.1f}, {1, 0}), 1.0);
}

TEST(LogLossTest, HandComputed) {
  // -(ln 0.9 + ln(1 - 0.2)) / 2 = (0.1053605157 + 0.2231435513) / 2
  // = 0.1642520335 (0.9f and 0.2f are within 3e-8 of 0.9 and 0.2).
  EXPECT_NEAR(LogLoss({0.9f, 0.2f}, {1, 0}), 0.164252033486018, 1e-6);
  // Certain and wrong: clipped to 1e-7, -ln(1e-7) = 16.1180956510 each.
  EXPECT_NEAR(LogLoss({0.f, 1.f}, {1, 0}), 16.11809565095832, 1e-6);
  // Certain and right: -ln(1 - 1e-7) = 1.0000000495e-7, not 0.
  EXPECT_NEAR(LogLoss({0.f}, {0}), 1.0000000494736474e-07, 1e-12);
  // A soft label: -(0.3 ln 0.5 + 0.7 ln 0.5) = ln 2 = 0.6931471806.
  EXPECT_NEAR(LogLoss({0.5f}, {0.3f}), 0.6931471805599453, 1e-6);
  EXPECT_TRUE(std::isnan(LogLoss({}, {})));
  EXPECT_TRUE(std::isnan(LogLoss({0.5f}, {1, 0})));  // sizes differ
}

TEST(PercentileTest, MatchesNumpyLinear) {
  // numpy.percentile([1, 2, 3, 4], q): index h = (4 - 1) * q / 100 between
  // order statistics. q = 2.5: h = 0.075 -> 1 + 0.075 * (2 - 1) = 1.075;
  // q = 25: h = 0.75 -> 1.75; q = 50: h = 1.5 -> 2.5; q = 97.5: h = 2.925
  // -> 3 + 0.925 * (4 - 3) = 3.925.
  std::vector<double> v = {3, 1, 4, 2};
  EXPECT_DOUBLE_EQ(Percentile(&v, 0), 1.0);
  EXPECT_NEAR(Percentile(&v, 2.5), 1.075, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile(&v, 25), 1.75);
  EXPECT_DOUBLE_EQ(Percentile(&v, 50), 2.5);
  EXPECT_NEAR(Percentile(&v, 97.5), 3.925, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile(&v, 100), 4.0);
  EXPECT_EQ(v, (std::vector<double>{1, 2, 3, 4}));  // sorted in place
  // [0, 5, 10] at q = 90: h = 2 * 0.9 = 1.8 -> 5 + 0.8 * (10 - 5) = 9.
  std::vector<double> w = {10, 0, 5};
  EXPECT_DOUBLE_EQ(Percentile(&w, 90), 9.0);
  std::vector<double> one = {7};
  EXPECT_DOUBLE_EQ(Percentile(&one, 2.5), 7.0);
  std::vector<double> empty;
  EXPECT_DOUBLE_EQ(Percentile(&empty, 50), 0.0);
  // NaNs are left out: the median of [1, 3] is 2.
  std::vector<double> with_nan = {kNan, 3, 1};
  EXPECT_DOUBLE_EQ(Percentile(&with_nan, 50), 2.0);
  std::vector<double> only_nan = {kNan};
  EXPECT_TRUE(std::isnan(Percentile(&only_nan, 50)));
}

TEST(MeanWithCiTest, DeterministicAndBracketsTheMean) {
  std::vector<double> values(200);
  for (int i = 0; i < 200; ++i) values[i] = i % 2;
  const Interval mean = MeanWithCi(values, 500, 1);
  EXPECT_DOUBLE_EQ(mean.value, 0.5);
  // Standard error sqrt(0.25 / 200) = 0.035: about [0.43, 0.57].
  EXPECT_LT(mean.lo, 0.5);
  EXPECT_GT(mean.hi, 0.5);
  EXPECT_GT(mean.lo, 0.40);
  EXPECT_LT(mean.hi, 0.60);
  const Interval again = MeanWithCi(values, 500, 1);
  EXPECT_EQ(again.lo, mean.lo);
  EXPECT_EQ(again.hi, mean.hi);
  // A constant has no spread: every resample's mean is the constant.
  const Interval constant = MeanWithCi({2, 2, 2}, 100, 5);
  EXPECT_EQ(constant.value, 2);
  EXPECT_EQ(constant.lo, 2);
  EXPECT_EQ(constant.hi, 2);
}

TEST(MeanWithCiTest, NanCases) {
  EXPECT_TRUE(AllNan(MeanWithCi({}, 100, 1)));
  // No resamples: the mean, and no interval.
  const Interval none = MeanWithCi({1, 2}, 0, 1);
  EXPECT_DOUBLE_EQ(none.value, 1.5);
  EXPECT_TRUE(std::isnan(none.lo));
  EXPECT_TRUE(std::isnan(none.hi));
}

// 200 users with values from N(mu, 1), 200 times: the 95% interval should
// cover mu in about 95% of trials (the percentile bootstrap runs a little
// under at n = 200; the bounds leave room for that and for 200 trials'
// binomial spread, sd 1.5%).
TEST(MeanWithCiTest, CoversTheTrueMean) {
  constexpr double kMu = 0.3;
  constexpr int kTrials = 200, kUsers = 200, kResamples = 400;
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> normal(kMu, 1.0);
  int covered = 0;
  std::vector<double> values(kUsers);
  for (int t = 0; t < kTrials; ++t) {
    for (double& v : values) v = normal(rng);
    const Interval x = MeanWithCi(values, kResamples, 100 + t);
    covered += x.lo <= kMu && kMu <= x.hi;
  }
  const double coverage = double(covered) / kTrials;
  RecordProperty("coverage", std::to_string(coverage));
  EXPECT_GE(coverage, 0.90);
  EXPECT_LE(coverage, 0.99);
}

// b = a + d + small noise per user, the users themselves spread widely: the
// paired interval covers d, and is far narrower than the interval of the
// difference of two unpaired means, which carries the users' spread twice.
TEST(PairedDeltaWithCiTest, CoversTheTrueDeltaAndIsNarrowerThanUnpaired) {
  constexpr double kDelta = 0.05;
  constexpr int kTrials = 200, kUsers = 200, kResamples = 400;
  std::mt19937_64 rng(77);
  std::normal_distribution<double> user_level(0.0, 1.0), noise(0.0, 0.1);
  int covered = 0;
  double paired_width = 0, unpaired_width = 0;
  int unpaired_trials = 0;
  std::vector<double> a(kUsers), b(kUsers);
  for (int t = 0; t < kTrials; ++t) {
    for (int u = 0; u < kUsers; ++u) {
      const double level = user_level(rng);
      a[u] = level + noise(rng);
      b[u] = level + kDelta + noise(rng);
    }
    const Interval paired = PairedDeltaWithCi(a, b, kResamples, 500 + t);
    covered += paired.lo <= kDelta && kDelta <= paired.hi;
    paired_width += paired.hi - paired.lo;
    // The unpaired interval, as one would get from two independent
    // MeanWithCi: the delta's bounds from each side's bounds in quadrature
    // (independent normal errors). Every 10th trial keeps the test fast.
    if (t % 10 == 0) {
      const Interval ia = MeanWithCi(a, kResamples, 900 + t);
      const Interval ib = MeanWithCi(b, kResamples, 1900 + t);
      unpaired_width += std::hypot(ia.hi - ia.lo, ib.hi - ib.lo);
      ++unpaired_trials;
    }
  }
  const double coverage = double(covered) / kTrials;
  EXPECT_GE(coverage, 0.90);
  EXPECT_LE(coverage, 0.99);
  paired_width /= kTrials;
  unpaired_width /= unpaired_trials;
  // Expected: paired 3.92 * sqrt(2 * 0.01 / 200) = 0.039; unpaired
  // 3.92 * sqrt(2 * 1.01 / 200) = 0.39, ten times wider.
  RecordProperty("coverage", std::to_string(coverage));
  RecordProperty("paired_width", std::to_string(paired_width));
  RecordProperty("unpaired_width", std::to_string(unpaired_width));
  EXPECT_LT(paired_width, unpaired_width / 5);
  EXPECT_NEAR(paired_width, 0.039, 0.01);
}

TEST(PairedDeltaWithCiTest, IdenticalArmsGiveExactlyZero) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> a(300);
  for (double& v : a) v = normal(rng);
  const Interval x = PairedDeltaWithCi(a, a, 500, 9);
  EXPECT_EQ(x.value, 0.0);
  EXPECT_EQ(x.lo, 0.0);
  EXPECT_EQ(x.hi, 0.0);
}

TEST(PairedDeltaWithCiTest, RefusesMismatchedSizes) {
  EXPECT_TRUE(AllNan(PairedDeltaWithCi({1, 2}, {1}, 100, 1)));
  EXPECT_TRUE(AllNan(PairedDeltaWithCi({}, {}, 100, 1)));
}

TEST(AucWithCiTest, ValueIsAucAndIntervalBracketsIt) {
  const std::vector<float> scores = {0.9f, 0.8f, 0.2f, 0.1f};
  const std::vector<float> labels = {1, 0, 1, 0};
  // Positives 0.9, 0.2; negatives 0.8, 0.1: 1 + 1 + 0 + 1 -> 0.75.
  const Interval auc = AucWithCi(scores, labels, {0, 0, 1, 1}, 2, 200, 3);
  EXPECT_DOUBLE_EQ(auc.value, 0.75);
  EXPECT_DOUBLE_EQ(auc.value, Auc(scores, labels));
  EXPECT_LE(auc.lo, auc.value);
  EXPECT_GE(auc.hi, auc.value);
}

TEST(AucWithCiTest, ResamplesWithOneClassAreLeftOut) {
  // User 0 has the positive, user 1 the negative. A resample that draws one
  // user twice has one class only (NaN, left out); one that draws both has
  // AUC 1. So the interval is [1, 1].
  const Interval auc = AucWithCi({0.9f, 0.1f}, {1, 0}, {0, 1}, 2, 200, 4);
  EXPECT_DOUBLE_EQ(auc.value, 1.0);
  EXPECT_DOUBLE_EQ(auc.lo, 1.0);
  EXPECT_DOUBLE_EQ(auc.hi, 1.0);
  // One class in all rows: no AUC and no interval.
  EXPECT_TRUE(AllNan(AucWithCi({0.9f, 0.1f}, {1, 1}, {0, 1}, 2, 100, 4)));
  // A user outside [0, num_groups).
  EXPECT_TRUE(AllNan(AucWithCi({0.9f, 0.1f}, {1, 0}, {0, 2}, 2, 100, 4)));
}

TEST(PairedAucDeltaWithCiTest, SameUsersForBothArms) {
  // User 0 has rows 0-1, user 1 rows 2-3; labels 1, 0, 1, 0.
  const std::vector<float> labels = {1, 0, 1, 0};
  const std::vector<int32_t> groups = {0, 0, 1, 1};
  // a: positives 0.2, 0.9; negatives 0.8, 0.1: 0 + 1 + 1 + 1 -> 0.75.
  // b: every positive above every negative -> 1. Delta 0.25.
  const std::vector<float> a = {0.2f, 0.8f, 0.9f, 0.1f};
  const std::vector<float> b = {0.9f, 0.1f, 0.8f, 0.2f};
  const Interval delta = PairedAucDeltaWithCi(a, b, labels, groups, 2, 400, 5);
  EXPECT_DOUBLE_EQ(delta.value, 0.25);
  // A paired resample is one of: both users (delta 0.25, probability 1/2),
  // user 0 twice (a's AUC 0, b's 1: delta 1, probability 1/4), user 1 twice
  // (both 1: delta 0, probability 1/4). The 2.5th and 97.5th percentiles
  // fall inside the runs of 0s and 1s.
  EXPECT_DOUBLE_EQ(delta.lo, 0.0);
  EXPECT_DOUBLE_EQ(delta.hi, 1.0);
  const Interval same = PairedAucDeltaWithCi(a, a, labels, groups, 2, 400, 5);
  EXPECT_EQ(same.value, 0.0);
  EXPECT_EQ(same.lo, 0.0);
  EXPECT_EQ(same.hi, 0.0);
  EXPECT_TRUE(AllNan(PairedAucDeltaWithCi(a, {0.5f}, labels, groups, 2, 100, 5)));
}

TEST(PairedAucDeltaOverUsersTest, DifferentRowsOfTheSameUsers) {
  // a has two rows per user; b has other rows (another ranker's page): user
  // 0 a positive 0.7 and a negative 0.6, user 1 one negative 0.9.
  const std::vector<float> a = {0.2f, 0.8f, 0.9f, 0.1f};
  const std::vector<float> a_labels = {1, 0, 1, 0};
  const std::vector<int32_t> a_groups = {0, 0, 1, 1};
  const std::vector<float> b = {0.7f, 0.6f, 0.9f};
  const std::vector<float> b_labels = {1, 0, 0};
  const std::vector<int32_t> b_groups = {0, 0, 1};
  // a's AUC 0.75 (above); b's: the positive 0.7 beats 0.6, not 0.9 -> 0.5.
  const Interval delta =
      PairedAucDeltaOverUsers(a, a_labels, a_groups, b, b_labels, b_groups, 2, 400, 6);
  EXPECT_DOUBLE_EQ(delta.value, -0.25);
  EXPECT_LE(delta.lo, delta.value);
  EXPECT_GE(delta.hi, delta.value);
  // The same rows on both sides: exactly 0, resample by resample.
  const Interval same =
      PairedAucDeltaOverUsers(a, a_labels, a_groups, a, a_labels, a_groups, 2, 400, 6);
  EXPECT_EQ(same.value, 0.0);
  EXPECT_EQ(same.lo, 0.0);
  EXPECT_EQ(same.hi, 0.0);
  EXPECT_TRUE(AllNan(PairedAucDeltaOverUsers(a, a_labels, {0, 0, 1, 5}, b, b_labels,
                                             b_groups, 2, 100, 6)));
}

}  // namespace
}  // namespace feedrank

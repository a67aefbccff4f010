// The guardrail arithmetic: the quantile of a histogram window and the
// limits' checks. (A trip on a real server: admin_test.cc.)
#include "server/guardrails.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

ArmTotals Calls(int n, int64_t micros, int errors = 0, int degraded = 0) {
  DurationHistogram h;
  for (int i = 0; i < n; ++i) h.Observe(micros);
  ArmTotals t;
  t.calls = n;
  t.errors = errors;
  t.degraded = degraded;
  h.AddTo(&t.latency);
  return t;
}

TEST(GuardrailsTest, QuantileInterpolatesInsideItsBucket) {
  DurationHistogram::Totals empty;
  EXPECT_EQ(HistogramQuantileMs(empty, 0.99), 0);
  // 100 calls of 3 ms fall in the (2.5 ms, 5 ms] bucket.
  const ArmTotals t = Calls(100, 3000);
  const double p99 = HistogramQuantileMs(t.latency, 0.99);
  EXPECT_GT(p99, 2.5);
  EXPECT_LE(p99, 5.0);
  EXPECT_NEAR(p99, 2.5 + 2.5 * 0.99, 1e-9);
  // Beyond the last bound: the last bound.
  EXPECT_EQ(HistogramQuantileMs(Calls(10, 60'000'000).latency, 0.99), 10000);
}

TEST(GuardrailsTest, LimitsTripOnlyOverMinCallsInTheirOrder) {
  v1::Guardrail g;
  g.set_max_p99_ms(20);
  g.set_max_error_rate(0.1);
  g.set_max_degraded_share(0.5);
  g.set_min_calls(50);
  EXPECT_FALSE(CheckGuardrail(g, Calls(40, 100'000), 5).has_value());  // too few
  auto slow = CheckGuardrail(g, Calls(60, 100'000), 5);
  ASSERT_TRUE(slow.has_value());
  EXPECT_EQ(slow->limit, "p99");
  EXPECT_THAT(slow->reason, HasSubstr("over 60 calls in 5 s"));
  EXPECT_FALSE(
      CheckGuardrail(g, Calls(60, 1000, 6, 30), 5).has_value());  // at the limits
  auto errors = CheckGuardrail(g, Calls(60, 1000, 7), 5);
  ASSERT_TRUE(errors.has_value());
  EXPECT_EQ(errors->limit, "error_rate");
  auto degraded = CheckGuardrail(g, Calls(60, 1000, 0, 31), 5);
  ASSERT_TRUE(degraded.has_value());
  EXPECT_EQ(degraded->limit, "degraded_share");
}

TEST(GuardrailsTest, DeltaIsTheWindowBetweenTwoSamples) {
  const ArmTotals before = Calls(10, 1000, 1, 2);
  ArmTotals after = Calls(30, 1000, 4, 2);
  const ArmTotals d = Delta(after, before);
  EXPECT_EQ(d.calls, 20u);
  EXPECT_EQ(d.errors, 3u);
  EXPECT_EQ(d.degraded, 0u);
  uint64_t count = 0;
  for (uint64_t b : d.latency.buckets) count += b;
  EXPECT_EQ(count, 20u);
}

TEST(GuardrailsTest, PerArmMetricsHoldAtMostMaxArmsLabelSets) {
  ServerMetrics metrics;
  for (int i = 0; i < ServerMetrics::kMaxArms; ++i) {
    EXPECT_EQ(metrics.ArmSlot({"l", "e", absl::StrCat("arm", i)}), i);
  }
  EXPECT_EQ(metrics.ArmSlot({"l", "e", "arm0"}), 0);  // stable
  EXPECT_EQ(metrics.ArmSlot({"l", "e", "one-too-many"}), -1);
  metrics.RecordArmCall(-1, 0, 100, false, nullptr, 0);  // not measured, no crash
  EXPECT_EQ(metrics.ReadArm(-1).calls, 0u);
}

}  // namespace
}  // namespace feedrank

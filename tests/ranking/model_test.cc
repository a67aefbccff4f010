#include "ranking/model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "base/npy.h"
#include "base/simd.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

// The model's forward pass computed naively in double precision.
// `x`: size n * input width; returns n * heads predictions.
std::vector<double> ReferencePredict(const ModelTensors& tensors, const float* x, int n) {
  const int in = static_cast<int>(tensors.input_mean.size());
  const int heads = static_cast<int>(tensors.biases.back().size());
  std::vector<double> out(size_t(n) * heads);
  for (int r = 0; r < n; ++r) {
    std::vector<double> act(in);
    for (int j = 0; j < in; ++j) {
      act[j] =
          (double(x[size_t(r) * in + j]) - tensors.input_mean[j]) / tensors.input_std[j];
    }
    for (size_t l = 0; l < tensors.weights.size(); ++l) {
      const RowMatrix& w = tensors.weights[l];
      std::vector<double> next(w.cols());
      for (int o = 0; o < w.cols(); ++o) {
        double sum = tensors.biases[l][o];
        for (int i = 0; i < w.rows(); ++i) sum += act[i] * double(w(i, o));
        const bool last = l + 1 == tensors.weights.size();
        next[o] = last ? 1.0 / (1.0 + std::exp(-sum)) : std::max(0.0, sum);
      }
      act = std::move(next);
    }
    for (int h = 0; h < heads; ++h) out[size_t(r) * heads + h] = act[h];
  }
  return out;
}

using ::testing::HasSubstr;

ModelSpec Spec(std::vector<uint32_t> hidden, int heads) {
  ModelSpec spec;
  for (uint32_t w : hidden) spec.add_hidden(w);
  for (int h = 0; h < heads; ++h) spec.add_objectives("head" + std::to_string(h));
  spec.add_features("dot");
  return spec;
}

ModelTensors RandomTensors(int in, const std::vector<uint32_t>& hidden, int heads,
                           uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  ModelTensors t;
  t.input_mean = Eigen::VectorXf(in);
  t.input_std = Eigen::VectorXf(in);
  for (int i = 0; i < in; ++i) {
    t.input_mean[i] = normal(rng);
    t.input_std[i] = 0.5f + std::abs(normal(rng));
  }
  int prev = in;
  for (size_t l = 0; l <= hidden.size(); ++l) {
    const int out = l == hidden.size() ? heads : static_cast<int>(hidden[l]);
    RowMatrix w(prev, out);
    for (int i = 0; i < w.size(); ++i) w.data()[i] = normal(rng) / std::sqrt(float(prev));
    Eigen::VectorXf b(out);
    for (int i = 0; i < out; ++i) b[i] = 0.1f * normal(rng);
    t.weights.push_back(w);
    t.biases.push_back(b);
    prev = out;
  }
  return t;
}

TEST(ScoringModelTest, MatchesNaiveReferenceWithin1e5) {
  for (auto [in, hidden, heads] :
       std::vector<std::tuple<int, std::vector<uint32_t>, int>>{
           {82, {128, 64}, 6}, {7, {}, 1}, {33, {16}, 3}, {128, {256, 64}, 4}}) {
    ModelTensors t = RandomTensors(in, hidden, heads, in);
    auto model = ScoringModel::Create(t, Spec(hidden, heads), in);
    ASSERT_TRUE(model.ok()) << model.status();
    std::mt19937_64 rng(99);
    std::normal_distribution<float> normal(0.f, 2.f);
    for (int n : {1, 7, 64, 571}) {
      std::vector<float> x(size_t(n) * in);
      for (float& v : x) v = normal(rng);
      std::vector<float> out(size_t(n) * heads, -1.f);
      ModelScratch scratch;
      (*model)->Predict(x.data(), n, out.data(), &scratch);
      std::vector<double> ref = ReferencePredict(t, x.data(), n);
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], ref[i], 1e-5) << "in=" << in << " n=" << n << " i=" << i;
      }
    }
  }
}

// The bf16 path's arithmetic, naively in double: standardised inputs, weights
// and hidden activations rounded to bf16, sums exact, biases in float.
std::vector<double> ReferenceBf16(const ModelTensors& tensors, const float* x, int n) {
  const int in = static_cast<int>(tensors.input_mean.size());
  const int heads = static_cast<int>(tensors.biases.back().size());
  auto round = [](float v) { return double(simd::Bf16ToFloat(simd::FloatToBf16(v))); };
  std::vector<double> out(size_t(n) * heads);
  for (int r = 0; r < n; ++r) {
    std::vector<double> act(in);
    for (int j = 0; j < in; ++j) {
      // As Predict standardises: in float, times the inverse std.
      const float z =
          (x[size_t(r) * in + j] - tensors.input_mean[j]) * (1.f / tensors.input_std[j]);
      act[j] = round(z);
    }
    for (size_t l = 0; l < tensors.weights.size(); ++l) {
      const RowMatrix& w = tensors.weights[l];
      const bool last = l + 1 == tensors.weights.size();
      std::vector<double> next(w.cols());
      for (int o = 0; o < w.cols(); ++o) {
        double sum = tensors.biases[l][o];
        for (int i = 0; i < w.rows(); ++i) sum += act[i] * round(w(i, o));
        next[o] = last ? 1.0 / (1.0 + std::exp(-sum))
                       : round(static_cast<float>(std::max(0.0, sum)));
      }
      act = std::move(next);
    }
    for (int h = 0; h < heads; ++h) out[size_t(r) * heads + h] = act[h];
  }
  return out;
}

TEST(ScoringModelTest, Bf16IsTheBf16RoundedModelAndNearFloat) {
  if (!bf16::Supported()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  for (auto [in, hidden, heads] :
       std::vector<std::tuple<int, std::vector<uint32_t>, int>>{{82, {128, 64}, 6},
                                                                {7, {}, 1},
                                                                {33, {16}, 3},
                                                                {128, {256, 64}, 4},
                                                                {17, {50, 3}, 17}}) {
    ModelTensors t = RandomTensors(in, hidden, heads, in + 1);
    auto model = ScoringModel::Create(t, Spec(hidden, heads), in);
    ASSERT_TRUE(model.ok()) << model.status();
    std::mt19937_64 rng(7);
    std::normal_distribution<float> normal(0.f, 2.f);
    // Every tail of the 4-row blocks, and a serving-sized batch.
    for (int n : {1, 2, 3, 4, 5, 9, 570}) {
      SCOPED_TRACE(::testing::Message() << "in=" << in << " n=" << n);
      std::vector<float> x(size_t(n) * in);
      for (float& v : x) v = normal(rng);
      std::vector<float> got(size_t(n) * heads, -1.f), again(got.size(), -2.f),
          exact(got.size());
      ModelScratch scratch;
      (*model)->Predict(x.data(), n, got.data(), &scratch, Precision::kBf16);
      (*model)->Predict(x.data(), n, exact.data(), &scratch, Precision::kFloat);
      (*model)->Predict(x.data(), n, again.data(), &scratch, Precision::kBf16);
      const std::vector<double> ref = ReferenceBf16(t, x.data(), n);
      double max_diff = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        // 1e-3: a hidden value summed in float may round to the other bf16
        // neighbour than the exact sum does; a wrong layout is off by far more.
        ASSERT_NEAR(got[i], ref[i], 1e-3) << "i=" << i;
        ASSERT_EQ(got[i], again[i]) << "i=" << i;
        max_diff = std::max(max_diff, double(std::abs(got[i] - exact[i])));
      }
      EXPECT_LT(max_diff, 0.02);
    }
  }
}

TEST(ScoringModelTest, ScratchReuseAcrossBatchSizesGivesSameAnswers) {
  ModelTensors t = RandomTensors(20, {32, 16}, 2, 5);
  auto model = ScoringModel::Create(t, Spec({32, 16}, 2), 20);
  ASSERT_TRUE(model.ok());
  std::vector<float> x(300 * 20);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i));
  ModelScratch scratch;
  std::vector<float> big(300 * 2), small(10 * 2);
  (*model)->Predict(x.data(), 300, big.data(), &scratch);
  (*model)->Predict(x.data(), 10, small.data(), &scratch);
  for (size_t i = 0; i < small.size(); ++i) EXPECT_FLOAT_EQ(small[i], big[i]);
}

TEST(ScoringModelTest, WriteThenLoadRoundTrips) {
  testing::TempDir dir;
  ModelTensors t = RandomTensors(12, {8}, 3, 1);
  ASSERT_TRUE(ScoringModel::Write(dir.path(), t).ok());
  auto model = ScoringModel::Load(dir.path(), Spec({8}, 3), 12);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_objectives(), 3);
  EXPECT_EQ((*model)->tensors().weights[0], t.weights[0]);
  EXPECT_EQ((*model)->tensors().input_std, t.input_std);
  EXPECT_EQ((*model)->flops_per_row(), 12 * 8 + 8 * 3);
}

TEST(ScoringModelTest, RefusesShapesThatDisagreeWithTheManifest) {
  ModelTensors t = RandomTensors(12, {8}, 3, 1);
  // Input width.
  auto wrong_in = ScoringModel::Create(t, Spec({8}, 3), 13);
  EXPECT_EQ(wrong_in.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_in.status().message()), HasSubstr("input_mean.npy"));
  // Hidden width.
  auto wrong_hidden = ScoringModel::Create(t, Spec({9}, 3), 12);
  EXPECT_THAT(std::string(wrong_hidden.status().message()),
              HasSubstr("hidden_0_weight.npy"));
  // Head count.
  auto wrong_heads = ScoringModel::Create(t, Spec({8}, 4), 12);
  EXPECT_THAT(std::string(wrong_heads.status().message()),
              HasSubstr("output_weight.npy"));
  // Layer count.
  auto wrong_layers = ScoringModel::Create(t, Spec({8, 8}, 3), 12);
  EXPECT_EQ(wrong_layers.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ScoringModelTest, RefusesBadValues) {
  ModelTensors zero_std = RandomTensors(4, {}, 1, 2);
  zero_std.input_std[2] = 0;
  auto a = ScoringModel::Create(zero_std, Spec({}, 1), 4);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("input_std.npy"));
  ModelTensors nan = RandomTensors(4, {}, 1, 2);
  nan.weights[0](1, 0) = std::nanf("");
  auto b = ScoringModel::Create(nan, Spec({}, 1), 4);
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("NaN"));
  ModelTensors bias = RandomTensors(4, {}, 1, 2);
  bias.biases[0] = Eigen::VectorXf::Zero(2);
  auto c = ScoringModel::Create(bias, Spec({}, 1), 4);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("output_bias.npy"));
}

TEST(ScoringModelTest, LoadNamesAMissingOrMisshapenFile) {
  testing::TempDir dir;
  ModelTensors t = RandomTensors(6, {4}, 2, 3);
  ASSERT_TRUE(ScoringModel::Write(dir.path(), t).ok());
  ASSERT_EQ(std::remove((dir.path() + "/model/hidden_0_bias.npy").c_str()), 0);
  auto missing = ScoringModel::Load(dir.path(), Spec({4}, 2), 6);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("hidden_0_bias.npy"));

  const std::vector<float> three(3, 1.f);
  ASSERT_TRUE(WriteNpy<float>(dir.path() + "/model/hidden_0_bias.npy", three, {3}).ok());
  auto misshapen = ScoringModel::Load(dir.path(), Spec({4}, 2), 6);
  EXPECT_EQ(misshapen.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(misshapen.status().message()), HasSubstr("hidden_0_bias.npy"));
}

}  // namespace
}  // namespace feedrank

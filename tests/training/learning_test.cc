// The learners recover planted signals.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "evaluation/metrics.h"
#include "training/embedding_trainer.h"
#include "training/mlp_trainer.h"

namespace feedrank {
namespace {

TEST(MlpTrainerTest, RecoversAPlantedLogisticSignal) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  const int features = 6;
  const float w[features] = {1.5f, -1.0f, 0.0f, 0.5f, 0.0f, 2.0f};
  auto make = [&](int n, RowMatrix* x, RowMatrix* y, std::vector<float>* truth) {
    *x = RowMatrix(n, features);
    *y = RowMatrix(n, 2);
    for (int i = 0; i < n; ++i) {
      float logit = -0.5f;
      for (int j = 0; j < features; ++j) {
        (*x)(i, j) = 3.f + 2.f * normal(rng);  // off-centre, to exercise standardisation
        logit += w[j] * ((*x)(i, j) - 3.f) / 2.f;
      }
      const float p = 1.f / (1.f + std::exp(-logit));
      truth->push_back(p);
      (*y)(i, 0) = unit(rng) < p ? 1.f : 0.f;
      // A second head labelled on half the rows only.
      (*y)(i, 1) = i % 2 == 0 ? ((*x)(i, 2) > 3.f ? 1.f : 0.f) : std::nanf("");
    }
  };
  RowMatrix x, y, x_test, y_test;
  std::vector<float> truth, truth_test;
  make(20000, &x, &y, &truth);
  make(5000, &x_test, &y_test, &truth_test);
  MlpOptions options;
  options.hidden = {16};
  options.epochs = 8;
  std::vector<double> losses;
  auto tensors = TrainMlp(x, y, options, [&](int, double loss, const ModelTensors&) {
    losses.push_back(loss);
  });
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_LT(losses.back(), losses.front());
  const RowMatrix p = Forward(*tensors, x_test);
  std::vector<float> head0, labels0, head1, labels1;
  for (int i = 0; i < x_test.rows(); ++i) {
    head0.push_back(p(i, 0));
    labels0.push_back(y_test(i, 0));
    if (!std::isnan(y_test(i, 1))) {
      head1.push_back(p(i, 1));
      labels1.push_back(y_test(i, 1));
    }
  }
  const double best = Auc(truth_test, labels0);  // the true probabilities
  EXPECT_GT(Auc(head0, labels0), best - 0.01);
  EXPECT_GT(Auc(head1, labels1), 0.97);  // a deterministic threshold rule
}

TEST(MlpTrainerTest, DeterministicForASeed) {
  RowMatrix x = RowMatrix::Random(500, 4);
  RowMatrix y = (x.col(0).array() > 0).cast<float>().matrix();
  MlpOptions options;
  options.epochs = 2;
  auto a = TrainMlp(x, y, options);
  auto b = TrainMlp(x, y, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->weights[0], b->weights[0]);
  EXPECT_EQ(a->biases.back(), b->biases.back());
  options.seed = 2;
  auto c = TrainMlp(x, y, options);
  EXPECT_NE(a->weights[0], c->weights[0]);
}

TEST(MlpTrainerTest, RefusesShapesAndLabellessHeads) {
  RowMatrix x = RowMatrix::Random(10, 3);
  RowMatrix y = RowMatrix::Constant(9, 1, 1.f);
  EXPECT_FALSE(TrainMlp(x, y, MlpOptions()).ok());
  RowMatrix unlabelled = RowMatrix::Constant(10, 1, std::nanf(""));
  EXPECT_FALSE(TrainMlp(x, unlabelled, MlpOptions()).ok());
}

// Users and items in 8 taste groups; users' positives mostly from their own.
std::vector<Positive> PlantedPositives(int users, int items, std::mt19937_64& rng) {
  std::vector<Positive> positives;
  for (int u = 0; u < users; ++u) {
    for (int k = 0; k < 20; ++k) {
      const int item =
          rng() % 10 < 9 ? (u % 8) + 8 * int(rng() % (items / 8)) : rng() % items;
      positives.push_back({u, item});
    }
  }
  return positives;
}

class EmbeddingTrainerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EmbeddingTrainerTest, RecoversPlantedTasteGroups) {
  std::mt19937_64 rng(5);
  const int users = 400, items = 800;
  const auto positives = PlantedPositives(users, items, rng);
  EmbeddingOptions options;
  options.method = GetParam();
  options.dim = 16;
  auto e = TrainEmbeddings(users, items, positives, options);
  ASSERT_TRUE(e.ok()) << e.status();
  // Top 50 items by score should be of the user's group far above chance (1/8).
  double same_group = 0;
  for (int u = 0; u < users; ++u) {
    Eigen::VectorXf scores = e->items * e->users.row(u).transpose();
    std::vector<int> order(items);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 50, order.end(),
                      [&](int a, int b) { return scores[a] > scores[b]; });
    for (int k = 0; k < 50; ++k) same_group += order[k] % 8 == u % 8;
  }
  EXPECT_GT(same_group / (users * 50), 0.8) << GetParam();
}

TEST_P(EmbeddingTrainerTest, DeterministicZeroUnseenUsersMeanUnseenItems) {
  std::mt19937_64 rng(9);
  auto positives = PlantedPositives(50, 80, rng);
  EmbeddingOptions options;
  options.method = GetParam();
  options.dim = 8;
  options.epochs = 3;
  auto a = TrainEmbeddings(51, 81, positives, options);  // user 50, item 80 unseen
  auto b = TrainEmbeddings(51, 81, positives, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->users, b->users);
  EXPECT_EQ(a->items, b->items);
  EXPECT_EQ(a->users.row(50).squaredNorm(), 0.f);
  // An item without positives gets the mean of the others: servable (a
  // catalogue refuses zero video vectors) and uninformative.
  Eigen::RowVectorXf mean = a->items.topRows(80).colwise().mean();
  EXPECT_GT(a->items.row(80).squaredNorm(), 0.f);
  EXPECT_LT((a->items.row(80) - mean).norm(), 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Methods, EmbeddingTrainerTest, ::testing::Values("als", "bpr"));

TEST(EmbeddingTrainerTest, RefusesUnknownMethod) {
  EmbeddingOptions options;
  options.method = "svd";
  EXPECT_FALSE(TrainEmbeddings(2, 2, {{0, 0}}, options).ok());
}

}  // namespace
}  // namespace feedrank

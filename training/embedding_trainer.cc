#include "training/embedding_trainer.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace feedrank {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A CSR view of counts per (row, column).
struct Sparse {
  std::vector<int64_t> offsets;  // size rows + 1
  std::vector<int32_t> cols;
  std::vector<float> counts;
};

Sparse Aggregate(int rows, const std::vector<Positive>& positives, bool by_user) {
  std::vector<absl::flat_hash_map<int32_t, float>> maps(rows);
  for (const Positive& p : positives) {
    maps[by_user ? p.user : p.item][by_user ? p.item : p.user] += 1.f;
  }
  Sparse s;
  s.offsets.push_back(0);
  for (int r = 0; r < rows; ++r) {
    std::vector<std::pair<int32_t, float>> entries(maps[r].begin(), maps[r].end());
    std::sort(entries.begin(), entries.end());  // deterministic order
    for (const auto& [c, n] : entries) {
      s.cols.push_back(c);
      s.counts.push_back(n);
    }
    s.offsets.push_back(static_cast<int64_t>(s.cols.size()));
  }
  return s;
}

// Items without positives have learnt nothing: they get the mean embedding
// of the items that have some (zero vectors are not servable: a catalogue
// refuses them, since a zero vector scores 0 against every user).
void FillItemsWithoutPositives(int num_items, const std::vector<Positive>& positives,
                               RowMatrix* items) {
  std::vector<bool> has(num_items, false);
  for (const Positive& p : positives) has[p.item] = true;
  Eigen::RowVectorXf mean = Eigen::RowVectorXf::Zero(items->cols());
  int with = 0;
  for (int i = 0; i < num_items; ++i) {
    if (has[i]) {
      mean += items->row(i);
      ++with;
    }
  }
  if (with == 0) return;
  mean /= float(with);
  if (mean.squaredNorm() == 0.f) mean.setConstant(1e-3f);
  for (int i = 0; i < num_items; ++i) {
    if (!has[i]) items->row(i) = mean;
  }
}

// One ALS half-step: solves every row of `x` given fixed `y`.
void SolveAls(const Sparse& r, const RowMatrix& y, float alpha, float reg, RowMatrix* x) {
  const int d = static_cast<int>(y.cols());
  const Eigen::MatrixXf yty = y.transpose() * y;
  Eigen::MatrixXf a(d, d);
  Eigen::VectorXf b(d);
  for (int64_t u = 0; u + 1 < static_cast<int64_t>(r.offsets.size()); ++u) {
    if (r.offsets[u] == r.offsets[u + 1]) {
      x->row(u).setZero();
      continue;
    }
    a = yty;
    a.diagonal().array() += reg;
    b.setZero();
    for (int64_t k = r.offsets[u]; k < r.offsets[u + 1]; ++k) {
      const float c = 1.f + alpha * r.counts[k];
      const auto yi = y.row(r.cols[k]).transpose();
      a.noalias() += (c - 1.f) * yi * yi.transpose();
      b.noalias() += c * yi;
    }
    x->row(u) = a.ldlt().solve(b).transpose();
  }
}

}  // namespace

absl::StatusOr<Embeddings> TrainEmbeddings(int num_users, int num_items,
                                           const std::vector<Positive>& positives,
                                           const EmbeddingOptions& options,
                                           const EpochCallback& on_epoch) {
  EmbeddingOptions o = options;
  const bool als = o.method == "als";
  if (o.epochs == 0) o.epochs = als ? 15 : 100;
  if (o.reg < 0) o.reg = als ? 0.1f : 0.01f;
  if (num_users <= 0 || num_items <= 0 || o.dim <= 0 || o.epochs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("embeddings: need users, items, dim > 0 and epochs >= 0 (got ",
                     num_users, ", ", num_items, ", ", o.dim, ", ", o.epochs, ")"));
  }
  if (o.method != "als" && o.method != "bpr") {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding method '", o.method, "' is not als or bpr"));
  }
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal(0.f, 0.1f / std::sqrt(float(o.dim)));
  Embeddings e;
  e.users = RowMatrix(num_users, o.dim);
  e.items = RowMatrix(num_items, o.dim);
  for (int i = 0; i < e.users.size(); ++i) e.users.data()[i] = normal(rng);
  for (int i = 0; i < e.items.size(); ++i) e.items.data()[i] = normal(rng);
  const SteadyClock::time_point start = SteadyClock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(SteadyClock::now() - start).count();
  };

  if (o.method == "als") {
    const Sparse by_user = Aggregate(num_users, positives, true);
    const Sparse by_item = Aggregate(num_items, positives, false);
    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
      SolveAls(by_user, e.items, o.alpha, o.reg, &e.users);
      SolveAls(by_item, e.users, o.alpha, o.reg, &e.items);
      if (on_epoch) on_epoch(epoch, seconds());
    }
    FillItemsWithoutPositives(num_items, positives, &e.items);
    return e;
  }

  // BPR: for each positive (u, i), a random item j the user has no positive
  // for; ascend log sigmoid(x_u . (y_i - y_j)) with L2 regularisation.
  absl::flat_hash_set<int64_t> seen;
  for (const Positive& p : positives) seen.insert(int64_t{p.user} * num_items + p.item);
  std::vector<Positive> order = positives;
  std::uniform_int_distribution<int32_t> any_item(0, num_items - 1);
  Eigen::VectorXf xu(o.dim);
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    for (const Positive& p : order) {
      int32_t j = any_item(rng);
      for (int tries = 0; tries < 20 && seen.contains(int64_t{p.user} * num_items + j);
           ++tries) {
        j = any_item(rng);
      }
      // A user with a positive for (nearly) every item has no negative.
      if (seen.contains(int64_t{p.user} * num_items + j)) continue;
      auto x = e.users.row(p.user);
      auto yi = e.items.row(p.item);
      auto yj = e.items.row(j);
      const float margin = x.dot(yi - yj);
      const float g = 1.f / (1.f + std::exp(margin));  // d/dmargin of log sigmoid
      xu = x.transpose();
      x += o.learning_rate * (g * (yi - yj) - o.reg * x);
      yi += o.learning_rate * (g * xu.transpose() - o.reg * yi);
      yj += o.learning_rate * (-g * xu.transpose() - o.reg * yj);
    }
    if (on_epoch) on_epoch(epoch, seconds());
  }
  // Users without positives keep their random init: zero them, as ALS does.
  std::vector<bool> user_has(num_users), item_has(num_items);
  for (const Positive& p : positives) {
    user_has[p.user] = true;
    item_has[p.item] = true;
  }
  for (int u = 0; u < num_users; ++u) {
    if (!user_has[u]) e.users.row(u).setZero();
  }
  FillItemsWithoutPositives(num_items, positives, &e.items);
  return e;
}

}  // namespace feedrank

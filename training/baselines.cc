#include "training/baselines.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "training/embedding_trainer.h"

namespace feedrank {
namespace {

// The `k` items of `items` with the highest `scores` (same index), leaving
// out `exclude`; ties by item id.
std::vector<uint64_t> TopItems(const std::vector<uint64_t>& items,
                               const Eigen::VectorXf& scores,
                               const absl::flat_hash_set<uint64_t>& exclude, size_t k) {
  std::vector<int> order;
  order.reserve(items.size());
  for (int i = 0; i < int(items.size()); ++i) {
    if (!exclude.contains(items[i])) order.push_back(i);
  }
  const size_t n = std::min(k, order.size());
  std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](int a, int b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : items[a] < items[b];
  });
  std::vector<uint64_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(items[order[i]]);
  return out;
}

}  // namespace

std::vector<uint64_t> RecentPopularity(const std::vector<PositiveEvent>& events,
                                       int64_t as_of_ms, int64_t window_ms, size_t k) {
  absl::flat_hash_map<uint64_t, int64_t> counts;
  for (const PositiveEvent& e : events) {
    if (e.time_ms >= as_of_ms) continue;
    if (window_ms > 0 && e.time_ms < as_of_ms - window_ms) continue;
    ++counts[e.item];
  }
  std::vector<std::pair<int64_t, uint64_t>> ranked;
  ranked.reserve(counts.size());
  for (const auto& [item, n] : counts) ranked.emplace_back(n, item);
  const size_t n = std::min(k, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + n, ranked.end(),
                    [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : a.second < b.second;
                    });
  std::vector<uint64_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(ranked[i].second);
  return out;
}

absl::StatusOr<Ease> Ease::Fit(const std::vector<PositiveEvent>& events, double lambda,
                               int64_t max_items) {
  if (!(lambda > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EASE lambda ", lambda, " is not > 0"));
  }
  if (max_items < 1 || max_items > kEaseMaxItems) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EASE max_items ", max_items, " is outside [1, ", kEaseMaxItems, "]"));
  }
  if (events.empty()) return absl::InvalidArgumentError("EASE: no positive to fit on");
  Ease ease;
  // The items with the most positives, in id order.
  ease.items_ =
      RecentPopularity(events, std::numeric_limits<int64_t>::max(), 0, size_t(max_items));
  std::sort(ease.items_.begin(), ease.items_.end());
  const int64_t n = int64_t(ease.items_.size());
  for (int64_t i = 0; i < n; ++i) ease.index_[ease.items_[i]] = int(i);
  // Each user's distinct kept items.
  absl::flat_hash_map<uint64_t, std::vector<int>> by_user;
  for (const PositiveEvent& e : events) {
    auto it = ease.index_.find(e.item);
    if (it != ease.index_.end()) by_user[e.user].push_back(it->second);
  }
  // G = X'X + lambda I, in double: the inverse of a Gram matrix is
  // ill-conditioned for small lambda.
  Eigen::MatrixXd g = Eigen::MatrixXd::Zero(n, n);
  for (auto& [user, items] : by_user) {
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    for (int i : items) {
      for (int j : items) g(i, j) += 1;
    }
  }
  g.diagonal().array() += lambda;
  // P = G^-1 through its Cholesky factor (G is symmetric positive definite).
  Eigen::MatrixXd p = Eigen::MatrixXd::Identity(n, n);
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(g);
  llt.solveInPlace(p);
  // B = I - P diag(1/diag P): B(i, j) = -P(i, j) / P(j, j), B(j, j) = 0.
  ease.b_.resize(n, n);
  for (int64_t j = 0; j < n; ++j) {
    const double d = p(j, j);
    for (int64_t i = 0; i < n; ++i) ease.b_(i, j) = i == j ? 0.f : float(-p(i, j) / d);
  }
  return ease;
}

float Ease::Weight(uint64_t from, uint64_t to) const {
  auto i = index_.find(from);
  auto j = index_.find(to);
  if (i == index_.end() || j == index_.end()) return 0;
  return b_(i->second, j->second);
}

std::vector<uint64_t> Ease::Recommend(const std::vector<uint64_t>& history,
                                      const absl::flat_hash_set<uint64_t>& exclude,
                                      size_t k) const {
  Eigen::VectorXf scores = Eigen::VectorXf::Zero(b_.cols());
  bool any = false;
  absl::flat_hash_set<int> used;
  for (uint64_t item : history) {
    auto it = index_.find(item);
    if (it == index_.end() || !used.insert(it->second).second) continue;
    scores += b_.row(it->second).transpose();
    any = true;
  }
  if (!any) return {};
  return TopItems(items_, scores, exclude, k);
}

absl::StatusOr<ImplicitAls> ImplicitAls::Fit(const std::vector<PositiveEvent>& events,
                                             const AlsBaselineOptions& options) {
  if (options.dim < 1 || options.dim > kAlsMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("ALS dim ", options.dim, " is outside [1, ", kAlsMaxDim, "]"));
  }
  if (!std::isfinite(options.reg) || options.reg < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ALS reg ", options.reg, " is not a finite number >= 0"));
  }
  if (!std::isfinite(options.alpha) || options.alpha < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ALS alpha ", options.alpha, " is not a finite number >= 0"));
  }
  if (options.epochs < 1 || options.epochs > kAlsMaxEpochs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ALS epochs ", options.epochs, " is outside [1, ", kAlsMaxEpochs, "]"));
  }
  if (events.empty()) return absl::InvalidArgumentError("ALS: no positive to fit on");
  ImplicitAls als;
  for (const PositiveEvent& e : events) {
    als.users_.push_back(e.user);
    als.items_.push_back(e.item);
  }
  for (std::vector<uint64_t>* ids : {&als.users_, &als.items_}) {
    std::sort(ids->begin(), ids->end());
    ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  }
  if (als.users_.size() > size_t(std::numeric_limits<int32_t>::max()) ||
      als.items_.size() > size_t(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("ALS: more than 2^31 - 1 users or items");
  }
  for (size_t i = 0; i < als.users_.size(); ++i) als.user_index_[als.users_[i]] = int(i);
  for (size_t i = 0; i < als.items_.size(); ++i) als.item_index_[als.items_[i]] = int(i);
  std::vector<Positive> positives;
  positives.reserve(events.size());
  for (const PositiveEvent& e : events) {
    positives.push_back({als.user_index_.at(e.user), als.item_index_.at(e.item)});
  }
  EmbeddingOptions embedding;
  embedding.method = "als";
  embedding.dim = options.dim;
  embedding.reg = options.reg;
  embedding.alpha = options.alpha;
  embedding.epochs = options.epochs;
  embedding.seed = options.seed;
  absl::StatusOr<Embeddings> fitted =
      TrainEmbeddings(als.num_users(), als.num_items(), positives, embedding);
  if (!fitted.ok()) return fitted.status();
  als.user_vectors_ = fitted->users;
  als.item_vectors_ = fitted->items;
  return als;
}

std::optional<float> ImplicitAls::Score(uint64_t user, uint64_t item) const {
  auto u = user_index_.find(user);
  auto i = item_index_.find(item);
  if (u == user_index_.end() || i == item_index_.end()) return std::nullopt;
  return user_vectors_.row(u->second).dot(item_vectors_.row(i->second));
}

std::vector<uint64_t> ImplicitAls::Recommend(uint64_t user,
                                             const absl::flat_hash_set<uint64_t>& exclude,
                                             size_t k) const {
  auto u = user_index_.find(user);
  if (u == user_index_.end()) return {};
  Eigen::VectorXf scores = item_vectors_ * user_vectors_.row(u->second).transpose();
  // A NaN (a degenerate solve) ranks last rather than breaking the order.
  for (Eigen::Index i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i])) scores[i] = -std::numeric_limits<float>::infinity();
  }
  return TopItems(items_, scores, exclude, k);
}

}  // namespace feedrank

// The simple baselines `feedrank train`'s report ranks the model against
// (docs/QUALITY.md), each a pure function of the training events so that it
// can be tuned on a validation split cut from the end of the training rows
// and then refitted on all of them:
//
//   - recency-windowed popularity: items by their positives in the window
//     before the as-of time (the window is the hyper-parameter);
//   - EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data",
//     WWW 2019): an item-item model in closed form, B = I - P diag(1/diag P)
//     with P = (X'X + lambda I)^-1 over the user-item matrix X of positives
//     (lambda is the hyper-parameter). Dense, over the `max_items` items with
//     the most positives (the others are never recommended by it): its cost
//     is cubic in them;
//   - implicit ALS (Hu, Koren & Volinsky, "Collaborative Filtering for
//     Implicit Feedback Datasets", ICDM 2008): user and item vectors whose
//     inner product scores an item for a user, fitted by the retrieval
//     trainer's own ALS (training/embedding_trainer.h); dim, reg, alpha and
//     epochs are the hyper-parameters. A pure collaborative baseline: it
//     knows only the users and items of its training events.
#ifndef FEEDRANK_TRAINING_BASELINES_H_
#define FEEDRANK_TRAINING_BASELINES_H_

#include <Eigen/Dense>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace feedrank {

// A positive of the retrieval objective in the log.
struct PositiveEvent {
  uint64_t user = 0;
  uint64_t item = 0;
  int64_t time_ms = 0;
};

// Items with a positive in [as_of_ms - window_ms, as_of_ms) (window_ms <= 0:
// every event before as_of_ms), most positives first, ties by item id; at
// most `k`.
std::vector<uint64_t> RecentPopularity(const std::vector<PositiveEvent>& events,
                                       int64_t as_of_ms, int64_t window_ms, size_t k);

inline constexpr int64_t kEaseDefaultItems = 2000;
inline constexpr int64_t kEaseMaxItems = 20000;

class Ease {
 public:
  // Fits on the events (each user's set of items; repeats count once) over
  // the `max_items` items with the most positives (ties by id). Errors:
  // InvalidArgument when lambda <= 0, max_items is outside [1,
  // kEaseMaxItems] or there is no event.
  static absl::StatusOr<Ease> Fit(const std::vector<PositiveEvent>& events, double lambda,
                                  int64_t max_items = kEaseDefaultItems);

  // The `k` best items for a user whose positives are `history` (items the
  // model does not know are ignored), leaving out `exclude`; ties by item
  // id. Empty when no item of `history` is known.
  std::vector<uint64_t> Recommend(const std::vector<uint64_t>& history,
                                  const absl::flat_hash_set<uint64_t>& exclude,
                                  size_t k) const;

  int num_items() const { return int(items_.size()); }
  // B's weight of item `to` given item `from` (0 on the diagonal).
  float Weight(uint64_t from, uint64_t to) const;

 private:
  std::vector<uint64_t> items_;
  absl::flat_hash_map<uint64_t, int> index_;
  Eigen::MatrixXf b_;  // b_(i, j): the weight of item j given item i
};

inline constexpr int kAlsMaxDim = 512;
inline constexpr int kAlsMaxEpochs = 1000;

struct AlsBaselineOptions {
  int dim = 32;       // in [1, kAlsMaxDim]
  float reg = 0.1f;   // L2 regularisation of each least-squares solve; >= 0
  float alpha = 20;   // confidence of a positive: 1 + alpha * its count; >= 0
  int epochs = 15;    // in [1, kAlsMaxEpochs]; one epoch solves users, then items
  uint64_t seed = 1;  // of the random initial vectors
};

class ImplicitAls {
 public:
  // Fits user and item vectors on the events (repeats of a (user, item) pair
  // add to its count) with TrainEmbeddings' "als" method, the ids mapped to
  // dense indices in ascending id order: deterministic for a seed. Errors:
  // InvalidArgument when dim is outside [1, kAlsMaxDim], reg or alpha is
  // negative or not finite, epochs is outside [1, kAlsMaxEpochs], or there is
  // no event.
  static absl::StatusOr<ImplicitAls> Fit(const std::vector<PositiveEvent>& events,
                                         const AlsBaselineOptions& options = {});

  // The `k` items with the highest user . item score, leaving out `exclude`
  // (the user's own training items are not left out unless they are in it);
  // ties by item id. Every item of the fit is a candidate, so fewer than `k`
  // only when the catalogue minus `exclude` is smaller. Empty for a user the
  // fit did not see.
  std::vector<uint64_t> Recommend(uint64_t user,
                                  const absl::flat_hash_set<uint64_t>& exclude,
                                  size_t k) const;

  int num_users() const { return int(users_.size()); }
  int num_items() const { return int(items_.size()); }
  // The user . item score; nullopt when the fit did not see the user or the
  // item.
  std::optional<float> Score(uint64_t user, uint64_t item) const;

 private:
  std::vector<uint64_t> users_;  // ascending; row i of user_vectors_
  std::vector<uint64_t> items_;  // ascending; row i of item_vectors_
  absl::flat_hash_map<uint64_t, int> user_index_;
  absl::flat_hash_map<uint64_t, int> item_index_;
  Eigen::MatrixXf user_vectors_;  // num_users x dim
  Eigen::MatrixXf item_vectors_;  // num_items x dim
};

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_BASELINES_H_

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
//     is cubic in them.
#ifndef FEEDRANK_TRAINING_BASELINES_H_
#define FEEDRANK_TRAINING_BASELINES_H_

#include <Eigen/Dense>
#include <cstdint>
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

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_BASELINES_H_

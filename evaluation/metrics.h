// Offline quality metrics, shared by `feedrank train`'s held-out evaluation
// and `feedrank replay`: one implementation of each.
//
// Ranking metrics take a page as a list of booleans, `relevant[i]` telling
// whether the item at rank i is relevant (binary relevance), and the number
// of relevant items the request has in all (`num_relevant`), shown or not.
// Intervals are 95% percentile bootstraps over users (the unit that is
// sampled independently): the 2.5th and 97.5th Percentile of the resampled
// estimates, leaving out resamples that have no estimate (NaN). Seeded
// (std::mt19937_64): the same inputs and seed give the same numbers. With
// no resamples, or none that has an estimate, lo and hi are NaN.
//
// Every function is pure and thread-safe. Sizes that must match and do not
// give NaN, not a crash.
#ifndef FEEDRANK_EVALUATION_METRICS_H_
#define FEEDRANK_EVALUATION_METRICS_H_

#include <cstdint>
#include <vector>

namespace feedrank {

// A point estimate and its 95% bootstrap interval.
struct Interval {
  double value = 0;
  double lo = 0;
  double hi = 0;
};

// NDCG@k with binary relevance: DCG of the first k ranks (gain 1 /
// log2(rank + 2)) over the ideal DCG of min(k, num_relevant) relevant items.
// 0 when num_relevant is 0.
double NdcgAtK(const std::vector<bool>& relevant, int num_relevant, int k);

// Relevant items in the first k ranks over min(k, num_relevant); 0 when
// num_relevant is 0.
double RecallAtK(const std::vector<bool>& relevant, int num_relevant, int k);

// 1 when any of the first k ranks is relevant, else 0.
double HitAtK(const std::vector<bool>& relevant, int k);

// ROC AUC of `scores` against binary `labels` (label >= 0.5 is positive),
// a positive and a negative with equal scores counting one half. NaN when
// either class is empty. REQUIRES: no score is NaN.
double Auc(const std::vector<float>& scores, const std::vector<float>& labels);

// Mean binary cross-entropy of probabilities `p` (clipped to [1e-7, 1-1e-7])
// against labels in [0, 1]. NaN when empty.
double LogLoss(const std::vector<float>& p, const std::vector<float>& labels);

// Mean of per-user values; the interval resamples users with replacement
// `resamples` times. All NaN when `per_user` is empty. A NaN value makes the
// mean NaN (the resamples that draw it are left out of the interval).
Interval MeanWithCi(const std::vector<double>& per_user, int resamples, uint64_t seed);

// Mean of b[u] - a[u] over users, with a PAIRED bootstrap: each resample
// draws users, and the same drawn users give both a and b's means. a and b
// have one value per user, in the same user order (sizes must match). When
// a and b are equal, value, lo and hi are exactly 0.
Interval PairedDeltaWithCi(const std::vector<double>& a, const std::vector<double>& b,
                           int resamples, uint64_t seed);

// Auc() over rows that belong to users `groups[i]` in [0, num_groups); a
// resample weighs each row by how often its user was drawn. The value is NaN
// when a class has no rows; a resample whose drawn users hold one class only
// is left out. All NaN when a size differs or a group is out of range.
Interval AucWithCi(const std::vector<float>& scores, const std::vector<float>& labels,
                   const std::vector<int32_t>& groups, int num_groups, int resamples,
                   uint64_t seed);

// The AUC of b's scores minus a's on the same labelled rows, with a paired
// bootstrap over users (the same resampled users, so the same row weights,
// for both). NaN as AucWithCi.
Interval PairedAucDeltaWithCi(const std::vector<float>& a_scores,
                              const std::vector<float>& b_scores,
                              const std::vector<float>& labels,
                              const std::vector<int32_t>& groups, int num_groups,
                              int resamples, uint64_t seed);

// The AUC of b's rows minus a's when a and b are different rows of the same
// users (two rankers' pages, each labelled where observed): a paired
// bootstrap over users — each resample draws users once and weighs both
// sides' rows by the same draw. NaN as AucWithCi.
Interval PairedAucDeltaOverUsers(const std::vector<float>& a_scores,
                                 const std::vector<float>& a_labels,
                                 const std::vector<int32_t>& a_groups,
                                 const std::vector<float>& b_scores,
                                 const std::vector<float>& b_labels,
                                 const std::vector<int32_t>& b_groups, int num_groups,
                                 int resamples, uint64_t seed);

// The q-th percentile (q in [0, 100], clamped) of `values` by linear
// interpolation between order statistics, as numpy.percentile's default:
// the value at fractional index (n - 1) * q / 100 of the sorted values.
// `values` is sorted in place, NaNs moved to the end and left out. 0 when
// empty; NaN when every value is NaN.
double Percentile(std::vector<double>* values, double q);

}  // namespace feedrank

#endif  // FEEDRANK_EVALUATION_METRICS_H_

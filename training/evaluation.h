// Offline quality metrics with bootstrap confidence intervals over users.
#ifndef FEEDRANK_TRAINING_EVALUATION_H_
#define FEEDRANK_TRAINING_EVALUATION_H_

#include <cstdint>
#include <vector>

namespace feedrank {

// A point estimate and its 95% bootstrap interval.
struct Interval {
  double value = 0;
  double lo = 0;
  double hi = 0;
};

// Mean of per-user values; the interval resamples users with replacement
// `resamples` times (percentiles 2.5 and 97.5).
Interval MeanWithCi(const std::vector<double>& per_user, int resamples, uint64_t seed);

// ROC AUC of `scores` against binary `labels` (ties count one half), over
// rows that belong to users `groups[i]` in [0, num_groups); the interval
// resamples users. NaN when a side has no rows.
Interval AucWithCi(const std::vector<float>& scores, const std::vector<float>& labels,
                   const std::vector<int32_t>& groups, int num_groups, int resamples,
                   uint64_t seed);

// Plain AUC (no interval).
double Auc(const std::vector<float>& scores, const std::vector<float>& labels);

// NDCG@k of a ranked list with binary relevance: `relevant[i]` tells whether
// the item at rank i is relevant; `num_relevant` bounds the ideal DCG.
double NdcgAtK(const std::vector<bool>& relevant, int num_relevant, int k);

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_EVALUATION_H_

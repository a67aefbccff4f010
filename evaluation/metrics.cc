#include "evaluation/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace feedrank {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// The point estimate `value` with the 2.5th and 97.5th percentiles of the
// bootstrap `samples`. A resample can have no value (an AUC whose drawn
// users hold one class only): such NaN samples are left out, and when none
// is left the interval is NaN.
Interval FromSamples(double value, std::vector<double> samples) {
  samples.erase(std::remove_if(samples.begin(), samples.end(),
                               [](double x) { return std::isnan(x); }),
                samples.end());
  if (samples.empty()) return {value, kNan, kNan};
  const double lo = Percentile(&samples, 2.5);
  const double hi = Percentile(&samples, 97.5);
  return {value, lo, hi};
}

// The means of `resamples` bootstrap draws of `values` (n draws of a
// uniformly chosen index each). REQUIRES: values is not empty.
std::vector<double> BootstrapMeans(const std::vector<double>& values, int resamples,
                                   uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, values.size() - 1);
  std::vector<double> means;
  means.reserve(std::max(0, resamples));
  for (int r = 0; r < resamples; ++r) {
    double sum = 0;
    for (size_t i = 0; i < values.size(); ++i) sum += values[pick(rng)];
    means.push_back(sum / values.size());
  }
  return means;
}

// Row indices sorted by descending score: the order WeightedAuc walks.
std::vector<size_t> DescendingOrder(const std::vector<float>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

// AUC with row weights (a bootstrap weight is how often the row's user was
// drawn), over rows in `order` (DescendingOrder(scores)). Each run of equal
// scores is one step: its negatives count the positives above it fully and
// the positives tied with them by one half. NaN when either class has no
// weight.
double WeightedAuc(const std::vector<float>& scores, const std::vector<float>& labels,
                   const std::vector<size_t>& order, const std::vector<double>& weight) {
  double pos_total = 0, neg_total = 0, area = 0, pos_above = 0;
  size_t i = 0;
  while (i < order.size()) {
    size_t j = i;
    double pos_tie = 0, neg_tie = 0;
    // At least one row per step: a NaN score equals nothing, not even
    // itself, and must not stall the walk.
    do {
      const double w = weight[order[j]];
      (labels[order[j]] >= 0.5f ? pos_tie : neg_tie) += w;
      ++j;
    } while (j < order.size() && scores[order[j]] == scores[order[i]]);
    area += neg_tie * (pos_above + 0.5 * pos_tie);
    pos_above += pos_tie;
    pos_total += pos_tie;
    neg_total += neg_tie;
    i = j;
  }
  if (pos_total == 0 || neg_total == 0) return kNan;
  return area / (pos_total * neg_total);
}

// Whether every row has a label and a user in [0, num_groups): the
// preconditions of the grouped AUCs, checked so that a caller's mistake
// gives NaN rather than an out-of-bounds read.
bool GroupsValid(size_t rows, const std::vector<float>& labels,
                 const std::vector<int32_t>& groups, int num_groups) {
  if (labels.size() != rows || groups.size() != rows) return false;
  return std::all_of(groups.begin(), groups.end(),
                     [&](int32_t g) { return g >= 0 && g < num_groups; });
}

// How often each of `num_groups` users is drawn in one bootstrap resample
// (num_groups draws with replacement), into `multiplicity`.
void DrawUsers(int num_groups, std::mt19937_64* rng, std::vector<double>* multiplicity) {
  std::uniform_int_distribution<int> pick(0, num_groups - 1);
  multiplicity->assign(num_groups, 0.0);
  for (int g = 0; g < num_groups; ++g) (*multiplicity)[pick(*rng)] += 1;
}

}  // namespace

double NdcgAtK(const std::vector<bool>& relevant, int num_relevant, int k) {
  double dcg = 0, ideal = 0;
  for (int i = 0; i < k && i < int(relevant.size()); ++i) {
    if (relevant[i]) dcg += 1.0 / std::log2(i + 2.0);
  }
  for (int i = 0; i < std::min(k, num_relevant); ++i) ideal += 1.0 / std::log2(i + 2.0);
  return ideal > 0 ? dcg / ideal : 0.0;
}

double RecallAtK(const std::vector<bool>& relevant, int num_relevant, int k) {
  const int denominator = std::min(k, num_relevant);
  if (denominator <= 0) return 0.0;
  int found = 0;
  for (int i = 0; i < k && i < int(relevant.size()); ++i) found += relevant[i];
  return double(found) / denominator;
}

double HitAtK(const std::vector<bool>& relevant, int k) {
  for (int i = 0; i < k && i < int(relevant.size()); ++i) {
    if (relevant[i]) return 1.0;
  }
  return 0.0;
}

double Auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  if (labels.size() != scores.size()) return kNan;
  return WeightedAuc(scores, labels, DescendingOrder(scores),
                     std::vector<double>(scores.size(), 1.0));
}

double LogLoss(const std::vector<float>& p, const std::vector<float>& labels) {
  if (p.empty() || labels.size() != p.size()) return kNan;
  constexpr double kEps = 1e-7;
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double q = std::clamp(double(p[i]), kEps, 1 - kEps);
    const double y = labels[i];
    sum -= y * std::log(q) + (1 - y) * std::log(1 - q);
  }
  return sum / p.size();
}

Interval MeanWithCi(const std::vector<double>& per_user, int resamples, uint64_t seed) {
  if (per_user.empty()) return {kNan, kNan, kNan};
  const double mean =
      std::accumulate(per_user.begin(), per_user.end(), 0.0) / per_user.size();
  return FromSamples(mean, BootstrapMeans(per_user, resamples, seed));
}

Interval PairedDeltaWithCi(const std::vector<double>& a, const std::vector<double>& b,
                           int resamples, uint64_t seed) {
  if (a.size() != b.size()) return {kNan, kNan, kNan};
  // Resampling the per-user differences draws the same user for a and b, so
  // what a user adds to both (a heavy user, an easy one) cancels instead of
  // widening the interval.
  std::vector<double> delta(a.size());
  for (size_t u = 0; u < a.size(); ++u) delta[u] = b[u] - a[u];
  return MeanWithCi(delta, resamples, seed);
}

Interval AucWithCi(const std::vector<float>& scores, const std::vector<float>& labels,
                   const std::vector<int32_t>& groups, int num_groups, int resamples,
                   uint64_t seed) {
  if (!GroupsValid(scores.size(), labels, groups, num_groups)) return {kNan, kNan, kNan};
  const std::vector<size_t> order = DescendingOrder(scores);
  const double auc =
      WeightedAuc(scores, labels, order, std::vector<double>(scores.size(), 1.0));
  std::mt19937_64 rng(seed);
  std::vector<double> multiplicity, weight(scores.size()), samples;
  for (int r = 0; r < resamples && num_groups > 0; ++r) {
    DrawUsers(num_groups, &rng, &multiplicity);
    for (size_t i = 0; i < scores.size(); ++i) weight[i] = multiplicity[groups[i]];
    samples.push_back(WeightedAuc(scores, labels, order, weight));
  }
  return FromSamples(auc, std::move(samples));
}

Interval PairedAucDeltaWithCi(const std::vector<float>& a_scores,
                              const std::vector<float>& b_scores,
                              const std::vector<float>& labels,
                              const std::vector<int32_t>& groups, int num_groups,
                              int resamples, uint64_t seed) {
  if (b_scores.size() != a_scores.size() ||
      !GroupsValid(a_scores.size(), labels, groups, num_groups)) {
    return {kNan, kNan, kNan};
  }
  const std::vector<size_t> a_order = DescendingOrder(a_scores);
  const std::vector<size_t> b_order = DescendingOrder(b_scores);
  std::vector<double> weight(a_scores.size(), 1.0);
  const double delta = WeightedAuc(b_scores, labels, b_order, weight) -
                       WeightedAuc(a_scores, labels, a_order, weight);
  std::mt19937_64 rng(seed);
  std::vector<double> multiplicity, samples;
  for (int r = 0; r < resamples && num_groups > 0; ++r) {
    DrawUsers(num_groups, &rng, &multiplicity);
    for (size_t i = 0; i < a_scores.size(); ++i) weight[i] = multiplicity[groups[i]];
    // NaN (one class has no weight in this resample) for both or neither,
    // since a and b share the labels and the weights.
    samples.push_back(WeightedAuc(b_scores, labels, b_order, weight) -
                      WeightedAuc(a_scores, labels, a_order, weight));
  }
  return FromSamples(delta, std::move(samples));
}

Interval PairedAucDeltaOverUsers(const std::vector<float>& a_scores,
                                 const std::vector<float>& a_labels,
                                 const std::vector<int32_t>& a_groups,
                                 const std::vector<float>& b_scores,
                                 const std::vector<float>& b_labels,
                                 const std::vector<int32_t>& b_groups, int num_groups,
                                 int resamples, uint64_t seed) {
  if (!GroupsValid(a_scores.size(), a_labels, a_groups, num_groups) ||
      !GroupsValid(b_scores.size(), b_labels, b_groups, num_groups)) {
    return {kNan, kNan, kNan};
  }
  const std::vector<size_t> a_order = DescendingOrder(a_scores);
  const std::vector<size_t> b_order = DescendingOrder(b_scores);
  std::vector<double> a_weight(a_scores.size(), 1.0), b_weight(b_scores.size(), 1.0);
  const double delta = WeightedAuc(b_scores, b_labels, b_order, b_weight) -
                       WeightedAuc(a_scores, a_labels, a_order, a_weight);
  std::mt19937_64 rng(seed);
  std::vector<double> multiplicity, samples;
  for (int r = 0; r < resamples && num_groups > 0; ++r) {
    DrawUsers(num_groups, &rng, &multiplicity);
    for (size_t i = 0; i < a_scores.size(); ++i) a_weight[i] = multiplicity[a_groups[i]];
    for (size_t i = 0; i < b_scores.size(); ++i) b_weight[i] = multiplicity[b_groups[i]];
    samples.push_back(WeightedAuc(b_scores, b_labels, b_order, b_weight) -
                      WeightedAuc(a_scores, a_labels, a_order, a_weight));
  }
  return FromSamples(delta, std::move(samples));
}

double Percentile(std::vector<double>* values, double q) {
  if (values->empty()) return 0.0;
  if (std::isnan(q)) return kNan;
  // NaNs have no place in the order: they go to the end and are not counted.
  const auto end = std::partition(values->begin(), values->end(),
                                  [](double x) { return !std::isnan(x); });
  std::sort(values->begin(), end);
  const size_t n = end - values->begin();
  if (n == 0) return kNan;
  // numpy's default ("linear"): the order statistic at fractional index
  // (n - 1) * q / 100, interpolated between its two neighbours.
  const double h = (n - 1) * std::clamp(q, 0.0, 100.0) / 100.0;
  const size_t below = static_cast<size_t>(std::floor(h));
  const size_t above = std::min(below + 1, n - 1);
  const std::vector<double>& v = *values;
  return v[below] + (h - below) * (v[above] - v[below]);
}

}  // namespace feedrank

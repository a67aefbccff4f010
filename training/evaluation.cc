#include "training/evaluation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace feedrank {
namespace {

Interval Percentiles(double value, std::vector<double> samples) {
  Interval out;
  out.value = value;
  samples.erase(std::remove_if(samples.begin(), samples.end(),
                               [](double x) { return std::isnan(x); }),
                samples.end());
  if (samples.empty()) {
    out.lo = out.hi = std::nan("");
    return out;
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[std::min(samples.size() - 1, size_t(q * (samples.size() - 1) + 0.5))];
  };
  out.lo = at(0.025);
  out.hi = at(0.975);
  return out;
}

// Weighted AUC over rows sorted by descending score (`order`).
double WeightedAuc(const std::vector<float>& scores, const std::vector<float>& labels,
                   const std::vector<size_t>& order, const std::vector<double>& weight) {
  double pos_total = 0, neg_total = 0, area = 0, pos_above = 0;
  size_t i = 0;
  while (i < order.size()) {
    size_t j = i;
    double pos_tie = 0, neg_tie = 0;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      const double w = weight[order[j]];
      (labels[order[j]] >= 0.5f ? pos_tie : neg_tie) += w;
      ++j;
    }
    area += neg_tie * (pos_above + 0.5 * pos_tie);
    pos_above += pos_tie;
    pos_total += pos_tie;
    neg_total += neg_tie;
    i = j;
  }
  if (pos_total == 0 || neg_total == 0) return std::nan("");
  return area / (pos_total * neg_total);
}

}  // namespace

Interval MeanWithCi(const std::vector<double>& per_user, int resamples, uint64_t seed) {
  if (per_user.empty()) return {std::nan(""), std::nan(""), std::nan("")};
  const double mean =
      std::accumulate(per_user.begin(), per_user.end(), 0.0) / per_user.size();
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, per_user.size() - 1);
  std::vector<double> samples;
  for (int r = 0; r < resamples; ++r) {
    double sum = 0;
    for (size_t i = 0; i < per_user.size(); ++i) sum += per_user[pick(rng)];
    samples.push_back(sum / per_user.size());
  }
  return Percentiles(mean, std::move(samples));
}

double Auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return WeightedAuc(scores, labels, order, std::vector<double>(scores.size(), 1.0));
}

Interval AucWithCi(const std::vector<float>& scores, const std::vector<float>& labels,
                   const std::vector<int32_t>& groups, int num_groups, int resamples,
                   uint64_t seed) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const double auc =
      WeightedAuc(scores, labels, order, std::vector<double>(scores.size(), 1.0));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(0, std::max(0, num_groups - 1));
  std::vector<double> multiplicity(num_groups), weight(scores.size()), samples;
  for (int r = 0; r < resamples && num_groups > 0; ++r) {
    std::fill(multiplicity.begin(), multiplicity.end(), 0.0);
    for (int g = 0; g < num_groups; ++g) multiplicity[pick(rng)] += 1;
    for (size_t i = 0; i < scores.size(); ++i) weight[i] = multiplicity[groups[i]];
    samples.push_back(WeightedAuc(scores, labels, order, weight));
  }
  return Percentiles(auc, std::move(samples));
}

double NdcgAtK(const std::vector<bool>& relevant, int num_relevant, int k) {
  double dcg = 0, ideal = 0;
  for (int i = 0; i < k && i < int(relevant.size()); ++i) {
    if (relevant[i]) dcg += 1.0 / std::log2(i + 2.0);
  }
  for (int i = 0; i < std::min(k, num_relevant); ++i) ideal += 1.0 / std::log2(i + 2.0);
  return ideal > 0 ? dcg / ideal : 0.0;
}

}  // namespace feedrank

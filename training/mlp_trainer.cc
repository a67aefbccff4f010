#include "training/mlp_trainer.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace feedrank {
namespace {

struct Adam {
  RowMatrix m_w, v_w;
  Eigen::VectorXf m_b, v_b;
};

// Activations of one batch: z[l] pre-activation, a[l] post (a[0] = input).
struct Activations {
  std::vector<RowMatrix> a;
  std::vector<RowMatrix> z;
};

void ForwardBatch(const ModelTensors& t, const RowMatrix& standardized,
                  Activations* act) {
  const size_t layers = t.weights.size();
  act->a.resize(layers + 1);
  act->z.resize(layers);
  act->a[0] = standardized;
  for (size_t l = 0; l < layers; ++l) {
    act->z[l] = act->a[l] * t.weights[l];
    act->z[l].rowwise() += t.biases[l].transpose();
    if (l + 1 < layers) {
      act->a[l + 1] = act->z[l].cwiseMax(0.f);
    } else {
      act->a[l + 1] = (1.f + (-act->z[l].array()).exp()).inverse().matrix();
    }
  }
}

RowMatrix Standardize(const ModelTensors& t, const RowMatrix& x) {
  RowMatrix s = x;
  s.rowwise() -= t.input_mean.transpose();
  s.array().rowwise() /= t.input_std.transpose().array();
  return s;
}

}  // namespace

RowMatrix Forward(const ModelTensors& tensors, const RowMatrix& x) {
  Activations act;
  ForwardBatch(tensors, Standardize(tensors, x), &act);
  return act.a.back();
}

absl::StatusOr<ModelTensors> TrainMlp(const RowMatrix& x, const RowMatrix& y,
                                      const MlpOptions& o,
                                      const MlpEpochCallback& on_epoch) {
  const int64_t n = x.rows();
  const int features = static_cast<int>(x.cols());
  const int heads = static_cast<int>(y.cols());
  if (n == 0 || y.rows() != n || heads == 0 || features == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlp: ", n, " feature rows of width ", features, " and ", y.rows(),
                     " label rows of width ", heads, " do not fit"));
  }
  if (o.batch_size < 1 || o.epochs < 0 || !(o.learning_rate > 0)) {
    return absl::InvalidArgumentError(
        "mlp: batch_size, epochs, learning_rate out of range");
  }
  std::mt19937_64 rng(o.seed);
  ModelTensors t;
  // Standardisation from the training rows, in double. A column that is
  // constant up to rounding is left unscaled rather than blown up.
  t.input_mean = Eigen::VectorXf(features);
  t.input_std = Eigen::VectorXf(features);
  for (int j = 0; j < features; ++j) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) sum += x(i, j);
    const double mean = sum / n;
    for (int64_t i = 0; i < n; ++i) sq += (x(i, j) - mean) * (x(i, j) - mean);
    const double sd = std::sqrt(sq / n);
    t.input_mean[j] = static_cast<float>(mean);
    t.input_std[j] =
        sd > 1e-4 * std::max(1.0, std::abs(mean)) ? static_cast<float>(sd) : 1.f;
  }
  // He initialisation; output bias at the base rate of each head.
  int in = features;
  for (size_t l = 0; l <= o.hidden.size(); ++l) {
    const bool output = l == o.hidden.size();
    const int out = output ? heads : static_cast<int>(o.hidden[l]);
    std::normal_distribution<float> normal(0.f, std::sqrt((output ? 1.f : 2.f) / in));
    RowMatrix w(in, out);
    for (int i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
    t.weights.push_back(std::move(w));
    t.biases.push_back(Eigen::VectorXf::Zero(out));
    in = out;
  }
  for (int h = 0; h < heads; ++h) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isnan(y(i, h))) {
        sum += y(i, h);
        ++count;
      }
    }
    if (count == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("mlp: objective ", h, " has no label in the training rows"));
    }
    const double rate = std::clamp(sum / count, 1e-4, 1 - 1e-4);
    t.biases.back()[h] = static_cast<float>(std::log(rate / (1 - rate)));
  }

  const RowMatrix standardized = Standardize(t, x);
  std::vector<Adam> adam(t.weights.size());
  for (size_t l = 0; l < t.weights.size(); ++l) {
    adam[l].m_w = RowMatrix::Zero(t.weights[l].rows(), t.weights[l].cols());
    adam[l].v_w = adam[l].m_w;
    adam[l].m_b = Eigen::VectorXf::Zero(t.biases[l].size());
    adam[l].v_b = adam[l].m_b;
  }
  constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f;
  int64_t step = 0;
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Activations act;
  RowMatrix batch_x, batch_y, delta;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double loss_sum = 0;
    int64_t loss_count = 0;
    for (int64_t start = 0; start < n; start += o.batch_size) {
      const int64_t b = std::min<int64_t>(o.batch_size, n - start);
      batch_x.resize(b, features);
      batch_y.resize(b, heads);
      for (int64_t i = 0; i < b; ++i) {
        batch_x.row(i) = standardized.row(order[start + i]);
        batch_y.row(i) = y.row(order[start + i]);
      }
      ForwardBatch(t, batch_x, &act);
      // Masked BCE: d loss / d logit = p - y on labelled cells, averaged
      // over the batch's labelled cells of each head.
      const RowMatrix& p = act.a.back();
      delta.resize(b, heads);
      for (int h = 0; h < heads; ++h) {
        int64_t labelled = 0;
        for (int64_t i = 0; i < b; ++i) labelled += !std::isnan(batch_y(i, h));
        for (int64_t i = 0; i < b; ++i) {
          const float label = batch_y(i, h);
          if (std::isnan(label)) {
            delta(i, h) = 0;
            continue;
          }
          const float q = std::clamp(p(i, h), 1e-7f, 1 - 1e-7f);
          loss_sum += -(label * std::log(q) + (1 - label) * std::log(1 - q));
          ++loss_count;
          delta(i, h) = (p(i, h) - label) / float(labelled);
        }
      }
      ++step;
      const float correction1 = 1 - std::pow(kBeta1, float(step));
      const float correction2 = 1 - std::pow(kBeta2, float(step));
      for (int l = static_cast<int>(t.weights.size()) - 1; l >= 0; --l) {
        const RowMatrix grad_w =
            act.a[l].transpose() * delta + o.weight_decay * t.weights[l];
        const Eigen::VectorXf grad_b = delta.colwise().sum().transpose();
        if (l > 0) {
          RowMatrix back = delta * t.weights[l].transpose();
          delta = back.cwiseProduct((act.z[l - 1].array() > 0.f).cast<float>().matrix());
        }
        Adam& s = adam[l];
        s.m_w = kBeta1 * s.m_w + (1 - kBeta1) * grad_w;
        s.v_w = kBeta2 * s.v_w + (1 - kBeta2) * grad_w.cwiseProduct(grad_w);
        s.m_b = kBeta1 * s.m_b + (1 - kBeta1) * grad_b;
        s.v_b = kBeta2 * s.v_b + (1 - kBeta2) * grad_b.cwiseProduct(grad_b);
        t.weights[l].array() -= o.learning_rate * (s.m_w.array() / correction1) /
                                ((s.v_w.array() / correction2).sqrt() + kEps);
        t.biases[l].array() -= o.learning_rate * (s.m_b.array() / correction1) /
                               ((s.v_b.array() / correction2).sqrt() + kEps);
      }
    }
    if (on_epoch) on_epoch(epoch, loss_count > 0 ? loss_sum / loss_count : 0, t);
  }
  return t;
}

}  // namespace feedrank

#include "ranking/model.h"

#include <sys/stat.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/npy.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"

namespace feedrank {
namespace {

std::string TensorName(size_t layer, size_t layers, const char* kind) {
  if (layer + 1 == layers) return absl::StrCat("output_", kind, ".npy");
  return absl::StrCat("hidden_", layer, "_", kind, ".npy");
}

absl::Status CheckFinite(const std::string& name, const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model/", name, ": element ", i, " is ", v[i], "; NaN and Inf are not allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelTensors::Validate(int input_width,
                                    const std::vector<uint32_t>& hidden,
                                    int heads) const {
  auto bad = [](const std::string& name, auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("model/", name, ": ", parts...));
  };
  if (input_mean.size() != input_width) {
    return bad("input_mean.npy", "has ", input_mean.size(),
               " entries, the features are ", input_width, " wide");
  }
  if (input_std.size() != input_width) {
    return bad("input_std.npy", "has ", input_std.size(),
               " entries, the features are ", input_width, " wide");
  }
  RETURN_IF_ERROR(CheckFinite("input_mean.npy", input_mean.data(), input_width));
  RETURN_IF_ERROR(CheckFinite("input_std.npy", input_std.data(), input_width));
  for (int i = 0; i < input_width; ++i) {
    if (!(input_std[i] > 0)) {
      return bad("input_std.npy", "entry ", i, " is ", input_std[i],
                 ", expected > 0");
    }
  }
  const size_t layers = hidden.size() + 1;
  if (weights.size() != layers || biases.size() != layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model/: has ", weights.size(), " weight and ", biases.size(),
        " bias tensors, the manifest's ", hidden.size(),
        " hidden layers need ", layers, " of each"));
  }
  int in = input_width;
  for (size_t i = 0; i < layers; ++i) {
    const int out = i + 1 == layers ? heads : static_cast<int>(hidden[i]);
    const std::string w = TensorName(i, layers, "weight");
    const std::string b = TensorName(i, layers, "bias");
    if (weights[i].rows() != in || weights[i].cols() != out) {
      return bad(w, "shape (", weights[i].rows(), ", ", weights[i].cols(),
                 "), expected (", in, ", ", out, ")");
    }
    if (biases[i].size() != out) {
      return bad(b, "has ", biases[i].size(), " entries, expected ", out);
    }
    RETURN_IF_ERROR(CheckFinite(w, weights[i].data(), weights[i].size()));
    RETURN_IF_ERROR(CheckFinite(b, biases[i].data(), biases[i].size()));
    in = out;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ScoringModel>> ScoringModel::Create(
    ModelTensors tensors, const ModelSpec& spec, int input_width) {
  std::vector<uint32_t> hidden(spec.hidden().begin(), spec.hidden().end());
  RETURN_IF_ERROR(tensors.Validate(input_width, hidden, spec.objectives_size()));
  std::unique_ptr<ScoringModel> model(new ScoringModel());
  model->input_width_ = input_width;
  model->objectives_.assign(spec.objectives().begin(), spec.objectives().end());
  const size_t layers = tensors.weights.size();
  for (size_t i = 0; i < layers; ++i) {
    model->weights_.push_back(tensors.weights[i]);
    model->biases_.push_back(tensors.biases[i].transpose());
  }
  model->input_mean_ = tensors.input_mean.transpose();
  model->input_inv_std_ = tensors.input_std.cwiseInverse().transpose();
  model->tensors_ = std::move(tensors);
  return model;
}

absl::StatusOr<std::unique_ptr<ScoringModel>> ScoringModel::Load(
    const std::string& dir, const ModelSpec& spec, int input_width) {
  const std::string model_dir = BundlePath(dir, kModelDir);
  auto path = [&](const std::string& name) { return BundlePath(model_dir, name); };
  ModelTensors tensors;
  ASSIGN_OR_RETURN(NpyArray<float> mean, ReadNpy<float>(path("input_mean.npy"), 1));
  ASSIGN_OR_RETURN(NpyArray<float> std, ReadNpy<float>(path("input_std.npy"), 1));
  tensors.input_mean = Eigen::Map<Eigen::VectorXf>(mean.data.data(), mean.data.size());
  tensors.input_std = Eigen::Map<Eigen::VectorXf>(std.data.data(), std.data.size());
  const size_t layers = spec.hidden_size() + 1;
  for (size_t i = 0; i < layers; ++i) {
    ASSIGN_OR_RETURN(NpyArray<float> w,
                     ReadNpy<float>(path(TensorName(i, layers, "weight")), 2));
    ASSIGN_OR_RETURN(NpyArray<float> b,
                     ReadNpy<float>(path(TensorName(i, layers, "bias")), 1));
    tensors.weights.push_back(
        Eigen::Map<RowMatrix>(w.data.data(), w.shape[0], w.shape[1]));
    tensors.biases.push_back(Eigen::Map<Eigen::VectorXf>(b.data.data(), b.data.size()));
  }
  auto model = Create(std::move(tensors), spec, input_width);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        BundlePath(dir, std::string(model.status().message())));
  }
  return model;
}

absl::Status ScoringModel::Write(const std::string& dir,
                                 const ModelTensors& tensors) {
  const std::string model_dir = BundlePath(dir, kModelDir);
  if (::mkdir(model_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(absl::StrCat(model_dir, ": cannot create"));
  }
  auto path = [&](const std::string& name) { return BundlePath(model_dir, name); };
  const int64_t in = tensors.input_mean.size();
  RETURN_IF_ERROR(WriteNpy<float>(
      path("input_mean.npy"), {tensors.input_mean.data(), size_t(in)}, {in}));
  RETURN_IF_ERROR(WriteNpy<float>(
      path("input_std.npy"), {tensors.input_std.data(), size_t(in)}, {in}));
  const size_t layers = tensors.weights.size();
  for (size_t i = 0; i < layers; ++i) {
    const RowMatrix& w = tensors.weights[i];
    RETURN_IF_ERROR(WriteNpy<float>(path(TensorName(i, layers, "weight")),
                                    {w.data(), size_t(w.size())},
                                    {w.rows(), w.cols()}));
    const Eigen::VectorXf& b = tensors.biases[i];
    RETURN_IF_ERROR(WriteNpy<float>(path(TensorName(i, layers, "bias")),
                                    {b.data(), size_t(b.size())}, {b.size()}));
  }
  return absl::OkStatus();
}

void ScoringModel::Predict(const float* x, int n, float* out,
                           ModelScratch* scratch) const {
  if (n <= 0) return;
  // Standardise first, as the trainer does. (Folding it into the first layer
  // would save this pass but cancels catastrophically in float32 when a
  // feature's std is tiny next to its mean.)
  scratch->input.resize(n, input_width_);
  scratch->input = ((Eigen::Map<const RowMatrix>(x, n, input_width_).rowwise() -
                     input_mean_)
                        .array()
                        .rowwise() *
                    input_inv_std_.array())
                       .matrix();
  const RowMatrix& input = scratch->input;
  const size_t layers = weights_.size();
  // Ping-pong between two buffers; resize() reallocates only on growth of
  // the total size, and the largest batch is reached after warm-up.
  const RowMatrix* prev = nullptr;
  for (size_t i = 0; i < layers; ++i) {
    const RowMatrix& w = weights_[i];
    if (i + 1 == layers) {
      Eigen::Map<RowMatrix> logits(out, n, w.cols());
      if (prev == nullptr) {
        logits.noalias() = input * w;
      } else {
        logits.noalias() = *prev * w;
      }
      logits.rowwise() += biases_[i];
      logits = (1.f + (-logits.array()).exp()).inverse().matrix();
      return;
    }
    RowMatrix& next = (i % 2 == 0) ? scratch->a : scratch->b;
    next.resize(n, w.cols());
    if (prev == nullptr) {
      next.noalias() = input * w;
    } else {
      next.noalias() = *prev * w;
    }
    next.rowwise() += biases_[i];
    next = next.cwiseMax(0.f);
    prev = &next;
  }
}

int64_t ScoringModel::flops_per_row() const {
  int64_t total = 0;
  for (const RowMatrix& w : weights_) total += w.rows() * w.cols();
  return total;
}

std::vector<double> ReferencePredict(const ModelTensors& tensors, const float* x,
                                     int n) {
  const int in = static_cast<int>(tensors.input_mean.size());
  const int heads = static_cast<int>(tensors.biases.back().size());
  std::vector<double> out(size_t(n) * heads);
  for (int r = 0; r < n; ++r) {
    std::vector<double> act(in);
    for (int j = 0; j < in; ++j) {
      act[j] = (double(x[size_t(r) * in + j]) - tensors.input_mean[j]) /
               tensors.input_std[j];
    }
    for (size_t l = 0; l < tensors.weights.size(); ++l) {
      const RowMatrix& w = tensors.weights[l];
      std::vector<double> next(w.cols());
      for (int o = 0; o < w.cols(); ++o) {
        double sum = tensors.biases[l][o];
        for (int i = 0; i < w.rows(); ++i) sum += act[i] * double(w(i, o));
        const bool last = l + 1 == tensors.weights.size();
        next[o] = last ? 1.0 / (1.0 + std::exp(-sum)) : std::max(0.0, sum);
      }
      act = std::move(next);
    }
    for (int h = 0; h < heads; ++h) out[size_t(r) * heads + h] = act[h];
  }
  return out;
}

}  // namespace feedrank

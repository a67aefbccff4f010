#include "ranking/model.h"

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

// Scratch buffers grow to the largest batch and stay (Eigen's resize()
// would reallocate whenever the candidate count changes).
template <typename V>
void EnsureSize(V& v, size_t size) {
  if (v.size() < size) v.resize(size);
}

absl::Status CheckFinite(const std::string& name, const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrCat("model/", name, ": element ", i,
                                                     " is ", v[i],
                                                     "; NaN and Inf are not allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelTensors::Validate(int input_width, const std::vector<uint32_t>& hidden,
                                    int heads) const {
  auto bad = [](const std::string& name, auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("model/", name, ": ", parts...));
  };
  if (input_mean.size() != input_width) {
    return bad("input_mean.npy", "has ", input_mean.size(), " entries, the features are ",
               input_width, " wide");
  }
  if (input_std.size() != input_width) {
    return bad("input_std.npy", "has ", input_std.size(), " entries, the features are ",
               input_width, " wide");
  }
  RETURN_IF_ERROR(CheckFinite("input_mean.npy", input_mean.data(), input_width));
  RETURN_IF_ERROR(CheckFinite("input_std.npy", input_std.data(), input_width));
  for (int i = 0; i < input_width; ++i) {
    if (!(input_std[i] > 0)) {
      return bad("input_std.npy", "entry ", i, " is ", input_std[i], ", expected > 0");
    }
  }
  const size_t layers = hidden.size() + 1;
  if (weights.size() != layers || biases.size() != layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("model/: has ", weights.size(), " weight and ", biases.size(),
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

absl::StatusOr<std::unique_ptr<ScoringModel>> ScoringModel::Create(ModelTensors tensors,
                                                                   const ModelSpec& spec,
                                                                   int input_width) {
  std::vector<uint32_t> hidden(spec.hidden().begin(), spec.hidden().end());
  RETURN_IF_ERROR(tensors.Validate(input_width, hidden, spec.objectives_size()));
  std::unique_ptr<ScoringModel> model(new ScoringModel());
  model->input_width_ = input_width;
  model->objectives_.assign(spec.objectives().begin(), spec.objectives().end());
  for (const RowMatrix& w : tensors.weights) {
    model->max_width_ = std::max<int>(model->max_width_, static_cast<int>(w.cols()));
  }
  model->input_inv_std_ = tensors.input_std.cwiseInverse().transpose();
  if (bf16::Supported()) {
    for (size_t i = 0; i < tensors.weights.size(); ++i) {
      const RowMatrix& w = tensors.weights[i];
      model->packed_.push_back(bf16::Pack(w.data(), tensors.biases[i].data(),
                                          static_cast<int>(w.rows()),
                                          static_cast<int>(w.cols())));
    }
  }
  model->tensors_ = std::move(tensors);
  return model;
}

absl::StatusOr<std::unique_ptr<ScoringModel>> ScoringModel::Load(const std::string& dir,
                                                                 const ModelSpec& spec,
                                                                 int input_width,
                                                                 FileSystem& fs) {
  const std::string model_dir = BundlePath(dir, kModelDir);
  auto path = [&](const std::string& name) { return BundlePath(model_dir, name); };
  ModelTensors tensors;
  ASSIGN_OR_RETURN(NpyArray<float> mean, ReadNpy<float>(fs, path("input_mean.npy"), 1));
  ASSIGN_OR_RETURN(NpyArray<float> std, ReadNpy<float>(fs, path("input_std.npy"), 1));
  tensors.input_mean = Eigen::Map<Eigen::VectorXf>(mean.data.data(), mean.data.size());
  tensors.input_std = Eigen::Map<Eigen::VectorXf>(std.data.data(), std.data.size());
  const size_t layers = spec.hidden_size() + 1;
  for (size_t i = 0; i < layers; ++i) {
    ASSIGN_OR_RETURN(NpyArray<float> w,
                     ReadNpy<float>(fs, path(TensorName(i, layers, "weight")), 2));
    ASSIGN_OR_RETURN(NpyArray<float> b,
                     ReadNpy<float>(fs, path(TensorName(i, layers, "bias")), 1));
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

absl::Status ScoringModel::Write(const std::string& dir, const ModelTensors& tensors,
                                 FileSystem& fs) {
  const std::string model_dir = BundlePath(dir, kModelDir);
  if (absl::Status made = fs.CreateDir(model_dir);
      !made.ok() && !absl::IsAlreadyExists(made)) {
    return made;
  }
  auto path = [&](const std::string& name) { return BundlePath(model_dir, name); };
  const int64_t in = tensors.input_mean.size();
  RETURN_IF_ERROR(WriteNpy<float>(fs, path("input_mean.npy"),
                                  {tensors.input_mean.data(), size_t(in)}, {in}));
  RETURN_IF_ERROR(WriteNpy<float>(fs, path("input_std.npy"),
                                  {tensors.input_std.data(), size_t(in)}, {in}));
  const size_t layers = tensors.weights.size();
  for (size_t i = 0; i < layers; ++i) {
    const RowMatrix& w = tensors.weights[i];
    RETURN_IF_ERROR(WriteNpy<float>(fs, path(TensorName(i, layers, "weight")),
                                    {w.data(), size_t(w.size())}, {w.rows(), w.cols()}));
    const Eigen::VectorXf& b = tensors.biases[i];
    RETURN_IF_ERROR(WriteNpy<float>(fs, path(TensorName(i, layers, "bias")),
                                    {b.data(), size_t(b.size())}, {b.size()}));
  }
  return absl::OkStatus();
}

void ScoringModel::Predict(const float* x, int n, float* out, ModelScratch* scratch,
                           Precision precision) const {
  if (n <= 0) return;
  EnsureSize(scratch->input, size_t(n) * input_width_);
  EnsureSize(scratch->a, size_t(n) * max_width_);
  EnsureSize(scratch->b, size_t(n) * max_width_);
  // Standardise first, as the trainer does. (Folding it into the first layer
  // would save this pass but cancels catastrophically in float32 when a
  // feature's std is tiny next to its mean.)
  Eigen::Map<RowMatrix> input(scratch->input.data(), n, input_width_);
  input = ((Eigen::Map<const RowMatrix>(x, n, input_width_).rowwise() -
            tensors_.input_mean.transpose())
               .array()
               .rowwise() *
           input_inv_std_.array())
              .matrix();
  if (precision == Precision::kBf16 && !packed_.empty()) {
    PredictBf16(n, out, scratch);
    return;
  }
  const size_t layers = tensors_.weights.size();
  const float* prev = input.data();
  int prev_width = input_width_;
  for (size_t i = 0; i < layers; ++i) {
    const RowMatrix& w = tensors_.weights[i];
    const int width = static_cast<int>(w.cols());
    Eigen::Map<const RowMatrix> in(prev, n, prev_width);
    float* next = i + 1 == layers ? out : (i % 2 == 0 ? scratch->a : scratch->b).data();
    Eigen::Map<RowMatrix> z(next, n, width);
    z.noalias() = in * w;
    z.rowwise() += tensors_.biases[i].transpose();
    if (i + 1 == layers) {
      z = (1.f + (-z.array()).exp()).inverse().matrix();
    } else {
      z = z.cwiseMax(0.f);
    }
    prev = next;
    prev_width = width;
  }
}

void ScoringModel::PredictBf16(int n, float* out, ModelScratch* scratch) const {
  // Rows padded to 16 values so every row starts a vector.
  const int stride = (input_width_ + 15) / 16 * 16;
  EnsureSize(scratch->input16, size_t(n) * stride);
  bf16::ToBf16(scratch->input.data(), n, input_width_, stride, scratch->input16.data());
  const uint16_t* in = scratch->input16.data();
  int in_stride = stride;
  const int heads = num_objectives();
  for (size_t i = 0; i < packed_.size(); ++i) {
    const bf16::PackedWeights& w = packed_[i];
    EnsureSize(scratch->a, size_t(n) * w.cols);
    bf16::Gemm(in, n, in_stride, w, scratch->a.data());
    if (i + 1 < packed_.size()) {
      // Alternate the two bf16 buffers: this layer's output is the next's
      // input.
      AlignedVector<uint16_t>& next = i % 2 == 0 ? scratch->hidden16 : scratch->input16;
      EnsureSize(next, size_t(n) * w.cols);
      bf16::ReluToBf16(scratch->a.data(), n, w.cols, next.data());
      in = next.data();
      in_stride = w.cols;
    } else {
      for (int r = 0; r < n; ++r) {
        const float* z = scratch->a.data() + size_t(r) * w.cols;
        for (int h = 0; h < heads; ++h) {
          out[size_t(r) * heads + h] = 1.f / (1.f + std::exp(-z[h]));
        }
      }
    }
  }
}

int64_t ScoringModel::flops_per_row() const {
  int64_t total = 0;
  for (const RowMatrix& w : tensors_.weights) total += w.rows() * w.cols();
  return total;
}

}  // namespace feedrank

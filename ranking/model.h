// ScoringModel: the multi-task ranking model. A multilayer perceptron with
// shared ReLU layers and one sigmoid head per objective:
//
//   z0 = (x - input_mean) / input_std                    x: one feature row
//   z{i+1} = relu(z{i} W_i + b_i)                         shared layers
//   p = sigmoid(z_L W_out + b_out)                        one column per head
//
// Stored in the bundle's model/ directory as .npy tensors (names below and in
// docs/BUNDLE_FORMAT.md). Scores a whole candidate batch in one pass. Inputs
// are standardised at run time, exactly as the trainer does; the tensors are
// served as stored.
//
// Thread-safety: immutable after Create/Load; Predict may run concurrently
// with one ModelScratch per thread.
#ifndef FEEDRANK_RANKING_MODEL_H_
#define FEEDRANK_RANKING_MODEL_H_

#include <Eigen/Core>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/bundle.pb.h"
#include "ranking/bf16_gemm.h"

namespace feedrank {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The model's tensors as stored: weights[i] is (in_i x out_i), row-major.
struct ModelTensors {
  Eigen::VectorXf input_mean;
  Eigen::VectorXf input_std;
  std::vector<RowMatrix> weights;       // shared layers, then the output layer
  std::vector<Eigen::VectorXf> biases;  // one per weight matrix

  // Checks shapes against an input width, hidden widths and a head count,
  // values for NaN/Inf, and input_std > 0. The error names the tensor file.
  absl::Status Validate(int input_width, const std::vector<uint32_t>& hidden,
                        int heads) const;
};

// A vector aligned for Eigen's widest packets. Eigen computes the head of an
// unaligned buffer with scalar code and the rest with packets, whose
// rounding differs in the last bit: predictions are bit-identical from call
// to call only over aligned buffers.
template <typename T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

// Reusable buffers of Predict calls: they grow to the largest batch seen and
// never shrink, so a warm thread's Predict allocates nothing whatever the
// batch size. Not thread-safe.
struct ModelScratch {
  AlignedVector<float> input, a, b;
  AlignedVector<uint16_t> input16, hidden16;  // Precision::kBf16
};

class ScoringModel {
 public:
  // Takes validated tensors (see ModelTensors::Validate).
  static absl::StatusOr<std::unique_ptr<ScoringModel>> Create(ModelTensors tensors,
                                                              const ModelSpec& spec,
                                                              int input_width);

  // Loads `dir`/model/*.npy and validates them against `spec` (hidden
  // widths, objectives) and the feature width. Errors: those of ReadNpy,
  // InvalidArgument naming the file.
  static absl::StatusOr<std::unique_ptr<ScoringModel>> Load(
      const std::string& dir, const ModelSpec& spec, int input_width,
      FileSystem& fs = *FileSystem::Real());

  // Writes tensors into `dir`/model/, creating it.
  static absl::Status Write(const std::string& dir, const ModelTensors& tensors,
                            FileSystem& fs = *FileSystem::Real());

  // Predictions for `n` feature rows `x` (size n * input_width(), row-major)
  // into `out` (size n * num_objectives(), row-major), each in [0, 1]
  // (float sigmoid reaches 0 or 1 for logits beyond about -88 or 17). The
  // same inputs give bit-identical outputs when `x` and `out` are aligned
  // as AlignedVector aligns them (see there).
  // At Precision::kBf16 (REQUIRES: bf16::Supported()), the same within the
  // bf16 tolerance; bit-identical from call to call.
  void Predict(const float* x, int n, float* out, ModelScratch* scratch,
               Precision precision = Precision::kFloat) const;

  int input_width() const { return input_width_; }
  int num_objectives() const { return static_cast<int>(objectives_.size()); }
  const std::vector<std::string>& objectives() const { return objectives_; }
  // Multiply-adds per candidate, for reports.
  int64_t flops_per_row() const;
  // The tensors served (the only copy of the weights).
  const ModelTensors& tensors() const { return tensors_; }

 private:
  ScoringModel() = default;

  void PredictBf16(int n, float* out, ModelScratch* scratch) const;

  ModelTensors tensors_;
  Eigen::RowVectorXf input_inv_std_;
  // The layers packed for the bf16 path (empty when the CPU has no
  // AVX512-BF16).
  std::vector<bf16::PackedWeights> packed_;
  // Widest layer output, for scratch sizes.
  int max_width_ = 0;
  std::vector<std::string> objectives_;
  int input_width_ = 0;
};

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_MODEL_H_

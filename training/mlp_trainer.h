// Trains the serving model (ranking/model.h: shared ReLU layers, one sigmoid
// head per objective) with minibatch Adam on masked binary cross-entropy.
// The tensors it returns are exactly what ScoringModel serves; its own
// forward pass (Forward) is the trainer's view of a score, and tests compare
// it with the served one. Deterministic for a seed.
#ifndef FEEDRANK_TRAINING_MLP_TRAINER_H_
#define FEEDRANK_TRAINING_MLP_TRAINER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "ranking/model.h"

namespace feedrank {

struct MlpOptions {
  std::vector<uint32_t> hidden = {64, 32};
  int epochs = 12;
  int batch_size = 256;
  float learning_rate = 2e-3f;
  float weight_decay = 1e-4f;
  uint64_t seed = 1;
};

// Called after each epoch with (epoch, mean training loss, the tensors so
// far); returns nothing. Lets the caller print a held-out metric.
using MlpEpochCallback = std::function<void(int, double, const ModelTensors&)>;

// `x`: n x F feature rows; `y`: n x K labels in [0, 1] (soft labels allowed),
// NaN where a row has no label for an objective (it then adds no loss).
// Errors: InvalidArgument for mismatched shapes, no rows, or an objective
// with no label at all.
absl::StatusOr<ModelTensors> TrainMlp(const RowMatrix& x, const RowMatrix& y,
                                      const MlpOptions& options,
                                      const MlpEpochCallback& on_epoch = nullptr);

// The trainer's forward pass: predictions (n x K) for feature rows `x`.
RowMatrix Forward(const ModelTensors& tensors, const RowMatrix& x);

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_MLP_TRAINER_H_

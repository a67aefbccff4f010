// Retrieval embeddings: users and items in one inner-product space, learned
// from positive interactions with implicit-feedback ALS (Hu, Koren & Volinsky
// 2008) or BPR (Rendle et al. 2009). Deterministic for a seed.
#ifndef FEEDRANK_TRAINING_EMBEDDING_TRAINER_H_
#define FEEDRANK_TRAINING_EMBEDDING_TRAINER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ranking/model.h"

namespace feedrank {

struct EmbeddingOptions {
  // "bpr" or "als". BPR is the default: on the KuaiRand held-out days it
  // retrieves better at 500 and its features make a better ranker
  // (docs/QUALITY.md).
  std::string method = "bpr";
  int dim = 64;
  // 0 = the method's default: ALS 15, BPR 100.
  int epochs = 0;
  // L2 regularisation; negative = the method's default: ALS 0.1 (per
  // solve), BPR 0.01 (per update).
  float reg = -1;
  // ALS: confidence of an observed positive is 1 + alpha * count.
  float alpha = 20.0f;
  // BPR: SGD step.
  float learning_rate = 0.05f;
  uint64_t seed = 1;
};

// A positive (user, item) pair; repeated pairs count repeatedly.
struct Positive {
  int32_t user;
  int32_t item;
};

struct Embeddings {
  RowMatrix users;  // num_users x dim
  RowMatrix items;  // num_items x dim
};

// Called after each epoch with (epoch, seconds so far).
using EpochCallback = std::function<void(int, double)>;

// Users without positives get zero vectors; items without positives the mean
// of the items with some (a catalogue refuses zero video vectors). Errors:
// InvalidArgument
// for an unknown method or non-positive sizes.
absl::StatusOr<Embeddings> TrainEmbeddings(int num_users, int num_items,
                                           const std::vector<Positive>& positives,
                                           const EmbeddingOptions& options,
                                           const EpochCallback& on_epoch = nullptr);

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_EMBEDDING_TRAINER_H_

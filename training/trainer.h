// `feedrank train`: interaction log -> bundle. Reads the log through a
// column mapping, holds out the last days, learns retrieval embeddings, trains
// the serving model on features computed by the serving code
// (ranking/features.h), writes the bundle and a replay log of the held-out
// days, and evaluates everything on the held-out days against baselines.
//
// Rules for what the log does not say:
// - The catalogue is the items with at least one training interaction; items
//   first seen in the held-out days have no embedding and are not in the
//   bundle (they count as misses in the evaluation, and stay in the replay
//   log as outcomes).
// - Users without training interactions are not in the bundle: they get the
//   cold-start path (the replay log marks them known_user: false).
// - Items without a positive of the retrieval objective get the mean
//   embedding of the items with some (training/embedding_trainer.h).
// - Without a creator column each item is its own creator; without a
//   duration column durations are unknown (0); the upload time is the item's
//   first appearance in the training days; popularity is its number of
//   training interactions (all of them, so it carries no label).
// - The model's training rows use embeddings learned without them
//   (`folds`-fold cross-fitting), so the model does not learn to trust
//   retrieval scores that memorised its own labels; a share of rows
//   (`cold_start_share`) are built as the cold-start path sees them, so the
//   model has seen that path too.
// - A log of interactions has no impressions the user ignored, yet the model
//   ranks candidates the user never saw. So each training row comes with
//   `negatives_per_row` items the user did not interact with in the training
//   days — half from the user's own nearest neighbours (as retrieval would
//   offer them), half uniform — at the row's time. They train an extra
//   objective, `engage_objective` (1 for logged rows, 0 for sampled ones);
//   the log's own objectives keep their meaning, given an interaction.
#ifndef FEEDRANK_TRAINING_TRAINER_H_
#define FEEDRANK_TRAINING_TRAINER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "embeddings/catalog.h"
#include "ranking/bundle.h"
#include "ranking/engagement.h"
#include "ranking/options.h"
#include "training/embedding_trainer.h"
#include "training/interaction_log.h"
#include "training/mlp_trainer.h"

namespace feedrank {

struct TrainOptions {
  std::string log_path;
  LogMapping mapping;
  // Bundle directory to write (must not exist).
  std::string out;
  // Replay log of the held-out days (replay/replay_log.h: JSON lines when the
  // name ends in .jsonl, else binary); empty = not written.
  std::string replay_out;
  int holdout_days = 3;
  EmbeddingOptions embeddings;
  MlpOptions mlp;
  int folds = 5;
  int negatives_per_row = 4;
  // Name of the extra objective sampled negatives train (see above). When
  // empty, sampled negatives are 0 on every BINARY objective of the log
  // instead (measured worse: docs/QUALITY.md).
  std::string engage_objective = "engage";
  double cold_start_share = 0.1;
  // Client clock offset of the log's users, for the local-hour feature.
  int32_t utc_offset_minutes = 0;
  // Feature groups of the model; empty = every group the log can feed.
  std::vector<std::string> features;
  // "auto": flat (exact) below 100k items, else hnsw.
  std::string index_type = "auto";
  // Bundle version; empty = "train-<log file name>-s<seed>".
  std::string version;
  // Held-out evaluation; `resamples` bootstrap draws over users.
  bool evaluate = true;
  int resamples = 1000;
  // The baselines' hyper-parameters (popularity window, EASE lambda) are
  // chosen on the last `validation_days` of the training rows, never on the
  // held-out days. In [1, 30].
  int validation_days = 1;
  // A figure resting on fewer evaluated users than this gets a warning in
  // the report; with `strict`, Train fails instead (FailedPrecondition).
  int min_eval_users = 100;
  bool strict = false;
  // Value model used for the final-ranking metrics; unset = weight 1 on the
  // retrieval objective and on the engage objective.
  std::optional<RankingConfig> eval_config;
  // Without eval_config: the value model's weights are chosen on the
  // validation split (a model trained, as here, on the rows before it; the
  // candidates in kWeightCandidates), never on the held-out days.
  bool tune_weights = true;
  // Ablations: the model retrained without the trending group, without the
  // history group and without both, each against the full model (paired).
  bool ablations = false;
  // "time" (the last holdout_days UTC days, SplitByTime) or
  // "last-n-per-user" (each user's last `last_n` rows, SplitLastNPerUser;
  // see training/interaction_log.h for when to use which).
  std::string split = "time";
  int last_n = 1;
  // Rows at or after this time are dropped before the split (0 = none): how
  // the weight tuning trains on the rows before the validation days.
  int64_t log_end_ms = 0;
  // Value-model weight settings MeasureRanking also ranks with (the tuning
  // run's); their NDCG@10 lands in TrainResult::weight_ndcg.
  std::vector<std::map<std::string, float>> weight_candidates;
  uint64_t seed = 1;
};

// The value-model weights the tuning tries, over the heads the model has
// (a setting naming a missing head is skipped).
std::vector<std::map<std::string, float>> WeightCandidates(const std::string& retrieval,
                                                           const std::string& engage);

struct TrainResult {
  std::shared_ptr<const Bundle> bundle;  // as written (in memory)
  // Markdown: data summary, and with `evaluate` the quality tables.
  std::string report;
  // Mean training loss of each model epoch.
  std::vector<double> epoch_loss;
  // With `evaluate`: the model's held-out AUC per log objective, and NDCG@10
  // per method ("random", "popular", "embeddings", "model", "model_ann_only",
  // "recent_popular", "ease"), the best baseline's name and the paired
  // difference of the model against it.
  std::string best_baseline;
  double model_minus_best = 0, model_minus_best_lo = 0, model_minus_best_hi = 0;
  std::map<std::string, double> model_auc;
  std::map<std::string, double> ndcg;
  // The full model's NDCG@10 per evaluated user, in evaluation order (to
  // pair an ablation's run with this one).
  std::vector<double> model_ndcg_per_user;
  // With weight_candidates: NDCG@10 of each, in order.
  std::vector<double> weight_ndcg;
  // The value weights the evaluation used (tuned or given).
  std::map<std::string, float> eval_weights;
  // Trainer-side scoring, for checks against the served model: the feature
  // row (1 x features.width()) the trainer builds for (user id, video id,
  // time) and its forward pass. Users unknown to the bundle take the
  // cold-start path. Errors: NotFound naming `video_id` when the video is not
  // in the bundle.
  absl::StatusOr<RowMatrix> TrainerFeatures(uint64_t user_id, uint64_t video_id,
                                            int64_t time_ms,
                                            int32_t utc_offset_minutes) const;
  RowMatrix TrainerPredict(const RowMatrix& features) const;
};

absl::StatusOr<TrainResult> Train(const TrainOptions& options);

// Log row `r` as an engagement event (positive: of the retrieval objective).
EngagementEvent EventOf(const InteractionLog& log, size_t r);

// Records into `state` the rows of `rows` (log rows in time order) from
// `*next` on that are strictly before `time_ms`, advancing `*next`: how every
// feature row the trainer builds (training, held-out, evaluation) sees the
// events before its own time and never its own or a later one.
void RecordBefore(const InteractionLog& log, const std::vector<size_t>& rows,
                  int64_t time_ms, size_t* next, EngagementState* state);

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_TRAINER_H_

#include "training/trainer.h"

#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/simd.h"
#include "base/status_macros.h"
#include "evaluation/metrics.h"
#include "ranking/bundle.h"
#include "ranking/ranker.h"
#include "replay/replay_log.h"
#include "training/baselines.h"

namespace feedrank {

EngagementEvent EventOf(const InteractionLog& log, size_t r) {
  return EngagementEvent{log.users[r], log.items[r], log.time_ms[r],
                         log.label(r, log.retrieval_objective) >= 0.5f};
}

std::vector<std::map<std::string, float>> WeightCandidates(const std::string& retrieval,
                                                           const std::string& engage) {
  std::vector<std::map<std::string, float>> out;
  if (engage.empty()) {
    out.push_back({{retrieval, 1.f}});
    return out;
  }
  out.push_back({{engage, 1.f}});
  for (float w : {0.3f, 1.f, 3.f}) out.push_back({{engage, 1.f}, {retrieval, w}});
  for (const char* head : {"click", "long_view", "watch_ratio"}) {
    out.push_back({{engage, 1.f}, {head, 0.5f}});
  }
  out.push_back({{retrieval, 1.f}});
  return out;
}

void RecordBefore(const InteractionLog& log, const std::vector<size_t>& rows,
                  int64_t time_ms, size_t* next, EngagementState* state) {
  std::vector<EngagementEvent> events;
  while (*next < rows.size() && log.time_ms[rows[*next]] < time_ms) {
    events.push_back(EventOf(log, rows[(*next)++]));
  }
  if (!events.empty()) state->Record(events);
}

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int64_t kSessionGapMs = 30 * 60 * 1000;

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string FileName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

std::string Cell(const Interval& x) {
  if (std::isnan(x.value)) return "n/a";
  return absl::StrFormat("%.4f [%.4f, %.4f]", x.value, x.lo, x.hi);
}

double Seconds(SteadyClock::time_point since) {
  return std::chrono::duration<double>(SteadyClock::now() - since).count();
}

// The UTC day of `ms`, as YYYY-MM-DD.
std::string Day(int64_t ms) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

// The feature context of a logged event at `time_ms` (the log knows no device).
FeatureContext ContextAt(int64_t time_ms, const TrainOptions& o) {
  return {time_ms, o.utc_offset_minutes, DeviceType::kUnspecified};
}

// The options Train() checks itself (the rest are checked where they are used).
absl::Status CheckOptions(const TrainOptions& o) {
  if (o.split != "time" && o.split != "last-n-per-user") {
    return absl::InvalidArgumentError(
        absl::StrCat("split: '", o.split, "' is not one of: time, last-n-per-user"));
  }
  if (o.folds < 2) return absl::InvalidArgumentError("folds must be >= 2");
  if (!(o.cold_start_share >= 0 && o.cold_start_share < 1)) {
    return absl::InvalidArgumentError("cold_start_share must be in [0, 1)");
  }
  if (o.validation_days < 1 || o.validation_days > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation_days: ", o.validation_days, " is outside [1, 30]"));
  }
  if (o.min_eval_users < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_eval_users: ", o.min_eval_users, " is negative"));
  }
  return absl::OkStatus();
}

// The training log turned into a catalogue and index maps.
struct Prepared {
  std::vector<size_t> train;  // train rows in time order
  std::vector<size_t> test;   // held-out rows in time order
  int64_t cutoff_ms = 0;
  VideoColumns videos;  // no embeddings yet
  UserColumns users;    // no embeddings yet
  absl::flat_hash_map<uint64_t, int32_t> item_row, user_row;
  std::vector<int32_t> fold;  // per train row (index into `train`)
  std::vector<Positive> positives;
  std::vector<int32_t> positive_fold;
};

absl::StatusOr<Prepared> Prepare(const InteractionLog& log, const TimeSplit& split,
                                 const TrainOptions& o) {
  Prepared p;
  p.cutoff_ms = split.cutoff_ms;
  auto by_time = [&](std::vector<size_t> rows) {
    std::stable_sort(rows.begin(), rows.end(),
                     [&](size_t a, size_t b) { return log.time_ms[a] < log.time_ms[b]; });
    return rows;
  };
  p.train = by_time(split.train);
  p.test = by_time(split.test);
  for (size_t r : p.train) {
    const uint64_t item = log.items[r];
    auto [it, added] = p.item_row.try_emplace(item, int32_t(p.videos.ids.size()));
    if (added) {
      p.videos.ids.push_back(item);
      p.videos.creator_ids.push_back(log.creators.empty() ? item : log.creators[r]);
      p.videos.duration_ms.push_back(0);
      p.videos.upload_time_ms.push_back(log.time_ms[r]);
      p.videos.popularity.push_back(0);
    }
    const int32_t v = it->second;
    p.videos.popularity[v] += 1;
    if (!log.duration_ms.empty()) {
      p.videos.duration_ms[v] = std::max(p.videos.duration_ms[v], log.duration_ms[r]);
    }
    auto [u, user_added] =
        p.user_row.try_emplace(log.users[r], int32_t(p.users.ids.size()));
    if (user_added) {
      p.users.ids.push_back(log.users[r]);
      p.users.activity.push_back(0);
    }
    p.users.activity[u->second] += 1;
  }
  for (size_t i = 0; i < p.train.size(); ++i) {
    const size_t r = p.train[i];
    const int32_t fold = static_cast<int32_t>(
        Mix(Mix(log.users[r] ^ o.seed) ^ log.items[r]) % uint64_t(std::max(1, o.folds)));
    p.fold.push_back(fold);
    if (log.label(r, log.retrieval_objective) >= 0.5f) {
      p.positives.push_back({p.user_row[log.users[r]], p.item_row[log.items[r]]});
      p.positive_fold.push_back(fold);
    }
  }
  if (p.positives.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the training days hold no positive of the retrieval objective '",
                     log.objectives[log.retrieval_objective], "'"));
  }
  return p;
}

// The model's heads: the log's objectives, then the engage objective when
// sampled negatives train one.
struct Heads {
  std::vector<std::string> names;
  int log_heads = 0;  // the first log_heads names are the log's objectives
  bool engage = false;
  std::string retrieval;  // name of the log's retrieval objective
  int size() const { return static_cast<int>(names.size()); }
};

// Errors: InvalidArgument when the engage objective is one of the log's.
absl::StatusOr<Heads> ModelHeads(const InteractionLog& log, const TrainOptions& o) {
  Heads heads;
  heads.names = log.objectives;
  heads.log_heads = static_cast<int>(log.objectives.size());
  heads.engage = !o.engage_objective.empty() && o.negatives_per_row > 0;
  heads.retrieval = log.objectives[log.retrieval_objective];
  if (heads.engage) {
    if (std::find(log.objectives.begin(), log.objectives.end(), o.engage_objective) !=
        log.objectives.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("engage objective '", o.engage_objective,
                       "' is already an objective of the log"));
    }
    heads.names.push_back(o.engage_objective);
  }
  return heads;
}

// One progress line: what the log holds and how it was split.
void LogData(const TrainOptions& o, const InteractionLog& log, const Prepared& p,
             const Heads& heads) {
  LogInfo(
      "train: %s: %d rows, %d objectives; %d training rows before %s, %d held out; "
      "catalogue %d items, %d users, %d positives of '%s'",
      o.log_path, log.size(), heads.size(), p.train.size(), Day(p.cutoff_ms),
      p.test.size(), p.videos.ids.size(), p.users.ids.size(), p.positives.size(),
      heads.retrieval);
}

// The model's feature groups: `o.features`, or every group the log can feed
// (it knows no device).
std::vector<std::string> FeatureGroups(const TrainOptions& o) {
  std::vector<std::string> groups = o.features;
  if (groups.empty()) {
    for (const std::string& g : FeatureSet::AllGroups()) {
      if (g != "device") groups.push_back(g);
    }
  }
  return groups;
}

// The catalogue's manifest fields that do not depend on the model.
BundleManifest CatalogManifest(const Prepared& p, int dim) {
  BundleManifest m;
  m.set_dim(dim);
  m.set_num_videos(p.videos.ids.size());
  m.set_num_users(p.users.ids.size());
  return m;
}

// The catalogue's columns with embeddings `e` (items and users as in `p`).
std::pair<VideoColumns, UserColumns> ColumnsWith(const Prepared& p, const Embeddings& e) {
  VideoColumns videos = p.videos;
  UserColumns users = p.users;
  videos.embeddings.assign(e.items.data(), e.items.data() + e.items.size());
  users.embeddings.assign(e.users.data(), e.users.data() + e.users.size());
  return {std::move(videos), std::move(users)};
}

absl::StatusOr<std::unique_ptr<Catalog>> MakeCatalog(const Prepared& p,
                                                     const Embeddings& e, int dim) {
  auto [videos, users] = ColumnsWith(p, e);
  return Catalog::Create(CatalogManifest(p, dim), std::move(videos), std::move(users),
                         nullptr);
}

// Retrieval embeddings on `positives`, with progress lines naming `what`.
absl::StatusOr<Embeddings> TrainNamedEmbeddings(const Prepared& p,
                                                const std::vector<Positive>& positives,
                                                const TrainOptions& o,
                                                const std::string& what) {
  double last_report = 0, total_seconds = 0;
  int epochs_done = 0;
  auto done = absl::Cleanup([&] {
    LogInfo("train: %s embeddings (%s, dim %d): %d epochs in %.1fs", what,
            o.embeddings.method, o.embeddings.dim, epochs_done, total_seconds);
  });
  auto progress = [&](int epoch, double seconds) {
    if (seconds - last_report > 5) {
      LogInfo("train: %s embeddings (%s): epoch %d, %.1fs", what, o.embeddings.method,
              epoch, seconds);
      last_report = seconds;
    }
    epochs_done = epoch;
    total_seconds = seconds;
  };
  return TrainEmbeddings(static_cast<int>(p.users.ids.size()),
                         static_cast<int>(p.videos.ids.size()), positives, o.embeddings,
                         progress);
}

// Retrieval embeddings: cross-fitted ones for the model's training rows, and
// the served ones.
struct TrainedEmbeddings {
  // Per fold f: a catalogue whose embeddings were learned without fold f's
  // positives, for the model's training rows of fold f.
  std::vector<std::unique_ptr<Catalog>> folds;
  // Learned on every training positive: the bundle's.
  Embeddings served;
  std::unique_ptr<Catalog> served_catalog;
};

absl::StatusOr<TrainedEmbeddings> TrainAllEmbeddings(const Prepared& p,
                                                     const TrainOptions& o) {
  TrainedEmbeddings out;
  for (int f = 0; f < o.folds; ++f) {
    std::vector<Positive> others;
    for (size_t i = 0; i < p.positives.size(); ++i) {
      if (p.positive_fold[i] != f) others.push_back(p.positives[i]);
    }
    ASSIGN_OR_RETURN(
        Embeddings e,
        TrainNamedEmbeddings(p, others, o, absl::StrCat("fold ", f + 1, "/", o.folds)));
    ASSIGN_OR_RETURN(auto catalog, MakeCatalog(p, e, o.embeddings.dim));
    out.folds.push_back(std::move(catalog));
  }
  ASSIGN_OR_RETURN(out.served, TrainNamedEmbeddings(p, p.positives, o, "served"));
  ASSIGN_OR_RETURN(out.served_catalog, MakeCatalog(p, out.served, o.embeddings.dim));
  return out;
}

// Per user row: the catalogue rows of the items they touched in training.
using Touched = std::vector<absl::flat_hash_set<int32_t>>;

Touched TouchedItems(const InteractionLog& log, const Prepared& p) {
  Touched touched(p.users.ids.size());
  for (size_t r : p.train) {
    touched[p.user_row.at(log.users[r])].insert(p.item_row.at(log.items[r]));
  }
  return touched;
}

// Per fold and user row: up to kHardPool nearest untouched items by the
// fold's embeddings, nearest first, as retrieval would offer them. Empty
// without sampled negatives.
constexpr int kHardPool = 200;
using HardPools = std::vector<std::vector<std::vector<int32_t>>>;

HardPools NearestUntouched(const Prepared& p, const Touched& touched,
                           const TrainedEmbeddings& embeddings, const TrainOptions& o) {
  const int num_items = static_cast<int>(p.videos.ids.size());
  HardPools hard(o.folds);
  for (int f = 0; f < o.folds && o.negatives_per_row > 0; ++f) {
    const Catalog& catalog = *embeddings.folds[f];
    hard[f].resize(p.users.ids.size());
    std::vector<std::pair<float, int32_t>> scored(num_items);
    for (size_t u = 0; u < p.users.ids.size(); ++u) {
      for (int32_t v = 0; v < num_items; ++v) {
        scored[v] = {-simd::Dot(catalog.user_embedding(u), catalog.video_embedding(v),
                                o.embeddings.dim),
                     v};
      }
      const int keep =
          std::min(num_items, kHardPool + static_cast<int>(touched[u].size()));
      std::partial_sort(scored.begin(), scored.begin() + keep, scored.end());
      for (int k = 0; k < keep && int(hard[f][u].size()) < kHardPool; ++k) {
        if (!touched[u].contains(scored[k].second)) {
          hard[f][u].push_back(scored[k].second);
        }
      }
    }
  }
  return hard;
}

// The k-th sampled negative for a row of a user with hard pool `pool` and
// training items `touched`: even k from the pool (when not empty), odd k
// uniform among untouched items; -1 when 20 uniform draws all hit touched
// items.
int32_t SampleNegative(int k, const std::vector<int32_t>& pool,
                       const absl::flat_hash_set<int32_t>& touched,
                       std::uniform_int_distribution<int32_t>* any_item,
                       std::mt19937_64* rng) {
  if (k % 2 == 0 && !pool.empty()) return pool[(*rng)() % pool.size()];
  for (int tries = 0; tries < 20; ++tries) {
    const int32_t candidate = (*any_item)(*rng);
    if (!touched.contains(candidate)) return candidate;
  }
  return -1;
}

// The time the bundle's engagement files are as of: the cutoff, or the
// last training event when one is later (the per-user split).
int64_t EngagementAsOf(const InteractionLog& log, const Prepared& p) {
  return p.train.empty() ? p.cutoff_ms
                         : std::max(p.cutoff_ms, log.time_ms[p.train.back()] + 1);
}

// Every training event, as the bundle holds them.
std::unique_ptr<EngagementState> TrainingEngagement(const InteractionLog& log,
                                                    const Prepared& p,
                                                    const Catalog& catalog) {
  auto state = std::make_unique<EngagementState>(catalog, EngagementAsOf(log, p));
  size_t recorded = 0;
  RecordBefore(log, p.train, std::numeric_limits<int64_t>::max(), &recorded, state.get());
  return state;
}

// Model inputs (rows x features.width()) and labels (rows x heads; NaN where
// a head has no label).
struct ModelRows {
  RowMatrix x;
  RowMatrix y;
};

// The model's training rows: each training log row, in time order, with its
// fold's embeddings (or the cold-start view, for a `cold_start_share` of
// them), followed by its sampled negatives at the same time.
ModelRows BuildTrainingRows(const InteractionLog& log, const Prepared& p,
                            const Heads& heads, const TrainedEmbeddings& embeddings,
                            const FeatureSet& features, const TrainOptions& o) {
  const Touched touched = TouchedItems(log, p);
  const HardPools hard = NearestUntouched(p, touched, embeddings, o);
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> unit(0, 1);
  const int width = features.width();
  const int log_heads = heads.log_heads;
  const int num_items = static_cast<int>(p.videos.ids.size());
  const size_t rows_per_log_row = 1 + std::max(0, o.negatives_per_row);
  ModelRows out{RowMatrix(p.train.size() * rows_per_log_row, width),
                RowMatrix(p.train.size() * rows_per_log_row, heads.size())};
  // A sampled negative's labels: 0 on the engage head; without one, 0 on
  // every BINARY objective; NaN (no label) elsewhere.
  Eigen::RowVectorXf negative_labels(heads.size());
  for (int h = 0; h < log_heads; ++h) {
    negative_labels(h) =
        !heads.engage && o.mapping.objectives(h).kind() == ObjectiveMapping::BINARY
            ? 0.f
            : std::nanf("");
  }
  if (heads.engage) negative_labels(log_heads) = 0.f;
  int64_t n_rows = 0;
  std::uniform_int_distribution<int32_t> any_item(0, num_items - 1);
  // The events before each row's time (none before the first).
  EngagementState state(*embeddings.served_catalog,
                        p.train.empty() ? 0 : log.time_ms[p.train[0]]);
  const bool engagement = features.uses_engagement();
  size_t recorded = 0;
  std::vector<float> history;
  for (size_t i = 0; i < p.train.size(); ++i) {
    const size_t r = p.train[i];
    const Catalog& catalog = *embeddings.folds[p.fold[i]];
    const int32_t u = p.user_row.at(log.users[r]);
    UserQuery user{catalog.user_embedding(u), true, catalog.user_activity(u)};
    if (unit(rng) < o.cold_start_share) user = ColdStartUser(catalog);
    const FeatureContext context = ContextAt(log.time_ms[r], o);
    if (engagement) {
      RecordBefore(log, p.train, log.time_ms[r], &recorded, &state);
      AddHistory(CatalogView::Borrow(catalog), &state, log.users[r], log.time_ms[r],
                 &user, &history);
    }
    const int32_t row[1] = {p.item_row.at(log.items[r])};
    features.Build(catalog, user, context, &state, row, out.x.row(n_rows).data());
    for (int h = 0; h < log_heads; ++h) out.y(n_rows, h) = log.label(r, h);
    if (heads.engage) out.y(n_rows, log_heads) = 1.f;
    ++n_rows;
    for (int k = 0; k < o.negatives_per_row; ++k) {
      const int32_t negative[1] = {
          SampleNegative(k, hard[p.fold[i]][u], touched[u], &any_item, &rng)};
      if (negative[0] < 0) continue;
      features.Build(catalog, user, context, &state, negative, out.x.row(n_rows).data());
      out.y.row(n_rows) = negative_labels;
      ++n_rows;
    }
  }
  out.x.conservativeResize(n_rows, width);
  out.y.conservativeResize(n_rows, heads.size());
  LogInfo("train: %d model rows (%d logged, %d sampled negatives), %d features", n_rows,
          p.train.size(), n_rows - int64_t(p.train.size()), width);
  return out;
}

// The held-out rows whose item is in the catalogue, in time order, and their
// features (rows.size() x width) as serving computes them from the served
// embeddings.
struct HeldOutRows {
  std::vector<size_t> rows;  // log rows
  RowMatrix x;
};

HeldOutRows BuildHeldOutRows(const InteractionLog& log, const Prepared& p,
                             const Catalog& served, const FeatureSet& features,
                             const TrainOptions& o) {
  HeldOutRows out;
  for (size_t r : p.test) {
    if (p.item_row.contains(log.items[r])) out.rows.push_back(r);
  }
  out.x.resize(out.rows.size(), features.width());
  // Every training event, then the held-out events before each row: what a
  // server kept live by RecordEvents would hold at the row's time.
  std::unique_ptr<EngagementState> state = TrainingEngagement(log, p, served);
  size_t recorded = 0;
  std::vector<float> history;
  const CatalogView view = CatalogView::Borrow(served);
  for (size_t i = 0; i < out.rows.size(); ++i) {
    const size_t r = out.rows[i];
    RecordBefore(log, p.test, log.time_ms[r], &recorded, state.get());
    UserQuery user = LookUpUser(served, log.users[r]);
    AddHistory(view, state.get(), log.users[r], log.time_ms[r], &user, &history);
    const int32_t row[1] = {*served.VideoRow(log.items[r])};
    features.Build(served, user, ContextAt(log.time_ms[r], o), state.get(), row,
                   out.x.row(i).data());
  }
  return out;
}

// AUC of head `h`'s `predictions` (one row per held-out row) over the held-out
// rows that have a label for it.
double HeldOutAuc(const InteractionLog& log, const HeldOutRows& held_out,
                  const RowMatrix& predictions, int h) {
  std::vector<float> scores, labels;
  for (size_t i = 0; i < held_out.rows.size(); ++i) {
    const float label = log.label(held_out.rows[i], h);
    if (std::isnan(label)) continue;
    scores.push_back(predictions(i, h));
    labels.push_back(label >= 0.5f ? 1.f : 0.f);
  }
  return Auc(scores, labels);
}

// The serving model on `train`; appends each epoch's mean loss to
// `epoch_loss` and logs its held-out AUC.
absl::StatusOr<ModelTensors> TrainModel(const ModelRows& train,
                                        const HeldOutRows& held_out,
                                        const InteractionLog& log, const Heads& heads,
                                        const TrainOptions& o,
                                        std::vector<double>* epoch_loss) {
  const SteadyClock::time_point start = SteadyClock::now();
  auto on_epoch = [&](int epoch, double loss, const ModelTensors& t) {
    epoch_loss->push_back(loss);
    const RowMatrix predictions = Forward(t, held_out.x);
    double sum = 0;
    int count = 0;
    for (int h = 0; h < heads.log_heads; ++h) {
      const double auc = HeldOutAuc(log, held_out, predictions, h);
      if (!std::isnan(auc)) {
        sum += auc;
        ++count;
      }
    }
    LogInfo(
        "train: model epoch %d/%d: loss %.4f, held-out AUC %s %.4f, mean over "
        "heads %.4f, %.1fs",
        epoch, o.mlp.epochs, loss, heads.retrieval,
        HeldOutAuc(log, held_out, predictions, log.retrieval_objective),
        count > 0 ? sum / count : std::nan(""), Seconds(start));
  };
  return TrainMlp(train.x, train.y, o.mlp, on_epoch);
}

// The evaluation's value model and the ranking options it resolves to.
struct EvalRanking {
  RankingConfig config;
  RankingOptions options;
};

// `o.eval_config`, or weight 1 on the retrieval and engage objectives.
// Resolved before anything is written, so a bad config writes nothing.
absl::StatusOr<EvalRanking> ResolveEvalRanking(
    const TrainOptions& o, const Heads& heads,
    const std::map<std::string, float>* weights_override = nullptr) {
  EvalRanking out;
  if (weights_override != nullptr) {
    for (const auto& [name, w] : *weights_override) {
      (*out.config.mutable_params()->mutable_objective_weights())[name] = w;
    }
  } else if (o.eval_config.has_value()) {
    out.config = *o.eval_config;
  } else {
    auto& weights = *out.config.mutable_params()->mutable_objective_weights();
    weights[heads.retrieval] = 1.f;
    if (heads.engage) weights[o.engage_objective] = 1.f;
  }
  ASSIGN_OR_RETURN(out.options, ResolveOptions(out.config, heads.names));
  // A held-out user's whole training history is excluded, however long.
  out.options.max_exclude_ids = std::numeric_limits<int>::max();
  return out;
}

// Writes the bundle (catalogue with the served embeddings, its index, the
// model) to `o.out` and loads it back as serving does.
absl::StatusOr<std::shared_ptr<const Bundle>> WriteTrainedBundle(
    const TrainOptions& o, const InteractionLog& log, const Prepared& p,
    const Heads& heads, const std::vector<std::string>& groups,
    const TrainedEmbeddings& embeddings, const ModelTensors& tensors,
    SteadyClock::time_point start) {
  const Embeddings& served = embeddings.served;
  BundleManifest m = CatalogManifest(p, o.embeddings.dim);
  m.set_format_version(kBundleFormatVersion);
  m.set_version(o.version.empty()
                    ? absl::StrCat("train-", FileName(o.log_path), "-s", o.seed)
                    : o.version);
  // Exact search is both faster and better below ~100k items.
  m.mutable_index()->set_type(o.index_type != "auto"         ? o.index_type
                              : p.videos.ids.size() < 100000 ? "flat"
                                                             : "hnsw");
  for (const std::string& name : heads.names) m.mutable_model()->add_objectives(name);
  for (const std::string& g : groups) m.mutable_model()->add_features(g);
  for (uint32_t h : o.mlp.hidden) m.mutable_model()->add_hidden(h);
  m.set_created_by(absl::StrCat("feedrank train --log ", o.log_path, " --embedding ",
                                o.embeddings.method, " --seed ", o.seed));
  m.set_created_at_unix(p.cutoff_ms / 1000);
  m.set_data_time_ms(p.cutoff_ms);
  if (EngagementAsOf(log, p) != p.cutoff_ms)
    m.set_engagement_time_ms(EngagementAsOf(log, p));
  IndexSpec spec = m.index();
  ASSIGN_OR_RETURN(auto index, AnnIndex::Build(served.items.data(), p.videos.ids.size(),
                                               o.embeddings.dim, &spec, nullptr,
                                               /*threads=*/1));
  *m.mutable_index() = spec;
  // Not a structured binding: the lambda below captures them (clang 14).
  const std::pair<VideoColumns, UserColumns> columns = ColumnsWith(p, served);
  const VideoColumns& videos = columns.first;
  const UserColumns& users = columns.second;
  const std::unique_ptr<EngagementState> engagement =
      TrainingEngagement(log, p, *embeddings.served_catalog);
  RETURN_IF_ERROR(WriteBundle(o.out, m, videos, users, tensors, *index, nullptr,
                              *FileSystem::Real(), [&](const std::string& tmp) {
                                return engagement->Write(tmp, videos.ids, users.ids,
                                                         EngagementAsOf(log, p),
                                                         *FileSystem::Real());
                              }));
  ASSIGN_OR_RETURN(auto bundle, LoadBundle(o.out));
  LogInfo("train: wrote bundle %s (%s), %.1fs so far", o.out, m.version(),
          Seconds(start));
  return bundle;
}

// Per user: their log rows, training rows then held-out rows, each in time
// order.
using Histories = absl::flat_hash_map<uint64_t, std::vector<size_t>>;

Histories UserHistories(const InteractionLog& log, const Prepared& p) {
  Histories history;
  for (size_t r : p.train) history[log.users[r]].push_back(r);
  for (size_t r : p.test) history[log.users[r]].push_back(r);
  return history;
}

// Writes `o.replay_out`: one request per held-out session of a user (a gap
// of 30 minutes starts a new one), users in order of their first held-out
// event.
absl::Status WriteReplayLog(const TrainOptions& o, const InteractionLog& log,
                            const Prepared& p, const Histories& history) {
  ASSIGN_OR_RETURN(std::unique_ptr<ReplayLogWriter> out,
                   ReplayLogWriter::Open(o.replay_out));
  int64_t records = 0;
  absl::flat_hash_set<uint64_t> done;
  for (size_t test_row : p.test) {
    const uint64_t user = log.users[test_row];
    if (!done.insert(user).second) continue;
    const std::vector<size_t>& rows = history.at(user);
    size_t i = 0;
    while (i < rows.size() && log.time_ms[rows[i]] < p.cutoff_ms) ++i;
    while (i < rows.size()) {  // one session, rows [i, end of session)
      v1::ReplayRecord record;
      v1::RankFeedRequest* request = record.mutable_request();
      request->set_user_id(user);
      request->set_request_id(absl::StrCat("heldout-", user, "-", records));
      request->mutable_context()->set_client_time_ms(log.time_ms[rows[i]]);
      record.set_time_ms(log.time_ms[rows[i]]);
      record.set_known_user(p.user_row.contains(user));
      for (const std::string& name : log.objectives) record.add_objectives(name);
      record.set_positive_objective(log.objectives[log.retrieval_objective]);
      absl::flat_hash_set<uint64_t> excluded;
      for (size_t k = 0; k < i; ++k) {
        if (excluded.insert(log.items[rows[k]]).second) {
          request->add_exclude_ids(log.items[rows[k]]);
        }
      }
      int64_t last = log.time_ms[rows[i]];
      while (i < rows.size() && log.time_ms[rows[i]] - last <= kSessionGapMs) {
        const size_t r = rows[i];
        v1::ReplayOutcome* outcome = record.add_outcomes();
        outcome->set_video_id(log.items[r]);
        outcome->set_time_ms(log.time_ms[r]);
        for (size_t h = 0; h < log.objectives.size(); ++h) {
          outcome->add_labels(log.label(r, h));
        }
        last = log.time_ms[r];
        ++i;
      }
      RETURN_IF_ERROR(out->Append(record));
      ++records;
    }
  }
  RETURN_IF_ERROR(out->Close());
  LogInfo("train: wrote %d replay requests to %s", records, o.replay_out);
  return absl::OkStatus();
}

// The report's first paragraph: the log, the split and how much of the
// held-out days the bundle covers (`held_out_in_bundle`: rows whose item is
// in it).
std::string DataSummary(const TrainOptions& o, const InteractionLog& log,
                        const Prepared& p, const Catalog& catalog,
                        size_t held_out_in_bundle) {
  int64_t test_known_users = 0;
  for (size_t r : p.test) test_known_users += p.user_row.contains(log.users[r]);
  // Features a mapped column feeds, and what its absence makes inert.
  std::vector<std::string> warnings;
  if (log.creators.empty()) {
    warnings.push_back(
        "the mapping names no creator column: every video is its own creator, so the "
        "creator features and the creator cap are inert on this log");
  }
  if (log.duration_ms.empty()) {
    warnings.push_back(
        "the mapping names no duration column: the duration feature is 0 for every "
        "video");
  }
  if (o.split == "last-n-per-user") {
    warnings.push_back(absl::StrFormat(
        "split last-n-per-user (each user's last %d rows held out): other users' "
        "training rows extend past a user's held-out time, so the trending and "
        "popularity "
        "figures below see the future; use it to compare personalisation, not for "
        "headline or trending figures (the 'last N days' wording below is the time "
        "split's)",
        o.last_n));
  }
  std::string missing;
  for (const std::string& w : warnings) {
    LogWarning("train: %s", w);
    absl::StrAppend(&missing, "\n**WARNING**: ", w, ".\n");
  }
  return missing +
         absl::StrFormat(
             "Log `%s`: %d rows, %d users, %d items. Held out: the last %d day(s), from "
             "%s UTC "
             "(%d rows). Bundle: %d items and %d users with a training interaction; "
             "%.1f%% of "
             "held-out rows have an item in the bundle, %.1f%% a user in it.\n",
             o.log_path, log.size(),
             absl::flat_hash_set<uint64_t>(log.users.begin(), log.users.end()).size(),
             absl::flat_hash_set<uint64_t>(log.items.begin(), log.items.end()).size(),
             o.holdout_days, Day(p.cutoff_ms), p.test.size(), catalog.num_videos(),
             catalog.num_users(),
             100.0 * held_out_in_bundle / std::max<size_t>(1, p.test.size()),
             100.0 * test_known_users / std::max<size_t>(1, p.test.size()));
}

// A held-out user as the evaluation sees them: the items seen in training
// (excluded from every method's results) and the held-out positives of the
// retrieval objective not seen before.
struct EvalUser {
  uint64_t id;
  int64_t time_ms;  // of their first held-out event
  std::vector<uint64_t> seen;
  absl::flat_hash_set<uint64_t> positives;
};

// Held-out users in order of their first held-out event; `index` maps a
// user id to its place in `users`.
struct EvalUsers {
  std::vector<EvalUser> users;
  absl::flat_hash_map<uint64_t, int32_t> index;
};

EvalUsers HeldOutUsers(const InteractionLog& log, const Prepared& p,
                       const Histories& history) {
  EvalUsers out;
  // What a user saw in training: their training rows (under the per-user
  // split these extend past other users' held-out times).
  std::vector<bool> is_train(log.size(), false);
  for (size_t r : p.train) is_train[r] = true;
  for (size_t r : p.test) {
    auto [it, added] = out.index.try_emplace(log.users[r], int32_t(out.users.size()));
    if (added) {
      EvalUser u;
      u.id = log.users[r];
      u.time_ms = log.time_ms[r];
      absl::flat_hash_set<uint64_t> seen;
      for (size_t h : history.at(u.id)) {
        if (is_train[h] && seen.insert(log.items[h]).second) {
          u.seen.push_back(log.items[h]);
        }
      }
      out.users.push_back(std::move(u));
    }
    EvalUser& u = out.users[it->second];
    if (log.label(r, log.retrieval_objective) >= 0.5f &&
        std::find(u.seen.begin(), u.seen.end(), log.items[r]) == u.seen.end()) {
      u.positives.insert(log.items[r]);
    }
  }
  return out;
}

// Per evaluated user (one with a held-out positive), in order: recall of
// random, most popular and embeddings retrieval, and NDCG@10 of random, most
// popular, embeddings, the full model and the model over ANN candidates.
//
// Index 3 and 4 of `recall*` and 5 and 6 of `ndcg` are the tuned baselines:
// recency-windowed popularity and EASE.
// Index 5 of `recall*` and 7 of `ndcg`: recency-windowed popularity kept
// live (the window before each user's evaluation time, held-out events
// included), the fair peer of the model's live trending counters.
struct RankingMetrics {
  std::vector<double> recall100[7], recall500[7], ndcg[9];
  int64_t users_evaluated = 0, positives_total = 0, positives_in_catalog = 0;
  int64_t cold_users = 0;  // evaluated users with no training row
  // Per weight setting being tuned: NDCG@10 per user.
  std::vector<std::vector<double>> weight_ndcg;
};

// The baselines, tuned on the validation split and refitted on every
// training row (TuneBaselines).
struct TunedBaselines {
  std::vector<uint64_t> recent_popular;  // as of the cutoff, best window
  int64_t window_hours = 0;              // 0 = every training day
  std::optional<Ease> ease;
  double ease_lambda = 0;
  std::string ease_note;  // why EASE is missing, when it is
  AlsBaselineOptions als;
  std::optional<ImplicitAls> als_model;
  // Each user's training positives (EASE's input).
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> positives_by_user;
  std::string report;  // the validation table
};

constexpr int64_t kHourMs = 3600 * 1000;

// The first `k` ids of `order` that are not `seen`.
std::vector<uint64_t> FirstUnseenIds(const std::vector<uint64_t>& order,
                                     const absl::flat_hash_set<uint64_t>& seen,
                                     size_t k) {
  std::vector<uint64_t> page;
  for (uint64_t id : order) {
    if (page.size() == k) break;
    if (!seen.contains(id)) page.push_back(id);
  }
  return page;
}

// Chooses the popularity window and EASE's lambda on the validation split
// (training rows of the last `validation_days`: users' new positives there,
// everything before as their past), then refits both on every training row.
absl::StatusOr<TunedBaselines> TuneBaselines(const TrainOptions& o,
                                             const InteractionLog& log,
                                             const Prepared& p) {
  TunedBaselines out;
  const int64_t val_cutoff = p.cutoff_ms - int64_t(o.validation_days) * 24 * kHourMs;
  std::vector<PositiveEvent> all, before;
  // Per validation user: items seen before the validation cutoff and new
  // positives after it.
  struct ValUser {
    absl::flat_hash_set<uint64_t> seen, positives;
    std::vector<uint64_t> past_positives;
  };
  absl::flat_hash_map<uint64_t, ValUser> val;
  for (size_t r : p.train) {
    const bool positive = log.label(r, log.retrieval_objective) >= 0.5f;
    const PositiveEvent e{log.users[r], log.items[r], log.time_ms[r]};
    if (positive) {
      all.push_back(e);
      out.positives_by_user[e.user].push_back(e.item);
    }
    if (e.time_ms < val_cutoff) {
      if (positive) before.push_back(e);
      ValUser& u = val[e.user];
      u.seen.insert(e.item);
      if (positive) u.past_positives.push_back(e.item);
    } else if (positive) {
      ValUser& u = val[e.user];
      if (!u.seen.contains(e.item)) u.positives.insert(e.item);
    }
  }
  // In user id order: the hash map's order varies between processes, and
  // the sums below must not.
  std::vector<std::pair<uint64_t, const ValUser*>> by_id;
  for (const auto& [id, u] : val) {
    if (!u.positives.empty()) by_id.emplace_back(id, &u);
  }
  std::sort(by_id.begin(), by_id.end());
  std::vector<const ValUser*> val_users;
  for (const auto& [id, u] : by_id) val_users.push_back(u);
  // Of `page(user id, user)`.
  auto mean_ndcg_of =
      [&](const std::function<std::vector<uint64_t>(uint64_t, const ValUser&)>& page) {
        double sum = 0;
        for (const auto& [user_id, u] : by_id) {
          std::vector<bool> relevant;
          for (uint64_t id : page(user_id, *u))
            relevant.push_back(u->positives.contains(id));
          sum += NdcgAtK(relevant, int(u->positives.size()), 10);
        }
        return by_id.empty() ? 0.0 : sum / double(by_id.size());
      };
  auto mean_ndcg = [&](const std::function<std::vector<uint64_t>(const ValUser&)>& page) {
    double sum = 0;
    for (const ValUser* u : val_users) {
      std::vector<bool> relevant;
      for (uint64_t id : page(*u)) relevant.push_back(u->positives.contains(id));
      sum += NdcgAtK(relevant, int(u->positives.size()), 10);
    }
    return val_users.empty() ? 0.0 : sum / double(val_users.size());
  };
  absl::StrAppendFormat(
      &out.report,
      "\n**Baselines tuned on validation** (training rows of the last %d "
      "day(s) before %s: %d users with a new '%s' positive there; NDCG@10)\n\n"
      "| baseline | setting | validation NDCG@10 |\n| --- | --- | --- |\n",
      o.validation_days, Day(p.cutoff_ms), val_users.size(),
      log.objectives[log.retrieval_objective]);
  if (val_users.empty()) {
    LogWarning(
        "train: the validation split holds no user with a new positive; the "
        "baselines keep their defaults (every training day, lambda 250)");
  }
  // Popularity windows, in hours (0 = every day before the cutoff).
  double best = -1;
  for (int64_t hours : {1, 3, 6, 12, 24, 48, 96, 0}) {
    const std::vector<uint64_t> order =
        RecentPopularity(before, val_cutoff, hours * kHourMs, size_t(-1));
    const double v =
        mean_ndcg([&](const ValUser& u) { return FirstUnseenIds(order, u.seen, 10); });
    absl::StrAppendFormat(
        &out.report, "| popularity, recent window | %s | %.4f |\n",
        hours == 0 ? std::string("all training days") : absl::StrCat(hours, " h"), v);
    if (v > best) {
      best = v;
      out.window_hours = hours;
    }
  }
  out.recent_popular =
      RecentPopularity(all, p.cutoff_ms, out.window_hours * kHourMs, size_t(-1));
  // EASE's lambda.
  best = -1;
  out.ease_lambda = 250;
  for (double lambda : {10.0, 50.0, 250.0, 1000.0, 4000.0}) {
    if (val_users.empty() || before.empty()) break;
    auto ease = Ease::Fit(before, lambda);
    if (!ease.ok()) {
      out.ease_note = std::string(ease.status().message());
      break;
    }
    const double v = mean_ndcg(
        [&](const ValUser& u) { return ease->Recommend(u.past_positives, u.seen, 10); });
    absl::StrAppendFormat(&out.report, "| EASE | lambda %g | %.4f |\n", lambda, v);
    if (v > best) {
      best = v;
      out.ease_lambda = lambda;
    }
  }
  if (out.ease_note.empty()) {
    auto ease = Ease::Fit(all, out.ease_lambda);
    if (ease.ok()) {
      out.ease = *std::move(ease);
    } else {
      out.ease_note = std::string(ease.status().message());
    }
  }
  if (!out.ease_note.empty()) {
    LogWarning("train: EASE skipped: %s", out.ease_note);
    absl::StrAppendFormat(&out.report, "| EASE | skipped: %s | |\n", out.ease_note);
  }
  // Implicit ALS: regularisation and confidence weight.
  best = -1;
  for (float reg : {0.01f, 0.1f, 1.0f}) {
    for (float alpha : {5.0f, 20.0f}) {
      if (val_users.empty() || before.empty()) break;
      AlsBaselineOptions als{32, reg, alpha, 10, o.seed};
      auto fit = ImplicitAls::Fit(before, als);
      if (!fit.ok()) break;
      const double v = mean_ndcg_of(
          [&](uint64_t id, const ValUser& u) { return fit->Recommend(id, u.seen, 10); });
      absl::StrAppendFormat(&out.report,
                            "| implicit ALS (dim 32) | reg %g, alpha %g | %.4f |\n", reg,
                            alpha, v);
      if (v > best) {
        best = v;
        out.als = als;
      }
    }
  }
  if (auto fit = ImplicitAls::Fit(all, out.als); fit.ok())
    out.als_model = *std::move(fit);
  absl::StrAppendFormat(
      &out.report,
      "\nChosen: popularity over %s, EASE lambda %g, ALS reg %g alpha %g; each refitted "
      "on every training row.\n",
      out.window_hours == 0
          ? std::string("all training days")
          : absl::StrCat("the last ", out.window_hours, " h of training"),
      out.ease_lambda, out.als.reg, out.als.alpha);
  return out;
}

// The first `k` ids of catalogue rows `rows`.
std::vector<uint64_t> FirstIds(const Catalog& catalog, const std::vector<int32_t>& rows,
                               size_t k) {
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < k && i < rows.size(); ++i) {
    ids.push_back(catalog.video_id(rows[i]));
  }
  return ids;
}

// A page of up to 10 distinct unseen items drawn uniformly (at most 10000
// draws).
std::vector<uint64_t> RandomPage(const Catalog& catalog, const RowFilter& seen,
                                 std::mt19937_64* rng) {
  std::vector<uint64_t> page;
  std::uniform_int_distribution<int32_t> any(0, catalog.num_videos() - 1);
  for (int tries = 0; page.size() < 10 && tries < 10000; ++tries) {
    const int32_t row = any(*rng);
    const uint64_t id = catalog.video_id(row);
    if (!seen.Excluded(row) && std::find(page.begin(), page.end(), id) == page.end()) {
      page.push_back(id);
    }
  }
  return page;
}

// The first `k` rows of `order` that are not `seen`.
std::vector<int32_t> FirstUnseen(const std::vector<int32_t>& order, const RowFilter& seen,
                                 size_t k) {
  std::vector<int32_t> rows;
  for (int32_t row : order) {
    if (rows.size() == k) break;
    if (!seen.Excluded(row)) rows.push_back(row);
  }
  return rows;
}

// Runs every method for every evaluated user. `eval_rng` draws the random
// pages.
//
// Live events: users are evaluated in time order, and before each user the
// held-out events strictly before their evaluation time are recorded into
// the ranker's engagement state (a copy of the bundle, loaded again), as a
// server kept live by RecordEvents would hold them. The live popularity
// baseline sees the same events.
absl::StatusOr<RankingMetrics> MeasureRanking(
    const TrainOptions& o, const InteractionLog& log, const Prepared& p,
    const EvalUsers& eval_users, const RankingOptions& rank_options,
    const TunedBaselines& baselines, const std::vector<RankingOptions>& weight_options,
    std::mt19937_64* eval_rng) {
  ASSIGN_OR_RETURN(const std::shared_ptr<const Bundle> bundle, LoadBundle(o.out));
  const Catalog& catalog = *bundle->catalog;
  size_t recorded = 0;
  std::vector<PositiveEvent> stream;  // positives, training then held-out
  for (const std::vector<size_t>* rows : {&p.train, &p.test}) {
    for (size_t r : *rows) {
      if (log.label(r, log.retrieval_objective) >= 0.5f) {
        stream.push_back({log.users[r], log.items[r], log.time_ms[r]});
      }
    }
  }
  std::vector<int32_t> popular_order(catalog.num_videos());
  std::iota(popular_order.begin(), popular_order.end(), 0);
  std::stable_sort(popular_order.begin(), popular_order.end(), [&](int32_t a, int32_t b) {
    return catalog.popularity(a) > catalog.popularity(b);
  });
  ASSIGN_OR_RETURN(
      std::unique_ptr<Ranker> full,
      Ranker::Create(bundle, RankerOptions{rank_options, RankerCosts{0, 0, 0}}));
  const Ranker& ranker = *full;
  // The same, with the ANN source alone: what the model adds to retrieval.
  RankingOptions ann_only_options = rank_options;
  ann_only_options.popular_candidates = 0;
  ann_only_options.fresh_candidates = 0;
  ann_only_options.trending_candidates = 0;
  ASSIGN_OR_RETURN(
      std::unique_ptr<Ranker> ann_only_ranker,
      Ranker::Create(bundle, RankerOptions{ann_only_options, RankerCosts{0, 0, 0}}));
  const Ranker& ann_only = *ann_only_ranker;
  // The weight settings being tuned, each a ranker of its own.
  std::vector<std::unique_ptr<Ranker>> weighted;
  for (const RankingOptions& options : weight_options) {
    ASSIGN_OR_RETURN(
        weighted.emplace_back(),
        Ranker::Create(bundle, RankerOptions{options, RankerCosts{0, 0, 0}}));
  }

  RankingMetrics out;
  out.weight_ndcg.resize(weighted.size());
  MarkTable marks;
  marks.EnsureSize(catalog.num_videos());
  SearchScratch scratch;
  std::vector<Hit> hits;
  RankResult ranked;
  for (const EvalUser& u : eval_users.users) {
    RecordBefore(log, p.test, u.time_ms, &recorded, bundle->engagement.get());
    if (u.positives.empty()) continue;
    ++out.users_evaluated;
    RowFilter seen(&marks);
    for (uint64_t id : u.seen) {
      if (auto row = catalog.VideoRow(id)) seen.Exclude(*row);
    }
    const int64_t candidates = catalog.num_videos() - int64_t(seen.count());
    int64_t in_catalog = 0;
    for (uint64_t id : u.positives) in_catalog += catalog.VideoRow(id).has_value();
    out.positives_total += u.positives.size();
    out.positives_in_catalog += in_catalog;
    out.cold_users += !catalog.UserRow(u.id).has_value();
    const double npos = double(u.positives.size());
    // Recall here is over ALL the user's held-out positives (what
    // docs/QUALITY.md publishes, and what the random baseline's expectation
    // below assumes), not RecallAtK's min(k, positives): the two differ for
    // a user with more than k positives.
    auto recall = [&](const std::vector<int32_t>& rows, size_t k) {
      int64_t found = 0;
      for (size_t i = 0; i < rows.size() && i < k; ++i) {
        found += u.positives.contains(catalog.video_id(rows[i]));
      }
      return found / npos;
    };
    // Of the first 10 ids (a longer list's others do not count).
    auto ndcg_of = [&](const std::vector<uint64_t>& ids) {
      std::vector<bool> relevant;
      for (size_t i = 0; i < ids.size() && i < 10; ++i)
        relevant.push_back(u.positives.contains(ids[i]));
      return NdcgAtK(relevant, static_cast<int>(u.positives.size()), 10);
    };
    auto ranked_ids = [&] {
      std::vector<uint64_t> ids;
      for (const RankedVideo& item : ranked.items) ids.push_back(item.video_id);
      return ids;
    };
    // Random: exact expectation for recall; one seeded draw for NDCG.
    const double reachable = in_catalog / npos;
    const double pool = double(std::max<int64_t>(1, candidates));
    out.recall100[0].push_back(reachable * std::min(1.0, 100.0 / pool));
    out.recall500[0].push_back(reachable * std::min(1.0, 500.0 / pool));
    out.ndcg[0].push_back(ndcg_of(RandomPage(catalog, seen, eval_rng)));
    // Most popular, unseen.
    const std::vector<int32_t> popular = FirstUnseen(popular_order, seen, 500);
    out.recall100[1].push_back(recall(popular, 100));
    out.recall500[1].push_back(recall(popular, 500));
    out.ndcg[1].push_back(ndcg_of(FirstIds(catalog, popular, 10)));
    // Embeddings alone: exact inner-product search.
    catalog.index().ExactSearch(LookUpUser(catalog, u.id).embedding, 500,
                                RowPredicate().Exclude(&seen), &scratch, &hits);
    std::vector<int32_t> by_dot;
    for (const Hit& hit : hits) by_dot.push_back(hit.row);
    out.recall100[2].push_back(recall(by_dot, 100));
    out.recall500[2].push_back(recall(by_dot, 500));
    out.ndcg[2].push_back(ndcg_of(FirstIds(catalog, by_dot, 10)));
    // The tuned baselines, over ids (EASE knows items the catalogue may not).
    const absl::flat_hash_set<uint64_t> seen_ids(u.seen.begin(), u.seen.end());
    auto id_recall = [&](const std::vector<uint64_t>& ids, size_t k) {
      int64_t found = 0;
      for (size_t i = 0; i < ids.size() && i < k; ++i)
        found += u.positives.contains(ids[i]);
      return found / npos;
    };
    const std::vector<uint64_t> recent =
        FirstUnseenIds(baselines.recent_popular, seen_ids, 500);
    out.recall100[3].push_back(id_recall(recent, 100));
    out.recall500[3].push_back(id_recall(recent, 500));
    out.ndcg[5].push_back(ndcg_of(recent));
    const std::vector<uint64_t> live_recent = FirstUnseenIds(
        RecentPopularity(stream, u.time_ms, baselines.window_hours * kHourMs, size_t(-1)),
        seen_ids, 500);
    out.recall100[5].push_back(id_recall(live_recent, 100));
    out.recall500[5].push_back(id_recall(live_recent, 500));
    out.ndcg[7].push_back(ndcg_of(live_recent));
    if (baselines.ease.has_value()) {
      auto history = baselines.positives_by_user.find(u.id);
      const std::vector<uint64_t> ease =
          history == baselines.positives_by_user.end()
              ? std::vector<uint64_t>()
              : baselines.ease->Recommend(history->second, seen_ids, 500);
      // A user EASE knows nothing of gets the recent-popularity page (what a
      // deployment of it would serve them).
      const std::vector<uint64_t>& page = ease.empty() ? recent : ease;
      out.recall100[4].push_back(id_recall(page, 100));
      out.recall500[4].push_back(id_recall(page, 500));
      out.ndcg[6].push_back(ndcg_of(page));
    }
    if (baselines.als_model.has_value()) {
      std::vector<uint64_t> als = baselines.als_model->Recommend(u.id, seen_ids, 500);
      // A user ALS never saw gets the recent-popularity page, as with EASE.
      const std::vector<uint64_t>& page = als.empty() ? recent : als;
      out.recall100[6].push_back(id_recall(page, 100));
      out.recall500[6].push_back(id_recall(page, 500));
      out.ndcg[8].push_back(ndcg_of(page));
    }
    // The full pipeline, as served.
    RankRequest request;
    request.user_id = u.id;
    request.count = 10;
    request.exclude_ids = u.seen;
    request.context = ContextAt(u.time_ms, o);
    RETURN_IF_ERROR(ranker.Rank(request, &ranked));
    out.ndcg[3].push_back(ndcg_of(ranked_ids()));
    RETURN_IF_ERROR(ann_only.Rank(request, &ranked));
    out.ndcg[4].push_back(ndcg_of(ranked_ids()));
    for (size_t w = 0; w < weighted.size(); ++w) {
      RETURN_IF_ERROR(weighted[w]->Rank(request, &ranked));
      out.weight_ndcg[w].push_back(ndcg_of(ranked_ids()));
    }
  }
  return out;
}

// Appends the retrieval and final-ranking tables to the report and the NDCG
// per method to `result->ndcg`.
absl::Status ReportRanking(const TrainOptions& o, const Heads& heads,
                           const RankingConfig& config, const RankingMetrics& metrics,
                           const TunedBaselines& baselines, TrainResult* result) {
  const int b = o.resamples;
  const uint64_t s = o.seed;
  std::string& report = result->report;
  absl::StrAppendFormat(
      &report,
      "\nEvaluated users: %d (held-out users with at least one new '%s' positive; "
      "%.1f%% of them cold, with no training row); %d such positives, %.1f%% of them on "
      "items in the bundle (the rest no method can retrieve). 95%% intervals: %d "
      "bootstrap resamples of users; differences are paired (the same resampled users "
      "for both sides).\n",
      metrics.users_evaluated, heads.retrieval,
      100.0 * metrics.cold_users / std::max<int64_t>(1, metrics.users_evaluated),
      metrics.positives_total,
      100.0 * metrics.positives_in_catalog /
          std::max<int64_t>(1, metrics.positives_total),
      b);
  if (metrics.users_evaluated < o.min_eval_users) {
    const std::string warning = absl::StrFormat(
        "every figure below rests on %d evaluated users, fewer than %d: intervals are "
        "unreliable (widen --holdout-days, or check the log's time range)",
        metrics.users_evaluated, o.min_eval_users);
    LogWarning("train: %s", warning);
    absl::StrAppendFormat(&report, "\n**WARNING**: %s.\n", warning);
    if (o.strict)
      return absl::FailedPreconditionError(absl::StrCat("--strict: ", warning));
  }
  report += baselines.report;
  absl::StrAppendFormat(&report,
                        "\n**Retrieval** (top K of the whole catalogue, items the user "
                        "saw in training excluded; recall of held-out '%s' positives)\n\n"
                        "| method | recall@100 | recall@500 |\n| --- | --- | --- |\n",
                        heads.retrieval);
  const std::string emb_name = absl::StrCat("embeddings (", o.embeddings.method, ")");
  const std::string window = baselines.window_hours == 0
                                 ? std::string("all training days")
                                 : absl::StrCat("last ", baselines.window_hours, " h");
  const std::string retrieval_names[7] = {
      "random (expected)",
      "most popular (all training days)",
      emb_name,
      absl::StrCat("most popular (", window, " before the cutoff, tuned)"),
      absl::StrFormat("EASE (lambda %g, tuned; the %d most-liked videos)",
                      baselines.ease_lambda, kEaseDefaultItems),
      absl::StrCat("most popular (", window, " before each request, live, tuned)"),
      absl::StrFormat("implicit ALS (dim 32, reg %g, alpha %g, tuned)", baselines.als.reg,
                      baselines.als.alpha)};
  for (int m = 0; m < 7; ++m) {
    if (metrics.recall100[m].empty()) continue;
    absl::StrAppendFormat(&report, "| %s | %s | %s |\n", retrieval_names[m],
                          Cell(MeanWithCi(metrics.recall100[m], b, s)),
                          Cell(MeanWithCi(metrics.recall500[m], b, s + 1)));
  }
  std::vector<std::string> weights;
  for (const auto& [name, w] : config.params().objective_weights()) {
    weights.push_back(absl::StrCat(name, "=", w));
  }
  std::sort(weights.begin(), weights.end());
  absl::StrAppendFormat(
      &report,
      "\n**Final ranking** (a page of 10 at the user's first held-out "
      "event; relevant = held-out '%s' positive; the full model is the "
      "serving Ranker with value weights %s)\n\n"
      "| method | NDCG@10 |\n| --- | --- |\n",
      heads.retrieval,
      weights.empty() ? "1 on every objective" : absl::StrJoin(weights, ", "));
  const std::string page_names[9] = {
      "random (one draw)",
      "most popular (all training days)",
      absl::StrCat(emb_name, " only"),
      "full model (ANN + popular + fresh + trending, MLP, value model, creator cap)",
      "full model, ANN candidates only",
      retrieval_names[3],
      retrieval_names[4],
      retrieval_names[5],
      retrieval_names[6]};
  const char* keys[9] = {"random", "popular",        "embeddings",
                         "model",  "model_ann_only", "recent_popular",
                         "ease",   "live_popular",   "als"};
  for (int m = 0; m < 9; ++m) {
    if (metrics.ndcg[m].empty()) continue;
    const Interval value = MeanWithCi(metrics.ndcg[m], b, s + 2 + m);
    result->ndcg[keys[m]] = value.value;
    absl::StrAppendFormat(&report, "| %s | %s |\n", page_names[m], Cell(value));
  }
  // The model against every baseline, paired over the same users; the best
  // baseline (by its held-out mean: the choice least kind to the model)
  // first.
  std::vector<int> baseline_methods;
  for (int m : {0, 1, 2, 5, 6, 7, 8}) {
    if (!metrics.ndcg[m].empty()) baseline_methods.push_back(m);
  }
  std::stable_sort(baseline_methods.begin(), baseline_methods.end(), [&](int a, int c) {
    return result->ndcg.at(keys[a]) > result->ndcg.at(keys[c]);
  });
  absl::StrAppendFormat(
      &report,
      "\n**The full model against each baseline** (NDCG@10 difference, "
      "model minus baseline, paired bootstrap over the %d users)\n\n"
      "| baseline | difference | interval excludes 0 |\n| --- | --- | --- "
      "|\n",
      metrics.users_evaluated);
  for (size_t i = 0; i < baseline_methods.size(); ++i) {
    const int m = baseline_methods[i];
    const Interval d = PairedDeltaWithCi(metrics.ndcg[m], metrics.ndcg[3], b, s + 20 + m);
    const bool excludes = d.lo > 0 || d.hi < 0;
    absl::StrAppendFormat(&report, "| %s%s | %s | %s |\n", page_names[m],
                          i == 0 ? " (best baseline)" : "", Cell(d),
                          excludes ? (d.value > 0 ? "yes: the model is better"
                                                  : "yes: the baseline is better")
                                   : "no");
    if (i == 0) {
      result->best_baseline = keys[m];
      result->model_minus_best = d.value;
      result->model_minus_best_lo = d.lo;
      result->model_minus_best_hi = d.hi;
    }
  }
  if (!baseline_methods.empty()) {
    const bool wins = result->model_minus_best_lo > 0;
    absl::StrAppendFormat(
        &report, "\n%s\n",
        wins ? absl::StrCat("The full model beats the best baseline (",
                            page_names[baseline_methods[0]],
                            ") with a paired 95% interval above 0.")
             : absl::StrCat(
                   "The full model does NOT beat the best baseline (",
                   page_names[baseline_methods[0]],
                   ") with a paired 95% interval above 0 on these held-out days."));
  }
  return absl::OkStatus();
}

// Appends the AUC table (the model against random, popularity and embedding
// dot scores, per log objective, over the held-out rows in the bundle) to the
// report and the model's AUC to `result->model_auc`. `eval_rng` draws the
// random scores.
void ReportAuc(const TrainOptions& o, const InteractionLog& log, const Heads& heads,
               const EvalUsers& eval_users, const HeldOutRows& held_out,
               const ModelTensors& tensors, std::mt19937_64* eval_rng,
               TrainResult* result) {
  const Catalog& catalog = *result->bundle->catalog;
  const int b = o.resamples;
  const uint64_t s = o.seed;
  std::uniform_real_distribution<double> unit(0, 1);
  const RowMatrix predictions = Forward(tensors, held_out.x);
  absl::StrAppendFormat(
      &result->report,
      "\n**AUC per objective** (held-out rows whose item is in the "
      "bundle: %d; watch_ratio counts >= 0.5 as positive)\n\n"
      "| objective | positives / rows | random | popularity | "
      "embedding dot | model |\n| --- | --- | --- | --- | --- | --- |\n",
      held_out.rows.size());
  for (int h = 0; h < heads.log_heads; ++h) {
    std::vector<float> labels, model, random, popularity, dot;
    std::vector<int32_t> group;
    int64_t positives = 0;
    for (size_t i = 0; i < held_out.rows.size(); ++i) {
      const size_t r = held_out.rows[i];
      const float label = log.label(r, h);
      if (std::isnan(label)) continue;
      labels.push_back(label >= 0.5f ? 1.f : 0.f);
      positives += label >= 0.5f;
      model.push_back(predictions(i, h));
      random.push_back(static_cast<float>(unit(*eval_rng)));
      const int32_t row = *catalog.VideoRow(log.items[r]);
      popularity.push_back(catalog.popularity(row));
      dot.push_back(simd::Dot(LookUpUser(catalog, log.users[r]).embedding,
                              catalog.video_embedding(row), o.embeddings.dim));
      group.push_back(eval_users.index.at(log.users[r]));
    }
    const int groups_n = static_cast<int>(eval_users.users.size());
    auto auc = [&](const std::vector<float>& scores) {
      return AucWithCi(scores, labels, group, groups_n, b, s + 10 + h);
    };
    const Interval model_auc = auc(model);
    result->model_auc[log.objectives[h]] = model_auc.value;
    absl::StrAppendFormat(&result->report, "| %s | %d / %d | %s | %s | %s | %s |\n",
                          log.objectives[h], positives, labels.size(), Cell(auc(random)),
                          Cell(auc(popularity)), Cell(auc(dot)), Cell(model_auc));
  }
}

}  // namespace

absl::StatusOr<RowMatrix> TrainResult::TrainerFeatures(uint64_t user_id,
                                                       uint64_t video_id, int64_t time_ms,
                                                       int32_t utc_offset_minutes) const {
  const Catalog& catalog = *bundle->catalog;
  const std::optional<int32_t> video_row = catalog.VideoRow(video_id);
  if (!video_row.has_value()) {
    return absl::NotFoundError(absl::StrCat("video ", video_id, " is not in the bundle"));
  }
  UserQuery user = LookUpUser(catalog, user_id);
  std::vector<float> history;
  AddHistory(CatalogView::Borrow(catalog), bundle->engagement.get(), user_id, time_ms,
             &user, &history);
  FeatureContext context{time_ms, utc_offset_minutes, DeviceType::kUnspecified};
  RowMatrix x(1, bundle->features.width());
  const int32_t row[1] = {*video_row};
  bundle->features.Build(catalog, user, context, bundle->engagement.get(), row, x.data());
  return x;
}

RowMatrix TrainResult::TrainerPredict(const RowMatrix& features) const {
  return Forward(bundle->model->tensors(), features);
}

// `log` without the rows at or after `end_ms`.
InteractionLog Truncated(const InteractionLog& log, int64_t end_ms) {
  InteractionLog out;
  out.path = log.path;
  out.objectives = log.objectives;
  out.retrieval_objective = log.retrieval_objective;
  const size_t k = log.objectives.size();
  for (size_t r = 0; r < log.size(); ++r) {
    if (log.time_ms[r] >= end_ms) continue;
    out.users.push_back(log.users[r]);
    out.items.push_back(log.items[r]);
    out.time_ms.push_back(log.time_ms[r]);
    if (!log.creators.empty()) out.creators.push_back(log.creators[r]);
    if (!log.duration_ms.empty()) out.duration_ms.push_back(log.duration_ms[r]);
    out.labels.insert(out.labels.end(), log.labels.begin() + r * k,
                      log.labels.begin() + (r + 1) * k);
  }
  return out;
}

std::string WeightsName(const std::map<std::string, float>& weights) {
  std::vector<std::string> parts;
  for (const auto& [name, w] : weights) parts.push_back(absl::StrCat(name, "=", w));
  return absl::StrJoin(parts, ", ");
}

// Runs the pipeline on the training rows before the validation days, held
// out = the validation days, ranking with every weight candidate; returns
// the best and appends the table to `report`.
absl::StatusOr<std::map<std::string, float>> TuneWeights(const TrainOptions& o,
                                                         const Prepared& p,
                                                         const Heads& heads,
                                                         std::string* report) {
  TrainOptions v = o;
  v.log_end_ms = p.cutoff_ms;
  v.split = "time";
  v.holdout_days = o.validation_days;
  v.out = absl::StrCat(o.out, ".weights-", ::getpid());
  v.replay_out.clear();
  v.tune_weights = false;
  v.ablations = false;
  v.resamples = 1;
  v.strict = false;
  for (const auto& c :
       WeightCandidates(heads.retrieval, heads.engage ? o.engage_objective : "")) {
    bool known = true;
    for (const auto& [name, w] : c) {
      known &=
          std::find(heads.names.begin(), heads.names.end(), name) != heads.names.end();
    }
    if (known) v.weight_candidates.push_back(c);
  }
  LogInfo("train: choosing the value weights on the validation split (%d settings)",
          v.weight_candidates.size());
  absl::StatusOr<TrainResult> run = Train(v);
  FileSystem::Real()->RemoveAll(v.out).IgnoreError();
  RETURN_IF_ERROR(run.status());
  size_t best = 0;
  absl::StrAppendFormat(
      report,
      "\n**Value weights chosen on validation** (a model trained on the "
      "rows before %s, ranking the validation users; NDCG@10)\n\n"
      "| weights | validation NDCG@10 |\n| --- | --- |\n",
      Day(p.cutoff_ms - int64_t(o.validation_days) * 24 * 3600 * 1000));
  for (size_t i = 0; i < run->weight_ndcg.size(); ++i) {
    absl::StrAppendFormat(report, "| %s | %.4f |\n", WeightsName(v.weight_candidates[i]),
                          run->weight_ndcg[i]);
    if (run->weight_ndcg[i] > run->weight_ndcg[best]) best = i;
  }
  if (v.weight_candidates.empty()) return std::map<std::string, float>();
  absl::StrAppendFormat(report, "\nChosen: %s.\n",
                        WeightsName(v.weight_candidates[best]));
  return v.weight_candidates[best];
}

// The model retrained without the engagement groups, one at a time and
// both, each paired with the full model over the same users.
absl::Status ReportAblations(const TrainOptions& o,
                             const std::vector<std::string>& groups,
                             TrainResult* result) {
  absl::StrAppendFormat(&result->report,
                        "\n**Ablations** (the model retrained without a feature group, "
                        "everything else the same; NDCG@10, and the full model minus the "
                        "ablation, paired)\n\n| model | NDCG@10 | full model minus it |\n"
                        "| --- | --- | --- |\n");
  const std::vector<std::pair<std::string, std::vector<std::string>>> cuts = {
      {"without trending", {"trending"}},
      {"without history", {"history"}},
      {"without trending and history", {"trending", "history"}}};
  for (const auto& [name, drop] : cuts) {
    TrainOptions a = o;
    a.features.clear();
    for (const std::string& g : groups) {
      if (std::find(drop.begin(), drop.end(), g) == drop.end()) a.features.push_back(g);
    }
    if (a.features.size() == groups.size()) continue;  // nothing to drop
    a.out = absl::StrCat(o.out, ".ablation-", ::getpid());
    a.replay_out.clear();
    a.ablations = false;
    a.eval_config = RankingConfig();
    for (const auto& [head, w] : result->eval_weights) {
      (*a.eval_config->mutable_params()->mutable_objective_weights())[head] = w;
    }
    LogInfo("train: ablation: %s", name);
    absl::StatusOr<TrainResult> run = Train(a);
    FileSystem::Real()->RemoveAll(a.out).IgnoreError();
    RETURN_IF_ERROR(run.status());
    if (run->model_ndcg_per_user.size() != result->model_ndcg_per_user.size()) {
      return absl::InternalError("ablation evaluated other users");
    }
    result->ndcg[absl::StrCat("model ", name)] = run->ndcg.at("model");
    const Interval value = MeanWithCi(run->model_ndcg_per_user, o.resamples, o.seed + 40);
    const Interval d = PairedDeltaWithCi(
        run->model_ndcg_per_user, result->model_ndcg_per_user, o.resamples, o.seed + 41);
    absl::StrAppendFormat(&result->report, "| %s | %s | %s |\n", name, Cell(value),
                          Cell(d));
  }
  return absl::OkStatus();
}

// The steps, in order: read and split the log; the catalogue and the model's
// heads and features; retrieval embeddings; the model's training and held-out
// rows; the model; the bundle (after the evaluation's value model is checked);
// the replay log; the report and, with `evaluate`, its quality tables.
absl::StatusOr<TrainResult> Train(const TrainOptions& o) {
  const SteadyClock::time_point start = SteadyClock::now();
  ASSIGN_OR_RETURN(InteractionLog log, ReadInteractionLog(o.log_path, o.mapping));
  if (o.log_end_ms > 0) log = Truncated(log, o.log_end_ms);
  RETURN_IF_ERROR(CheckOptions(o));
  absl::StatusOr<TimeSplit> split_or = o.split == "last-n-per-user"
                                           ? SplitLastNPerUser(log, o.last_n)
                                           : SplitByTime(log, o.holdout_days);
  RETURN_IF_ERROR(split_or.status());
  TimeSplit split = *std::move(split_or);
  ASSIGN_OR_RETURN(Prepared p, Prepare(log, split, o));
  ASSIGN_OR_RETURN(Heads heads, ModelHeads(log, o));
  LogData(o, log, p, heads);
  const std::vector<std::string> groups = FeatureGroups(o);
  ASSIGN_OR_RETURN(FeatureSet features, FeatureSet::Create(groups, o.embeddings.dim));

  ASSIGN_OR_RETURN(TrainedEmbeddings embeddings, TrainAllEmbeddings(p, o));
  const ModelRows train_rows = BuildTrainingRows(log, p, heads, embeddings, features, o);
  const HeldOutRows held_out =
      BuildHeldOutRows(log, p, *embeddings.served_catalog, features, o);
  TrainResult result;
  ASSIGN_OR_RETURN(const ModelTensors tensors,
                   TrainModel(train_rows, held_out, log, heads, o, &result.epoch_loss));

  // The value weights: given, or chosen on the validation split by a run of
  // the same pipeline on the rows before it (its model never sees the
  // held-out days, nor the validation days it is scored on).
  std::optional<std::map<std::string, float>> tuned;
  std::string weights_report;
  if (o.evaluate && o.tune_weights && !o.eval_config.has_value()) {
    ASSIGN_OR_RETURN(tuned, TuneWeights(o, p, heads, &weights_report));
  }
  ASSIGN_OR_RETURN(const EvalRanking eval_ranking,
                   ResolveEvalRanking(o, heads, tuned ? &*tuned : nullptr));
  std::vector<RankingOptions> weight_options;
  for (const auto& candidate : o.weight_candidates) {
    ASSIGN_OR_RETURN(EvalRanking e, ResolveEvalRanking(o, heads, &candidate));
    weight_options.push_back(e.options);
  }
  for (const auto& [name, w] : eval_ranking.config.params().objective_weights()) {
    result.eval_weights[name] = w;
  }
  ASSIGN_OR_RETURN(result.bundle, WriteTrainedBundle(o, log, p, heads, groups, embeddings,
                                                     tensors, start));
  const Histories history = UserHistories(log, p);
  if (!o.replay_out.empty()) RETURN_IF_ERROR(WriteReplayLog(o, log, p, history));

  result.report = DataSummary(o, log, p, *result.bundle->catalog, held_out.rows.size());
  if (o.evaluate) {
    const EvalUsers eval_users = HeldOutUsers(log, p, history);
    std::mt19937_64 eval_rng(o.seed ^ 0x5eed);
    ASSIGN_OR_RETURN(const TunedBaselines baselines, TuneBaselines(o, log, p));
    ASSIGN_OR_RETURN(const RankingMetrics metrics,
                     MeasureRanking(o, log, p, eval_users, eval_ranking.options,
                                    baselines, weight_options, &eval_rng));
    for (const std::vector<double>& v : metrics.weight_ndcg) {
      double sum = 0;
      for (double x : v) sum += x;
      result.weight_ndcg.push_back(v.empty() ? 0 : sum / double(v.size()));
    }
    result.model_ndcg_per_user = metrics.ndcg[3];
    result.report += weights_report;
    RETURN_IF_ERROR(
        ReportRanking(o, heads, eval_ranking.config, metrics, baselines, &result));
    if (o.ablations) RETURN_IF_ERROR(ReportAblations(o, groups, &result));
    ReportAuc(o, log, heads, eval_users, held_out, tensors, &eval_rng, &result);
  }
  LogInfo("train: done in %.1fs", Seconds(start));
  return result;
}

}  // namespace feedrank

#include "training/trainer.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/simd.h"
#include "base/status_macros.h"
#include "ranking/bundle.h"
#include "ranking/ranker.h"
#include "training/evaluation.h"

namespace feedrank {
namespace {

using Clock = std::chrono::steady_clock;

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

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
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
    auto [u, user_added] = p.user_row.try_emplace(log.users[r], int32_t(p.users.ids.size()));
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
    return absl::InvalidArgumentError(absl::StrCat(
        "the training days hold no positive of the retrieval objective '",
        log.objectives[log.retrieval_objective], "'"));
  }
  return p;
}

absl::StatusOr<std::unique_ptr<Catalog>> MakeCatalog(const Prepared& p,
                                                     const Embeddings& e, int dim) {
  BundleManifest m;
  m.set_dim(dim);
  m.set_num_videos(p.videos.ids.size());
  m.set_num_users(p.users.ids.size());
  VideoColumns videos = p.videos;
  UserColumns users = p.users;
  videos.embeddings.assign(e.items.data(), e.items.data() + e.items.size());
  users.embeddings.assign(e.users.data(), e.users.data() + e.users.size());
  return Catalog::Create(m, std::move(videos), std::move(users), nullptr);
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
  const UserQuery user = LookUpUser(catalog, user_id);
  FeatureContext context{time_ms, utc_offset_minutes, DeviceType::kUnspecified};
  RowMatrix x(1, bundle->features.width());
  const int32_t row[1] = {*video_row};
  bundle->features.Build(catalog, user, context, row, x.data());
  return x;
}

RowMatrix TrainResult::TrainerPredict(const RowMatrix& features) const {
  return Forward(bundle->model->tensors(), features);
}

absl::StatusOr<TrainResult> Train(const TrainOptions& o) {
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(InteractionLog log, ReadInteractionLog(o.log_path, o.mapping));
  ASSIGN_OR_RETURN(TimeSplit split, SplitByTime(log, o.holdout_days));
  if (o.folds < 2) return absl::InvalidArgumentError("folds must be >= 2");
  if (!(o.cold_start_share >= 0 && o.cold_start_share < 1)) {
    return absl::InvalidArgumentError("cold_start_share must be in [0, 1)");
  }
  ASSIGN_OR_RETURN(Prepared p, Prepare(log, split, o));
  const int dim = o.embeddings.dim;
  const bool engage = !o.engage_objective.empty() && o.negatives_per_row > 0;
  if (engage) {
    if (std::find(log.objectives.begin(), log.objectives.end(), o.engage_objective) !=
        log.objectives.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "engage objective '", o.engage_objective, "' is already an objective of the log"));
    }
  }
  const int log_heads = static_cast<int>(log.objectives.size());
  const int heads = log_heads + (engage ? 1 : 0);
  std::vector<std::string> objectives = log.objectives;
  if (engage) objectives.push_back(o.engage_objective);
  const std::string retrieval_name = log.objectives[log.retrieval_objective];
  LogInfo("train: %s: %d rows, %d objectives; %d training rows before %s, %d held out; "
          "catalogue %d items, %d users, %d positives of '%s'",
          o.log_path, log.size(), heads, p.train.size(),
          absl::FormatTime("%Y-%m-%d", absl::FromUnixMillis(p.cutoff_ms), absl::UTCTimeZone()),
          p.test.size(), p.videos.ids.size(), p.users.ids.size(), p.positives.size(),
          retrieval_name);

  // Feature groups: every group the log can feed (it knows no device).
  std::vector<std::string> groups = o.features;
  if (groups.empty()) {
    for (const std::string& g : FeatureSet::AllGroups()) {
      if (g != "device") groups.push_back(g);
    }
  }
  ASSIGN_OR_RETURN(FeatureSet features, FeatureSet::Create(groups, dim));

  // Embeddings: one model per fold for the ranker's training rows, then the
  // served one on every training positive.
  auto train_embeddings = [&](const std::vector<Positive>& positives,
                              const std::string& what) -> absl::StatusOr<Embeddings> {
    double last_report = 0, total_seconds = 0;
    int epochs_done = 0;
    auto done = absl::Cleanup([&] {
      LogInfo("train: %s embeddings (%s, dim %d): %d epochs in %.1fs", what,
              o.embeddings.method, dim, epochs_done, total_seconds);
    });
    return TrainEmbeddings(
        static_cast<int>(p.users.ids.size()), static_cast<int>(p.videos.ids.size()),
        positives, o.embeddings, [&](int epoch, double seconds) {
          if (seconds - last_report > 5) {
            LogInfo("train: %s embeddings (%s): epoch %d, %.1fs", what,
                    o.embeddings.method, epoch, seconds);
            last_report = seconds;
          }
          epochs_done = epoch;
          total_seconds = seconds;
        });
  };
  std::vector<std::unique_ptr<Catalog>> fold_catalogs;
  for (int f = 0; f < o.folds; ++f) {
    std::vector<Positive> others;
    for (size_t i = 0; i < p.positives.size(); ++i) {
      if (p.positive_fold[i] != f) others.push_back(p.positives[i]);
    }
    ASSIGN_OR_RETURN(Embeddings e,
                     train_embeddings(others, absl::StrCat("fold ", f + 1, "/", o.folds)));
    ASSIGN_OR_RETURN(auto catalog, MakeCatalog(p, e, dim));
    fold_catalogs.push_back(std::move(catalog));
  }
  ASSIGN_OR_RETURN(Embeddings final_embeddings, train_embeddings(p.positives, "served"));
  ASSIGN_OR_RETURN(auto final_catalog, MakeCatalog(p, final_embeddings, dim));

  // Feature rows: training rows from their fold's embeddings, each with its
  // sampled negatives; held-out rows (items in the catalogue) from the
  // served embeddings.
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> unit(0, 1);
  const int width = features.width();
  const int num_items = static_cast<int>(p.videos.ids.size());
  std::vector<absl::flat_hash_set<int32_t>> touched(p.users.ids.size());
  for (size_t r : p.train) {
    touched[p.user_row[log.users[r]]].insert(p.item_row[log.items[r]]);
  }
  // Per fold and user: the nearest untouched items, as retrieval offers them.
  constexpr int kHardPool = 200;
  std::vector<std::vector<std::vector<int32_t>>> hard(o.folds);
  for (int f = 0; f < o.folds && o.negatives_per_row > 0; ++f) {
    const Catalog& catalog = *fold_catalogs[f];
    hard[f].resize(p.users.ids.size());
    std::vector<std::pair<float, int32_t>> scored(num_items);
    for (size_t u = 0; u < p.users.ids.size(); ++u) {
      for (int32_t v = 0; v < num_items; ++v) {
        scored[v] = {-simd::Dot(catalog.user_embedding(u), catalog.video_embedding(v), dim),
                     v};
      }
      const int keep = std::min(num_items, kHardPool + static_cast<int>(touched[u].size()));
      std::partial_sort(scored.begin(), scored.begin() + keep, scored.end());
      for (int k = 0; k < keep && int(hard[f][u].size()) < kHardPool; ++k) {
        if (!touched[u].contains(scored[k].second)) hard[f][u].push_back(scored[k].second);
      }
    }
  }
  const size_t rows_per_log_row = 1 + std::max(0, o.negatives_per_row);
  RowMatrix x_train(p.train.size() * rows_per_log_row, width);
  RowMatrix y_train(p.train.size() * rows_per_log_row, heads);
  int64_t n_rows = 0;
  std::uniform_int_distribution<int32_t> any_item(0, num_items - 1);
  for (size_t i = 0; i < p.train.size(); ++i) {
    const size_t r = p.train[i];
    const Catalog& catalog = *fold_catalogs[p.fold[i]];
    const int32_t u = p.user_row[log.users[r]];
    UserQuery user{catalog.user_embedding(u), true, catalog.user_activity(u)};
    if (unit(rng) < o.cold_start_share) user = ColdStartUser(catalog);
    const FeatureContext context{log.time_ms[r], o.utc_offset_minutes,
                                 DeviceType::kUnspecified};
    const int32_t row[1] = {p.item_row[log.items[r]]};
    features.Build(catalog, user, context, row, x_train.row(n_rows).data());
    for (int h = 0; h < log_heads; ++h) y_train(n_rows, h) = log.label(r, h);
    if (engage) y_train(n_rows, log_heads) = 1.f;
    ++n_rows;
    for (int k = 0; k < o.negatives_per_row; ++k) {
      int32_t item = -1;
      const std::vector<int32_t>& pool = hard[p.fold[i]][u];
      if (k % 2 == 0 && !pool.empty()) {
        item = pool[rng() % pool.size()];
      } else {
        for (int tries = 0; tries < 20; ++tries) {
          const int32_t candidate = any_item(rng);
          if (!touched[u].contains(candidate)) {
            item = candidate;
            break;
          }
        }
      }
      if (item < 0) continue;
      const int32_t negative[1] = {item};
      features.Build(catalog, user, context, negative, x_train.row(n_rows).data());
      for (int h = 0; h < log_heads; ++h) {
        y_train(n_rows, h) =
            !engage && o.mapping.objectives(h).kind() == ObjectiveMapping::BINARY
                ? 0.f
                : std::nanf("");
      }
      if (engage) y_train(n_rows, log_heads) = 0.f;
      ++n_rows;
    }
  }
  x_train.conservativeResize(n_rows, width);
  y_train.conservativeResize(n_rows, heads);
  LogInfo("train: %d model rows (%d logged, %d sampled negatives), %d features", n_rows,
          p.train.size(), n_rows - int64_t(p.train.size()), width);
  std::vector<size_t> test_rows;  // held-out rows whose item is in the catalogue
  for (size_t r : p.test) {
    if (p.item_row.contains(log.items[r])) test_rows.push_back(r);
  }
  RowMatrix x_test(test_rows.size(), width);
  for (size_t i = 0; i < test_rows.size(); ++i) {
    const size_t r = test_rows[i];
    const UserQuery user = LookUpUser(*final_catalog, log.users[r]);
    const FeatureContext context{log.time_ms[r], o.utc_offset_minutes,
                                 DeviceType::kUnspecified};
    const int32_t row[1] = {*final_catalog->VideoRow(log.items[r])};
    features.Build(*final_catalog, user, context, row, x_test.row(i).data());
  }
  auto held_out_auc = [&](const RowMatrix& predictions, int h) {
    std::vector<float> scores, labels;
    for (size_t i = 0; i < test_rows.size(); ++i) {
      const float label = log.label(test_rows[i], h);
      if (std::isnan(label)) continue;
      scores.push_back(predictions(i, h));
      labels.push_back(label >= 0.5f ? 1.f : 0.f);
    }
    return Auc(scores, labels);
  };

  TrainResult result;
  const Clock::time_point mlp_start = Clock::now();
  ASSIGN_OR_RETURN(
      ModelTensors tensors,
      TrainMlp(x_train, y_train, o.mlp, [&](int epoch, double loss, const ModelTensors& t) {
        result.epoch_loss.push_back(loss);
        const RowMatrix predictions = Forward(t, x_test);
        double sum = 0;
        int count = 0;
        for (int h = 0; h < log_heads; ++h) {
          const double auc = held_out_auc(predictions, h);
          if (!std::isnan(auc)) {
            sum += auc;
            ++count;
          }
        }
        LogInfo("train: model epoch %d/%d: loss %.4f, held-out AUC %s %.4f, mean over "
                "heads %.4f, %.1fs",
                epoch, o.mlp.epochs, loss, retrieval_name,
                held_out_auc(predictions, log.retrieval_objective),
                count > 0 ? sum / count : std::nan(""), Seconds(mlp_start));
      }));

  // The bundle.
  BundleManifest m;
  m.set_format_version(kBundleFormatVersion);
  m.set_version(o.version.empty()
                    ? absl::StrCat("train-", FileName(o.log_path), "-s", o.seed)
                    : o.version);
  m.set_dim(dim);
  m.set_num_videos(p.videos.ids.size());
  m.set_num_users(p.users.ids.size());
  // Exact search is both faster and better below ~100k items.
  m.mutable_index()->set_type(o.index_type != "auto" ? o.index_type
                              : p.videos.ids.size() < 100000 ? "flat"
                                                              : "hnsw");
  for (const std::string& name : objectives) m.mutable_model()->add_objectives(name);
  for (const std::string& g : groups) m.mutable_model()->add_features(g);
  for (uint32_t h : o.mlp.hidden) m.mutable_model()->add_hidden(h);
  m.set_created_by(absl::StrCat("feedrank train --log ", o.log_path, " --embedding ",
                                o.embeddings.method, " --seed ", o.seed));
  m.set_created_at_unix(p.cutoff_ms / 1000);
  m.set_data_time_ms(p.cutoff_ms);
  IndexSpec spec = m.index();
  ASSIGN_OR_RETURN(auto index,
                   AnnIndex::Build(final_embeddings.items.data(), p.videos.ids.size(),
                                   dim, &spec, nullptr, /*threads=*/1));
  *m.mutable_index() = spec;
  VideoColumns videos = p.videos;
  UserColumns users = p.users;
  videos.embeddings.assign(final_embeddings.items.data(),
                           final_embeddings.items.data() + final_embeddings.items.size());
  users.embeddings.assign(final_embeddings.users.data(),
                          final_embeddings.users.data() + final_embeddings.users.size());
  // The evaluation's value model, checked before anything is written.
  RankingConfig eval_config;
  if (o.eval_config.has_value()) {
    eval_config = *o.eval_config;
  } else {
    (*eval_config.mutable_params()->mutable_objective_weights())[retrieval_name] = 1.f;
    if (engage) {
      (*eval_config.mutable_params()->mutable_objective_weights())[o.engage_objective] = 1.f;
    }
  }
  ASSIGN_OR_RETURN(RankingOptions rank_options, ResolveOptions(eval_config, objectives));
  // A held-out user's whole training history is excluded, however long.
  rank_options.max_exclude_ids = std::numeric_limits<int>::max();

  RETURN_IF_ERROR(WriteBundle(o.out, m, videos, users, tensors, *index));
  ASSIGN_OR_RETURN(result.bundle, LoadBundle(o.out));
  LogInfo("train: wrote bundle %s (%s), %.1fs so far", o.out, m.version(), Seconds(start));

  // Items each user touched, in time order, for exclude lists.
  absl::flat_hash_map<uint64_t, std::vector<size_t>> history;  // user -> rows
  for (size_t r : p.train) history[log.users[r]].push_back(r);
  for (size_t r : p.test) history[log.users[r]].push_back(r);

  // Replay log: one request per held-out session (a gap of 30 minutes
  // starts a new one).
  if (!o.replay_out.empty()) {
    std::ofstream out(o.replay_out, std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(o.replay_out, ": cannot write"));
    int64_t records = 0;
    absl::flat_hash_set<uint64_t> done;
    for (size_t test_row : p.test) {  // users in order of their first held-out event
      const uint64_t user = log.users[test_row];
      if (!done.insert(user).second) continue;
      const std::vector<size_t>& rows = history[user];
      size_t i = 0;
      while (i < rows.size() && log.time_ms[rows[i]] < p.cutoff_ms) ++i;
      while (i < rows.size()) {
        v1::ReplayRecord record;
        record.set_user_id(user);
        record.set_time_ms(log.time_ms[rows[i]]);
        record.set_known_user(p.user_row.contains(user));
        for (const std::string& name : log.objectives) record.add_objectives(name);
        absl::flat_hash_set<uint64_t> excluded;
        for (size_t k = 0; k < i; ++k) {
          if (excluded.insert(log.items[rows[k]]).second) {
            record.add_exclude_ids(log.items[rows[k]]);
          }
        }
        int64_t last = log.time_ms[rows[i]];
        while (i < rows.size() && log.time_ms[rows[i]] - last <= kSessionGapMs) {
          const size_t r = rows[i];
          v1::ReplayOutcome* outcome = record.add_outcomes();
          outcome->set_video_id(log.items[r]);
          outcome->set_time_ms(log.time_ms[r]);
          for (int h = 0; h < log_heads; ++h) outcome->add_labels(log.label(r, h));
          last = log.time_ms[r];
          ++i;
        }
        std::string json;
        google::protobuf::util::JsonPrintOptions print;
        print.preserve_proto_field_names = true;
        if (!google::protobuf::util::MessageToJsonString(record, &json, print).ok()) {
          return absl::InternalError("cannot encode a replay record");
        }
        out << json << "\n";
        ++records;
      }
    }
    if (!out.flush()) return absl::DataLossError(absl::StrCat(o.replay_out, ": write failed"));
    LogInfo("train: wrote %d replay requests to %s", records, o.replay_out);
  }

  // Report.
  const Catalog& catalog = *result.bundle->catalog;
  int64_t test_known_users = 0;
  for (size_t r : p.test) test_known_users += p.user_row.contains(log.users[r]);
  std::string& report = result.report;
  absl::StrAppendFormat(
      &report,
      "Log `%s`: %d rows, %d users, %d items. Held out: the last %d day(s), from %s UTC "
      "(%d rows). Bundle: %d items and %d users with a training interaction; %.1f%% of "
      "held-out rows have an item in the bundle, %.1f%% a user in it.\n",
      o.log_path, log.size(),
      absl::flat_hash_set<uint64_t>(log.users.begin(), log.users.end()).size(),
      absl::flat_hash_set<uint64_t>(log.items.begin(), log.items.end()).size(),
      o.holdout_days,
      absl::FormatTime("%Y-%m-%d", absl::FromUnixMillis(p.cutoff_ms), absl::UTCTimeZone()),
      p.test.size(), catalog.num_videos(), catalog.num_users(),
      100.0 * test_rows.size() / std::max<size_t>(1, p.test.size()),
      100.0 * test_known_users / std::max<size_t>(1, p.test.size()));

  if (o.evaluate) {
    // Per held-out user: the items seen in training (excluded) and the
    // held-out positives of the retrieval objective not seen before.
    struct EvalUser {
      uint64_t id;
      int64_t time_ms;
      std::vector<uint64_t> seen;
      absl::flat_hash_set<uint64_t> positives;
    };
    std::vector<EvalUser> eval_users;
    absl::flat_hash_map<uint64_t, int32_t> eval_index;
    for (size_t r : p.test) {
      auto [it, added] = eval_index.try_emplace(log.users[r], int32_t(eval_users.size()));
      if (added) {
        EvalUser u;
        u.id = log.users[r];
        u.time_ms = log.time_ms[r];
        absl::flat_hash_set<uint64_t> seen;
        for (size_t h : history[u.id]) {
          if (log.time_ms[h] < p.cutoff_ms && seen.insert(log.items[h]).second) {
            u.seen.push_back(log.items[h]);
          }
        }
        eval_users.push_back(std::move(u));
      }
      EvalUser& u = eval_users[it->second];
      if (log.label(r, log.retrieval_objective) >= 0.5f &&
          std::find(u.seen.begin(), u.seen.end(), log.items[r]) == u.seen.end()) {
        u.positives.insert(log.items[r]);
      }
    }
    std::vector<int32_t> popular_order(catalog.num_videos());
    std::iota(popular_order.begin(), popular_order.end(), 0);
    std::stable_sort(popular_order.begin(), popular_order.end(), [&](int32_t a, int32_t b) {
      return catalog.popularity(a) > catalog.popularity(b);
    });
    Ranker ranker(result.bundle, rank_options, RankerCosts{0, 0, 0});
    // The same, with the ANN source alone: what the model adds to retrieval.
    RankingOptions ann_only_options = rank_options;
    ann_only_options.popular_candidates = 0;
    ann_only_options.fresh_candidates = 0;
    Ranker ann_only(result.bundle, ann_only_options, RankerCosts{0, 0, 0});

    // random, popular, embeddings, full model, model over ANN candidates only
    std::vector<double> recall100[3], recall500[3], ndcg[5];
    std::mt19937_64 eval_rng(o.seed ^ 0x5eed);
    MarkTable marks;
    marks.Reset(catalog.num_videos());
    SearchScratch scratch;
    std::vector<Hit> hits;
    RankResult ranked;
    int64_t users_evaluated = 0, positives_total = 0, positives_in_catalog = 0;
    for (const EvalUser& u : eval_users) {
      if (u.positives.empty()) continue;
      ++users_evaluated;
      RowFilter seen(&marks);
      for (uint64_t id : u.seen) {
        if (auto row = catalog.VideoRow(id)) seen.Exclude(*row);
      }
      const int64_t candidates = catalog.num_videos() - int64_t(seen.count());
      int64_t in_catalog = 0;
      for (uint64_t id : u.positives) in_catalog += catalog.VideoRow(id).has_value();
      positives_total += u.positives.size();
      positives_in_catalog += in_catalog;
      const double npos = double(u.positives.size());
      auto recall = [&](const std::vector<int32_t>& rows, size_t k) {
        int64_t found = 0;
        for (size_t i = 0; i < rows.size() && i < k; ++i) {
          found += u.positives.contains(catalog.video_id(rows[i]));
        }
        return found / npos;
      };
      auto ndcg_of = [&](const std::vector<uint64_t>& ids) {
        std::vector<bool> relevant;
        for (uint64_t id : ids) relevant.push_back(u.positives.contains(id));
        return NdcgAtK(relevant, static_cast<int>(u.positives.size()), 10);
      };
      // Random: exact expectation for recall; one seeded draw for NDCG.
      const double reachable = in_catalog / npos;
      recall100[0].push_back(reachable * std::min(1.0, 100.0 / std::max<int64_t>(1, candidates)));
      recall500[0].push_back(reachable * std::min(1.0, 500.0 / std::max<int64_t>(1, candidates)));
      std::vector<uint64_t> random_page;
      std::uniform_int_distribution<int32_t> any(0, catalog.num_videos() - 1);
      for (int tries = 0; random_page.size() < 10 && tries < 10000; ++tries) {
        const int32_t row = any(eval_rng);
        const uint64_t id = catalog.video_id(row);
        if (!seen.Excluded(row) &&
            std::find(random_page.begin(), random_page.end(), id) == random_page.end()) {
          random_page.push_back(id);
        }
      }
      ndcg[0].push_back(ndcg_of(random_page));
      // Most popular, unseen.
      std::vector<int32_t> popular;
      for (int32_t row : popular_order) {
        if (popular.size() == 500) break;
        if (!seen.Excluded(row)) popular.push_back(row);
      }
      recall100[1].push_back(recall(popular, 100));
      recall500[1].push_back(recall(popular, 500));
      std::vector<uint64_t> popular_page;
      for (size_t i = 0; i < 10 && i < popular.size(); ++i) {
        popular_page.push_back(catalog.video_id(popular[i]));
      }
      ndcg[1].push_back(ndcg_of(popular_page));
      // Embeddings alone: exact inner-product search.
      catalog.index().ExactSearch(LookUpUser(catalog, u.id).embedding, 500, &seen, &scratch,
                                  &hits);
      std::vector<int32_t> by_dot;
      for (const Hit& hit : hits) by_dot.push_back(hit.row);
      recall100[2].push_back(recall(by_dot, 100));
      recall500[2].push_back(recall(by_dot, 500));
      std::vector<uint64_t> dot_page;
      for (size_t i = 0; i < 10 && i < by_dot.size(); ++i) {
        dot_page.push_back(catalog.video_id(by_dot[i]));
      }
      ndcg[2].push_back(ndcg_of(dot_page));
      // The full pipeline, as served.
      RankRequest request;
      request.user_id = u.id;
      request.count = 10;
      request.exclude_ids = u.seen;
      request.context = {u.time_ms, o.utc_offset_minutes, DeviceType::kUnspecified};
      RETURN_IF_ERROR(ranker.Rank(request, &ranked));
      std::vector<uint64_t> model_page;
      for (const RankedVideo& item : ranked.items) model_page.push_back(item.video_id);
      ndcg[3].push_back(ndcg_of(model_page));
      RETURN_IF_ERROR(ann_only.Rank(request, &ranked));
      model_page.clear();
      for (const RankedVideo& item : ranked.items) model_page.push_back(item.video_id);
      ndcg[4].push_back(ndcg_of(model_page));
    }
    const int b = o.resamples;
    const uint64_t s = o.seed;
    absl::StrAppendFormat(
        &report,
        "\nEvaluated users: %d (held-out users with at least one new '%s' positive); "
        "%d such positives, %.1f%% of them on items in the bundle (the rest no method can "
        "retrieve). 95%% intervals: %d bootstrap resamples of users.\n",
        users_evaluated, retrieval_name, positives_total,
        100.0 * positives_in_catalog / std::max<int64_t>(1, positives_total), b);
    absl::StrAppendFormat(&report,
                          "\n**Retrieval** (top K of the whole catalogue, items the user "
                          "saw in training excluded; recall of held-out '%s' positives)\n\n"
                          "| method | recall@100 | recall@500 |\n| --- | --- | --- |\n",
                          retrieval_name);
    const char* names[4] = {"random (expected)", "most popular",
                            nullptr, "full model (features + MLP + value model)"};
    const std::string emb_name = absl::StrCat("embeddings (", o.embeddings.method, ")");
    for (int m = 0; m < 3; ++m) {
      absl::StrAppendFormat(&report, "| %s | %s | %s |\n", m == 2 ? emb_name : names[m],
                            Cell(MeanWithCi(recall100[m], b, s)),
                            Cell(MeanWithCi(recall500[m], b, s + 1)));
    }
    std::vector<std::string> weights;
    for (const auto& [name, w] : eval_config.params().objective_weights()) {
      weights.push_back(absl::StrCat(name, "=", w));
    }
    std::sort(weights.begin(), weights.end());
    absl::StrAppendFormat(&report,
                          "\n**Final ranking** (a page of 10 at the user's first held-out "
                          "event; relevant = held-out '%s' positive; the full model is the "
                          "serving Ranker with value weights %s)\n\n"
                          "| method | NDCG@10 |\n| --- | --- |\n",
                          retrieval_name,
                          weights.empty() ? "1 on every objective" : absl::StrJoin(weights, ", "));
    const char* page_names[5] = {
        "random (one draw)", "most popular", nullptr,
        "full model (ANN + popular + fresh, MLP, value model, creator cap)",
        "full model, ANN candidates only"};
    const char* keys[5] = {"random", "popular", "embeddings", "model", "model_ann_only"};
    for (int m = 0; m < 5; ++m) {
      const Interval value = MeanWithCi(ndcg[m], b, s + 2 + m);
      result.ndcg[keys[m]] = value.value;
      absl::StrAppendFormat(&report, "| %s | %s |\n",
                            m == 2 ? absl::StrCat(emb_name, " only") : page_names[m],
                            Cell(value));
    }

    // AUC per objective on held-out rows.
    const RowMatrix predictions = Forward(tensors, x_test);
    absl::StrAppendFormat(&report,
                          "\n**AUC per objective** (held-out rows whose item is in the "
                          "bundle: %d; watch_ratio counts >= 0.5 as positive)\n\n"
                          "| objective | positives / rows | random | popularity | "
                          "embedding dot | model |\n| --- | --- | --- | --- | --- | --- |\n",
                          test_rows.size());
    for (int h = 0; h < log_heads; ++h) {
      std::vector<float> labels, model, random, popularity, dot;
      std::vector<int32_t> group;
      int64_t positives = 0;
      for (size_t i = 0; i < test_rows.size(); ++i) {
        const size_t r = test_rows[i];
        const float label = log.label(r, h);
        if (std::isnan(label)) continue;
        labels.push_back(label >= 0.5f ? 1.f : 0.f);
        positives += label >= 0.5f;
        model.push_back(predictions(i, h));
        random.push_back(static_cast<float>(unit(eval_rng)));
        const int32_t row = *catalog.VideoRow(log.items[r]);
        popularity.push_back(catalog.popularity(row));
        dot.push_back(simd::Dot(LookUpUser(catalog, log.users[r]).embedding,
                                catalog.video_embedding(row), dim));
        group.push_back(eval_index[log.users[r]]);
      }
      const int groups_n = static_cast<int>(eval_users.size());
      const Interval model_auc = AucWithCi(model, labels, group, groups_n, b, s + 10 + h);
      result.model_auc[log.objectives[h]] = model_auc.value;
      absl::StrAppendFormat(
          &report, "| %s | %d / %d | %s | %s | %s | %s |\n", log.objectives[h], positives,
          labels.size(), Cell(AucWithCi(random, labels, group, groups_n, b, s + 10 + h)),
          Cell(AucWithCi(popularity, labels, group, groups_n, b, s + 10 + h)),
          Cell(AucWithCi(dot, labels, group, groups_n, b, s + 10 + h)), Cell(model_auc));
    }
  }
  LogInfo("train: done in %.1fs", Seconds(start));
  return result;
}

}  // namespace feedrank

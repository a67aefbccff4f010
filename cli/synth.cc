#include "cli/synth.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/simd.h"
#include "base/status_macros.h"
#include "ranking/bundle.h"
#include "ranking/features.h"

namespace feedrank {
namespace {

// Planted effects: for each of these feature groups (normalised), a logit
// coefficient per objective, in SynthObjectives() order.
struct Effect {
  const char* group;
  float coef[6];
};
constexpr Effect kEffects[] = {
    {"dot", {1.2f, 1.0f, 0.9f, 0.6f, 0.5f, 0.5f}},
    {"log_popularity", {0.5f, 0.3f, 0.4f, 0.2f, 0.3f, 0.4f}},
    {"log_age_hours", {-0.3f, -0.1f, -0.2f, 0.0f, -0.1f, -0.2f}},
    {"log_duration", {0.0f, -0.6f, 0.1f, 0.0f, 0.1f, 0.0f}},
    {"log_creator_popularity", {0.1f, 0.1f, 0.2f, 0.4f, 0.1f, 0.1f}},
};
constexpr float kBaseLogit[6] = {-0.8f, -1.3f, -2.5f, -4.5f, -4.0f, -4.8f};
static_assert(2 * std::size(kEffects) == kMinSynthHiddenWidth,
              "a hidden layer carries each planted effect as a ReLU pair");

void Normalize(float* v, int d, float norm) {
  double sq = 0;
  for (int j = 0; j < d; ++j) sq += double(v[j]) * v[j];
  const float scale = sq > 0 ? static_cast<float>(norm / std::sqrt(sq)) : 0.f;
  for (int j = 0; j < d; ++j) v[j] *= scale;
}

}  // namespace

const std::vector<std::string>& SynthObjectives() {
  static const auto* kObjectives = new std::vector<std::string>{
      "click", "long_view", "like", "follow", "comment", "share"};
  return *kObjectives;
}

absl::StatusOr<SynthData> Synthesize(const SynthOptions& o) {
  if (o.videos < 1 || o.videos > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("videos: ", o.videos, " is outside [1, 2^31-1]"));
  }
  if (o.users < 0 || o.users > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("users: ", o.users, " is outside [0, 2^31-1]"));
  }
  if (o.dim < 2 || o.dim > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("dim: ", o.dim, " is outside [2, 4096]"));
  }
  if (!(o.videos_per_creator >= 1)) {
    return absl::InvalidArgumentError("videos_per_creator must be >= 1");
  }
  if (o.hidden.empty()) {
    return absl::InvalidArgumentError("hidden: needs at least one layer");
  }
  for (size_t layer = 0; layer < o.hidden.size(); ++layer) {
    // Units 2e and 2e+1 of every hidden layer carry planted effect e (see
    // the MLP below), so each layer needs a pair per effect.
    if (o.hidden[layer] < kMinSynthHiddenWidth ||
        o.hidden[layer] > kMaxSynthHiddenWidth) {
      return absl::InvalidArgumentError(
          absl::StrCat("hidden: layer ", layer, " has ", o.hidden[layer],
                       " units; every layer needs ", kMinSynthHiddenWidth, " to ",
                       kMaxSynthHiddenWidth, " (two per planted effect)"));
    }
  }
  const int d = o.dim;
  const int64_t n = o.videos;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const float inv_sqrt_d = 1.f / std::sqrt(float(d));

  if (o.distribution != "topics" && o.distribution != "hard") {
    return absl::InvalidArgumentError(
        absl::StrCat("distribution: '", o.distribution, "' is not one of: topics, hard"));
  }
  const bool hard = o.distribution == "hard";
  const int64_t clusters =
      o.clusters > 0 ? o.clusters
      : hard         ? 2000
                     : std::clamp<int64_t>(int64_t(std::sqrt(double(n)) / 2), 8, 4096);
  // The hard set: cluster k drawn with weight 1/(k+1)^0.8 (inverse CDF over
  // the cumulative weights), point = centre + 0.9 N(0, I), unit norm, then a
  // log-normal(0, 0.3) norm.
  std::vector<double> cumulative;
  if (hard) {
    double total = 0;
    for (int64_t k = 0; k < clusters; ++k) {
      total += 1.0 / std::pow(double(k + 1), 0.8);
      cumulative.push_back(total);
    }
    for (double& c : cumulative) c /= total;
  }
  auto hard_point = [&](const std::vector<float>& centres, float* e) {
    const int64_t k = std::min<int64_t>(
        clusters - 1,
        std::lower_bound(cumulative.begin(), cumulative.end(), uniform(rng)) -
            cumulative.begin());
    for (int j = 0; j < d; ++j) e[j] = centres[k * d + j] + 0.9f * normal(rng);
    Normalize(e, d, std::exp(0.3f * normal(rng)));
  };
  std::vector<float> centers(clusters * d);
  for (int64_t k = 0; k < clusters; ++k) {
    for (int j = 0; j < d; ++j) centers[k * d + j] = normal(rng);
    if (!hard) Normalize(&centers[k * d], d, 1.f);
  }

  SynthData data;
  VideoColumns& v = data.videos;
  // Creators: a topic and a quality each; a skewed number of videos each.
  const int64_t creators = std::max<int64_t>(1, int64_t(n / o.videos_per_creator));
  std::vector<int64_t> creator_topic(creators);
  std::vector<float> creator_quality(creators);
  for (int64_t c = 0; c < creators; ++c) {
    creator_topic[c] = static_cast<int64_t>(uniform(rng) * clusters);
    creator_quality[c] = normal(rng);
  }
  v.ids.resize(n);
  v.creator_ids.resize(n);
  v.duration_ms.resize(n);
  v.upload_time_ms.resize(n);
  v.popularity.resize(n);
  v.embeddings.resize(n * d);
  std::vector<float> latent(n);
  for (int64_t i = 0; i < n; ++i) {
    // Ids: sparse, as real ids are.
    v.ids[i] = 1000000007ull + uint64_t(i) * 7919ull;
    const int64_t c =
        std::min<int64_t>(creators - 1, int64_t(creators * std::pow(uniform(rng), 1.6)));
    v.creator_ids[i] = 500000000ull + uint64_t(c) * 31ull;
    latent[i] = 0.7f * creator_quality[c] + 0.7f * normal(rng);
    const double age_hours = std::min(-std::log(1.0 - uniform(rng)) * 24 * 7, 365.0 * 24);
    v.upload_time_ms[i] = o.reference_time_ms - static_cast<int64_t>(age_hours * 3.6e6);
    if (uniform(rng) < 0.05) {
      v.duration_ms[i] = 0;
    } else {
      const double seconds = std::exp(std::log(25.0) + 0.8 * normal(rng));
      v.duration_ms[i] = static_cast<int64_t>(std::clamp(seconds, 3.0, 600.0) * 1000);
    }
    float* e = &v.embeddings[i * d];
    if (hard) {
      hard_point(centers, e);
      continue;
    }
    const float* center = &centers[creator_topic[c] * d];
    for (int j = 0; j < d; ++j) e[j] = center[j] + 0.8f * normal(rng) * inv_sqrt_d;
  }
  // Zipf popularity by latent quality rank; better videos also have slightly
  // longer embeddings, as trained embeddings of popular items tend to.
  std::vector<int64_t> by_quality(n);
  std::iota(by_quality.begin(), by_quality.end(), 0);
  std::sort(by_quality.begin(), by_quality.end(), [&](int64_t a, int64_t b) {
    return latent[a] > latent[b] || (latent[a] == latent[b] && a < b);
  });
  for (int64_t rank = 0; rank < n; ++rank) {
    const int64_t i = by_quality[rank];
    v.popularity[i] = std::floor(10.0 * n / std::pow(double(rank + 1), 0.9));
    if (hard) continue;  // its norms are the log-normal ones
    const float quantile = 1.f - float(rank) / float(n);
    Normalize(&v.embeddings[i * d], d, 0.85f + 0.3f * quantile);
  }

  // Users: one to three interests, popular topics more often.
  UserColumns& u = data.users;
  u.ids.resize(o.users);
  u.embeddings.assign(o.users * d, 0.f);
  u.activity.resize(o.users);
  for (int64_t i = 0; i < o.users; ++i) {
    u.ids[i] = 7000000000ull + uint64_t(i) * 13ull;
    float* e = &u.embeddings[i * d];
    if (hard) {
      hard_point(centers, e);
      u.activity[i] = std::round(std::exp(3.f + 1.2f * normal(rng)));
      continue;
    }
    const int interests = 1 + static_cast<int>(uniform(rng) * 3);
    for (int t = 0; t < interests; ++t) {
      const int64_t k = std::min<int64_t>(
          clusters - 1, int64_t(clusters * std::pow(uniform(rng), 2.0)));
      const float w = 0.5f + float(uniform(rng));
      for (int j = 0; j < d; ++j) e[j] += w * centers[k * d + j];
    }
    for (int j = 0; j < d; ++j) e[j] += 0.5f * normal(rng) * inv_sqrt_d;
    Normalize(e, d, std::clamp(1.f + 0.1f * normal(rng), 0.7f, 1.3f));
    u.activity[i] = std::round(std::exp(3.f + 1.2f * normal(rng)));
  }

  // Manifest.
  BundleManifest& m = data.manifest;
  m.set_format_version(kBundleFormatVersion);
  m.set_version(o.version.empty() ? absl::StrCat("synth-", n, "-s", o.seed) : o.version);
  m.set_dim(d);
  m.set_num_videos(n);
  m.set_num_users(o.users);
  *m.mutable_index() = o.index;
  if (m.index().type().empty()) m.mutable_index()->set_type("hnsw");
  for (const std::string& name : SynthObjectives())
    m.mutable_model()->add_objectives(name);
  // Every group but the engagement ones unless asked for: a synthetic
  // catalogue has no event history.
  for (const std::string& group : FeatureSet::AllGroups()) {
    if (!o.engagement_features && (group == "trending" || group == "history")) continue;
    m.mutable_model()->add_features(group);
  }
  for (uint32_t width : o.hidden) m.mutable_model()->add_hidden(width);
  m.set_created_by(absl::StrCat("feedrank synth --videos ", n, " --users ", o.users,
                                " --dim ", d, " --seed ", o.seed));
  m.set_created_at_unix(o.reference_time_ms / 1000);
  m.set_data_time_ms(o.reference_time_ms);

  // Input normalisation from a sample of (user, video, context) rows.
  std::vector<std::string> groups(m.model().features().begin(),
                                  m.model().features().end());
  ASSIGN_OR_RETURN(FeatureSet features, FeatureSet::Create(groups, d));
  const int width = features.width();
  BundleManifest stats_manifest = m;
  VideoColumns v_copy = v;
  UserColumns u_copy = u;
  ASSIGN_OR_RETURN(auto catalog, Catalog::Create(stats_manifest, std::move(v_copy),
                                                 std::move(u_copy), nullptr));
  constexpr int kSample = 4096;
  std::vector<float> rows(size_t(kSample) * width);
  for (int s = 0; s < kSample; ++s) {
    UserQuery user;
    if (o.users > 0 && s % 8 != 0) {
      const int32_t r = static_cast<int32_t>(uniform(rng) * o.users);
      user.embedding = catalog->user_embedding(r);
      user.known = true;
      user.activity = catalog->user_activity(r);
    } else {
      user.embedding = catalog->mean_user_embedding();
    }
    // Half the sample from the user's best matches among a few draws, as
    // retrieval would hand them over.
    int32_t best = static_cast<int32_t>(uniform(rng) * n);
    if (s % 2 == 0) {
      float best_dot = -1e30f;
      for (int t = 0; t < 64; ++t) {
        const int32_t r = static_cast<int32_t>(uniform(rng) * n);
        const float dot = simd::Dot(user.embedding, catalog->video_embedding(r), d);
        if (dot > best_dot) {
          best_dot = dot;
          best = r;
        }
      }
    }
    FeatureContext context;
    context.now_ms = o.reference_time_ms;
    context.utc_offset_minutes = static_cast<int32_t>(uniform(rng) * 1440) - 720;
    context.device = static_cast<DeviceType>(static_cast<int>(uniform(rng) * 4));
    const int32_t row[1] = {best};
    features.Build(*catalog, user, context, row, &rows[size_t(s) * width]);
  }
  ModelTensors& t = data.model;
  t.input_mean = Eigen::VectorXf::Zero(width);
  t.input_std = Eigen::VectorXf::Zero(width);
  for (int j = 0; j < width; ++j) {
    double sum = 0, sq = 0;
    for (int s = 0; s < kSample; ++s) sum += rows[size_t(s) * width + j];
    const double mean = sum / kSample;
    for (int s = 0; s < kSample; ++s) {
      const double dev = rows[size_t(s) * width + j] - mean;
      sq += dev * dev;
    }
    t.input_mean[j] = static_cast<float>(mean);
    const double sd = std::sqrt(sq / kSample);
    // A constant column is left unscaled rather than blown up.
    t.input_std[j] =
        static_cast<float>(sd > 1e-4 * std::max(1.0, std::abs(mean)) ? sd : 1.0);
  }

  // The MLP. Each planted feature passes through every hidden layer as a
  // ReLU pair (relu(z) - relu(-z) = z), so the heads see the planted logits;
  // the other units are random and add mild non-linear noise.
  const int effects = static_cast<int>(std::size(kEffects));
  std::vector<int> effect_column(effects);
  {
    const std::vector<std::string> columns = features.ColumnNames();
    for (int e = 0; e < effects; ++e) {
      effect_column[e] = static_cast<int>(
          std::find(columns.begin(), columns.end(), kEffects[e].group) - columns.begin());
      if (effect_column[e] >= width) {
        return absl::InternalError(absl::StrCat("planted effect '", kEffects[e].group,
                                                "' is not a feature column"));
      }
    }
  }
  const int heads = static_cast<int>(SynthObjectives().size());
  int in = width;
  for (size_t layer = 0; layer <= o.hidden.size(); ++layer) {
    const bool output = layer == o.hidden.size();
    const int out = output ? heads : static_cast<int>(o.hidden[layer]);
    RowMatrix w(in, out);
    const float scale = (output ? 0.05f : 0.5f) / std::sqrt(float(in));
    for (int i = 0; i < in; ++i) {
      for (int j = 0; j < out; ++j) w(i, j) = scale * normal(rng);
    }
    Eigen::VectorXf b = Eigen::VectorXf::Zero(out);
    for (int e = 0; e < effects; ++e) {
      // Clear the pass-through units' inputs, then wire them.
      if (!output) {
        w.col(2 * e).setZero();
        w.col(2 * e + 1).setZero();
      } else {
        w.row(2 * e).setZero();
        w.row(2 * e + 1).setZero();
      }
      if (layer == 0) {
        w(effect_column[e], 2 * e) = 1.f;
        w(effect_column[e], 2 * e + 1) = -1.f;
      } else if (!output) {
        w(2 * e, 2 * e) = 1.f;
        w(2 * e + 1, 2 * e) = -1.f;
        w(2 * e, 2 * e + 1) = -1.f;
        w(2 * e + 1, 2 * e + 1) = 1.f;
      } else {
        for (int h = 0; h < heads; ++h) {
          w(2 * e, h) = kEffects[e].coef[h];
          w(2 * e + 1, h) = -kEffects[e].coef[h];
        }
      }
    }
    if (output) {
      for (int h = 0; h < heads; ++h) b[h] = kBaseLogit[h];
    }
    t.weights.push_back(std::move(w));
    t.biases.push_back(std::move(b));
    in = out;
  }
  return data;
}

absl::Status WriteSynthBundle(const SynthOptions& options, const std::string& out) {
  const absl::Time start = absl::Now();
  LogInfo("synth: generating %d videos, %d users, dim %d, seed %d", options.videos,
          options.users, options.dim, options.seed);
  ASSIGN_OR_RETURN(SynthData data, Synthesize(options));
  LogInfo("synth: generated in %s; building %s index",
          absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))),
          data.manifest.index().type());
  IndexSpec spec = data.manifest.index();
  ProgressLog progress("synth: index");
  ASSIGN_OR_RETURN(auto index, AnnIndex::Build(data.videos.embeddings.data(),
                                               options.videos, options.dim, &spec,
                                               std::ref(progress), options.threads));
  *data.manifest.mutable_index() = spec;
  // Empty engagement files when the model reads them (no events, as of the
  // data time).
  auto engagement = [&](const std::string& tmp) -> absl::Status {
    if (!options.engagement_features) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto catalog,
                     Catalog::Create(data.manifest, data.videos, data.users, nullptr));
    return EngagementState(*catalog, data.manifest.data_time_ms())
        .Write(tmp, data.videos.ids, data.users.ids, data.manifest.data_time_ms(),
               *FileSystem::Real());
  };
  RETURN_IF_ERROR(WriteBundle(out, data.manifest, data.videos, data.users, data.model,
                              *index, nullptr, *FileSystem::Real(), engagement));
  LogInfo("synth: wrote %s in %s", out,
          absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))));
  return absl::OkStatus();
}

}  // namespace feedrank

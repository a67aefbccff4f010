#include "ranking/features.h"

#include <algorithm>
#include <cmath>

#include "absl/base/attributes.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/simd.h"

namespace feedrank {

enum class FeatureSet::Group {
  kDot,
  kCosine,
  kVideoNorm,
  kUserNorm,
  kLogPopularity,
  kLogAgeHours,
  kLogDuration,
  kDurationUnknown,
  kLogCreatorVideos,
  kLogCreatorPopularity,
  kUserKnown,
  kLogUserActivity,
  kHourOfDay,
  kDevice,
  kProduct,
  kTrending,
  kHistory,
};

namespace {

struct GroupDef {
  const char* name;
  int width;  // -1: the embedding dimension
};

constexpr GroupDef kGroups[] = {
    {"dot", 1},
    {"cosine", 1},
    {"video_norm", 1},
    {"user_norm", 1},
    {"log_popularity", 1},
    {"log_age_hours", 1},
    {"log_duration", 1},
    {"duration_unknown", 1},
    {"log_creator_videos", 1},
    {"log_creator_popularity", 1},
    {"user_known", 1},
    {"log_user_activity", 1},
    {"hour_of_day", 2},
    {"device", 4},
    {"product", -1},
    {"trending", kTrendColumns},
    {"history", 3},
};

constexpr double kPi = 3.14159265358979323846;

}  // namespace

UserQuery ColdStartUser(const Catalog& catalog) {
  return UserQuery{catalog.mean_user_embedding(), false, 0.f};
}

UserQuery LookUpUser(const Catalog& catalog, uint64_t user_id) {
  if (auto row = catalog.UserRow(user_id)) {
    return UserQuery{catalog.user_embedding(*row), true, catalog.user_activity(*row)};
  }
  return ColdStartUser(catalog);
}

UserQuery LookUpUser(const CatalogView& view, uint64_t user_id) {
  UserQuery user;
  if (view.FindUser(user_id, &user.embedding, &user.activity)) {
    user.known = true;
    return user;
  }
  return ColdStartUser(view.base());
}

void AddHistory(const CatalogView& view, const EngagementState* engagement,
                uint64_t user_id, int64_t now_ms, UserQuery* user,
                std::vector<float>* buffer) {
  buffer->resize(view.dim());
  const EngagementState::Reader reader(engagement, now_ms);
  user->history_count = reader.HistoryMean(view, user_id, buffer->data());
  user->history = buffer->data();
}

std::vector<std::string> FeatureSet::AllGroups() {
  std::vector<std::string> names;
  for (const GroupDef& def : kGroups) names.push_back(def.name);
  return names;
}

absl::StatusOr<FeatureSet> FeatureSet::Create(const std::vector<std::string>& groups,
                                              int dim) {
  FeatureSet set;
  set.dim_ = dim;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& name : groups) {
    int index = -1;
    for (int i = 0; i < int(std::size(kGroups)); ++i) {
      if (name == kGroups[i].name) index = i;
    }
    if (index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.features: unknown feature group '", name,
                       "'; this build knows ", absl::StrJoin(AllGroups(), ", ")));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.features: group '", name, "' is listed twice"));
    }
    const int width = kGroups[index].width < 0 ? dim : kGroups[index].width;
    set.entries_.push_back({static_cast<Group>(index), width});
    set.names_.push_back(name);
    set.width_ += width;
  }
  if (set.entries_.empty()) {
    return absl::InvalidArgumentError("model.features is empty");
  }
  return set;
}

std::vector<std::string> FeatureSet::ColumnNames() const {
  std::vector<std::string> columns;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].width == 1) {
      columns.push_back(names_[i]);
    } else {
      for (int j = 0; j < entries_[i].width; ++j) {
        columns.push_back(absl::StrCat(names_[i], "[", j, "]"));
      }
    }
  }
  return columns;
}

// The request-independent part of a row's features: the one definition
// for the precomputed table and for rows computed on the fly (a view's
// delta, a set without a table).
FeatureSet::RowStatics FeatureSet::StaticsOf(const CatalogView& view, int32_t row) {
  return RowStatics{view.upload_time_ms(row), std::log1p(view.popularity(row)),
                    static_cast<float>(std::log1p(double(view.duration_ms(row)) / 1e3)),
                    std::log1p(view.creator_videos(row)),
                    std::log1p(view.creator_popularity(row))};
}

void FeatureSet::AttachCatalog(const Catalog& catalog) {
  const CatalogView view = CatalogView::Borrow(catalog);
  auto table = std::make_shared<std::vector<RowStatics>>(catalog.num_videos());
  for (int32_t row = 0; row < catalog.num_videos(); ++row) {
    (*table)[row] = StaticsOf(view, row);
  }
  statics_ = std::move(table);
  statics_of_ = &catalog;
}

bool FeatureSet::uses_engagement() const {
  for (const Entry& entry : entries_) {
    if (entry.group == Group::kTrending || entry.group == Group::kHistory) return true;
  }
  return false;
}

void FeatureSet::Build(const CatalogView& catalog, const UserQuery& user,
                       const FeatureContext& context, const EngagementState* engagement,
                       absl::Span<const int32_t> rows, float* out) const {
  const size_t d = dim_;
  const float user_norm = std::sqrt(simd::Dot(user.embedding, user.embedding, d));
  const bool has_history = user.history_count > 0 && user.history != nullptr;
  const float history_norm =
      has_history ? std::sqrt(simd::Dot(user.history, user.history, d)) : 0.f;
  const float log_history = std::log1p(float(user.history_count));
  // Holds the state's shared lock for the whole batch (none without it).
  const EngagementState::Reader trends(uses_engagement() ? engagement : nullptr,
                                       context.now_ms);
  // Local hour, as a point on the unit circle so 23:00 is near 00:00.
  const int64_t local_minutes =
      context.now_ms / 60000 + int64_t{context.utc_offset_minutes};
  const double day_fraction = double(((local_minutes % 1440) + 1440) % 1440) / 1440.0;
  const float hour_sin = static_cast<float>(std::sin(2 * kPi * day_fraction));
  const float hour_cos = static_cast<float>(std::cos(2 * kPi * day_fraction));

  // The rows are scattered over the catalogue, so each one's reads miss the
  // cache: start loading a row's data kAhead rows before it is built, and
  // its creator's (an index read from the row) half as far ahead. With the
  // precomputed table, a row is its embedding and one record.
  constexpr size_t kAhead = 16;
  const bool trending = trends.active();
  const RowStatics* statics =
      statics_ != nullptr && &catalog.base() == statics_of_ ? statics_->data() : nullptr;
  const size_t n = rows.size();
  auto prefetch_row = [&](int32_t row) ABSL_ATTRIBUTE_ALWAYS_INLINE {
    if (statics != nullptr && !catalog.in_delta(row)) {
      catalog.PrefetchEmbedding(row);
      __builtin_prefetch(&statics[row]);
    } else {
      catalog.PrefetchVideo(row);
    }
  };
  auto prefetch_late = [&](int32_t row) ABSL_ATTRIBUTE_ALWAYS_INLINE {
    if (statics == nullptr || catalog.in_delta(row)) catalog.PrefetchCreator(row);
    if (trending) trends.PrefetchTrending(catalog, row);
  };
  for (size_t r = 0; r < std::min(n, kAhead); ++r) prefetch_row(rows[r]);
  for (size_t r = 0; r < std::min(n, kAhead / 2); ++r) prefetch_late(rows[r]);
  for (size_t r = 0; r < n; ++r) {
    if (r + kAhead < n) prefetch_row(rows[r + kAhead]);
    if (r + kAhead / 2 < n) prefetch_late(rows[r + kAhead / 2]);
    const int32_t row = rows[r];
    const float* v = catalog.video_embedding(row);
    const RowStatics st = statics != nullptr && !catalog.in_delta(row)
                              ? statics[row]
                              : StaticsOf(catalog, row);
    float* x = out + r * width_;
    // Computed lazily: not every model uses them.
    float dot = 0, video_norm = -1;
    bool have_dot = false;
    auto get_dot = [&] {
      if (!have_dot) {
        dot = simd::Dot(user.embedding, v, d);
        have_dot = true;
      }
      return dot;
    };
    auto get_video_norm = [&] {
      if (video_norm < 0) video_norm = std::sqrt(simd::Dot(v, v, d));
      return video_norm;
    };
    for (const Entry& entry : entries_) {
      switch (entry.group) {
        case Group::kDot:
          *x++ = get_dot();
          break;
        case Group::kCosine: {
          const float denom = user_norm * get_video_norm();
          *x++ = denom > 0 ? get_dot() / denom : 0.f;
          break;
        }
        case Group::kVideoNorm:
          *x++ = get_video_norm();
          break;
        case Group::kUserNorm:
          *x++ = user_norm;
          break;
        case Group::kLogPopularity:
          *x++ = st.log_popularity;
          break;
        case Group::kLogAgeHours: {
          const int64_t age_ms = std::max<int64_t>(0, context.now_ms - st.upload_time_ms);
          *x++ = static_cast<float>(std::log1p(double(age_ms) / 3.6e6));
          break;
        }
        case Group::kLogDuration:
          *x++ = st.log_duration;
          break;
        case Group::kDurationUnknown:
          *x++ = st.log_duration == 0.f ? 1.f : 0.f;
          break;
        case Group::kLogCreatorVideos:
          *x++ = st.log_creator_videos;
          break;
        case Group::kLogCreatorPopularity:
          *x++ = st.log_creator_popularity;
          break;
        case Group::kUserKnown:
          *x++ = user.known ? 1.f : 0.f;
          break;
        case Group::kLogUserActivity:
          *x++ = std::log1p(user.activity);
          break;
        case Group::kHourOfDay:
          *x++ = hour_sin;
          *x++ = hour_cos;
          break;
        case Group::kDevice:
          for (int j = 0; j < 4; ++j) {
            *x++ = static_cast<int>(context.device) == j ? 1.f : 0.f;
          }
          break;
        case Group::kProduct:
          for (size_t j = 0; j < d; ++j) *x++ = user.embedding[j] * v[j];
          break;
        case Group::kTrending:
          trends.Trending(catalog, row, x);
          for (int j = 0; j < kTrendColumns; ++j) x[j] = std::log1p(x[j]);
          x += kTrendColumns;
          break;
        case Group::kHistory: {
          const float hdot = has_history ? simd::Dot(user.history, v, d) : 0.f;
          const float denom = history_norm * get_video_norm();
          *x++ = hdot;
          *x++ = denom > 0 ? hdot / denom : 0.f;
          *x++ = log_history;
          break;
        }
      }
    }
  }
}

}  // namespace feedrank

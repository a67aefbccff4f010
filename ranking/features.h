// FeatureSet: the model's input row for one (user, video, context), computed
// by this one implementation for serving, training and replay, so there is
// no train/serve skew. A bundle's manifest lists the feature groups its model
// was trained on (model.features), in input order; a group this build does
// not know refuses the bundle.
//
// Groups (width 1 unless noted):
//   dot                  user . video (the retrieval score)
//   cosine               dot / (|user| |video|), 0 when a norm is 0
//   video_norm, user_norm
//   log_popularity       log1p(popularity)
//   log_age_hours        log1p(max(0, now - upload) in hours)
//   log_duration         log1p(duration in seconds); 0 when unknown
//   duration_unknown     1 when the duration is unknown (0 ms)
//   log_creator_videos   log1p(videos by the creator in the catalogue)
//   log_creator_popularity
//                        (catalogue-wide values: embeddings/catalog.h rules)
//   user_known           1 for a user with an embedding, 0 on cold start
//   log_user_activity    log1p(the user's training interactions)
//   hour_of_day (2)      sin and cos of the client's local hour
//   device (4)           one-hot: unspecified, android, ios, web
//   product (dim)        user * video, element-wise
//   trending (6)         log1p of the video's decayed interaction counts at
//                        half-lives 1, 6 and 24 h, then of its positives
//                        (ranking/engagement.h), as of the request time
//   history (3)          the user's recent history (ranking/engagement.h):
//                        dot and cosine of its recency-weighted mean
//                        embedding with the video, log1p(its length); all 0
//                        for a user without one
//
// Thread-safety: immutable; Build may run concurrently.
#ifndef FEEDRANK_RANKING_FEATURES_H_
#define FEEDRANK_RANKING_FEATURES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "embeddings/catalog.h"
#include "embeddings/catalog_view.h"
#include "ranking/engagement.h"

namespace feedrank {

enum class DeviceType { kUnspecified = 0, kAndroid = 1, kIos = 2, kWeb = 3 };

// The viewer as the features see it.
struct UserQuery {
  // Embedding (size dim): the user's, or the mean user's on cold start.
  const float* embedding = nullptr;
  bool known = false;
  float activity = 0;
  // Recency-weighted mean embedding of the user's history (size dim), and
  // how many videos it holds (0: no history; `history` may then be null).
  const float* history = nullptr;
  int history_count = 0;
};

// The request's context.
struct FeatureContext {
  // Time the feed is shown, Unix milliseconds.
  int64_t now_ms = 0;
  // Minutes east of UTC, for the local hour.
  int32_t utc_offset_minutes = 0;
  DeviceType device = DeviceType::kUnspecified;
};

// The viewer `user_id` as serving sees them: their embedding and activity
// when the catalogue has them, else the cold-start path (the mean user
// embedding, known = false, activity 0). Training and evaluation use this
// too, so both paths agree on who is cold.
UserQuery LookUpUser(const Catalog& catalog, uint64_t user_id);
// The same over a view: a user the live catalogue updated (or added) is
// found with their fresh embedding.
UserQuery LookUpUser(const CatalogView& view, uint64_t user_id);

// The cold-start view, whoever the user is.
UserQuery ColdStartUser(const Catalog& catalog);

// Adds the user's history as of `now_ms` from `engagement` (may be null: no
// history) to `user`: its mean goes into `*buffer` (resized to view.dim()),
// which must outlive the query. What serving, training and replay all call.
void AddHistory(const CatalogView& view, const EngagementState* engagement,
                uint64_t user_id, int64_t now_ms, UserQuery* user,
                std::vector<float>* buffer);

class FeatureSet {
 public:
  // Every group this build computes, in a canonical order.
  static std::vector<std::string> AllGroups();

  // Parses the manifest's group list. Errors: InvalidArgument naming an
  // unknown or repeated group.
  static absl::StatusOr<FeatureSet> Create(const std::vector<std::string>& groups,
                                           int dim);

  // Total input width.
  int width() const { return width_; }
  // Name of every input column, e.g. "dot", "hour_of_day[1]", "product[5]".
  std::vector<std::string> ColumnNames() const;

  // Writes one row per element of `rows` (rows of `view`) into `out` (size
  // rows.size() * width(), row-major). `engagement` (may be null: counts 0)
  // feeds the trending group, as of context.now_ms.
  void Build(const CatalogView& view, const UserQuery& user,
             const FeatureContext& context, const EngagementState* engagement,
             absl::Span<const int32_t> rows, float* out) const;
  void Build(const CatalogView& view, const UserQuery& user,
             const FeatureContext& context, absl::Span<const int32_t> rows,
             float* out) const {
    Build(view, user, context, nullptr, rows, out);
  }
  // The same over a catalogue alone (offline tools).
  void Build(const Catalog& catalog, const UserQuery& user, const FeatureContext& context,
             const EngagementState* engagement, absl::Span<const int32_t> rows,
             float* out) const {
    Build(CatalogView::Borrow(catalog), user, context, engagement, rows, out);
  }
  void Build(const Catalog& catalog, const UserQuery& user, const FeatureContext& context,
             absl::Span<const int32_t> rows, float* out) const {
    Build(CatalogView::Borrow(catalog), user, context, nullptr, rows, out);
  }

  // True when the set has the trending or history group (the bundle must
  // then carry an engagement state).
  bool uses_engagement() const;

  // Precomputes, for every row of `catalog`, what its columns contribute
  // that does not depend on the request (the upload time, the logs of
  // popularity, duration and creator statistics), 24 bytes a row: Build
  // then reads one record per base row of a view over `catalog` instead of
  // six scattered columns, and skips four log1p calls. The values are the
  // same bits as computed on the fly. `catalog` must outlive this set and
  // its copies (they share the table). Not thread-safe with Build: call it
  // before the set is shared.
  void AttachCatalog(const Catalog& catalog);

 private:
  enum class Group;
  struct Entry {
    Group group;
    int width;
  };
  struct RowStatics {
    int64_t upload_time_ms;
    float log_popularity;
    // 0 exactly when the duration is unknown (0 ms; negative durations are
    // refused at load and upsert).
    float log_duration;
    float log_creator_videos;
    float log_creator_popularity;
  };
  static_assert(sizeof(RowStatics) == 24);
  static RowStatics StaticsOf(const CatalogView& view, int32_t row);
  std::vector<Entry> entries_;
  std::vector<std::string> names_;
  std::shared_ptr<const std::vector<RowStatics>> statics_;
  const Catalog* statics_of_ = nullptr;
  int width_ = 0;
  int dim_ = 0;
};

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_FEATURES_H_

// CatalogView: what one request ranks against. An immutable, versioned
// view made of
//   - the base Catalog of a bundle (with its ANN index),
//   - a delta: videos added or changed since the base was built, searched by
//     exact scan next to the base index (empty until live updates exist),
//     held as a few immutable segments (oldest first) that views share, so
//     a live batch adds a small segment instead of copying the delta;
//   - tombstones: base rows that are deleted, or replaced by a delta video,
//     and delta rows replaced by a newer one or deleted;
//   - a user delta: user embeddings newer than the base's, also in segments.
//
// Rows of a view: [0, base.num_videos()) are the base's rows, then the
// delta segments' in order, so one MarkTable covers them all. An id's
// latest row is in the newest segment that holds it. A tombstoned row is never
// returned: not by Search, not by the popular or fresh lists, not by
// VideoRow. Catalogue-wide values follow the rules in embeddings/catalog.h;
// a delta video takes its creator's base statistics, or (1 video, its own
// popularity) for a creator the base does not know.
//
// A change to the catalogue makes a new view (read-copy-update): requests
// hold the view they started with, so they never see half an update.
//
// Thread-safety: immutable; share as shared_ptr<const CatalogView>. Search
// needs a SearchScratch per thread.
#ifndef FEEDRANK_EMBEDDINGS_CATALOG_VIEW_H_
#define FEEDRANK_EMBEDDINGS_CATALOG_VIEW_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "embeddings/ann_index.h"
#include "embeddings/catalog.h"

namespace feedrank {

// Videos added or changed after a base catalogue was built. Immutable.
class CatalogDelta {
 public:
  // Validates `videos` (column lengths, dim, finite non-zero embeddings,
  // unique ids, non-negative metadata) and takes them; creator statistics
  // come from `base` by the rule above. Errors: InvalidArgument naming the
  // video id and the problem.
  static absl::StatusOr<std::shared_ptr<const CatalogDelta>> Create(const Catalog& base,
                                                                    VideoColumns videos);
  // `older`'s rows followed by `newer`'s, as one segment (rows keep their
  // order, so view rows do not move). An id of `newer` that `older` holds
  // takes its `newer` row; the old row stays (a view tombstones it). Costs
  // a copy of both and a merge of their orders, no sort and no re-check.
  // REQUIRES: both made over the same base.
  static std::shared_ptr<const CatalogDelta> Merge(const CatalogDelta& older,
                                                   const CatalogDelta& newer);

  // Rows, including rows a Merge moved an id away from.
  int32_t size() const { return static_cast<int32_t>(videos_.ids.size()); }
  int dim() const { return dim_; }
  // Ids held (each at its latest row).
  int32_t num_ids() const { return static_cast<int32_t>(rows_.size()); }
  const VideoColumns& videos() const { return videos_; }
  // The latest row of `id`.
  std::optional<int32_t> Row(uint64_t id) const;
  float creator_videos(int32_t row) const { return creator_videos_[row]; }
  float creator_popularity(int32_t row) const { return creator_popularity_[row]; }
  // Delta rows in the popular / fresh order of embeddings/catalog.h.
  const std::vector<int32_t>& popular_rows() const { return popular_; }
  const std::vector<int32_t>& fresh_rows() const { return fresh_; }

 private:
  CatalogDelta() = default;

  int dim_ = 0;
  VideoColumns videos_;
  absl::flat_hash_map<uint64_t, int32_t> rows_;
  std::vector<float> creator_videos_;
  std::vector<float> creator_popularity_;
  std::vector<int32_t> popular_;
  std::vector<int32_t> fresh_;
};

// Users whose embedding changed or who are new since a base catalogue was
// built (a user tower's fresh output). Immutable once made.
struct UserDelta {
  int dim = 0;
  absl::flat_hash_map<uint64_t, int32_t> rows;
  std::vector<float> embeddings;  // rows.size() * dim
  std::vector<float> activity;
  int32_t size() const { return static_cast<int32_t>(activity.size()); }
  // `older` with `newer`'s users added or overwritten, as one segment.
  static std::shared_ptr<const UserDelta> Merge(const UserDelta& older,
                                                const UserDelta& newer);
};

// The segments of a view's delta, oldest first.
using DeltaSegments = std::vector<std::shared_ptr<const CatalogDelta>>;
using UserSegments = std::vector<std::shared_ptr<const UserDelta>>;

class CatalogView {
 public:
  // The most delta segments a view holds (LiveCatalog merges them so that
  // there are at most log2 of the delta's rows).
  static constexpr size_t kMaxSegments = 64;

  // The base alone: no delta, no tombstones.
  static std::shared_ptr<const CatalogView> Of(std::shared_ptr<const Catalog> base,
                                               uint64_t version = 0);
  // A view of a catalogue the caller keeps alive for the view's lifetime
  // (offline tools that hold a Catalog by value or unique_ptr).
  static CatalogView Borrow(const Catalog& base);

  // `delta`, `tombstones` and `users` may be null (none). Every base video
  // the delta replaces, and every delta row whose id has a newer row, must
  // be tombstoned; tombstones must cover rows of the view only; `users`
  // must have the base's dimension. Errors: InvalidArgument naming the
  // offending id.
  static absl::StatusOr<std::shared_ptr<const CatalogView>> Create(
      std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
      std::shared_ptr<const UserDelta> users = nullptr);
  // The same over delta segments (null or empty segments are dropped).
  static absl::StatusOr<std::shared_ptr<const CatalogView>> Create(
      std::shared_ptr<const Catalog> base, DeltaSegments delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
      UserSegments users = {});
  // Create without the per-video consistency checks (O(delta) lookups), for
  // a caller that keeps them by construction (LiveCatalog checks each
  // batch). Sizes are still checked.
  static absl::StatusOr<std::shared_ptr<const CatalogView>> CreateTrusted(
      std::shared_ptr<const Catalog> base, DeltaSegments delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
      UserSegments users = {});

  // Increases with every change of the catalogue that serves requests.
  uint64_t version() const { return version_; }
  const Catalog& base() const { return *base_; }
  const RowBitmap* tombstones() const { return tombstones_.get(); }
  // The delta's segments, oldest first (empty: no delta).
  const DeltaSegments& delta_segments() const { return segments_; }
  const UserSegments& user_segments() const { return users_; }

  // The user `id`: the newest delta embedding and activity it has, else
  // the base's. False for a user neither knows (cold start).
  bool FindUser(uint64_t id, const float** embedding, float* activity) const {
    if (FindDeltaUser(id, embedding, activity)) return true;
    if (auto row = base_->UserRow(id)) {
      *embedding = base_->user_embedding(*row);
      *activity = base_->user_activity(*row);
      return true;
    }
    return false;
  }
  // The user delta's part of FindUser.
  bool FindDeltaUser(uint64_t id, const float** embedding, float* activity) const {
    for (auto it = users_.rbegin(); it != users_.rend(); ++it) {
      const UserDelta& u = **it;
      if (auto found = u.rows.find(id); found != u.rows.end()) {
        *embedding = &u.embeddings[size_t(found->second) * u.dim];
        *activity = u.activity[found->second];
        return true;
      }
    }
    return false;
  }
  // Ids of the user delta, ascending, each once.
  std::vector<uint64_t> DeltaUserIds() const;
  int dim() const { return base_->dim(); }

  const std::shared_ptr<const RowBitmap>& shared_tombstones() const {
    return tombstones_;
  }

  // Size of the row space (base rows + delta rows), tombstoned rows included.
  int32_t num_rows() const { return base_rows_ + delta_rows_; }
  // Videos that can be served.
  int32_t num_live_videos() const;
  bool live(int32_t row) const {
    return tombstones_ == nullptr || !tombstones_->Contains(row);
  }
  bool in_delta(int32_t row) const { return row >= base_rows_; }
  // Live row of a video id; nullopt when absent or deleted.
  std::optional<int32_t> VideoRow(uint64_t id) const;

  // Video columns by view row. REQUIRES: 0 <= row < num_rows().
  uint64_t video_id(int32_t row) const {
    if (row < base_rows_) return base_->video_id(row);
    const auto [d, i] = Locate(row);
    return d->videos().ids[i];
  }
  const float* video_embedding(int32_t row) const {
    if (row < base_rows_) return base_->video_embedding(row);
    const auto [d, i] = Locate(row);
    return &d->videos().embeddings[size_t(i) * dim()];
  }
  uint64_t creator_id(int32_t row) const {
    if (row < base_rows_) return base_->creator_id(row);
    const auto [d, i] = Locate(row);
    return d->videos().creator_ids[i];
  }
  int64_t duration_ms(int32_t row) const {
    if (row < base_rows_) return base_->duration_ms(row);
    const auto [d, i] = Locate(row);
    return d->videos().duration_ms[i];
  }
  int64_t upload_time_ms(int32_t row) const {
    if (row < base_rows_) return base_->upload_time_ms(row);
    const auto [d, i] = Locate(row);
    return d->videos().upload_time_ms[i];
  }
  float popularity(int32_t row) const {
    if (row < base_rows_) return base_->popularity(row);
    const auto [d, i] = Locate(row);
    return d->videos().popularity[i];
  }
  float creator_videos(int32_t row) const {
    if (row < base_rows_) return base_->creator_videos(row);
    const auto [d, i] = Locate(row);
    return d->creator_videos(i);
  }
  float creator_popularity(int32_t row) const {
    if (row < base_rows_) return base_->creator_popularity(row);
    const auto [d, i] = Locate(row);
    return d->creator_popularity(i);
  }

  // Prefetch hints for a base row (Catalog::PrefetchVideo, PrefetchCreator);
  // nothing for a delta row.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchVideo(int32_t row) const {
    if (row < base_rows_) base_->PrefetchVideo(row);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchEmbedding(int32_t row) const {
    if (row < base_rows_) base_->PrefetchEmbedding(row);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchCreator(int32_t row) const {
    if (row < base_rows_) base_->PrefetchCreator(row);
  }

  // The k best live rows for `q` that `accept` accepts, best first: the base
  // index (approximate, with its fallback to a scan) and an exact scan of
  // the delta, merged by score. REQUIRES: base().has_index().
  void Search(const float* q, const SearchOptions& options, const RowPredicate& accept,
              SearchScratch* scratch, std::vector<Hit>* out,
              SearchStats* stats = nullptr) const;

  enum class List { kPopular, kFresh };
  // Calls `visit(row)` for live rows in the order of `list` (base and delta
  // merged) until it returns false or the rows run out. At most
  // Catalog::kListLength base rows are visited.
  template <typename Visit>
  void ForEachListed(List list, Visit&& visit) const;

 private:
  CatalogView() = default;
  static absl::StatusOr<std::shared_ptr<const CatalogView>> Make(
      std::shared_ptr<const Catalog> base, DeltaSegments delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version, UserSegments users,
      bool check);
  // The segment of delta row `row` and the row inside it.
  // REQUIRES: base_rows_ <= row < num_rows().
  std::pair<const CatalogDelta*, int32_t> Locate(int32_t row) const {
    const int32_t r = row - base_rows_;
    size_t s = segments_.size() - 1;
    while (starts_[s] > r) --s;  // few segments, the newest most often
    return {segments_[s].get(), r - starts_[s]};
  }
  // True when row a ranks before row b in `list`.
  bool Before(List list, int32_t a, int32_t b) const {
    if (list == List::kPopular) {
      const float pa = popularity(a), pb = popularity(b);
      if (pa != pb) return pa > pb;
    } else {
      const int64_t ta = upload_time_ms(a), tb = upload_time_ms(b);
      if (ta != tb) return ta > tb;
    }
    return video_id(a) < video_id(b);
  }

  const Catalog* base_ = nullptr;
  std::shared_ptr<const Catalog> owned_base_;
  DeltaSegments segments_;
  // starts_[s]: the first delta row (counted from base_rows_) of segment s.
  std::vector<int32_t> starts_;
  std::shared_ptr<const RowBitmap> tombstones_;
  UserSegments users_;
  uint64_t version_ = 0;
  int32_t base_rows_ = 0;
  int32_t delta_rows_ = 0;
};

template <typename Visit>
void CatalogView::ForEachListed(List list, Visit&& visit) const {
  absl::Span<const int32_t> base =
      list == List::kPopular ? base_->popular_rows() : base_->fresh_rows();
  // A cursor per delta segment: a merge of base + segments by `Before`.
  constexpr size_t kMaxCursors = kMaxSegments;
  struct Cursor {
    const std::vector<int32_t>* rows;
    size_t next;
    int32_t offset;
  };
  Cursor cursors[kMaxCursors];
  const size_t n = std::min(segments_.size(), kMaxCursors);
  for (size_t s = 0; s < n; ++s) {
    const CatalogDelta& d = *segments_[s];
    cursors[s] = {list == List::kPopular ? &d.popular_rows() : &d.fresh_rows(), 0,
                  base_rows_ + starts_[s]};
  }
  size_t i = 0;
  while (true) {
    int best = -1;
    int32_t row = 0;
    for (size_t s = 0; s < n; ++s) {
      const Cursor& c = cursors[s];
      if (c.next == c.rows->size()) continue;
      const int32_t r = c.offset + (*c.rows)[c.next];
      if (best < 0 || Before(list, r, row)) {
        best = static_cast<int>(s);
        row = r;
      }
    }
    if (i < base.size() && (best < 0 || Before(list, base[i], row))) {
      row = base[i++];
    } else if (best >= 0) {
      ++cursors[best].next;
    } else {
      return;
    }
    if (!live(row)) continue;
    if (!visit(row)) return;
  }
}

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_CATALOG_VIEW_H_

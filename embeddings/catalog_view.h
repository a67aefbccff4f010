// CatalogView: what one request ranks against. An immutable, versioned
// view made of
//   - the base Catalog of a bundle (with its ANN index),
//   - a delta: videos added or changed since the base was built, searched by
//     exact scan next to the base index (empty until live updates exist),
//   - tombstones: base rows that are deleted, or replaced by a delta video.
//
// Rows of a view: [0, base.num_videos()) are the base's rows, then the
// delta's, so one MarkTable covers both. A tombstoned row is never
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
  // `previous` (may be null) with `added` appended after its rows, checked
  // as Create checks (only `added`: `previous` was checked when made). An id
  // of `added` that `previous` holds moves to its new row; the old row stays
  // (a view must tombstone it). Costs a copy of `previous`'s columns, no
  // sort of them (the popular and fresh orders are merged).
  static absl::StatusOr<std::shared_ptr<const CatalogDelta>> Append(
      const Catalog& base, const CatalogDelta* previous, VideoColumns added);

  // Rows, including rows an Append moved an id away from.
  int32_t size() const { return static_cast<int32_t>(videos_.ids.size()); }
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
};

class CatalogView {
 public:
  // The base alone: no delta, no tombstones.
  static std::shared_ptr<const CatalogView> Of(std::shared_ptr<const Catalog> base,
                                               uint64_t version = 0);
  // A view of a catalogue the caller keeps alive for the view's lifetime
  // (offline tools that hold a Catalog by value or unique_ptr).
  static CatalogView Borrow(const Catalog& base);

  // `delta`, `tombstones` and `users` may be null (none). Every base video
  // the delta replaces, and every delta row an Append moved its id away
  // from, must be tombstoned; tombstones must cover rows of the view only;
  // `users` must have the base's dimension. Errors: InvalidArgument naming
  // the offending id.
  static absl::StatusOr<std::shared_ptr<const CatalogView>> Create(
      std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
      std::shared_ptr<const UserDelta> users = nullptr);
  // Create without the per-video consistency checks (O(delta) lookups), for
  // a caller that keeps them by construction (LiveCatalog checks each
  // batch). Sizes are still checked.
  static absl::StatusOr<std::shared_ptr<const CatalogView>> CreateTrusted(
      std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
      std::shared_ptr<const UserDelta> users = nullptr);

  // Increases with every change of the catalogue that serves requests.
  uint64_t version() const { return version_; }
  const Catalog& base() const { return *base_; }
  const CatalogDelta* delta() const { return delta_.get(); }
  const RowBitmap* tombstones() const { return tombstones_.get(); }
  const UserDelta* user_delta() const { return users_.get(); }
  const std::shared_ptr<const UserDelta>& shared_user_delta() const { return users_; }

  // The user `id`: the delta's embedding and activity when it has them,
  // else the base's. False for a user neither knows (cold start).
  bool FindUser(uint64_t id, const float** embedding, float* activity) const {
    if (users_ != nullptr) {
      if (auto it = users_->rows.find(id); it != users_->rows.end()) {
        *embedding = &users_->embeddings[size_t(it->second) * users_->dim];
        *activity = users_->activity[it->second];
        return true;
      }
    }
    if (auto row = base_->UserRow(id)) {
      *embedding = base_->user_embedding(*row);
      *activity = base_->user_activity(*row);
      return true;
    }
    return false;
  }
  int dim() const { return base_->dim(); }

  const std::shared_ptr<const CatalogDelta>& shared_delta() const { return delta_; }
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
    return row < base_rows_ ? base_->video_id(row)
                            : delta_->videos().ids[row - base_rows_];
  }
  const float* video_embedding(int32_t row) const {
    return row < base_rows_
               ? base_->video_embedding(row)
               : &delta_->videos().embeddings[size_t(row - base_rows_) * dim()];
  }
  uint64_t creator_id(int32_t row) const {
    return row < base_rows_ ? base_->creator_id(row)
                            : delta_->videos().creator_ids[row - base_rows_];
  }
  int64_t duration_ms(int32_t row) const {
    return row < base_rows_ ? base_->duration_ms(row)
                            : delta_->videos().duration_ms[row - base_rows_];
  }
  int64_t upload_time_ms(int32_t row) const {
    return row < base_rows_ ? base_->upload_time_ms(row)
                            : delta_->videos().upload_time_ms[row - base_rows_];
  }
  float popularity(int32_t row) const {
    return row < base_rows_ ? base_->popularity(row)
                            : delta_->videos().popularity[row - base_rows_];
  }
  float creator_videos(int32_t row) const {
    return row < base_rows_ ? base_->creator_videos(row)
                            : delta_->creator_videos(row - base_rows_);
  }
  float creator_popularity(int32_t row) const {
    return row < base_rows_ ? base_->creator_popularity(row)
                            : delta_->creator_popularity(row - base_rows_);
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
      std::shared_ptr<const Catalog> base, std::shared_ptr<const CatalogDelta> delta,
      std::shared_ptr<const RowBitmap> tombstones, uint64_t version,
      std::shared_ptr<const UserDelta> users, bool check);
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
  std::shared_ptr<const CatalogDelta> delta_;
  std::shared_ptr<const RowBitmap> tombstones_;
  std::shared_ptr<const UserDelta> users_;
  uint64_t version_ = 0;
  int32_t base_rows_ = 0;
  int32_t delta_rows_ = 0;
};

template <typename Visit>
void CatalogView::ForEachListed(List list, Visit&& visit) const {
  absl::Span<const int32_t> base =
      list == List::kPopular ? base_->popular_rows() : base_->fresh_rows();
  const std::vector<int32_t>* delta_list =
      delta_ == nullptr
          ? nullptr
          : (list == List::kPopular ? &delta_->popular_rows() : &delta_->fresh_rows());
  const size_t delta_size = delta_list == nullptr ? 0 : delta_list->size();
  size_t i = 0, j = 0;
  while (i < base.size() || j < delta_size) {
    int32_t row;
    if (j == delta_size) {
      row = base[i++];
    } else {
      const int32_t d = base_rows_ + (*delta_list)[j];
      if (i < base.size() && Before(list, base[i], d)) {
        row = base[i++];
      } else {
        row = d;
        ++j;
      }
    }
    if (!live(row)) continue;
    if (!visit(row)) return;
  }
}

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_CATALOG_VIEW_H_

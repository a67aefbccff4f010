// LiveCatalog: a bundle's catalogue with live updates applied — uploads and
// changes (upserts) and takedowns (deletes) — each batch turned into a new
// immutable CatalogView (read-copy-update: requests keep the view they
// started with; a writer never blocks a reader). The durable half (the
// write-ahead log, base/wal.h) and the admin RPCs build on it.
//
// A batch is checked whole before anything is applied: ids unique within
// the batch (across upserts and deletes), embeddings of the catalogue's
// dimension with finite values and a non-zero norm, non-negative metadata,
// at most kMaxBatch items. A bad batch is refused with InvalidArgument
// naming the item, and the catalogue is unchanged. A delete of an id the
// catalogue does not hold is a no-op, counted (ApplyStats::unknown_deletes),
// so that retried takedowns are idempotent. Users (fresh embeddings, or new
// users) must have the dimension, finite values and a finite non-negative
// activity; a user id appears at most once per batch.
//
// Cost: a batch adds a segment to the delta and merges the newest segments
// so that their sizes at least halve from the oldest to the newest (a row
// is copied again only when its segment grows by half: O(batch * log
// delta) amortised, at most log2(delta) + 1 segments for searches to
// visit); user embeddings the same way. The tombstone bitmap is copied
// (one bit per row). Rows a batch replaces or deletes are tombstoned, not
// removed, so the delta only grows until compaction (server/live_updates.h)
// folds it into a new base. docs/BENCHMARKS.md has the cost by delta size.
//
// Thread-safety: Apply, Validate, delta_size and tombstones are for one
// writer thread at a time (the caller serialises them); view() may be
// called from any thread.
#ifndef FEEDRANK_EMBEDDINGS_LIVE_CATALOG_H_
#define FEEDRANK_EMBEDDINGS_LIVE_CATALOG_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "embeddings/catalog_view.h"

namespace feedrank {

struct VideoUpsert {
  uint64_t id = 0;
  std::vector<float> embedding;
  uint64_t creator_id = 0;
  int64_t duration_ms = 0;
  int64_t upload_time_ms = 0;
  float popularity = 0;
};

struct UserUpsert {
  uint64_t id = 0;
  std::vector<float> embedding;
  float activity = 0;
};

struct UpdateBatch {
  std::vector<VideoUpsert> upserts;
  std::vector<uint64_t> deletes;
  std::vector<UserUpsert> users;
};

struct ApplyStats {
  int inserted = 0;  // ids new to the catalogue
  int replaced = 0;  // ids that were in the base or the delta
  int deleted = 0;
  int unknown_deletes = 0;  // no-ops
  int users_inserted = 0;   // user ids new to the catalogue
  int users_replaced = 0;
};

class LiveCatalog {
 public:
  // Items per batch, upserts and deletes together.
  static constexpr int kMaxBatch = 10000;

  // The base alone, at view version `version`.
  LiveCatalog(std::shared_ptr<const Catalog> base, uint64_t version = 0);

  // Checks `batch` whole, then applies it and publishes the next view
  // (version + 1). Errors: InvalidArgument naming the item ("upserts[3] id
  // 42: embedding has 63 values, the catalogue's dimension is 64"); nothing
  // is applied then.
  // `limit` is the most items a batch may hold (a replay of many batches
  // onto a new base passes a larger one).
  absl::StatusOr<std::shared_ptr<const CatalogView>> Apply(const UpdateBatch& batch,
                                                           ApplyStats* stats = nullptr,
                                                           int64_t limit = kMaxBatch);

  // Checks `batch` as Apply would, applying nothing.
  absl::Status Validate(const UpdateBatch& batch, int64_t limit = kMaxBatch) const;

  const std::shared_ptr<const Catalog>& base() const { return base_; }
  uint64_t version() const { return version_; }

  std::shared_ptr<const CatalogView> view() const { return view_.Load(); }
  // Live videos in the delta, and rows tombstoned (deleted, or replaced:
  // a base row by a delta row, or a delta row by a newer one; compaction
  // drops them all).
  int32_t delta_size() const;
  int64_t tombstones() const;
  int32_t delta_users() const { return delta_users_; }

 private:
  std::shared_ptr<const Catalog> base_;
  uint64_t version_;
  // Live (not tombstoned) rows of the view's delta.
  int32_t delta_live_ = 0;
  // Distinct users of the view's user delta.
  int32_t delta_users_ = 0;
  SharedPtrCell<const CatalogView> view_;
};

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_LIVE_CATALOG_H_

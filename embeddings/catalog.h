// Catalog: the videos and users of one bundle (ids, embeddings, metadata)
// and the ANN index over the video embeddings, validated against each other.
// Rows are dense int32 positions; ids are the caller's 64-bit ids. A Catalog
// is the immutable base of a CatalogView (embeddings/catalog_view.h), which
// is what requests rank against.
//
// Catalogue-derived values, and the one rule for each (so that a delta, a
// shard or a replay computes what the whole catalogue would):
//   creator statistics  videos per creator and their summed popularity, over
//                       the whole catalogue. Stored in the bundle
//                       (catalog_stats/) when the bundle holds only part of
//                       the catalogue (a shard); derived from the bundle's
//                       own videos otherwise (DeriveCatalogStats).
//   mean user           the mean of all user embeddings (the cold-start
//                       query); stored with the creator statistics, or
//                       derived the same way.
//   popular, fresh      the best rows by (popularity desc, video id asc) and
//                       (upload time desc, video id asc): a total order on
//                       ids, so lists of disjoint parts merge into the list
//                       of the whole.
//
// Thread-safety: immutable after Create/Load; safe to share across threads.
#ifndef FEEDRANK_EMBEDDINGS_CATALOG_H_
#define FEEDRANK_EMBEDDINGS_CATALOG_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/bundle.pb.h"

namespace feedrank {

// Video columns, row i describing one video. `embeddings`: size n * dim.
struct VideoColumns {
  std::vector<uint64_t> ids;
  std::vector<float> embeddings;
  std::vector<uint64_t> creator_ids;
  // 0 = unknown.
  std::vector<int64_t> duration_ms;
  // Unix milliseconds.
  std::vector<int64_t> upload_time_ms;
  // A non-negative engagement count (views, likes...), as the trainer defines.
  std::vector<float> popularity;
};

// User columns. `embeddings`: size n * dim. `activity`: interactions seen in
// training (0 when unknown).
struct UserColumns {
  std::vector<uint64_t> ids;
  std::vector<float> embeddings;
  std::vector<float> activity;
};

// Catalogue-wide values the features read (see the rules above).
struct CatalogStats {
  // Unique creator ids, and per creator: videos in the catalogue and their
  // summed popularity.
  std::vector<uint64_t> creator_ids;
  std::vector<float> creator_videos;
  std::vector<float> creator_popularity;
  // Mean of all user embeddings (zeros without users), size dim.
  std::vector<float> mean_user_embedding;
};

// The rule: statistics of exactly these videos and users. Creators in order
// of first appearance.
CatalogStats DeriveCatalogStats(const VideoColumns& videos, const UserColumns& users,
                                int dim);

class Catalog {
 public:
  // Length of the precomputed popular and fresh lists.
  static constexpr int kListLength = 1000;

  // Validates the columns against each other and the manifest (counts,
  // shapes, unique ids, value ranges, non-zero video embeddings) and takes
  // them. `index` must hold the video embeddings (checked); it may be null
  // for offline tools that never search. `stats` (may be null: derived from
  // these columns) must cover every creator of `videos` and have `dim`
  // entries of mean user. Errors: InvalidArgument naming the column.
  static absl::StatusOr<std::unique_ptr<Catalog>> Create(
      const BundleManifest& manifest, VideoColumns videos, UserColumns users,
      std::unique_ptr<AnnIndex> index, const CatalogStats* stats = nullptr);

  // Loads the columns, the catalogue statistics when stored, and the index
  // of the bundle in `dir` (file names in embeddings/manifest.h). Errors
  // name the file and the problem.
  static absl::StatusOr<std::unique_ptr<Catalog>> Load(
      const std::string& dir, const BundleManifest& manifest,
      FileSystem& fs = *FileSystem::Real());

  // Reads the video and user columns of the bundle in `dir` (no checks
  // beyond each file's own: dtype, rank, dim columns, NaN/Inf).
  static absl::Status ReadColumns(const std::string& dir, const BundleManifest& manifest,
                                  VideoColumns* videos, UserColumns* users,
                                  FileSystem& fs = *FileSystem::Real());

  // Writes the video and user columns to `dir` as .npy files, and `stats`
  // to `dir`/catalog_stats/ when not null.
  static absl::Status WriteColumns(const std::string& dir, int dim,
                                   const VideoColumns& videos, const UserColumns& users,
                                   const CatalogStats* stats = nullptr,
                                   FileSystem& fs = *FileSystem::Real());

  int dim() const { return dim_; }
  int32_t num_videos() const { return static_cast<int32_t>(videos_.ids.size()); }
  int32_t num_users() const { return static_cast<int32_t>(users_.ids.size()); }
  // Creators in stats(): the range of creator_index().
  int32_t num_creators() const { return static_cast<int32_t>(stats_.creator_ids.size()); }

  // Row of a video or user id; nullopt when absent.
  std::optional<int32_t> VideoRow(uint64_t id) const;
  std::optional<int32_t> UserRow(uint64_t id) const;

  uint64_t video_id(int32_t row) const { return videos_.ids[row]; }
  const float* video_embedding(int32_t row) const {
    return video_vectors_ + static_cast<size_t>(row) * dim_;
  }
  uint64_t creator_id(int32_t row) const { return videos_.creator_ids[row]; }
  // Dense creator number of a video's creator, an index into stats().
  int32_t creator_index(int32_t row) const { return creator_index_[row]; }
  int64_t duration_ms(int32_t row) const { return videos_.duration_ms[row]; }
  int64_t upload_time_ms(int32_t row) const { return videos_.upload_time_ms[row]; }
  float popularity(int32_t row) const { return videos_.popularity[row]; }
  // Videos in the catalogue by this video's creator, and their summed
  // popularity.
  float creator_videos(int32_t row) const {
    return stats_.creator_videos[creator_index_[row]];
  }
  float creator_popularity(int32_t row) const {
    return stats_.creator_popularity[creator_index_[row]];
  }
  // Ask the CPU to start loading what the features read of `row`: its
  // embedding and columns (PrefetchVideo), then, once creator_index(row) is
  // in cache, its creator's statistics (PrefetchCreator). Hints only: they
  // change nothing, and let a loop over scattered rows overlap their cache
  // misses instead of waiting for each in turn. Always inlined: GCC 12
  // judges a function of prefetches alone to have no effect and deletes
  // the calls to it.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchVideo(int32_t row) const {
    PrefetchEmbedding(row);
    __builtin_prefetch(&videos_.duration_ms[row]);
    __builtin_prefetch(&videos_.upload_time_ms[row]);
    __builtin_prefetch(&videos_.popularity[row]);
    __builtin_prefetch(&creator_index_[row]);
  }
  // Only the embedding's cache lines.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchEmbedding(int32_t row) const {
    const char* v = reinterpret_cast<const char*>(video_embedding(row));
    for (size_t off = 0; off < size_t(dim_) * sizeof(float); off += 64) {
      __builtin_prefetch(v + off);
    }
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchCreator(int32_t row) const {
    const int32_t c = creator_index_[row];
    __builtin_prefetch(&stats_.creator_videos[c]);
    __builtin_prefetch(&stats_.creator_popularity[c]);
  }

  uint64_t user_id(int32_t row) const { return users_.ids[row]; }
  const float* user_embedding(int32_t row) const {
    return users_.embeddings.data() + static_cast<size_t>(row) * dim_;
  }
  float user_activity(int32_t row) const { return users_.activity[row]; }
  // Mean of all user embeddings (zeros without users): the cold-start query.
  const float* mean_user_embedding() const { return stats_.mean_user_embedding.data(); }

  // Rows by popularity and by upload time, best first, at most kListLength
  // each; ties break by lower video id (the rules above).
  absl::Span<const int32_t> popular_rows() const { return popular_; }
  absl::Span<const int32_t> fresh_rows() const { return fresh_; }
  // The statistics the features read (stored or derived).
  const CatalogStats& stats() const { return stats_; }
  // Dense number of a creator id in stats(), or nullopt.
  std::optional<int32_t> CreatorIndex(uint64_t creator_id) const;

  // Reads one byte of every memory page of the tables and the index, so
  // the first requests after a load do not pay for first touches (on this
  // machine they cost several milliseconds per request otherwise).
  void TouchMemory() const;

  // REQUIRES: has_index().
  const AnnIndex& index() const { return *index_; }
  bool has_index() const { return index_ != nullptr; }

 private:
  Catalog() = default;
  absl::Status Derive(const CatalogStats* stats);

  int dim_ = 0;
  VideoColumns videos_;
  UserColumns users_;
  std::unique_ptr<AnnIndex> index_;
  // Points into videos_.embeddings, or into the index's own copy when it
  // keeps vectors in row order (the table's copy is then released).
  const float* video_vectors_ = nullptr;
  absl::flat_hash_map<uint64_t, int32_t> video_rows_;
  absl::flat_hash_map<uint64_t, int32_t> user_rows_;
  CatalogStats stats_;
  absl::flat_hash_map<uint64_t, int32_t> creator_rows_;
  std::vector<int32_t> creator_index_;  // per video row, into stats_
  std::vector<int32_t> popular_;
  std::vector<int32_t> fresh_;
};

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_CATALOG_H_

// Catalog: the videos and users of one bundle (ids, embeddings, metadata)
// and the ANN index over the video embeddings, validated against each other.
// Rows are dense int32 positions; ids are the caller's 64-bit ids.
//
// Thread-safety: immutable after Create/Load; safe to share across threads.
#ifndef FEEDRANK_EMBEDDINGS_CATALOG_H_
#define FEEDRANK_EMBEDDINGS_CATALOG_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

class Catalog {
 public:
  // Length of the precomputed popular and fresh lists.
  static constexpr int kListLength = 1000;

  // Validates the columns against each other and the manifest (counts,
  // shapes, unique ids, value ranges) and takes them. `index` must hold the
  // video embeddings (checked) and may be null when `with_index` is false
  // (for offline tools that never search). Errors: InvalidArgument naming
  // the column.
  static absl::StatusOr<std::unique_ptr<Catalog>> Create(
      const BundleManifest& manifest, VideoColumns videos, UserColumns users,
      std::unique_ptr<AnnIndex> index);

  // Loads the columns and the index of the bundle in `dir` (file names in
  // embeddings/manifest.h). Errors name the file and the problem.
  static absl::StatusOr<std::unique_ptr<Catalog>> Load(
      const std::string& dir, const BundleManifest& manifest);

  // Reads the video and user columns of the bundle in `dir` (no checks
  // beyond each file's own: dtype, rank, dim columns, NaN/Inf).
  static absl::Status ReadColumns(const std::string& dir,
                                  const BundleManifest& manifest,
                                  VideoColumns* videos, UserColumns* users);

  // Writes the video and user columns to `dir` as .npy files.
  static absl::Status WriteColumns(const std::string& dir, int dim,
                                   const VideoColumns& videos,
                                   const UserColumns& users);

  int dim() const { return dim_; }
  int32_t num_videos() const { return static_cast<int32_t>(videos_.ids.size()); }
  int32_t num_users() const { return static_cast<int32_t>(users_.ids.size()); }
  int32_t num_creators() const { return num_creators_; }

  // Row of a video or user id; nullopt when absent.
  std::optional<int32_t> VideoRow(uint64_t id) const;
  std::optional<int32_t> UserRow(uint64_t id) const;

  uint64_t video_id(int32_t row) const { return videos_.ids[row]; }
  const float* video_embedding(int32_t row) const {
    return video_vectors_ + static_cast<size_t>(row) * dim_;
  }
  uint64_t creator_id(int32_t row) const { return videos_.creator_ids[row]; }
  // Dense creator number in [0, num_creators()).
  int32_t creator_index(int32_t row) const { return creator_index_[row]; }
  int64_t duration_ms(int32_t row) const { return videos_.duration_ms[row]; }
  int64_t upload_time_ms(int32_t row) const { return videos_.upload_time_ms[row]; }
  float popularity(int32_t row) const { return videos_.popularity[row]; }
  // Videos in the catalogue by this video's creator, and their summed
  // popularity.
  float creator_videos(int32_t row) const {
    return creator_videos_[creator_index_[row]];
  }
  float creator_popularity(int32_t row) const {
    return creator_popularity_[creator_index_[row]];
  }

  uint64_t user_id(int32_t row) const { return users_.ids[row]; }
  const float* user_embedding(int32_t row) const {
    return users_.embeddings.data() + static_cast<size_t>(row) * dim_;
  }
  float user_activity(int32_t row) const { return users_.activity[row]; }
  // Mean of all user embeddings (zeros without users): the cold-start query.
  const float* mean_user_embedding() const { return mean_user_.data(); }

  // Rows by popularity, then by upload time, best first; at most
  // kListLength each. Ties break by lower row.
  absl::Span<const int32_t> popular_rows() const { return popular_; }
  absl::Span<const int32_t> fresh_rows() const { return fresh_; }

  // Reads one byte of every memory page of the tables and the index, so
  // the first requests after a load do not pay for first touches (on this
  // machine they cost several milliseconds per request otherwise).
  void TouchMemory() const;

  // REQUIRES: the catalog was created with an index.
  const AnnIndex& index() const { return *index_; }
  bool has_index() const { return index_ != nullptr; }

 private:
  Catalog() = default;
  void Derive();

  int dim_ = 0;
  VideoColumns videos_;
  UserColumns users_;
  std::unique_ptr<AnnIndex> index_;
  // Points into videos_.embeddings, or into the index's own copy when it
  // keeps vectors in row order (the table's copy is then released).
  const float* video_vectors_ = nullptr;
  absl::flat_hash_map<uint64_t, int32_t> video_rows_;
  absl::flat_hash_map<uint64_t, int32_t> user_rows_;
  std::vector<int32_t> creator_index_;
  std::vector<float> creator_videos_;
  std::vector<float> creator_popularity_;
  int32_t num_creators_ = 0;
  std::vector<float> mean_user_;
  std::vector<int32_t> popular_;
  std::vector<int32_t> fresh_;
};

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_CATALOG_H_

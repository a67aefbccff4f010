// The bundle directory layout and its manifest (manifest.json). The file
// names below are the bundle format; docs/BUNDLE_FORMAT.md describes each.
#ifndef FEEDRANK_EMBEDDINGS_MANIFEST_H_
#define FEEDRANK_EMBEDDINGS_MANIFEST_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "feedrank/v1/bundle.pb.h"

namespace feedrank {

using v1::BundleManifest;
using v1::IndexSpec;
using v1::ModelSpec;

inline constexpr int kBundleFormatVersion = 1;

inline constexpr char kManifestFile[] = "manifest.json";
inline constexpr char kVideoIdsFile[] = "video_ids.npy";
inline constexpr char kVideoEmbeddingsFile[] = "video_embeddings.npy";
inline constexpr char kVideoCreatorIdsFile[] = "video_creator_ids.npy";
inline constexpr char kVideoDurationFile[] = "video_duration_ms.npy";
inline constexpr char kVideoUploadTimeFile[] = "video_upload_time_ms.npy";
inline constexpr char kVideoPopularityFile[] = "video_popularity.npy";
inline constexpr char kUserIdsFile[] = "user_ids.npy";
inline constexpr char kUserEmbeddingsFile[] = "user_embeddings.npy";
inline constexpr char kUserActivityFile[] = "user_activity.npy";
inline constexpr char kIndexFile[] = "index.faiss";
inline constexpr char kModelDir[] = "model";
// Optional: catalogue-wide statistics of a bundle that holds part of the
// catalogue (see embeddings/catalog.h).
inline constexpr char kCatalogStatsDir[] = "catalog_stats";
inline constexpr char kCreatorIdsFile[] = "creator_ids.npy";
inline constexpr char kCreatorVideosFile[] = "creator_videos.npy";
inline constexpr char kCreatorPopularityFile[] = "creator_popularity.npy";
inline constexpr char kMeanUserEmbeddingFile[] = "mean_user_embedding.npy";

// Joins a bundle directory and a file name.
std::string BundlePath(const std::string& dir, const std::string& file);

// Reads and validates `dir`/manifest.json: known fields only, format version
// 1, a version string, dim > 0, a known index type with parameters in range
// (ValidateIndexSpec), unique non-empty objective names, at least one
// feature group. Errors: those of FileSystem::OpenForRead (NotFound when
// there is no manifest, ...), InvalidArgument naming the field.
absl::StatusOr<BundleManifest> ReadManifest(const std::string& dir,
                                            FileSystem& fs = *FileSystem::Real());

// Checks the fields ReadManifest checks. The error names the field.
absl::Status ValidateManifest(const BundleManifest& manifest);

// Index parameters, 0 meaning "the default" for each:
//   type         hnsw | ivf | flat
//   hnsw_m       [2, 256]          hnsw_ef_construction  [1, 20000]
//   beam_width   [1, 20000]        (the same bound as params.ann_beam_width)
//   ivf_nlist    [1, 2^24]         ivf_nprobe            [1, ivf_nlist]
// Errors: InvalidArgument naming the field, e.g. "index.beam_width:
// 2147483647 is outside [1, 20000]".
absl::Status ValidateIndexSpec(const IndexSpec& spec);

// Writes `manifest` as `dir`/manifest.json (pretty-printed JSON).
absl::Status WriteManifest(const std::string& dir, const BundleManifest& manifest,
                           FileSystem& fs = *FileSystem::Real());

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_MANIFEST_H_

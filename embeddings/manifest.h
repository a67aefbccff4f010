// The bundle directory layout and its manifest (manifest.json). The file
// names below are the bundle format; docs/BUNDLE_FORMAT.md describes each.
#ifndef FEEDRANK_EMBEDDINGS_MANIFEST_H_
#define FEEDRANK_EMBEDDINGS_MANIFEST_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "feedrank/v1/bundle.pb.h"

namespace feedrank {

using v1::BundleManifest;
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

// Joins a bundle directory and a file name.
std::string BundlePath(const std::string& dir, const std::string& file);

// Reads and validates `dir`/manifest.json: known fields only, format version
// 1, a version string, dim > 0, a known index type, unique non-empty
// objective names, at least one feature group.
// Errors: NotFound (no manifest), InvalidArgument naming the field.
absl::StatusOr<BundleManifest> ReadManifest(const std::string& dir);

// Checks the fields ReadManifest checks. The error names the field.
absl::Status ValidateManifest(const BundleManifest& manifest);

// Writes `manifest` as `dir`/manifest.json (pretty-printed JSON).
absl::Status WriteManifest(const std::string& dir, const BundleManifest& manifest);

}  // namespace feedrank

#endif  // FEEDRANK_EMBEDDINGS_MANIFEST_H_

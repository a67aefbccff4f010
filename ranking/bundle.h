// Bundle: everything one ranking needs from offline training, loaded from a
// bundle directory and validated as a whole: the manifest, the catalog
// (videos, users, ANN index) and the scoring model with its feature set.
// A bundle that fails any check is refused whole.
//
// Thread-safety: immutable once loaded; shared as shared_ptr<const Bundle>.
#ifndef FEEDRANK_RANKING_BUNDLE_H_
#define FEEDRANK_RANKING_BUNDLE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "embeddings/catalog.h"
#include "embeddings/catalog_view.h"
#include "feedrank/v1/bundle.pb.h"
#include "ranking/engagement.h"
#include "ranking/features.h"
#include "ranking/model.h"

namespace feedrank {

struct Bundle {
  std::string dir;
  BundleManifest manifest;
  std::shared_ptr<const Catalog> catalog;
  // The catalogue alone (no delta, no tombstones), version 0.
  std::shared_ptr<const CatalogView> view;
  FeatureSet features;
  std::unique_ptr<ScoringModel> model;
  // Recent engagement (ranking/engagement.h) as of the manifest's
  // data_time_ms, kept live by the server's RecordEvents: never null
  // (empty for a bundle without the files). Internally synchronised, so a
  // const Bundle records events into it.
  std::shared_ptr<EngagementState> engagement;
  // Bytes of the bundle directory's files when it was loaded: what it holds
  // in memory, to within the tables derived at load (0 for MakeBundle).
  int64_t file_bytes = 0;
};

// The time a bundle's engagement files are as of: engagement_time_ms, else
// data_time_ms.
inline int64_t EngagementTime(const BundleManifest& m) {
  return m.engagement_time_ms() != 0 ? m.engagement_time_ms() : m.data_time_ms();
}

// The directory that holds `path` ("." for a bare name or an empty path).
std::string ParentDir(const std::string& path);

// The directory a RankingConfig.bundles entry names: `dir` itself when it
// is absolute, else `base`/`dir` (the server's base is the parent directory
// of --bundle or --bundle-root; replay's that of --bundle). Lexically
// normalised ("a/./b/../c" is "a/c"). With `confine`, an error
// (InvalidArgument naming `dir`) when the result is not inside `base`: what
// configs applied through the admin RPC must keep to.
absl::StatusOr<std::string> ResolveBundleRefDir(const std::string& base,
                                                const std::string& dir, bool confine);

// The confinement of ResolveBundleRefDir with symbolic links followed: an
// error (InvalidArgument naming both real paths) when `dir` (an existing
// directory, already lexically inside `base`) is, or sits under, a link that
// leads outside `base`. Errors of resolving either path otherwise.
absl::Status CheckRealPathInside(const std::string& base, const std::string& dir,
                                 FileSystem& fs);

// Loads and validates the bundle in `dir` through `fs`. Errors name the file
// and the problem (see embeddings/catalog.h, ranking/model.h); Cancelled
// when `fs` is an InterruptibleFileSystem that was stopped.
absl::StatusOr<std::shared_ptr<const Bundle>> LoadBundle(
    const std::string& dir, FileSystem& fs = *FileSystem::Real());

// Assembles a bundle from parts already in memory (validated the same way).
absl::StatusOr<std::shared_ptr<const Bundle>> MakeBundle(const BundleManifest& manifest,
                                                         std::unique_ptr<Catalog> catalog,
                                                         ModelTensors model);

// Writes a complete bundle into `dir`, which must not exist yet: the files go
// to a temporary sibling directory that is renamed to `dir` at the end, so a
// reader never sees half a bundle. Validates the parts first (as LoadBundle
// would) and writes nothing when they are inconsistent. `stats` (may be
// null) is written for a bundle that holds part of a catalogue.
// `extra` (may be null) writes further files into the temporary directory
// it is given before the rename (a compacted bundle's live updates).
// Errors: AlreadyExists when `dir` exists; InvalidArgument for inconsistent
// parts; those of `fs` or `extra` otherwise.
// Missing parent directories of `dir` are created.
absl::Status WriteBundle(
    const std::string& dir, const BundleManifest& manifest, const VideoColumns& videos,
    const UserColumns& users, const ModelTensors& model, const AnnIndex& index,
    const CatalogStats* stats = nullptr, FileSystem& fs = *FileSystem::Real(),
    const std::function<absl::Status(const std::string&)>& extra = nullptr);

// AlreadyExists when something is at `dir` (a bundle is never overwritten);
// callers check this before long work.
absl::Status CheckBundleDirFree(const std::string& dir,
                                FileSystem& fs = *FileSystem::Real());

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_BUNDLE_H_

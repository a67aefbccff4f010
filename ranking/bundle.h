// Bundle: everything one ranking needs from offline training, loaded from a
// bundle directory and validated as a whole: the manifest, the catalog
// (videos, users, ANN index) and the scoring model with its feature set.
// A bundle that fails any check is refused whole.
//
// Thread-safety: immutable once loaded; shared as shared_ptr<const Bundle>.
#ifndef FEEDRANK_RANKING_BUNDLE_H_
#define FEEDRANK_RANKING_BUNDLE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "embeddings/catalog.h"
#include "feedrank/v1/bundle.pb.h"
#include "ranking/features.h"
#include "ranking/model.h"

namespace feedrank {

struct Bundle {
  std::string dir;
  BundleManifest manifest;
  std::unique_ptr<Catalog> catalog;
  FeatureSet features;
  std::unique_ptr<ScoringModel> model;
};

// Loads and validates the bundle in `dir`. Errors name the file and the
// problem (see embeddings/catalog.h, ranking/model.h).
absl::StatusOr<std::shared_ptr<const Bundle>> LoadBundle(const std::string& dir);

// Assembles a bundle from parts already in memory (validated the same way).
absl::StatusOr<std::shared_ptr<const Bundle>> MakeBundle(
    const BundleManifest& manifest, std::unique_ptr<Catalog> catalog,
    ModelTensors model);

// Writes a complete bundle into `dir`, which must not exist yet: the files go
// to a temporary sibling directory that is renamed to `dir` at the end, so a
// reader never sees half a bundle. Validates the parts first (as LoadBundle
// would) and writes nothing when they are inconsistent.
absl::Status WriteBundle(const std::string& dir, const BundleManifest& manifest,
                         const VideoColumns& videos, const UserColumns& users,
                         const ModelTensors& model, const AnnIndex& index);

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_BUNDLE_H_

#include "cli/build_bundle.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/status_macros.h"
#include "embeddings/catalog.h"
#include "ranking/bundle.h"
#include "ranking/features.h"
#include "ranking/model.h"

namespace feedrank {

absl::Status BuildBundle(const BuildOptions& options) {
  // Before anything long: the output must not exist.
  RETURN_IF_ERROR(CheckBundleDirFree(options.out));
  ASSIGN_OR_RETURN(BundleManifest manifest, ReadManifest(options.from));
  if (!options.version.empty()) manifest.set_version(options.version);
  IndexSpec spec = manifest.index();
  spec.MergeFrom(options.index);  // proto3 scalars: only set (non-zero) fields
  if (spec.type().empty()) spec.set_type("hnsw");
  manifest.clear_index();
  *manifest.mutable_index() = spec;
  RETURN_IF_ERROR(ValidateManifest(manifest));

  VideoColumns videos;
  UserColumns users;
  RETURN_IF_ERROR(Catalog::ReadColumns(options.from, manifest, &videos, &users));
  std::vector<std::string> groups(manifest.model().features().begin(),
                                  manifest.model().features().end());
  ASSIGN_OR_RETURN(FeatureSet features, FeatureSet::Create(groups, manifest.dim()));
  ASSIGN_OR_RETURN(auto model,
                   ScoringModel::Load(options.from, manifest.model(), features.width()));
  {
    // Cross-file checks (counts, unique ids, ranges) before the long build.
    VideoColumns v = videos;
    UserColumns u = users;
    auto checked = Catalog::Create(manifest, std::move(v), std::move(u), nullptr);
    if (!checked.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.from, "/", checked.status().message()));
    }
  }
  LogInfo("build: %d videos x %d dims, %s index", videos.ids.size(), manifest.dim(),
          spec.type());
  ProgressLog progress("build: index");
  ASSIGN_OR_RETURN(auto index, AnnIndex::Build(videos.embeddings.data(),
                                               static_cast<int64_t>(videos.ids.size()),
                                               static_cast<int>(manifest.dim()), &spec,
                                               std::ref(progress), options.threads));
  *manifest.mutable_index() = spec;
  RETURN_IF_ERROR(
      WriteBundle(options.out, manifest, videos, users, model->tensors(), *index));
  LogInfo("build: wrote %s", options.out);
  return absl::OkStatus();
}

}  // namespace feedrank

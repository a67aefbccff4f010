#include "ranking/bundle.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"

namespace feedrank {
namespace {

absl::StatusOr<FeatureSet> FeaturesOf(const BundleManifest& manifest) {
  std::vector<std::string> groups(manifest.model().features().begin(),
                                  manifest.model().features().end());
  return FeatureSet::Create(groups, static_cast<int>(manifest.dim()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Bundle>> LoadBundle(const std::string& dir,
                                                         FileSystem& fs) {
  auto bundle = std::make_shared<Bundle>();
  bundle->dir = dir;
  ASSIGN_OR_RETURN(bundle->manifest, ReadManifest(dir, fs));
  auto features = FeaturesOf(bundle->manifest);
  if (!features.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/", kManifestFile, ": ", features.status().message()));
  }
  bundle->features = *std::move(features);
  ASSIGN_OR_RETURN(bundle->catalog, Catalog::Load(dir, bundle->manifest, fs));
  bundle->view = CatalogView::Of(bundle->catalog);
  ASSIGN_OR_RETURN(bundle->model, ScoringModel::Load(dir, bundle->manifest.model(),
                                                     bundle->features.width(), fs));
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

absl::StatusOr<std::shared_ptr<const Bundle>> MakeBundle(const BundleManifest& manifest,
                                                         std::unique_ptr<Catalog> catalog,
                                                         ModelTensors model) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  auto bundle = std::make_shared<Bundle>();
  bundle->manifest = manifest;
  ASSIGN_OR_RETURN(bundle->features, FeaturesOf(manifest));
  if (catalog == nullptr || catalog->dim() != int(manifest.dim()) ||
      catalog->num_videos() != int64_t(manifest.num_videos())) {
    return absl::InvalidArgumentError("catalogue does not match the manifest");
  }
  bundle->catalog = std::move(catalog);
  bundle->view = CatalogView::Of(bundle->catalog);
  ASSIGN_OR_RETURN(bundle->model, ScoringModel::Create(std::move(model), manifest.model(),
                                                       bundle->features.width()));
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

absl::Status CheckBundleDirFree(const std::string& dir, FileSystem& fs) {
  ASSIGN_OR_RETURN(const bool exists, fs.Exists(dir));
  if (exists) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir,
                     ": already exists; bundles are immutable, write a new "
                     "directory"));
  }
  return absl::OkStatus();
}

absl::Status WriteBundle(const std::string& dir, const BundleManifest& manifest,
                         const VideoColumns& videos, const UserColumns& users,
                         const ModelTensors& model, const AnnIndex& index,
                         const CatalogStats* stats, FileSystem& fs) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  ASSIGN_OR_RETURN(FeatureSet features, FeaturesOf(manifest));
  std::vector<uint32_t> hidden(manifest.model().hidden().begin(),
                               manifest.model().hidden().end());
  RETURN_IF_ERROR(
      model.Validate(features.width(), hidden, manifest.model().objectives_size()));
  RETURN_IF_ERROR(CheckBundleDirFree(dir, fs));
  std::string target = dir;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  const std::string tmp = absl::StrCat(target, ".partial-", ::getpid());
  RETURN_IF_ERROR(fs.RemoveAll(tmp));
  RETURN_IF_ERROR(fs.CreateDir(tmp));
  auto write_all = [&]() -> absl::Status {
    RETURN_IF_ERROR(Catalog::WriteColumns(tmp, manifest.dim(), videos, users, stats, fs));
    RETURN_IF_ERROR(ScoringModel::Write(tmp, model, fs));
    RETURN_IF_ERROR(index.Write(BundlePath(tmp, kIndexFile), fs));
    RETURN_IF_ERROR(WriteManifest(tmp, manifest, fs));
    RETURN_IF_ERROR(fs.SyncDir(tmp));
    return fs.Rename(tmp, target);
  };
  absl::Status status = write_all();
  if (!status.ok()) fs.RemoveAll(tmp).IgnoreError();
  return status;
}

}  // namespace feedrank

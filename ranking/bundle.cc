#include "ranking/bundle.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

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

absl::StatusOr<std::shared_ptr<const Bundle>> LoadBundle(const std::string& dir) {
  auto bundle = std::make_shared<Bundle>();
  bundle->dir = dir;
  ASSIGN_OR_RETURN(bundle->manifest, ReadManifest(dir));
  auto features = FeaturesOf(bundle->manifest);
  if (!features.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/", kManifestFile, ": ", features.status().message()));
  }
  bundle->features = *std::move(features);
  ASSIGN_OR_RETURN(bundle->catalog, Catalog::Load(dir, bundle->manifest));
  ASSIGN_OR_RETURN(bundle->model,
                   ScoringModel::Load(dir, bundle->manifest.model(),
                                      bundle->features.width()));
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

absl::StatusOr<std::shared_ptr<const Bundle>> MakeBundle(
    const BundleManifest& manifest, std::unique_ptr<Catalog> catalog,
    ModelTensors model) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  auto bundle = std::make_shared<Bundle>();
  bundle->manifest = manifest;
  ASSIGN_OR_RETURN(bundle->features, FeaturesOf(manifest));
  bundle->catalog = std::move(catalog);
  ASSIGN_OR_RETURN(bundle->model,
                   ScoringModel::Create(std::move(model), manifest.model(),
                                        bundle->features.width()));
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

absl::Status WriteBundle(const std::string& dir, const BundleManifest& manifest,
                         const VideoColumns& videos, const UserColumns& users,
                         const ModelTensors& model, const AnnIndex& index) {
  namespace fs = std::filesystem;
  RETURN_IF_ERROR(ValidateManifest(manifest));
  ASSIGN_OR_RETURN(FeatureSet features, FeaturesOf(manifest));
  std::vector<uint32_t> hidden(manifest.model().hidden().begin(),
                               manifest.model().hidden().end());
  RETURN_IF_ERROR(model.Validate(features.width(), hidden,
                                 manifest.model().objectives_size()));
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir, ": already exists; bundles are immutable, write a new "
                          "directory"));
  }
  const fs::path target = fs::absolute(dir, ec);
  const fs::path tmp = target.string() + ".partial-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec)) {
    return absl::PermissionDeniedError(
        absl::StrCat(tmp.string(), ": cannot create directory: ", ec.message()));
  }
  auto write_all = [&]() -> absl::Status {
    RETURN_IF_ERROR(Catalog::WriteColumns(tmp.string(), manifest.dim(), videos, users));
    RETURN_IF_ERROR(ScoringModel::Write(tmp.string(), model));
    RETURN_IF_ERROR(index.Write(BundlePath(tmp.string(), kIndexFile)));
    RETURN_IF_ERROR(WriteManifest(tmp.string(), manifest));
    return absl::OkStatus();
  };
  absl::Status status = write_all();
  if (status.ok()) {
    fs::rename(tmp, target, ec);
    if (ec) {
      status = absl::DataLossError(absl::StrCat(
          dir, ": cannot move the finished bundle into place: ", ec.message()));
    }
  }
  if (!status.ok()) fs::remove_all(tmp, ec);
  return status;
}

}  // namespace feedrank

#include "ranking/bundle.h"

#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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
  bundle->features.AttachCatalog(*bundle->catalog);
  if (bundle->features.uses_engagement() && !EngagementState::InBundle(dir, fs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": the model uses the trending or history features but the bundle has no ",
        kTrendingFile, ", ", kHistoryIdsFile, " and ", kHistoryTimesFile));
  }
  ASSIGN_OR_RETURN(
      bundle->engagement,
      EngagementState::Load(dir, *bundle->catalog, EngagementTime(bundle->manifest), fs));
  ASSIGN_OR_RETURN(bundle->model, ScoringModel::Load(dir, bundle->manifest.model(),
                                                     bundle->features.width(), fs));
  if (auto names = fs.ListDir(dir); names.ok()) {
    for (const std::string& name : *names) {
      auto info = fs.Stat(BundlePath(dir, name));
      if (info.ok() && !info->is_directory) bundle->file_bytes += info->size;
    }
  }
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

namespace {

// "a/./b/../c/" -> "a/c"; keeps a leading "/" and leading ".." parts.
std::string Normalize(const std::string& path) {
  const bool absolute = !path.empty() && path[0] == '/';
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == ".." && !parts.empty() && parts.back() != "..") {
      parts.pop_back();
      continue;
    }
    if (part == ".." && absolute) continue;  // "/.." is "/"
    parts.emplace_back(part);
  }
  std::string out = absl::StrJoin(parts, "/");
  if (absolute) return "/" + out;
  return out.empty() ? "." : out;
}

}  // namespace

std::string ParentDir(const std::string& path) {
  const std::string p = Normalize(path.empty() ? "." : path);
  if (p == "/") return p;
  const size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return p == ".." ? "../.." : ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

absl::StatusOr<std::string> ResolveBundleRefDir(const std::string& base,
                                                const std::string& dir, bool confine) {
  if (dir.empty()) return absl::InvalidArgumentError("bundle dir is empty");
  const std::string root = Normalize(base.empty() ? "." : base);
  const std::string path = Normalize(dir[0] == '/' ? dir : absl::StrCat(root, "/", dir));
  if (confine) {
    const bool inside =
        root == "." ? (path != ".." && !absl::StartsWith(path, "../") && path[0] != '/')
                    : (path == root || absl::StartsWith(path, root + "/"));
    if (!inside) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bundle dir '", dir, "' resolves to '", path, "', outside the bundle base '",
          root, "' (a config applied through FeedAdmin names bundles under it)"));
    }
  }
  return path;
}

absl::Status CheckRealPathInside(const std::string& base, const std::string& dir,
                                 FileSystem& fs) {
  ASSIGN_OR_RETURN(const std::string real_base, fs.RealPath(base.empty() ? "." : base));
  ASSIGN_OR_RETURN(const std::string real_dir, fs.RealPath(dir));
  if (real_dir == real_base || real_base == "/" ||
      absl::StartsWith(real_dir, real_base + "/")) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bundle dir '", dir, "' is (or is under) a symbolic link to '",
                   real_dir, "', outside the bundle base '", real_base, "'"));
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
  bundle->features.AttachCatalog(*bundle->catalog);
  bundle->engagement =
      std::make_shared<EngagementState>(*bundle->catalog, EngagementTime(manifest));
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
                         const CatalogStats* stats, FileSystem& fs,
                         const std::function<absl::Status(const std::string&)>& extra) {
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
  // Missing parents are made (`--out root/1` into a new root).
  for (size_t slash = target.find('/', 1); slash != std::string::npos;
       slash = target.find('/', slash + 1)) {
    absl::Status made = fs.CreateDir(target.substr(0, slash));
    if (!made.ok() && !absl::IsAlreadyExists(made)) return made;
  }
  RETURN_IF_ERROR(fs.RemoveAll(tmp));
  RETURN_IF_ERROR(fs.CreateDir(tmp));
  auto write_all = [&]() -> absl::Status {
    RETURN_IF_ERROR(Catalog::WriteColumns(tmp, manifest.dim(), videos, users, stats, fs));
    RETURN_IF_ERROR(ScoringModel::Write(tmp, model, fs));
    RETURN_IF_ERROR(index.Write(BundlePath(tmp, kIndexFile), fs));
    RETURN_IF_ERROR(WriteManifest(tmp, manifest, fs));
    if (extra) RETURN_IF_ERROR(extra(tmp));
    RETURN_IF_ERROR(fs.SyncDir(tmp));
    return fs.Rename(tmp, target);
  };
  absl::Status status = write_all();
  if (!status.ok()) fs.RemoveAll(tmp).IgnoreError();
  return status;
}

}  // namespace feedrank

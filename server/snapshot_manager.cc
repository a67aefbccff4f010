#include "server/snapshot_manager.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "embeddings/manifest.h"
#include "ranking/experiments.h"

namespace feedrank {

absl::Status SnapshotManager::Install(std::shared_ptr<const Bundle> bundle,
                                      const RankingConfig& config) {
  MutexLock lock(&load_mu_);
  return InstallLocked(std::move(bundle), config);
}

absl::StatusOr<std::shared_ptr<Snapshot>> SnapshotManager::Prepare(
    std::shared_ptr<const Bundle> bundle, const RankingConfig& config, bool confine,
    FileSystem& fs) {
  auto snapshot = std::make_shared<Snapshot>();
  // The bundles arms may rank with, loaded side by side (reused while their
  // manifest is unchanged). They must score the default bundle's objectives:
  // the arms' weights are resolved against its model.
  std::map<std::string, CachedBundle> used;
  for (int i = 0; i < config.bundles_size(); ++i) {
    const v1::BundleRef& ref = config.bundles(i);
    const std::string path = absl::StrCat("bundles[", i, "] '", ref.name(), "'");
    auto dir = ResolveBundleRefDir(bundle_base_, ref.dir(), confine);
    if (!dir.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", dir.status().message()));
    }
    if (confine) {
      if (absl::Status inside = CheckRealPathInside(bundle_base_, *dir, fs);
          !inside.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", inside.message()));
      }
    }
    auto manifest = fs.Stat(BundlePath(*dir, kManifestFile));
    if (!manifest.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": cannot load bundle ", *dir,
                                                     ": ", manifest.status().message()));
    }
    std::shared_ptr<const Bundle> extra;
    if (auto it = extra_cache_.find(*dir);
        it != extra_cache_.end() && it->second.manifest.SameAs(*manifest)) {
      extra = it->second.bundle;
    } else if (auto it = used.find(*dir); it != used.end()) {
      extra = it->second.bundle;
    } else {
      LogInfo("loading bundle %s for %s", *dir, path);
      auto loaded = LoadBundle(*dir, fs);
      if (!loaded.ok()) {
        if (absl::IsCancelled(loaded.status())) return loaded.status();
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": cannot load bundle ", *dir, ": ", loaded.status().message()));
      }
      extra = *std::move(loaded);
    }
    if (extra->model->objectives() != bundle->model->objectives()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": bundle ", *dir, " scores objectives (",
                       absl::StrJoin(extra->model->objectives(), ", "),
                       ") other than the default bundle's (",
                       absl::StrJoin(bundle->model->objectives(), ", "), ")"));
    }
    used[*dir] = CachedBundle{*manifest, extra};
    snapshot->extra_bundles.emplace_back(ref.name(), extra);
  }

  // Guardrail reverts hold while the arm is what it was when it tripped.
  std::vector<std::pair<std::string, std::string>> reverted;
  for (const RevertedArm& r : reverted_) reverted.emplace_back(r.layer, r.arm);
  ASSIGN_OR_RETURN(
      ExperimentConfig experiments,
      ExperimentConfig::Create(config, bundle->model->objectives(), reverted));
  std::vector<RevertedArm> still;
  for (const RevertedArm& r : reverted_) {
    for (int id = 0; id < experiments.arm_count(); ++id) {
      const ArmAssignment& a = experiments.arm(id);
      if (a.layer == r.layer && a.arm == r.arm &&
          experiments.arm_fingerprint(id) == r.fingerprint && !a.reverted_to.empty()) {
        still.push_back(r);
      }
    }
  }
  if (still.size() != reverted_.size()) {
    reverted.clear();
    for (const RevertedArm& r : still) reverted.emplace_back(r.layer, r.arm);
    ASSIGN_OR_RETURN(experiments, ExperimentConfig::Create(
                                      config, bundle->model->objectives(), reverted));
  }
  snapshot->reverted = reverted;

  const RankingOptions& options = experiments.default_options();
  const RankerCosts costs = Ranker::Calibrate(bundle, options, env_.clock);
  snapshot->bundle = bundle;
  snapshot->view = bundle->view;
  snapshot->config = config;
  ASSIGN_OR_RETURN(
      std::vector<std::unique_ptr<Ranker>> rankers,
      CreateArmRankers(
          experiments,
          [&](const std::string& name) -> absl::StatusOr<std::shared_ptr<const Bundle>> {
            if (name.empty()) return bundle;
            for (const auto& [n, b] : snapshot->extra_bundles) {
              if (n == name) return b;
            }
            return absl::InternalError(absl::StrCat("bundle '", name, "' not loaded"));
          },
          costs, env_.clock));
  for (auto& ranker : rankers) snapshot->rankers.push_back(std::move(ranker));
  snapshot->experiments =
      std::make_shared<const ExperimentConfig>(std::move(experiments));
  snapshot->arm_slots.assign(snapshot->experiments->arm_count(), -1);
  if (annotate_) annotate_(snapshot.get());
  LogInfo(
      "prepared bundle %s (%s, %d videos, %d users) with config '%s'%s; "
      "measured ANN %.0fus, scoring %.0fns per candidate",
      bundle->manifest.version(), bundle->dir, bundle->catalog->num_videos(),
      bundle->catalog->num_users(), config.version(),
      snapshot->extra_bundles.empty()
          ? std::string()
          : absl::StrCat(" and ", snapshot->extra_bundles.size(), " bundle(s) beside it"),
      costs.ann_micros, costs.score_ns_per_row);
  // Remembered for the install (Publish prunes the cache to what it uses).
  for (auto& [dir, cached] : used) pending_cache_[dir] = std::move(cached);
  return snapshot;
}

absl::Status SnapshotManager::Publish(std::shared_ptr<Snapshot> snapshot,
                                      FileSystem& fs) {
  if (live_ != nullptr) {
    // The live view of the bundle, stored under the live updates' lock so
    // that no batch lands between choosing the view and serving it.
    RETURN_IF_ERROR(live_->Publish(snapshot->bundle, fs,
                                   [&](std::shared_ptr<const CatalogView> view) {
                                     snapshot->view = std::move(view);
                                     current_.Store(snapshot);
                                   }));
  }
  // Keep what is published and drop reverts the new config no longer has.
  extra_cache_ = std::move(pending_cache_);
  pending_cache_.clear();
  std::vector<RevertedArm> still;
  for (const RevertedArm& r : reverted_) {
    for (const auto& [layer, arm] : snapshot->reverted) {
      if (r.layer == layer && r.arm == arm) still.push_back(r);
    }
  }
  for (const RevertedArm& r : reverted_) {
    bool kept = false;
    for (const RevertedArm& k : still) kept |= k.layer == r.layer && k.arm == r.arm;
    if (!kept) {
      LogInfo(
          "guardrail: arm '%s' of layer '%s' changed or left the config; its users "
          "are served as their arm again",
          r.arm, r.layer);
    }
  }
  reverted_ = std::move(still);
  LogInfo("serving bundle %s with config '%s'", snapshot->bundle->manifest.version(),
          snapshot->config.version());
  if (live_ == nullptr) current_.Store(std::move(snapshot));
  return absl::OkStatus();
}

absl::StatusOr<LiveResult> SnapshotManager::ApplyLive(
    const v1::LiveUpdateRecord& record) {
  if (live_ == nullptr) {
    return absl::FailedPreconditionError(
        "live updates are off: the server runs without --wal-dir");
  }
  if (current_.Load() == nullptr)
    return absl::FailedPreconditionError("no bundle loaded yet");
  return live_->Apply(record, [&](std::shared_ptr<const CatalogView> view) {
    // Same bundle, config and rankers; the new view.
    auto next = std::make_shared<Snapshot>(*current_.Load());
    next->view = std::move(view);
    current_.Store(std::move(next));
  });
}

absl::Status SnapshotManager::InstallLocked(std::shared_ptr<const Bundle> bundle,
                                            const RankingConfig& config, FileSystem* fs,
                                            std::string source) {
  pending_cache_.clear();
  auto snapshot = Prepare(std::move(bundle), config, /*confine=*/false,
                          fs != nullptr ? *fs : *env_.fs);
  if (!snapshot.ok()) {
    pending_cache_.clear();
    return snapshot.status();
  }
  if (source.empty()) {
    std::shared_ptr<const Snapshot> current = current_.Load();
    source = current != nullptr ? current->config_source : "defaults";
  }
  (*snapshot)->config_source = std::move(source);
  absl::Status status = Publish(*std::move(snapshot), fs != nullptr ? *fs : *env_.fs);
  pending_cache_.clear();
  return status;
}

absl::StatusOr<std::vector<ArmShare>> SnapshotManager::ApplyConfig(
    const RankingConfig& config, bool dry_run, const std::string& source,
    const std::function<absl::Status()>& commit) {
  MutexLock lock(&load_mu_);
  std::shared_ptr<const Snapshot> current = current_.Load();
  if (current == nullptr) return absl::FailedPreconditionError("no bundle loaded yet");
  pending_cache_.clear();
  auto snapshot = Prepare(current->bundle, config, /*confine=*/true, *env_.fs);
  if (!snapshot.ok()) {
    pending_cache_.clear();
    LogError("applied config '%s' refused, still serving '%s': %s", config.version(),
             current->config.version(), snapshot.status().ToString());
    return snapshot.status();
  }
  std::vector<ArmShare> shares = BucketShares(*(*snapshot)->experiments);
  if (dry_run) {
    pending_cache_.clear();
    return shares;
  }
  if (commit) {
    if (absl::Status status = commit(); !status.ok()) {
      pending_cache_.clear();
      LogError("applied config '%s' refused, still serving '%s': %s", config.version(),
               current->config.version(), status.ToString());
      return status;
    }
  }
  (*snapshot)->config_source = source;
  absl::Status status = Publish(*std::move(snapshot), *env_.fs);
  pending_cache_.clear();
  if (!status.ok()) return status;
  return shares;
}

absl::Status SnapshotManager::RevertArm(int id, uint64_t fingerprint,
                                        const std::string& reason) {
  MutexLock lock(&load_mu_);
  std::shared_ptr<const Snapshot> current = current_.Load();
  if (current == nullptr) return absl::FailedPreconditionError("no bundle loaded yet");
  const ExperimentConfig& e = *current->experiments;
  if (id < 0 || id >= e.arm_count() || e.arm_fingerprint(id) != fingerprint ||
      !e.arm(id).reverted_to.empty()) {
    return absl::OkStatus();  // the config changed meanwhile, or already reverted
  }
  const ArmAssignment& a = e.arm(id);
  RevertedArm r;
  r.layer = a.layer;
  r.experiment = a.experiment;
  r.arm = a.arm;
  r.reason = reason;
  r.unix_ms = env_.clock->UnixMillis();
  r.fingerprint = fingerprint;
  reverted_.push_back(r);
  absl::Status status = InstallLocked(current->bundle, current->config);
  if (!status.ok()) {
    reverted_.pop_back();
    LogError("guardrail: could not revert arm '%s' of layer '%s': %s", a.arm, a.layer,
             status.ToString());
    return status;
  }
  const Snapshot& now = *current_.Load();
  for (int i = 0; i < now.experiments->arm_count(); ++i) {
    const ArmAssignment& b = now.experiments->arm(i);
    if (b.layer == r.layer && b.arm == r.arm) r.reverted_to = b.reverted_to;
  }
  for (RevertedArm& kept : reverted_) {
    if (kept.layer == r.layer && kept.arm == r.arm) kept.reverted_to = r.reverted_to;
  }
  LogWarning(
      "guardrail tripped: arm '%s' of experiment '%s' (layer '%s') %s; its users are "
      "served as control arm '%s' until the arm changes",
      r.arm, r.experiment, r.layer, reason, r.reverted_to);
  return absl::OkStatus();
}

std::vector<RevertedArm> SnapshotManager::reverted() const {
  MutexLock lock(&load_mu_);
  return reverted_;
}

absl::Status SnapshotManager::Load(const std::string& bundle_dir,
                                   const std::string& config_path, FileSystem* fs) {
  FileSystem& files = fs != nullptr ? *fs : *env_.fs;
  // Held across the reads too, so that two loads cannot finish out of order
  // (an older config installed last).
  MutexLock lock(&load_mu_);
  RankingConfig config;
  if (!config_path.empty()) {
    auto parsed = ReadConfigFile(config_path, files);
    if (!parsed.ok()) {
      LogError("config %s refused, previous state kept: %s", config_path,
               parsed.status().ToString());
      return parsed.status();
    }
    config = *std::move(parsed);
  }
  LogInfo("loading bundle %s", bundle_dir);
  auto bundle = LoadBundle(bundle_dir, files);
  if (!bundle.ok()) {
    LogError("bundle %s refused, previous state kept: %s", bundle_dir,
             bundle.status().ToString());
    return bundle.status();
  }
  absl::Status status = InstallLocked(*std::move(bundle), config, &files,
                                      config_path.empty() ? "defaults" : "file");
  if (!status.ok()) {
    LogError("config refused for bundle %s, previous state kept: %s", bundle_dir,
             status.ToString());
  }
  return status;
}

absl::Status SnapshotManager::SwapBundle(const std::string& bundle_dir, FileSystem* fs) {
  FileSystem& files = fs != nullptr ? *fs : *env_.fs;
  MutexLock lock(&load_mu_);
  std::shared_ptr<const Snapshot> current = current_.Load();
  if (current == nullptr) return absl::FailedPreconditionError("no bundle loaded yet");
  LogInfo("loading bundle %s", bundle_dir);
  auto bundle = LoadBundle(bundle_dir, files);
  if (!bundle.ok()) {
    LogError("bundle %s refused, still serving %s: %s", bundle_dir, current->bundle->dir,
             bundle.status().ToString());
    return bundle.status();
  }
  absl::Status status = InstallLocked(*std::move(bundle), current->config, &files);
  if (!status.ok()) {
    LogError("bundle %s refused with config '%s', still serving %s: %s", bundle_dir,
             current->config.version(), current->bundle->dir, status.ToString());
  }
  return status;
}

absl::Status SnapshotManager::ReloadConfig(const std::string& config_path,
                                           FileSystem* fs) {
  FileSystem& files = fs != nullptr ? *fs : *env_.fs;
  MutexLock lock(&load_mu_);
  std::shared_ptr<const Snapshot> current = current_.Load();
  if (current == nullptr) return absl::FailedPreconditionError("no bundle loaded yet");
  RankingConfig config;
  if (!config_path.empty()) {
    auto parsed = ReadConfigFile(config_path, files);
    if (!parsed.ok()) {
      LogError("config %s refused, still serving '%s': %s", config_path,
               current->config.version(), parsed.status().ToString());
      return parsed.status();
    }
    config = *std::move(parsed);
  }
  absl::Status status = InstallLocked(current->bundle, config, &files,
                                      config_path.empty() ? "defaults" : "file");
  if (!status.ok()) {
    LogError("config %s refused, still serving '%s': %s", config_path,
             current->config.version(), status.ToString());
  }
  return status;
}

}  // namespace feedrank

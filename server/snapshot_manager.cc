#include "server/snapshot_manager.h"

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "ranking/experiments.h"

namespace feedrank {

absl::Status SnapshotManager::Install(std::shared_ptr<const Bundle> bundle,
                                      const RankingConfig& config) {
  MutexLock lock(&load_mu_);
  return InstallLocked(std::move(bundle), config);
}

absl::Status SnapshotManager::InstallLocked(std::shared_ptr<const Bundle> bundle,
                                            const RankingConfig& config) {
  // Arms that rank with another bundle need it loaded side by side, which
  // the server does not do yet: refused rather than served with the default.
  if (config.bundles_size() > 0) {
    return absl::InvalidArgumentError(
        "bundles: arms on a second bundle are replayed (feedrank replay --arms) but not "
        "served yet; docs/EXPERIMENTS.md");
  }
  ASSIGN_OR_RETURN(ExperimentConfig experiments,
                   ExperimentConfig::Create(config, bundle->model->objectives()));
  const RankingOptions& options = experiments.default_options();
  const RankerCosts costs = Ranker::Calibrate(bundle, options, env_.clock);
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->bundle = bundle;
  snapshot->view = bundle->view;
  snapshot->config = config;
  ASSIGN_OR_RETURN(
      snapshot->rankers,
      CreateArmRankers(
          experiments,
          [&](const std::string&) -> absl::StatusOr<std::shared_ptr<const Bundle>> {
            return bundle;  // `bundles` are refused above
          },
          costs, env_.clock));
  snapshot->experiments = std::make_unique<ExperimentConfig>(std::move(experiments));
  current_.Store(std::move(snapshot));
  LogInfo(
      "serving bundle %s (%s, %d videos, %d users) with config '%s'; "
      "measured ANN %.0fus, scoring %.0fns per candidate",
      bundle->manifest.version(), bundle->dir, bundle->catalog->num_videos(),
      bundle->catalog->num_users(), config.version(), costs.ann_micros,
      costs.score_ns_per_row);
  return absl::OkStatus();
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
  absl::Status status = InstallLocked(*std::move(bundle), config);
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
  absl::Status status = InstallLocked(*std::move(bundle), current->config);
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
  absl::Status status = InstallLocked(current->bundle, config);
  if (!status.ok()) {
    LogError("config %s refused, still serving '%s': %s", config_path,
             current->config.version(), status.ToString());
  }
  return status;
}

}  // namespace feedrank

// SnapshotManager: holds what a request sees — (bundle, catalogue view,
// config, ranker) — as one immutable Snapshot behind a shared pointer that
// requests copy (SharedPtrCell: a reference-count increment under a lock no
// load holds for longer than a pointer swap).
//
// A load happens off the request path: the config file and the bundle are
// read and validated, the config resolved against the bundle's model, the
// ranker calibrated (which also warms the caches), and only then is the
// pointer swapped. A request that took the old snapshot finishes on it; the
// old one is freed when its last request ends. A failed load changes
// nothing: the previous snapshot keeps serving. NO REQUEST EVER SEES A
// HALF-LOADED SNAPSHOT, and loads are serialised end to end (reads
// included), so the snapshot installed last reflects the files as the last
// load read them.
//
// Thread-safety: all methods are thread-safe.
#ifndef FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_
#define FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "base/env.h"
#include "base/mutex.h"
#include "embeddings/catalog_view.h"
#include "ranking/bundle.h"
#include "ranking/experiments.h"
#include "ranking/options.h"
#include "ranking/ranker.h"

namespace feedrank {

struct Snapshot {
  std::shared_ptr<const Bundle> bundle;
  std::shared_ptr<const CatalogView> view;
  RankingConfig config;
  // The config's experiments: each user's arms (ranking/experiments.h).
  std::unique_ptr<ExperimentConfig> experiments;
  // One ranker per combination of arms (CreateArmRankers); [0] ranks users
  // in no experiment. All share the default options' measured costs.
  std::vector<std::unique_ptr<Ranker>> rankers;

  const Ranker& RankerFor(int combination) const { return *rankers[combination]; }
};

class SnapshotManager {
 public:
  // `env` (borrowed) gives the clock rankers use and the default file
  // system of loads.
  explicit SnapshotManager(const Env& env = Env::Default()) : env_(env) {}

  // The snapshot to use for one request; null before the first load.
  std::shared_ptr<const Snapshot> Current() const { return current_.Load(); }

  // Reads the config file `config_path` (empty = all defaults) and the
  // bundle in `bundle_dir` through `fs` (null = the env's), and makes them
  // current. Errors (the current snapshot is kept): those of ReadConfigFile,
  // LoadBundle and ResolveOptions, each saying which was refused.
  absl::Status Load(const std::string& bundle_dir, const std::string& config_path,
                    FileSystem* fs = nullptr);

  // Replaces the bundle, keeping the config served now (a new version from
  // the training pipeline). FailedPrecondition before the first Load.
  absl::Status SwapBundle(const std::string& bundle_dir, FileSystem* fs = nullptr);

  // Re-reads the config file and serves it with the current bundle.
  // FailedPrecondition before the first Load.
  absl::Status ReloadConfig(const std::string& config_path, FileSystem* fs = nullptr);

  // Makes an already loaded bundle current with `config` (tests, replay).
  absl::Status Install(std::shared_ptr<const Bundle> bundle, const RankingConfig& config);

 private:
  absl::Status InstallLocked(std::shared_ptr<const Bundle> bundle,
                             const RankingConfig& config)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);

  const Env env_;
  Mutex load_mu_;  // serialises loads; never taken by requests
  SharedPtrCell<const Snapshot> current_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_

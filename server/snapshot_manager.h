// SnapshotManager: holds what a request sees, (bundle, config, ranker), as
// one immutable Snapshot behind an atomic shared pointer.
//
// A load happens off the request path: the new bundle is read and validated,
// the config resolved against its model, the ranker calibrated (which also
// warms the caches), and only then is the pointer swapped. A request that
// took the old snapshot finishes on it; the old one is freed when its last
// request ends. A failed load changes nothing: the previous snapshot keeps
// serving. NO REQUEST EVER SEES A HALF-LOADED SNAPSHOT.
//
// Thread-safety: all methods are thread-safe; loads are serialised.
#ifndef FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_
#define FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "ranking/bundle.h"
#include "ranking/options.h"
#include "ranking/ranker.h"

namespace feedrank {

struct Snapshot {
  std::shared_ptr<const Bundle> bundle;
  RankingConfig config;
  std::unique_ptr<Ranker> ranker;
};

class SnapshotManager {
 public:
  // The snapshot to use for one request; null before the first load.
  std::shared_ptr<const Snapshot> Current() const {
    return current_.load(std::memory_order_acquire);
  }

  // Loads the bundle in `bundle_dir` with `config` and makes it current.
  // Errors (the current snapshot is kept): those of LoadBundle and
  // ResolveOptions.
  absl::Status LoadBundle(const std::string& bundle_dir, const RankingConfig& config);

  // Makes an already loaded bundle current with `config` (tests, replay).
  absl::Status Install(std::shared_ptr<const Bundle> bundle,
                       const RankingConfig& config);

 private:
  absl::Status InstallLocked(std::shared_ptr<const Bundle> bundle,
                             const RankingConfig& config);

  std::mutex load_mu_;  // serialises loads; never taken by requests
  std::atomic<std::shared_ptr<const Snapshot>> current_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_

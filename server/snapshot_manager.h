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
// With live updates (SetLive), every snapshot ranks over the live view of
// its bundle: the bundle's catalogue with the updates it does not hold
// (server/live_updates.h); a live batch publishes a snapshot that differs
// from the current one only in its view (rankers and config shared).
//
// Thread-safety: all methods are thread-safe.
#ifndef FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_
#define FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_

#include <atomic>
#include <functional>
#include <map>
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
#include "server/live_updates.h"

namespace feedrank {

struct Snapshot {
  std::shared_ptr<const Bundle> bundle;
  std::shared_ptr<const CatalogView> view;
  RankingConfig config;
  // The config's `bundles`, loaded side by side with `bundle`, in config
  // order: (name, bundle). A ranker of an arm on one ranks over its view.
  std::vector<std::pair<std::string, std::shared_ptr<const Bundle>>> extra_bundles;
  // Where `config` came from: "file", "admin" (FeedAdmin.ApplyConfig, no
  // config file) or "defaults".
  std::string config_source;
  // Arms a guardrail reverted, as ExperimentConfig::Create took them.
  std::vector<std::pair<std::string, std::string>> reverted;
  // Per ArmAssignment::id: the arm's slot in the server's per-arm metrics
  // (-1 = not measured); filled by the manager's `annotate`.
  std::vector<int> arm_slots;
  // The config's experiments: each user's arms (ranking/experiments.h).
  // Shared with the snapshots a live update derives from this one (same
  // bundle and config, a newer view).
  std::shared_ptr<const ExperimentConfig> experiments;
  // One ranker per combination of arms (CreateArmRankers); [0] ranks users
  // in no experiment. All share the default options' measured costs.
  std::vector<std::shared_ptr<const Ranker>> rankers;

  const Ranker& RankerFor(int combination) const { return *rankers[combination]; }
};

// An arm a guardrail reverted: why, and what the arm was then.
struct RevertedArm {
  std::string layer;
  std::string experiment;
  std::string arm;
  std::string reverted_to;
  std::string reason;
  int64_t unix_ms = 0;
  uint64_t fingerprint = 0;  // ExperimentConfig::arm_fingerprint then
};

class SnapshotManager {
 public:
  // `env` (borrowed) gives the clock rankers use and the default file
  // system of loads. `bundle_base` is where a config's relative `bundles`
  // dirs resolve (ResolveBundleRefDir); empty = the working directory.
  // `annotate`, when set, fills what the server keeps per snapshot (its
  // arm_slots) before the snapshot is published.
  explicit SnapshotManager(const Env& env = Env::Default(), std::string bundle_base = "",
                           std::function<void(Snapshot*)> annotate = nullptr)
      : env_(env), bundle_base_(std::move(bundle_base)), annotate_(std::move(annotate)) {}

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

  // Serves live updates from now on: every snapshot published after this
  // ranks over `live`'s view of its bundle. Borrowed; must outlive the
  // manager. Call before the first load.
  void SetLive(LiveUpdates* live) { live_ = live; }
  LiveUpdates* live() const { return live_; }

  // A live batch (FeedAdmin.UpsertVideos, ...): applied by the live updates
  // and published before this returns. Errors: FailedPrecondition without
  // SetLive or before the first load; those of LiveUpdates::Apply.
  absl::StatusOr<LiveResult> ApplyLive(const v1::LiveUpdateRecord& record);

  // Makes an already loaded bundle current with `config` (tests, replay).
  absl::Status Install(std::shared_ptr<const Bundle> bundle, const RankingConfig& config);

  // FeedAdmin.ApplyConfig: checks `config` against the current bundle as a
  // load would (its extra bundles loaded, every arm resolved, its bundles'
  // dirs confined to the bundle base) and returns the shares of its arms.
  // Unless `dry_run`, then calls `commit` (which writes the config file
  // back; its error refuses the config) and serves it. Errors: those of a
  // load; `commit`'s; FailedPrecondition before the first Load. Refused or
  // dry, nothing changes.
  absl::StatusOr<std::vector<ArmShare>> ApplyConfig(
      const RankingConfig& config, bool dry_run, const std::string& source,
      const std::function<absl::Status()>& commit);

  // Serves the users of arm `id` of the current config as their
  // experiment's control, until the arm's definition changes (a guardrail
  // tripped; `reason` says which limit). No-op when the current config's
  // arm `id` no longer has `fingerprint`.
  absl::Status RevertArm(int id, uint64_t fingerprint, const std::string& reason);
  // The arms reverted now, for GetConfig and the metrics.
  std::vector<RevertedArm> reverted() const;

 private:
  // Builds (does not install) the snapshot of `bundle` with `config`.
  absl::StatusOr<std::shared_ptr<Snapshot>> Prepare(std::shared_ptr<const Bundle> bundle,
                                                    const RankingConfig& config,
                                                    bool confine, FileSystem& fs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);
  absl::Status InstallLocked(std::shared_ptr<const Bundle> bundle,
                             const RankingConfig& config, FileSystem* fs = nullptr,
                             std::string source = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);
  // Errors (nothing published): the live updates do not fit the bundle.
  absl::Status Publish(std::shared_ptr<Snapshot> snapshot, FileSystem& fs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);

  struct CachedBundle {
    FileInfo manifest;
    std::shared_ptr<const Bundle> bundle;
  };

  const Env env_;
  const std::string bundle_base_;
  const std::function<void(Snapshot*)> annotate_;
  LiveUpdates* live_ = nullptr;
  mutable Mutex load_mu_;  // serialises loads; never taken by requests
  SharedPtrCell<const Snapshot> current_;
  // Extra bundles by resolved dir, reused while their manifest is unchanged.
  std::map<std::string, CachedBundle> extra_cache_ ABSL_GUARDED_BY(load_mu_);
  std::map<std::string, CachedBundle> pending_cache_ ABSL_GUARDED_BY(load_mu_);
  std::vector<RevertedArm> reverted_ ABSL_GUARDED_BY(load_mu_);
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_SNAPSHOT_MANAGER_H_

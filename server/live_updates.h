// LiveUpdates: the server's live catalogue (docs/LIVE.md) — uploads,
// changes and takedowns of videos and fresh user embeddings, applied to the
// served bundle within the admin call that sends them, durable in an update
// log (base/wal.h), folded into a new bundle by compaction.
//
// State: the ops — the latest update of every video and user id since the
// served bundle's pipeline data (a video's upsert or delete, a user's
// upsert), each with the log sequence number and the time it was
// acknowledged —, the engagement events logged since the last compaction
// (RecordEvents; recorded into the served bundle's EngagementState), and
// the LiveCatalog that applies those the served bundle
// does not hold yet to its catalogue. Which ops a bundle holds:
//   - a compacted bundle (manifest live_sequence S > 0) holds every op with
//     a sequence <= S, and carries them in live_updates.binpb;
//   - a pipeline bundle (live_sequence 0) holds every op acknowledged at or
//     before its data_time_ms (none when data_time_ms is 0).
// On start the log is read back into the ops (a torn or corrupt tail cut
// and reported), and the first bundle served gets the ops it does not hold
// (events: those after its live_sequence, or for a pipeline bundle those
// whose event time is after its data_time_ms).
// A bundle swap does the same onto the new bundle; ops a pipeline bundle
// holds are dropped from then on.
//
// Order of an update: checked whole against the catalogue (nothing applied
// on error), appended to the log (per the sync policy), applied, published
// (the `store` callback, under the live lock): a batch is acknowledged only
// once it is durable and servable. A batch the log refuses changes nothing.
//
// Thread-safety: all methods are thread-safe; updates, publications and
// compaction steps are serialised by one lock that requests never take.
#ifndef FEEDRANK_SERVER_LIVE_UPDATES_H_
#define FEEDRANK_SERVER_LIVE_UPDATES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "base/env.h"
#include "base/mutex.h"
#include "base/wal.h"
#include "embeddings/live_catalog.h"
#include "feedrank/v1/admin.pb.h"
#include "ranking/bundle.h"

namespace feedrank {

// The file of a compacted bundle that carries its live ops (a LiveOps
// message in binary protobuf).
inline constexpr char kLiveUpdatesFile[] = "live_updates.binpb";

struct LiveOptions {
  // The update log's directory (created when missing).
  std::string wal_dir;
  WalSync sync = WalSync::kAlways;
  absl::Duration sync_interval = absl::Milliseconds(100);
  // Compaction is due when delta videos + tombstones + delta users reach
  // this (0 = never).
  int64_t compact_threshold = 50000;
  // Compaction is also due when the engagement events held since the last
  // one reach this (0 = never): it folds them into the bundle's engagement
  // files and bounds the memory and log they take (32 bytes each in memory).
  int64_t compact_event_threshold = 1000000;
  // OpenMP threads of a compaction's index build (1 leaves the other cores
  // to serving).
  int compact_threads = 1;
};

// What one batch did (FeedAdmin's UpdateResponse).
struct LiveResult {
  uint64_t sequence = 0;
  uint64_t catalog_version = 0;
  ApplyStats stats;
  // Engagement events recorded: those of the batch the served bundle does
  // not hold already (LiveUpdates::HoldsEvent).
  int64_t events = 0;
};

// RecordEvents' limits: events per batch, and how far ahead of the
// server's clock an event's time may be.
inline constexpr int kMaxEventsPerBatch = 100000;
inline constexpr int64_t kMaxEventLeadMs = 60 * 1000;

// What a compaction needs, taken under the lock in one step: the view to
// fold, the ops it holds, and the bundle it came from.
struct CompactionPlan {
  std::shared_ptr<const Bundle> bundle;
  std::shared_ptr<const CatalogView> view;
  uint64_t through_sequence = 0;
  v1::LiveOps ops;
  // The served bundle's engagement state through `through_sequence`.
  std::shared_ptr<const EngagementState> engagement;
};

class LiveUpdates {
 public:
  // Opens (or creates) the update log in `options.wal_dir` through `fs`
  // (borrowed) and reads it back into the ops. Errors: those of the log and
  // the file system; InvalidArgument for a record that passed its checksum
  // but is not a LiveUpdateRecord (never written by this server).
  static absl::StatusOr<std::unique_ptr<LiveUpdates>> Open(const LiveOptions& options,
                                                           const Env& env,
                                                           FileSystem* fs);

  // The view `bundle` serves with: the same LiveCatalog when `bundle` is
  // served now, else a new one over it with the ops it does not hold.
  // Calls `store(view)` under the lock. Errors (nothing stored): the
  // bundle's live_updates.binpb cannot be read, or the ops do not fit it
  // (another dimension...), named.
  using StoreFn = std::function<void(std::shared_ptr<const CatalogView>)>;
  absl::Status Publish(const std::shared_ptr<const Bundle>& bundle, FileSystem& fs,
                       const StoreFn& store);

  // One batch: `record` without its time (set here). Errors:
  // FailedPrecondition before Publish; InvalidArgument naming the item;
  // Unavailable when the log cannot take it (naming the cause). Refused,
  // nothing changes.
  absl::StatusOr<LiveResult> Apply(const v1::LiveUpdateRecord& record,
                                   const StoreFn& store);

  // Fills the live part of GetStatus.
  void Status(v1::GetStatusResponse* status) const;

  // Compaction: due when the delta reaches the threshold.
  bool CompactionDue() const;
  // The state to fold now; FailedPrecondition before Publish.
  absl::StatusOr<CompactionPlan> PlanCompaction() const;
  // After the bundle written from `plan` is served: drops the log segments
  // it holds. Records the outcome for GetStatus.
  void FinishCompaction(const CompactionPlan& plan, const v1::CompactionInfo& info);

  const LiveOptions& options() const { return options_; }
  // Counters for the metrics.
  int64_t batches() const { return batches_.load(std::memory_order_relaxed); }
  int64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  int64_t log_failures() const { return log_failures_.load(std::memory_order_relaxed); }
  int64_t compaction_failures() const {
    return compaction_failures_.load(std::memory_order_relaxed);
  }

 private:
  // The latest op per id.
  struct Op {
    uint64_t sequence = 0;
    int64_t unix_ms = 0;
    bool deleted = false;
    VideoUpsert video;  // unless deleted
  };
  struct UserOp {
    uint64_t sequence = 0;
    int64_t unix_ms = 0;
    UserUpsert user;
  };
  // One record's engagement events.
  struct LoggedEvents {
    uint64_t sequence = 0;
    std::vector<EngagementEvent> events;
  };
  // Records into `bundle`'s engagement state the events it does not hold:
  // after its live_sequence (compacted), or after its data time (pipeline).
  // Returns how many.
  int64_t ReplayEvents(const Bundle& bundle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `bundle` holds `event` of record `sequence`: the record is in a
  // compacted bundle (sequence <= live_sequence), or the event is at or
  // before a pipeline bundle's data time (its pipeline counted it). The one
  // rule for recording live, replaying and dropping.
  static bool HoldsEvent(const Bundle& bundle, uint64_t sequence,
                         const EngagementEvent& event);
  // Drops from events_[from...] the events pipeline bundle `bundle` holds
  // (it supersedes them), and records left empty.
  void DropHeldEvents(const Bundle& bundle, size_t from)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the record's events `bundle` does not hold (once per
  // sequence); returns how many.
  static int64_t RecordNotHeld(const Bundle& bundle, uint64_t sequence,
                               const std::vector<EngagementEvent>& events);

  LiveUpdates(const LiveOptions& options, const Env& env)
      : options_(options), env_(env) {}
  // The record's events against `view`: InvalidArgument naming the first
  // bad one.
  static absl::Status CheckEvents(const v1::LiveUpdateRecord& record,
                                  const CatalogView& view, int64_t now_ms);
  bool CompactionDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Folds one record into the ops.
  void AddRecord(uint64_t sequence, const v1::LiveUpdateRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddOps(const v1::LiveOps& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when `bundle` holds the op of (sequence, unix_ms).
  static bool Holds(const Bundle& bundle, uint64_t sequence, int64_t unix_ms);

  const LiveOptions options_;
  const Env env_;
  std::unique_ptr<WriteAheadLog> wal_;
  WalRecovery recovery_;

  mutable Mutex mu_;
  absl::flat_hash_map<uint64_t, Op> videos_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, UserOp> users_ ABSL_GUARDED_BY(mu_);
  // Since the last compaction, in sequence order.
  std::vector<LoggedEvents> events_ ABSL_GUARDED_BY(mu_);
  int64_t pending_events_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const Bundle> bundle_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<LiveCatalog> live_ ABSL_GUARDED_BY(mu_);
  uint64_t applied_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_update_ms_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t compactions_ ABSL_GUARDED_BY(mu_) = 0;
  v1::CompactionInfo last_compaction_ ABSL_GUARDED_BY(mu_);

  std::atomic<int64_t> batches_{0};
  std::atomic<int64_t> refused_{0};
  std::atomic<int64_t> log_failures_{0};
  std::atomic<int64_t> compaction_failures_{0};
};

// Writes the bundle `plan` describes into `dir` (which must not exist):
// the view's live videos and users with a new index of the bundle's type,
// the bundle's model, manifest version `version`, live_sequence and
// live_updates.binpb from the plan. Progress is logged. Errors: those of
// the index build (Cancelled once `cancel` is set) and WriteBundle.
absl::Status WriteCompactedBundle(const CompactionPlan& plan, const std::string& dir,
                                  const std::string& version, int threads, int64_t now_ms,
                                  FileSystem& fs,
                                  const std::atomic<bool>* cancel = nullptr);

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_LIVE_UPDATES_H_

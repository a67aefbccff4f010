// EngagementState: what users did recently, as the `trending` and `history`
// feature groups see it (ranking/features.h). One implementation for the
// trainer (which records each training row's event after the rows at its
// time are built, so a row's features never see it or anything later), the
// bundle (the state as of its data time, in three files) and the server
// (kept live by FeedAdmin.RecordEvents, docs/LIVE.md).
//
// Trending: per video, exponentially decayed counts of interactions and of
// positives (of the retrieval objective: a like in the shipped log) with
// half-lives of 1, 6 and 24 hours. A count at time t is the sum over the
// recorded events e of 2^-((t - t_e) / h). Stored relative to a reference
// time R as the sum of 2^((t_e - R) / h), so an event costs one add and a
// read one multiply; R moves forward (every count rescaled, under the write
// lock) when an event is more than kRebaseHours after it.
//
// History: per user, the kHistoryLength most recent interactions (video id,
// time). The `history` features use those strictly before the request time,
// weighted kHistoryDecay^i for the i-th most recent.
//
// Point in time: the trending counts hold every event recorded so far; a
// caller that wants them "as of t" records exactly the events before t (the
// trainer does; the server records what it is sent, refusing events from
// the future). Read at a time before recorded events, a count includes
// them at weights above 1; every count is clamped to float's range, so it
// is never infinite or NaN.
//
// Slots: a video of the base catalogue has its row as its slot (no lookup on
// the ranking path); other ids (live uploads) get slots from a map.
//
// Trending list: the kTrendingTop videos with the most positives at the 6 h
// half-life, most first (ties by slot), what the ranker's trending source
// reads. Kept exact by each Record: a count only rises and a rebase scales
// every count alike, so the order of the stored sums is the order of the
// counts at any time; a video enters when its count passes the list's last,
// and moves up as its count rises (O(log K) plus the moves per positive).
//
// Bundle files (all three, or none for an empty state):
//   trending.npy       float32 [num_videos, 6]: the counts as of the
//                      manifest's data_time_ms, interactions (1 h, 6 h, 24 h)
//                      then positives, one row per catalogue video row;
//   history_ids.npy    int64 [num_users, kHistoryLength]: per catalogue user
//                      row, video ids most recent first, -1 where empty;
//   history_times.npy  int64 [num_users, kHistoryLength]: their Unix ms.
//
// Thread-safety: Record may run concurrently with Readers and other calls
// (a reader-writer lock; a Reader holds the shared side for its lifetime,
// so keep Readers short: one per request).
#ifndef FEEDRANK_RANKING_ENGAGEMENT_H_
#define FEEDRANK_RANKING_ENGAGEMENT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/env.h"
#include "embeddings/catalog.h"
#include "embeddings/catalog_view.h"

namespace feedrank {

struct EngagementEvent {
  uint64_t user_id = 0;
  uint64_t video_id = 0;
  int64_t time_ms = 0;
  // A positive of the retrieval objective (a like in the shipped log).
  bool positive = false;
};
// What the server holds per event awaiting compaction (docs/LIVE.md).
static_assert(sizeof(EngagementEvent) == 32);

inline constexpr int kTrendWindows = 3;
inline constexpr double kTrendHalfLifeHours[kTrendWindows] = {1, 6, 24};
// Interactions at each half-life, then positives.
inline constexpr int kTrendColumns = 2 * kTrendWindows;
inline constexpr int kHistoryLength = 20;
inline constexpr float kHistoryDecay = 0.9f;
inline constexpr double kRebaseHours = 48;
inline constexpr int kTrendingTop = 1000;
// The trending list's column: positives at the 6 h half-life.
inline constexpr int kTrendingColumn = kTrendWindows + 1;

inline constexpr char kTrendingFile[] = "trending.npy";
inline constexpr char kHistoryIdsFile[] = "history_ids.npy";
inline constexpr char kHistoryTimesFile[] = "history_times.npy";

class EngagementState {
 public:
  // No events, over `catalog` (borrowed; must outlive the state), reference
  // time `as_of_ms`.
  EngagementState(const Catalog& catalog, int64_t as_of_ms);
  EngagementState(const EngagementState&) = delete;
  EngagementState& operator=(const EngagementState&) = delete;

  // The state in bundle directory `dir` as of `as_of_ms` (the manifest's
  // data time): the three files, or an empty state when none is there.
  // Errors: InvalidArgument naming the file — only some of the three, a
  // shape other than the catalogue's, a negative count; those of ReadNpy.
  static absl::StatusOr<std::unique_ptr<EngagementState>> Load(const std::string& dir,
                                                               const Catalog& catalog,
                                                               int64_t as_of_ms,
                                                               FileSystem& fs);
  // True when `dir` holds the state's files.
  static bool InBundle(const std::string& dir, FileSystem& fs);

  // Writes the three files into `dir` for a catalogue whose video and user
  // rows hold `video_ids` and `user_ids` (another catalogue than the
  // state's, after a compaction: rows are matched by id; an id the state
  // does not know gets zeros and an empty history), counts as of `at_ms`
  // (what Load's `as_of_ms` must then be).
  absl::Status Write(const std::string& dir, absl::Span<const uint64_t> video_ids,
                     absl::Span<const uint64_t> user_ids, int64_t at_ms,
                     FileSystem& fs) const;

  // Events recorded through the server's update log: the highest sequence
  // recorded with RecordLogged (0: none), so that a replay never records an
  // event twice.
  uint64_t logged_sequence() const;
  // Records the events of update-log record `sequence` unless a record at
  // or after it was recorded already; returns whether it did.
  bool RecordLogged(uint64_t sequence, absl::Span<const EngagementEvent> events);

  // A deep copy (a compaction's snapshot).
  std::unique_ptr<EngagementState> Clone() const;

  // Records the events (any order; history keeps the most recent by time).
  void Record(absl::Span<const EngagementEvent> events);

  // Events recorded since construction or Load.
  int64_t recorded() const;
  // Ids (videos and users) that are not in the base catalogue but have a slot.
  int64_t extra_videos() const;
  int64_t users_with_history() const;

  // Lookups as of `now_ms`, under the shared lock.
  class Reader {
   public:
    // `state` may be null: every count 0, every history empty.
    Reader(const EngagementState* state, int64_t now_ms);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    // The kTrendColumns counts of the video at `row` of `view` (whose base
    // must be the state's catalogue for base rows to be looked up by row).
    void Trending(const CatalogView& view, int32_t row, float* out) const;
    // False for a reader over no state (every count 0).
    bool active() const { return state_ != nullptr; }
    // Prefetch hint for Trending(view, row): starts loading the counts of a
    // base row; changes nothing.
    void PrefetchTrending(const CatalogView& view, int32_t row) const;
    // The same by id.
    void TrendingOf(uint64_t video_id, float* out) const;
    // The recency-weighted mean embedding (view.dim() floats into `mean`) of
    // the user's history strictly before now, over the videos `view` holds;
    // returns the number of videos in it (0: `mean` is zeros).
    int HistoryMean(const CatalogView& view, uint64_t user_id, float* mean) const;
    // The user's history strictly before now, most recent first.
    std::vector<uint64_t> History(uint64_t user_id) const;
    // Calls fn(row) for the live rows of `view` on the trending list, most
    // trending first, until fn returns false.
    template <typename Fn>
    void ForEachTrending(const CatalogView& view, Fn fn) const;

   private:
    void CountsAt(int64_t slot, float* out) const;
    const EngagementState* state_;
    int64_t now_ms_;
    std::array<double, kTrendWindows> scale_{};
  };

 private:
  struct UserHistory {
    int size = 0;
    std::array<uint64_t, kHistoryLength> ids{};  // most recent first
    std::array<int64_t, kHistoryLength> times{};
    void Add(uint64_t id, int64_t time_ms);
  };

  // REQUIRES: the write lock.
  int64_t VideoSlotLocked(uint64_t id);
  int64_t FindVideoSlot(uint64_t id) const;
  void RebaseLocked(int64_t reference_ms);
  void RecordLocked(absl::Span<const EngagementEvent> events);

  // The catalogue id of `slot`.
  uint64_t SlotId(int64_t slot) const {
    return slot < catalog_.num_videos() ? catalog_.video_id(int32_t(slot))
                                        : extra_ids_[slot - catalog_.num_videos()];
  }
  // The trending order: more positives first, then the lower slot.
  static bool TrendingBefore(int64_t a, float va, int64_t b, float vb);
  // REQUIRES: the write lock. The list from every slot.
  void RebuildTrendingLocked();
  // REQUIRES: the write lock. `slot`'s trending count rose from `old_value`.
  void RaiseTrendingLocked(int64_t slot, float old_value);
  float TrendingValue(int64_t slot) const {
    return counts_[size_t(slot) * kTrendColumns + kTrendingColumn];
  }

  const Catalog& catalog_;
  mutable std::shared_mutex mu_;
  int64_t reference_ms_;
  // slots x kTrendColumns, relative to reference_ms_.
  std::vector<float> counts_;
  absl::flat_hash_map<uint64_t, int64_t> extra_slots_;
  std::vector<uint64_t> extra_ids_;  // by slot - catalogue videos
  // The trending list: slots, most first.
  std::vector<int64_t> trending_;
  absl::flat_hash_map<uint64_t, UserHistory> history_;
  int64_t recorded_ = 0;
  uint64_t logged_sequence_ = 0;
};

template <typename Fn>
void EngagementState::Reader::ForEachTrending(const CatalogView& view, Fn fn) const {
  if (state_ == nullptr) return;
  const bool same_base = &view.base() == &state_->catalog_;
  for (int64_t slot : state_->trending_) {
    std::optional<int32_t> row;
    if (same_base && slot < state_->catalog_.num_videos()) {
      if (view.live(int32_t(slot))) row = int32_t(slot);
    } else {
      row = view.VideoRow(state_->SlotId(slot));
    }
    if (row.has_value() && !fn(*row)) return;
  }
}

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_ENGAGEMENT_H_

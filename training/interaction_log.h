// InteractionLog: a user-item interaction log read from CSV/TSV through a
// column mapping (feedrank.v1.LogMapping), with one label per objective, and
// its splits into training and held-out rows: by time (the last days of the
// log) or per user (each user's last rows).
#ifndef FEEDRANK_TRAINING_INTERACTION_LOG_H_
#define FEEDRANK_TRAINING_INTERACTION_LOG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "feedrank/v1/train.pb.h"

namespace feedrank {

using v1::LogMapping;
using v1::ObjectiveMapping;

// Bounds of what a log may hold, checked while it is read: a value outside
// them is a broken log, not data to train on.
// Times: Unix milliseconds in [0, kMaxTimeMs], 1970-01-01 to 2200-01-01 UTC.
inline constexpr int64_t kMaxTimeMs = 7'258'118'400'000;
// Durations and play times: milliseconds in [0, kMaxDurationMs] (30 days).
inline constexpr int64_t kMaxDurationMs = 2'592'000'000;

struct InteractionLog {
  std::string path;
  std::vector<std::string> objectives;
  // Index into `objectives` of the retrieval objective.
  int retrieval_objective = 0;
  std::vector<uint64_t> users;
  std::vector<uint64_t> items;
  std::vector<int64_t> time_ms;  // Unix ms, in [0, kMaxTimeMs]
  // Empty when the mapping names no creator column.
  std::vector<uint64_t> creators;
  // Milliseconds in [0, kMaxDurationMs]; 0 = unknown. Empty when the mapping
  // names no duration.
  std::vector<int64_t> duration_ms;
  // rows x objectives, row-major; NaN where the row has no label.
  std::vector<float> labels;

  size_t size() const { return users.size(); }
  float label(size_t row, int objective) const {
    return labels[row * objectives.size() + objective];
  }
};

// Parses a textproto LogMapping and checks it: id and time columns named,
// at least one objective, unique objective names, a column for every BINARY
// objective, a finite threshold where one is set, play time and duration
// columns for WATCH_RATIO, a known
// retrieval objective. Errors: InvalidArgument naming the field.
absl::StatusOr<LogMapping> ParseLogMapping(const std::string& text);
absl::StatusOr<LogMapping> ReadLogMapping(const std::string& path);

// Reads the log at `path` (a header line, then one row per interaction).
// Errors name the file, and the line and column when a value is bad:
// NotFound (no file), InvalidArgument for an empty file, a header without a
// column the mapping names, a row with the wrong number of fields, an id
// that is not a non-negative integer, a label that is not a finite number, a
// time, duration or play time that is not a number within its bounds (above;
// after the mapping's unit). Errors quote values through QuoteForError.
absl::StatusOr<InteractionLog> ReadInteractionLog(const std::string& path,
                                                  const LogMapping& mapping);

// Which split to use:
//   - SplitByTime, the global time split, mirrors deployment: train on the
//     past, serve the future, so trending and popularity baselines are
//     meaningful. Use it for headline figures.
//   - SplitLastNPerUser evaluates every active user on their own latest
//     interactions: more users are evaluated and there are no calendar
//     effects. But other users' training rows extend past a user's held-out
//     time, so time-dependent features and popularity see the future: use it
//     only for personalisation comparisons, never for trending features.

// Row indices into the log, each side ascending. SplitByTime: rows before
// the first held-out day, and rows in the last `holdout_days` UTC days of the
// log. SplitLastNPerUser: each user's rows but the last `n`, and those last
// `n`.
struct TimeSplit {
  std::vector<size_t> train;
  std::vector<size_t> test;
  // SplitByTime: the first held-out millisecond (every train row is before
  // it, every test row at or after it). SplitLastNPerUser: the earliest time
  // of any held-out row; there train rows may be later than it.
  int64_t cutoff_ms = 0;
};

// Errors: InvalidArgument when holdout_days < 1 or either side is empty.
absl::StatusOr<TimeSplit> SplitByTime(const InteractionLog& log, int holdout_days);

// For each user with more than `n` rows, their last `n` rows by time (ties
// by row index: the later row is the later interaction) are held out and
// the others train; a user with `n` rows or fewer keeps them all in train
// (and is not evaluated). `cutoff_ms` is the earliest held-out time (see
// TimeSplit). Errors: InvalidArgument when n is outside [1, 1000], or when
// the train side (the log is empty) or the test side (no user has more than
// `n` rows) would be empty.
absl::StatusOr<TimeSplit> SplitLastNPerUser(const InteractionLog& log, int n);

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_INTERACTION_LOG_H_

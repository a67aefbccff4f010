// JoinReplayLog (`feedrank replay-join`): joins the outcomes that followed
// logged requests onto them, making a replay log from a server's request
// log (replay/request_log.h) and an impression/engagement log.
//
// The outcomes are read as `feedrank train` reads its log: CSV/TSV through a
// column mapping (training/interaction_log.h), one label per objective, NaN
// where a row has none. An outcome of user U at time t joins U's logged
// request R with R.time <= t < R.time + window and t before U's next logged
// request (the latest request at or before t wins, so each outcome joins one
// request at most). Each output record is its request record, in input
// order, with `objectives` (the mapping's, in order), `positive_objective`
// (the mapping's retrieval objective) and `outcomes` (time order; ties in
// the outcome log's order) set; outcomes already in a record are replaced.
// Requests with no outcome are kept (no relevant video; a replay's ranking
// metrics skip them).
//
// Nothing is written unless both inputs read cleanly: the output is written
// to a temporary sibling and renamed over `out_path` at the end.
#ifndef FEEDRANK_TRAINING_REPLAY_JOIN_H_
#define FEEDRANK_TRAINING_REPLAY_JOIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "feedrank/v1/train.pb.h"
#include "replay/replay_log.h"

namespace feedrank {

struct ReplayJoinOptions {
  // Request logs, read in this order (a rotated log's files oldest first:
  // RequestLogFiles). At least one.
  std::vector<std::string> request_logs;
  // The impression/engagement log (CSV or TSV with a header) and its
  // mapping, as `feedrank train --log --mapping` takes them.
  std::string outcomes_path;
  v1::LogMapping mapping;
  // In (0, 30 days].
  absl::Duration window = absl::Minutes(30);
  // A bad record of a request log: the join fails (kFail), or it is skipped
  // and counted (kSkip).
  BadRecordPolicy on_bad_record = BadRecordPolicy::kFail;
  // The replay log written (binary, or JSON lines for *.jsonl). Must not be
  // one of the inputs.
  std::string out_path;
};

struct ReplayJoinStats {
  int64_t requests = 0;                // records read and written
  int64_t requests_with_outcomes = 0;  // of which with at least one outcome
  int64_t outcomes = 0;                // rows of the outcome log
  int64_t outcomes_joined = 0;
  int64_t outcomes_unmatched = 0;  // no request of the user within the window
  int64_t skipped_records = 0;     // bad request records, under kSkip
  // The first few bad records, each naming the file and offset.
  std::vector<std::string> problems;
};

// Errors: InvalidArgument for bad options (no request log, a window out of
// range, the output named as an input) and for an outcome log the mapping
// does not fit (a column it names missing: the message names it); those of
// ReadInteractionLog and ReplayLogReader (DataLoss naming the file and
// offset for a bad request record under kFail); the file system's when the
// output cannot be written.
absl::StatusOr<ReplayJoinStats> JoinReplayLog(const ReplayJoinOptions& options,
                                              FileSystem& fs = *FileSystem::Real());

}  // namespace feedrank

#endif  // FEEDRANK_TRAINING_REPLAY_JOIN_H_

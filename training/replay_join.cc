#include "training/replay_join.h"

#include <unistd.h>

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "training/interaction_log.h"

namespace feedrank {
namespace {

constexpr size_t kMaxProblemsKept = 10;

}  // namespace

absl::StatusOr<ReplayJoinStats> JoinReplayLog(const ReplayJoinOptions& options,
                                              FileSystem& fs) {
  if (options.request_logs.empty()) {
    return absl::InvalidArgumentError("--requests: give at least one request log");
  }
  if (options.window <= absl::ZeroDuration() || options.window > absl::Hours(24 * 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--window: ", absl::FormatDuration(options.window), " is outside (0, 720h]"));
  }
  if (options.out_path.empty()) return absl::InvalidArgumentError("--out: no path");
  for (const std::string& in : options.request_logs) {
    if (in == options.out_path) {
      return absl::InvalidArgumentError(
          absl::StrCat("--out ", options.out_path, " is also a --requests input"));
    }
  }
  if (options.outcomes_path == options.out_path) {
    return absl::InvalidArgumentError(
        absl::StrCat("--out ", options.out_path, " is also the --outcomes input"));
  }

  // Everything is read and checked before anything is written.
  ReplayJoinStats stats;
  std::vector<v1::ReplayRecord> records;
  for (const std::string& path : options.request_logs) {
    ReplayLogReadStats read;
    ASSIGN_OR_RETURN(std::vector<v1::ReplayRecord> part,
                     ReadReplayLog(path, options.on_bad_record, &read, fs));
    stats.skipped_records += read.skipped;
    for (std::string& p : read.problems) {
      if (stats.problems.size() < kMaxProblemsKept)
        stats.problems.push_back(std::move(p));
    }
    for (v1::ReplayRecord& r : part) records.push_back(std::move(r));
  }
  ASSIGN_OR_RETURN(InteractionLog outcomes,
                   ReadInteractionLog(options.outcomes_path, options.mapping));

  // Each user's requests by time (ties in input order).
  absl::flat_hash_map<uint64_t, std::vector<size_t>> by_user;
  for (size_t i = 0; i < records.size(); ++i) {
    by_user[records[i].request().user_id()].push_back(i);
  }
  for (auto& [user, indices] : by_user) {
    std::stable_sort(indices.begin(), indices.end(), [&](size_t a, size_t b) {
      return records[a].time_ms() < records[b].time_ms();
    });
  }

  // Outcome rows per request, in time order (ties in the log's order).
  std::vector<size_t> rows(outcomes.size());
  std::iota(rows.begin(), rows.end(), size_t{0});
  std::stable_sort(rows.begin(), rows.end(), [&](size_t a, size_t b) {
    return outcomes.time_ms[a] < outcomes.time_ms[b];
  });
  const int64_t window_ms = absl::ToInt64Milliseconds(options.window);
  std::vector<std::vector<size_t>> joined(records.size());
  stats.outcomes = static_cast<int64_t>(outcomes.size());
  for (size_t row : rows) {
    auto it = by_user.find(outcomes.users[row]);
    const int64_t t = outcomes.time_ms[row];
    if (it != by_user.end()) {
      const std::vector<size_t>& list = it->second;
      // The last request at or before t; the next one is after t.
      auto after = std::upper_bound(
          list.begin(), list.end(), t,
          [&](int64_t time, size_t r) { return time < records[r].time_ms(); });
      if (after != list.begin()) {
        const size_t r = *(after - 1);
        if (t - records[r].time_ms() < window_ms) {
          joined[r].push_back(row);
          ++stats.outcomes_joined;
          continue;
        }
      }
    }
    ++stats.outcomes_unmatched;
  }

  const int objectives = static_cast<int>(outcomes.objectives.size());
  for (size_t i = 0; i < records.size(); ++i) {
    v1::ReplayRecord& r = records[i];
    r.clear_objectives();
    for (const std::string& name : outcomes.objectives) r.add_objectives(name);
    r.set_positive_objective(outcomes.objectives[outcomes.retrieval_objective]);
    r.clear_outcomes();
    for (size_t row : joined[i]) {
      v1::ReplayOutcome* o = r.add_outcomes();
      o->set_video_id(outcomes.items[row]);
      o->set_time_ms(outcomes.time_ms[row]);
      for (int k = 0; k < objectives; ++k) o->add_labels(outcomes.label(row, k));
    }
    stats.requests_with_outcomes += joined[i].empty() ? 0 : 1;
  }
  stats.requests = static_cast<int64_t>(records.size());

  // Written beside the output and renamed over it: a failed write leaves
  // any earlier output as it was.
  const std::string temp = absl::StrCat(options.out_path, ".partial-", ::getpid());
  absl::Status written = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        std::unique_ptr<ReplayLogWriter> writer,
        ReplayLogWriter::Open(temp, ReplayLogFormatFor(options.out_path), fs));
    for (const v1::ReplayRecord& r : records) RETURN_IF_ERROR(writer->Append(r));
    RETURN_IF_ERROR(writer->Close());
    return fs.Rename(temp, options.out_path);
  }();
  if (!written.ok()) {
    fs.RemoveAll(temp).IgnoreError();
    return written;
  }
  return stats;
}

}  // namespace feedrank

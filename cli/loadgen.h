// `feedrank loadgen`: a gRPC load generator for RankFeed. Closed loop (a
// fixed number of calls in flight) or open loop (a target rate; latency is
// measured from each call's scheduled time, so a slow server cannot hide
// its queueing: no coordinated omission).
#ifndef FEEDRANK_CLI_LOADGEN_H_
#define FEEDRANK_CLI_LOADGEN_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/client.h"

namespace feedrank {

// Every field is checked by RunLoadgen (InvalidArgument naming the field).
// One interval of a run (LoadgenOptions::interval_s): the calls that
// completed in it, warm-up included.
struct LoadgenInterval {
  double end_s = 0;  // seconds since the run started
  int64_t ok = 0;
  int64_t errors = 0;
  int64_t degraded = 0;
  // Latencies of its successful calls, milliseconds (0 without any).
  double p50 = 0, p99 = 0, max = 0;
};

struct LoadgenOptions {
  std::string target;  // host:port; must not be empty
  // TLS to the server (and the admin target); plaintext when no CA file.
  ClientTls tls;
  // Calls in flight (closed loop), or the cap on calls in flight (open loop;
  // beyond it a scheduled call is counted as "client overflow").
  // In [1, 100000].
  int concurrency = 16;
  // Open-loop rate; 0 = closed loop. 0 or in [0.001, 1e6].
  double qps = 0;
  // Stop after this many measured calls (0 = no limit) or this many seconds
  // (0 = no limit), whichever comes first; at least one of them must be set.
  // requests >= 0; duration_s in [0, 1e6].
  int64_t requests = 0;
  double duration_s = 10;
  // Calls scheduled before this many seconds are not measured. In [0, 1e6].
  double warmup_s = 1;
  // Page size asked for. In [0, 1000000]: 0, or more than the server's
  // max_count, measures how fast the server refuses calls.
  int count = 20;
  // Random exclude ids per request. In [0, 1000000].
  int exclude = 0;
  // Per-call deadline. In [1, 3600000].
  int deadline_ms = 1000;
  // Users to ask for (e.g. from a bundle's user_ids.npy); empty = random ids
  // (all cold start).
  std::vector<uint64_t> users;
  // Videos to draw exclude ids from; empty = random ids.
  std::vector<uint64_t> videos;
  // Share of requests for unknown users. In [0, 1].
  double cold_fraction = 0;
  uint64_t seed = 1;
  // How long to wait for the target to report SERVING before the run starts.
  // In (0, 1e6].
  double serving_timeout_s = 30;
  // Live updates streamed during the run (FeedAdmin.UpsertVideos on
  // `admin_target`): new videos per second (0 = none; in [0, 1e6]), in
  // batches of `upsert_batch` ([1, 10000]), random unit embeddings of
  // `upsert_dim` values (the catalogue's dimension; required then). Paced
  // from one thread: the achieved rate is reported.
  std::string admin_target;
  double upserts_per_second = 0;
  int upsert_batch = 100;
  int upsert_dim = 0;
  // 0: every upsert is a new video. Else the ids cycle over this many (in
  // [1, 1e9]): once they have all been sent, each upsert replaces an earlier
  // one, so the live catalogue stops growing (what a soak run wants).
  int64_t upsert_ids = 0;
  // Every `interval_s` seconds (0 = never; else in [0.1, 1e6]) the run calls
  // `on_interval` from a thread of its own with that interval's figures.
  double interval_s = 0;
  std::function<void(const LoadgenInterval&)> on_interval;
};

struct LoadgenReport {
  std::vector<LoadgenInterval> intervals;  // with interval_s
  int64_t ok = 0;
  int64_t degraded = 0;
  std::map<std::string, int64_t> errors;  // by gRPC code name
  double seconds = 0;
  double qps = 0;
  // Latencies of successful calls, milliseconds.
  double p50 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
  // The live-update stream: videos acknowledged, batches refused, the
  // achieved rate and the acknowledgement latency of a batch.
  int64_t upserted = 0;
  int64_t upsert_errors = 0;
  double upsert_rate = 0;
  double upsert_p50 = 0, upsert_p99 = 0;
  LoadgenOptions options;
};

// Runs the load; returns once it is done and gRPC holds no call or callback
// of the run. Every gRPC object of the run (channel, stub, contexts) is
// destroyed before it returns, the channel and stub on the calling thread.
// Thread-safe; concurrent runs each use their own channel.
// Errors: InvalidArgument for bad options (the message names the field);
// Unavailable when the target does not report SERVING within
// options.serving_timeout_s.
absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options);

// Human-readable report (several lines) and a one-line JSON object.
std::string FormatReport(const LoadgenReport& report);
std::string ReportJson(const LoadgenReport& report);
// One line: "interval ..." for people, or a JSON object.
std::string FormatInterval(const LoadgenInterval& interval, bool json);

}  // namespace feedrank

#endif  // FEEDRANK_CLI_LOADGEN_H_

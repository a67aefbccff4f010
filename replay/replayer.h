// The replayer behind `feedrank replay`: logged requests (replay_log.h)
// through several variants — configs, bundles, or running servers — with
// quality against the logged outcomes, latency, paired differences against
// the first variant and per-request page differences (docs/REPLAY.md).
//
// In process, each request runs through the Ranker's own stages (Validate,
// LookUpUser, Retrieve, Score, Assemble: the functions the server calls) on
// `threads` threads, ranked as of the record's time. Against a target, each
// request is sent to the variant's server with gRPC, as fast as it answers
// (`concurrency` in flight) or at the logged arrival times (open loop,
// scaled by `speed`), so a logged day of traffic is also a load test.
//
// Results do not depend on the number of threads or the order requests
// finish in: every figure but the latencies is a function of the inputs and
// the seed.
#ifndef FEEDRANK_REPLAY_REPLAYER_H_
#define FEEDRANK_REPLAY_REPLAYER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "feedrank/v1/config.pb.h"
#include "feedrank/v1/replay.pb.h"
#include "ranking/bundle.h"

namespace feedrank {

struct ReplayVariant {
  std::string name;
  // In process: the config (defaults when config_path is empty) and the
  // bundle to rank with. Against a target: the bundle, when given, only
  // resolves catalogue facts (video age, coverage).
  std::string config_path;
  v1::RankingConfig config;
  std::string bundle_path;
  std::shared_ptr<const Bundle> bundle;
  // host:port of a running server; empty = in process.
  std::string target;
  // The sweep's override, e.g. "ann_beam_width=256" (informational).
  std::string sweep_override;
  // In process, a config with experiment layers ranks each user with their
  // arms (ranking/experiments.h), as the server does; these pins put every
  // user in the given arm of a layer instead (allowed offline whatever the
  // config's allow_pinning).
  std::vector<std::pair<std::string, std::string>> pins;
};

struct ReplayOptions {
  // In-process threads. In [1, 256].
  int threads = 2;
  // Cut-off of the ranking metrics (NDCG@k, recall@k, hit rate@k). In
  // [1, 1000].
  int k = 10;
  // The objective whose positive outcomes are the relevant videos; empty =
  // each record's positive_objective (else its first objective).
  std::string positive_objective;
  uint64_t seed = 1;
  // Bootstrap resamples for every interval. In [100, 100000].
  int bootstrap_resamples = 1000;
  // Latency in the report; off, the report is a pure function of the
  // inputs and the seed.
  bool include_latency = true;
  // Per-request page differences kept per variant. In [0, 10000].
  int top_diffs = 10;
  // Against targets: calls in flight (closed loop, or the cap in open loop),
  // in [1, 10000]; open loop at the logged times, divided by `speed`
  // (> 0; 2 = twice as fast); the per-call deadline in ms, in [1, 3600000].
  int concurrency = 8;
  bool open_loop = false;
  double speed = 1;
  int deadline_ms = 1000;
  // Sweep mode: compute the ANN source's recall against an exact search.
  bool exact_recall = false;
  // Called with (requests done, total) as the replay goes, from the
  // calling thread; may be empty.
  std::function<void(int64_t, int64_t, const std::string& variant)> progress;
};

// Checks `options` (InvalidArgument naming the field).
absl::Status ValidateReplayOptions(const ReplayOptions& options);

// Replays `records` under `variants` (at least one; all in process, or all
// against targets). `log_path` is only reported. Errors: InvalidArgument
// for bad options, variants or a positive objective no record names;
// FailedPrecondition when a variant's config does not resolve against its
// bundle; Unavailable when a target does not serve.
// `pages` (may be null) receives each variant's page for each record
// ([variant][record] -> video ids; empty for a failed call).
using ReplayPages = std::vector<std::vector<std::vector<uint64_t>>>;
absl::StatusOr<v1::ReplayReport> RunReplay(const std::vector<v1::ReplayRecord>& records,
                                           const std::vector<ReplayVariant>& variants,
                                           const ReplayOptions& options,
                                           const std::string& log_path = "",
                                           ReplayPages* pages = nullptr);

// Sets one numeric field of `params` by name (e.g. "ann_beam_width") for a
// sweep. InvalidArgument for an unknown or non-numeric field.
absl::Status SetRankingParam(v1::RankingParams* params, const std::string& field,
                             int64_t value);

// Parses "field=v1,v2,..." (integers). InvalidArgument naming the problem.
absl::StatusOr<std::pair<std::string, std::vector<int64_t>>> ParseSweep(
    const std::string& text);

}  // namespace feedrank

#endif  // FEEDRANK_REPLAY_REPLAYER_H_

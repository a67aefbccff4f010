// RankingOptions: the ranking configuration (config.proto, textproto on disk)
// resolved against a bundle's model, with every default applied and every
// range checked. Resolving is how a config is validated: a config that does
// not resolve is refused whole.
#ifndef FEEDRANK_RANKING_OPTIONS_H_
#define FEEDRANK_RANKING_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/env.h"
#include "feedrank/v1/config.pb.h"
#include "ranking/bf16_gemm.h"

namespace feedrank {

using v1::RankingConfig;
using v1::RankingParams;

struct RankingOptions {
  std::string config_version;
  // Value-model weight of each model objective, in the model's order.
  std::vector<float> objective_weights;
  int default_count = 20;
  int max_count = 200;
  int max_exclude_ids = 10000;
  int ann_candidates = 500;
  int ann_beam_width = 0;  // 0 = the bundle's default
  int ivf_nprobe = 0;      // 0 = the bundle's default
  int popular_candidates = 50;
  // The most trending videos (ranking/engagement.h: most likes at the 6 h
  // half-life, live); none for a bundle without engagement.
  int trending_candidates = 50;
  int fresh_candidates = 20;
  int creator_cap = 2;  // 0 = no cap
  int exclude_pushdown_threshold = 64;
  float freshness_boost = 0;
  float freshness_half_life_hours = 24;
  int min_rerank_candidates = 50;
  int rerank_candidates = -1;  // -1 = all; 0 = no model
  int inject_delay_ms = 0;     // fault injection (the server applies it)
  Precision scoring_precision = Precision::kFloat;
};

// Applies defaults and checks ranges; `objectives` are the model's objective
// names. Errors: InvalidArgument naming the field, e.g.
// "params.max_count: 5000 is outside [1, 1000]".
absl::StatusOr<RankingOptions> ResolveOptions(const RankingConfig& config,
                                              const std::vector<std::string>& objectives);

// Parses a textproto RankingConfig. Errors name the line and column.
absl::StatusOr<RankingConfig> ParseConfig(const std::string& text);

// Reads and parses a textproto file (at most 16 MiB). Errors: those of
// FileSystem::OpenForRead (NotFound, PermissionDenied, FailedPrecondition
// for a FIFO or directory...), InvalidArgument; all name the file.
absl::StatusOr<RankingConfig> ReadConfigFile(const std::string& path,
                                             FileSystem& fs = *FileSystem::Real());

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_OPTIONS_H_

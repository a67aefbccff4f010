// The ranking config textproto (ranking/options.h, ranking/experiments.h):
// parsing, option ranges, and the experiments' layers, arms and overrides.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "cli/synth.h"
#include "fuzz/fuzz_util.h"
#include "ranking/experiments.h"
#include "ranking/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string>& objectives = feedrank::SynthObjectives();
  auto config = feedrank::ParseConfig(std::string(feedrank::fuzz::AsView(data, size)));
  if (!config.ok()) return 0;
  auto options = feedrank::ResolveOptions(*config, objectives);
  if (options.ok() && options->objective_weights.size() != objectives.size())
    std::abort();
  if (!feedrank::ValidateExperiments(*config, objectives).ok()) return 0;
  auto experiments = feedrank::ExperimentConfig::Create(*config, objectives);
  if (!experiments.ok()) return 0;
  // The buckets of each layer's entries sum to kBuckets.
  std::map<std::string, int> buckets;
  for (const feedrank::ArmShare& share : feedrank::BucketShares(*experiments)) {
    if (share.buckets < 0) std::abort();
    buckets[share.layer] += share.buckets;
  }
  for (const auto& [layer, n] : buckets) {
    if (n != feedrank::kBuckets) std::abort();
  }
  feedrank::Assignment assignment;
  for (uint64_t user : {0ull, 1ull, 12345ull, ~0ull})
    (void)experiments->Assign(user, &assignment);
  return 0;
}

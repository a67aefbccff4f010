// Layered A/B experiments (docs/EXPERIMENTS.md): the `layers` of a
// RankingConfig checked and resolved once into an ExperimentConfig, which
// assigns a user id an arm per layer and the effective RankingOptions of that
// combination of arms. Pure functions of (user id, config): the same answer
// across restarts, replicas, builds and replay. No gRPC, no I/O.
//
// A layer hashes the user id with its salt into one of kBuckets buckets
// (Bucket below). Its experiments own disjoint bucket ranges and their arms
// tile those ranges exactly, so a user is in at most one experiment and one
// arm per layer, and every user in an experiment's ranges has an arm. The
// effective params are the config's `params` with the overrides of the
// user's arm in every layer; a field is overridden by one layer only, so the
// order of layers does not matter.
#ifndef FEEDRANK_RANKING_EXPERIMENTS_H_
#define FEEDRANK_RANKING_EXPERIMENTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ranking/options.h"
#include "ranking/ranker.h"

namespace feedrank {

// Buckets of a layer: Bucket() is in [0, kBuckets).
inline constexpr int kBuckets = 10000;

// At most this many distinct arm combinations (the product over layers of
// 1 + the layer's arm count) per config: each is resolved and checked when
// the config is, so that no request resolves a proto.
inline constexpr int64_t kMaxArmCombinations = 10000;

// The bucket of `user_id` in a layer salted `salt`, in [0, kBuckets):
//
//   fnv  = FNV-1a 64 of the salt's bytes (offset basis 0xcbf29ce484222325,
//          prime 0x100000001b3: for each byte, h ^= byte; h *= prime)
//   z    = user_id ^ fnv
//   z   += 0x9e3779b97f4a7c15                      (SplitMix64's finalizer,
//   z    = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9     all arithmetic mod 2^64)
//   z    = (z ^ (z >> 27)) * 0x94d049bb133111eb
//   z   ^= z >> 31
//   bucket = z % 10000
//
// Fixed forever: changing it would move every user of every experiment.
// tests/ranking/experiments_test.cc holds golden values.
int Bucket(uint64_t user_id, absl::string_view salt);

// FNV-1a 64 of `bytes`, as used by Bucket.
uint64_t Fnv1a64(absl::string_view bytes);

// The arm a user is in, in one layer.
struct ArmAssignment {
  std::string layer;
  std::string experiment;
  std::string arm;
  // Index of the arm among all arms of the config (layer by layer, in config
  // order), in [0, ExperimentConfig::arm_count()).
  int id = 0;
  // The control arm that serves this arm's users instead, when a guardrail
  // reverted it (ExperimentConfig::Create's `reverted`); empty otherwise.
  std::string reverted_to;
};

// The result of ExperimentConfig::Assign. Its pointers point into the
// ExperimentConfig that filled it and are valid while that lives.
struct Assignment {
  // One entry per layer, in the config's order: the user's arm, or nullptr
  // when their bucket is in no experiment of the layer (they get the
  // defaults for that layer's fields).
  std::vector<const ArmAssignment*> arms;
  // The effective options of this combination of arms: the config's params
  // with each arm's overrides, resolved against the default model.
  const RankingOptions* options = nullptr;
  // Name of the RankingConfig.bundles entry that ranks the request; empty =
  // the default bundle.
  absl::string_view bundle;
  // True when a pin chose the arm of at least one layer: the request says
  // nothing about the arms' effect and belongs in no experiment metric.
  bool pinned = false;
  // Index of the combination in [0, ExperimentConfig::combination_count()):
  // equal for two requests exactly when every layer gave them the same arm.
  int combination = 0;
};

// The share of a layer's buckets each arm gets.
struct ArmShare {
  std::string layer;
  // Both empty for the layer's buckets in no experiment.
  std::string experiment;
  std::string arm;
  int buckets = 0;
  double share = 0;  // buckets / kBuckets
};

// A layer's arm chosen by the request (layer name, arm name), for QA; only
// when the config allows pinning.
using ArmPin = std::pair<std::string, std::string>;

// The experiments of one RankingConfig, checked, with the options of every
// combination of arms resolved. Immutable once created; Assign is const and
// safe to call from any number of threads.
class ExperimentConfig {
 public:
  // Checks the config's params, bundles and layers against `objectives`, the
  // objective names of the default bundle's model, and resolves every
  // combination of arms. Errors: InvalidArgument naming the path and the
  // values of the first thing wrong, e.g. "layers[1] 'ranking':
  // experiments[0] 'beam' ranges[0] [4000, 6000) overlaps experiments[2]
  // 'fresh' ranges[0] [5000, 7000)"; those of ResolveOptions for `params`.
  // The rules are listed in docs/EXPERIMENTS.md. A config without layers is
  // valid: one combination, the default options.
  //
  // `reverted` names arms (layer, arm) whose users are served with their
  // experiment's control arm instead (its overrides and bundle) while they
  // stay assigned to, and reported as, their own arm (ArmAssignment::
  // reverted_to): what a guardrail does. Names no longer in the config are
  // ignored; a control arm is never reverted.
  static absl::StatusOr<ExperimentConfig> Create(
      const RankingConfig& config, const std::vector<std::string>& objectives,
      const std::vector<std::pair<std::string, std::string>>& reverted = {});

  ExperimentConfig(ExperimentConfig&&) = default;
  ExperimentConfig& operator=(ExperimentConfig&&) = default;

  // Fills `out` with the arm of `user_id` in every layer (a pinned layer
  // takes the pinned arm, whatever the bucket) and the effective options.
  // Allocates nothing when `out->arms` already has capacity for the layers
  // (as after an earlier call with the same `out`): a bucket is one hash and
  // a table lookup per layer, the options are precomputed.
  // Errors (InvalidArgument, `out` unchanged): a pin while the config does
  // not allow pinning, a pin naming an unknown layer or an arm that layer
  // does not have, two pins of one layer.
  // REQUIRES: out != nullptr.
  absl::Status Assign(uint64_t user_id, const std::vector<ArmPin>& pins,
                      Assignment* out) const;
  absl::Status Assign(uint64_t user_id, Assignment* out) const {
    return Assign(user_id, {}, out);
  }

  // The options of users in no experiment of any layer (the config's params).
  const RankingOptions& default_options() const { return combinations_[0].options; }
  // The options of combination `c` (Assignment::combination), in
  // [0, combination_count()).
  const RankingOptions& combination_options(int c) const {
    return combinations_[c].options;
  }
  // The RankingConfig.bundles name combination `c` ranks with; empty = the
  // default bundle.
  const std::string& combination_bundle(int c) const { return combinations_[c].bundle; }
  int layer_count() const { return static_cast<int>(layers_.size()); }
  // Every arm of the config, by ArmAssignment::id.
  int arm_count() const { return static_cast<int>(arm_ids_.size()); }
  const ArmAssignment& arm(int id) const {
    return layers_[arm_ids_[id].first].arms[arm_ids_[id].second].names;
  }
  // The arm's guardrail; null when it has none.
  const v1::Guardrail* guardrail(int id) const {
    const ArmInfo& a = layers_[arm_ids_[id].first].arms[arm_ids_[id].second];
    return a.has_guardrail ? &a.guardrail : nullptr;
  }
  // A fingerprint of what arm `id` serves: its overrides, bundle and
  // guardrail. A guardrail trip holds while it is unchanged.
  uint64_t arm_fingerprint(int id) const {
    return layers_[arm_ids_[id].first].arms[arm_ids_[id].second].fingerprint;
  }
  int combination_count() const { return static_cast<int>(combinations_.size()); }
  bool allow_pinning() const { return allow_pinning_; }

 private:
  friend class ExperimentConfigBuilder;
  friend std::vector<ArmShare> BucketShares(const ExperimentConfig& config);

  struct ArmInfo {
    ArmAssignment names;
    int experiment = 0;  // index in the layer's experiments
    int buckets = 0;
    bool has_guardrail = false;
    v1::Guardrail guardrail;
    uint64_t fingerprint = 0;
  };
  struct LayerInfo {
    std::string name;
    uint64_t salt_hash = 0;
    std::vector<std::string> experiments;
    std::vector<int> experiment_buckets;  // parallel to experiments
    std::vector<ArmInfo> arms;            // every arm of every experiment
    // kBuckets entries: 0 = no experiment, else 1 + the index in `arms`.
    std::vector<uint16_t> choice_of_bucket;
    int64_t stride = 1;  // of this layer's choice in a combination index
  };
  struct Combination {
    RankingOptions options;
    std::string bundle;
  };

  ExperimentConfig() = default;
  // The index of the layer named `name`, or -1.
  int FindLayer(absl::string_view name) const;
  // 1 + the index in layers_[layer].arms of the arm named `name`, or 0.
  int FindArm(int layer, absl::string_view name) const;

  bool allow_pinning_ = false;
  std::vector<LayerInfo> layers_;
  // Indexed by sum over layers of choice * stride.
  std::vector<Combination> combinations_;
  // ArmAssignment::id -> (layer, index in its arms).
  std::vector<std::pair<int, int>> arm_ids_;
};

// Validates the experiments of a config; the status of
// ExperimentConfig::Create, without keeping the result.
absl::Status ValidateExperiments(const RankingConfig& config,
                                 const std::vector<std::string>& objectives);

// For every layer in order: one entry per arm of each experiment, in config
// order, then one for the buckets in no experiment (also when there are
// none). The buckets of a layer's entries sum to kBuckets.
std::vector<ArmShare> BucketShares(const ExperimentConfig& config);

// One Ranker per combination of arms, indexed by Assignment::combination,
// so that no request resolves or checks anything. `bundle_for` gives the
// bundle of a combination's bundle name ("" = the default); all share
// `costs` and `clock`. Errors: those of `bundle_for` and Ranker::Create.
using BundleLookup =
    std::function<absl::StatusOr<std::shared_ptr<const Bundle>>(const std::string& name)>;
absl::StatusOr<std::vector<std::unique_ptr<Ranker>>> CreateArmRankers(
    const ExperimentConfig& experiments, const BundleLookup& bundle_for,
    const RankerCosts& costs, const Clock* clock);

}  // namespace feedrank

#endif  // FEEDRANK_RANKING_EXPERIMENTS_H_

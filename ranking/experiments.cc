#include "ranking/experiments.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/reflection.h>

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int BucketOfHash(uint64_t user_id, uint64_t salt_hash) {
  return static_cast<int>(Mix64(user_id ^ salt_hash) % kBuckets);
}

std::string RangeText(const v1::BucketRange& r) {
  return absl::StrCat("[", r.begin(), ", ", r.end(), ")");
}

// "ranges[2] [100, 200)"
std::string RangeRef(int index, const v1::BucketRange& r) {
  return absl::StrCat("ranges[", index, "] ", RangeText(r));
}

absl::Status CheckRange(const std::string& path, int index, const v1::BucketRange& r) {
  if (r.end() > static_cast<uint32_t>(kBuckets)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " ", RangeRef(index, r), " is outside [0, ", kBuckets, ")"));
  }
  if (r.begin() >= r.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " ", RangeRef(index, r), " is empty (begin must be < end)"));
  }
  return absl::OkStatus();
}

// The fields an arm overrides, each as a conflict key: a RankingParams field
// name, "objective_weights['KEY']" per weight, "bundle".
std::vector<std::string> OverriddenFields(const v1::Arm& arm) {
  std::vector<std::string> fields;
  const RankingParams& p = arm.overrides();
  const google::protobuf::Descriptor* d = p.GetDescriptor();
  const google::protobuf::Reflection* r = p.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;  // the map, below
    if (r->HasField(p, f)) fields.push_back(f->name());
  }
  std::vector<std::string> keys;
  for (const auto& [key, weight] : p.objective_weights()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());  // map order is unspecified
  for (const std::string& key : keys) {
    fields.push_back(absl::StrCat("objective_weights['", key, "']"));
  }
  if (!arm.bundle().empty()) fields.push_back("bundle");
  return fields;
}

}  // namespace

uint64_t Fnv1a64(absl::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

int Bucket(uint64_t user_id, absl::string_view salt) {
  return BucketOfHash(user_id, Fnv1a64(salt));
}

// Checks a RankingConfig and fills an ExperimentConfig, rule by rule; the
// first error wins.
class ExperimentConfigBuilder {
 public:
  ExperimentConfigBuilder(
      const RankingConfig& config, const std::vector<std::string>& objectives,
      const std::vector<std::pair<std::string, std::string>>& reverted)
      : config_(config), objectives_(objectives), reverted_(reverted) {}

  absl::StatusOr<ExperimentConfig> Build() {
    // The defaults first: an arm's error then always concerns the arm.
    RETURN_IF_ERROR(ResolveOptions(config_, objectives_).status());
    base_ = config_.params();
    if (base_.objective_weights().empty()) {
      // Empty means 1.0 for every objective; spelled out so that an arm
      // overriding one key keeps the others at 1.0 rather than 0.
      for (const std::string& o : objectives_)
        (*base_.mutable_objective_weights())[o] = 1.f;
    }
    RETURN_IF_ERROR(CheckBundles());
    out_.allow_pinning_ = config_.allow_pinning();
    arm_protos_.resize(config_.layers_size());
    arm_paths_.resize(config_.layers_size());
    for (int l = 0; l < config_.layers_size(); ++l) RETURN_IF_ERROR(CheckLayer(l));
    RETURN_IF_ERROR(CheckFieldOwners());
    RETURN_IF_ERROR(ResolveCombinations());
    return std::move(out_);
  }

 private:
  using LayerInfo = ExperimentConfig::LayerInfo;
  using ArmInfo = ExperimentConfig::ArmInfo;

  absl::Status CheckBundles() {
    absl::flat_hash_map<std::string, int> seen;
    for (int i = 0; i < config_.bundles_size(); ++i) {
      const v1::BundleRef& b = config_.bundles(i);
      std::string path = absl::StrCat("bundles[", i, "]");
      if (b.name().empty()) return absl::InvalidArgumentError(path + ": name is empty");
      absl::StrAppend(&path, " '", b.name(), "'");
      auto [it, inserted] = seen.emplace(b.name(), i);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": name is also that of bundles[", it->second, "]"));
      }
      if (b.dir().empty()) return absl::InvalidArgumentError(path + ": dir is empty");
      bundle_names_.push_back(b.name());
    }
    return absl::OkStatus();
  }

  std::string LayerPath(int l) const {
    return absl::StrCat("layers[", l, "] '", config_.layers(l).name(), "'");
  }
  std::string ExperimentRef(int l, int e) const {
    return absl::StrCat("experiments[", e, "] '", config_.layers(l).experiments(e).name(),
                        "'");
  }
  std::string ArmRef(int l, int e, int a) const {
    return absl::StrCat("arms[", a, "] '",
                        config_.layers(l).experiments(e).arms(a).name(), "'");
  }

  absl::Status CheckLayer(int l) {
    const v1::Layer& layer = config_.layers(l);
    if (layer.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("layers[", l, "]: name is empty"));
    }
    const std::string path = LayerPath(l);
    for (int k = 0; k < l; ++k) {
      if (config_.layers(k).name() == layer.name()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": name is also that of layers[", k, "]"));
      }
    }
    if (layer.salt().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path,
          ": salt is empty; it is required (a user's bucket is a hash of their id "
          "and the salt)"));
    }
    for (int k = 0; k < l; ++k) {
      if (config_.layers(k).salt() == layer.salt()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": salt '", layer.salt(), "' is also that of ", LayerPath(k),
            "; layers with one salt would bucket every user alike"));
      }
    }

    LayerInfo info;
    info.name = layer.name();
    info.salt_hash = Fnv1a64(layer.salt());
    info.choice_of_bucket.assign(kBuckets, 0);
    // Which experiment range owns each bucket: (experiment, range) + 1.
    std::vector<std::pair<int, int>> owner(kBuckets, {-1, -1});
    absl::flat_hash_map<std::string, std::string> arm_refs;  // name -> where
    for (int e = 0; e < layer.experiments_size(); ++e) {
      const v1::Experiment& ex = layer.experiments(e);
      const std::string epath = absl::StrCat(path, ": ", ExperimentRef(l, e));
      if (ex.name().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": experiments[", e, "]: name is empty"));
      }
      for (int k = 0; k < e; ++k) {
        if (layer.experiments(k).name() == ex.name()) {
          return absl::InvalidArgumentError(
              absl::StrCat(epath, ": name is also that of experiments[", k, "]"));
        }
      }
      if (ex.ranges().empty()) {
        return absl::InvalidArgumentError(epath + ": has no ranges");
      }
      int experiment_buckets = 0;
      for (int r = 0; r < ex.ranges_size(); ++r) {
        const v1::BucketRange& range = ex.ranges(r);
        RETURN_IF_ERROR(CheckRange(epath, r, range));
        for (uint32_t b = range.begin(); b < range.end(); ++b) {
          if (owner[b].first >= 0) {
            const auto [oe, orr] = owner[b];
            return absl::InvalidArgumentError(
                absl::StrCat(path, ": ", ExperimentRef(l, oe), " ",
                             RangeRef(orr, layer.experiments(oe).ranges(orr)),
                             " overlaps ", ExperimentRef(l, e), " ", RangeRef(r, range)));
          }
          owner[b] = {e, r};
        }
        experiment_buckets += range.end() - range.begin();
      }
      if (ex.arms().empty()) {
        return absl::InvalidArgumentError(epath + ": has no arms");
      }

      // Which arm range holds each bucket of this experiment.
      absl::flat_hash_map<uint32_t, std::pair<int, int>> arm_of_bucket;
      for (int a = 0; a < ex.arms_size(); ++a) {
        const v1::Arm& arm = ex.arms(a);
        if (arm.name().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat(epath, " arms[", a, "]: name is empty"));
        }
        const std::string apath = absl::StrCat(epath, " ", ArmRef(l, e, a));
        auto [it, inserted] = arm_refs.emplace(
            arm.name(), absl::StrCat(ExperimentRef(l, e), " ", ArmRef(l, e, a)));
        if (!inserted) {
          return absl::InvalidArgumentError(absl::StrCat(
              apath, ": name is also that of ", it->second,
              " (arm names are unique within a layer: a pin names a layer and an arm)"));
        }
        if (!arm.bundle().empty() && std::find(bundle_names_.begin(), bundle_names_.end(),
                                               arm.bundle()) == bundle_names_.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat(apath, ": bundle '", arm.bundle(), "' is not among bundles (",
                           absl::StrJoin(bundle_names_, ", "), ")"));
        }
        int arm_buckets = 0;
        for (int r = 0; r < arm.ranges_size(); ++r) {
          const v1::BucketRange& range = arm.ranges(r);
          RETURN_IF_ERROR(CheckRange(apath, r, range));
          for (uint32_t b = range.begin(); b < range.end(); ++b) {
            if (owner[b].first != e) {
              return absl::InvalidArgumentError(absl::StrCat(
                  apath, " ", RangeRef(r, range),
                  " is not within the experiment's ranges (",
                  absl::StrJoin(ex.ranges(), ", ",
                                [](std::string* out, const v1::BucketRange& x) {
                                  absl::StrAppend(out, RangeText(x));
                                }),
                  "): bucket ", b, " is not"));
            }
            auto [at, fresh] = arm_of_bucket.emplace(b, std::make_pair(a, r));
            if (!fresh) {
              const auto [oa, orr] = at->second;
              return absl::InvalidArgumentError(
                  absl::StrCat(epath, " ", ArmRef(l, e, oa), " ",
                               RangeRef(orr, ex.arms(oa).ranges(orr)), " overlaps ",
                               ArmRef(l, e, a), " ", RangeRef(r, range)));
            }
            info.choice_of_bucket[b] = static_cast<uint16_t>(info.arms.size() + 1);
          }
          arm_buckets += range.end() - range.begin();
        }
        // The arm alone over the defaults, so that its error names it.
        RankingConfig alone;
        *alone.mutable_params() = base_;
        alone.mutable_params()->MergeFrom(arm.overrides());
        auto resolved = ResolveOptions(alone, objectives_);
        if (!resolved.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(apath, ": with its overrides, ", resolved.status().message()));
        }
        ArmInfo arm_info;
        arm_info.names.layer = layer.name();
        arm_info.names.experiment = ex.name();
        arm_info.names.arm = arm.name();
        arm_info.names.id = static_cast<int>(out_.arm_ids_.size());
        out_.arm_ids_.emplace_back(l, static_cast<int>(info.arms.size()));
        {
          v1::Arm what;
          *what.mutable_overrides() = arm.overrides();
          what.set_bundle(arm.bundle());
          *what.mutable_guardrail() = arm.guardrail();
          // Deterministic bytes (maps sorted), hashed.
          std::string bytes;
          google::protobuf::io::StringOutputStream stream(&bytes);
          google::protobuf::io::CodedOutputStream coded(&stream);
          coded.SetSerializationDeterministic(true);
          what.SerializeToCodedStream(&coded);
          coded.Trim();
          arm_info.fingerprint = Fnv1a64(bytes);
        }
        arm_info.experiment = e;
        arm_info.buckets = arm_buckets;
        info.arms.push_back(std::move(arm_info));
        arm_protos_[l].push_back(&arm);
        arm_paths_[l].push_back(apath);
      }
      RETURN_IF_ERROR(CheckControlAndGuardrails(l, e, epath, &info));
      if (static_cast<int>(arm_of_bucket.size()) != experiment_buckets) {
        // The first run of the experiment's buckets that no arm holds.
        int b = 0;
        while (b < kBuckets && !(owner[b].first == e && !arm_of_bucket.contains(b))) ++b;
        int end = b;
        while (end < kBuckets && owner[end].first == e && !arm_of_bucket.contains(end)) {
          ++end;
        }
        return absl::InvalidArgumentError(
            absl::StrCat(epath, ": buckets [", b, ", ", end,
                         ") are in no arm; the arms' ranges must split the experiment's "
                         "ranges exactly"));
      }
      info.experiments.push_back(ex.name());
      info.experiment_buckets.push_back(experiment_buckets);
    }
    out_.layers_.push_back(std::move(info));
    return absl::OkStatus();
  }

  // A field is overridden by the arms of one layer only: otherwise the
  // effective value of a user in both would depend on the layers' order.
  absl::Status CheckFieldOwners() {
    absl::flat_hash_map<std::string, std::pair<int, std::string>> owners;
    for (int l = 0; l < static_cast<int>(arm_protos_.size()); ++l) {
      for (size_t a = 0; a < arm_protos_[l].size(); ++a) {
        for (const std::string& field : OverriddenFields(*arm_protos_[l][a])) {
          auto [it, inserted] =
              owners.emplace(field, std::make_pair(l, arm_paths_[l][a]));
          if (!inserted && it->second.first != l) {
            return absl::InvalidArgumentError(absl::StrCat(
                arm_paths_[l][a], " overrides ", field, ", which ", it->second.second,
                " overrides too; a field belongs to one layer"));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status ResolveCombinations() {
    int64_t count = 1;
    for (LayerInfo& layer : out_.layers_) {
      layer.stride = count;
      count *= static_cast<int64_t>(layer.arms.size()) + 1;
      if (count > kMaxArmCombinations) {
        std::vector<std::string> sizes;
        for (size_t l = 0; l < out_.layers_.size(); ++l) {
          sizes.push_back(
              absl::StrCat(LayerPath(l), " ", out_.layers_[l].arms.size() + 1));
        }
        return absl::InvalidArgumentError(
            absl::StrCat("layers: more than ", kMaxArmCombinations,
                         " combinations of arms (the product over layers of 1 + arms: ",
                         absl::StrJoin(sizes, ", "), ")"));
      }
    }
    out_.combinations_.reserve(count);
    std::vector<int> choice(out_.layers_.size());
    for (int64_t index = 0; index < count; ++index) {
      RankingConfig combined;
      combined.set_version(config_.version());
      *combined.mutable_params() = base_;
      ExperimentConfig::Combination c;
      std::vector<std::string> names;
      for (size_t l = 0; l < out_.layers_.size(); ++l) {
        const LayerInfo& layer = out_.layers_[l];
        choice[l] = static_cast<int>(index / layer.stride % (layer.arms.size() + 1));
        if (choice[l] == 0) continue;
        const v1::Arm& assigned = *arm_protos_[l][choice[l] - 1];
        const int served = served_arm_[l][choice[l] - 1];
        const v1::Arm& arm = *arm_protos_[l][served];
        combined.mutable_params()->MergeFrom(arm.overrides());
        if (!arm.bundle().empty()) c.bundle = arm.bundle();
        names.push_back(absl::StrCat(
            LayerPath(l), " arm '", assigned.name(), "'",
            &arm == &assigned ? "" : absl::StrCat(" (reverted to '", arm.name(), "')")));
      }
      auto resolved = ResolveOptions(combined, objectives_);
      if (!resolved.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            absl::StrJoin(names, " with "), ": together, ", resolved.status().message()));
      }
      c.options = *std::move(resolved);
      out_.combinations_.push_back(std::move(c));
    }
    return absl::OkStatus();
  }

  // The control arm of experiment `e` of layer `l`, and the guardrails of
  // its arms; marks the reverted arms (served_arm_).
  absl::Status CheckControlAndGuardrails(int l, int e, const std::string& epath,
                                         LayerInfo* info) {
    const v1::Layer& layer = config_.layers(l);
    const v1::Experiment& ex = layer.experiments(e);
    // The experiment's arms are the last ex.arms_size() of the layer's.
    const int first = static_cast<int>(info->arms.size()) - ex.arms_size();
    int control = 0;
    if (!ex.control().empty()) {
      control = -1;
      for (int a = 0; a < ex.arms_size(); ++a) {
        if (ex.arms(a).name() == ex.control()) control = a;
      }
      if (control < 0) {
        std::vector<std::string> names;
        for (const v1::Arm& arm : ex.arms()) names.push_back(arm.name());
        return absl::InvalidArgumentError(absl::StrCat(epath, ": control '", ex.control(),
                                                       "' is not one of its arms (",
                                                       absl::StrJoin(names, ", "), ")"));
      }
    }
    served_arm_.resize(config_.layers_size());
    for (int a = 0; a < ex.arms_size(); ++a) {
      const v1::Arm& arm = ex.arms(a);
      const std::string apath = absl::StrCat(epath, " ", ArmRef(l, e, a));
      ArmInfo& arm_info = info->arms[first + a];
      bool reverted = false;
      for (const auto& r : reverted_) {
        if (r.first == layer.name() && r.second == arm.name() && a != control)
          reverted = true;
      }
      served_arm_[l].push_back(reverted ? first + control : first + a);
      if (reverted) arm_info.names.reverted_to = ex.arms(control).name();
      if (!arm.has_guardrail()) continue;
      const v1::Guardrail& g = arm.guardrail();
      const std::string gpath = apath + ": guardrail";
      if (a == control) {
        return absl::InvalidArgumentError(absl::StrCat(
            gpath,
            " is set on the experiment's control arm, which users are moved back to"));
      }
      auto share = [&](const char* name, float v) -> absl::Status {
        if (!std::isfinite(v) || v < 0 || v > 1) {
          return absl::InvalidArgumentError(
              absl::StrCat(gpath, ".", name, ": ", v, " is outside (0, 1]"));
        }
        return absl::OkStatus();
      };
      if (!std::isfinite(g.max_p99_ms()) || g.max_p99_ms() < 0 ||
          g.max_p99_ms() > 600000) {
        return absl::InvalidArgumentError(absl::StrCat(
            gpath, ".max_p99_ms: ", g.max_p99_ms(), " is outside (0, 600000]"));
      }
      RETURN_IF_ERROR(share("max_error_rate", g.max_error_rate()));
      RETURN_IF_ERROR(share("max_degraded_share", g.max_degraded_share()));
      if (g.max_p99_ms() == 0 && g.max_error_rate() == 0 && g.max_degraded_share() == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            gpath, ": sets no limit (max_p99_ms, max_error_rate, max_degraded_share)"));
      }
      arm_info.guardrail = g;
      if (g.window_seconds() == 0) arm_info.guardrail.set_window_seconds(60);
      if (arm_info.guardrail.window_seconds() > 3600) {
        return absl::InvalidArgumentError(absl::StrCat(
            gpath, ".window_seconds: ", g.window_seconds(), " is outside [1, 3600]"));
      }
      if (g.min_calls() == 0) arm_info.guardrail.set_min_calls(100);
      arm_info.has_guardrail = true;
    }
    return absl::OkStatus();
  }

  const RankingConfig& config_;
  const std::vector<std::string>& objectives_;
  const std::vector<std::pair<std::string, std::string>>& reverted_;
  // Per layer, per arm (as LayerInfo::arms): the index of the arm whose
  // overrides serve it (its own, or its control's when reverted).
  std::vector<std::vector<int>> served_arm_;
  RankingParams base_;  // config_.params with the weights spelled out
  std::vector<std::string> bundle_names_;
  // Per layer, per arm (as LayerInfo::arms): the proto and its path.
  std::vector<std::vector<const v1::Arm*>> arm_protos_;
  std::vector<std::vector<std::string>> arm_paths_;
  ExperimentConfig out_;
};

absl::StatusOr<ExperimentConfig> ExperimentConfig::Create(
    const RankingConfig& config, const std::vector<std::string>& objectives,
    const std::vector<std::pair<std::string, std::string>>& reverted) {
  return ExperimentConfigBuilder(config, objectives, reverted).Build();
}

absl::Status ValidateExperiments(const RankingConfig& config,
                                 const std::vector<std::string>& objectives) {
  return ExperimentConfig::Create(config, objectives).status();
}

int ExperimentConfig::FindLayer(absl::string_view name) const {
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].name == name) return static_cast<int>(l);
  }
  return -1;
}

int ExperimentConfig::FindArm(int layer, absl::string_view name) const {
  const std::vector<ArmInfo>& arms = layers_[layer].arms;
  for (size_t a = 0; a < arms.size(); ++a) {
    if (arms[a].names.arm == name) return static_cast<int>(a) + 1;
  }
  return 0;
}

absl::Status ExperimentConfig::Assign(uint64_t user_id, const std::vector<ArmPin>& pins,
                                      Assignment* out) const {
  // Every pin checked before `out` is touched.
  for (size_t i = 0; i < pins.size(); ++i) {
    // Named references, not a structured binding: clang 14 cannot capture
    // one in a lambda.
    const std::string& layer_name = pins[i].first;
    const std::string& arm_name = pins[i].second;
    auto path = [&, i = i] {
      return absl::StrCat("pins[", i, "] '", layer_name, "' -> '", arm_name, "'");
    };
    if (!allow_pinning_) {
      return absl::InvalidArgumentError(absl::StrCat(
          path(), ": this config does not allow pinning (allow_pinning is false)"));
    }
    const int l = FindLayer(layer_name);
    if (l < 0) {
      std::vector<absl::string_view> names;
      for (const LayerInfo& layer : layers_) names.push_back(layer.name);
      return absl::InvalidArgumentError(
          absl::StrCat(path(), ": there is no layer '", layer_name,
                       "' (layers: ", absl::StrJoin(names, ", "), ")"));
    }
    if (FindArm(l, arm_name) == 0) {
      std::vector<absl::string_view> names;
      for (const ArmInfo& arm : layers_[l].arms) names.push_back(arm.names.arm);
      return absl::InvalidArgumentError(
          absl::StrCat(path(), ": layer '", layer_name, "' has no arm '", arm_name,
                       "' (arms: ", absl::StrJoin(names, ", "), ")"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (pins[j].first == layer_name) {
        return absl::InvalidArgumentError(
            absl::StrCat(path(), ": layer '", layer_name, "' is already pinned by pins[",
                         j, "] '", pins[j].first, "' -> '", pins[j].second, "'"));
      }
    }
  }

  out->arms.resize(layers_.size());
  int64_t index = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerInfo& layer = layers_[l];
    int choice = layer.choice_of_bucket[BucketOfHash(user_id, layer.salt_hash)];
    for (const ArmPin& pin : pins) {
      if (pin.first == layer.name) choice = FindArm(static_cast<int>(l), pin.second);
    }
    out->arms[l] = choice == 0 ? nullptr : &layer.arms[choice - 1].names;
    index += choice * layer.stride;
  }
  const Combination& c = combinations_[index];
  out->options = &c.options;
  out->bundle = c.bundle;
  out->pinned = !pins.empty();
  out->combination = static_cast<int>(index);
  return absl::OkStatus();
}

std::vector<ArmShare> BucketShares(const ExperimentConfig& config) {
  std::vector<ArmShare> shares;
  for (const ExperimentConfig::LayerInfo& layer : config.layers_) {
    int in_experiments = 0;
    for (int b : layer.experiment_buckets) in_experiments += b;
    for (const ExperimentConfig::ArmInfo& arm : layer.arms) {
      shares.push_back({layer.name, arm.names.experiment, arm.names.arm, arm.buckets,
                        static_cast<double>(arm.buckets) / kBuckets});
    }
    const int free = kBuckets - in_experiments;
    shares.push_back({layer.name, "", "", free, static_cast<double>(free) / kBuckets});
  }
  return shares;
}

absl::StatusOr<std::vector<std::unique_ptr<Ranker>>> CreateArmRankers(
    const ExperimentConfig& experiments, const BundleLookup& bundle_for,
    const RankerCosts& costs, const Clock* clock) {
  std::vector<std::unique_ptr<Ranker>> rankers(experiments.combination_count());
  for (int c = 0; c < experiments.combination_count(); ++c) {
    ASSIGN_OR_RETURN(std::shared_ptr<const Bundle> bundle,
                     bundle_for(experiments.combination_bundle(c)));
    ASSIGN_OR_RETURN(
        rankers[c],
        Ranker::Create(std::move(bundle),
                       RankerOptions{experiments.combination_options(c), costs, clock}));
  }
  return rankers;
}

}  // namespace feedrank

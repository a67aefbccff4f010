#include "ranking/options.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "embeddings/catalog.h"
#include "ranking/engagement.h"

namespace feedrank {
namespace {

// Collects the first parse error with its position.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (error_.empty()) {
      error_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
    }
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::Status Range(const char* field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", field, ": ", value, " is outside [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RankingOptions> ResolveOptions(
    const RankingConfig& config, const std::vector<std::string>& objectives) {
  const RankingParams& p = config.params();
  RankingOptions o;
  o.config_version = config.version();
#define FEEDRANK_TAKE(field, lo, hi)                   \
  if (p.has_##field()) {                               \
    absl::Status s = Range(#field, p.field(), lo, hi); \
    if (!s.ok()) return s;                             \
    o.field = static_cast<int>(p.field());             \
  }
  FEEDRANK_TAKE(max_count, 1, 1000)
  FEEDRANK_TAKE(default_count, 1, o.max_count)
  FEEDRANK_TAKE(max_exclude_ids, 0, 1000000)
  FEEDRANK_TAKE(ann_candidates, 0, 10000)
  FEEDRANK_TAKE(ann_beam_width, 0, 20000)
  FEEDRANK_TAKE(ivf_nprobe, 0, 1000000)
  FEEDRANK_TAKE(popular_candidates, 0, Catalog::kListLength)
  FEEDRANK_TAKE(trending_candidates, 0, kTrendingTop)
  FEEDRANK_TAKE(fresh_candidates, 0, Catalog::kListLength)
  FEEDRANK_TAKE(creator_cap, 0, 1000)
  FEEDRANK_TAKE(exclude_pushdown_threshold, 0, 1000000)
  FEEDRANK_TAKE(min_rerank_candidates, 0, 10000)
  FEEDRANK_TAKE(rerank_candidates, 0, 100000)
  FEEDRANK_TAKE(inject_delay_ms, 0, 10000)
#undef FEEDRANK_TAKE
  if (o.default_count > o.max_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "params.default_count: ", o.default_count, " exceeds max_count ", o.max_count));
  }
  if (o.ann_candidates + o.popular_candidates + o.fresh_candidates == 0) {
    return absl::InvalidArgumentError(
        "params: ann_candidates, popular_candidates and fresh_candidates are "
        "all 0; no source would produce candidates");
  }
  if (p.has_freshness_boost()) {
    if (!std::isfinite(p.freshness_boost()) || p.freshness_boost() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "params.freshness_boost: ", p.freshness_boost(), " must be finite and >= 0"));
    }
    o.freshness_boost = p.freshness_boost();
  }
  if (p.has_freshness_half_life_hours()) {
    if (!std::isfinite(p.freshness_half_life_hours()) ||
        p.freshness_half_life_hours() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "params.freshness_half_life_hours: ", p.freshness_half_life_hours(),
          " must be finite and > 0"));
    }
    o.freshness_half_life_hours = p.freshness_half_life_hours();
  }
  if (p.has_scoring_precision()) {
    const std::string& precision = p.scoring_precision();
    if (precision == "float") {
      o.scoring_precision = Precision::kFloat;
    } else if (precision == "bf16") {
      if (!bf16::Supported()) {
        return absl::InvalidArgumentError(
            "params.scoring_precision: bf16 needs a CPU with AVX512-BF16, and this "
            "one has none; use float");
      }
      o.scoring_precision = Precision::kBf16;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "params.scoring_precision: '", precision, "' is not one of float, bf16"));
    }
  }
  if (p.objective_weights().empty()) {
    o.objective_weights.assign(objectives.size(), 1.f);
  } else {
    o.objective_weights.assign(objectives.size(), 0.f);
    for (const auto& [name, weight] : p.objective_weights()) {
      auto it = std::find(objectives.begin(), objectives.end(), name);
      if (it == objectives.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "params.objective_weights: '", name, "' is not an objective of the model (",
            absl::StrJoin(objectives, ", "), ")"));
      }
      if (!std::isfinite(weight)) {
        return absl::InvalidArgumentError(absl::StrCat("params.objective_weights['", name,
                                                       "']: ", weight, " is not finite"));
      }
      o.objective_weights[it - objectives.begin()] = weight;
    }
  }
  return o;
}

absl::StatusOr<RankingConfig> ParseConfig(const std::string& text) {
  RankingConfig config;
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(
        errors.error().empty() ? std::string("cannot parse config") : errors.error());
  }
  return config;
}

absl::StatusOr<RankingConfig> ReadConfigFile(const std::string& path, FileSystem& fs) {
  auto text = ReadFileToString(fs, path, 16 << 20);
  if (!text.ok()) return text.status();
  // An empty file is a valid textproto (every default), and also what an
  // editor that truncates and rewrites in place leaves for a moment: a
  // watcher reading it then would serve the defaults. Refused; a config of
  // defaults says so with at least its version.
  if (absl::StripAsciiWhitespace(*text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": the config file is empty (a write in progress? write configs to a "
        "temporary file and rename it over this one); a config of defaults names at "
        "least its version"));
  }
  auto config = ParseConfig(*text);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

}  // namespace feedrank

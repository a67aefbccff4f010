#include "cli/replay_cmd.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/env.h"
#include "base/log.h"
#include "base/quote.h"
#include "base/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/type_resolver_util.h"
#include "ranking/bundle.h"
#include "ranking/options.h"
#include "replay/replay_log.h"
#include "replay/report.h"

namespace feedrank {
namespace {

// A progress bar on stderr when it is a terminal (redrawn in place), else a
// line every few seconds.
class ReplayProgress {
 public:
  ReplayProgress() : tty_(::isatty(2) == 1), start_ns_(absl::GetCurrentTimeNanos()) {}

  void operator()(int64_t done, int64_t total, const std::string& variant) {
    const int64_t now = absl::GetCurrentTimeNanos();
    const bool end = done == total;
    if (variant != variant_) {
      variant_ = variant;
      variant_start_ns_ = now;
      last_ns_ = 0;
    }
    if (!end && now - last_ns_ < (tty_ ? 100'000'000 : 5'000'000'000)) return;
    if (end && reported_end_ == variant) return;
    last_ns_ = now;
    if (end) reported_end_ = variant;
    const double share = total > 0 ? double(done) / double(total) : 1.0;
    const double elapsed = (now - variant_start_ns_) / 1e9;
    const double left = done > 0 ? elapsed * (total - done) / done : 0;
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(share * kWidth);
      std::string bar(filled, '#');
      bar.append(kWidth - filled, '.');
      std::fprintf(stderr, "\rreplay %-16.16s [%s] %3.0f%% %lld/%lld %.1fs, ~%.0fs left ",
                   variant.c_str(), bar.c_str(), share * 100,
                   static_cast<long long>(done), static_cast<long long>(total), elapsed,
                   left);
      if (end) std::fputc('\n', stderr);
      std::fflush(stderr);
    } else {
      LogInfo("replay %s: %d/%d (%.0f%%), %.1fs elapsed, ~%.0fs left", variant, done,
              total, share * 100, elapsed, left);
    }
  }

 private:
  bool tty_;
  int64_t start_ns_;
  int64_t variant_start_ns_ = 0;
  int64_t last_ns_ = 0;
  std::string variant_;
  std::string reported_end_;
};

std::string Stem(const std::string& path) {
  return std::filesystem::path(path).stem().string();
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  return WriteFileAtomically(*FileSystem::Real(), path, {text});
}

}  // namespace

absl::Status RunReplayCommand(ReplayCommand c) {
  if (c.on_bad_record != "fail" && c.on_bad_record != "skip") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--on-bad-record: ", QuoteForError(c.on_bad_record), " is not fail or skip"));
  }
  const bool target_mode = !c.targets.empty();
  if (target_mode && !c.configs.empty()) {
    return absl::InvalidArgumentError(
        "--config and --target: a server ranks with its own config; give one or the "
        "other");
  }
  if (target_mode && !c.sweep.empty()) {
    return absl::InvalidArgumentError(
        "--sweep runs in process; it does not take --target");
  }
  if (!c.sweep.empty() && c.configs.size() > 1) {
    return absl::InvalidArgumentError(
        "--sweep varies one config: give at most one --config");
  }
  if (c.arms && (target_mode || !c.sweep.empty() || c.configs.size() != 1)) {
    return absl::InvalidArgumentError(
        "--arms compares the arms of one config in process: give exactly one --config, "
        "no --target or --sweep");
  }
  if (c.bundles.empty() && !target_mode) {
    return absl::InvalidArgumentError("--bundle: in process, replay needs a bundle");
  }

  // The variants: one per config (or per target, or per sweep value).
  std::vector<ReplayVariant> variants;
  std::vector<int64_t> sweep_values;
  std::string sweep_field;
  if (!c.sweep.empty()) {
    ASSIGN_OR_RETURN(auto sweep, ParseSweep(c.sweep));
    sweep_field = sweep.first;
    sweep_values = sweep.second;
  }
  size_t count = target_mode ? c.targets.size() : std::max<size_t>(1, c.configs.size());
  if (!sweep_values.empty()) count = sweep_values.size();
  if (c.bundles.size() > 1 && c.bundles.size() != count) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bundle: give one bundle for all variants or one per variant (",
                     count, " variants, ", c.bundles.size(), " bundles)"));
  }
  if (!c.names.empty() && c.names.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat("--name: give one per variant (",
                                                   count, " variants, ", c.names.size(),
                                                   " names)"));
  }
  std::map<std::string, std::shared_ptr<const Bundle>> loaded;
  for (size_t i = 0; i < count; ++i) {
    ReplayVariant v;
    if (!c.bundles.empty()) {
      v.bundle_path = c.bundles.size() == 1 ? c.bundles[0] : c.bundles[i];
      auto& bundle = loaded[v.bundle_path];
      if (bundle == nullptr) {
        LogInfo("replay: loading bundle %s", v.bundle_path);
        ASSIGN_OR_RETURN(bundle, LoadBundle(v.bundle_path));
      }
      v.bundle = bundle;
    }
    if (target_mode) {
      v.target = c.targets[i];
      v.name = c.targets[i];
    } else if (!c.configs.empty()) {
      v.config_path = sweep_values.empty() ? c.configs[i] : c.configs[0];
      ASSIGN_OR_RETURN(v.config, ReadConfigFile(v.config_path));
      v.name = Stem(v.config_path);
    } else {
      v.name = "defaults";
    }
    if (!sweep_values.empty()) {
      RETURN_IF_ERROR(
          SetRankingParam(v.config.mutable_params(), sweep_field, sweep_values[i]));
      v.sweep_override = absl::StrCat(sweep_field, "=", sweep_values[i]);
      v.name = v.sweep_override;
    } else if (c.bundles.size() > 1 && c.configs.size() <= 1 && !target_mode) {
      v.name = Stem(v.bundle_path);
    }
    if (!c.names.empty()) v.name = c.names[i];
    variants.push_back(std::move(v));
  }
  if (c.arms) {
    // Defaults first (the base), then the users' own arms, then each arm for
    // every user.
    ReplayVariant assigned = variants.front();
    const std::string stem = assigned.name;
    ReplayVariant defaults = assigned;
    defaults.config.clear_layers();
    defaults.name = assigned.name + "@defaults";
    assigned.name += "@assigned";
    variants = {defaults, assigned};
    for (const v1::Layer& layer : assigned.config.layers()) {
      for (const v1::Experiment& experiment : layer.experiments()) {
        for (const v1::Arm& arm : experiment.arms()) {
          ReplayVariant pinned = assigned;
          pinned.pins = {{layer.name(), arm.name()}};
          pinned.name = absl::StrCat(stem, "@", layer.name(), "/", arm.name());
          variants.push_back(std::move(pinned));
        }
      }
    }
    if (variants.size() == 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--arms: config ", QuoteForError(c.configs[0]), " has no experiment arms"));
    }
  }
  // Names must tell variants apart: suffix repeats.
  std::map<std::string, int> seen;
  for (ReplayVariant& v : variants) {
    if (++seen[v.name] > 1) v.name = absl::StrCat(v.name, "#", seen[v.name]);
  }
  c.options.exact_recall = !sweep_values.empty();

  ReplayLogReadStats stats;
  LogInfo("replay: reading %s", c.log_path);
  ASSIGN_OR_RETURN(std::vector<v1::ReplayRecord> records,
                   ReadReplayLog(c.log_path,
                                 c.on_bad_record == "skip" ? BadRecordPolicy::kSkip
                                                           : BadRecordPolicy::kFail,
                                 &stats));
  for (const std::string& problem : stats.problems)
    LogWarning("replay: skipped: %s", problem);
  if (stats.skipped > 0) {
    LogWarning("replay: skipped %d bad records of %s", stats.skipped, c.log_path);
  }
  if (c.limit > 0 && int64_t(records.size()) > c.limit) records.resize(c.limit);
  if (records.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(c.log_path, ": no records to replay"));
  }
  ReplayProgress progress;
  c.options.progress = [&progress](int64_t done, int64_t total,
                                   const std::string& variant) {
    progress(done, total, variant);
  };
  ASSIGN_OR_RETURN(v1::ReplayReport report,
                   RunReplay(records, variants, c.options, c.log_path));
  report.set_skipped_records(stats.skipped);
  if (stats.skipped > 0) {
    report.add_notes(absl::StrCat(stats.skipped, " bad records of the log were skipped (",
                                  stats.problems.empty() ? "" : stats.problems[0], ")."));
  }
  std::cout << RenderReportText(report);
  if (!c.json_out.empty()) {
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    print.add_whitespace = true;
    // Zeros too (a delta of exactly 0 is a result).
    print.always_print_primitive_fields = true;
    // Through deterministic serialization, which orders map keys (errors by
    // code), so that the same report is the same bytes.
    std::string bytes;
    {
      google::protobuf::io::StringOutputStream stream(&bytes);
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      report.SerializeToCodedStream(&coded);
    }
    std::unique_ptr<google::protobuf::util::TypeResolver> resolver(
        google::protobuf::util::NewTypeResolverForDescriptorPool(
            "type.googleapis.com", report.GetDescriptor()->file()->pool()));
    std::string json;
    if (!google::protobuf::util::BinaryToJsonString(
             resolver.get(), "type.googleapis.com/" + report.GetDescriptor()->full_name(),
             bytes, &json, print)
             .ok()) {
      return absl::InternalError("cannot encode the report as JSON");
    }
    RETURN_IF_ERROR(WriteText(c.json_out, json));
    LogInfo("replay: wrote %s", c.json_out);
  }
  if (!c.html_out.empty()) {
    RETURN_IF_ERROR(WriteText(c.html_out, RenderReportHtml(report)));
    LogInfo("replay: wrote %s", c.html_out);
  }
  return absl::OkStatus();
}

}  // namespace feedrank

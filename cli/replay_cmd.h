// `feedrank replay`: reads a replay log, builds the variants from the
// command line (configs, bundles, targets, a sweep), runs the replayer and
// writes the table, JSON and HTML reports (docs/REPLAY.md).
#ifndef FEEDRANK_CLI_REPLAY_CMD_H_
#define FEEDRANK_CLI_REPLAY_CMD_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "replay/replayer.h"

namespace feedrank {

struct ReplayCommand {
  std::string log_path;
  std::string on_bad_record = "fail";  // fail | skip
  std::vector<std::string> configs;
  std::vector<std::string> bundles;
  std::vector<std::string> targets;
  std::vector<std::string> names;
  std::string sweep;  // FIELD=V1,V2,...
  // One variant per arm of the one --config's experiments (pinned), after
  // the config's defaults (no experiments) and its users' own arms.
  bool arms = false;
  int64_t limit = 0;  // first N records; 0 = all
  std::string json_out;
  std::string html_out;
  ReplayOptions options;
};

// Runs it; the table goes to stdout, progress to stderr. Errors:
// InvalidArgument for inconsistent flags (naming them), those of the log
// reader, the bundle and config loaders and RunReplay.
absl::Status RunReplayCommand(ReplayCommand command);

}  // namespace feedrank

#endif  // FEEDRANK_CLI_REPLAY_CMD_H_

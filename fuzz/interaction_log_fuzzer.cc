// Training logs through a column mapping (training/interaction_log.h): the
// mapping textproto's checks, then a log read through it — header, field
// counts, ids, times and units, labels, play time and duration — and the
// time split the trainer takes.
//
// Input: one byte choosing the mode, then
//   even: a log (TSV) read through the shipped KuaiRand mapping;
//   odd:  a mapping textproto, then a line "----", then a log read through
//         that mapping when it parses.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_util.h"
#include "training/interaction_log.h"

namespace {

// data/kuairand-likehate/mapping.textproto, without its comments.
constexpr char kKuaiRandMapping[] = R"pb(
  delimiter: "\t"
  user_column: "user_id"
  item_column: "video_id"
  time_column: "time_ms"
  time_unit: MILLISECONDS
  play_time_column: "play_time_ms"
  duration_column: "duration_ms"
  duration_unit: MILLISECONDS
  retrieval_objective: "like"
  objectives { name: "click" column: "is_click" }
  objectives { name: "long_view" column: "long_view" }
  objectives { name: "like" column: "label" }
  objectives { name: "follow" column: "is_follow" }
  objectives { name: "comment" column: "is_comment" }
  objectives { name: "share" column: "is_forward" }
  objectives { name: "profile_enter" column: "is_profile_enter" }
  objectives { name: "watch_ratio" kind: WATCH_RATIO }
)pb";

void ReadThrough(const feedrank::LogMapping& mapping, absl::string_view log) {
  const std::string path = feedrank::fuzz::WriteInput("input.tsv", log);
  auto read = feedrank::ReadInteractionLog(path, mapping);
  if (!read.ok()) return;
  const feedrank::InteractionLog& l = *read;
  // The columns line up: one entry per row, one label per row and objective.
  const size_t n = l.size();
  if (l.items.size() != n || l.time_ms.size() != n ||
      l.labels.size() != n * l.objectives.size()) {
    std::abort();
  }
  if (!l.creators.empty() && l.creators.size() != n) std::abort();
  if (!l.duration_ms.empty() && l.duration_ms.size() != n) std::abort();
  for (int days : {1, 3}) {
    auto split = feedrank::SplitByTime(l, days);
    if (split.ok() && split->train.size() + split->test.size() > n) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string input(feedrank::fuzz::AsView(data + 1, size - 1));
  if (data[0] % 2 == 0) {
    static const feedrank::LogMapping* shipped = [] {
      auto m = feedrank::ParseLogMapping(kKuaiRandMapping);
      if (!m.ok()) std::abort();
      return new feedrank::LogMapping(*std::move(m));
    }();
    ReadThrough(*shipped, input);
    return 0;
  }
  const size_t cut = input.find("\n----\n");
  auto mapping = feedrank::ParseLogMapping(input.substr(0, cut));
  if (!mapping.ok() || cut == std::string::npos) return 0;
  ReadThrough(*mapping, input.substr(cut + 6));
  return 0;
}

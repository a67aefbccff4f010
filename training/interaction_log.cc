#include "training/interaction_log.h"

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/files.h"
#include "base/quote.h"

namespace feedrank {
namespace {

constexpr int64_t kDayMs = 86'400'000;
static_assert(kMaxTimeMs == 84'006 * kDayMs, "2200-01-01 is day 84006 of Unix time");
static_assert(kMaxDurationMs == 30 * kDayMs);

// `value` times `scale` as whole milliseconds (truncated), when that is a
// number in [0, max_ms]; nullopt otherwise (NaN and infinities included). The
// range is checked on the double, before the cast, which would be undefined
// behaviour outside int64_t.
std::optional<int64_t> ToMillis(double value, double scale, int64_t max_ms) {
  const double ms = value * scale;
  if (!(ms >= 0 && ms <= static_cast<double>(max_ms))) return std::nullopt;
  return static_cast<int64_t>(ms);
}

// Splits one line into fields; a field may be double-quoted (with "" for a
// quote inside).
void SplitFields(absl::string_view line, char delimiter, std::vector<std::string>* out) {
  out->clear();
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"' && field.empty()) {
      quoted = true;
    } else if (c == delimiter) {
      out->push_back(std::move(field));
      field.clear();
    } else {
      field.push_back(c);
    }
  }
  out->push_back(std::move(field));
}

}  // namespace

absl::StatusOr<LogMapping> ParseLogMapping(const std::string& text) {
  LogMapping m;
  if (!google::protobuf::TextFormat::ParseFromString(text, &m)) {
    return absl::InvalidArgumentError("not a valid LogMapping textproto");
  }
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("mapping: ", parts...));
  };
  if (m.user_column().empty()) return bad("user_column is empty");
  if (m.item_column().empty()) return bad("item_column is empty");
  if (m.time_column().empty()) return bad("time_column is empty");
  if (m.objectives().empty()) return bad("no objectives");
  if (m.delimiter().size() > 1) return bad("delimiter must be one character");
  std::set<std::string> names;
  for (const ObjectiveMapping& o : m.objectives()) {
    if (o.name().empty()) return bad("an objective has no name");
    if (!names.insert(o.name()).second) return bad("objective '", o.name(), "' twice");
    if (o.kind() == ObjectiveMapping::BINARY && o.column().empty()) {
      return bad("objective '", o.name(), "' names no column");
    }
    // A NaN threshold would make every label 0, an infinite one every label
    // the same: a broken mapping, refused like a broken log value.
    if (o.has_threshold() && !std::isfinite(o.threshold())) {
      return bad("objective '", o.name(), "' has threshold ", o.threshold(),
                 ", not a finite number");
    }
    if (o.kind() == ObjectiveMapping::WATCH_RATIO &&
        (m.play_time_column().empty() || m.duration_column().empty())) {
      return bad("objective '", o.name(),
                 "' is a watch ratio: play_time_column and duration_column are needed");
    }
  }
  if (m.retrieval_objective().empty()) {
    m.set_retrieval_objective(m.objectives(0).name());
  } else if (!names.count(m.retrieval_objective())) {
    return bad("retrieval_objective '", m.retrieval_objective(), "' is not an objective");
  }
  return m;
}

absl::StatusOr<LogMapping> ReadLogMapping(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  auto mapping = ParseLogMapping(*text);
  if (!mapping.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", mapping.status().message()));
  }
  return mapping;
}

absl::StatusOr<InteractionLog> ReadInteractionLog(const std::string& path,
                                                  const LogMapping& mapping) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const char delimiter = !mapping.delimiter().empty()   ? mapping.delimiter()[0]
                         : absl::EndsWith(path, ".tsv") ? '\t'
                                                        : ',';
  std::string line;
  if (!std::getline(in, line) || absl::StripAsciiWhitespace(line).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": empty file (no header line)"));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::vector<std::string> header;
  SplitFields(line, delimiter, &header);
  absl::flat_hash_map<std::string, int> column;
  for (size_t i = 0; i < header.size(); ++i) {
    column[std::string(absl::StripAsciiWhitespace(header[i]))] = static_cast<int>(i);
  }
  auto find = [&](const std::string& name, const char* role) -> absl::StatusOr<int> {
    auto it = column.find(name);
    if (it == column.end()) {
      // The header is a log line like any other: quoted within a budget, a
      // larger one than a field's so that a usual header shows whole.
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": the mapping's ", role, " '", name, "' is not a column of the header ",
          QuoteForError(absl::StrJoin(header, ", "), 4 * kMaxQuotedBytes)));
    }
    return it->second;
  };
  auto user_col = find(mapping.user_column(), "user_column");
  if (!user_col.ok()) return user_col.status();
  auto item_col = find(mapping.item_column(), "item_column");
  if (!item_col.ok()) return item_col.status();
  auto time_col = find(mapping.time_column(), "time_column");
  if (!time_col.ok()) return time_col.status();
  int creator_col = -1, duration_col = -1, play_col = -1;
  if (!mapping.creator_column().empty()) {
    auto c = find(mapping.creator_column(), "creator_column");
    if (!c.ok()) return c.status();
    creator_col = *c;
  }
  if (!mapping.duration_column().empty()) {
    auto c = find(mapping.duration_column(), "duration_column");
    if (!c.ok()) return c.status();
    duration_col = *c;
  }
  if (!mapping.play_time_column().empty()) {
    auto c = find(mapping.play_time_column(), "play_time_column");
    if (!c.ok()) return c.status();
    play_col = *c;
  }
  InteractionLog log;
  log.path = path;
  std::vector<int> label_col;
  for (const ObjectiveMapping& o : mapping.objectives()) {
    log.objectives.push_back(o.name());
    if (o.name() == mapping.retrieval_objective()) {
      log.retrieval_objective = static_cast<int>(log.objectives.size()) - 1;
    }
    if (o.kind() == ObjectiveMapping::BINARY) {
      auto c =
          find(o.column(), absl::StrCat("column of objective '", o.name(), "'").c_str());
      if (!c.ok()) return c.status();
      label_col.push_back(*c);
    } else {
      label_col.push_back(-1);
    }
  }
  const double time_scale = mapping.time_unit() == LogMapping::SECONDS ? 1000 : 1;
  const double duration_scale = mapping.duration_unit() == LogMapping::SECONDS ? 1000 : 1;

  std::vector<std::string> fields;
  int64_t line_number = 1;
  auto bad_value = [&](int col, const char* what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", line_number, ": column ", QuoteForError(header[col]),
                     " holds ", QuoteForError(fields[col]), ", ", what));
  };
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    SplitFields(line, delimiter, &fields);
    if (fields.size() != header.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": ", fields.size(),
                       " fields, the header has ", header.size()));
    }
    uint64_t user, item;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[*user_col]), &user)) {
      return bad_value(*user_col, "not a non-negative integer id");
    }
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[*item_col]), &item)) {
      return bad_value(*item_col, "not a non-negative integer id");
    }
    double time;
    std::optional<int64_t> time_ms;
    if (!absl::SimpleAtod(fields[*time_col], &time) ||
        !(time_ms = ToMillis(time, time_scale, kMaxTimeMs))) {
      return bad_value(*time_col, "not a time from 1970-01-01 to 2200-01-01 UTC");
    }
    log.users.push_back(user);
    log.items.push_back(item);
    log.time_ms.push_back(*time_ms);
    if (creator_col >= 0) {
      uint64_t creator;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[creator_col]), &creator)) {
        return bad_value(creator_col, "not a non-negative integer id");
      }
      log.creators.push_back(creator);
    }
    // The watch ratio divides the play time by the duration as logged: both
    // are in the duration unit, and both have the duration's range.
    double duration = 0, play = 0;
    if (duration_col >= 0) {
      std::optional<int64_t> duration_ms;
      if (!absl::SimpleAtod(fields[duration_col], &duration) ||
          !(duration_ms = ToMillis(duration, duration_scale, kMaxDurationMs))) {
        return bad_value(duration_col, "not a duration from 0 to 30 days");
      }
      log.duration_ms.push_back(*duration_ms);
    }
    if (play_col >= 0 && (!absl::SimpleAtod(fields[play_col], &play) ||
                          !ToMillis(play, duration_scale, kMaxDurationMs))) {
      return bad_value(play_col, "not a play time from 0 to 30 days");
    }
    for (int o = 0; o < mapping.objectives_size(); ++o) {
      const ObjectiveMapping& objective = mapping.objectives(o);
      float label = std::nanf("");
      if (objective.kind() == ObjectiveMapping::BINARY) {
        double value;
        if (!absl::SimpleAtod(fields[label_col[o]], &value) || !std::isfinite(value)) {
          return bad_value(label_col[o], "not a finite number");
        }
        const double threshold = objective.has_threshold() ? objective.threshold() : 1.0;
        label = value >= threshold ? 1.f : 0.f;
      } else if (duration > 0) {
        label = static_cast<float>(std::clamp(play / duration, 0.0, 1.0));
      }
      log.labels.push_back(label);
    }
  }
  if (log.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": a header but no rows"));
  }
  return log;
}

absl::StatusOr<TimeSplit> SplitByTime(const InteractionLog& log, int holdout_days) {
  if (holdout_days < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("holdout_days: ", holdout_days, " must be >= 1"));
  }
  if (log.size() == 0) return absl::InvalidArgumentError("the log is empty");
  const int64_t last = *std::max_element(log.time_ms.begin(), log.time_ms.end());
  TimeSplit split;
  split.cutoff_ms = (last / kDayMs - (holdout_days - 1)) * kDayMs;
  for (size_t i = 0; i < log.size(); ++i) {
    (log.time_ms[i] < split.cutoff_ms ? split.train : split.test).push_back(i);
  }
  if (split.train.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "holdout_days: ", holdout_days, " leaves no rows to train on (the log spans ",
        (last - *std::min_element(log.time_ms.begin(), log.time_ms.end())) / kDayMs + 1,
        " days)"));
  }
  return split;
}

absl::StatusOr<TimeSplit> SplitLastNPerUser(const InteractionLog& log, int n) {
  if (n < 1 || n > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("n: ", n, " is outside [1, 1000]"));
  }
  if (log.size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n: ", n, " leaves no rows to train on (the log is empty)"));
  }
  // The rows by user, then time, then row index.
  std::vector<size_t> order(log.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (log.users[a] != log.users[b]) return log.users[a] < log.users[b];
    if (log.time_ms[a] != log.time_ms[b]) return log.time_ms[a] < log.time_ms[b];
    return a < b;
  });
  TimeSplit split;
  split.cutoff_ms = std::numeric_limits<int64_t>::max();
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin;
    while (end < order.size() && log.users[order[end]] == log.users[order[begin]]) ++end;
    const size_t rows = end - begin;
    const size_t held = rows > size_t(n) ? size_t(n) : 0;
    for (size_t j = begin; j < end - held; ++j) split.train.push_back(order[j]);
    for (size_t j = end - held; j < end; ++j) {
      split.test.push_back(order[j]);
      split.cutoff_ms = std::min(split.cutoff_ms, log.time_ms[order[j]]);
    }
    begin = end;
  }
  if (split.test.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n: ", n, " leaves no rows to test on (no user has more than ", n, " rows)"));
  }
  std::sort(split.train.begin(), split.train.end());
  std::sort(split.test.begin(), split.test.end());
  return split;
}

}  // namespace feedrank

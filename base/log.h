// Leveled logging to stderr: one line per call, text or JSON, thread-safe
// (each line is written with a single write(2), so concurrent lines stay
// whole).
//
//   text:  I 2026-12-02T01:02:03.456Z message
//   json:  {"ts":"2026-12-02T01:02:03.456Z","level":"info","msg":"message"}
//
// The server routes gRPC's and protobuf's own log lines through here, so a
// deployment sees one format.
#ifndef FEEDRANK_BASE_LOG_H_
#define FEEDRANK_BASE_LOG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace feedrank {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

void LogLine(LogLevel level, absl::string_view message);

// Messages below this level are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
void SetLogFormat(LogFormat format);

// "debug" | "info" | "warning" | "error" -> level; "text" | "json" -> format.
// Errors: InvalidArgument listing the accepted names.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

// `text` (UTF-8) as a JSON string literal, quotes included, with quotes,
// backslashes and control characters escaped.
std::string JsonString(absl::string_view text);

template <typename... Args>
void LogDebug(const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (MinLogLevel() > LogLevel::kDebug) return;
  LogLine(LogLevel::kDebug, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kError, absl::StrFormat(format, args...));
}

}  // namespace feedrank

#endif  // FEEDRANK_BASE_LOG_H_

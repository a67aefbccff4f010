// Minimal leveled logging to stderr: one line per call, with a UTC timestamp.
// Thread-safe (each line is written with a single write).
#ifndef FEEDRANK_BASE_LOG_H_
#define FEEDRANK_BASE_LOG_H_

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace feedrank {

enum class LogLevel { kInfo, kWarning, kError };

void LogLine(LogLevel level, absl::string_view message);

// Messages below this level are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);

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

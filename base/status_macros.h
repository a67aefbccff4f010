// RETURN_IF_ERROR / ASSIGN_OR_RETURN: the two Status plumbing macros that the
// Abseil release on Debian 12 (20220623) does not ship.
#ifndef FEEDRANK_BASE_STATUS_MACROS_H_
#define FEEDRANK_BASE_STATUS_MACROS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// when it is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status feedrank_status_ = (expr);            \
    if (!feedrank_status_.ok()) return feedrank_status_; \
  } while (0)

#define FEEDRANK_CONCAT_INNER_(a, b) a##b
#define FEEDRANK_CONCAT_(a, b) FEEDRANK_CONCAT_INNER_(a, b)

// `ASSIGN_OR_RETURN(lhs, rexpr)`: evaluates `rexpr` (an absl::StatusOr<T>);
// on error returns its status, else moves the value into `lhs`, which may be
// a declaration (`auto x`) or an existing variable.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  FEEDRANK_ASSIGN_OR_RETURN_IMPL_(FEEDRANK_CONCAT_(feedrank_sor_, __LINE__), lhs, rexpr)
#define FEEDRANK_ASSIGN_OR_RETURN_IMPL_(sor, lhs, rexpr) \
  auto sor = (rexpr);                                    \
  if (!sor.ok()) return std::move(sor).status();         \
  lhs = std::move(sor).value()

namespace feedrank {

// "INVALID_ARGUMENT" etc. for a status code number (absl's and gRPC's share
// their numbering); "UNKNOWN" outside [0, 16].
inline std::string StatusCodeName(int code) {
  if (code < 0 || code > 16) return "UNKNOWN";
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace feedrank

#endif  // FEEDRANK_BASE_STATUS_MACROS_H_

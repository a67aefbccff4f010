// Whole-file reads through the real file system (base/env.h has the
// FileSystem-taking forms that loaders use).
#ifndef FEEDRANK_BASE_FILES_H_
#define FEEDRANK_BASE_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "base/env.h"

namespace feedrank {

// The contents of the regular file `path`. Errors name the path, with codes
// by cause (NotFound, PermissionDenied, FailedPrecondition for a FIFO or a
// directory, ...).
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace feedrank

#endif  // FEEDRANK_BASE_FILES_H_

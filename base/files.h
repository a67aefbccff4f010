// Whole-file reads.
#ifndef FEEDRANK_BASE_FILES_H_
#define FEEDRANK_BASE_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace feedrank {

// The contents of `path`. Errors: NotFound ("<path>: cannot open").
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace feedrank

#endif  // FEEDRANK_BASE_FILES_H_

#include "base/files.h"

namespace feedrank {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  return ReadFileToString(*FileSystem::Real(), path);
}

}  // namespace feedrank

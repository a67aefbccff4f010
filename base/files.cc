#include "base/files.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace feedrank {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace feedrank

// Helpers shared by the libFuzzer targets in this directory (fuzz/README.md):
// a scratch directory per process, writing an input to a file there, and a
// small synthetic bundle built once per process.
#ifndef FEEDRANK_FUZZ_FUZZ_UTIL_H_
#define FEEDRANK_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "ranking/bundle.h"

namespace feedrank::fuzz {

// A directory of this process's own, made on first use under $TMPDIR (else
// /dev/shm when it exists, else /tmp) and removed at exit.
const std::string& ScratchDir();

// Writes `data` to ScratchDir()/`name` (replacing it) and returns the path.
// Aborts when it cannot: a fuzzer that cannot write its input tests nothing.
std::string WriteInput(const std::string& name, absl::string_view data);

// Removes `dir` and everything in it, then makes it again, empty.
void ResetDir(const std::string& dir);

// A synthetic bundle (400 videos, 100 users, dimension 16, HNSW) written to
// and loaded from ScratchDir()/bundle on first use; aborts on failure.
const std::shared_ptr<const Bundle>& SmallBundle();

inline absl::string_view AsView(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace feedrank::fuzz

#endif  // FEEDRANK_FUZZ_FUZZ_UTIL_H_

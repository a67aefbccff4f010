// Helpers shared by the tests: temporary directories and small synthetic
// bundles on disk.
#ifndef FEEDRANK_TESTS_TEST_UTIL_H_
#define FEEDRANK_TESTS_TEST_UTIL_H_

#include <string>

#include "cli/synth.h"
#include "ranking/bundle.h"

namespace feedrank::testing {

// A fresh directory under $TMPDIR, removed with everything in it when the
// object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Options of a small synthetic bundle (fast to build: ~0.2 s).
SynthOptions SmallSynth(int64_t videos = 5000, int64_t users = 500,
                        const std::string& index = "hnsw");

// Writes a synthetic bundle to `dir` (which must not exist); fails the test
// on error.
void WriteSmallBundle(const SynthOptions& options, const std::string& dir);

// Builds a synthetic bundle in memory (no files); fails the test on error.
std::shared_ptr<const Bundle> MakeSmallBundle(const SynthOptions& options);

// Copies directory `from` to `to` recursively.
void CopyDir(const std::string& from, const std::string& to);

// Whole contents of a file.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);

}  // namespace feedrank::testing

#endif  // FEEDRANK_TESTS_TEST_UTIL_H_

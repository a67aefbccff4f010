// Small synthetic bundles for tests, on disk or in memory.
#ifndef FEEDRANK_TESTS_TEST_BUNDLES_H_
#define FEEDRANK_TESTS_TEST_BUNDLES_H_

#include <memory>
#include <string>

#include "cli/synth.h"
#include "ranking/bundle.h"
#include "tests/test_util.h"

namespace feedrank::testing {

// Options of a small synthetic bundle (fast to build: ~0.2 s).
SynthOptions SmallSynth(int64_t videos = 5000, int64_t users = 500,
                        const std::string& index = "hnsw");

// Writes a synthetic bundle to `dir` (which must not exist); fails the test
// on error.
void WriteSmallBundle(const SynthOptions& options, const std::string& dir);

// Builds a synthetic bundle in memory (no files); fails the test on error.
std::shared_ptr<const Bundle> MakeSmallBundle(const SynthOptions& options);

}  // namespace feedrank::testing

#endif  // FEEDRANK_TESTS_TEST_BUNDLES_H_

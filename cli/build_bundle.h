// `feedrank build`: turns a bundle source (a bundle directory without
// index.faiss, as a training pipeline writes it with numpy) into a servable
// bundle with a FAISS index.
#ifndef FEEDRANK_CLI_BUILD_BUNDLE_H_
#define FEEDRANK_CLI_BUILD_BUNDLE_H_

#include <string>

#include "absl/status/status.h"
#include "embeddings/ann_index.h"
#include "embeddings/manifest.h"

namespace feedrank {

struct BuildOptions {
  std::string from;
  std::string out;
  // Index to build; fields left unset come from the source manifest's index
  // section, then from AnnIndex::Build defaults.
  IndexSpec index;
  // OpenMP threads for the index build; 0 = every core.
  int threads = 0;
  // New bundle version; empty keeps the source manifest's.
  std::string version;
};

// Reads `from` (manifest.json, columns, model/), validates everything as a
// loader would, builds the index with a progress line every few seconds, and
// writes the bundle to `out` (which must not exist). Nothing is written on
// any error.
absl::Status BuildBundle(const BuildOptions& options);

}  // namespace feedrank

#endif  // FEEDRANK_CLI_BUILD_BUNDLE_H_

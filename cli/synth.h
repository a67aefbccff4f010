// Synthetic bundles: realistic in shape (clustered embeddings, Zipf-skewed
// popularity, creators with several videos, users with a few interests, a
// model whose heads respond sensibly to relevance, popularity and age), at
// any size, and the same bytes for the same options and seed.
#ifndef FEEDRANK_CLI_SYNTH_H_
#define FEEDRANK_CLI_SYNTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "embeddings/catalog.h"
#include "ranking/model.h"

namespace feedrank {

// Bounds on each hidden layer width of a synthetic model (see
// SynthOptions::hidden).
inline constexpr uint32_t kMinSynthHiddenWidth = 10;
inline constexpr uint32_t kMaxSynthHiddenWidth = 16384;

struct SynthOptions {
  int64_t videos = 100000;
  int64_t users = 10000;
  int dim = 64;
  uint64_t seed = 1;
  // Topic clusters; 0 = clamp(sqrt(videos) / 2, 8, 4096) ("topics"), 2000
  // ("hard").
  int64_t clusters = 0;
  // How the embeddings are drawn:
  //   "topics": well-separated unit topic centres, videos close to their
  //     creator's topic, norms rising with popularity (an easy set: IVF at
  //     nprobe 16 finds nearly all of a top 500);
  //   "hard": overlapping clusters — centres N(0, I), a video's cluster
  //     drawn with weight 1/rank^0.8, point = centre + 0.9 N(0, I),
  //     normalised, then scaled by a log-normal(0, 0.3) norm; users drawn the
  //     same way (the set on which graph search with inner product saturates;
  //     docs/BENCHMARKS.md).
  std::string distribution = "topics";
  // Also give the model the engagement groups (trending, history), for tests
  // and benchmarks of that path: the bundle's engagement files are empty
  // (a synthetic catalogue has no events; record some to exercise them).
  bool engagement_features = false;
  double videos_per_creator = 8;
  // "Now" of the synthetic world; uploads are up to a year before it.
  // Default 2026-11-01T00:00:00Z.
  int64_t reference_time_ms = 1793491200000;
  // Hidden layer widths, each in [kMinSynthHiddenWidth, kMaxSynthHiddenWidth]:
  // every hidden layer passes each planted effect (5 of them) through to the
  // heads as a pair of ReLU units, so every layer, not only the first and
  // the last, needs two units per effect.
  std::vector<uint32_t> hidden = {128, 64};
  // Index to build; unset fields get AnnIndex::Build defaults.
  IndexSpec index;
  // OpenMP threads for the index build; 0 = every core. 1 makes the index
  // bytes reproducible too (see AnnIndex::Build).
  int threads = 0;
  // Bundle version; empty = "synth-<videos>-s<seed>".
  std::string version;
};

struct SynthData {
  BundleManifest manifest;  // index.type set, index parameters not yet
  VideoColumns videos;
  UserColumns users;
  ModelTensors model;
};

// The objectives of synthetic models.
const std::vector<std::string>& SynthObjectives();

// Generates everything but the index. Errors: InvalidArgument for options
// out of range (named).
absl::StatusOr<SynthData> Synthesize(const SynthOptions& options);

// Synthesize, build the index (progress lines on stderr), write the bundle
// to `out` (which must not exist).
absl::Status WriteSynthBundle(const SynthOptions& options, const std::string& out);

}  // namespace feedrank

#endif  // FEEDRANK_CLI_SYNTH_H_

// The synthetic-bundle half of tests/test_util.h (links the generator).
#include "tests/test_bundles.h"

#include <gtest/gtest.h>

namespace feedrank::testing {

SynthOptions SmallSynth(int64_t videos, int64_t users, const std::string& index) {
  SynthOptions options;
  options.videos = videos;
  options.users = users;
  options.dim = 32;
  options.seed = 11;
  options.index.set_type(index);
  options.index.set_hnsw_m(16);
  options.index.set_hnsw_ef_construction(40);
  options.hidden = {32, 16};
  options.threads = 1;
  return options;
}

void WriteSmallBundle(const SynthOptions& options, const std::string& dir) {
  absl::Status status = WriteSynthBundle(options, dir);
  ASSERT_TRUE(status.ok()) << status;
}

std::shared_ptr<const Bundle> MakeSmallBundle(const SynthOptions& options) {
  auto data = Synthesize(options);
  EXPECT_TRUE(data.ok()) << data.status();
  if (!data.ok()) return nullptr;
  IndexSpec spec = data->manifest.index();
  auto index = AnnIndex::Build(data->videos.embeddings.data(), options.videos,
                               options.dim, &spec, nullptr, options.threads);
  EXPECT_TRUE(index.ok()) << index.status();
  if (!index.ok()) return nullptr;
  *data->manifest.mutable_index() = spec;
  auto catalog = Catalog::Create(data->manifest, std::move(data->videos),
                                 std::move(data->users), *std::move(index));
  EXPECT_TRUE(catalog.ok()) << catalog.status();
  if (!catalog.ok()) return nullptr;
  auto bundle = MakeBundle(data->manifest, *std::move(catalog), std::move(data->model));
  EXPECT_TRUE(bundle.ok()) << bundle.status();
  return bundle.ok() ? *bundle : nullptr;
}

}  // namespace feedrank::testing

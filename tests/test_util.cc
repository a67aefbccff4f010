#include "tests/test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace feedrank::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/feedrank-test-XXXXXX";
  char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr) << "mkdtemp failed";
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

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

void CopyDir(const std::string& from, const std::string& to) {
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

}  // namespace feedrank::testing

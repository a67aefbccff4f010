#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "base/npy.h"
#include "cli/build_bundle.h"
#include "ranking/bundle.h"
#include "tests/test_bundles.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

// A bundle source as a training pipeline writes it: a bundle minus its
// index.
std::string MakeSource(const testing::TempDir& dir) {
  testing::WriteSmallBundle(testing::SmallSynth(3000, 100), dir.Sub("synth"));
  testing::CopyDir(dir.Sub("synth"), dir.Sub("source"));
  std::filesystem::remove(dir.Sub("source/index.faiss"));
  return dir.Sub("source");
}

TEST(BuildTest, BuildsEachIndexTypeIntoALoadableBundle) {
  testing::TempDir dir;
  const std::string source = MakeSource(dir);
  for (const std::string type : {"hnsw", "ivf", "flat"}) {
    BuildOptions options;
    options.from = source;
    options.out = dir.Sub("out-" + type);
    options.index.set_type(type);
    options.version = "built-" + type;
    options.threads = 1;
    absl::Status status = BuildBundle(options);
    ASSERT_TRUE(status.ok()) << status;
    auto bundle = LoadBundle(options.out);
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    EXPECT_EQ((*bundle)->manifest.version(), "built-" + type);
    EXPECT_EQ((*bundle)->manifest.index().type(), type);
    EXPECT_EQ((*bundle)->catalog->num_videos(), 3000);
  }
}

TEST(BuildTest, IndexParametersFromFlagsReachTheManifest) {
  testing::TempDir dir;
  BuildOptions options;
  options.from = MakeSource(dir);
  options.out = dir.Sub("out");
  options.index.set_type("ivf");
  options.index.set_ivf_nlist(40);
  options.index.set_ivf_nprobe(7);
  ASSERT_TRUE(BuildBundle(options).ok());
  auto bundle = LoadBundle(options.out);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ((*bundle)->manifest.index().ivf_nlist(), 40u);
  EXPECT_EQ((*bundle)->catalog->index().default_nprobe(), 7);
}

// The binary's flags, end to end: --scan-codes bf16 reaches the manifest
// and the loaded index; a value outside the choices is refused by name.
TEST(BuildTest, ScanCodesFlagReachesTheLoadedIndex) {
  testing::TempDir dir;
  const std::string source = MakeSource(dir);
  std::string output;
  ASSERT_EQ(testing::RunProcess({testing::FeedrankBinary(), "build", "--from", source,
                                 "--out", dir.Sub("bf16"), "--index", "ivf", "--nlist",
                                 "32", "--scan-codes", "bf16"},
                                120, &output),
            0)
      << output;
  auto bundle = LoadBundle(dir.Sub("bf16"));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ((*bundle)->manifest.index().scan_codes(), "bf16");
  EXPECT_STREQ((*bundle)->catalog->index().scan_codes(), "bf16");
  EXPECT_NE(
      testing::RunProcess({testing::FeedrankBinary(), "build", "--from", source, "--out",
                           dir.Sub("int4"), "--index", "ivf", "--scan-codes", "int4"},
                          120, &output),
      0);
  EXPECT_THAT(output, HasSubstr("--scan-codes"));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("int4")));
}

TEST(BuildTest, BadSourceWritesNothing) {
  testing::TempDir dir;
  const std::string source = MakeSource(dir);
  struct Case {
    std::string name;
    std::function<void(const std::string&)> damage;
    std::string expect;
  };
  std::vector<Case> cases = {
      {"missing model tensor",
       [](const std::string& s) {
         std::filesystem::remove(s + "/model/output_bias.npy");
       },
       "output_bias.npy"},
      {"duplicate video id",
       [](const std::string& s) {
         auto ids = ReadNpy<uint64_t>(s + "/video_ids.npy", 1);
         ids->data[5] = ids->data[6];
         ASSERT_TRUE(
             WriteNpy<uint64_t>(s + "/video_ids.npy", ids->data, ids->shape).ok());
       },
       "video_ids.npy"},
      {"manifest count disagrees",
       [](const std::string& s) {
         std::string m = testing::ReadFile(s + "/manifest.json");
         m.replace(m.find("\"3000\""), 6, "\"3001\"");
         testing::WriteFile(s + "/manifest.json", m);
       },
       "3001"},
      {"unknown feature group",
       [](const std::string& s) {
         std::string m = testing::ReadFile(s + "/manifest.json");
         m.replace(m.find("\"cosine\""), 8, "\"cosinus\"");
         testing::WriteFile(s + "/manifest.json", m);
       },
       "cosinus"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string damaged = dir.Sub("damaged-" + std::to_string(i));
    testing::CopyDir(source, damaged);
    cases[i].damage(damaged);
    BuildOptions options;
    options.from = damaged;
    options.out = dir.Sub("out-" + std::to_string(i));
    absl::Status status = BuildBundle(options);
    EXPECT_FALSE(status.ok()) << cases[i].name;
    EXPECT_THAT(std::string(status.message()), HasSubstr(cases[i].expect))
        << cases[i].name;
    EXPECT_FALSE(std::filesystem::exists(options.out)) << cases[i].name;
  }
  // And no half-written siblings were left behind.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".partial-"), std::string::npos);
  }
}

}  // namespace
}  // namespace feedrank

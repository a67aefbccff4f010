#include "embeddings/manifest.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::feedrank::testing::ReadFile;
using ::feedrank::testing::TempDir;
using ::feedrank::testing::WriteFile;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

BundleManifest ValidManifest() {
  BundleManifest m;
  m.set_format_version(kBundleFormatVersion);
  m.set_version("test-1");
  m.set_dim(32);
  m.set_num_videos(1000);
  m.set_num_users(50);
  m.mutable_index()->set_type("ivf");
  m.mutable_index()->set_ivf_nlist(64);
  m.mutable_index()->set_ivf_nprobe(4);
  m.mutable_model()->add_objectives("click");
  m.mutable_model()->add_objectives("like");
  m.mutable_model()->add_features("dot");
  m.mutable_model()->add_features("log_popularity");
  m.mutable_model()->add_hidden(32);
  m.mutable_model()->add_hidden(16);
  m.set_created_by("manifest_test");
  m.set_created_at_unix(1793491200);
  return m;
}

TEST(ManifestTest, BundlePathJoins) {
  EXPECT_EQ(BundlePath("/a/b", "c.npy"), "/a/b/c.npy");
  EXPECT_EQ(BundlePath("/a/b/", "c.npy"), "/a/b/c.npy");
  EXPECT_EQ(BundlePath("", "c.npy"), "c.npy");
}

TEST(ManifestTest, ValidManifestValidates) {
  EXPECT_TRUE(ValidateManifest(ValidManifest()).ok());
  // No users and no hidden layers are both legal.
  BundleManifest m = ValidManifest();
  m.set_num_users(0);
  m.mutable_model()->clear_hidden();
  EXPECT_TRUE(ValidateManifest(m).ok()) << ValidateManifest(m);
  for (const char* type : {"hnsw", "ivf", "flat"}) {
    m.mutable_index()->set_type(type);
    EXPECT_TRUE(ValidateManifest(m).ok()) << type;
  }
}

TEST(ManifestTest, WriteThenReadRoundTrips) {
  TempDir dir;
  BundleManifest m = ValidManifest();
  // Values that proto3 JSON encodes in non-obvious ways (64-bit as strings).
  m.set_num_videos(INT32_MAX);
  m.set_num_users(INT32_MAX);
  m.set_created_at_unix(-5);
  m.mutable_index()->set_hnsw_m(48);
  m.mutable_index()->set_beam_width(300);
  ASSERT_TRUE(WriteManifest(dir.path(), m).ok());

  const std::string json = ReadFile(dir.Sub(kManifestFile));
  // Field names as in the .proto (the documented bundle format).
  EXPECT_THAT(json, HasSubstr("\"format_version\""));
  EXPECT_THAT(json, HasSubstr("\"num_videos\""));

  auto read = ReadManifest(dir.path());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*read, m)) << read->DebugString() << "\nvs\n"
                                                    << m.DebugString();

  // Writing again replaces the file.
  m.set_version("test-2");
  ASSERT_TRUE(WriteManifest(dir.path(), m).ok());
  read = ReadManifest(dir.path());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->version(), "test-2");
}

TEST(ManifestTest, ReadsCamelCaseJsonNames) {
  // protobuf's JSON mapping accepts lowerCamelCase too; writers in Python
  // (MessageToJson default) produce it.
  TempDir dir;
  WriteFile(dir.Sub(kManifestFile), R"({
    "formatVersion": 1, "version": "v", "dim": 8, "numVideos": "10",
    "index": {"type": "flat"},
    "model": {"objectives": ["click"], "features": ["dot"], "hidden": [4]}
  })");
  auto read = ReadManifest(dir.path());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->num_videos(), 10u);
  EXPECT_EQ(read->index().type(), "flat");
}

struct BadCase {
  std::string name;
  std::function<void(BundleManifest*)> mutate;
  // Text the error must contain: the field and what is wrong with it.
  std::string problem;
};

class ManifestValidationTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ManifestValidationTest, ValidateNamesTheField) {
  BundleManifest m = ValidManifest();
  GetParam().mutate(&m);
  const absl::Status status = ValidateManifest(m);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(GetParam().problem));
  EXPECT_THAT(std::string(status.message()), HasSubstr(kManifestFile));
}

TEST_P(ManifestValidationTest, ReadNamesTheFileAndField) {
  TempDir dir;
  BundleManifest m = ValidManifest();
  GetParam().mutate(&m);
  ASSERT_TRUE(WriteManifest(dir.path(), m).ok());
  auto read = ReadManifest(dir.path());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument) << read.status();
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr(BundlePath(dir.path(), kManifestFile)));
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(GetParam().problem));
}

INSTANTIATE_TEST_SUITE_P(
    AllFields, ManifestValidationTest,
    ::testing::Values(
        BadCase{"FormatVersion2", [](BundleManifest* m) { m->set_format_version(2); },
                "format_version is 2"},
        BadCase{"FormatVersion0", [](BundleManifest* m) { m->set_format_version(0); },
                "format_version is 0"},
        BadCase{"EmptyVersion", [](BundleManifest* m) { m->clear_version(); },
                "version is empty"},
        BadCase{"DimZero", [](BundleManifest* m) { m->set_dim(0); },
                "dim 0 is outside [1, 4096]"},
        BadCase{"DimTooLarge", [](BundleManifest* m) { m->set_dim(4097); },
                "dim 4097 is outside"},
        BadCase{"NumVideosZero", [](BundleManifest* m) { m->set_num_videos(0); },
                "num_videos is 0"},
        BadCase{"NumVideosTooLarge",
                [](BundleManifest* m) { m->set_num_videos(uint64_t{INT32_MAX} + 1); },
                "num_videos 2147483648 exceeds"},
        BadCase{"NumUsersTooLarge",
                [](BundleManifest* m) { m->set_num_users(uint64_t{1} << 40); },
                "num_users 1099511627776 exceeds"},
        BadCase{"UnknownIndexType",
                [](BundleManifest* m) { m->mutable_index()->set_type("lsh"); },
                "index.type 'lsh' is not one of hnsw, ivf, flat"},
        BadCase{"MissingIndexType", [](BundleManifest* m) { m->clear_index(); },
                "index.type ''"},
        BadCase{"NoObjectives",
                [](BundleManifest* m) { m->mutable_model()->clear_objectives(); },
                "model.objectives is empty"},
        BadCase{"EmptyObjectiveName",
                [](BundleManifest* m) { m->mutable_model()->add_objectives(""); },
                "model.objectives has an empty name"},
        BadCase{"DuplicateObjective",
                [](BundleManifest* m) { m->mutable_model()->add_objectives("click"); },
                "model.objectives names 'click' twice"},
        BadCase{"NoFeatures",
                [](BundleManifest* m) { m->mutable_model()->clear_features(); },
                "model.features is empty"},
        BadCase{"HiddenWidthZero",
                [](BundleManifest* m) { m->mutable_model()->set_hidden(1, 0); },
                "model.hidden has width 0"},
        BadCase{"HiddenWidthTooLarge",
                [](BundleManifest* m) { m->mutable_model()->add_hidden(8193); },
                "model.hidden has width 8193"},
        // A beam of 2^31-1 made every search walk the whole graph; 4e9
        // wrapped negative when read as an int.
        BadCase{"BeamWidthHuge",
                [](BundleManifest* m) { m->mutable_index()->set_beam_width(2147483647); },
                "index.beam_width: 2147483647 is outside [1, 20000]"},
        BadCase{
            "BeamWidthWraps",
            [](BundleManifest* m) { m->mutable_index()->set_beam_width(4000000000u); },
            "index.beam_width: 4000000000 is outside"},
        BadCase{"HnswMTooLarge",
                [](BundleManifest* m) { m->mutable_index()->set_hnsw_m(1000); },
                "index.hnsw_m: 1000 is outside [2, 256]"},
        BadCase{"HnswMOne", [](BundleManifest* m) { m->mutable_index()->set_hnsw_m(1); },
                "index.hnsw_m: 1 is outside"},
        BadCase{"EfConstructionHuge",
                [](BundleManifest* m) {
                  m->mutable_index()->set_hnsw_ef_construction(1u << 30);
                },
                "index.hnsw_ef_construction"},
        BadCase{"NprobeAboveNlist",
                [](BundleManifest* m) { m->mutable_index()->set_ivf_nprobe(65); },
                "index.ivf_nprobe: 65 is outside [1, 64]"},
        BadCase{"NlistHuge",
                [](BundleManifest* m) { m->mutable_index()->set_ivf_nlist(1u << 25); },
                "index.ivf_nlist"},
        BadCase{"ScanCodesUnknown",
                [](BundleManifest* m) { m->mutable_index()->set_scan_codes("int4"); },
                "index.scan_codes 'int4' is not one of float, bf16"},
        BadCase{"ScanCodesBf16OnHnsw",
                [](BundleManifest* m) {
                  m->mutable_index()->set_type("hnsw");
                  m->mutable_index()->set_scan_codes("bf16");
                },
                "index.scan_codes bf16 applies to an ivf index, not hnsw"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(ManifestTest, UnknownFieldIsRefused) {
  TempDir dir;
  ASSERT_TRUE(WriteManifest(dir.path(), ValidManifest()).ok());
  std::string json = ReadFile(dir.Sub(kManifestFile));
  const size_t brace = json.find('{');
  ASSERT_NE(brace, std::string::npos);
  json.insert(brace + 1, "\"num_vidoes\": 5,");
  WriteFile(dir.Sub(kManifestFile), json);
  auto read = ReadManifest(dir.path());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()),
              HasSubstr(dir.Sub(kManifestFile) + ": not a valid manifest"));
  EXPECT_THAT(std::string(read.status().message()), HasSubstr("num_vidoes"));
}

TEST(ManifestTest, UnknownNestedFieldIsRefused) {
  TempDir dir;
  ASSERT_TRUE(WriteManifest(dir.path(), ValidManifest()).ok());
  std::string json = ReadFile(dir.Sub(kManifestFile));
  const size_t index = json.find("\"index\"");
  ASSERT_NE(index, std::string::npos);
  json.insert(json.find('{', index) + 1, "\"efSearchh\": 5,");
  WriteFile(dir.Sub(kManifestFile), json);
  auto read = ReadManifest(dir.path());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(dir.Sub(kManifestFile)));
}

TEST(ManifestTest, MissingFileIsNotFound) {
  TempDir dir;
  auto read = ReadManifest(dir.path());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(dir.Sub(kManifestFile)));

  read = ReadManifest(dir.Sub("no_such_dir"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
}

TEST(ManifestTest, MalformedJsonIsInvalidArgumentWithPath) {
  TempDir dir;
  for (const char* text : {"", "{", "not json", "[1, 2]", "{\"dim\": \"wide\"}",
                           "{\"dim\": -3}", "{\"version\": 5}"}) {
    WriteFile(dir.Sub(kManifestFile), text);
    auto read = ReadManifest(dir.path());
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(read.status().message()), HasSubstr(dir.Sub(kManifestFile)))
        << text;
  }
}

}  // namespace
}  // namespace feedrank

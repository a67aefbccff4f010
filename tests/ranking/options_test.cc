#include "ranking/options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

const std::vector<std::string> kObjectives = {"click", "like", "share"};

TEST(OptionsTest, DefaultsWhenEmpty) {
  auto o = ResolveOptions(RankingConfig(), kObjectives);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->default_count, 20);
  EXPECT_EQ(o->max_count, 200);
  EXPECT_EQ(o->max_exclude_ids, 10000);
  EXPECT_EQ(o->ann_candidates, 500);
  EXPECT_EQ(o->creator_cap, 2);
  EXPECT_EQ(o->objective_weights, std::vector<float>({1.f, 1.f, 1.f}));
}

TEST(OptionsTest, ParsesTextprotoAndResolvesWeights) {
  auto config = ParseConfig(R"pb(
    version: "exp-7"
    params {
      objective_weights { key: "like" value: 2.5 }
      default_count: 30
      creator_cap: 0
      ann_beam_width: 800
    }
  )pb");
  ASSERT_TRUE(config.ok()) << config.status();
  auto o = ResolveOptions(*config, kObjectives);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->config_version, "exp-7");
  EXPECT_EQ(o->objective_weights, std::vector<float>({0.f, 2.5f, 0.f}));
  EXPECT_EQ(o->default_count, 30);
  EXPECT_EQ(o->creator_cap, 0);
  EXPECT_EQ(o->ann_beam_width, 800);
}

TEST(OptionsTest, EachOutOfRangeFieldIsNamed) {
  struct Case {
    const char* text;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {"params { max_count: 0 }", "max_count"},
           {"params { max_count: 5000 }", "max_count"},
           {"params { default_count: 300 }", "default_count"},
           {"params { max_count: 10 default_count: 11 }", "default_count"},
           {"params { ann_candidates: 20000 }", "ann_candidates"},
           {"params { popular_candidates: 5000 }", "popular_candidates"},
           {"params { max_exclude_ids: 2000000 }", "max_exclude_ids"},
           {"params { rerank_candidates: 200000 }", "rerank_candidates"},
           {"params { freshness_boost: -1 }", "freshness_boost"},
           {"params { freshness_half_life_hours: 0 }", "freshness_half_life_hours"},
           {"params { objective_weights { key: \"nope\" value: 1 } }", "nope"},
           {"params { ann_candidates: 0 popular_candidates: 0 fresh_candidates: 0 }",
            "no source"},
       }) {
    auto config = ParseConfig(c.text);
    ASSERT_TRUE(config.ok()) << c.text;
    auto o = ResolveOptions(*config, kObjectives);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(c.field)) << c.text;
  }
}

TEST(OptionsTest, ScoringPrecisionIsFloatUnlessBf16IsAskedAndRunnable) {
  EXPECT_EQ(ResolveOptions(RankingConfig(), kObjectives)->scoring_precision,
            Precision::kFloat);
  RankingConfig config;
  config.mutable_params()->set_scoring_precision("float");
  EXPECT_EQ(ResolveOptions(config, kObjectives)->scoring_precision, Precision::kFloat);
  config.mutable_params()->set_scoring_precision("bf16");
  auto bf16 = ResolveOptions(config, kObjectives);
  if (bf16::Supported()) {
    ASSERT_TRUE(bf16.ok()) << bf16.status();
    EXPECT_EQ(bf16->scoring_precision, Precision::kBf16);
  } else {
    EXPECT_THAT(bf16.status().message(), HasSubstr("AVX512-BF16"));
  }
  config.mutable_params()->set_scoring_precision("fp8");
  auto bad = ResolveOptions(config, kObjectives);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("params.scoring_precision: 'fp8' is not one of float, bf16"));
}

TEST(OptionsTest, ParseErrorsNameLineAndColumn) {
  auto config = ParseConfig("version: \"a\"\nparams { max_cont: 3 }\n");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("line 2"));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("max_cont"));
}

TEST(OptionsTest, ReadConfigFileNamesTheFile) {
  testing::TempDir dir;
  auto missing = ReadConfigFile(dir.Sub("absent.textproto"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("absent.textproto"));
  testing::WriteFile(dir.Sub("bad.textproto"), "params {");
  auto bad = ReadConfigFile(dir.Sub("bad.textproto"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("bad.textproto"));
  testing::WriteFile(dir.Sub("good.textproto"), "version: \"v2\"");
  auto good = ReadConfigFile(dir.Sub("good.textproto"));
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->version(), "v2");
  // An empty file (an in-place rewrite caught half way) is not "all
  // defaults": refused, so a watcher keeps the config it serves.
  for (const char* empty : {"", "  \n\t\n"}) {
    testing::WriteFile(dir.Sub("empty.textproto"), empty);
    auto refused = ReadConfigFile(dir.Sub("empty.textproto"));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("is empty"));
  }
}

}  // namespace
}  // namespace feedrank

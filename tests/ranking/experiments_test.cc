#include "ranking/experiments.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "ranking/bundle.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

const std::vector<std::string> kObjectives = {"click",  "long_view", "like",
                                              "follow", "comment",   "share"};

RankingConfig Parse(const std::string& text) {
  auto config = ParseConfig(text);
  EXPECT_TRUE(config.ok()) << config.status() << "\n" << text;
  return config.ok() ? *config : RankingConfig();
}

ExperimentConfig Create(const std::string& text) {
  auto config = ExperimentConfig::Create(Parse(text), kObjectives);
  EXPECT_TRUE(config.ok()) << config.status();
  return *std::move(config);
}

// The arm name of `user` in layer `layer`, "" when in no experiment.
std::string ArmOf(const ExperimentConfig& config, uint64_t user, int layer) {
  Assignment a;
  EXPECT_TRUE(config.Assign(user, &a).ok());
  return a.arms[layer] == nullptr ? "" : a.arms[layer]->arm;
}

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(FEEDRANK_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Two layers: "ranking" splits [0, 3000) into a (1000) and b (2000), plus
// `extra` experiments; "page" (salt `page_salt`) splits every user into p0
// [0, page_split) and p1 [page_split, 10000).
std::string TwoLayers(const std::string& page_salt = "page-1", int page_split = 5000,
                      const std::string& extra = "") {
  return absl::Substitute(R"(
    version: "two"
    layers { name: "ranking" salt: "ranking-1"
      experiments { name: "beam" ranges { begin: 0 end: 3000 }
        arms { name: "a" ranges { begin: 0 end: 1000 } overrides { max_count: 100 } }
        arms { name: "b" ranges { begin: 1000 end: 3000 } overrides { max_count: 300 } } }
      $2 }
    layers { name: "page" salt: "$0"
      experiments { name: "cap" ranges { begin: 0 end: 10000 }
        arms { name: "p0" ranges { begin: 0 end: $1 } overrides { creator_cap: 0 } }
        arms { name: "p1" ranges { begin: $1 end: 10000 } overrides { creator_cap: 5 } } } }
  )",
                          page_salt, page_split, extra);
}

// The documented function, golden values computed outside this code base
// (a Python transcription of the comment in experiments.h).
TEST(BucketTest, GoldenValues) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);  // the FNV-1a 64 test vector
  EXPECT_EQ(Fnv1a64("ranking-2024"), 0x4aa5c6c68bb86e98ULL);
  struct Golden {
    uint64_t user;
    const char* salt;
    int bucket;
  };
  for (const Golden& g : std::vector<Golden>{
           {0, "", 9008},
           {1, "", 8689},
           {0, "ranking", 2677},
           {1, "ranking", 5545},
           {42, "ranking", 8065},
           {42, "pages", 4888},
           {123456789, "ranking", 3564},
           {18446744073709551615ULL, "ranking", 7645},
           {9223372036854775808ULL, "pages", 2782},
           {987654321012345, "ui-v2", 7139},
       }) {
    EXPECT_EQ(Bucket(g.user, g.salt), g.bucket) << g.user << " '" << g.salt << "'";
  }
}

TEST(BucketTest, UniformOverSequentialIds) {
  std::vector<int> per_tenth(10);
  const int n = 200000;
  for (uint64_t u = 0; u < n; ++u) {
    const int b = Bucket(u, "uniform");
    ASSERT_GE(b, 0);
    ASSERT_LT(b, kBuckets);
    ++per_tenth[b / 1000];
  }
  const double sigma = std::sqrt(n * 0.1 * 0.9);
  for (int t = 0; t < 10; ++t) EXPECT_NEAR(per_tenth[t], n * 0.1, 5 * sigma) << t;
}

TEST(ExperimentsTest, ArmSharesWithinBinomialTolerance) {
  const ExperimentConfig config = Create(TwoLayers());
  std::map<std::string, int> counts;
  Assignment a;
  const int n = 200000;
  for (uint64_t u = 0; u < n; ++u) {
    ASSERT_TRUE(config.Assign(u * 7919 + 13, &a).ok());
    ++counts[a.arms[0] == nullptr ? "none" : a.arms[0]->arm];
    ++counts[a.arms[1]->arm];
  }
  for (const auto& [arm, p] : std::vector<std::pair<std::string, double>>{
           {"a", 0.1}, {"b", 0.2}, {"none", 0.7}, {"p0", 0.5}, {"p1", 0.5}}) {
    EXPECT_NEAR(counts[arm], n * p, 5 * std::sqrt(n * p * (1 - p))) << arm;
  }
}

TEST(ExperimentsTest, LayersAreIndependent) {
  // Within each arm of "ranking", "page" still splits users in half.
  const ExperimentConfig config = Create(TwoLayers());
  std::map<std::string, int> joint, ranking;
  Assignment a;
  for (uint64_t u = 0; u < 200000; ++u) {
    ASSERT_TRUE(config.Assign(u, &a).ok());
    const std::string r = a.arms[0] == nullptr ? "none" : a.arms[0]->arm;
    ++ranking[r];
    ++joint[r + "/" + a.arms[1]->arm];
  }
  for (const auto& [r, n] : ranking) {
    EXPECT_NEAR(joint[r + "/p0"], n * 0.5, 5 * std::sqrt(n * 0.25)) << r;
  }
}

TEST(ExperimentsTest, SameAssignmentFromAnotherInstanceOfTheConfig) {
  const ExperimentConfig one = Create(TwoLayers());
  const ExperimentConfig two = Create(TwoLayers());
  for (uint64_t u = 0; u < 5000; ++u) {
    for (int l = 0; l < 2; ++l) EXPECT_EQ(ArmOf(one, u, l), ArmOf(two, u, l));
  }
  // And pinned to the hash: a user's arm is the one holding their bucket.
  for (uint64_t u = 0; u < 1000; ++u) {
    const int b = Bucket(u, "ranking-1");
    EXPECT_EQ(ArmOf(one, u, 0), b < 1000 ? "a" : b < 3000 ? "b" : "") << u;
  }
}

TEST(ExperimentsTest, UserKeepsArmWhenAnotherLayerChanges) {
  const ExperimentConfig before = Create(TwoLayers());
  // Layer "page": new salt, new split.
  const ExperimentConfig after = Create(TwoLayers("page-2", 2000));
  int page_moved = 0;
  for (uint64_t u = 0; u < 20000; ++u) {
    ASSERT_EQ(ArmOf(before, u, 0), ArmOf(after, u, 0)) << u;
    page_moved += ArmOf(before, u, 1) != ArmOf(after, u, 1);
  }
  EXPECT_GT(page_moved, 1000);  // the edited layer did reassign
}

TEST(ExperimentsTest, UserKeepsArmWhenAnExperimentIsAddedInFreeBuckets) {
  const ExperimentConfig before = Create(TwoLayers());
  const ExperimentConfig after = Create(TwoLayers("page-1", 5000, R"(
    experiments { name: "fresh" ranges { begin: 5000 end: 6000 }
      arms { name: "f" ranges { begin: 5000 end: 6000 } overrides { fresh_candidates: 40 } } }
  )"));
  int joined = 0;
  for (uint64_t u = 0; u < 20000; ++u) {
    const std::string was = ArmOf(before, u, 0), is = ArmOf(after, u, 0);
    if (was.empty()) {
      EXPECT_TRUE(is.empty() || is == "f") << u;
      joined += is == "f";
    } else {
      EXPECT_EQ(was, is) << u;
    }
    EXPECT_EQ(ArmOf(before, u, 1), ArmOf(after, u, 1));
  }
  EXPECT_GT(joined, 1000);
}

TEST(ExperimentsTest, RampingUpMovesNoUserBetweenArms) {
  constexpr char kSmall[] = R"pb(
    layers {
      name: "l"
      salt: "s"
      experiments {
        name: "e"
        ranges { begin: 0 end: 1000 }
        arms {
          name: "c"
          ranges { begin: 0 end: 500 }
        }
        arms {
          name: "t"
          ranges { begin: 500 end: 1000 }
          overrides { creator_cap: 1 }
        }
      }
    }
  )pb";
  constexpr char kRamped[] = R"pb(
    layers {
      name: "l"
      salt: "s"
      experiments {
        name: "e"
        ranges { begin: 0 end: 1000 }
        ranges { begin: 1000 end: 3000 }
        arms {
          name: "c"
          ranges { begin: 0 end: 500 }
          ranges { begin: 1000 end: 2000 }
        }
        arms {
          name: "t"
          ranges { begin: 500 end: 1000 }
          ranges { begin: 2000 end: 3000 }
          overrides { creator_cap: 1 }
        }
      }
    }
  )pb";
  const ExperimentConfig small = Create(kSmall), ramped = Create(kRamped);
  for (uint64_t u = 0; u < 20000; ++u) {
    const std::string was = ArmOf(small, u, 0);
    if (!was.empty()) {
      EXPECT_EQ(ArmOf(ramped, u, 0), was) << u;
    }
  }
}

TEST(ExperimentsTest, ArmsOfDifferentLayersCombine) {
  const ExperimentConfig config = Create(TwoLayers());
  EXPECT_EQ(config.layer_count(), 2);
  EXPECT_EQ(config.combination_count(), 3 * 3);
  std::map<std::string, int> seen;
  Assignment a;
  for (uint64_t u = 0; u < 2000; ++u) {
    ASSERT_TRUE(config.Assign(u, &a).ok());
    ASSERT_NE(a.options, nullptr);
    EXPECT_EQ(a.options->config_version, "two");
    EXPECT_FALSE(a.pinned);
    EXPECT_EQ(a.bundle, "");
    const std::string r = a.arms[0] == nullptr ? "none" : a.arms[0]->arm;
    const std::string p = a.arms[1]->arm;
    EXPECT_EQ(a.arms[1]->layer, "page");
    EXPECT_EQ(a.arms[1]->experiment, "cap");
    EXPECT_EQ(a.options->max_count, r == "a" ? 100 : r == "b" ? 300 : 200) << r;
    EXPECT_EQ(a.options->creator_cap, p == "p0" ? 0 : 5) << p;
    // Fields no arm overrides keep the defaults.
    EXPECT_EQ(a.options->ann_candidates, 500);
    ++seen[r + "/" + p];
  }
  EXPECT_EQ(seen.size(), 6u);  // every combination met
  EXPECT_EQ(config.default_options().max_count, 200);
  EXPECT_EQ(config.default_options().creator_cap, 2);
}

// scoring_precision is an arm's to set (CONFIG.md: "settable per arm"):
// the arm's users rank in bf16, the others in float.
TEST(ExperimentsTest, AnArmSetsTheScoringPrecision) {
  const std::string text = R"pb(
    layers {
      name: "model"
      salt: "model"
      experiments {
        name: "precision"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "float"
          ranges { begin: 0 end: 5000 }
        }
        arms {
          name: "bf16"
          ranges { begin: 5000 end: 10000 }
          overrides { scoring_precision: "bf16" }
        }
      }
    }
  )pb";
  if (!bf16::Supported()) {
    auto refused = ExperimentConfig::Create(Parse(text), kObjectives);
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.status().message(), HasSubstr("scoring_precision"));
    return;
  }
  const ExperimentConfig config = Create(text);
  EXPECT_EQ(config.default_options().scoring_precision, Precision::kFloat);
  std::map<std::string, int> seen;
  Assignment a;
  for (uint64_t u = 0; u < 200; ++u) {
    ASSERT_TRUE(config.Assign(u, &a).ok());
    const std::string arm = a.arms[0]->arm;
    EXPECT_EQ(a.options->scoring_precision,
              arm == "bf16" ? Precision::kBf16 : Precision::kFloat)
        << arm;
    ++seen[arm];
  }
  EXPECT_EQ(seen.size(), 2u);
}

TEST(ExperimentsTest, ObjectiveWeightsOverridePerKey) {
  const ExperimentConfig config = Create(R"pb(
    params {
      objective_weights { key: "click" value: 1 }
      objective_weights { key: "like" value: 3 }
    }
    allow_pinning: true
    layers {
      name: "likes"
      salt: "likes"
      experiments {
        name: "e"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "heavy"
          ranges { begin: 0 end: 10000 }
          overrides { objective_weights { key: "like" value: 5 } }
        }
      }
    }
    layers {
      name: "clicks"
      salt: "clicks"
      experiments {
        name: "e"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "light"
          ranges { begin: 0 end: 10000 }
          overrides {
            objective_weights { key: "click" value: 0.5 }
            objective_weights { key: "share" value: 2 }
          }
        }
      }
    }
  )pb");
  Assignment a;
  ASSERT_TRUE(config.Assign(1, &a).ok());
  // click, long_view, like, follow, comment, share
  EXPECT_EQ(a.options->objective_weights,
            std::vector<float>({0.5f, 0.f, 5.f, 0.f, 0.f, 2.f}));
  EXPECT_EQ(config.default_options().objective_weights,
            std::vector<float>({1.f, 0.f, 3.f, 0.f, 0.f, 0.f}));
}

TEST(ExperimentsTest, WeightOverrideOverEmptyDefaultsKeepsTheOthersAtOne) {
  const ExperimentConfig config = Create(R"pb(
    layers {
      name: "l"
      salt: "s"
      experiments {
        name: "e"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "a"
          ranges { begin: 0 end: 10000 }
          overrides { objective_weights { key: "like" value: 2 } }
        }
      }
    }
  )pb");
  Assignment a;
  ASSERT_TRUE(config.Assign(7, &a).ok());
  EXPECT_EQ(a.options->objective_weights,
            std::vector<float>({1.f, 1.f, 2.f, 1.f, 1.f, 1.f}));
}

TEST(ExperimentsTest, NoLayersIsTheDefaultOptions) {
  const RankingConfig proto = Parse("version: \"v\" params { max_count: 50 }");
  auto config = ExperimentConfig::Create(proto, kObjectives);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->combination_count(), 1);
  Assignment a;
  ASSERT_TRUE(config->Assign(3, &a).ok());
  EXPECT_TRUE(a.arms.empty());
  EXPECT_EQ(a.options, &config->default_options());
  EXPECT_EQ(a.options->max_count, 50);
  EXPECT_EQ(a.options->config_version, "v");
}

TEST(ExperimentsTest, BundleOfTheArm) {
  const ExperimentConfig config = Create(R"pb(
    bundles { name: "v2" dir: "/bundles/v2" }
    layers {
      name: "model"
      salt: "model"
      experiments {
        name: "e"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "v1"
          ranges { begin: 0 end: 5000 }
        }
        arms {
          name: "v2"
          ranges { begin: 5000 end: 10000 }
          bundle: "v2"
        }
      }
    }
  )pb");
  Assignment a;
  for (uint64_t u = 0; u < 100; ++u) {
    ASSERT_TRUE(config.Assign(u, &a).ok());
    EXPECT_EQ(a.bundle, a.arms[0]->arm == "v2" ? "v2" : "") << u;
  }
}

TEST(ExperimentsTest, PinningWhenAllowed) {
  std::string text = TwoLayers();
  text += "allow_pinning: true\n";
  const ExperimentConfig config = Create(text);
  EXPECT_TRUE(config.allow_pinning());
  Assignment a;
  for (uint64_t u = 0; u < 200; ++u) {
    ASSERT_TRUE(config.Assign(u, {{"ranking", "b"}}, &a).ok());
    EXPECT_EQ(a.arms[0]->arm, "b");
    EXPECT_EQ(a.arms[1]->arm, ArmOf(config, u, 1));  // the other layer as hashed
    EXPECT_TRUE(a.pinned);
    EXPECT_EQ(a.options->max_count, 300);
  }
  ASSERT_TRUE(config.Assign(5, {{"page", "p0"}, {"ranking", "a"}}, &a).ok());
  EXPECT_EQ(a.options->max_count, 100);
  EXPECT_EQ(a.options->creator_cap, 0);
}

TEST(ExperimentsTest, PinsRefusedNamingThePin) {
  std::string allowed_text = TwoLayers();
  allowed_text += "allow_pinning: true\n";
  const ExperimentConfig allowed = Create(allowed_text);
  const ExperimentConfig refused = Create(TwoLayers());
  struct Case {
    const ExperimentConfig* config;
    std::vector<ArmPin> pins;
    std::vector<std::string> message;
  };
  for (const Case& c : std::vector<Case>{
           {&refused,
            {{"ranking", "a"}},
            {"pins[0] 'ranking' -> 'a'", "does not allow pinning"}},
           {&allowed,
            {{"nope", "a"}},
            {"pins[0] 'nope' -> 'a'", "no layer 'nope'", "ranking, page"}},
           {&allowed,
            {{"ranking", "zz"}},
            {"pins[0]", "has no arm 'zz'", "(arms: a, b)"}},
           {&allowed,
            {{"ranking", "a"}, {"ranking", "b"}},
            {"pins[1] 'ranking' -> 'b'", "already pinned by pins[0]"}},
       }) {
    Assignment a;
    ASSERT_TRUE(c.config->Assign(1, &a).ok());
    const Assignment before = a;
    absl::Status s = c.config->Assign(2, c.pins, &a);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    for (const std::string& m : c.message)
      EXPECT_THAT(std::string(s.message()), HasSubstr(m));
    // Nothing changed.
    EXPECT_EQ(a.arms, before.arms);
    EXPECT_EQ(a.options, before.options);
    EXPECT_EQ(a.pinned, before.pinned);
  }
}

TEST(ExperimentsTest, PinOnlyArm) {
  const ExperimentConfig config = Create(R"pb(
    allow_pinning: true
    layers {
      name: "l"
      salt: "s"
      experiments {
        name: "e"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "all"
          ranges { begin: 0 end: 10000 }
        }
        arms {
          name: "qa"
          overrides { creator_cap: 9 }
        }
      }
    }
  )pb");
  for (uint64_t u = 0; u < 1000; ++u) EXPECT_EQ(ArmOf(config, u, 0), "all");
  Assignment a;
  ASSERT_TRUE(config.Assign(1, {{"l", "qa"}}, &a).ok());
  EXPECT_EQ(a.options->creator_cap, 9);
}

TEST(ExperimentsTest, BucketShares) {
  const std::vector<ArmShare> shares = BucketShares(Create(TwoLayers()));
  ASSERT_EQ(shares.size(), 6u);
  auto text = [](const ArmShare& s) {
    return absl::StrCat(s.layer, "/", s.experiment, "/", s.arm, " ", s.buckets, " ",
                        s.share);
  };
  EXPECT_EQ(text(shares[0]), "ranking/beam/a 1000 0.1");
  EXPECT_EQ(text(shares[1]), "ranking/beam/b 2000 0.2");
  EXPECT_EQ(text(shares[2]), "ranking// 7000 0.7");
  EXPECT_EQ(text(shares[3]), "page/cap/p0 5000 0.5");
  EXPECT_EQ(text(shares[4]), "page/cap/p1 5000 0.5");
  EXPECT_EQ(text(shares[5]), "page// 0 0");  // no bucket is free
}

// The layer around one experiment `e` with arms `arms` (textproto).
std::string OneExperiment(const std::string& ranges, const std::string& arms) {
  return absl::StrCat("layers { name: \"l\" salt: \"s\" experiments { name: \"e\" ",
                      ranges, " ", arms, " } }");
}

TEST(ExperimentsTest, EachInvalidConfigIsRefusedWithItsPath) {
  const std::string kArm = "arms { name: \"a\" ranges { begin: 0 end: 100 } }";
  const std::string kRange = "ranges { begin: 0 end: 100 }";
  auto layer = [](const std::string& name, const std::string& salt,
                  const std::string& overrides) {
    return absl::StrCat("layers { name: \"", name, "\" salt: \"", salt,
                        "\" experiments { name: \"e\" ranges { begin: 0 end: 100 } "
                        "arms { name: \"a\" ranges { begin: 0 end: 100 } overrides { ",
                        overrides, " } } } }");
  };
  struct Case {
    std::string rule;
    std::string text;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"default params out of range", "params { max_count: 0 }",
            "params.max_count: 0 is outside [1, 1000]"},
           {"overlapping experiments",
            R"pb(layers { name: "x" salt: "x" }
                 layers {
                   name: "ranking"
                   salt: "r"
                   experiments {
                     name: "beam"
                     ranges { begin: 4000 end: 6000 }
                     arms {
                       name: "a"
                       ranges { begin: 4000 end: 6000 }
                     }
                   }
                   experiments {
                     name: "mid"
                     ranges { begin: 0 end: 10 }
                     arms {
                       name: "m"
                       ranges { begin: 0 end: 10 }
                     }
                   }
                   experiments {
                     name: "fresh"
                     ranges { begin: 5000 end: 7000 }
                     arms {
                       name: "f"
                       ranges { begin: 5000 end: 7000 }
                     }
                   }
                 })pb",
            "layers[1] 'ranking': experiments[0] 'beam' ranges[0] [4000, 6000) overlaps "
            "experiments[2] 'fresh' ranges[0] [5000, 7000)"},
           {"overlapping ranges of one experiment",
            OneExperiment("ranges { begin: 0 end: 100 } ranges { begin: 50 end: 150 }",
                          kArm),
            "layers[0] 'l': experiments[0] 'e' ranges[0] [0, 100) overlaps "
            "experiments[0] "
            "'e' ranges[1] [50, 150)"},
           {"range outside the buckets",
            OneExperiment("ranges { begin: 9000 end: 10001 }", kArm),
            "layers[0] 'l': experiments[0] 'e' ranges[0] [9000, 10001) is outside [0, "
            "10000)"},
           {"empty range", OneExperiment("ranges { begin: 30 end: 30 }", kArm),
            "layers[0] 'l': experiments[0] 'e' ranges[0] [30, 30) is empty"},
           {"experiment without ranges", OneExperiment("", kArm),
            "layers[0] 'l': experiments[0] 'e': has no ranges"},
           {"experiment without arms", OneExperiment(kRange, ""),
            "layers[0] 'l': experiments[0] 'e': has no arms"},
           {"layer without a salt", "layers { name: \"l\" }",
            "layers[0] 'l': salt is empty"},
           {"layer without a name", "layers { salt: \"s\" }", "layers[0]: name is empty"},
           {"two layers with one salt",
            "layers { name: \"a\" salt: \"s\" } layers { name: \"b\" salt: \"s\" }",
            "layers[1] 'b': salt 's' is also that of layers[0] 'a'"},
           {"duplicate layer names",
            "layers { name: \"a\" salt: \"s\" } layers { name: \"a\" salt: \"t\" }",
            "layers[1] 'a': name is also that of layers[0]"},
           {"duplicate experiment names",
            "layers { name: \"l\" salt: \"s\" experiments { name: \"e\" ranges { begin: "
            "0 end: "
            "1 } arms { name: \"a\" ranges { begin: 0 end: 1 } } } experiments { name: "
            "\"e\" "
            "ranges { begin: 1 end: 2 } arms { name: \"b\" ranges { begin: 1 end: 2 } } "
            "} }",
            "layers[0] 'l': experiments[1] 'e': name is also that of experiments[0]"},
           {"duplicate arm names in a layer",
            "layers { name: \"l\" salt: \"s\" experiments { name: \"e\" ranges { begin: "
            "0 end: "
            "1 } arms { name: \"a\" ranges { begin: 0 end: 1 } } } experiments { name: "
            "\"f\" "
            "ranges { begin: 1 end: 2 } arms { name: \"a\" ranges { begin: 1 end: 2 } } "
            "} }",
            "layers[0] 'l': experiments[1] 'f' arms[0] 'a': name is also that of "
            "experiments[0] 'e' arms[0] 'a'"},
           {"arms leave buckets out",
            OneExperiment("ranges { begin: 0 end: 100 } ranges { begin: 200 end: 300 }",
                          "arms { name: \"a\" ranges { begin: 0 end: 100 } } "
                          "arms { name: \"b\" ranges { begin: 200 end: 250 } }"),
            "layers[0] 'l': experiments[0] 'e': buckets [250, 300) are in no arm"},
           {"arm outside its experiment",
            OneExperiment(kRange, "arms { name: \"a\" ranges { begin: 0 end: 150 } }"),
            "layers[0] 'l': experiments[0] 'e' arms[0] 'a' ranges[0] [0, 150) is not "
            "within "
            "the experiment's ranges ([0, 100)): bucket 100"},
           {"arms overlap",
            OneExperiment(kRange,
                          "arms { name: \"a\" ranges { begin: 0 end: 60 } } "
                          "arms { name: \"b\" ranges { begin: 50 end: 100 } }"),
            "layers[0] 'l': experiments[0] 'e' arms[0] 'a' ranges[0] [0, 60) overlaps "
            "arms[1] 'b' ranges[0] [50, 100)"},
           {"arm range outside the buckets",
            OneExperiment(kRange, "arms { name: \"a\" ranges { begin: 0 end: 20000 } }"),
            "layers[0] 'l': experiments[0] 'e' arms[0] 'a' ranges[0] [0, 20000) is "
            "outside"},
           {"two layers override one field",
            layer("ranking", "r", "max_count: 50") + layer("page", "p", "max_count: 60"),
            "layers[1] 'page': experiments[0] 'e' arms[0] 'a' overrides max_count, which "
            "layers[0] 'ranking': experiments[0] 'e' arms[0] 'a' overrides too"},
           {"two layers override one objective weight",
            layer("x", "x", "objective_weights { key: \"like\" value: 2 }") +
                layer("y", "y",
                      "objective_weights { key: \"click\" value: 2 } "
                      "objective_weights { key: \"like\" value: 3 }"),
            "layers[1] 'y': experiments[0] 'e' arms[0] 'a' overrides "
            "objective_weights['like'], which layers[0] 'x'"},
           {"arm value out of range", layer("l", "s", "ann_candidates: 20000"),
            "layers[0] 'l': experiments[0] 'e' arms[0] 'a': with its overrides, "
            "params.ann_candidates: 20000 is outside [0, 10000]"},
           {"arm weight of an unknown objective",
            layer("l", "s", "objective_weights { key: \"shares\" value: 1 }"),
            "layers[0] 'l': experiments[0] 'e' arms[0] 'a': with its overrides, "
            "params.objective_weights: 'shares' is not an objective"},
           {"arms of two layers that cannot combine",
            layer("a", "a", "max_count: 50") + layer("b", "b", "default_count: 100"),
            "layers[0] 'a' arm 'a' with layers[1] 'b' arm 'a': together, "
            "params.default_count: 100 is outside [1, 50]"},
           {"unknown bundle",
            "bundles { name: \"v2\" dir: \"/b\" } " +
                OneExperiment(
                    kRange,
                    "arms { name: \"a\" ranges { begin: 0 end: 100 } bundle: \"v3\" }"),
            "layers[0] 'l': experiments[0] 'e' arms[0] 'a': bundle 'v3' is not among "
            "bundles "
            "(v2)"},
           {"two layers choose the bundle",
            "bundles { name: \"v2\" dir: \"/b\" } "
            "layers { name: \"x\" salt: \"x\" experiments { name: \"e\" ranges { begin: "
            "0 end: "
            "1 } arms { name: \"a\" ranges { begin: 0 end: 1 } bundle: \"v2\" } } } "
            "layers { name: \"y\" salt: \"y\" experiments { name: \"e\" ranges { begin: "
            "0 end: "
            "1 } arms { name: \"a\" ranges { begin: 0 end: 1 } bundle: \"v2\" } } }",
            "layers[1] 'y': experiments[0] 'e' arms[0] 'a' overrides bundle, which "
            "layers[0] "
            "'x'"},
           {"duplicate bundle names",
            "bundles { name: \"v2\" dir: \"/a\" } bundles { name: \"v2\" dir: \"/b\" }",
            "bundles[1] 'v2': name is also that of bundles[0]"},
           {"bundle without a name", "bundles { dir: \"/a\" }",
            "bundles[0]: name is empty"},
           {"bundle without a dir", "bundles { name: \"v2\" }",
            "bundles[0] 'v2': dir is empty"},
           {"too many combinations",
            [] {
              std::string t;
              for (int l = 0; l < 5; ++l) {
                absl::StrAppend(
                    &t, "layers { name: \"l", l, "\" salt: \"s", l,
                    "\" experiments { name: \"e\" ranges { begin: 0 end: 10 }");
                for (int a = 0; a < 10; ++a) {
                  absl::StrAppend(&t, " arms { name: \"a", a, "\" ranges { begin: ", a,
                                  " end: ", a + 1, " } }");
                }
                absl::StrAppend(&t, " } }");
              }
              return t;
            }(),
            "layers: more than 10000 combinations of arms"},
       }) {
    const RankingConfig config = Parse(c.text);
    absl::Status s = ValidateExperiments(config, kObjectives);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.rule << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.rule;
    EXPECT_EQ(ExperimentConfig::Create(config, kObjectives).status(), s) << c.rule;
  }
}

TEST(ExperimentsTest, OneLayerMayOverrideAFieldInSeveralExperiments) {
  // And two layers may override different keys of objective_weights.
  EXPECT_TRUE(ValidateExperiments(Parse(R"pb(
                                    layers {
                                      name: "l"
                                      salt: "s"
                                      experiments {
                                        name: "e"
                                        ranges { begin: 0 end: 10 }
                                        arms {
                                          name: "a"
                                          ranges { begin: 0 end: 10 }
                                          overrides { max_count: 50 }
                                        }
                                      }
                                      experiments {
                                        name: "f"
                                        ranges { begin: 10 end: 20 }
                                        arms {
                                          name: "b"
                                          ranges { begin: 10 end: 20 }
                                          overrides { max_count: 60 }
                                        }
                                      }
                                    }
                                  )pb"),
                                  kObjectives)
                  .ok());
}

TEST(ExperimentsTest, TheExampleConfigIsValidAndInTheDocs) {
  const std::string path =
      std::string(FEEDRANK_SOURCE_DIR) + "/config/experiments-example.textproto";
  auto proto = ReadConfigFile(path);
  ASSERT_TRUE(proto.ok()) << proto.status();
  auto config = ExperimentConfig::Create(*proto, kObjectives);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->layer_count(), 3);
  EXPECT_EQ(config->combination_count(), 5 * 6 * 3);
  Assignment a;
  ASSERT_TRUE(config->Assign(1, {{"value", "model-v2-qa"}}, &a).ok());
  EXPECT_EQ(a.bundle, "model-v2");
  EXPECT_EQ(a.options->creator_cap, 0);
  // docs/EXPERIMENTS.md shows the file as it is.
  const std::string file = ReadSource("config/experiments-example.textproto");
  ASSERT_FALSE(file.empty());
  EXPECT_THAT(ReadSource("docs/EXPERIMENTS.md"), HasSubstr(file));
}

TEST(ExperimentsTest, ARevertedArmServesItsControlAndKeepsItsName) {
  const RankingConfig config = Parse(TwoLayers());
  auto reverted = ExperimentConfig::Create(config, kObjectives, {{"ranking", "b"}});
  ASSERT_TRUE(reverted.ok()) << reverted.status();
  const ExperimentConfig plain = Create(TwoLayers());
  for (uint64_t user = 0; user < 2000; ++user) {
    Assignment r, p;
    ASSERT_TRUE(reverted->Assign(user, &r).ok());
    ASSERT_TRUE(plain.Assign(user, &p).ok());
    ASSERT_EQ(r.arms[0] == nullptr, p.arms[0] == nullptr);
    if (r.arms[0] == nullptr) continue;
    EXPECT_EQ(r.arms[0]->arm, p.arms[0]->arm);  // still reported as its arm
    if (r.arms[0]->arm == "b") {
      EXPECT_EQ(r.arms[0]->reverted_to, "a");  // control defaults to the first arm
      EXPECT_EQ(r.options->max_count, 100);    // a's overrides
    } else {
      EXPECT_EQ(r.arms[0]->reverted_to, "");
      EXPECT_EQ(r.options->max_count, 100);
    }
  }
  // A control arm is never reverted; unknown names are ignored.
  auto control =
      ExperimentConfig::Create(config, kObjectives, {{"ranking", "a"}, {"x", "y"}});
  ASSERT_TRUE(control.ok());
  for (int id = 0; id < control->arm_count(); ++id)
    EXPECT_EQ(control->arm(id).reverted_to, "");
}

TEST(ExperimentsTest, ControlAndGuardrailsAreChecked) {
  auto check = [](const std::string& arms, const std::string& control = "") {
    return ExperimentConfig::Create(
               Parse(absl::StrCat("layers { name: \"l\" salt: \"s\" experiments { name: "
                                  "\"e\" ranges { begin: 0 end: 100 } ",
                                  control, arms, " } }")),
               kObjectives)
        .status();
  };
  const std::string a = "arms { name: \"a\" ranges { begin: 0 end: 50 } } ";
  const std::string b = "arms { name: \"b\" ranges { begin: 50 end: 100 } ";
  EXPECT_TRUE(check(a + b + "guardrail { max_p99_ms: 20 } }").ok());
  EXPECT_THAT(check(a + b + "}", "control: \"z\" ").message(),
              HasSubstr("control 'z' is not one of its arms (a, b)"));
  EXPECT_THAT(
      check(a + b + "guardrail { max_p99_ms: 20 } }", "control: \"b\" ").message(),
      HasSubstr("control arm"));
  EXPECT_THAT(check(a + b + "guardrail { max_error_rate: 1.5 } }").message(),
              HasSubstr("max_error_rate: 1.5 is outside (0, 1]"));
  EXPECT_THAT(check(a + b + "guardrail { max_p99_ms: -1 } }").message(),
              HasSubstr("max_p99_ms"));
  EXPECT_THAT(check(a + b + "guardrail { min_calls: 3 } }").message(),
              HasSubstr("sets no limit"));
  EXPECT_THAT(
      check(a + b + "guardrail { max_degraded_share: 0.1 window_seconds: 4000 } }")
          .message(),
      HasSubstr("window_seconds: 4000"));
  // Defaults filled in; the fingerprint follows the arm's definition.
  auto e = ExperimentConfig::Create(
      Parse(
          "layers { name: \"l\" salt: \"s\" experiments { name: \"e\" ranges { begin: 0 "
          "end: 100 } " +
          a + b + "guardrail { max_p99_ms: 20 } } } }"),
      kObjectives);
  ASSERT_TRUE(e.ok());
  ASSERT_NE(e->guardrail(1), nullptr);
  EXPECT_EQ(e->guardrail(1)->window_seconds(), 60u);
  EXPECT_EQ(e->guardrail(1)->min_calls(), 100u);
  EXPECT_EQ(e->guardrail(0), nullptr);
  auto changed = ExperimentConfig::Create(
      Parse(
          "layers { name: \"l\" salt: \"s\" experiments { name: \"e\" ranges { begin: 0 "
          "end: 100 } " +
          a + b + "guardrail { max_p99_ms: 25 } } } }"),
      kObjectives);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(e->arm_fingerprint(0), changed->arm_fingerprint(0));
  EXPECT_NE(e->arm_fingerprint(1), changed->arm_fingerprint(1));
}

TEST(BundleRefTest, RelativeDirsResolveAgainstTheBaseAndConfinementHolds) {
  EXPECT_EQ(*ResolveBundleRefDir("/srv/b", "v2", false), "/srv/b/v2");
  EXPECT_EQ(*ResolveBundleRefDir("/srv/b", "./x/../v2/", false), "/srv/b/v2");
  EXPECT_EQ(*ResolveBundleRefDir("/srv/b", "/elsewhere", false), "/elsewhere");
  EXPECT_EQ(*ResolveBundleRefDir("", "v2", false), "v2");
  EXPECT_TRUE(ResolveBundleRefDir("/srv/b", "v2/3", true).ok());
  EXPECT_TRUE(ResolveBundleRefDir("/srv/b", "/srv/b/v2", true).ok());
  EXPECT_FALSE(ResolveBundleRefDir("/srv/b", "../c", true).ok());
  EXPECT_FALSE(ResolveBundleRefDir("/srv/b", "/srv/bc", true).ok());
  EXPECT_FALSE(ResolveBundleRefDir("/srv/b", "/etc", true).ok());
  EXPECT_FALSE(ResolveBundleRefDir("", "../x", true).ok());
  EXPECT_FALSE(ResolveBundleRefDir("", "/x", true).ok());
  // Symbolic links are followed: a link inside to a directory inside is
  // fine, one to a directory outside is refused, naming where it leads.
  testing::TempDir base, outside;
  std::filesystem::create_directory(base.Sub("v1"));
  std::filesystem::create_directory_symlink(base.Sub("v1"), base.Sub("alias"));
  std::filesystem::create_directory_symlink(outside.path(), base.Sub("escape"));
  std::filesystem::create_directory(outside.Sub("deep"));
  EXPECT_TRUE(CheckRealPathInside(base.path(), base.Sub("v1"), *FileSystem::Real()).ok());
  EXPECT_TRUE(
      CheckRealPathInside(base.path(), base.Sub("alias"), *FileSystem::Real()).ok());
  absl::Status escaped =
      CheckRealPathInside(base.path(), base.Sub("escape/deep"), *FileSystem::Real());
  EXPECT_EQ(escaped.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(escaped.message(), HasSubstr("outside the bundle base"));
  EXPECT_THAT(escaped.message(),
              HasSubstr(*FileSystem::Real()->RealPath(outside.path())));
  EXPECT_EQ(
      CheckRealPathInside(base.path(), base.Sub("missing"), *FileSystem::Real()).code(),
      absl::StatusCode::kNotFound);
  EXPECT_EQ(ParentDir("bundles/kuairand/"), "bundles");
  EXPECT_EQ(ParentDir("kuairand"), ".");
  EXPECT_EQ(ParentDir("/srv/root"), "/srv");
  EXPECT_EQ(ParentDir("/root"), "/");
}

}  // namespace
}  // namespace feedrank

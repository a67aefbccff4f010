// The shipped KuaiRand log, end to end as the README runs it: train (the
// defaults) writes the held-out days as a replay log, and replaying it shows
// the model beating its own retrieval order (config/kuairand-retrieval).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ranking/options.h"
#include "replay/replay_log.h"
#include "replay/replayer.h"
#include "tests/test_util.h"
#include "training/interaction_log.h"
#include "training/trainer.h"

namespace feedrank {
namespace {

const std::string kSource = FEEDRANK_SOURCE_DIR;

TEST(KuaiRandReplayTest, TheModelBeatsRetrievalOrderOnTheHeldOutDays) {
  testing::TempDir dir;
  TrainOptions o;
  o.log_path = kSource + "/data/kuairand-likehate/interactions.tsv";
  auto mapping = ReadLogMapping(kSource + "/data/kuairand-likehate/mapping.textproto");
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  o.mapping = *mapping;
  o.out = dir.Sub("bundle");
  o.replay_out = dir.Sub("heldout.bin");
  o.utc_offset_minutes = 480;
  o.evaluate = false;
  auto trained = Train(o);
  ASSERT_TRUE(trained.ok()) << trained.status();

  auto records = ReadReplayLog(o.replay_out, BadRecordPolicy::kFail);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_GT(records->size(), 1000u);
  std::vector<ReplayVariant> variants;
  for (const char* name : {"kuairand", "kuairand-retrieval"}) {
    ReplayVariant v;
    v.name = name;
    v.config_path = kSource + "/config/" + name + ".textproto";
    auto config = ReadConfigFile(v.config_path);
    ASSERT_TRUE(config.ok()) << config.status();
    v.config = *config;
    v.bundle = trained->bundle;
    variants.push_back(v);
  }
  ReplayOptions options;
  options.include_latency = false;
  auto report = RunReplay(*records, variants, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(report->users_with_positives(), 300);
  const auto& retrieval = report->variants(1);
  bool checked = false;
  for (const auto& d : retrieval.deltas()) {
    if (d.name() != "ndcg@10" && d.name() != "recall@10") continue;
    // Worse without the model, and the paired interval says so.
    EXPECT_LT(d.delta(), 0) << d.name();
    EXPECT_LT(d.hi(), 0) << d.name();
    EXPECT_TRUE(d.significant()) << d.name();
    EXPECT_FALSE(d.few_users());
    checked = true;
  }
  EXPECT_TRUE(checked);
}

}  // namespace
}  // namespace feedrank

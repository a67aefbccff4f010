#include "replay/replayer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "absl/strings/str_cat.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "ranking/experiments.h"
#include "ranking/options.h"
#include "replay/replay_log.h"
#include "server/feed_server.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

// Records for the bundle's users at its data time: outcomes are a few
// videos each, some liked. Relevance is random, but fixed by the seed.
std::vector<v1::ReplayRecord> Records(const Bundle& bundle, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Catalog& catalog = *bundle.catalog;
  std::vector<v1::ReplayRecord> out;
  for (int i = 0; i < n; ++i) {
    v1::ReplayRecord r;
    const uint64_t user =
        catalog.user_id(static_cast<int32_t>(rng() % catalog.num_users()));
    r.mutable_request()->set_user_id(user);
    r.mutable_request()->set_request_id(absl::StrCat("req-", i));
    r.mutable_request()->mutable_context()->set_client_time_ms(
        bundle.manifest.data_time_ms());
    r.set_time_ms(bundle.manifest.data_time_ms());
    for (const std::string& o : bundle.model->objectives()) r.add_objectives(o);
    r.set_positive_objective(r.objectives(0));
    for (int j = 0; j < 8; ++j) {
      v1::ReplayOutcome* o = r.add_outcomes();
      o->set_video_id(
          catalog.video_id(static_cast<int32_t>(rng() % catalog.num_videos())));
      for (int h = 0; h < r.objectives_size(); ++h) o->add_labels(rng() % 3 == 0 ? 1 : 0);
    }
    out.push_back(std::move(r));
  }
  return out;
}

class ReplayerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    testing::WriteSmallBundle(testing::SmallSynth(3000, 200), dir_->Sub("bundle"));
    auto bundle = LoadBundle(dir_->Sub("bundle"));
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = new std::shared_ptr<const Bundle>(*bundle);
  }
  static void TearDownTestSuite() {
    delete bundle_;
    delete dir_;
  }

  ReplayVariant Variant(const std::string& name, v1::RankingConfig config = {}) {
    ReplayVariant v;
    v.name = name;
    v.config = config;
    v.bundle = *bundle_;
    v.bundle_path = dir_->Sub("bundle");
    return v;
  }

  static const v1::ReplayReport::Metric* FindMetric(const v1::ReplayReport::Variant& v,
                                                    const std::string& name) {
    for (const auto& m : v.metrics()) {
      if (m.name() == name) return &m;
    }
    return nullptr;
  }

  static testing::TempDir* dir_;
  static std::shared_ptr<const Bundle>* bundle_;
};
testing::TempDir* ReplayerTest::dir_ = nullptr;
std::shared_ptr<const Bundle>* ReplayerTest::bundle_ = nullptr;

TEST_F(ReplayerTest, IdenticalVariantsDifferByExactlyZero) {
  const auto records = Records(**bundle_, 300, 1);
  ReplayOptions options;
  options.bootstrap_resamples = 200;
  auto report = RunReplay(records, {Variant("a"), Variant("b")}, options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->variants_size(), 2);
  const auto& b = report->variants(1);
  EXPECT_EQ(b.same_pages(), 300);
  ASSERT_GT(b.deltas_size(), 5);
  for (const auto& d : b.deltas()) {
    EXPECT_EQ(d.delta(), 0) << d.name();
    EXPECT_LE(d.lo(), 0) << d.name();
    EXPECT_GE(d.hi(), 0) << d.name();
    EXPECT_FALSE(d.significant()) << d.name();
  }
  EXPECT_EQ(report->top_diffs_size(), 0);
  // The metrics are there and rest on the users with positives.
  const auto* ndcg = FindMetric(report->variants(0), "ndcg@10");
  ASSERT_NE(ndcg, nullptr);
  EXPECT_GT(ndcg->users(), 50);
  EXPECT_EQ(ndcg->users(), report->users_with_positives());
  ASSERT_NE(FindMetric(report->variants(0), "auc/" + records[0].objectives(0)), nullptr);
}

TEST_F(ReplayerTest, TheFiguresDoNotDependOnThreadsAndLatencyOffIsByteIdentical) {
  const auto records = Records(**bundle_, 200, 2);
  v1::RankingConfig other;
  other.mutable_params()->set_creator_cap(1);
  ReplayOptions one;
  one.threads = 1;
  one.include_latency = false;
  one.bootstrap_resamples = 200;
  ReplayOptions four = one;
  four.threads = 4;
  auto a = RunReplay(records, {Variant("a"), Variant("cap1", other)}, one);
  auto b = RunReplay(records, {Variant("a"), Variant("cap1", other)}, four);
  ASSERT_TRUE(a.ok() && b.ok());
  b->set_threads(1);
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
  EXPECT_EQ(a->variants(0).latency_size(), 0);
}

TEST_F(ReplayerTest, RetrievalOrderIsADifferentVariantAndDiffsAreListed) {
  const auto records = Records(**bundle_, 200, 3);
  v1::RankingConfig no_model;
  no_model.mutable_params()->set_rerank_candidates(0);
  ReplayOptions options;
  options.bootstrap_resamples = 200;
  options.top_diffs = 5;
  ReplayPages pages;
  auto report = RunReplay(records, {Variant("model"), Variant("retrieval", no_model)},
                          options, "", &pages);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LT(report->variants(1).same_pages(), 200);
  ASSERT_EQ(report->top_diffs_size(), 5);
  // Sorted by Jaccard, lowest first, and they are the replayed pages.
  for (int i = 1; i < 5; ++i) {
    EXPECT_LE(report->top_diffs(i - 1).jaccard(), report->top_diffs(i).jaccard());
  }
  // No model ran: no AUC for the retrieval-order variant.
  EXPECT_EQ(FindMetric(report->variants(1), "auc/" + records[0].objectives(0)), nullptr);
  EXPECT_EQ(report->variants(1).degraded(), 0);
}

TEST_F(ReplayerTest, InProcessAndAgainstAServerGiveTheSamePages) {
  const auto records = Records(**bundle_, 150, 4);
  ServerOptions server_options;
  server_options.address = "127.0.0.1:0";
  server_options.bundle_dir = dir_->Sub("bundle");
  auto server = FeedServer::Start(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Load().ok());
  ReplayOptions options;
  options.bootstrap_resamples = 200;
  ReplayPages local, remote;
  auto in_process = RunReplay(records, {Variant("local")}, options, "", &local);
  ASSERT_TRUE(in_process.ok()) << in_process.status();
  ReplayVariant target = Variant("server");
  target.target = absl::StrCat("127.0.0.1:", (*server)->port());
  options.concurrency = 4;
  auto against = RunReplay(records, {target}, options, "", &remote);
  ASSERT_TRUE(against.ok()) << against.status();
  ASSERT_EQ(local.size(), 1u);
  ASSERT_EQ(remote.size(), 1u);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(local[0][i], remote[0][i]) << "record " << i;
    EXPECT_FALSE(local[0][i].empty());
  }
  EXPECT_EQ(against->variants(0).errors(), 0);
  // The quality figures agree too (same pages, same outcomes).
  EXPECT_EQ(FindMetric(in_process->variants(0), "ndcg@10")->value(),
            FindMetric(against->variants(0), "ndcg@10")->value());
  // Open loop at the logged times (all equal here: a burst) also answers.
  options.open_loop = true;
  options.speed = 10;
  auto open = RunReplay(records, {target}, options);
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->variants(0).errors(), 0);
  ASSERT_GT(open->variants(0).latency_size(), 0);
  EXPECT_EQ(open->variants(0).latency(0).stage(), "request");
  (*server)->Shutdown();
}

TEST_F(ReplayerTest, AServersRequestLogReplaysToThePagesItServed) {
  // A server logs every answered call; replaying its log in process, and
  // against the server again, gives back the pages it served.
  testing::TempDir logs;
  ServerOptions server_options;
  server_options.address = "127.0.0.1:0";
  server_options.bundle_dir = dir_->Sub("bundle");
  server_options.request_log.path = logs.Sub("requests.log");
  server_options.request_log.sample_rate = 1;
  auto server = FeedServer::Start(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Load().ok());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::FeedRanker::NewStub(channel);
  const Catalog& catalog = *(*bundle_)->catalog;
  for (int i = 0; i < 80; ++i) {
    v1::RankFeedRequest request;
    request.set_user_id(catalog.user_id(i * 7 % catalog.num_users()));
    request.set_request_id(absl::StrCat("live-", i));
    request.set_count(5 + i % 20);
    request.mutable_context()->set_client_time_ms((*bundle_)->manifest.data_time_ms());
    if (i % 3 == 0) request.add_exclude_ids(catalog.video_id(i));
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->RankFeed(&context, request, &response).ok());
  }
  // A second server for the target replay; the first flushes its log.
  (*server)->Shutdown();
  auto records = ReadReplayLog(logs.Sub("requests.log"), BadRecordPolicy::kFail);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 80u);
  auto same_as_served = [](const v1::ReplayReport& report) {
    for (const auto& m : report.variants(0).metrics()) {
      if (m.name() == "same_page_as_served") return m;
    }
    ADD_FAILURE() << "no same_page_as_served";
    return v1::ReplayReport::Metric();
  };
  ReplayOptions options;
  options.bootstrap_resamples = 100;
  ReplayPages pages;
  auto in_process = RunReplay(*records, {Variant("local")}, options, "", &pages);
  ASSERT_TRUE(in_process.ok()) << in_process.status();
  EXPECT_EQ(same_as_served(*in_process).value(), 1.0);
  EXPECT_EQ(same_as_served(*in_process).requests(), 80);
  for (size_t i = 0; i < records->size(); ++i) {
    const auto& served = (*records)[i].served().video_ids();
    EXPECT_EQ(pages[0][i], std::vector<uint64_t>(served.begin(), served.end())) << i;
  }
  server_options.request_log = RequestLogOptions();
  auto again = FeedServer::Start(server_options);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Load().ok());
  ReplayVariant target = Variant("server");
  target.target = absl::StrCat("127.0.0.1:", (*again)->port());
  auto remote = RunReplay(*records, {target}, options);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(same_as_served(*remote).value(), 1.0);
  (*again)->Shutdown();
}

TEST_F(ReplayerTest, AConfigsArmsReplayAsTheServerAssignsThemOrPinned) {
  // One layer, two arms splitting every bucket: the model, and retrieval
  // order. Replayed as assigned, each user's page is their arm's.
  auto config = ParseConfig(R"pb(
    version: "exp"
    layers {
      name: "rank"
      salt: "rank-salt"
      experiments {
        name: "model-or-not"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "model"
          ranges { begin: 0 end: 5000 }
        }
        arms {
          name: "retrieval"
          ranges { begin: 5000 end: 10000 }
          overrides { rerank_candidates: 0 }
        }
      }
    }
  )pb");
  ASSERT_TRUE(config.ok()) << config.status();
  const auto records = Records(**bundle_, 200, 7);
  ReplayVariant assigned = Variant("assigned", *config);
  ReplayVariant model = assigned;
  model.name = "model";
  model.pins = {{"rank", "model"}};
  ReplayVariant retrieval = assigned;
  retrieval.name = "retrieval";
  retrieval.pins = {{"rank", "retrieval"}};
  ReplayOptions options;
  options.bootstrap_resamples = 100;
  ReplayPages pages;
  auto report = RunReplay(records, {assigned, model, retrieval}, options, "", &pages);
  ASSERT_TRUE(report.ok()) << report.status();
  int in_model = 0, in_retrieval = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const bool retrieval_arm =
        Bucket(records[i].request().user_id(), "rank-salt") >= 5000;
    EXPECT_EQ(pages[0][i], pages[retrieval_arm ? 2 : 1][i]) << i;
    (retrieval_arm ? in_retrieval : in_model) += 1;
  }
  EXPECT_GT(in_model, 50);
  EXPECT_GT(in_retrieval, 50);
  EXPECT_LT(report->variants(2).same_pages(), 200);
  // A pin of an arm the config lacks names it.
  ReplayVariant bad = assigned;
  bad.pins = {{"rank", "nope"}};
  auto refused = RunReplay(records, {bad}, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("nope"));
}

TEST_F(ReplayerTest, AnArmOnASecondBundleRanksWithThatBundle) {
  testing::TempDir other;
  SynthOptions synth = testing::SmallSynth(3000, 200);
  synth.seed = 23;
  synth.version = "second";
  testing::WriteSmallBundle(synth, other.Sub("bundle"));
  auto config = ParseConfig(absl::StrCat(R"cfg(
    bundles { name: "v2" dir: ")cfg",
                                         other.Sub("bundle"), R"cfg(" }
    layers {
      name: "model"
      salt: "m"
      experiments {
        name: "new-model"
        ranges { begin: 0 end: 10000 }
        arms { name: "old" ranges { begin: 0 end: 5000 } }
        arms { name: "new" ranges { begin: 5000 end: 10000 } bundle: "v2" }
      }
    }
  )cfg"));
  ASSERT_TRUE(config.ok()) << config.status();
  const auto records = Records(**bundle_, 100, 8);
  ReplayVariant pinned = Variant("new", *config);
  pinned.pins = {{"model", "new"}};
  auto second = LoadBundle(other.Sub("bundle"));
  ASSERT_TRUE(second.ok()) << second.status();
  ReplayVariant direct = Variant("direct");
  direct.bundle = *second;
  ReplayOptions options;
  options.bootstrap_resamples = 100;
  ReplayPages a, b;
  ASSERT_TRUE(RunReplay(records, {pinned}, options, "", &a).ok());
  ASSERT_TRUE(RunReplay(records, {direct}, options, "", &b).ok());
  EXPECT_EQ(a, b);
  // And not the default bundle's pages.
  ReplayPages c;
  ASSERT_TRUE(RunReplay(records, {Variant("default")}, options, "", &c).ok());
  EXPECT_NE(a, c);
}

TEST_F(ReplayerTest, ASweepDrawsRecallAgainstExactSearch) {
  const auto records = Records(**bundle_, 100, 5);
  auto sweep = ParseSweep("ann_beam_width=16,64,512");
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  std::vector<ReplayVariant> variants;
  for (int64_t value : sweep->second) {
    v1::RankingConfig config;
    ASSERT_TRUE(SetRankingParam(config.mutable_params(), sweep->first, value).ok());
    ReplayVariant v = Variant(absl::StrCat("beam", value), config);
    v.sweep_override = absl::StrCat(sweep->first, "=", value);
    variants.push_back(v);
  }
  ReplayOptions options;
  options.bootstrap_resamples = 100;
  options.exact_recall = true;
  auto report = RunReplay(records, variants, options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->sweep_size(), 3);
  EXPECT_EQ(report->sweep(0).param(), "ann_beam_width");
  EXPECT_EQ(report->sweep(2).value(), 512);
  // A wider beam finds at least as much of the exact top; 512 nearly all.
  EXPECT_LE(report->sweep(0).recall_vs_exact(),
            report->sweep(2).recall_vs_exact() + 1e-9);
  EXPECT_GT(report->sweep(2).recall_vs_exact(), 0.9);
}

TEST_F(ReplayerTest, BadSweepsAndOptionsAreRefusedByName) {
  EXPECT_THAT(ParseSweep("beam=1,2").status().message(), HasSubstr("not a field"));
  EXPECT_THAT(ParseSweep("ann_beam_width=1,x").status().message(),
              HasSubstr("not an integer"));
  EXPECT_THAT(ParseSweep("ann_beam_width").status().message(), HasSubstr("FIELD=V1"));
  EXPECT_THAT(ParseSweep("objective_weights=1").status().message(),
              HasSubstr("not a numeric"));
  struct Case {
    std::function<void(ReplayOptions*)> set;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {[](ReplayOptions* o) { o->k = 0; }, "k:"},
           {[](ReplayOptions* o) { o->threads = 0; }, "threads:"},
           {[](ReplayOptions* o) { o->threads = 257; }, "threads:"},
           {[](ReplayOptions* o) { o->bootstrap_resamples = 99; },
            "bootstrap_resamples:"},
           {[](ReplayOptions* o) { o->top_diffs = -1; }, "top_diffs:"},
           {[](ReplayOptions* o) { o->concurrency = 0; }, "concurrency:"},
           {[](ReplayOptions* o) { o->speed = 0; }, "speed:"},
           {[](ReplayOptions* o) { o->speed = std::nan(""); }, "speed:"},
           {[](ReplayOptions* o) { o->deadline_ms = 0; }, "deadline_ms:"},
       }) {
    ReplayOptions bad;
    c.set(&bad);
    EXPECT_THAT(ValidateReplayOptions(bad).message(), HasSubstr(c.field)) << c.field;
  }
  EXPECT_TRUE(ValidateReplayOptions(ReplayOptions()).ok());
  const auto records = Records(**bundle_, 10, 6);
  ReplayOptions options;
  options.positive_objective = "nope";
  auto report = RunReplay(records, {Variant("a")}, options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("'nope'"));
  // A config that does not resolve names the variant.
  v1::RankingConfig config;
  config.mutable_params()->set_max_count(0);
  report = RunReplay(records, {Variant("broken", config)}, ReplayOptions());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("broken"));
  EXPECT_THAT(RunReplay(records, {Variant("a"), Variant("a")}, ReplayOptions())
                  .status()
                  .message(),
              HasSubstr("two are named"));
}

}  // namespace
}  // namespace feedrank

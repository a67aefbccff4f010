// The server as operators run it: metrics scraped over real HTTP, bundle
// versions swapped under load, config reloads, readiness, access logs, an
// exclusive port.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/client.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"
#include "tests/server/scrape.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using testing::Get;
using ::testing::HasSubstr;
using testing::ParsePrometheus;
using testing::Sample;
using testing::Value;

class OperationsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    SynthOptions a = testing::SmallSynth(3000, 100);
    a.version = "bundle-a";
    testing::WriteSmallBundle(a, dir_->Sub("a"));
    SynthOptions b = testing::SmallSynth(3500, 100);
    b.seed = 12;
    b.version = "bundle-b";
    testing::WriteSmallBundle(b, dir_->Sub("b"));
  }
  static void TearDownTestSuite() { delete dir_; }

  void Start(ServerOptions options) {
    options.address = "127.0.0.1:0";
    if (options.metrics_address.empty()) options.metrics_address = "127.0.0.1:0";
    auto server = FeedServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::FeedRanker::NewStub(channel_);
  }

  grpc::Status Call(const v1::RankFeedRequest& request, v1::RankFeedResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->RankFeed(&context, request, response);
  }

  std::vector<Sample> Scrape() {
    auto res = Get(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(res) << "scrape failed";
    if (!res) return {};
    EXPECT_EQ(res->status, 200);
    EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain"));
    return ParsePrometheus(res->body);
  }

  static testing::TempDir* dir_;
  std::unique_ptr<FeedServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
};
testing::TempDir* OperationsTest::dir_ = nullptr;

TEST_F(OperationsTest, MetricsScrapedOverHttpCountTheTrafficSent) {
  ServerOptions o;
  o.bundle_dir = dir_->Sub("a");
  Start(o);
  // Not ready before the load; live all along.
  auto ready = Get(server_->metrics_port(), "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_THAT(ready->body, HasSubstr("no bundle loaded yet"));
  EXPECT_EQ(Get(server_->metrics_port(), "/healthz")->status, 200);
  ASSERT_TRUE(server_->Load().ok());
  EXPECT_EQ(Get(server_->metrics_port(), "/readyz")->status, 200);

  v1::RankFeedRequest good;
  good.set_user_id(server_->snapshots().Current()->bundle->catalog->user_id(0));
  v1::RankFeedRequest cold;
  cold.set_user_id(987654321);
  v1::RankFeedRequest bad;
  bad.set_count(0);
  v1::RankFeedResponse response;
  for (int i = 0; i < 17; ++i) ASSERT_TRUE(Call(good, &response).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Call(cold, &response).ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Call(bad, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  const std::vector<Sample> m = Scrape();
  const std::map<std::string, std::string> rank_feed = {{"method", "RankFeed"}};
  EXPECT_EQ(Value(m, "feedrank_requests_total", {{"method", "RankFeed"}, {"code", "OK"}}),
            20);
  EXPECT_EQ(Value(m, "feedrank_requests_total",
                  {{"method", "RankFeed"}, {"code", "INVALID_ARGUMENT"}}),
            5);
  EXPECT_EQ(Value(m, "feedrank_request_duration_seconds_count", rank_feed), 25);
  EXPECT_EQ(Value(m, "feedrank_request_duration_seconds_bucket",
                  {{"method", "RankFeed"}, {"le", "+Inf"}}),
            25);
  EXPECT_EQ(Value(m, "feedrank_rankings_total"), 20);
  EXPECT_EQ(Value(m, "feedrank_cold_start_total"), 3);
  EXPECT_EQ(Value(m, "feedrank_stage_duration_seconds_count", {{"stage", "model"}}), 20);
  EXPECT_EQ(Value(m, "feedrank_candidates_total", {{"source", "ann"}, {"phase", "kept"}}),
            20 * 500);
  EXPECT_EQ(Value(m, "feedrank_degraded_total", {{"cause", "model_skipped"}}), 0);
  EXPECT_EQ(Value(m, "feedrank_in_flight_calls"), 0);
  EXPECT_EQ(Value(m, "feedrank_queue_depth"), 0);
  EXPECT_EQ(Value(m, "feedrank_loads_total", {{"kind", "bundle"}, {"outcome", "ok"}}), 1);
  EXPECT_EQ(Value(m, "feedrank_bundle_info", {{"version", "bundle-a"}}), 1);
  EXPECT_GT(Value(m, "feedrank_load_duration_seconds_sum", {{"kind", "bundle"}}), 0);
}

TEST_F(OperationsTest, ANewVersionInTheRootIsServedUnderLoadWithNoFailedOrMixedCall) {
  testing::TempDir root;
  testing::CopyDir(dir_->Sub("a"), root.Sub("1"));
  // The pages each bundle gives, computed in-process, to check every answer
  // against the version it reports.
  std::map<std::string, std::vector<uint64_t>> expected;
  v1::RankFeedRequest request;
  request.set_user_id(99999999);  // cold start: the same user in both bundles
  request.mutable_context()->set_client_time_ms(1793491200000);
  for (const char* name : {"a", "b"}) {
    auto bundle = LoadBundle(dir_->Sub(name));
    ASSERT_TRUE(bundle.ok());
    auto options = ResolveOptions(RankingConfig(), (*bundle)->model->objectives());
    auto ranker = Ranker::Create(*bundle, RankerOptions{*options, RankerCosts{0, 0, 0}});
    RankRequest rank;
    rank.user_id = request.user_id();
    rank.context.now_ms = request.context().client_time_ms();
    RankResult result;
    ASSERT_TRUE((*ranker)->Rank(rank, &result).ok());
    for (const RankedVideo& v : result.items) {
      expected[(*bundle)->manifest.version()].push_back(v.video_id);
    }
  }
  ASSERT_NE(expected["bundle-a"], expected["bundle-b"]);
  ServerOptions o;
  o.bundle_root = root.path();
  o.watch_interval = absl::Milliseconds(50);
  Start(o);
  ASSERT_TRUE(server_->Load().ok());
  EXPECT_EQ(server_->served_version(), 1);

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, mixed{0};
  std::mutex mu;
  std::map<std::string, int> seen;
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      auto stub = v1::FeedRanker::NewStub(channel_);
      while (!stop.load()) {
        v1::RankFeedResponse response;
        grpc::ClientContext context;
        if (!stub->RankFeed(&context, request, &response).ok()) {
          ++failures;
          continue;
        }
        std::vector<uint64_t> ids;
        for (const v1::RankedItem& item : response.items())
          ids.push_back(item.video_id());
        if (ids != expected[response.bundle_version()]) ++mixed;
        std::lock_guard<std::mutex> lock(mu);
        ++seen[response.bundle_version()];
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(200));
  // A broken version 2 is refused; version 1 keeps serving.
  testing::CopyDir(dir_->Sub("b"), root.Sub("2.partial-copy"));
  testing::WriteFile(root.Sub("2.partial-copy/index.faiss"), "not an index");
  ASSERT_EQ(::rename(root.Sub("2.partial-copy").c_str(), root.Sub("2").c_str()), 0);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Value(Scrape(), "feedrank_loads_total",
               {{"kind", "bundle"}, {"outcome", "refused"}}) < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "version 2 was not tried";
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(server_->served_version(), 1);
  // A good version 3 is picked up within seconds.
  testing::CopyDir(dir_->Sub("b"), root.Sub("3.tmp"));
  ASSERT_EQ(::rename(root.Sub("3.tmp").c_str(), root.Sub("3").c_str()), 0);
  const auto dropped = std::chrono::steady_clock::now();
  while (server_->served_version() != 3) {
    ASSERT_LT(std::chrono::steady_clock::now(), dropped + std::chrono::seconds(20));
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - dropped, std::chrono::seconds(5));
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mixed.load(), 0);
  EXPECT_GT(seen["bundle-a"], 0);
  EXPECT_GT(seen["bundle-b"], 0);
  const std::vector<Sample> m = Scrape();
  EXPECT_EQ(Value(m, "feedrank_bundle_info", {{"version", "bundle-b"}}), 1);
  EXPECT_EQ(Value(m, "feedrank_loads_total", {{"kind", "bundle"}, {"outcome", "ok"}}), 2);
  // The refused version is not retried while it stays as it is.
  EXPECT_EQ(
      Value(m, "feedrank_loads_total", {{"kind", "bundle"}, {"outcome", "refused"}}), 1);
}

TEST_F(OperationsTest, TheConfigFileIsReloadedWhenItChangesAndABadOneChangesNothing) {
  testing::TempDir d;
  const std::string config = d.Sub("config.textproto");
  testing::WriteFile(config, "version: \"one\"\n");
  ServerOptions o;
  o.bundle_dir = dir_->Sub("a");
  o.config_path = config;
  o.watch_interval = absl::Milliseconds(30);
  Start(o);
  ASSERT_TRUE(server_->Load().ok());
  auto wait_for = [&](const std::string& version) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (server_->snapshots().Current()->config.version() != version) {
      if (std::chrono::steady_clock::now() > until) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  };
  // An atomic rename over the file.
  testing::WriteFile(d.Sub("new"), "version: \"two\"\n");
  ASSERT_EQ(::rename(d.Sub("new").c_str(), config.c_str()), 0);
  EXPECT_TRUE(wait_for("two"));
  // A refused config: nothing changes, and the refusal is counted.
  testing::WriteFile(config, "version: \"three\"\nparams { max_count: 5000 }\n");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Value(Scrape(), "feedrank_loads_total",
               {{"kind", "config"}, {"outcome", "refused"}}) < 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), until);
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_->snapshots().Current()->config.version(), "two");
  EXPECT_THAT(std::string(server_->Reload().message()), HasSubstr("max_count"));
  // A Kubernetes ConfigMap: the file is a symlink through ..data, and an
  // update points ..data at a new directory.
  testing::TempDir cm;
  ASSERT_EQ(::mkdir(cm.Sub("v1").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(cm.Sub("v2").c_str(), 0755), 0);
  testing::WriteFile(cm.Sub("v1/config.textproto"), "version: \"cm-1\"\n");
  testing::WriteFile(cm.Sub("v2/config.textproto"), "version: \"cm-2\"\n");
  ASSERT_EQ(::symlink("v1", cm.Sub("..data").c_str()), 0);
  ASSERT_EQ(::symlink("..data/config.textproto", cm.Sub("config.textproto").c_str()), 0);
  server_->Shutdown();
  o.config_path = cm.Sub("config.textproto");
  Start(o);
  ASSERT_TRUE(server_->Load().ok());
  EXPECT_EQ(server_->snapshots().Current()->config.version(), "cm-1");
  ASSERT_EQ(::symlink("v2", cm.Sub("..data_tmp").c_str()), 0);
  ASSERT_EQ(::rename(cm.Sub("..data_tmp").c_str(), cm.Sub("..data").c_str()), 0);
  EXPECT_TRUE(wait_for("cm-2"));
}

TEST_F(OperationsTest, ASecondServerOnTheSamePortFailsToStart) {
  ServerOptions o;
  o.bundle_dir = dir_->Sub("a");
  Start(o);
  ServerOptions second = o;
  second.address = absl::StrCat("127.0.0.1:", server_->port());
  auto other = FeedServer::Start(second);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("in use"));
  ServerOptions metrics_clash = o;
  metrics_clash.address = "127.0.0.1:0";
  metrics_clash.metrics_address = absl::StrCat("127.0.0.1:", server_->metrics_port());
  auto clash = FeedServer::Start(metrics_clash);
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(clash.status().message()), HasSubstr("metrics address"));
}

TEST_F(OperationsTest, DrainingIsNotReadyButLiveWhileCallsAreStillAnswered) {
  ServerOptions o;
  o.bundle_dir = dir_->Sub("a");
  o.drain_grace = absl::Milliseconds(600);
  Start(o);
  ASSERT_TRUE(server_->Load().ok());
  std::thread stop([this] { server_->Shutdown(); });
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(*CheckHealth(channel_, kRankerServiceName), "NOT_SERVING");
  EXPECT_EQ(*CheckHealth(channel_, ""), "NOT_SERVING");
  EXPECT_EQ(*CheckHealth(channel_, kLivenessServiceName), "SERVING");
  auto ready = Get(server_->metrics_port(), "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_THAT(ready->body, HasSubstr("draining"));
  v1::RankFeedRequest request;
  v1::RankFeedResponse response;
  EXPECT_TRUE(Call(request, &response).ok());  // still answered in the grace
  stop.join();
}

TEST_F(OperationsTest, AccessLogHasALinePerCallAndEveryError) {
  testing::TempDir d;
  ServerOptions o;
  o.bundle_dir = dir_->Sub("a");
  o.access_log.path = d.Sub("access.jsonl");
  o.access_log.sample_rate = 1;
  Start(o);
  ASSERT_TRUE(server_->Load().ok());
  v1::RankFeedRequest request;
  request.set_request_id("req-\"quoted\"");
  request.set_user_id(5);
  v1::RankFeedResponse response;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Call(request, &response).ok());
  request.set_count(0);
  ASSERT_FALSE(Call(request, &response).ok());
  server_->Shutdown();  // flushes
  const std::string log = testing::ReadFile(d.Sub("access.jsonl"));
  const std::vector<std::string> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << log;
  EXPECT_THAT(lines[0], HasSubstr("\"request_id\":\"req-\\\"quoted\\\"\""));
  EXPECT_THAT(lines[0], HasSubstr("\"user\":5,\"code\":\"OK\""));
  EXPECT_THAT(lines[0], HasSubstr("\"items\":20"));
  EXPECT_THAT(lines[0], HasSubstr("\"bundle\":\"bundle-a\""));
  EXPECT_THAT(lines[4], HasSubstr("\"code\":\"INVALID_ARGUMENT\""));
  EXPECT_THAT(lines[4], HasSubstr("count: 0 is outside"));
}

TEST(ServerOptionsTest, EveryOptionIsChecked) {
  ServerOptions o;
  o.bundle_dir = "b";
  EXPECT_TRUE(ValidateServerOptions(o).ok());
  auto refused = [](std::function<void(ServerOptions*)> mutate) {
    ServerOptions o;
    o.bundle_dir = "b";
    mutate(&o);
    return ValidateServerOptions(o);
  };
  EXPECT_THAT(
      std::string(refused([](ServerOptions* o) { o->address = "localhost"; }).message()),
      HasSubstr("no port"));
  EXPECT_FALSE(refused([](ServerOptions* o) { o->address = "localhost:65536"; }).ok());
  EXPECT_FALSE(refused([](ServerOptions* o) { o->address = ":80"; }).ok());
  EXPECT_TRUE(refused([](ServerOptions* o) { o->address = "[::1]:0"; }).ok());
  EXPECT_FALSE(refused([](ServerOptions* o) { o->metrics_address = "9090"; }).ok());
  EXPECT_FALSE(refused([](ServerOptions* o) { o->bundle_root = "r"; }).ok());
  EXPECT_FALSE(refused([](ServerOptions* o) { o->bundle_dir.clear(); }).ok());
  EXPECT_FALSE(refused([](ServerOptions* o) { o->max_request_bytes = 0; }).ok());
  EXPECT_FALSE(
      refused([](ServerOptions* o) { o->drain_grace = absl::Seconds(-1); }).ok());
  EXPECT_FALSE(refused([](ServerOptions* o) {
                 o->drain_timeout = absl::InfiniteDuration();
               }).ok());
  EXPECT_FALSE(
      refused([](ServerOptions* o) { o->limits.max_concurrent_streams = 0; }).ok());
}

}  // namespace
}  // namespace feedrank

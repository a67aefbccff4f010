// The real server on a free port, called through a real channel.
#include "server/feed_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <future>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "cli/client.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    testing::WriteSmallBundle(testing::SmallSynth(6000, 300), dir_->Sub("bundle"));
    testing::WriteFile(dir_->Sub("config.textproto"),
                       "version: \"test-config-1\"\n"
                       "params { max_count: 100 max_exclude_ids: 2000 }\n");
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override { StartServer(absl::ZeroDuration()); }

  void StartServer(absl::Duration drain_grace) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.bundle_dir = dir_->Sub("bundle");
    options.config_path = dir_->Sub("config.textproto");
    options.max_request_bytes = 256 << 10;
    options.drain_grace = drain_grace;
    options.drain_timeout = absl::Seconds(5);
    auto server = FeedServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::FeedRanker::NewStub(channel_);
  }

  void Load() { ASSERT_TRUE(server_->Load().ok()); }

  grpc::Status Call(const v1::RankFeedRequest& request, v1::RankFeedResponse* response,
                    int deadline_ms = 5000) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(deadline_ms));
    return stub_->RankFeed(&context, request, response);
  }

  uint64_t User(int row) const {
    return server_->snapshots().Current()->bundle->catalog->user_id(row);
  }

  // A valid call still works: the server keeps serving after a bad one.
  void ExpectStillServing() {
    v1::RankFeedRequest request;
    request.set_user_id(User(0));
    request.set_count(5);
    v1::RankFeedResponse response;
    grpc::Status status = Call(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.items_size(), 5);
  }

  static testing::TempDir* dir_;
  std::unique_ptr<FeedServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
};

testing::TempDir* ServerTest::dir_ = nullptr;

TEST_F(ServerTest, NotServingAndUnavailableUntilLoaded) {
  auto health = CheckHealth(channel_, kRankerServiceName);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, "NOT_SERVING");
  v1::RankFeedRequest request;
  v1::RankFeedResponse response;
  grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("no bundle"));

  Load();
  EXPECT_EQ(*CheckHealth(channel_, kRankerServiceName), "SERVING");
  EXPECT_EQ(*CheckHealth(channel_, ""), "SERVING");
  EXPECT_TRUE(WaitForServing(channel_, kRankerServiceName, absl::Seconds(1)).ok());
}

TEST_F(ServerTest, PagesAreFullSortedUniqueCappedAndExcluded) {
  Load();
  for (int u = 0; u < 10; ++u) {
    v1::RankFeedRequest request;
    request.set_user_id(User(u));
    request.set_count(40);
    request.set_request_id("req-" + std::to_string(u));
    v1::RankFeedResponse first;
    ASSERT_TRUE(Call(request, &first).ok());
    for (int i = 0; i < 15; ++i) request.add_exclude_ids(first.items(i).video_id());
    v1::RankFeedResponse response;
    grpc::Status status = Call(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.items_size(), 40);
    EXPECT_EQ(response.request_id(), "req-" + std::to_string(u));
    EXPECT_EQ(response.bundle_version(), "synth-6000-s11");
    EXPECT_EQ(response.config_version(), "test-config-1");
    EXPECT_EQ(response.objectives_size(), 6);
    EXPECT_FALSE(response.cold_start());
    const std::set<uint64_t> excluded(request.exclude_ids().begin(),
                                      request.exclude_ids().end());
    std::set<uint64_t> seen;
    absl::flat_hash_map<uint64_t, int> per_creator;
    for (int i = 0; i < response.items_size(); ++i) {
      const v1::RankedItem& item = response.items(i);
      EXPECT_EQ(excluded.count(item.video_id()), 0u);
      EXPECT_TRUE(seen.insert(item.video_id()).second);
      EXPECT_LE(++per_creator[item.creator_id()], 2);
      EXPECT_EQ(item.predictions_size(), 6);
      EXPECT_NE(item.source(), v1::SOURCE_UNSPECIFIED);
      if (i > 0) {
        EXPECT_GE(response.items(i - 1).score(), item.score());
      }
    }
  }
}

TEST_F(ServerTest, AnswersAreDeterministic) {
  Load();
  v1::RankFeedRequest request;
  request.set_user_id(User(3));
  request.mutable_context()->set_client_time_ms(1793491200000);
  v1::RankFeedResponse a, b;
  ASSERT_TRUE(Call(request, &a).ok());
  ASSERT_TRUE(Call(request, &b).ok());
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
  EXPECT_EQ(a.items_size(), 20);  // default count
}

TEST_F(ServerTest, UnknownUserGetsAColdStartPage) {
  Load();
  v1::RankFeedRequest request;
  request.set_user_id(123456789);
  request.set_count(12);
  v1::RankFeedResponse response;
  ASSERT_TRUE(Call(request, &response).ok());
  EXPECT_TRUE(response.cold_start());
  EXPECT_EQ(response.items_size(), 12);
}

TEST_F(ServerTest, DebugReportsStagesAndCounts) {
  Load();
  v1::RankFeedRequest request;
  request.set_user_id(User(1));
  request.set_debug(true);
  v1::RankFeedResponse response;
  ASSERT_TRUE(Call(request, &response).ok());
  ASSERT_TRUE(response.has_debug());
  EXPECT_GE(response.debug().stages_size(), 5);
  EXPECT_EQ(response.debug().ann_candidates(), 500u);
  EXPECT_GT(response.debug().scored_candidates(), 500u);
  v1::RankFeedResponse quiet;
  request.set_debug(false);
  ASSERT_TRUE(Call(request, &quiet).ok());
  EXPECT_FALSE(quiet.has_debug());
}

TEST_F(ServerTest, BadRequestsGetTheDocumentedCodeAndTheServerKeepsServing) {
  Load();
  struct Case {
    std::string name;
    v1::RankFeedRequest request;
    grpc::StatusCode code;
    std::string field;
  };
  std::vector<Case> cases;
  {
    Case c{"count 0", {}, grpc::StatusCode::INVALID_ARGUMENT, "count"};
    c.request.set_count(0);
    cases.push_back(c);
  }
  {
    Case c{"count above max", {}, grpc::StatusCode::INVALID_ARGUMENT, "count"};
    c.request.set_count(101);
    cases.push_back(c);
  }
  {
    Case c{"huge exclude list", {}, grpc::StatusCode::INVALID_ARGUMENT, "exclude_ids"};
    for (int i = 0; i < 2001; ++i) c.request.add_exclude_ids(i);
    cases.push_back(c);
  }
  {
    Case c{"long request id", {}, grpc::StatusCode::INVALID_ARGUMENT, "request_id"};
    c.request.set_request_id(std::string(200, 'x'));
    cases.push_back(c);
  }
  {
    Case c{"bad utc offset", {}, grpc::StatusCode::INVALID_ARGUMENT, "utc_offset_minutes"};
    c.request.mutable_context()->set_utc_offset_minutes(5000);
    cases.push_back(c);
  }
  {
    Case c{"negative client time", {}, grpc::StatusCode::INVALID_ARGUMENT,
           "client_time_ms"};
    c.request.mutable_context()->set_client_time_ms(-5);
    cases.push_back(c);
  }
  {
    // 40k ids * ~9 bytes > the 256 KiB receive limit set above.
    Case c{"oversized message", {}, grpc::StatusCode::RESOURCE_EXHAUSTED, ""};
    for (int i = 0; i < 40000; ++i) c.request.add_exclude_ids(uint64_t{1} << 60 | i);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    v1::RankFeedResponse response;
    grpc::Status status = Call(c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.field)) << c.name;
    ExpectStillServing();
  }
}

TEST(ServerStartTest, UnusableAddressIsAnErrorNotACrash) {
  for (const char* address : {"unix:/nonexistent/dir/feedrank.sock", "999.1.1.1:5"}) {
    ServerOptions options;
    options.address = address;
    auto server = FeedServer::Start(options);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << address;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(address));
  }
}

TEST_F(ServerTest, ShutdownFromSeveralThreadsReturnsOnceStopped) {
  Load();
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 3; ++i) stoppers.emplace_back([this] { server_->Shutdown(); });
  server_->Wait();
  for (auto& t : stoppers) t.join();
  v1::RankFeedRequest request;
  v1::RankFeedResponse response;
  EXPECT_EQ(Call(request, &response, 500).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServerTest, ExpiredDeadlineIsDeadlineExceeded) {
  Load();
  v1::RankFeedRequest request;
  request.set_user_id(User(0));
  v1::RankFeedResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() - std::chrono::milliseconds(1));
  EXPECT_EQ(stub_->RankFeed(&context, request, &response).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  ExpectStillServing();
}

TEST_F(ServerTest, RefusedBundleOrConfigKeepsThePreviousSnapshot) {
  Load();
  auto before = server_->snapshots().Current();
  testing::TempDir broken;
  testing::CopyDir(dir_->Sub("bundle"), broken.Sub("bundle"));
  testing::WriteFile(broken.Sub("bundle/index.faiss"), "not an index");
  absl::Status status = server_->snapshots().Load(broken.Sub("bundle"), "");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("index.faiss"));
  EXPECT_EQ(server_->snapshots().Current(), before);

  RankingConfig bad;
  (*bad.mutable_params()->mutable_objective_weights())["no_such_head"] = 1;
  status = server_->snapshots().Install(before->bundle, bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->snapshots().Current(), before);
  ExpectStillServing();
}

TEST_F(ServerTest, AnswersConcurrentCallsDuringAReload) {
  Load();
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, calls{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto stub = v1::FeedRanker::NewStub(channel_);
      v1::RankFeedRequest request;
      request.set_user_id(User(t));
      while (!stop.load()) {
        v1::RankFeedResponse response;
        grpc::ClientContext context;
        if (!stub->RankFeed(&context, request, &response).ok() ||
            response.items_size() != 20) {
          ++failures;
        }
        ++calls;
      }
    });
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(server_->Load().ok());
  stop = true;
  for (auto& client : clients) client.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(calls.load(), 0);
}

TEST_F(ServerTest, ShutdownDrainsWithoutHangingOrLosingCalls) {
  server_->Shutdown();
  StartServer(absl::Milliseconds(300));
  Load();
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<grpc::StatusCode, int> codes;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      v1::RankFeedRequest request;
      request.set_user_id(User(t));
      while (!stop.load()) {
        v1::RankFeedResponse response;
        const grpc::StatusCode code = Call(request, &response).error_code();
        std::lock_guard<std::mutex> lock(mu);
        ++codes[code];
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(50));
  std::thread shutdown([this] { server_->Shutdown(); });
  // During the grace period: health says NOT_SERVING, calls still succeed.
  absl::SleepFor(absl::Milliseconds(100));
  auto health = CheckHealth(channel_, kRankerServiceName);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, "NOT_SERVING");
  {
    v1::RankFeedRequest request;
    request.set_user_id(User(0));
    v1::RankFeedResponse response;
    EXPECT_TRUE(Call(request, &response).ok());
  }
  shutdown.join();
  stop = true;
  for (auto& client : clients) client.join();  // every call returned
  // Calls racing the final stop may be refused, with a retryable code.
  for (const auto& [code, n] : codes) {
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::UNAVAILABLE ||
                code == grpc::StatusCode::CANCELLED)
        << code << " x" << n;
  }
  EXPECT_GT(codes[grpc::StatusCode::OK], 0);
  v1::RankFeedRequest request;
  v1::RankFeedResponse response;
  EXPECT_EQ(Call(request, &response, 500).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace feedrank

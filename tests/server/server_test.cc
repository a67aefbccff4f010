// The real server on a free port, called through a real channel.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/substitute.h"
#include "cli/client.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "ranking/experiments.h"
#include "server/feed_server.h"
#include "tests/test_bundles.h"
#include "tests/test_env.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

class ServerTest;
void FlipArmsUnderLoad(ServerTest* test, bool through_admin);

class ServerTest : public ::testing::Test {
 protected:
  friend void FlipArmsUnderLoad(ServerTest* test, bool through_admin);

  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    testing::WriteSmallBundle(testing::SmallSynth(6000, 300), dir_->Sub("bundle"));
    testing::WriteFile(dir_->Sub("config.textproto"),
                       "version: \"test-config-1\"\n"
                       "params { max_count: 100 max_exclude_ids: 2000 }\n");
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override { StartServer(absl::ZeroDuration()); }

  void StartServer(absl::Duration drain_grace,
                   const std::function<void(ServerOptions*)>& tweak = nullptr) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.bundle_dir = dir_->Sub("bundle");
    options.config_path = dir_->Sub("config.textproto");
    options.max_request_bytes = 256 << 10;
    options.drain_grace = drain_grace;
    options.drain_timeout = absl::Seconds(5);
    if (tweak) tweak(&options);
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
    Case c{
        "bad utc offset", {}, grpc::StatusCode::INVALID_ARGUMENT, "utc_offset_minutes"};
    c.request.mutable_context()->set_utc_offset_minutes(5000);
    cases.push_back(c);
  }
  {
    Case c{
        "negative client time", {}, grpc::StatusCode::INVALID_ARGUMENT, "client_time_ms"};
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

// Sends `body` as the raw request bytes of RankFeed.
grpc::Status CallRaw(const std::shared_ptr<grpc::Channel>& channel,
                     const std::string& body, grpc::ByteBuffer* reply) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice slice(body);
  grpc::ByteBuffer request(&slice, 1);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/feedrank.v1.FeedRanker/RankFeed", grpc::StubOptions(),
                 &request, reply,
                 [&](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

TEST_F(ServerTest, AnUnparsableBodyIsInvalidArgumentWithAMessage) {
  // gRPC's typed handler would answer UNIMPLEMENTED with no message.
  Load();
  grpc::ByteBuffer reply;
  for (const std::string& body :
       {std::string("\xff\xff\xff\xff\xff", 5), std::string("\x0a\x05hi", 4)}) {
    const grpc::Status status = CallRaw(channel_, body, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr("not a valid feedrank.v1.RankFeedRequest"));
  }
  // Invalid UTF-8 in request_id (field 5): refused, and protobuf's complaint
  // reaches the log at most once a second, not once per call.
  const std::string bad_utf8 = std::string("\x2a\x02\xc3\x28", 4);
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(CallRaw(channel_, bad_utf8, &reply).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  int lines = 0;
  for (size_t at = log.find("invalid UTF-8"); at != std::string::npos;
       at = log.find("invalid UTF-8", at + 1)) {
    ++lines;
  }
  EXPECT_LE(lines, 2) << log;
  ExpectStillServing();
}

TEST_F(ServerTest, AnOversizedExcludeListIsRefusedBeforeItIsDecoded) {
  Load();
  // 200,000 one-byte ids (0..127): 200 KB on the wire, 1.6 MB once decoded;
  // the limit here is 2,000.
  v1::RankFeedRequest request;
  request.set_user_id(User(0));
  for (int i = 0; i < 200000; ++i) request.add_exclude_ids(i % 128);
  grpc::ByteBuffer reply;
  const grpc::Status status = CallRaw(channel_, request.SerializeAsString(), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("exclude_ids: 200000 ids, at most 2000"));
  // Unpacked encoding (one tag per id) is counted too.
  std::string unpacked;
  for (int i = 0; i < 2001; ++i) unpacked += std::string("\x18\x01", 2);
  EXPECT_THAT(CallRaw(channel_, unpacked, &reply).error_message(),
              HasSubstr("exclude_ids: 2001 ids"));
  // A count of 2^32-1 is reported as sent, not clamped.
  v1::RankFeedRequest huge;
  huge.set_count(4294967295u);
  v1::RankFeedResponse response;
  EXPECT_THAT(Call(huge, &response).error_message(),
              HasSubstr("count: 4294967295 is outside"));
}

TEST_F(ServerTest, CallsCancelledWhileQueuedAreNotRankedAndAFullQueueRefuses) {
  // One worker, a queue of 2; the test holds the worker.
  server_->Shutdown();
  StartServer(absl::ZeroDuration(), [](ServerOptions* o) {
    o->workers = 1;
    o->max_queue = 2;
  });
  Load();
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::mutex* m = &mu;
  std::condition_variable* c = &cv;
  bool* r = &release;
  ASSERT_TRUE(server_->workers().TrySubmit([m, c, r] {
    std::unique_lock<std::mutex> lock(*m);
    c->wait(lock, [r] { return *r; });
  }));
  // Two calls wait in the queue; the third is refused at once.
  auto stub = v1::FeedRanker::NewStub(channel_);
  v1::RankFeedRequest request;
  request.set_user_id(User(0));
  struct Pending {
    grpc::ClientContext context;
    v1::RankFeedResponse response;
    std::promise<grpc::Status> done;
  };
  std::vector<std::unique_ptr<Pending>> calls;
  for (int i = 0; i < 2; ++i) {
    calls.push_back(std::make_unique<Pending>());
    Pending* p = calls.back().get();
    stub->async()->RankFeed(&p->context, &request, &p->response,
                            [p](grpc::Status s) { p->done.set_value(s); });
  }
  while (server_->workers().queued() < 2) absl::SleepFor(absl::Milliseconds(5));
  v1::RankFeedResponse overflow;
  const grpc::Status refused = Call(request, &overflow);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("overloaded"));
  EXPECT_EQ(server_->service().overloaded(), 1);
  // The first queued call is cancelled by its client, then the worker is
  // released: it skips that call and ranks the other.
  calls[0]->context.TryCancel();
  EXPECT_EQ(calls[0]->done.get_future().get().error_code(), grpc::StatusCode::CANCELLED);
  // The client knows at once; the server learns it when the transport
  // delivers the stream's reset, which a loaded machine may delay. Give it
  // time before the worker looks (the call stays queued meanwhile).
  absl::SleepFor(absl::Milliseconds(300));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_TRUE(calls[1]->done.get_future().get().ok());
  EXPECT_EQ(calls[1]->response.items_size(), 20);
  while (server_->workers().queued() > 0) absl::SleepFor(absl::Milliseconds(5));
  ExpectStillServing();
  EXPECT_EQ(server_->service().cancelled_in_queue(), 1);
}

TEST_F(ServerTest, HealthChecksAreNotSubjectToTheRequestLimit) {
  server_->Shutdown();
  StartServer(absl::ZeroDuration(), [](ServerOptions* o) { o->max_request_bytes = 4; });
  Load();
  auto health = CheckHealth(channel_, kRankerServiceName);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, "SERVING");
  v1::RankFeedRequest request;
  request.set_user_id(User(0));
  v1::RankFeedResponse response;
  const grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("exceeds the limit of 4"));
}

TEST(ServerStartTest, UnusableAddressIsAnErrorNotACrash) {
  for (const char* address : {"unix:/nonexistent/dir/feedrank.sock", "999.1.1.1:5"}) {
    ServerOptions options;
    options.address = address;
    options.plaintext = true;
    options.bundle_dir = "/not/loaded/by/start";
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

TEST_F(ServerTest, ADeadlinePassedWhileQueuedIsDeadlineExceededFromTheServer) {
  // The server's clock jumps 2 s at every read: a call with a 1.5 s deadline
  // has expired by the time a worker takes it. The answer comes from the
  // server (its message), long before the client's own deadline.
  testing::FakeClock clock;
  server_->Shutdown();
  StartServer(absl::ZeroDuration(), [&](ServerOptions* o) { o->env.clock = &clock; });
  Load();
  clock.SetAutoAdvance(std::chrono::seconds(2));
  v1::RankFeedRequest request;
  request.set_user_id(User(0));
  v1::RankFeedResponse response;
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status status = Call(request, &response, 1500);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("deadline passed before ranking started"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1400));
  clock.SetAutoAdvance(std::chrono::nanoseconds(0));
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

  // An experiment config that is wrong is refused with its reason; one
  // whose second bundle cannot be loaded is refused naming it.
  auto layered = ParseConfig(R"pb(
    layers {
      name: "l"
      experiments {
        name: "e"
        ranges { begin: 0 end: 100 }
        arms {
          name: "a"
          ranges { begin: 0 end: 100 }
        }
      }
    }
  )pb");
  ASSERT_TRUE(layered.ok()) << layered.status();
  status = server_->snapshots().Install(before->bundle, *layered);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("salt"));
  layered->mutable_layers(0)->set_salt("s");
  auto* ref = layered->add_bundles();
  ref->set_name("v2");
  ref->set_dir("/elsewhere");
  status = server_->snapshots().Install(before->bundle, *layered);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("bundles[0] 'v2'"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("/elsewhere"));
  EXPECT_EQ(server_->snapshots().Current(), before);
  ExpectStillServing();
}

TEST_F(ServerTest, EachAnswerCarriesItsArmsAndIsRankedWithThem) {
  Load();
  // Two arms of one layer with opposite value models: each answer's scores
  // are its arm's weights times its predictions.
  const auto& objectives = server_->snapshots().Current()->bundle->model->objectives();
  ASSERT_GE(objectives.size(), 2u);
  const std::string text = absl::Substitute(
      R"cfg(
        version: "exp-1"
        params { max_count: 100 }
        layers {
          name: "value"
          salt: "value-salt"
          experiments {
            name: "weights"
            ranges { begin: 0 end: 8000 }
            arms {
              name: "first"
              ranges { begin: 0 end: 4000 }
              overrides { objective_weights { key: "$0" value: 5 } }
            }
            arms {
              name: "second"
              ranges { begin: 4000 end: 8000 }
              overrides { objective_weights { key: "$1" value: 5 } }
            }
          }
        }
      )cfg",
      objectives[0], objectives[1]);
  auto config = ParseConfig(text);
  ASSERT_TRUE(config.ok()) << config.status();
  auto current = server_->snapshots().Current();
  ASSERT_TRUE(server_->snapshots().Install(current->bundle, *config).ok());
  const Catalog& catalog = *current->bundle->catalog;
  int arms_seen[3] = {0, 0, 0};
  for (int i = 0; i < 60; ++i) {
    v1::RankFeedRequest request;
    request.set_user_id(catalog.user_id(i));
    request.set_count(10);
    v1::RankFeedResponse response;
    ASSERT_TRUE(Call(request, &response).ok());
    EXPECT_EQ(response.config_version(), "exp-1");
    EXPECT_FALSE(response.pinned());
    const int bucket = Bucket(request.user_id(), "value-salt");
    const std::string want = bucket < 4000 ? "first" : bucket < 8000 ? "second" : "";
    if (want.empty()) {
      EXPECT_EQ(response.arms_size(), 0);
    } else {
      ASSERT_EQ(response.arms_size(), 1);
      EXPECT_EQ(response.arms(0).layer(), "value");
      EXPECT_EQ(response.arms(0).experiment(), "weights");
      EXPECT_EQ(response.arms(0).arm(), want);
    }
    ++arms_seen[want.empty() ? 0 : want == "first" ? 1 : 2];
    // The weights of the arm explain the score (defaults weigh 1).
    for (const v1::RankedItem& item : response.items()) {
      ASSERT_EQ(item.predictions_size(), int(objectives.size()));
      double score = 0;
      for (int h = 0; h < item.predictions_size(); ++h) {
        const bool heavy = (want == "first" && h == 0) || (want == "second" && h == 1);
        score += (heavy ? 5.0 : 1.0) * item.predictions(h);
      }
      EXPECT_NEAR(item.score(), score, 1e-4 * std::max(1.0, std::abs(score)));
    }
  }
  EXPECT_GT(arms_seen[1], 10);
  EXPECT_GT(arms_seen[2], 10);
  // Pins are refused unless the config allows them...
  v1::RankFeedRequest pinned;
  pinned.set_user_id(catalog.user_id(0));
  auto* pin = pinned.add_pin_arms();
  pin->set_layer("value");
  pin->set_arm("second");
  v1::RankFeedResponse response;
  grpc::Status status = Call(pinned, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("pin_arms"));
  // ...and honoured, and said, when it does.
  config->set_allow_pinning(true);
  ASSERT_TRUE(server_->snapshots().Install(current->bundle, *config).ok());
  response.Clear();
  ASSERT_TRUE(Call(pinned, &response).ok());
  EXPECT_TRUE(response.pinned());
  ASSERT_EQ(response.arms_size(), 1);
  EXPECT_EQ(response.arms(0).arm(), "second");
  pin->set_arm("third");
  EXPECT_THAT(Call(pinned, &response).error_message(), HasSubstr("third"));
}

// Flips every ~50 ms between two experiment configs whose arms weigh
// different objectives, and a broken one (overlapping ranges) that must be
// refused, by file and reload or through FeedAdmin.ApplyConfig: no call
// fails, and every score is explained by the version and arm its answer
// reports.
void FlipArmsUnderLoad(ServerTest* test, bool through_admin) {
  testing::TempDir configs;
  const std::string path = configs.Sub("config.textproto");
  auto config = [](const std::string& version, const std::string& first,
                   const std::string& second, int second_begin) {
    return absl::Substitute(
        R"cfg(
          version: "$0"
          layers {
            name: "value"
            salt: "flip-salt"
            experiments {
              name: "w"
              ranges { begin: 0 end: 10000 }
              arms {
                name: "first"
                ranges { begin: 0 end: 5000 }
                overrides { objective_weights { key: "$1" value: 3 } }
              }
              arms {
                name: "second"
                ranges { begin: $3 end: 10000 }
                overrides { objective_weights { key: "$2" value: 3 } }
              }
            }
          }
        )cfg",
        version, first, second, second_begin);
  };
  // SynthObjectives() order: click 0, share 5.
  const std::string a = config("a", "click", "share", 5000);
  const std::string b = config("b", "share", "click", 5000);
  const std::string broken = config("broken", "click", "share", 4000);
  testing::WriteFile(path, a);
  test->server_->Shutdown();
  test->StartServer(absl::ZeroDuration(), [&](ServerOptions* o) {
    o->config_path = path;
    if (through_admin) o->admin_address = "127.0.0.1:0";
  });
  test->Load();
  auto& server_ = test->server_;
  auto& channel_ = test->channel_;
  auto admin = v1::FeedAdmin::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->admin_port()),
                          grpc::InsecureChannelCredentials()));
  auto User = [&](int row) { return test->User(row); };
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, mixed{0}, calls{0};
  std::set<std::string> seen;  // "version/arm", guarded by mu
  std::mutex mu;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto stub = v1::FeedRanker::NewStub(channel_);
      for (int i = 0; !stop.load(); ++i) {
        v1::RankFeedRequest request;
        request.set_user_id(User((t * 7 + i) % 40));
        request.set_count(8);
        v1::RankFeedResponse response;
        grpc::ClientContext context;
        if (!stub->RankFeed(&context, request, &response).ok()) {
          ++failures;
          continue;
        }
        ++calls;
        const std::string& version = response.config_version();
        if (response.arms_size() != 1 || (version != "a" && version != "b")) {
          ++mixed;
          continue;
        }
        const std::string& arm = response.arms(0).arm();
        const bool first = arm == "first";
        // The arm the hash gives this user, and the objective it weighs.
        const bool hashed_first = Bucket(request.user_id(), "flip-salt") < 5000;
        const int heavy = (version == "a") == first ? 0 : 5;
        bool consistent = first == hashed_first;
        for (const v1::RankedItem& item : response.items()) {
          double want = 0;
          for (int h = 0; h < item.predictions_size(); ++h) {
            want += (h == heavy ? 3.0 : 1.0) * item.predictions(h);
          }
          consistent &=
              std::abs(item.score() - want) < 1e-4 * std::max(1.0, std::abs(want));
        }
        if (!consistent) ++mixed;
        std::lock_guard<std::mutex> lock(mu);
        seen.insert(version + "/" + arm);
      }
    });
  }
  int refused = 0;
  for (int i = 0; i < 24; ++i) {
    const int kind = i % 3;  // b, broken, a
    const std::string& text = kind == 0 ? b : kind == 1 ? broken : a;
    absl::Status status;
    if (through_admin) {
      v1::ApplyConfigRequest request;
      request.set_config_text(text);
      v1::ApplyConfigResponse response;
      grpc::ClientContext context;
      const grpc::Status applied = admin->ApplyConfig(&context, request, &response);
      status = absl::Status(static_cast<absl::StatusCode>(applied.error_code()),
                            applied.error_message());
    } else {
      testing::WriteFile(path, text);
      status = server_->Reload();
    }
    if (kind == 1) {
      EXPECT_FALSE(status.ok());
      EXPECT_THAT(std::string(status.message()), HasSubstr("overlaps"));
      refused += !status.ok();
    } else {
      EXPECT_TRUE(status.ok()) << status;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  stop = true;
  for (auto& client : clients) client.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mixed.load(), 0);
  EXPECT_EQ(refused, 8);
  EXPECT_GT(calls.load(), 50);
  for (const char* want : {"a/first", "a/second", "b/first", "b/second"}) {
    EXPECT_TRUE(seen.count(want)) << want;
  }
}

TEST_F(ServerTest, ArmFlipsUnderLoadNeverFailOrMixACall) {
  FlipArmsUnderLoad(this, false);
}

TEST_F(ServerTest, ArmFlipsThroughTheAdminServiceNeverFailOrMixACall) {
  FlipArmsUnderLoad(this, true);
}

TEST_F(ServerTest, ReloadsOfAlternatingConfigsNeverMixACall) {
  // Two configs whose answers differ (page size, and which objective the
  // score weighs); every answer must be the one of the version it reports.
  testing::TempDir configs;
  const std::string path = configs.Sub("config.textproto");
  const std::string a =
      "version: \"a\"\nparams { default_count: 7 objective_weights { key: \"click\" "
      "value: 1 } }\n";
  const std::string b =
      "version: \"b\"\nparams { default_count: 9 objective_weights { key: \"share\" "
      "value: 2 } }\n";
  testing::WriteFile(path, a);
  server_->Shutdown();
  StartServer(absl::ZeroDuration(), [&](ServerOptions* o) { o->config_path = path; });
  Load();
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, mixed{0};
  std::map<std::string, int> seen;  // guarded by mu
  std::string first_mixed;          // guarded by mu
  std::mutex mu;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto stub = v1::FeedRanker::NewStub(channel_);
      v1::RankFeedRequest request;
      request.set_user_id(User(t));
      while (!stop.load()) {
        v1::RankFeedResponse response;
        grpc::ClientContext context;
        if (!stub->RankFeed(&context, request, &response).ok()) {
          ++failures;
          continue;
        }
        const bool is_a = response.config_version() == "a";
        const int click = 0, share = 5;  // SynthObjectives() order
        bool consistent = response.items_size() == (is_a ? 7 : 9);
        for (const v1::RankedItem& item : response.items()) {
          const float want = is_a ? item.predictions(click) : 2 * item.predictions(share);
          consistent &= std::abs(item.score() - want) < 1e-5;
        }
        std::lock_guard<std::mutex> lock(mu);
        if (!consistent && ++mixed == 1) {
          first_mixed = absl::StrCat("config ", response.config_version(), ", bundle ",
                                     response.bundle_version(), ", ",
                                     response.items_size(), " items");
          for (const v1::RankedItem& item : response.items()) {
            absl::StrAppend(&first_mixed, "; score ", item.score(), " click ",
                            item.predictions(click), " share ", item.predictions(share));
          }
        }
        ++seen[response.config_version()];
      }
    });
  }
  for (int i = 0; i < 6; ++i) {
    // Rewritten in place (truncated, then written), as some editors do: the
    // watcher may read it empty in between, which must be refused, never
    // served as a config of defaults (it once was, under ASan's timing).
    testing::WriteFile(path, i % 2 == 0 ? b : a);
    // Half the flips reload everything, half only the config (SIGHUP's path).
    if (i < 3) {
      ASSERT_TRUE(server_->Load().ok());
    } else {
      ASSERT_TRUE(server_->Reload().ok());
    }
  }
  stop = true;
  for (auto& client : clients) client.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mixed.load(), 0) << "the first: " << first_mixed;
  EXPECT_GT(seen["a"], 0);
  EXPECT_GT(seen["b"], 0);
}

TEST_F(ServerTest, TheOldSnapshotIsFreedAfterItsLastRequest) {
  Load();
  std::weak_ptr<const Snapshot> old = server_->snapshots().Current();
  // A request in progress holds it (as a worker does while ranking).
  std::shared_ptr<const Snapshot> in_flight = server_->snapshots().Current();
  ASSERT_TRUE(server_->Load().ok());
  EXPECT_NE(server_->snapshots().Current(), in_flight);
  ExpectStillServing();
  EXPECT_FALSE(old.expired());
  in_flight.reset();
  EXPECT_TRUE(old.expired());
}

TEST_F(ServerTest, ConcurrentLoadsInstallTheConfigTheLastOneRead) {
  // Load 1 is held inside its config read while the file changes and load 2
  // starts. Reads happen under the load lock, so load 2 waits, then reads
  // the new file and installs it last: the server ends on the file's
  // current content. (Reading outside the lock let load 1 install its older
  // config after load 2.)
  testing::TempDir configs;
  const std::string path = configs.Sub("config.textproto");
  testing::WriteFile(path, "version: \"old\"\n");
  testing::FaultFileSystem fs;
  std::mutex mu;
  std::condition_variable cv;
  bool hold = false, holding = false;
  fs.after_read = [&](const std::string& file) {
    if (file != path) return;
    std::unique_lock<std::mutex> lock(mu);
    if (!hold) return;
    hold = false;
    holding = true;
    cv.notify_all();
    cv.wait(lock, [&] { return !holding; });
  };
  server_->Shutdown();
  StartServer(absl::ZeroDuration(), [&](ServerOptions* o) {
    o->config_path = path;
    o->env.fs = &fs;
  });
  {
    std::lock_guard<std::mutex> lock(mu);
    hold = true;
  }
  // Load 1 has read "old" and is held before it can act on it.
  std::thread first([&] { EXPECT_TRUE(server_->Load().ok()); });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return holding; });
  }
  testing::WriteFile(path, "version: \"new\"\n");
  std::thread second([&] { EXPECT_TRUE(server_->Load().ok()); });
  absl::SleepFor(absl::Milliseconds(100));  // load 2 is now waiting
  {
    std::lock_guard<std::mutex> lock(mu);
    holding = false;
  }
  cv.notify_all();
  first.join();
  second.join();
  EXPECT_EQ(server_->snapshots().Current()->config.version(), "new");
}

TEST_F(ServerTest, AShutdownInterruptsALoadInProgress) {
  // A slow disk: every read takes 300 ms, so a load takes seconds.
  testing::FaultFileSystem slow;
  slow.read_delay = std::chrono::milliseconds(300);
  server_->Shutdown();
  StartServer(absl::ZeroDuration(), [&](ServerOptions* o) { o->env.fs = &slow; });
  absl::Status loaded;
  std::thread load([&] { loaded = server_->Load(); });
  absl::SleepFor(absl::Milliseconds(400));
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown();
  load.join();
  EXPECT_EQ(loaded.code(), absl::StatusCode::kCancelled) << loaded;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(server_->snapshots().Current(), nullptr);
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

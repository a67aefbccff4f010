// Faults on purpose, on the real server on a free port: bundle files that
// cannot be read at start and at reload (through the injected file system),
// clients that give up (deadlines of 0 and 1 ms, cancels mid-call), and
// thousands of streams and connections opened and dropped. After each, the
// server answers, and nothing is left in flight.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"
#include "tests/server/scrape.h"
#include "tests/test_bundles.h"
#include "tests/test_env.h"

namespace feedrank {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::make_unique<testing::TempDir>();
    WriteVersion(1);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // root/N holds a bundle whose version string is "vN".
  void WriteVersion(int n) {
    SynthOptions o = testing::SmallSynth(3000, 200);
    o.version = absl::StrCat("v", n);
    testing::WriteSmallBundle(o, root_->Sub(absl::StrCat(n)));
  }

  void Start(const std::function<void(ServerOptions*)>& tweak = nullptr) {
    ServerOptions o;
    o.address = "127.0.0.1:0";
    o.metrics_address = "127.0.0.1:0";
    o.admin_address = "";
    o.bundle_root = root_->path();
    o.watch_interval = absl::ZeroDuration();
    o.env.fs = &fs_;
    if (tweak) tweak(&o);
    auto server = FeedServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::FeedRanker::NewStub(channel_);
  }

  uint64_t User(int row) const {
    return server_->snapshots().Current()->bundle->catalog->user_id(row);
  }

  grpc::Status Rank(uint64_t user, v1::RankFeedResponse* response,
                    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    v1::RankFeedRequest request;
    request.set_user_id(user);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    return stub_->RankFeed(&context, request, response);
  }

  // The served bundle's version string, from a real call.
  std::string ServedVersion() {
    v1::RankFeedResponse response;
    const grpc::Status status = Rank(User(0), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.items_size(), 20);
    return response.bundle_version();
  }

  // Waits (up to 10 s) until the server holds no call: every reactor the
  // faults started has finished.
  void ExpectNothingInFlight() {
    double in_flight = -1;
    for (int i = 0; i < 200; ++i) {
      auto r = testing::Get(server_->metrics_port(), "/metrics");
      ASSERT_TRUE(r && r->status == 200);
      in_flight = testing::Value(testing::ParsePrometheus(r->body),
                                 "feedrank_in_flight_calls", {});
      if (in_flight == 0 && server_->workers().queued() == 0) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "still in flight: " << in_flight << " calls, "
                  << server_->workers().queued() << " queued";
  }

  std::unique_ptr<testing::TempDir> root_;
  testing::FaultFileSystem fs_;
  std::unique_ptr<FeedServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
};

TEST_F(FaultTest, UnreadableBundleFilesAtStartAndReloadAreNamedAndTheServedBundleStays) {
  // At start: the embeddings cannot be read. The load fails naming the
  // file and why; the server is up, not serving, and says so.
  fs_.fail_substring = "/1/video_embeddings.npy";
  fs_.fail_status = absl::PermissionDeniedError("Permission denied");
  Start();
  const absl::Status first = server_->Load();
  EXPECT_EQ(first.code(), absl::StatusCode::kPermissionDenied) << first;
  EXPECT_THAT(first.message(), HasSubstr("video_embeddings.npy: Permission denied"));
  v1::RankFeedResponse response;
  EXPECT_EQ(Rank(1, &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The permissions are fixed: the same files load.
  fs_.fail_substring = "";
  ASSERT_TRUE(server_->Load().ok());
  EXPECT_EQ(ServedVersion(), "v1");

  // At reload: version 2's index cannot be read. Refused naming it; v1
  // keeps serving.
  WriteVersion(2);
  fs_.fail_substring = "/2/index.faiss";
  const absl::Status second = server_->Reload();
  EXPECT_EQ(second.code(), absl::StatusCode::kPermissionDenied) << second;
  EXPECT_THAT(second.message(), HasSubstr("index.faiss"));
  EXPECT_EQ(server_->served_version(), 1);
  EXPECT_EQ(ServedVersion(), "v1");
  // An I/O error says nothing about the files: once readable, the next
  // reload loads the same, unchanged version.
  fs_.fail_substring = "";
  ASSERT_TRUE(server_->Reload().ok());
  EXPECT_EQ(server_->served_version(), 2);
  EXPECT_EQ(ServedVersion(), "v2");

  // Version 3 is truncated (a copy cut short): refused for its contents, and
  // not read again until its manifest changes.
  WriteVersion(3);
  const std::string embeddings = root_->Sub("3/video_embeddings.npy");
  std::filesystem::resize_file(embeddings, std::filesystem::file_size(embeddings) / 2);
  const absl::Status third = server_->Reload();
  EXPECT_FALSE(third.ok());
  EXPECT_THAT(third.message(), HasSubstr("video_embeddings.npy"));
  EXPECT_EQ(server_->served_version(), 2);
  const int opens = fs_.opens_for_read.load();
  EXPECT_TRUE(server_->Reload().ok());
  EXPECT_EQ(fs_.opens_for_read.load(), opens);
  EXPECT_EQ(ServedVersion(), "v2");

  // Version 4 lacks a file (deleted, or never copied): refused naming it.
  WriteVersion(4);
  std::filesystem::remove(root_->Sub("4/user_ids.npy"));
  const absl::Status fourth = server_->Reload();
  EXPECT_EQ(fourth.code(), absl::StatusCode::kNotFound) << fourth;
  EXPECT_THAT(fourth.message(), HasSubstr("user_ids.npy"));
  EXPECT_EQ(server_->served_version(), 2);
  EXPECT_EQ(ServedVersion(), "v2");
  ExpectNothingInFlight();
}

TEST_F(FaultTest, TheWatcherRetriesAnUnreadableVersionWithBackoff) {
  // The watcher ticks every 20 ms of real time; retries wait on the
  // injected clock, which moves only when the test says.
  testing::FakeClock clock;
  std::atomic<int> index_reads{0};
  fs_.fail_substring = "/2/index.faiss";
  fs_.fail_status = absl::PermissionDeniedError("Permission denied");
  fs_.on_open_for_read = [&](const std::string& path) {
    if (path.find("/2/index.faiss") != std::string::npos) index_reads.fetch_add(1);
  };
  Start([&](ServerOptions* o) {
    o->watch_interval = absl::Milliseconds(20);
    o->env.clock = &clock;
  });
  ASSERT_TRUE(server_->Load().ok());
  WriteVersion(2);
  auto wait_for = [](const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i) absl::SleepFor(absl::Milliseconds(10));
    return done();
  };
  ASSERT_TRUE(wait_for([&] { return index_reads.load() == 1; }));
  // Many ticks later, still one attempt: the retry waits for the backoff.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(index_reads.load(), 1);
  clock.Advance(std::chrono::milliseconds(1100));
  ASSERT_TRUE(wait_for([&] { return index_reads.load() == 2; }));
  // Refused again: the backoff has doubled to 2 s.
  clock.Advance(std::chrono::milliseconds(1100));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(index_reads.load(), 2);
  EXPECT_EQ(server_->served_version(), 1);
  // The disk heals; after the backoff the watcher serves version 2.
  fs_.opens_heal = true;
  clock.Advance(std::chrono::milliseconds(1000));
  ASSERT_TRUE(wait_for([&] { return server_->served_version() == 2; }));
  EXPECT_EQ(ServedVersion(), "v2");
}

TEST_F(FaultTest, DeadlinesOfZeroAndOneMillisecondAreAnsweredAndLeaveNothingBehind) {
  Start();
  ASSERT_TRUE(server_->Load().ok());
  std::atomic<int> other_codes{0};
  std::atomic<int> exceeded{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        v1::RankFeedResponse response;
        const auto deadline = std::chrono::milliseconds((i + t) % 2);  // 0 or 1 ms
        const grpc::Status status = Rank(User(i % 200), &response, deadline);
        if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          exceeded.fetch_add(1);
        } else if (!status.ok() || response.items_size() != 20) {
          other_codes.fetch_add(1);
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  // Every call ends as DEADLINE_EXCEEDED or with a full page: a deadline
  // is no reason for another error. (gRPC sends a deadline of "now" as a
  // timeout of a few microseconds, so some of those are still answered.)
  EXPECT_EQ(other_codes.load(), 0);
  EXPECT_GT(exceeded.load(), 0);
  ExpectNothingInFlight();
  EXPECT_EQ(ServedVersion(), "v1");
}

TEST_F(FaultTest, ClientsThatCancelMidCallGetCancelledAndTheServerCarriesOn) {
  Start([](ServerOptions* o) { o->workers = 2; });
  ASSERT_TRUE(server_->Load().ok());
  struct Call {
    grpc::ClientContext context;
    v1::RankFeedRequest request;
    v1::RankFeedResponse response;
    std::promise<grpc::Status> done;
  };
  std::mt19937 rng(7);
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 400; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* c = calls.back().get();
    c->request.set_user_id(User(i % 200));
    c->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub_->async()->RankFeed(&c->context, &c->request, &c->response,
                             [c](grpc::Status s) { c->done.set_value(std::move(s)); });
    // Cancelled at once, while queued, or while being ranked.
    absl::SleepFor(absl::Microseconds(rng() % 1500));
    c->context.TryCancel();
  }
  int ok = 0, cancelled = 0;
  for (auto& c : calls) {
    const grpc::Status s = c->done.get_future().get();
    EXPECT_THAT(s.error_code(), AnyOf(grpc::StatusCode::OK, grpc::StatusCode::CANCELLED))
        << s.error_message();
    (s.ok() ? ok : cancelled) += 1;
    if (s.ok()) {
      EXPECT_EQ(c->response.items_size(), 20);
    }
  }
  EXPECT_GT(cancelled, 0);
  ExpectNothingInFlight();
  EXPECT_EQ(ServedVersion(), "v1");
}

TEST_F(FaultTest, ThousandsOfStreamsAndConnectionsOpenedAndDroppedLeaveItServing) {
  Start();
  ASSERT_TRUE(server_->Load().ok());
  // 3,000 streams over 6 connections, each dropped by its client right
  // after it opened it; the connections are dropped too.
  {
    struct Call {
      grpc::ClientContext context;
      v1::RankFeedRequest request;
      v1::RankFeedResponse response;
      std::promise<grpc::Status> done;
    };
    std::vector<std::unique_ptr<v1::FeedRanker::Stub>> stubs;
    for (int i = 0; i < 6; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("feedrank.test.connection", i);  // a connection of its own
      stubs.push_back(v1::FeedRanker::NewStub(
          grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                    grpc::InsecureChannelCredentials(), args)));
    }
    std::vector<std::unique_ptr<Call>> calls;
    for (int i = 0; i < 3000; ++i) {
      calls.push_back(std::make_unique<Call>());
      Call* c = calls.back().get();
      c->request.set_user_id(User(i % 200));
      stubs[i % 6]->async()->RankFeed(&c->context, &c->request, &c->response,
                                      [c](grpc::Status s) { c->done.set_value(s); });
      c->context.TryCancel();
    }
    for (auto& c : calls) {
      // Cancelled, answered, or refused as overload (a flood may fill the
      // queue before the cancels arrive): nothing else.
      const grpc::Status s = c->done.get_future().get();
      EXPECT_THAT(s.error_code(), AnyOf(grpc::StatusCode::OK, grpc::StatusCode::CANCELLED,
                                        grpc::StatusCode::UNAVAILABLE))
          << s.error_message();
    }
  }
  // 500 raw TCP connections: half send the HTTP/2 preface and hang up, half
  // send bytes that are not HTTP/2 at all.
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  for (int i = 0; i < 500; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string bytes = i % 2 == 0 ? preface : "GET / HTTP/1.1\r\n\r\n\x01\x02";
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              ssize_t(bytes.size()));
    ::close(fd);
  }
  ExpectNothingInFlight();
  EXPECT_EQ(ServedVersion(), "v1");
  // Health checks answer too.
  auto health = CheckHealth(channel_, kRankerServiceName);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, "SERVING");
}

}  // namespace
}  // namespace feedrank

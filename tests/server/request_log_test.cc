// The server's request log (replay/request_log.h) on a real server on port
// 0: what it records, its rotation, its sampling, and that a full queue or a
// failing disk costs records (counted), never calls.
#include "replay/request_log.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "replay/replay_log.h"
#include "server/feed_server.h"
#include "tests/test_bundles.h"
#include "tests/test_env.h"

namespace feedrank {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// The feedrank_request_log_records_total sample for `outcome`; -1 if absent.
double RecordsMetric(const ServerMetrics& metrics, const std::string& outcome) {
  for (const prometheus::MetricFamily& f : metrics.Collect()) {
    if (f.name != "feedrank_request_log_records_total") continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      if (m.label.size() == 1 && m.label[0].value == outcome) return m.counter.value;
    }
  }
  return -1;
}

// A file system whose log files' writes wait while the gate is closed.
class GatedFileSystem : public FileSystemWrapper {
 public:
  GatedFileSystem() : FileSystemWrapper(FileSystem::Real()) {}

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForWrite(
      const std::string& path) override {
    auto file = target()->OpenForWrite(path);
    if (!file.ok()) return file;
    return std::unique_ptr<WritableFile>(new Gated(*std::move(file), this));
  }

 private:
  class Gated : public WritableFile {
   public:
    Gated(std::unique_ptr<WritableFile> file, GatedFileSystem* fs)
        : file_(std::move(file)), fs_(fs) {}
    absl::Status Append(absl::string_view data) override {
      std::unique_lock<std::mutex> lock(fs_->mu_);
      fs_->cv_.wait(lock, [this] { return fs_->open_; });
      lock.unlock();
      return file_->Append(data);
    }
    absl::Status Sync() override { return file_->Sync(); }
    absl::Status Close() override { return file_->Close(); }
    const std::string& path() const override { return file_->path(); }

   private:
    std::unique_ptr<WritableFile> file_;
    GatedFileSystem* fs_;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
};

class RequestLogTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    SynthOptions a = testing::SmallSynth(3000, 100);
    a.version = "bundle-a";
    testing::WriteSmallBundle(a, dir_->Sub("a"));
  }
  static void TearDownTestSuite() { delete dir_; }

  // Starts and loads a server with the given request log.
  void Start(RequestLogOptions log, FileSystem* fs = nullptr) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.bundle_dir = dir_->Sub("a");
    options.watch_interval = absl::ZeroDuration();
    options.request_log = std::move(log);
    if (fs != nullptr) options.env.fs = fs;
    auto server = FeedServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->Load().ok());
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::FeedRanker::NewStub(channel_);
  }

  grpc::Status Call(const v1::RankFeedRequest& request, v1::RankFeedResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->RankFeed(&context, request, response);
  }

  // Varied requests: known and unknown users, page sizes, exclude lists,
  // contexts.
  v1::RankFeedRequest Request(int i) {
    v1::RankFeedRequest r;
    const auto& catalog = *server_->snapshots().Current()->bundle->catalog;
    r.set_user_id(i % 5 == 4 ? 900000 + i : catalog.user_id(i % 100));
    r.set_request_id(absl::StrCat("req-", i));
    if (i % 3 == 0) r.set_count(5 + i % 7);
    for (int e = 0; e < i % 4; ++e) r.add_exclude_ids(catalog.video_id(e * 7 + i));
    if (i % 2 == 0) {
      r.mutable_context()->set_client_time_ms(1793491200000 + i);
      r.mutable_context()->set_utc_offset_minutes(60);
    }
    return r;
  }

  static testing::TempDir* dir_;
  std::unique_ptr<FeedServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
};
testing::TempDir* RequestLogTest::dir_ = nullptr;

void ExpectRecordMatches(const v1::ReplayRecord& record, const v1::RankFeedRequest& sent,
                         const v1::RankFeedResponse& got) {
  EXPECT_TRUE(MessageDifferencer::Equals(record.request(), sent))
      << record.request().DebugString() << " vs " << sent.DebugString();
  const v1::ServedPage& served = record.served();
  std::vector<uint64_t> page;
  for (const v1::RankedItem& item : got.items()) page.push_back(item.video_id());
  EXPECT_EQ(std::vector<uint64_t>(served.video_ids().begin(), served.video_ids().end()),
            page);
  EXPECT_EQ(served.bundle_version(), got.bundle_version());
  EXPECT_EQ(served.config_version(), got.config_version());
  EXPECT_EQ(served.degraded(), got.degraded());
  EXPECT_EQ(record.known_user(), !got.cold_start());
  EXPECT_GT(served.latency_us(), 0);
}

TEST_F(RequestLogTest, EveryAnsweredCallIsRecordedAsSentAndAsServed) {
  for (const std::string name : {"requests.log", "requests.jsonl"}) {
    SCOPED_TRACE(name);
    testing::TempDir logs;
    RequestLogOptions log;
    log.path = logs.Sub(name);
    log.sample_rate = 1;
    Start(log);
    constexpr int kCalls = 60;
    std::vector<v1::RankFeedRequest> sent;
    std::vector<v1::RankFeedResponse> got;
    std::vector<std::pair<int64_t, int64_t>> wall;
    for (int i = 0; i < kCalls; ++i) {
      sent.push_back(Request(i));
      got.emplace_back();
      const int64_t before = Clock::Real()->UnixMillis();
      ASSERT_TRUE(Call(sent.back(), &got.back()).ok());
      wall.emplace_back(before, Clock::Real()->UnixMillis());
      // A refused call in between is not logged.
      v1::RankFeedRequest bad = Request(i);
      bad.set_count(0);
      v1::RankFeedResponse ignored;
      ASSERT_EQ(Call(bad, &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    }
    server_->Shutdown();
    EXPECT_EQ(server_->request_log()->counts().written, kCalls);
    EXPECT_EQ(RecordsMetric(server_->metrics(), "written"), kCalls);
    EXPECT_EQ(RecordsMetric(server_->metrics(), "dropped"), 0);
    EXPECT_EQ(RecordsMetric(server_->metrics(), "failed"), 0);
    auto records = ReadReplayLog(log.path, BadRecordPolicy::kFail);
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), size_t(kCalls));
    const auto snapshot = server_->snapshots().Current();
    for (int i = 0; i < kCalls; ++i) {
      SCOPED_TRACE(i);
      const v1::ReplayRecord& r = (*records)[i];
      ExpectRecordMatches(r, sent[i], got[i]);
      EXPECT_EQ(r.served().catalog_version(), snapshot->view->version());
      EXPECT_GE(r.time_ms(), wall[i].first - 1);
      EXPECT_LE(r.time_ms(), wall[i].second);
      EXPECT_TRUE(r.outcomes().empty());
    }
    server_.reset();
  }
}

TEST_F(RequestLogTest, RotationKeepsEveryRecordWholeInOrderAcrossFiles) {
  testing::TempDir logs;
  RequestLogOptions log;
  log.path = logs.Sub("requests.log");
  log.sample_rate = 1;
  log.max_bytes = kMinRequestLogBytes;
  log.keep = 1000;
  Start(log);
  constexpr int kCalls = 150;
  for (int i = 0; i < kCalls; ++i) {
    v1::RankFeedResponse response;
    ASSERT_TRUE(Call(Request(i), &response).ok());
  }
  server_->Shutdown();
  auto files = RequestLogFiles(log.path, *FileSystem::Real());
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_GT(files->size(), 3u);
  EXPECT_EQ(files->front(), RequestLogFilePath(log.path, int(files->size()) - 1));
  int next = 0;
  for (size_t f = 0; f < files->size(); ++f) {
    SCOPED_TRACE((*files)[f]);
    auto records = ReadReplayLog((*files)[f], BadRecordPolicy::kFail);
    ASSERT_TRUE(records.ok()) << records.status();
    // Each file but the current one was closed once it reached the size.
    if (f + 1 < files->size()) {
      ASSERT_FALSE(records->empty());
      EXPECT_GE(testing::ReadFile((*files)[f]).size(), log.max_bytes);
    }
    for (const v1::ReplayRecord& r : *records) {
      EXPECT_EQ(r.request().request_id(), absl::StrCat("req-", next));
      ++next;
    }
  }
  EXPECT_EQ(next, kCalls);
  EXPECT_EQ(server_->request_log()->counts().written, kCalls);
}

TEST_F(RequestLogTest, OnlyKeepFilesAreKeptAndARestartRotatesTheOldLogAway) {
  testing::TempDir logs;
  RequestLogOptions log;
  log.path = logs.Sub("requests.jsonl");
  log.sample_rate = 1;
  log.max_bytes = kMinRequestLogBytes;
  log.keep = 2;
  Start(log);
  for (int i = 0; i < 60; ++i) {
    v1::RankFeedResponse response;
    ASSERT_TRUE(Call(Request(i), &response).ok());
  }
  server_.reset();
  auto files = RequestLogFiles(log.path, *FileSystem::Real());
  ASSERT_TRUE(files.ok());
  EXPECT_THAT(*files, ::testing::ElementsAre(logs.Sub("requests.2.jsonl"),
                                             logs.Sub("requests.1.jsonl"), log.path));
  auto last = ReadReplayLog(log.path, BadRecordPolicy::kFail);
  ASSERT_TRUE(last.ok()) << last.status();
  const size_t before = last->size();
  ASSERT_GT(before, 0u);
  EXPECT_EQ(last->back().request().request_id(), "req-59");

  // A new server on the same path keeps what the last one wrote: as file 1.
  log.max_bytes = 0;
  Start(log);
  v1::RankFeedResponse response;
  ASSERT_TRUE(Call(Request(100), &response).ok());
  server_.reset();
  auto rotated = ReadReplayLog(logs.Sub("requests.1.jsonl"), BadRecordPolicy::kFail);
  ASSERT_TRUE(rotated.ok());
  EXPECT_EQ(rotated->size(), before);
  auto now = ReadReplayLog(log.path, BadRecordPolicy::kFail);
  ASSERT_TRUE(now.ok());
  ASSERT_EQ(now->size(), 1u);
  EXPECT_EQ(now->front().request().request_id(), "req-100");
}

TEST_F(RequestLogTest, ASampleRateLogsAboutThatShareOfCalls) {
  testing::TempDir logs;
  RequestLogOptions log;
  log.path = logs.Sub("requests.log");
  log.sample_rate = 0.1;
  Start(log);
  constexpr int kThreads = 4, kPerThread = 500, kCalls = kThreads * kPerThread;
  std::atomic<int> failed{0};
  std::vector<v1::RankFeedRequest> requests;
  for (int i = 0; i < 20; ++i) requests.push_back(Request(i));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v1::RankFeedResponse response;
        if (!Call(requests[(t + i) % requests.size()], &response).ok()) ++failed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  server_->Shutdown();
  auto records = ReadReplayLog(log.path, BadRecordPolicy::kFail);
  ASSERT_TRUE(records.ok()) << records.status();
  // Binomial(2000, 0.1): mean 200, sd 13.4; 6 sd either side.
  const double mean = kCalls * 0.1, sd = std::sqrt(kCalls * 0.1 * 0.9);
  EXPECT_GE(double(records->size()), mean - 6 * sd);
  EXPECT_LE(double(records->size()), mean + 6 * sd);
  const RequestLogCounts c = server_->request_log()->counts();
  EXPECT_EQ(c.written, int64_t(records->size()));
  EXPECT_EQ(c.dropped + c.failed, 0);
  server_.reset();

  // Rate 0: nothing.
  log.sample_rate = 0;
  Start(log);
  for (int i = 0; i < 50; ++i) {
    v1::RankFeedResponse response;
    ASSERT_TRUE(Call(Request(i), &response).ok());
  }
  server_->Shutdown();
  auto none = ReadReplayLog(log.path, BadRecordPolicy::kFail);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(server_->request_log()->counts().written, 0);
}

TEST_F(RequestLogTest, AFullQueueDropsAndCountsRecordsAndNoCallWaits) {
  testing::TempDir logs;
  GatedFileSystem fs;
  RequestLogOptions log;
  log.path = logs.Sub("requests.log");
  log.sample_rate = 1;
  log.max_queued = 2;
  Start(log, &fs);
  // The writer's first write waits: at most one batch (2) is being written
  // and 2 more queued; every other record is dropped.
  fs.Close();
  constexpr int kCalls = 30;
  for (int i = 0; i < kCalls; ++i) {
    v1::RankFeedResponse response;
    ASSERT_TRUE(Call(Request(i), &response).ok());
  }
  const RequestLogCounts during = server_->request_log()->counts();
  EXPECT_GE(during.dropped, kCalls - 4);
  EXPECT_EQ(RecordsMetric(server_->metrics(), "dropped"), during.dropped);
  fs.Open();
  server_->Shutdown();
  const RequestLogCounts c = server_->request_log()->counts();
  EXPECT_EQ(c.written + c.dropped, kCalls);
  EXPECT_EQ(c.failed, 0);
  EXPECT_LE(c.written, 4);
  auto records = ReadReplayLog(log.path, BadRecordPolicy::kFail);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(int64_t(records->size()), c.written);
}

TEST_F(RequestLogTest, AFailingDiskCostsRecordsNotCalls) {
  testing::TempDir logs;
  testing::FaultFileSystem fs;
  RequestLogOptions log;
  log.path = logs.Sub("requests.log");
  log.sample_rate = 1;
  Start(log, &fs);
  // Disk full from now on: every write fails, and so does every file the
  // log reopens after one.
  fs.write_budget_bytes.store(0);
  constexpr int kCalls = 40;
  for (int i = 0; i < kCalls; ++i) {
    v1::RankFeedResponse response;
    ASSERT_TRUE(Call(Request(i), &response).ok()) << i;
  }
  server_->Shutdown();
  const RequestLogCounts c = server_->request_log()->counts();
  EXPECT_EQ(c.failed, kCalls);
  EXPECT_EQ(c.written + c.dropped, 0);
  EXPECT_EQ(RecordsMetric(server_->metrics(), "failed"), kCalls);
}

TEST_F(RequestLogTest, BadOptionsAreRefusedByNameAndCreateNothing) {
  testing::TempDir logs;
  auto start = [&](const RequestLogOptions& log) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.bundle_dir = dir_->Sub("a");
    options.request_log = log;
    return FeedServer::Start(options).status();
  };
  RequestLogOptions log;
  log.path = logs.Sub("requests.log");
  log.sample_rate = 1.5;
  absl::Status s = start(log);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--request-log-sample: 1.5 is outside [0, 1]"));
  log.sample_rate = std::nan("");
  EXPECT_EQ(start(log).code(), absl::StatusCode::kInvalidArgument);
  log.sample_rate = 0.5;
  log.max_bytes = 100;
  s = start(log);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("--request-log-max-bytes: 100 is below the minimum"));
  log.max_bytes = 0;
  log.keep = -1;
  EXPECT_THAT(start(log).message(), HasSubstr("--request-log-keep"));
  log.keep = 5;
  EXPECT_EQ(ValidateServerOptions([&] {
              ServerOptions o;
              o.bundle_dir = "b";
              o.request_log = log;
              o.request_log.sample_rate = -0.1;
              return o;
            }())
                .code(),
            absl::StatusCode::kInvalidArgument);
  auto listing = FileSystem::Real()->ListDir(logs.path());
  ASSERT_TRUE(listing.ok());
  EXPECT_TRUE(listing->empty());

  // A directory that does not exist, or a directory as the file: at Start.
  log.path = logs.Sub("no/such/dir/requests.log");
  s = start(log);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr(log.path));
  log.path = logs.path();
  s = start(log);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("is a directory"));
}

}  // namespace
}  // namespace feedrank

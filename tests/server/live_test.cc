// The live catalogue on a real server (docs/LIVE.md): uploads rankable on
// the next call, takedowns never served after their acknowledgement (under
// load, by any source), bad batches refused whole, the update log's faults
// refusing updates while serving goes on, a corrupt log tail cut at start,
// compaction and bundle swaps under load with zero failed calls.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "embeddings/manifest.h"
#include "feedrank/v1/admin.grpc.pb.h"
#include "feedrank/v1/ranker.grpc.pb.h"
#include "server/feed_server.h"
#include "tests/server/scrape.h"
#include "tests/test_bundles.h"
#include "tests/test_env.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

class LiveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    SynthOptions a = testing::SmallSynth(3000, 200);
    a.version = "bundle-a";
    testing::WriteSmallBundle(a, dir_->Sub("a"));
    auto loaded = LoadBundle(dir_->Sub("a"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    bundle_ = new std::shared_ptr<const Bundle>(*loaded);
  }
  static void TearDownTestSuite() {
    delete bundle_;
    delete dir_;
  }

  void SetUp() override {
    work_ = std::make_unique<testing::TempDir>();
    wal_dir_ = work_->Sub("wal");
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // Serves bundle a (or the root `root`) with live updates into wal_dir_.
  void Start(const std::function<void(ServerOptions*)>& tweak = nullptr) {
    ServerOptions o;
    o.address = "127.0.0.1:0";
    o.metrics_address = "127.0.0.1:0";
    o.admin_address = "127.0.0.1:0";
    o.bundle_dir = dir_->Sub("a");
    o.watch_interval = absl::ZeroDuration();
    o.compact_interval = absl::ZeroDuration();
    o.live.wal_dir = wal_dir_;
    if (tweak) tweak(&o);
    auto server = FeedServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->Load().ok());
    stub_ = v1::FeedRanker::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
    admin_ = v1::FeedAdmin::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->admin_port()),
                            grpc::InsecureChannelCredentials()));
  }

  std::vector<testing::Sample> Scrape() {
    auto r = testing::Get(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(r && r->status == 200);
    return r ? testing::ParsePrometheus(r->body) : std::vector<testing::Sample>();
  }

  static const Catalog& Base() { return *(*bundle_)->catalog; }
  static uint64_t User(int i) { return Base().user_id(i); }
  static std::vector<float> UserEmbedding(int i) {
    const float* e = Base().user_embedding(i);
    return std::vector<float>(e, e + Base().dim());
  }

  // A new video aimed at user `i`: their own embedding (the best inner
  // product a unit-norm-ish video can get), scaled up, and very popular.
  static v1::VideoUpdate AimedAt(uint64_t id, int i) {
    v1::VideoUpdate v;
    v.set_id(id);
    for (float x : UserEmbedding(i)) v.add_embedding(4 * x);
    v.set_creator_id(77);
    v.set_duration_ms(20000);
    v.set_popularity(1e9f);
    return v;
  }

  grpc::Status Upsert(const std::vector<v1::VideoUpdate>& videos,
                      v1::UpdateResponse* out = nullptr) {
    v1::UpsertVideosRequest request;
    for (const auto& v : videos) *request.add_videos() = v;
    v1::UpdateResponse ignored;
    grpc::ClientContext context;
    return admin_->UpsertVideos(&context, request, out ? out : &ignored);
  }
  grpc::Status Delete(const std::vector<uint64_t>& ids,
                      v1::UpdateResponse* out = nullptr) {
    v1::DeleteVideosRequest request;
    for (uint64_t id : ids) request.add_ids(id);
    v1::UpdateResponse ignored;
    grpc::ClientContext context;
    return admin_->DeleteVideos(&context, request, out ? out : &ignored);
  }
  grpc::Status RecordEvents(const std::vector<v1::EngagementEvent>& events,
                            v1::UpdateResponse* out = nullptr) {
    v1::RecordEventsRequest request;
    for (const auto& e : events) *request.add_events() = e;
    v1::UpdateResponse ignored;
    grpc::ClientContext context;
    return admin_->RecordEvents(&context, request, out ? out : &ignored);
  }
  static v1::EngagementEvent Event(uint64_t user, uint64_t video, int64_t time_ms,
                                   bool positive) {
    v1::EngagementEvent e;
    e.set_user_id(user);
    e.set_video_id(video);
    e.set_time_ms(time_ms);
    e.set_positive(positive);
    return e;
  }
  v1::GetStatusResponse Status() {
    v1::GetStatusResponse response;
    grpc::ClientContext context;
    grpc::Status status = admin_->GetStatus(&context, v1::GetStatusRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  v1::RankFeedResponse Rank(uint64_t user, int count = 50, grpc::Status* out = nullptr) {
    v1::RankFeedRequest request;
    request.set_user_id(user);
    request.set_count(count);
    v1::RankFeedResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status status = stub_->RankFeed(&context, request, &response);
    if (out != nullptr) {
      *out = status;
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    return response;
  }
  static std::set<uint64_t> Ids(const v1::RankFeedResponse& r) {
    std::set<uint64_t> ids;
    for (const auto& item : r.items()) ids.insert(item.video_id());
    return ids;
  }

  // Callers ranking known and cold users until stopped; every answer is
  // checked by `check(start, response)` and failures counted.
  struct Load {
    std::atomic<bool> stop{false};
    std::atomic<int64_t> calls{0}, failures{0};
    std::vector<std::thread> threads;
    ~Load() { Stop(); }
    void Stop() {
      stop = true;
      for (auto& t : threads) t.join();
      threads.clear();
    }
  };
  using Check = std::function<void(std::chrono::steady_clock::time_point,
                                   const v1::RankFeedResponse&)>;
  void StartLoad(Load* load, int threads, const Check& check) {
    for (int t = 0; t < threads; ++t) {
      load->threads.emplace_back([this, load, t, check] {
        auto stub = v1::FeedRanker::NewStub(
            grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                grpc::InsecureChannelCredentials()));
        for (int i = t; !load->stop; i += 7) {
          v1::RankFeedRequest request;
          // Known users and cold ones (ids no bundle has).
          request.set_user_id(i % 5 == 0 ? 900000000 + i : User(i % 200));
          request.set_count(30);
          v1::RankFeedResponse response;
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::seconds(10));
          const auto start = std::chrono::steady_clock::now();
          grpc::Status status = stub->RankFeed(&context, request, &response);
          ++load->calls;
          if (!status.ok()) {
            ++load->failures;
            ADD_FAILURE() << status.error_message();
            continue;
          }
          if (check) check(start, response);
        }
      });
    }
  }

  static testing::TempDir* dir_;
  static std::shared_ptr<const Bundle>* bundle_;
  std::unique_ptr<testing::TempDir> work_;
  std::string wal_dir_;
  std::unique_ptr<FeedServer> server_;
  std::unique_ptr<v1::FeedRanker::Stub> stub_;
  std::unique_ptr<v1::FeedAdmin::Stub> admin_;
};

testing::TempDir* LiveTest::dir_ = nullptr;
std::shared_ptr<const Bundle>* LiveTest::bundle_ = nullptr;

TEST_F(LiveTest, AnUploadIsRankableOnTheVeryNextCallByEverySource) {
  Start();
  const uint64_t id = 880000001;
  EXPECT_EQ(Ids(Rank(User(3))).count(id), 0u);
  v1::UpdateResponse ack;
  {
    grpc::Status s = Upsert({AimedAt(id, 3)}, &ack);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(ack.inserted(), 1u);
  EXPECT_EQ(ack.sequence(), 1u);
  // The next call: the user it is aimed at gets it (by ANN), and a cold
  // user gets it from the popular and fresh lists.
  const v1::RankFeedResponse known = Rank(User(3));
  EXPECT_EQ(Ids(known).count(id), 1u);
  const v1::RankFeedResponse cold = Rank(987654321);
  ASSERT_TRUE(cold.cold_start());
  EXPECT_EQ(Ids(cold).count(id), 1u);
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.delta_videos(), 1u);
  EXPECT_EQ(status.live_videos(), 3001u);
  EXPECT_EQ(status.wal_last_sequence(), 1u);
  EXPECT_GT(status.catalog_version(), 0u);
  // A changed embedding replaces it (one row, new place in the index).
  v1::VideoUpdate moved = AimedAt(id, 150);
  ASSERT_TRUE(Upsert({moved}, &ack).ok());
  EXPECT_EQ(ack.replaced(), 1u);
  EXPECT_EQ(Status().live_videos(), 3001u);
  EXPECT_EQ(Ids(Rank(User(150))).count(id), 1u);
}

TEST_F(LiveTest, AFreshUserEmbeddingServesTheNextCall) {
  Start();
  const uint64_t newcomer = 770000001;
  EXPECT_TRUE(Rank(newcomer).cold_start());
  v1::UpsertUsersRequest request;
  v1::UserUpdate* u = request.add_users();
  u->set_id(newcomer);
  for (float x : UserEmbedding(5)) u->add_embedding(x);
  u->set_activity(3);
  v1::UpdateResponse ack;
  grpc::ClientContext context;
  ASSERT_TRUE(admin_->UpsertUsers(&context, request, &ack).ok());
  EXPECT_EQ(ack.inserted(), 1u);
  const v1::RankFeedResponse r = Rank(newcomer);
  EXPECT_FALSE(r.cold_start());
  // With user 5's embedding, the newcomer's ANN candidates are user 5's.
  const v1::RankFeedResponse same = Rank(User(5));
  EXPECT_EQ(Ids(r), Ids(same));
  EXPECT_EQ(Status().delta_users(), 1u);
}

TEST_F(LiveTest, ADeleteIsNeverServedAfterItsAcknowledgementUnderLoad) {
  Start();
  // The videos served most often, over known and cold users: they come
  // from every source (ANN, popular, fresh).
  std::map<uint64_t, int> served;
  std::set<std::string> sources;
  for (int i = 0; i < 60; ++i) {
    const v1::RankFeedResponse r = Rank(i % 3 == 0 ? 900000000 + i : User(i), 30);
    for (const auto& item : r.items()) {
      ++served[item.video_id()];
      sources.insert(v1::Source_Name(item.source()));
    }
  }
  std::vector<std::pair<int, uint64_t>> by_count;
  for (const auto& [id, n] : served) by_count.emplace_back(-n, id);
  std::sort(by_count.begin(), by_count.end());
  std::vector<uint64_t> victims;
  for (int i = 0; i < 40 && i < int(by_count.size()); ++i)
    victims.push_back(by_count[i].second);
  EXPECT_GE(sources.size(), 2u);

  std::mutex mu;
  std::chrono::steady_clock::time_point acked =
      std::chrono::steady_clock::time_point::max();
  std::atomic<int64_t> after_ack{0}, served_before{0};
  const std::set<uint64_t> victim_set(victims.begin(), victims.end());
  Load load;
  StartLoad(&load, 4, [&](auto start, const v1::RankFeedResponse& r) {
    bool has = false;
    for (const auto& item : r.items()) has |= victim_set.count(item.video_id()) > 0;
    std::lock_guard<std::mutex> lock(mu);
    if (start > acked) {
      ++after_ack;
      EXPECT_FALSE(has) << "a deleted video was served by a call that started after "
                           "the delete's acknowledgement";
    } else if (has) {
      ++served_before;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Ten batches of four, each checked from its own acknowledgement: the
  // check above uses the last one, so delete all first, then set it.
  v1::UpdateResponse ack;
  ASSERT_TRUE(Delete(victims, &ack).ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    acked = std::chrono::steady_clock::now();
  }
  EXPECT_EQ(ack.deleted(), victims.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  load.Stop();
  EXPECT_EQ(load.failures, 0);
  EXPECT_GT(served_before, 0) << "the victims were not being served before";
  EXPECT_GT(after_ack, 100) << "too few calls after the delete to mean anything";
  EXPECT_EQ(Status().tombstones(), victims.size());
}

TEST_F(LiveTest, BadBatchesAreRefusedWholeNamingTheItem) {
  Start();
  v1::VideoUpdate good = AimedAt(880000010, 1);
  auto with = [&](const std::function<void(v1::VideoUpdate*)>& f) {
    v1::VideoUpdate v = AimedAt(880000011, 2);
    f(&v);
    return v;
  };
  struct Case {
    std::vector<v1::VideoUpdate> videos;
    std::string message;
  };
  std::vector<Case> cases = {
      {{good, with([](v1::VideoUpdate* v) { v->mutable_embedding()->RemoveLast(); })},
       absl::StrCat("upserts[1] id 880000011: embedding has ", Base().dim() - 1,
                    " values, the catalogue's dimension is ", Base().dim())},
      {{good, with([](v1::VideoUpdate* v) { v->set_embedding(7, std::nanf("")); })},
       "embedding[7] is nan, not finite"},
      {{good, with([](v1::VideoUpdate* v) { v->set_embedding(0, INFINITY); })},
       "embedding[0] is inf"},
      {{good, good}, "upserts[1] id 880000010: the id appears twice in the batch"},
      {{good, with([](v1::VideoUpdate* v) { v->set_popularity(-1); })}, "popularity -1"},
      {{}, "the batch is empty"},
  };
  std::vector<v1::VideoUpdate> many(LiveCatalog::kMaxBatch + 1, good);
  for (size_t i = 0; i < many.size(); ++i) many[i].set_id(500000000 + i);
  cases.push_back({many, "more than the limit of 10000; split it"});
  for (const Case& c : cases) {
    const grpc::Status status = Upsert(c.videos);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  // Nothing of any of them was logged or applied: the good video of each
  // batch is nowhere.
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.wal_last_sequence(), 0u);
  EXPECT_EQ(status.delta_videos(), 0u);
  EXPECT_EQ(Ids(Rank(User(1))).count(880000010), 0u);
  EXPECT_EQ(
      testing::Value(Scrape(), "feedrank_live_batches_total", {{"outcome", "refused"}}),
      double(cases.size()));
  // A delete of an id nobody has is a counted no-op, not an error.
  v1::UpdateResponse ack;
  ASSERT_TRUE(Delete({123}, &ack).ok());
  EXPECT_EQ(ack.unknown(), 1u);
  EXPECT_EQ(ack.deleted(), 0u);
}

TEST_F(LiveTest, AnUpdateTheLogCannotTakeIsRefusedAndServingGoesOn) {
  testing::FaultFileSystem fs;
  Start([&](ServerOptions* o) { o->env.fs = &fs; });
  ASSERT_TRUE(Upsert({AimedAt(880000020, 4)}).ok());
  for (const char* fault : {"fsync", "read-only", "disk full"}) {
    SCOPED_TRACE(fault);
    if (std::string(fault) == "fsync") {
      fs.fail_sync = true;
    } else if (std::string(fault) == "read-only") {
      fs.fail_sync = false;
      fs.read_only = true;
    } else {
      fs.read_only = false;
      fs.fail_sync = false;
      fs.fail_status = absl::ResourceExhaustedError("No space left on device");
      fs.write_budget_bytes = 10;
    }
    const grpc::Status status = Upsert({AimedAt(880000021, 6)});
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("update log cannot take the batch"));
    // Serving goes on, without the refused video and with the earlier one.
    EXPECT_EQ(Ids(Rank(User(6))).count(880000021), 0u);
    EXPECT_EQ(Ids(Rank(User(4))).count(880000020), 1u);
  }
  fs.write_budget_bytes = -1;
  EXPECT_GE(testing::Value(Scrape(), "feedrank_live_log_failures_total", {}), 3);
  // The disk recovers: updates are taken again, and a restart replays the
  // acknowledged ones only.
  ASSERT_TRUE(Upsert({AimedAt(880000022, 8)}).ok());
  server_->Shutdown();
  server_.reset();
  Start();
  EXPECT_EQ(Ids(Rank(User(4))).count(880000020), 1u);
  EXPECT_EQ(Ids(Rank(User(8))).count(880000022), 1u);
  EXPECT_EQ(Ids(Rank(User(6))).count(880000021), 0u);
  EXPECT_EQ(Status().recovered_records(), 2u);
}

TEST_F(LiveTest, ACorruptLogTailIsCutAtStartAndTheIntactPrefixKept) {
  Start();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Upsert({AimedAt(880000030 + i, 10 + i)}).ok());
  server_->Shutdown();
  server_.reset();
  // Flip a byte inside the last record's payload.
  std::string segment;
  for (const auto& entry : std::filesystem::directory_iterator(wal_dir_)) {
    if (std::filesystem::file_size(entry.path()) > 100) segment = entry.path();
  }
  ASSERT_FALSE(segment.empty());
  std::string data = testing::ReadFile(segment);
  data[data.size() - 5] ^= 0x5a;
  testing::WriteFile(segment, data);
  Start();
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.recovered_records(), 4u);
  EXPECT_GT(status.recovered_bytes_cut(), 0);
  ASSERT_EQ(status.recovery_cuts_size(), 1);
  EXPECT_THAT(status.recovery_cuts(0), HasSubstr("checksum mismatch"));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Ids(Rank(User(10 + i))).count(880000030 + i), 1u);
  EXPECT_EQ(Ids(Rank(User(14))).count(880000034), 0u);
  // Appends resume after the kept prefix.
  v1::UpdateResponse ack;
  ASSERT_TRUE(Upsert({AimedAt(880000040, 20)}, &ack).ok());
  EXPECT_GT(ack.sequence(), 4u);
}

TEST_F(LiveTest, EngagementEventsAreCheckedWholeRecordedAndSurviveARestart) {
  Start();
  const int64_t now = absl::ToUnixMillis(absl::Now());
  const uint64_t v0 = Base().video_id(0), v1 = Base().video_id(1);
  v1::UpdateResponse ack;
  // Refused whole, naming the event; nothing recorded.
  grpc::Status bad = RecordEvents({Event(User(0), v0, now - 1000, true),
                                   Event(User(0), v1, now - 900, false),
                                   Event(User(1), 123456789, now - 800, true)});
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("event 2: video 123456789 is not in"));
  bad = RecordEvents({Event(User(0), v0, now + 600000, true)});
  EXPECT_THAT(bad.error_message(), HasSubstr("ahead of the server's clock"));
  bad = RecordEvents({Event(User(0), v0, 0, true)});
  EXPECT_THAT(bad.error_message(), HasSubstr("time_ms is 0, must be > 0"));
  EXPECT_EQ(Status().events_recorded(), 0u);
  EXPECT_EQ(Status().wal_last_sequence(), 0u);
  // Accepted: logged, then recorded.
  ASSERT_TRUE(RecordEvents({Event(User(0), v0, now - 1000, true),
                            Event(User(0), v1, now - 900, false),
                            Event(User(2), v0, now - 800, true)},
                           &ack)
                  .ok());
  EXPECT_EQ(ack.events(), 3u);
  EXPECT_EQ(ack.sequence(), 1u);
  ASSERT_TRUE(Upsert({AimedAt(880000090, 3)}).ok());
  ASSERT_TRUE(RecordEvents({Event(User(3), 880000090, now - 700, true)}, &ack).ok());
  EXPECT_EQ(ack.sequence(), 3u);
  // A late event (before the pipeline bundle's data time) is the bundle's
  // already: logged, not counted, here or at the replay below.
  const int64_t data_time = (*bundle_)->manifest.data_time_ms();
  ASSERT_GT(data_time, 0);
  ASSERT_TRUE(RecordEvents({Event(User(4), v0, data_time - 1000, true)}, &ack).ok());
  EXPECT_EQ(ack.events(), 0u);
  // At most 100,000 events a batch.
  {
    std::vector<v1::EngagementEvent> many(kMaxEventsPerBatch + 1,
                                          Event(User(0), v0, now - 1000, true));
    bad = RecordEvents(many);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(bad.error_message(), HasSubstr("at most 100000 events, not 100001"));
  }
  // The late event is logged, but this pipeline bundle supersedes it: not
  // counted, not held for later.
  v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.events_recorded(), 4u);
  EXPECT_EQ(status.pending_events(), 4u);
  EXPECT_EQ(status.delta_videos(), 1u);
  // A restart replays them from the log (the bundle's data predates them).
  server_->Shutdown();
  server_.reset();
  Start();
  status = Status();
  EXPECT_EQ(status.recovered_records(), 4u);
  EXPECT_EQ(status.events_recorded(), 4u);
  EXPECT_EQ(status.pending_events(), 4u);
  // The served bundle's state holds them: the same counts as recording the
  // events by hand.
  auto fresh = LoadBundle(dir_->Sub("a"));
  ASSERT_TRUE(fresh.ok());
  (*fresh)->engagement->Record({{User(0), v0, now - 1000, true},
                                {User(0), v1, now - 900, false},
                                {User(2), v0, now - 800, true}});
  float expected[kTrendColumns];
  EngagementState::Reader((*fresh)->engagement.get(), now).TrendingOf(v0, expected);
  EXPECT_GT(expected[0], 1.9f);
  const std::shared_ptr<const Snapshot> served = server_->snapshots().Current();
  ASSERT_NE(served, nullptr);
  float got[kTrendColumns];
  EngagementState::Reader(served->bundle->engagement.get(), now).TrendingOf(v0, got);
  for (int c = 0; c < kTrendColumns; ++c) EXPECT_FLOAT_EQ(got[c], expected[c]) << c;
  EXPECT_THAT(
      EngagementState::Reader(served->bundle->engagement.get(), now).History(User(0)),
      ::testing::ElementsAre(v1, v0));
}

// A root with version 1 = bundle a; compaction and swaps add versions.
class LiveRootTest : public LiveTest {
 protected:
  void SetUp() override {
    LiveTest::SetUp();
    root_ = work_->Sub("root");
    std::filesystem::create_directories(root_);
    testing::CopyDir(dir_->Sub("a"), root_ + "/1");
  }
  void StartRoot(int64_t threshold = 0) {
    Start([&](ServerOptions* o) {
      o->bundle_dir.clear();
      o->bundle_root = root_;
      o->live.compact_threshold = threshold;
    });
  }
  std::string root_;
};

TEST_F(LiveRootTest, CompactionUnderLoadLosesNoCallAndKeepsEveryUpdate) {
  StartRoot();
  const uint64_t upload = 880000050;
  ASSERT_TRUE(Upsert({AimedAt(upload, 30)}).ok());
  const std::vector<uint64_t> victims = {Base().video_id(0), Base().video_id(1),
                                         Base().video_id(2)};
  ASSERT_TRUE(Delete(victims).ok());
  const std::set<uint64_t> victim_set(victims.begin(), victims.end());
  Load load;
  StartLoad(&load, 3, [&](auto, const v1::RankFeedResponse& r) {
    for (const auto& item : r.items()) EXPECT_EQ(victim_set.count(item.video_id()), 0u);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  v1::CompactionInfo info;
  {
    grpc::ClientContext context;  // FeedAdmin.Compact answers once it serves
    const grpc::Status compacted = admin_->Compact(&context, v1::CompactRequest(), &info);
    ASSERT_TRUE(compacted.ok()) << compacted.error_message();
  }
  EXPECT_EQ(info.through_sequence(), 2u);
  EXPECT_EQ(info.videos(), 2998u);
  EXPECT_EQ(info.dir(), root_ + "/2");
  EXPECT_EQ(info.bundle_version(), "bundle-a+live2");
  EXPECT_GT(info.seconds(), 0);
  // An update during the load after the compaction, too.
  ASSERT_TRUE(Upsert({AimedAt(upload + 1, 31)}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  load.Stop();
  EXPECT_EQ(load.failures, 0);
  EXPECT_GT(load.calls, 50);
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.bundle_dir(), root_ + "/2");
  EXPECT_EQ(status.bundle_sequence(), 2u);
  EXPECT_EQ(status.base_videos(), 3000u + 1 - 3);
  EXPECT_EQ(status.delta_videos(), 1u);  // the one after
  EXPECT_EQ(status.tombstones(), 0u);
  EXPECT_EQ(status.compactions(), 1u);
  EXPECT_EQ(Ids(Rank(User(30))).count(upload), 1u);
  EXPECT_EQ(Ids(Rank(User(31))).count(upload + 1), 1u);
  // The compacted bundle is a bundle like any other, with its position.
  auto manifest = ReadManifest(root_ + "/2");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->live_sequence(), 2u);
  EXPECT_EQ(manifest->num_videos(), 2998u);
  // The log holds only what came after; a restart serves the same.
  server_->Shutdown();
  server_.reset();
  StartRoot();
  EXPECT_EQ(Status().recovered_records(), 1u);
  EXPECT_EQ(Ids(Rank(User(30))).count(upload), 1u);
  EXPECT_EQ(Ids(Rank(User(31))).count(upload + 1), 1u);
  for (int i = 0; i < 20; ++i) {
    const v1::RankFeedResponse r = Rank(User(i));
    for (const auto& item : r.items()) EXPECT_EQ(victim_set.count(item.video_id()), 0u);
  }
}

TEST_F(LiveRootTest, CompactionFoldsTheEngagementEventsIntoTheNewBundle) {
  StartRoot();
  const int64_t now = absl::ToUnixMillis(absl::Now());
  const uint64_t v0 = Base().video_id(0);
  ASSERT_TRUE(RecordEvents({Event(User(0), v0, now - 3600000, true),
                            Event(User(1), v0, now - 60000, false)})
                  .ok());
  float before[kTrendColumns];
  {
    const auto served = server_->snapshots().Current();
    EngagementState::Reader(served->bundle->engagement.get(), now).TrendingOf(v0, before);
  }
  v1::CompactionInfo info;
  {
    grpc::ClientContext context;
    const grpc::Status compacted = admin_->Compact(&context, v1::CompactRequest(), &info);
    ASSERT_TRUE(compacted.ok()) << compacted.error_message();
  }
  EXPECT_EQ(info.through_sequence(), 1u);
  // An event after the compaction stays pending.
  ASSERT_TRUE(RecordEvents({Event(User(2), v0, now - 1000, true)}).ok());
  v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.bundle_dir(), root_ + "/2");
  EXPECT_EQ(status.pending_events(), 1u);
  // The new bundle's files hold the folded events, as of its engagement time.
  auto manifest = ReadManifest(root_ + "/2");
  ASSERT_TRUE(manifest.ok());
  EXPECT_GT(manifest->engagement_time_ms(), 0);
  auto compacted = LoadBundle(root_ + "/2");
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  float folded[kTrendColumns];
  EngagementState::Reader((*compacted)->engagement.get(), now).TrendingOf(v0, folded);
  for (int c = 0; c < kTrendColumns; ++c) EXPECT_NEAR(folded[c], before[c], 1e-5) << c;
  EXPECT_THAT(
      EngagementState::Reader((*compacted)->engagement.get(), now).History(User(0)),
      ::testing::ElementsAre(v0));
  // A restart: the log holds only the later event, replayed onto the
  // compacted bundle; nothing is counted twice.
  server_->Shutdown();
  server_.reset();
  StartRoot();
  status = Status();
  EXPECT_EQ(status.recovered_records(), 1u);
  EXPECT_EQ(status.events_recorded(), 1u);
  float after[kTrendColumns];
  const auto served = server_->snapshots().Current();
  EngagementState::Reader(served->bundle->engagement.get(), now).TrendingOf(v0, after);
  EXPECT_NEAR(after[0], before[0] + 1.f, 1e-3);
}

TEST_F(LiveRootTest, TheEventThresholdStartsCompactionByItself) {
  Start([&](ServerOptions* o) {
    o->bundle_dir.clear();
    o->bundle_root = root_;
    o->live.compact_threshold = 0;  // only the events make it due
    o->live.compact_event_threshold = 5;
    o->compact_interval = absl::Milliseconds(50);
  });
  const int64_t now = absl::ToUnixMillis(absl::Now());
  std::vector<v1::EngagementEvent> events;
  for (int i = 0; i < 4; ++i)
    events.push_back(Event(User(i), Base().video_id(i), now, true));
  ASSERT_TRUE(RecordEvents(events).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Status().compactions(), 0u);  // 4 < 5
  EXPECT_FALSE(Status().compaction_pending());
  ASSERT_TRUE(RecordEvents({Event(User(9), Base().video_id(9), now, false)}).ok());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Status().compactions() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.compactions(), 1u);
  EXPECT_EQ(status.pending_events(), 0u);
  EXPECT_EQ(status.compaction_event_threshold(), 5u);
}

TEST_F(LiveRootTest, ThresholdStartsCompactionByItself) {
  Start([&](ServerOptions* o) {
    o->bundle_dir.clear();
    o->bundle_root = root_;
    o->live.compact_threshold = 3;
    o->compact_interval = absl::Milliseconds(50);
  });
  ASSERT_TRUE(Upsert({AimedAt(880000060, 1), AimedAt(880000061, 2)}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Status().compactions(), 0u);  // 2 < 3
  ASSERT_TRUE(Delete({Base().video_id(5)}).ok());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Status().compactions() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(Status().compactions(), 1u);
  EXPECT_EQ(Status().bundle_sequence(), 2u);
  EXPECT_EQ(testing::Value(Scrape(), "feedrank_compactions_total", {{"outcome", "ok"}}),
            1);
}

TEST_F(LiveRootTest, ABundleSwapUnderLoadKeepsTheUpdatesLoggedSinceItsData) {
  StartRoot();
  const uint64_t upload = 880000070;
  ASSERT_TRUE(Upsert({AimedAt(upload, 40)}).ok());
  const uint64_t victim = Base().video_id(9);
  ASSERT_TRUE(Delete({victim}).ok());
  // Compacted first, so the swap must take updates from a bundle's
  // live_updates too, not only from the log.
  ASSERT_TRUE(server_->Compact().ok());
  ASSERT_TRUE(Upsert({AimedAt(upload + 1, 41)}).ok());
  Load load;
  StartLoad(&load, 3, [&](auto, const v1::RankFeedResponse& r) {
    for (const auto& item : r.items()) EXPECT_NE(item.video_id(), victim);
  });
  // A new pipeline bundle whose data ends before the updates (data time 0
  // = unknown: every update is replayed onto it).
  testing::CopyDir(dir_->Sub("a"), root_ + "/3");
  ASSERT_TRUE(server_->Reload().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  load.Stop();
  EXPECT_EQ(load.failures, 0);
  const v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.bundle_dir(), root_ + "/3");
  EXPECT_EQ(status.delta_videos(), 2u);
  EXPECT_EQ(status.tombstones(), 1u);
  EXPECT_EQ(Ids(Rank(User(40))).count(upload), 1u);
  EXPECT_EQ(Ids(Rank(User(41))).count(upload + 1), 1u);

  // A pipeline bundle whose data is newer than every update holds them:
  // none is replayed (the pipeline saw the delete and the uploads).
  auto manifest = ReadManifest(dir_->Sub("a"));
  ASSERT_TRUE(manifest.ok());
  testing::CopyDir(dir_->Sub("a"), root_ + "/4");
  manifest->set_data_time_ms(absl::ToUnixMillis(absl::Now()) + 3600 * 1000);
  ASSERT_TRUE(WriteManifest(root_ + "/4", *manifest).ok());
  ASSERT_TRUE(server_->Reload().ok());
  EXPECT_EQ(Status().bundle_dir(), root_ + "/4");
  EXPECT_EQ(Status().delta_videos(), 0u);
  EXPECT_EQ(Status().tombstones(), 0u);
}

TEST_F(LiveTest, CompactionNeedsABundleRoot) {
  Start();
  v1::CompactionInfo info;
  grpc::ClientContext context;
  const grpc::Status status = admin_->Compact(&context, v1::CompactRequest(), &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("--bundle-root"));
}

TEST_F(LiveTest, WithoutAWalDirUpdatesAreFailedPrecondition) {
  Start([](ServerOptions* o) { o->live.wal_dir.clear(); });
  const grpc::Status status = Upsert({AimedAt(1, 1)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("--wal-dir"));
  EXPECT_EQ(Status().wal_dir(), "");
}

}  // namespace
}  // namespace feedrank

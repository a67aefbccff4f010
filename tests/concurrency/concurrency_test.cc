// The project's own concurrent structures under real threads, with no gRPC
// call in them: the worker pool, snapshot swaps under readers, rankers
// shared across threads, catalogue views swapped while requests rank. The
// ThreadSanitizer build runs this binary (docs/TESTING.md); the release and
// AddressSanitizer builds run it too.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "base/mutex.h"
#include "ranking/experiments.h"
#include "replay/replay_log.h"
#include "replay/request_log.h"
#include "server/guardrails.h"
#include "server/metrics.h"
#include "server/snapshot_manager.h"
#include "server/worker_pool.h"
#include "tests/test_bundles.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

TEST(ConcurrencyTest, RequestLogCountsEverySubmittedEntryOnceUnderContention) {
  constexpr int kProducers = 4, kEntries = 2000;
  testing::TempDir dir;
  RequestLogOptions options;
  options.path = dir.Sub("requests.log");
  options.sample_rate = 1;
  options.max_queued = 64;  // small: some entries are dropped
  options.max_bytes = kMinRequestLogBytes;
  options.keep = 10000;
  auto log = RequestLog::Open(options, *FileSystem::Real());
  ASSERT_TRUE(log.ok()) << log.status();
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEntries; ++i) {
        if (!(*log)->Sample()) continue;
        v1::RankFeedRequest request;
        request.set_user_id(p * kEntries + i);
        RequestLogEntry entry;
        entry.request = request.SerializeAsString();
        entry.video_ids = {1, 2, 3};
        (*log)->Submit(std::move(entry));
      }
    });
  }
  for (std::thread& t : producers) t.join();
  (*log)->Close();
  const RequestLogCounts c = (*log)->counts();
  EXPECT_EQ(c.written + c.dropped, kProducers * kEntries);
  EXPECT_EQ(c.failed, 0);
  auto files = RequestLogFiles(options.path, *FileSystem::Real());
  ASSERT_TRUE(files.ok());
  std::set<uint64_t> users;
  for (const std::string& file : *files) {
    auto records = ReadReplayLog(file, BadRecordPolicy::kFail);
    ASSERT_TRUE(records.ok()) << records.status();
    for (const v1::ReplayRecord& r : *records) users.insert(r.request().user_id());
  }
  EXPECT_EQ(int64_t(users.size()), c.written);  // each once
}

TEST(ConcurrencyTest, WorkerPoolRunsEveryAcceptedTaskOnceUnderContention) {
  constexpr int kProducers = 4, kTasks = 2000;
  std::atomic<int64_t> accepted{0};
  Mutex mu;
  std::vector<int> runs(kProducers * kTasks, 0);  // guarded by mu
  {
    auto pool = WorkerPool::Create(3, 64);
    ASSERT_TRUE(pool.ok());
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0; i < kTasks; ++i) {
          const int id = p * kTasks + i;
          std::vector<int>* r = &runs;
          Mutex* m = &mu;
          if ((*pool)->TrySubmit([r, m, id] {
                MutexLock lock(m);
                ++(*r)[id];
              })) {
            accepted.fetch_add(1);
          } else {
            std::this_thread::yield();
          }
        }
      });
    }
    for (std::thread& t : producers) t.join();
  }  // the pool drains on destruction
  MutexLock lock(&mu);
  int64_t ran = 0;
  for (int r : runs) {
    ASSERT_LE(r, 1);
    ran += r;
  }
  EXPECT_EQ(ran, accepted.load());
  EXPECT_GT(accepted.load(), 0);
}

class SharedBundleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bundle_ = new std::shared_ptr<const Bundle>(
        testing::MakeSmallBundle(testing::SmallSynth(3000, 200)));
  }
  static void TearDownTestSuite() { delete bundle_; }
  static std::shared_ptr<const Bundle>* bundle_;
};
std::shared_ptr<const Bundle>* SharedBundleTest::bundle_ = nullptr;

TEST_F(SharedBundleTest, ConcurrentRankingEqualsSerialRanking) {
  const Bundle& bundle = **bundle_;
  auto options = ResolveOptions(RankingConfig(), bundle.model->objectives());
  ASSERT_TRUE(options.ok());
  auto ranker = Ranker::Create(*bundle_, RankerOptions{*options, RankerCosts{0, 0, 0}});
  ASSERT_TRUE(ranker.ok());
  constexpr int kUsers = 40;
  std::vector<std::vector<uint64_t>> serial(kUsers);
  for (int u = 0; u < kUsers; ++u) {
    RankRequest request;
    request.user_id = bundle.catalog->user_id(u);
    request.context.now_ms = 1793491200000;
    RankResult result;
    ASSERT_TRUE((*ranker)->Rank(request, &result).ok());
    for (const RankedVideo& v : result.items) serial[u].push_back(v.video_id);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      RankResult result;
      for (int round = 0; round < 5; ++round) {
        for (int u = t; u < kUsers; u += 2) {
          RankRequest request;
          request.user_id = bundle.catalog->user_id(u);
          request.context.now_ms = 1793491200000;
          if (!(*ranker)->Rank(request, &result).ok()) {
            mismatches.fetch_add(1);
            continue;
          }
          std::vector<uint64_t> ids;
          for (const RankedVideo& v : result.items) ids.push_back(v.video_id);
          if (ids != serial[u]) mismatches.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(SharedBundleTest, SnapshotSwapsNeverShowAMixedSnapshotAndFreeTheOld) {
  SnapshotManager manager;
  RankingConfig a, b;
  a.set_version("a");
  a.mutable_params()->set_default_count(7);
  b.set_version("b");
  b.mutable_params()->set_default_count(9);
  ASSERT_TRUE(manager.Install(*bundle_, a).ok());
  std::weak_ptr<const Snapshot> first = manager.Current();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, calls{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      RankResult result;
      while (!stop.load()) {
        std::shared_ptr<const Snapshot> s = manager.Current();
        RankRequest request;
        request.user_id = s->bundle->catalog->user_id(t);
        if (!s->RankerFor(0).Rank(*s->view, request, &result).ok()) {
          bad.fetch_add(1);
          continue;
        }
        // The page size says which config ranked it; it must be the one
        // the snapshot reports.
        const size_t want = s->config.version() == "a" ? 7 : 9;
        if (result.items.size() != want) bad.fetch_add(1);
        calls.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(manager.Install(*bundle_, i % 2 ? a : b).ok());
  while (calls.load() < 50) std::this_thread::yield();
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  // No request holds the first snapshot any more: it is gone.
  EXPECT_TRUE(first.expired());
}

TEST_F(SharedBundleTest, ViewsSwappedUnderReadersNeverServeTheirTombstones) {
  const Bundle& bundle = **bundle_;
  auto options = ResolveOptions(RankingConfig(), bundle.model->objectives());
  ASSERT_TRUE(options.ok());
  auto ranker = Ranker::Create(*bundle_, RankerOptions{*options, RankerCosts{0, 0, 0}});
  ASSERT_TRUE(ranker.ok());
  // Each new view deletes the best 30 videos of user 0 under the previous one.
  SharedPtrCell<const CatalogView> current(bundle.view);
  std::atomic<bool> stop{false};
  std::atomic<int> leaks{0}, calls{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      RankResult result;
      RankRequest request;
      request.user_id = bundle.catalog->user_id(0);
      while (!stop.load()) {
        std::shared_ptr<const CatalogView> view = current.Load();
        if (!(*ranker)->Rank(*view, request, &result).ok()) continue;
        for (const RankedVideo& v : result.items) {
          if (!view->VideoRow(v.video_id)) leaks.fetch_add(1);
        }
        calls.fetch_add(1);
      }
    });
  }
  auto tombstones = std::make_shared<RowBitmap>(bundle.catalog->num_videos());
  for (uint64_t version = 1; version <= 8; ++version) {
    RankRequest request;
    request.user_id = bundle.catalog->user_id(0);
    request.count = 30;
    RankResult result;
    ASSERT_TRUE((*ranker)->Rank(*current.Load(), request, &result).ok());
    auto next = std::make_shared<RowBitmap>(*tombstones);
    for (const RankedVideo& v : result.items)
      next->Insert(*bundle.catalog->VideoRow(v.video_id));
    tombstones = next;
    auto view = CatalogView::Create(bundle.catalog, nullptr, tombstones, version);
    ASSERT_TRUE(view.ok()) << view.status();
    current.Store(*view);
    const int before = calls.load();
    while (calls.load() < before + 20) std::this_thread::yield();
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(leaks.load(), 0);
}

TEST_F(SharedBundleTest, AGuardrailRevertsAnArmWhileReadersRankAndRecordIt) {
  // Readers rank with the arms of the snapshot they took and record each
  // call in the per-arm metrics (arm b's calls as slow); the monitor trips
  // b's guardrail and the manager swaps in a snapshot serving b as control.
  ServerMetrics metrics;
  SnapshotManager manager(Env::Default(), "", [&](Snapshot* snapshot) {
    const ExperimentConfig& e = *snapshot->experiments;
    for (int id = 0; id < e.arm_count(); ++id) {
      const ArmAssignment& a = e.arm(id);
      snapshot->arm_slots[id] = metrics.ArmSlot({a.layer, a.experiment, a.arm});
    }
  });
  auto config = ParseConfig(R"cfg(
    version: "guarded"
    layers { name: "rank" salt: "s"
      experiments { name: "e" ranges { begin: 0 end: 10000 }
        arms { name: "a" ranges { begin: 0 end: 5000 } overrides { default_count: 7 } }
        arms { name: "b" ranges { begin: 5000 end: 10000 } overrides { default_count: 9 }
               guardrail { max_p99_ms: 50 window_seconds: 60 min_calls: 20 } } } }
  )cfg");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(manager.Install(*bundle_, *config).ok());
  GuardrailMonitor monitor(&manager, &metrics);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, reverted_calls{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      RankResult result;
      Assignment assignment;
      for (int i = 0; !stop.load(); ++i) {
        std::shared_ptr<const Snapshot> s = manager.Current();
        RankRequest request;
        request.user_id = s->bundle->catalog->user_id((t * 13 + i) % 200);
        if (!s->experiments->Assign(request.user_id, &assignment).ok() ||
            !s->RankerFor(assignment.combination).Rank(*s->view, request, &result).ok()) {
          bad.fetch_add(1);
          continue;
        }
        const ArmAssignment& arm = *assignment.arms[0];
        // Served as a unless b and not reverted.
        const bool as_b = arm.arm == "b" && arm.reverted_to.empty();
        if (result.items.size() != (as_b ? 9u : 7u)) bad.fetch_add(1);
        if (!arm.reverted_to.empty()) reverted_calls.fetch_add(1);
        metrics.RecordArmCall(s->arm_slots[arm.id], 0, as_b ? 200'000 : 1'000, false,
                              nullptr, 0);
      }
    });
  }
  int64_t now_ms = 0;
  int tripped = 0;
  for (int tick = 0; tick < 2000 && tripped == 0; ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    now_ms += 100;
    tripped += monitor.Tick(now_ms);
  }
  while (tripped > 0 && reverted_calls.load() < 20) std::this_thread::yield();
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(tripped, 1);
  EXPECT_EQ(bad.load(), 0);
  ASSERT_EQ(manager.reverted().size(), 1u);
  EXPECT_EQ(manager.reverted()[0].arm, "b");
  EXPECT_EQ(manager.reverted()[0].reverted_to, "a");
}

}  // namespace
}  // namespace feedrank

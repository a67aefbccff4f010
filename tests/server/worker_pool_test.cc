#include "server/worker_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

namespace feedrank {
namespace {

// Holds the pool's workers until released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> waiting{0};
  void Wait() {
    waiting.fetch_add(1);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return open; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

TEST(WorkerPoolTest, AFullQueueRefusesAtOnce) {
  auto pool = WorkerPool::Create(1, 3);
  ASSERT_TRUE(pool.ok());
  Gate gate;
  Gate* g = &gate;
  ASSERT_TRUE((*pool)->TrySubmit([g] { g->Wait(); }));
  while (gate.waiting.load() == 0) std::this_thread::yield();
  std::atomic<int> ran{0};
  std::atomic<int>* r = &ran;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE((*pool)->TrySubmit([r] { r->fetch_add(1); }));
  EXPECT_EQ((*pool)->queued(), 3);
  EXPECT_FALSE((*pool)->TrySubmit([r] { r->fetch_add(100); }));
  gate.Open();
  pool->reset();  // drains
  EXPECT_EQ(ran.load(), 3);
}

TEST(WorkerPoolTest, TasksRunInSubmissionOrder) {
  auto pool = WorkerPool::Create(1, 100);
  ASSERT_TRUE(pool.ok());
  Gate gate;
  Gate* g = &gate;
  ASSERT_TRUE((*pool)->TrySubmit([g] { g->Wait(); }));
  std::vector<int> order;  // only the single worker writes it
  std::vector<int>* o = &order;
  for (int i = 0; i < 100 - 1; ++i) {
    ASSERT_TRUE((*pool)->TrySubmit([o, i] { o->push_back(i); }));
  }
  gate.Open();
  pool->reset();
  ASSERT_EQ(order.size(), 99u);
  for (int i = 0; i < 99; ++i) EXPECT_EQ(order[i], i);
}

TEST(WorkerPoolTest, DestructionRunsEverythingQueuedThenRefuses) {
  std::atomic<int> ran{0};
  std::atomic<int>* r = &ran;
  {
    auto pool = WorkerPool::Create(2, 1000);
    ASSERT_TRUE(pool.ok());
    EXPECT_EQ((*pool)->threads(), 2);
    EXPECT_EQ((*pool)->max_queue(), 1000);
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE((*pool)->TrySubmit([r] {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
        r->fetch_add(1);
      }));
    }
  }
  EXPECT_EQ(ran.load(), 500);
}

TEST(WorkerPoolTest, DefaultsAndBadSizes) {
  auto pool = WorkerPool::Create(0, 0);
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->threads(), WorkerPool::DefaultThreads());
  EXPECT_EQ((*pool)->max_queue(), 64 * WorkerPool::DefaultThreads());
  for (auto [threads, queue] : std::vector<std::pair<int, int>>{
           {-3, 0}, {100000, 0}, {0, -1}, {0, WorkerPool::kMaxQueue + 1}}) {
    auto bad = WorkerPool::Create(threads, queue);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument)
        << threads << " " << queue;
  }
}

}  // namespace
}  // namespace feedrank

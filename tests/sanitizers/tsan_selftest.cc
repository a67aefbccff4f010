// A check of the ThreadSanitizer toolchain itself, not of feedrank:
// scripts/test.sh runs it in the TSan build before the project's TSan
// targets, so that a clean TSan run means something. Each mode is one
// process (docs/TESTING.md):
//
//   race               a plain data race: TSan must report it and fail
//   std_mutex          std::mutex + std::condition_variable: must be clean
//   atomic_shared_ptr  std::atomic<std::shared_ptr<T>> snapshot swap: clean
//   absl_mutex         absl::Mutex + absl::CondVar: with Debian's Abseil
//                      (not built with TSan) TSan cannot see the lock and
//                      reports races that are not there; informational
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace {

constexpr int kThreads = 4;
constexpr int kIterations = 2000;

template <typename Body>
void RunThreads(Body body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(body, t);
  for (std::thread& t : threads) t.join();
}

// Two threads write one plain int: the race TSan exists to find.
int Race() {
  // Heap, so the compiler cannot keep it in a register across the loop.
  auto counter = std::make_unique<long>(0);
  RunThreads([&](int) {
    for (int i = 0; i < kIterations; ++i) {
      *counter = *counter + 1;
      std::this_thread::yield();
    }
  });
  std::printf("race: counter %ld (of %d)\n", *counter, kThreads * kIterations);
  return 0;
}

// The shape of the worker pool: a queue under a mutex, workers waiting on a
// condition variable, results written by one thread and read by another.
template <typename Mutex, typename Lock, typename CondVar, typename Wait, typename Notify>
int Queue(const char* name, Wait wait, Notify notify_all) {
  Mutex mu;
  CondVar cv;
  std::deque<std::unique_ptr<std::vector<int>>> queue;
  bool done = false;
  long sum = 0;
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      for (;;) {
        std::unique_ptr<std::vector<int>> job;
        {
          Lock lock(mu);
          wait(cv, lock, mu, [&] { return done || !queue.empty(); });
          if (queue.empty()) return;
          job = std::move(queue.front());
          queue.pop_front();
        }
        long s = 0;
        for (int v : *job) s += v;  // written by the producer, read here
        Lock lock(mu);
        sum += s;
      }
    });
  }
  for (int i = 0; i < kIterations; ++i) {
    auto job = std::make_unique<std::vector<int>>(8, i);
    Lock lock(mu);
    queue.push_back(std::move(job));
    notify_all(cv);
  }
  {
    Lock lock(mu);
    done = true;
    notify_all(cv);
  }
  for (std::thread& t : workers) t.join();
  const long expected = 8L * kIterations * (kIterations - 1) / 2;
  std::printf("%s: sum %ld (expected %ld)\n", name, sum, expected);
  return sum == expected ? 0 : 1;
}

int StdMutex() {
  using Lock = std::unique_lock<std::mutex>;
  return Queue<std::mutex, Lock, std::condition_variable>(
      "std_mutex",
      [](std::condition_variable& cv, Lock& lock, std::mutex&, auto ready) {
        cv.wait(lock, ready);
      },
      [](std::condition_variable& cv) { cv.notify_all(); });
}

int AbslMutex() {
  struct Lock {
    explicit Lock(absl::Mutex& mu) : lock(&mu) {}
    absl::MutexLock lock;
  };
  return Queue<absl::Mutex, Lock, absl::CondVar>(
      "absl_mutex",
      [](absl::CondVar& cv, Lock&, absl::Mutex& mu, auto ready) {
        while (!ready()) cv.Wait(&mu);
      },
      [](absl::CondVar& cv) { cv.SignalAll(); });
}

// The shape of the snapshot swap: a writer publishes fresh snapshots, readers
// load the current one and read it; the last reader of an old snapshot frees
// it on its own thread.
struct Snapshot {
  explicit Snapshot(int version) : version(version), rows(256, version) {}
  int version;
  std::vector<int> rows;
};

int AtomicSharedPtr() {
  std::atomic<std::shared_ptr<const Snapshot>> current{
      std::make_shared<const Snapshot>(0)};
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < kThreads - 1; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        std::shared_ptr<const Snapshot> s = current.load();
        for (int v : s->rows) {
          if (v != s->version) bad.fetch_add(1);
        }
      }
    });
  }
  for (int i = 1; i <= kIterations; ++i) {
    current.store(std::make_shared<const Snapshot>(i));
    if (i % 64 == 0) std::this_thread::yield();
  }
  stop.store(true);
  for (std::thread& t : readers) t.join();
  std::printf("atomic_shared_ptr: final version %d, lock-free %d, torn reads %ld\n",
              current.load()->version, static_cast<int>(current.is_lock_free()),
              bad.load());
  return bad.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (std::strcmp(mode, "race") == 0) return Race();
  if (std::strcmp(mode, "std_mutex") == 0) return StdMutex();
  if (std::strcmp(mode, "absl_mutex") == 0) return AbslMutex();
  if (std::strcmp(mode, "atomic_shared_ptr") == 0) return AtomicSharedPtr();
  std::fprintf(stderr, "usage: %s race|std_mutex|absl_mutex|atomic_shared_ptr\n",
               argv[0]);
  return 2;
}

#include "server/worker_pool.h"

#include <omp.h>

#include <system_error>

#include "absl/strings/str_cat.h"

namespace feedrank {

int WorkerPool::DefaultThreads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(int threads,
                                                               int max_queue) {
  if (threads < 0 || threads > kMaxThreads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "workers: ", threads, " is outside [0, ", kMaxThreads, "] (0 = one per core)"));
  }
  if (max_queue < 0 || max_queue > kMaxQueue) {
    return absl::InvalidArgumentError(absl::StrCat("max_queue: ", max_queue,
                                                   " is outside [0, ", kMaxQueue,
                                                   "] (0 = 64 per worker)"));
  }
  const int n = threads > 0 ? threads : DefaultThreads();
  std::unique_ptr<WorkerPool> pool(new WorkerPool(max_queue > 0 ? max_queue : 64 * n));
  try {
    for (int i = 0; i < n; ++i)
      pool->workers_.emplace_back([p = pool.get()] { p->Run(); });
  } catch (const std::system_error& e) {
    const size_t started = pool->workers_.size();
    pool.reset();  // joins the threads that started
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot start ", n, " worker threads (", started, " started): ", e.what()));
  }
  return pool;
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  work_.SignalAll();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
}

bool WorkerPool::TrySubmit(InlineTask task) {
  {
    MutexLock lock(&mu_);
    if (stopping_ || size_ == capacity_) return false;
    ring_[(head_ + size_) % capacity_] = task;
    ++size_;
  }
  work_.Signal();
  return true;
}

int WorkerPool::queued() const {
  MutexLock lock(&mu_);
  return static_cast<int>(size_);
}

void WorkerPool::Run() {
  // A request never opens an OpenMP team (see docs/ARCHITECTURE.md).
  omp_set_num_threads(1);
  while (true) {
    InlineTask task;
    {
      MutexLock lock(&mu_);
      work_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || size_ > 0;
      });
      if (size_ == 0) return;  // stopping, and everything ran
      task = ring_[head_];
      head_ = (head_ + 1) % capacity_;
      --size_;
    }
    task();
  }
}

}  // namespace feedrank

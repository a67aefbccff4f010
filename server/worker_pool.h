// WorkerPool: a fixed set of threads that run ranking work, with a bounded
// queue. RankFeed handlers hand their work here instead of running it on
// gRPC's callback threads: parallelism stays at the number of cores however
// many calls are in flight (no oversubscription, each worker keeps its warm
// scratch memory), and a full queue refuses work at once instead of letting
// latency grow without bound.
//
// Thread-safety: all methods are thread-safe.
#ifndef FEEDRANK_SERVER_WORKER_POOL_H_
#define FEEDRANK_SERVER_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace feedrank {

class WorkerPool {
 public:
  // `threads` workers (0 = one per hardware thread); at most `max_queue`
  // tasks waiting (0 = 64 per worker).
  WorkerPool(int threads, int max_queue);
  // Runs every task already queued, then joins the workers.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; false (and `task` dropped) when the queue is full.
  [[nodiscard]] bool TrySubmit(std::function<void()> task);

  int threads() const { return static_cast<int>(workers_.size()); }
  // Tasks waiting (not running), for reports.
  int queued() const;

 private:
  void Run();

  const int max_queue_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_WORKER_POOL_H_

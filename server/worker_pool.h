// WorkerPool: a fixed set of threads that run ranking work, with a bounded
// queue. RankFeed handlers hand their work here instead of running it on
// gRPC's callback threads: parallelism stays at the number of cores however
// many calls are in flight (no oversubscription, each worker keeps its warm
// scratch memory), and a full queue refuses work at once instead of letting
// latency grow without bound.
//
// Tasks run in submission order (FIFO). Submitting allocates nothing: a task
// is a small trivially copyable callable stored inline in a ring buffer
// allocated once.
//
// Thread-safety: all methods are thread-safe. Built on base/mutex.h, so the
// ThreadSanitizer build checks it.
#ifndef FEEDRANK_SERVER_WORKER_POOL_H_
#define FEEDRANK_SERVER_WORKER_POOL_H_

#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"

namespace feedrank {

// A callable of at most kBytes of trivially copyable state (a lambda that
// captures a few pointers), stored inline.
class InlineTask {
 public:
  static constexpr size_t kBytes = 56;

  InlineTask() = default;
  template <typename F,
            typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, InlineTask>>>
  InlineTask(F f) {  // NOLINT: implicit, like std::function
    static_assert(sizeof(F) <= kBytes, "task captures too much");
    static_assert(std::is_trivially_copyable_v<F> && std::is_trivially_destructible_v<F>,
                  "task must capture trivially copyable values (pointers, numbers)");
    static_assert(alignof(F) <= alignof(std::max_align_t));
    std::memcpy(storage_, &f, sizeof(F));
    run_ = [](void* storage) { (*static_cast<F*>(storage))(); };
  }
  void operator()() { run_(storage_); }
  explicit operator bool() const { return run_ != nullptr; }

 private:
  alignas(std::max_align_t) unsigned char storage_[kBytes] = {};
  void (*run_)(void*) = nullptr;
};

class WorkerPool {
 public:
  // Limits of Create's arguments.
  static constexpr int kMaxThreads = 1024;
  static constexpr int kMaxQueue = 1 << 20;

  // `threads` workers (0 = one per hardware thread); at most `max_queue`
  // tasks waiting (0 = 64 per worker). Errors: InvalidArgument for values
  // outside [0, kMaxThreads] / [0, kMaxQueue]; ResourceExhausted when the
  // system cannot start the threads.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(int threads, int max_queue);

  // Runs every task already queued, then joins the workers.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; false (and `task` dropped) when the queue is full or the
  // pool is stopping.
  [[nodiscard]] bool TrySubmit(InlineTask task);

  int threads() const { return static_cast<int>(workers_.size()); }
  int max_queue() const { return static_cast<int>(capacity_); }
  // Tasks waiting (not running), for reports.
  int queued() const;

  // Threads that `threads` = 0 means.
  static int DefaultThreads();

 private:
  explicit WorkerPool(int max_queue) : capacity_(max_queue), ring_(max_queue) {}
  void Run();
  void Stop();

  const size_t capacity_;
  mutable Mutex mu_;
  CondVar work_;
  // Ring buffer: `size_` tasks from `head_`.
  std::vector<InlineTask> ring_ ABSL_GUARDED_BY(mu_);
  size_t head_ ABSL_GUARDED_BY(mu_) = 0;
  size_t size_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_WORKER_POOL_H_

// Mutex, MutexLock and CondVar: the locks of feedrank's own concurrent
// structures (worker pool, snapshot loads, live catalogue updates).
//
// Why not absl::Mutex: Debian's Abseil is not built with ThreadSanitizer, so
// TSan cannot see locks taken through it and reports every access they
// guard as a race. std::mutex and std::condition_variable go through
// pthreads, which TSan intercepts, so the structures built on these are
// checked by the TSan build (docs/TESTING.md). The capability annotations
// keep clang's -Wthread-safety analysis working on them.
//
// Thread-safety: a Mutex is thread-safe; it must not be destroyed while held
// or while a thread waits on a CondVar with it.
#ifndef FEEDRANK_BASE_MUTEX_H_
#define FEEDRANK_BASE_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace feedrank {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Declares to the analysis that the calling thread holds the lock.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable used with a Mutex. Waits are written as "wait until a
// predicate holds", so spurious wake-ups cannot leak into callers.
class CondVar {
 public:
  // Waits until `done()` is true. REQUIRES: `mu` held; it is held again on
  // return.
  template <typename Predicate>
  void Wait(Mutex* mu, Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock, done);
    lock.release();
  }
  // As Wait, giving up after `timeout`; returns done().
  template <typename Predicate>
  bool WaitFor(Mutex* mu, std::chrono::nanoseconds timeout, Predicate done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool result = cv_.wait_for(lock, timeout, done);
    lock.release();
    return result;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace feedrank

#endif  // FEEDRANK_BASE_MUTEX_H_

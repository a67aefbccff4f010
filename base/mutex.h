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
#include <memory>
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
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
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

// A shared_ptr that threads load and replace concurrently: the current
// snapshot, the current catalogue view. Load() is a copy under a mutex held
// for the few nanoseconds of a reference-count increment; Store() swaps
// under it and drops the old value after releasing it, so the last reader of
// an old value frees it without holding anything.
//
// Why not std::atomic<std::shared_ptr<T>>: libstdc++ 12's load() releases
// its internal lock bit with memory_order_relaxed, so a load followed by a
// store is formally a data race on the stored pointer, and ThreadSanitizer
// reports it (harmless on x86, but a report fails the TSan build).
template <typename T>
class SharedPtrCell {
 public:
  SharedPtrCell() = default;
  explicit SharedPtrCell(std::shared_ptr<T> value) : value_(std::move(value)) {}
  SharedPtrCell(const SharedPtrCell&) = delete;
  SharedPtrCell& operator=(const SharedPtrCell&) = delete;

  std::shared_ptr<T> Load() const {
    MutexLock lock(&mu_);
    return value_;
  }
  void Store(std::shared_ptr<T> value) {
    {
      MutexLock lock(&mu_);
      value_.swap(value);
    }
    // `value` (the old one) is released here, outside the lock.
  }

 private:
  mutable Mutex mu_;
  std::shared_ptr<T> value_ ABSL_GUARDED_BY(mu_);
};

}  // namespace feedrank

#endif  // FEEDRANK_BASE_MUTEX_H_

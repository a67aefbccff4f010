// Fakes of the injected environment (base/env.h): a clock the test moves,
// and a file system wrapper that injects faults.
#ifndef FEEDRANK_TESTS_TEST_ENV_H_
#define FEEDRANK_TESTS_TEST_ENV_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "base/env.h"
#include "base/mutex.h"

namespace feedrank::testing {

// A clock that moves only when told to, or by a fixed step on every read
// (so code that reads it twice sees time pass). Thread-safe.
class FakeClock : public Clock {
 public:
  // Starts at an arbitrary steady time and at 2026-11-01 Unix time.
  FakeClock() = default;

  SteadyTime Now() const override {
    const int64_t step = auto_advance_ns_.load();
    const int64_t t = step > 0 ? now_ns_.fetch_add(step) : now_ns_.load();
    return SteadyTime(std::chrono::nanoseconds(t));
  }
  int64_t UnixMillis() const override { return unix_ms_.load(); }

  void Advance(std::chrono::nanoseconds by) {
    now_ns_.fetch_add(by.count());
    unix_ms_.fetch_add(std::chrono::duration_cast<std::chrono::milliseconds>(by).count());
  }
  // Every Now() returns the current time, then moves it by `step` (0 = off).
  void SetAutoAdvance(std::chrono::nanoseconds step) {
    auto_advance_ns_.store(step.count());
  }
  void SetUnixMillis(int64_t ms) { unix_ms_.store(ms); }

 private:
  mutable std::atomic<int64_t> now_ns_{int64_t{1000} * 1000 * 1000 * 1000};
  std::atomic<int64_t> unix_ms_{1793491200000};
  std::atomic<int64_t> auto_advance_ns_{0};
};

// Forwards to a real file system, with faults injected by path:
//   - opens (read or write) of a path containing `fail_substring` fail
//     with `fail_status`;
//   - writes stop with ResourceExhausted (disk full) after
//     `write_budget_bytes` bytes in all (negative = unlimited);
//   - Sync fails with DataLoss-free Unavailable when `fail_sync`;
//   - `on_open_for_read(path)` runs before each open (to block or count).
class FaultFileSystem : public FileSystemWrapper {
 public:
  explicit FaultFileSystem(FileSystem* target = FileSystem::Real())
      : FileSystemWrapper(target) {}

  std::string fail_substring;
  // Turns the `fail_substring` fault off (safe while other threads open
  // files, unlike changing the string).
  std::atomic<bool> opens_heal{false};
  absl::Status fail_status = absl::PermissionDeniedError("injected fault");
  std::atomic<int64_t> write_budget_bytes{-1};
  std::atomic<bool> fail_sync{false};
  // A file system remounted read-only: every Append, open for write,
  // rename and directory creation fails as EROFS would.
  std::atomic<bool> read_only{false};
  // With a write budget: the write that exceeds it writes the bytes that
  // fit before failing (a short write), rather than none.
  std::atomic<bool> short_writes{false};
  std::function<void(const std::string&)> on_open_for_read;
  // Each Read of an opened file sleeps this long first (a slow disk).
  std::chrono::milliseconds read_delay{0};
  // Runs after each Read, with the bytes already read (to hold a reader
  // between reading a file and acting on it).
  std::function<void(const std::string&)> after_read;
  std::atomic<int> opens_for_read{0};

  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForWrite(
      const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status CreateDir(const std::string& path) override;

  // The error of a write on a read-only file system.
  static absl::Status ReadOnlyError(const std::string& path);
};

}  // namespace feedrank::testing

#endif  // FEEDRANK_TESTS_TEST_ENV_H_

// The environment feedrank runs in: a clock and a file system, passed
// through options (leveldb's Env, Envoy's TimeSource) so tests can replace
// them: a fake clock makes deadline tests independent of machine load, a
// fault-injecting file system makes I/O failures testable. Production code
// uses Env::Default() (the real clock and the real file system).
//
// Thread-safety: the real implementations are thread-safe; so must be any
// implementation used by a server (requests read the clock concurrently).
#ifndef FEEDRANK_BASE_ENV_H_
#define FEEDRANK_BASE_ENV_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace feedrank {

using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for deadlines and durations.
  virtual SteadyTime Now() const = 0;
  // Wall-clock time, Unix milliseconds (the default "now" of a request).
  virtual int64_t UnixMillis() const = 0;

  // The process's real clock (steady_clock and system_clock). Never null.
  static Clock* Real();
};

// Microseconds from `from` to `to` (negative when `to` is earlier).
inline int64_t MicrosBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

// A file open for sequential reading. Not thread-safe.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads up to `n` bytes into `buf`; fewer only at the end of the file.
  // Returns the number of bytes read. Errors (errno-based codes) name the
  // file.
  virtual absl::StatusOr<size_t> Read(void* buf, size_t n) = 0;
  // Size in bytes when opened.
  virtual uint64_t size() const = 0;
  virtual const std::string& path() const = 0;
};

// A file open for writing from its start. Not thread-safe. Close() must be
// called (and checked) for the data to count as written.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  // Flushes to stable storage (fsync).
  virtual absl::Status Sync() = 0;
  virtual absl::Status Close() = 0;
  virtual const std::string& path() const = 0;
};

// What stat(2) says of a path (symbolic links followed).
struct FileInfo {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
  bool is_directory = false;
  bool is_regular = false;

  // Same file, same content as far as the file system tells: a rename over
  // it (new inode), an edit (new mtime or size), a symlink pointed elsewhere
  // (another file) all differ.
  bool SameAs(const FileInfo& o) const {
    return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode &&
           device == o.device;
  }
};

// Errors carry absl::ErrnoToStatus codes (ENOENT -> NotFound, EACCES ->
// PermissionDenied, ENOSPC -> ResourceExhausted, ...) and name the path.
class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Opens a REGULAR file for reading. A FIFO, device or directory is refused
  // with FailedPrecondition without blocking (a FIFO with no writer would
  // otherwise block the opener forever).
  virtual absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) = 0;
  // Creates or truncates `path` for writing.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenForWrite(
      const std::string& path) = 0;
  // Atomically replaces `to` with `from` (rename(2)).
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // Creates one directory. AlreadyExists when it exists.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // Removes a file or a directory tree; OK when absent.
  virtual absl::Status RemoveAll(const std::string& path) = 0;
  // True when something exists at `path`.
  virtual absl::StatusOr<bool> Exists(const std::string& path) = 0;
  // Names of the entries of a directory (no "." or ".."), sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // Makes the directory's entries (renames, new files) durable.
  virtual absl::Status SyncDir(const std::string& path) = 0;
  // stat(2) of `path`, following symbolic links.
  virtual absl::StatusOr<FileInfo> Stat(const std::string& path) = 0;
  // realpath(3): the absolute path of an existing `path` with every
  // symbolic link, "." and ".." resolved.
  virtual absl::StatusOr<std::string> RealPath(const std::string& path) = 0;

  // The real file system (POSIX). Never null.
  static FileSystem* Real();
};

// Forwards every call to another FileSystem; subclass it to change a few
// (fault injection, cancellation).
class FileSystemWrapper : public FileSystem {
 public:
  explicit FileSystemWrapper(FileSystem* target) : target_(target) {}
  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) override {
    return target_->OpenForRead(path);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForWrite(
      const std::string& path) override {
    return target_->OpenForWrite(path);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return target_->Rename(from, to);
  }
  absl::Status CreateDir(const std::string& path) override {
    return target_->CreateDir(path);
  }
  absl::Status RemoveAll(const std::string& path) override {
    return target_->RemoveAll(path);
  }
  absl::StatusOr<bool> Exists(const std::string& path) override {
    return target_->Exists(path);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    return target_->ListDir(path);
  }
  absl::Status SyncDir(const std::string& path) override {
    return target_->SyncDir(path);
  }
  absl::StatusOr<FileInfo> Stat(const std::string& path) override {
    return target_->Stat(path);
  }
  absl::StatusOr<std::string> RealPath(const std::string& path) override {
    return target_->RealPath(path);
  }

 protected:
  FileSystem* target() const { return target_; }

 private:
  FileSystem* target_;
};

// A file system whose reads fail with Cancelled once `*stop` is true, so a
// long bundle load can be interrupted (a SIGTERM during a load). Reads are
// served in chunks of at most 4 MiB, so a stop takes effect within one chunk.
class InterruptibleFileSystem : public FileSystemWrapper {
 public:
  InterruptibleFileSystem(FileSystem* target, const std::atomic<bool>* stop)
      : FileSystemWrapper(target), stop_(stop) {}
  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) override;

 private:
  const std::atomic<bool>* stop_;
};

// What a component needs from its environment. Both pointers are borrowed
// and must outlive the component.
struct Env {
  Clock* clock = Clock::Real();
  FileSystem* fs = FileSystem::Real();

  // The real clock and file system.
  static const Env& Default();
};

// `path`'s contents, refusing files larger than `max_bytes` (ResourceExhausted)
// before reading them. Errors of OpenForRead and Read otherwise.
absl::StatusOr<std::string> ReadFileToString(FileSystem& fs, const std::string& path,
                                             uint64_t max_bytes = uint64_t{1} << 30);

// A PEM file (at most 1 MiB) that must hold a block of `kind`
// ("CERTIFICATE"; "PRIVATE KEY" also matches "RSA PRIVATE KEY" ...). Errors
// start with `flag`: those of reading, InvalidArgument when no such block.
absl::StatusOr<std::string> ReadPemFile(FileSystem& fs, const std::string& path,
                                        const char* kind, const char* flag);

// Writes `data` to `path` through a temporary sibling that is synced and
// renamed over `path`, so a reader sees the old file or the new one, never a
// part.
// `pieces` are written one after the other.
absl::Status WriteFileAtomically(FileSystem& fs, const std::string& path,
                                 std::initializer_list<absl::string_view> pieces);

// The general form: `write` fills the temporary file (and returns its
// status); the file is then synced, closed and renamed over `path`, or
// removed when any step failed.
absl::Status WriteFileAtomically(FileSystem& fs, const std::string& path,
                                 const std::function<absl::Status(WritableFile&)>& write);

}  // namespace feedrank

#endif  // FEEDRANK_BASE_ENV_H_

#include "base/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank {
namespace {

absl::Status Errno(int error, const std::string& path, absl::string_view what) {
  return absl::ErrnoToStatus(error, absl::StrCat(path, ": ", what));
}

class RealClock : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  int64_t UnixMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class PosixReadableFile : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::string path, uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixReadableFile() override { ::close(fd_); }

  absl::StatusOr<size_t> Read(void* buf, size_t n) override {
    char* out = static_cast<char*>(buf);
    size_t done = 0;
    while (done < n) {
      const ssize_t got = ::read(fd_, out + done, std::min<size_t>(n - done, 1 << 30));
      if (got < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, path_, "read failed");
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    return done;
  }
  uint64_t size() const override { return size_; }
  const std::string& path() const override { return path_; }

 private:
  int fd_;
  std::string path_;
  uint64_t size_;
};

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(absl::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(path_ + ": already closed");
    while (!data.empty()) {
      const ssize_t wrote = ::write(fd_, data.data(), data.size());
      if (wrote < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, path_, "write failed");
      }
      data.remove_prefix(static_cast<size_t>(wrote));
    }
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    if (fd_ < 0) return absl::FailedPreconditionError(path_ + ": already closed");
    if (::fdatasync(fd_) != 0) return Errno(errno, path_, "fsync failed");
    return absl::OkStatus();
  }
  absl::Status Close() override {
    if (fd_ < 0) return absl::OkStatus();
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Errno(errno, path_, "close failed");
    return absl::OkStatus();
  }
  const std::string& path() const override { return path_; }

 private:
  int fd_;
  std::string path_;
};

class PosixFileSystem : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<ReadableFile>> OpenForRead(
      const std::string& path) override {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer. It has no effect on reads of a regular file.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return Errno(errno, path, "cannot open");
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int error = errno;
      ::close(fd);
      return Errno(error, path, "cannot stat");
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": not a regular file (",
                       S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "a device",
                       ")"));
    }
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return std::unique_ptr<ReadableFile>(
        new PosixReadableFile(fd, path, static_cast<uint64_t>(st.st_size)));
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForWrite(
      const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(errno, path, "cannot open for writing");
    return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path));
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Errno(errno, to, absl::StrCat("cannot rename ", from, " to it"));
    }
    return absl::OkStatus();
  }

  absl::Status CreateDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) != 0) {
      return Errno(errno, path, "cannot create directory");
    }
    return absl::OkStatus();
  }

  absl::Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return Errno(ec.value(), path, "cannot remove");
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Exists(const std::string& path) override {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return Errno(errno, path, "cannot stat");
  }

  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return Errno(errno, path, "cannot list directory");
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  absl::StatusOr<FileInfo> Stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return Errno(errno, path, "cannot stat");
    FileInfo info;
    info.size = static_cast<uint64_t>(st.st_size);
    info.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    info.inode = st.st_ino;
    info.device = st.st_dev;
    info.is_directory = S_ISDIR(st.st_mode);
    info.is_regular = S_ISREG(st.st_mode);
    return info;
  }

  absl::StatusOr<std::string> RealPath(const std::string& path) override {
    char* resolved = ::realpath(path.c_str(), nullptr);
    if (resolved == nullptr) return Errno(errno, path, "cannot resolve");
    std::string out(resolved);
    ::free(resolved);
    return out;
  }

  absl::Status SyncDir(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno(errno, path, "cannot open directory");
    const int rc = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    if (rc != 0) return Errno(error, path, "fsync of directory failed");
    return absl::OkStatus();
  }
};

class InterruptibleFile : public ReadableFile {
 public:
  InterruptibleFile(std::unique_ptr<ReadableFile> file, const std::atomic<bool>* stop)
      : file_(std::move(file)), stop_(stop) {}
  absl::StatusOr<size_t> Read(void* buf, size_t n) override {
    constexpr size_t kChunk = size_t{4} << 20;
    char* out = static_cast<char*>(buf);
    size_t done = 0;
    while (done < n) {
      if (stop_->load(std::memory_order_relaxed)) {
        return absl::CancelledError(absl::StrCat(path(), ": read interrupted by a stop"));
      }
      ASSIGN_OR_RETURN(const size_t got,
                       file_->Read(out + done, std::min(kChunk, n - done)));
      done += got;
      if (got == 0) break;
    }
    return done;
  }
  uint64_t size() const override { return file_->size(); }
  const std::string& path() const override { return file_->path(); }

 private:
  std::unique_ptr<ReadableFile> file_;
  const std::atomic<bool>* stop_;
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

FileSystem* FileSystem::Real() {
  static PosixFileSystem* fs = new PosixFileSystem();
  return fs;
}

const Env& Env::Default() {
  static const Env* env = new Env();
  return *env;
}

absl::StatusOr<std::unique_ptr<ReadableFile>> InterruptibleFileSystem::OpenForRead(
    const std::string& path) {
  if (stop_->load(std::memory_order_relaxed)) {
    return absl::CancelledError(absl::StrCat(path, ": not opened, a stop was requested"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, target()->OpenForRead(path));
  return std::unique_ptr<ReadableFile>(new InterruptibleFile(std::move(file), stop_));
}

absl::StatusOr<std::string> ReadFileToString(FileSystem& fs, const std::string& path,
                                             uint64_t max_bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, fs.OpenForRead(path));
  if (file->size() > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        path, ": ", file->size(), " bytes, more than the ", max_bytes, " allowed"));
  }
  std::string text(file->size(), '\0');
  ASSIGN_OR_RETURN(const size_t got, file->Read(text.data(), text.size()));
  text.resize(got);
  return text;
}

absl::Status WriteFileAtomically(FileSystem& fs, const std::string& path,
                                 std::initializer_list<absl::string_view> pieces) {
  return WriteFileAtomically(fs, path, [&](WritableFile& file) {
    for (absl::string_view piece : pieces) RETURN_IF_ERROR(file.Append(piece));
    return absl::OkStatus();
  });
}

absl::Status WriteFileAtomically(
    FileSystem& fs, const std::string& path,
    const std::function<absl::Status(WritableFile&)>& write) {
  const std::string tmp = path + ".tmp";
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, fs.OpenForWrite(tmp));
  absl::Status status = write(*file);
  if (status.ok()) status = file->Sync();
  absl::Status closed = file->Close();
  if (status.ok()) status = closed;
  if (status.ok()) status = fs.Rename(tmp, path);
  if (!status.ok()) fs.RemoveAll(tmp).IgnoreError();
  return status;
}

absl::StatusOr<std::string> ReadPemFile(FileSystem& fs, const std::string& path,
                                        const char* kind, const char* flag) {
  auto text = ReadFileToString(fs, path, 1 << 20);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(flag, ": ", text.status().message()));
  }
  if (!absl::StrContains(*text, "-----BEGIN ") ||
      !absl::StrContains(*text, absl::StrCat(kind, "-----"))) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM ", kind));
  }
  return text;
}

}  // namespace feedrank

#include "tests/test_env.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace feedrank::testing {
namespace {

class HookedFile : public ReadableFile {
 public:
  HookedFile(std::unique_ptr<ReadableFile> file, FaultFileSystem* fs)
      : file_(std::move(file)), fs_(fs) {}
  absl::StatusOr<size_t> Read(void* buf, size_t n) override {
    if (fs_->read_delay.count() > 0) std::this_thread::sleep_for(fs_->read_delay);
    auto got = file_->Read(buf, n);
    if (fs_->after_read) fs_->after_read(path());
    return got;
  }
  uint64_t size() const override { return file_->size(); }
  const std::string& path() const override { return file_->path(); }

 private:
  std::unique_ptr<ReadableFile> file_;
  FaultFileSystem* fs_;
};

class FaultyWritableFile : public WritableFile {
 public:
  FaultyWritableFile(std::unique_ptr<WritableFile> file, FaultFileSystem* fs)
      : file_(std::move(file)), fs_(fs) {}
  absl::Status Append(absl::string_view data) override {
    if (fs_->read_only.load()) return FaultFileSystem::ReadOnlyError(path());
    const int64_t budget = fs_->write_budget_bytes.load();
    if (budget >= 0) {
      if (int64_t(data.size()) > budget) {
        fs_->write_budget_bytes.store(0);
        // A short write: what fits reaches the file first.
        if (fs_->short_writes.load() && budget > 0)
          file_->Append(data.substr(0, budget)).IgnoreError();
        return absl::ResourceExhaustedError(
            absl::StrCat(path(), ": no space left on device"));
      }
      fs_->write_budget_bytes.fetch_sub(data.size());
    }
    return file_->Append(data);
  }
  absl::Status Sync() override {
    if (fs_->fail_sync.load()) return absl::UnavailableError(path() + ": fsync failed");
    return file_->Sync();
  }
  absl::Status Close() override { return file_->Close(); }
  const std::string& path() const override { return file_->path(); }

 private:
  std::unique_ptr<WritableFile> file_;
  FaultFileSystem* fs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ReadableFile>> FaultFileSystem::OpenForRead(
    const std::string& path) {
  opens_for_read.fetch_add(1);
  if (on_open_for_read) on_open_for_read(path);
  if (!opens_heal.load() && !fail_substring.empty() &&
      path.find(fail_substring) != std::string::npos) {
    return absl::Status(fail_status.code(),
                        absl::StrCat(path, ": ", fail_status.message()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, target()->OpenForRead(path));
  return std::unique_ptr<ReadableFile>(new HookedFile(std::move(file), this));
}

absl::Status FaultFileSystem::ReadOnlyError(const std::string& path) {
  return absl::FailedPreconditionError(absl::StrCat(path, ": Read-only file system"));
}

absl::Status FaultFileSystem::Rename(const std::string& from, const std::string& to) {
  if (read_only.load()) return ReadOnlyError(to);
  return target()->Rename(from, to);
}

absl::Status FaultFileSystem::CreateDir(const std::string& path) {
  if (read_only.load()) return ReadOnlyError(path);
  return target()->CreateDir(path);
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultFileSystem::OpenForWrite(
    const std::string& path) {
  if (read_only.load()) return ReadOnlyError(path);
  if (!opens_heal.load() && !fail_substring.empty() &&
      path.find(fail_substring) != std::string::npos) {
    return absl::Status(fail_status.code(),
                        absl::StrCat(path, ": ", fail_status.message()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, target()->OpenForWrite(path));
  return std::unique_ptr<WritableFile>(new FaultyWritableFile(std::move(file), this));
}

}  // namespace feedrank::testing

#include "base/env.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <future>
#include <thread>

#include "absl/strings/match.h"
#include "base/files.h"
#include "base/mutex.h"
#include "base/npy.h"
#include "tests/test_env.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

TEST(FileSystemTest, FifoIsRefusedWithoutBlocking) {
  testing::TempDir dir;
  const std::string fifo = dir.Sub("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  // Opening a FIFO with no writer blocks a plain open(2) forever; run it on
  // a thread so that a regression fails the test instead of hanging it.
  auto opened = std::async(
      std::launch::async, [&] { return FileSystem::Real()->OpenForRead(fifo).status(); });
  ASSERT_EQ(opened.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "opening a FIFO blocked";
  const absl::Status status = opened.get();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("not a regular file (a FIFO)"));
  // Every loader goes through OpenForRead.
  EXPECT_EQ(ReadNpy<float>(fifo, 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFileToString(fifo).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(FileSystemTest, ErrorsCarryTheCauseNotAlwaysNotFound) {
  testing::TempDir dir;
  EXPECT_EQ(ReadFileToString(dir.Sub("absent")).status().code(),
            absl::StatusCode::kNotFound);
  // A directory where a file is expected: not "not found".
  const absl::Status is_dir = ReadFileToString(dir.path()).status();
  EXPECT_EQ(is_dir.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(is_dir.message()), HasSubstr("a directory"));
  // A path through a regular file.
  testing::WriteFile(dir.Sub("file"), "x");
  EXPECT_EQ(ReadFileToString(dir.Sub("file/below")).status().code(),
            absl::StatusCode::kFailedPrecondition);  // ENOTDIR
  EXPECT_EQ(FileSystem::Real()->CreateDir(dir.Sub("file")).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(FileSystemTest, ReadFileToStringRefusesFilesOverTheLimitBeforeReading) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("big"), std::string(1000, 'a'));
  auto small = ReadFileToString(*FileSystem::Real(), dir.Sub("big"), 999);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kResourceExhausted);
  auto fits = ReadFileToString(*FileSystem::Real(), dir.Sub("big"), 1000);
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(fits->size(), 1000u);
}

TEST(FileSystemTest, ListDirAndExists) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("b"), "");
  testing::WriteFile(dir.Sub("a"), "");
  auto names = FileSystem::Real()->ListDir(dir.path());
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ::testing::ElementsAre("a", "b"));
  EXPECT_TRUE(*FileSystem::Real()->Exists(dir.Sub("a")));
  EXPECT_FALSE(*FileSystem::Real()->Exists(dir.Sub("c")));
  EXPECT_EQ(FileSystem::Real()->ListDir(dir.Sub("c")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(FileSystemTest, WriteFileAtomicallyKeepsTheOldFileOnFailure) {
  testing::TempDir dir;
  const std::string path = dir.Sub("data");
  ASSERT_TRUE(WriteFileAtomically(*FileSystem::Real(), path, {"old"}).ok());
  testing::FaultFileSystem full;
  full.write_budget_bytes = 3;  // the disk fills up during the write
  const absl::Status status = WriteFileAtomically(full, path, {"new ", "contents"});
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(testing::ReadFile(path), "old");
  EXPECT_FALSE(*FileSystem::Real()->Exists(path + ".tmp"));
  testing::FaultFileSystem no_sync;
  no_sync.fail_sync = true;
  EXPECT_FALSE(WriteFileAtomically(no_sync, path, {"new"}).ok());
  EXPECT_EQ(testing::ReadFile(path), "old");
  ASSERT_TRUE(WriteFileAtomically(*FileSystem::Real(), path, {"new ", "contents"}).ok());
  EXPECT_EQ(testing::ReadFile(path), "new contents");
}

TEST(InterruptibleFileSystemTest, AStopFailsOpensAndReadsWithCancelled) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("big"), std::string(10 << 20, 'z'));  // 10 MiB: 3 chunks
  std::atomic<bool> stop{false};
  InterruptibleFileSystem fs(FileSystem::Real(), &stop);
  auto whole = ReadFileToString(fs, dir.Sub("big"));
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->size(), size_t(10 << 20));

  auto file = fs.OpenForRead(dir.Sub("big"));
  ASSERT_TRUE(file.ok());
  std::vector<char> buf(10 << 20);
  stop = true;  // between the open and the read
  EXPECT_EQ((*file)->Read(buf.data(), buf.size()).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(fs.OpenForRead(dir.Sub("big")).status().code(), absl::StatusCode::kCancelled);
}

TEST(FakeClockTest, MovesOnlyWhenTold) {
  testing::FakeClock clock;
  const SteadyTime t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(std::chrono::milliseconds(5));
  EXPECT_EQ(MicrosBetween(t0, clock.Now()), 5000);
  clock.SetAutoAdvance(std::chrono::microseconds(7));
  const SteadyTime t1 = clock.Now();
  EXPECT_EQ(MicrosBetween(t1, clock.Now()), 7);
  const int64_t ms = clock.UnixMillis();
  clock.Advance(std::chrono::seconds(1));
  EXPECT_EQ(clock.UnixMillis(), ms + 1000);
}

TEST(MutexTest, CondVarWaitsForThePredicate) {
  Mutex mu;
  CondVar cv;
  int value = 0;
  std::thread producer([&] {
    for (int i = 0; i < 100; ++i) {
      MutexLock lock(&mu);
      ++value;
      cv.SignalAll();
    }
  });
  {
    MutexLock lock(&mu);
    cv.Wait(&mu, [&] { return value == 100; });
    EXPECT_EQ(value, 100);
    EXPECT_FALSE(
        cv.WaitFor(&mu, std::chrono::milliseconds(1), [&] { return value == 101; }));
  }
  producer.join();
}

}  // namespace
}  // namespace feedrank

namespace feedrank {
namespace {

TEST(ReadPemFileTest, NeedsABlockOfItsKindAndNamesTheFlag) {
  testing::TempDir dir;
  const std::string cert = dir.Sub("cert.pem");
  testing::WriteFile(cert,
                     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  const std::string key = dir.Sub("key.pem");
  testing::WriteFile(
      key, "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n");
  FileSystem& fs = *FileSystem::Real();
  EXPECT_TRUE(ReadPemFile(fs, cert, "CERTIFICATE", "--cert").ok());
  EXPECT_TRUE(ReadPemFile(fs, key, "PRIVATE KEY", "--key").ok());
  auto wrong = ReadPemFile(fs, key, "CERTIFICATE", "--cert");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(), "--cert: " + key + " holds no PEM CERTIFICATE");
  auto missing = ReadPemFile(fs, dir.Sub("none.pem"), "CERTIFICATE", "--ca");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StartsWith(missing.status().message(), "--ca: "));
}

}  // namespace
}  // namespace feedrank

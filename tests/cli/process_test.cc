// The `feedrank` binary as a user runs it, as real processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "embeddings/manifest.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

TEST(ProcessTest, AFifoInABundleFailsServeAndBuildAtOnce) {
  // A FIFO with no writer used to block `serve` and `build` forever, even
  // against SIGTERM (the signals were blocked until the load ended).
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  const std::string ids = BundlePath(dir.Sub("bundle"), kVideoIdsFile);
  ASSERT_EQ(::unlink(ids.c_str()), 0);
  ASSERT_EQ(::mkfifo(ids.c_str(), 0644), 0);
  std::string output;
  const auto start = std::chrono::steady_clock::now();
  const int serve = testing::RunProcess({testing::FeedrankBinary(), "serve", "--bundle",
                                         dir.Sub("bundle"), "--address", "127.0.0.1:0"},
                                        20, &output);
  EXPECT_NE(serve, -1) << "serve hung on a FIFO";
  EXPECT_NE(serve, 0);
  EXPECT_THAT(output, HasSubstr("not a regular file (a FIFO)"));
  const int build = testing::RunProcess({testing::FeedrankBinary(), "build", "--from",
                                         dir.Sub("bundle"), "--out", dir.Sub("out")},
                                        20, &output);
  EXPECT_NE(build, -1) << "build hung on a FIFO";
  EXPECT_NE(build, 0);
  EXPECT_THAT(output, HasSubstr("not a regular file"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

TEST(ProcessTest, BuildRefusesAnExistingOutputBeforeBuilding) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  testing::WriteFile(dir.Sub("out"), "");
  std::string output;
  const int code = testing::RunProcess({testing::FeedrankBinary(), "build", "--from",
                                        dir.Sub("bundle"), "--out", dir.Sub("out")},
                                       20, &output);
  EXPECT_NE(code, 0);
  EXPECT_THAT(output, HasSubstr("already exists"));
  EXPECT_THAT(output, ::testing::Not(HasSubstr("build: index")));
}

TEST(ProcessTest, SigtermStopsAServingProcess) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundle"));
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string bin = testing::FeedrankBinary();
    const std::string bundle = dir.Sub("bundle");
    ::execl(bin.c_str(), bin.c_str(), "serve", "--bundle", bundle.c_str(), "--address",
            "127.0.0.1:0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGTERM);
  int status = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "serve did not stop on SIGTERM";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace feedrank

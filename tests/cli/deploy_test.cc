// The deployment recipes in deploy/ start the server: the systemd unit's
// command line, reload and stop signals; the container image's entrypoint,
// and its run-time packages against the binary's shared libraries.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <thread>

#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli/client.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

std::string Source(const std::string& path) {
  return testing::ReadFile(std::string(FEEDRANK_SOURCE_DIR) + "/" + path);
}

// The value of `key=` in a systemd unit.
std::string UnitValue(const std::string& unit, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(unit, '\n')) {
    if (absl::StartsWith(line, key + "="))
      return std::string(line.substr(key.size() + 1));
  }
  return "";
}

// Starts `argv`, waits for SERVING, then checks SIGHUP keeps it serving and
// SIGTERM stops it with exit code 0.
void ExpectServesReloadsAndStops(const std::vector<std::string>& argv,
                                 const std::string& log) {
  const int pid = testing::StartProcess(argv, log);
  const int port = testing::WaitForListeningPort(log, 30);
  ASSERT_GT(port, 0) << absl::StrJoin(argv, " ") << "\n" << testing::ReadFile(log);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  ASSERT_TRUE(WaitForServing(channel, "feedrank.v1.FeedRanker", absl::Seconds(30)).ok())
      << testing::ReadFile(log);
  ::kill(pid, SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(*CheckHealth(channel, "feedrank.v1.FeedRanker"), "SERVING");
  EXPECT_THAT(testing::ReadFile(log), HasSubstr("reload"));
  ::kill(pid, SIGTERM);
  int status = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "did not stop on SIGTERM";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFile(log);
}

TEST(DeployTest, TheSystemdUnitsCommandStartsReloadsAndStops) {
  const std::string unit = Source("deploy/feedrank.service");
  EXPECT_EQ(UnitValue(unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
  EXPECT_EQ(UnitValue(unit, "KillSignal"), "SIGTERM");
  std::string command = UnitValue(unit, "ExecStart");
  ASSERT_FALSE(command.empty());
  testing::TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("root").c_str(), 0755), 0);
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("root/1"));
  testing::WriteFile(dir.Sub("config.textproto"), "version: \"unit\"\n");
  ASSERT_EQ(::mkdir(dir.Sub("log").c_str(), 0755), 0);
  // The unit's paths and ports, mapped into the test's directory.
  command = absl::StrReplaceAll(
      command, {{"/usr/local/bin/feedrank", testing::FeedrankBinary()},
                {"/var/lib/feedrank/bundles", dir.Sub("root")},
                {"/etc/feedrank/config.textproto", dir.Sub("config.textproto")},
                {"/var/log/feedrank", dir.Sub("log")},
                {"0.0.0.0:50051", "127.0.0.1:0"},
                {"0.0.0.0:9464", "127.0.0.1:0"},
                {"--drain-grace 5s", "--drain-grace 100ms"}});
  const std::vector<std::string> argv = absl::StrSplit(command, ' ', absl::SkipEmpty());
  ExpectServesReloadsAndStops(argv, dir.Sub("serve.log"));
  EXPECT_THAT(testing::ReadFile(dir.Sub("serve.log")), HasSubstr("\"level\":\"info\""));
  // systemd's own check of the unit, when systemd-analyze is there.
  if (::access("/usr/bin/systemd-analyze", X_OK) == 0) {
    std::string copy = absl::StrReplaceAll(
        unit, {{"/usr/local/bin/feedrank", testing::FeedrankBinary()}});
    testing::WriteFile(dir.Sub("feedrank.service"), copy);
    std::string output;
    const int code = testing::RunProcess(
        {"/usr/bin/systemd-analyze", "verify", "--man=no", dir.Sub("feedrank.service")},
        60, &output);
    // Without a running systemd only syntax and executables are checked;
    // the unit's user need not exist here.
    EXPECT_THAT(output, ::testing::Not(HasSubstr("Unknown key")));
    EXPECT_THAT(output, ::testing::Not(HasSubstr("Invalid")));
    EXPECT_THAT(output, ::testing::Not(HasSubstr("is not executable")));
    (void)code;
  }
}

TEST(DeployTest, TheContainerEntrypointStartsAndItsPackagesCoverTheBinary) {
  const std::string dockerfile = Source("deploy/Dockerfile");
  // ENTRYPOINT and CMD as the image runs them (exec form).
  std::vector<std::string> argv;
  for (const char* key : {"ENTRYPOINT", "CMD"}) {
    std::smatch m;
    const std::regex line(std::string("\n") + key + R"( \[([^\]]*)\])");
    ASSERT_TRUE(std::regex_search(dockerfile, m, line)) << key;
    for (absl::string_view part : absl::StrSplit(m[1].str(), ',')) {
      part = absl::StripAsciiWhitespace(part);
      argv.emplace_back(part.substr(1, part.size() - 2));
    }
  }
  testing::TempDir dir;
  ASSERT_EQ(::mkdir(dir.Sub("bundles").c_str(), 0755), 0);
  testing::WriteSmallBundle(testing::SmallSynth(500, 20, "flat"), dir.Sub("bundles/3"));
  for (std::string& arg : argv) {
    arg =
        absl::StrReplaceAll(arg, {{"/usr/local/bin/feedrank", testing::FeedrankBinary()},
                                  {"/bundles", dir.Sub("bundles")},
                                  {"0.0.0.0:50051", "127.0.0.1:0"},
                                  {"0.0.0.0:9464", "127.0.0.1:0"}});
  }
  argv.push_back("--drain-grace");
  argv.push_back("100ms");
  ExpectServesReloadsAndStops(argv, dir.Sub("serve.log"));

  // Every shared library the binary loads comes from a package the run-time
  // stage installs (or from the base image: libc6, libgcc-s1).
  std::string ldd;
  ASSERT_EQ(testing::RunProcess({"/usr/bin/ldd", testing::FeedrankBinary()}, 30, &ldd),
            0);
  // One dpkg query for all of them, each under both names a merged /usr
  // gives it (/usr/lib/... and /lib/...).
  std::vector<std::string> query = {"/usr/bin/dpkg", "-S"};
  std::vector<std::string> libraries;
  for (absl::string_view line : absl::StrSplit(ldd, '\n', absl::SkipEmpty())) {
    const size_t arrow = line.find("=> /");
    if (arrow == absl::string_view::npos) continue;
    std::string path(line.substr(arrow + 3));
    path = path.substr(0, path.find(' '));
    char real[4096];
    if (::realpath(path.c_str(), real) == nullptr) continue;
    libraries.push_back(real);
    query.push_back(real);
    if (absl::StartsWith(real, "/usr/")) query.push_back(std::string(real).substr(4));
  }
  std::string owners;
  testing::RunProcess(query, 60, &owners);  // non-zero: some names are not owned
  std::set<std::string> needed;
  for (const std::string& library : libraries) {
    const std::string short_name =
        absl::StartsWith(library, "/usr/") ? library.substr(4) : library;
    std::string owner;
    for (absl::string_view line : absl::StrSplit(owners, '\n', absl::SkipEmpty())) {
      const size_t colon = line.find(": ");
      if (colon == absl::string_view::npos) continue;
      const absl::string_view path = line.substr(colon + 2);
      if (path == library || path == short_name)
        owner = std::string(line.substr(0, colon));
    }
    ASSERT_FALSE(owner.empty()) << "no package owns " << library << "\n" << owners;
    needed.insert(owner.substr(0, owner.find(':')));
  }
  const size_t runtime = dockerfile.find("FROM debian:12-slim");
  ASSERT_NE(runtime, std::string::npos);
  const std::string install = dockerfile.substr(runtime);
  for (const std::string& package : needed) {
    if (package == "libc6" || package == "libgcc-s1") continue;
    EXPECT_THAT(install, HasSubstr(" " + package + " ")) << "the image lacks " << package;
  }
}

}  // namespace
}  // namespace feedrank

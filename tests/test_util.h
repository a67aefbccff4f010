// Helpers shared by the tests: temporary directories and files
// (tests/test_bundles.h: small synthetic bundles).
#ifndef FEEDRANK_TESTS_TEST_UTIL_H_
#define FEEDRANK_TESTS_TEST_UTIL_H_

#include <string>
#include <vector>

namespace feedrank::testing {

// A fresh directory under $TMPDIR, removed with everything in it when the
// object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Copies directory `from` to `to` recursively.
void CopyDir(const std::string& from, const std::string& to);

// Runs `argv` (argv[0] a path) with stdout and stderr into `*output`, and
// waits at most `timeout_s`; a process still running then is killed
// (SIGKILL) and -1 is returned. Else its exit code, or 128 + the signal
// that ended it.
int RunProcess(const std::vector<std::string>& argv, double timeout_s,
               std::string* output);

// Starts `argv` with stdout and stderr appended to `log_path`; returns its
// pid (the caller waits for it).
int StartProcess(const std::vector<std::string>& argv, const std::string& log_path);

// Waits at most `timeout_s` for process `pid` to end; a process still
// running then is killed (SIGKILL) and -1 is returned. Else its exit code,
// or 128 + the signal that ended it (as RunProcess).
int WaitForExit(int pid, double timeout_s);

// SIGTERM to `pid`, then WaitForExit.
int StopProcess(int pid, double timeout_s = 20);

// Waits until `log_path` holds "<marker>... (port N)" and returns N of the
// last such line (e.g. marker "admin on " for the admin port); -1 after
// `timeout_s`.
int WaitForListeningPort(const std::string& log_path, double timeout_s,
                         const std::string& marker = "listening on ");

// The `feedrank` binary of this build.
std::string FeedrankBinary();

// Whole contents of a file.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);

}  // namespace feedrank::testing

#endif  // FEEDRANK_TESTS_TEST_UTIL_H_

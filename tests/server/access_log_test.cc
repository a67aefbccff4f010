#include "server/access_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(testing::ReadFile(path), '\n', absl::SkipEmpty());
}

TEST(AccessLogTest, SuccessesAreSampledErrorsAreRateLimitedAndCounted) {
  testing::TempDir dir;
  AccessLogOptions options;
  options.path = dir.Sub("log");
  options.sample_rate = 0;  // no successful call
  options.max_error_lines_per_second = 3;
  {
    auto log = AccessLog::Open(options);
    ASSERT_TRUE(log.ok()) << log.status();
    AccessEntry ok;
    ok.method = "RankFeed";
    for (int i = 0; i < 100; ++i) (*log)->Record(ok);
    AccessEntry error = ok;
    error.code = 3;
    error.message = "count: 0 is outside [1, 200]";
    for (int i = 0; i < 10; ++i) (*log)->Record(error);
    // In the next second, one more error: it carries the count of those
    // that were not logged.
    absl::SleepFor(absl::Milliseconds(1100));
    error.code = 14;
    (*log)->Record(error);
  }
  std::vector<std::string> lines = Lines(dir.Sub("log"));
  // Within one second at most 3 (a second boundary may allow 3 more), then
  // the late one.
  ASSERT_GE(lines.size(), 4u);
  ASSERT_LE(lines.size(), 7u);
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_THAT(lines[i], HasSubstr("INVALID_ARGUMENT"));
  }
  EXPECT_THAT(lines.back(), HasSubstr("\"code\":\"UNAVAILABLE\""));
  EXPECT_THAT(lines.back(), HasSubstr(absl::StrCat("\"errors_not_logged_before\":",
                                                   10 - (lines.size() - 1))));
}

TEST(AccessLogTest, EverySuccessAtRateOneAndBadOptionsRefused) {
  testing::TempDir dir;
  AccessLogOptions options;
  options.path = dir.Sub("log");
  options.sample_rate = 1;
  {
    auto log = AccessLog::Open(options);
    ASSERT_TRUE(log.ok());
    AccessEntry ok;
    ok.method = "RankFeed";
    ok.request_id = "r\"1";
    ok.latency_micros = 1234;
    for (int i = 0; i < 50; ++i) (*log)->Record(ok);
    EXPECT_EQ((*log)->dropped(), 0);
  }
  const std::vector<std::string> lines = Lines(dir.Sub("log"));
  ASSERT_EQ(lines.size(), 50u);
  EXPECT_THAT(lines[0], HasSubstr("\"request_id\":\"r\\\"1\",\"user\":0,\"code\":\"OK\","
                                  "\"latency_ms\":1.234"));
  options.sample_rate = 1.5;
  EXPECT_EQ(AccessLog::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.sample_rate = 0.5;
  options.path = dir.Sub("no/such/dir/log");
  EXPECT_EQ(AccessLog::Open(options).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace feedrank

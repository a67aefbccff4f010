#include "base/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace feedrank {
namespace {

using ::testing::HasSubstr;

TEST(LogTest, LevelsFilterAndJsonLinesAreJson) {
  ::testing::internal::CaptureStderr();
  SetLogFormat(LogFormat::kJson);
  SetMinLogLevel(LogLevel::kWarning);
  LogInfo("dropped %d", 1);
  LogWarning("kept \"%s\"\n\tnext", "quoted");
  SetMinLogLevel(LogLevel::kInfo);
  SetLogFormat(LogFormat::kText);
  LogError("plain %d", 2);
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, ::testing::Not(HasSubstr("dropped")));
  EXPECT_THAT(
      out,
      HasSubstr("\"level\":\"warning\",\"msg\":\"kept \\\"quoted\\\"\\n\\tnext\"}\n"));
  EXPECT_THAT(out, HasSubstr("{\"ts\":\"20"));
  EXPECT_THAT(out, HasSubstr("\nE 20"));
  EXPECT_THAT(out, HasSubstr(" plain 2\n"));
}

TEST(LogTest, NamesParseAndBadOnesAreRefused) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  EXPECT_THAT(std::string(ParseLogLevel("verbose").status().message()),
              HasSubstr("not one of debug, info, warning, error"));
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("xml").ok());
  EXPECT_EQ(JsonString(std::string("a\x01") + "\x7f"), "\"a\\u0001\\u007f\"");
}

}  // namespace
}  // namespace feedrank

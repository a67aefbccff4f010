#include "base/quote.h"

#include <gtest/gtest.h>

#include <string>

namespace feedrank {
namespace {

TEST(QuoteForErrorTest, ShortValuesWholeLongOnesCutWithTheirSize) {
  EXPECT_EQ(QuoteForError("abc"), "'abc'");
  EXPECT_EQ(QuoteForError(""), "''");
  const std::string at_limit(kMaxQuotedBytes, 'x');
  EXPECT_EQ(QuoteForError(at_limit), "'" + at_limit + "'");
  EXPECT_EQ(QuoteForError(at_limit + "y"), "'" + at_limit + "'... (65 bytes)");
  const std::string huge(3'000'000, 'z');
  EXPECT_EQ(QuoteForError(huge, 4), "'zzzz'... (3000000 bytes)");
}

TEST(QuoteForErrorTest, DoesNotSplitAUtf8Character) {
  // "aé…": 'a', then é (2 bytes), then … (3 bytes).
  const std::string text = "a\xC3\xA9\xE2\x80\xA6";
  EXPECT_EQ(QuoteForError(text, 2), "'a'... (6 bytes)");
  EXPECT_EQ(QuoteForError(text, 3), "'a\xC3\xA9'... (6 bytes)");
  EXPECT_EQ(QuoteForError(text, 5), "'a\xC3\xA9'... (6 bytes)");
}

}  // namespace
}  // namespace feedrank

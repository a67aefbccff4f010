#include "training/interaction_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

constexpr char kMapping[] = R"pb(
  user_column: "u"
  item_column: "i"
  time_column: "t"
  time_unit: SECONDS
  play_time_column: "play"
  duration_column: "dur"
  objectives { name: "like" column: "rating" threshold: 4 }
  objectives { name: "watch" kind: WATCH_RATIO }
)pb";

LogMapping Mapping() {
  auto m = ParseLogMapping(kMapping);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(InteractionLogTest, ReadsACsvThroughTheMapping) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("log.csv"),
                     "u,i,t,rating,play,dur\n"
                     "1,10,100,5,3,6\n"
                     "2,11,200,3.5,9,6\n"
                     "\"3\",12,86500,4,1,0\r\n");
  auto log = ReadInteractionLog(dir.Sub("log.csv"), Mapping());
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), 3u);
  EXPECT_EQ(log->objectives, std::vector<std::string>({"like", "watch"}));
  EXPECT_EQ(log->retrieval_objective, 0);
  EXPECT_EQ(log->users[2], 3u);
  EXPECT_EQ(log->time_ms[1], 200000);
  EXPECT_EQ(log->label(0, 0), 1.f);
  EXPECT_EQ(log->label(1, 0), 0.f);  // 3.5 < 4
  EXPECT_EQ(log->label(2, 0), 1.f);
  EXPECT_FLOAT_EQ(log->label(0, 1), 0.5f);
  EXPECT_FLOAT_EQ(log->label(1, 1), 1.f);     // 9 / 6, clipped
  EXPECT_TRUE(std::isnan(log->label(2, 1)));  // unknown duration
}

TEST(InteractionLogTest, ReadsTheShippedKuaiRandLog) {
  const std::string dir = std::string(FEEDRANK_SOURCE_DIR) + "/data/kuairand-likehate";
  auto mapping = ReadLogMapping(dir + "/mapping.textproto");
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  auto log = ReadInteractionLog(dir + "/interactions.tsv", *mapping);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->size(), 41828u);
  EXPECT_EQ(log->objectives[log->retrieval_objective], "like");
  double likes = 0;
  for (size_t r = 0; r < log->size(); ++r) likes += log->label(r, 2);
  EXPECT_EQ(likes, 33745);  // the README's count of label=1
}

TEST(InteractionLogTest, MappingErrorsNameTheField) {
  struct Case {
    const char* text;
    const char* expect;
  };
  for (const Case& c : std::vector<Case>{
           {"item_column: \"i\" time_column: \"t\" objectives { name: \"a\" column: "
            "\"x\" }",
            "user_column"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\"", "no objectives"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\" "
            "objectives { name: \"a\" column: \"x\" } objectives { name: \"a\" column: "
            "\"y\" }",
            "twice"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\" objectives { name: "
            "\"a\" }",
            "names no column"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\" "
            "objectives { name: \"w\" kind: WATCH_RATIO }",
            "play_time_column"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\" "
            "objectives { name: \"a\" column: \"x\" } retrieval_objective: \"b\"",
            "retrieval_objective"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\" "
            "objectives { name: \"a\" column: \"x\" threshold: nan }",
            "threshold"},
           {"user_column: \"u\" item_column: \"i\" time_column: \"t\" "
            "objectives { name: \"a\" column: \"x\" threshold: -inf }",
            "threshold"},
           {"user_colum: \"u\"", "textproto"},
       }) {
    auto m = ParseLogMapping(c.text);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(m.status().message()), HasSubstr(c.expect)) << c.text;
  }
}

TEST(InteractionLogTest, BadLogsAreRefusedWithFileLineAndColumn) {
  testing::TempDir dir;
  struct Case {
    const char* contents;
    const char* expect;
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty file"},
           {"u,i,t,rating,play,dur\n", "a header but no rows"},
           {"u,i,time,rating,play,dur\n1,2,3,4,5,6\n", "'t' is not a column"},
           {"u,i,t,stars,play,dur\n1,2,3,4,5,6\n", "'rating' is not a column"},
           {"u,i,t,rating,play,dur\nabc,2,3,4,5,6\n",
            "log.csv:2: column 'u' holds 'abc'"},
           {"u,i,t,rating,play,dur\n1,-2,3,4,5,6\n", "column 'i' holds '-2'"},
           {"u,i,t,rating,play,dur\n1,2,3,x,5,6\n", "column 'rating' holds 'x'"},
           {"u,i,t,rating,play,dur\n1,2,yesterday,4,5,6\n", "column 't'"},
           {"u,i,t,rating,play,dur\n1,2,3,4,5\n",
            "log.csv:2: 5 fields, the header has 6"},
           {"u,i,t,rating,play,dur\n1,2,3,4,5,-6\n", "column 'dur'"},
       }) {
    testing::WriteFile(dir.Sub("log.csv"), c.contents);
    auto log = ReadInteractionLog(dir.Sub("log.csv"), Mapping());
    EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument) << c.contents;
    EXPECT_THAT(std::string(log.status().message()), HasSubstr(c.expect)) << c.contents;
  }
  auto missing = ReadInteractionLog(dir.Sub("absent.csv"), Mapping());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// Times and durations are checked against their documented ranges while the
// log is read (before any cast to an integer), so a huge value is blamed on
// the log, not on a bundle file written later.
TEST(InteractionLogTest, RefusesTimesDurationsAndPlayTimesOutOfRange) {
  testing::TempDir dir;
  struct Case {
    const char* row;  // u,i,t,rating,play,dur (t in seconds, play and dur in ms)
    const char* expect;
  };
  for (const Case& c : std::vector<Case>{
           {"1,2,1e300,4,5,6", "log.csv:2: column 't' holds '1e300'"},
           {"1,2,9.3e18,4,5,6", "log.csv:2: column 't' holds '9.3e18'"},
           {"1,2,7258118401,4,5,6", "column 't' holds '7258118401'"},  // after 2200
           {"1,2,inf,4,5,6", "column 't' holds 'inf'"},
           {"1,2,nan,4,5,6", "column 't' holds 'nan'"},
           {"1,2,-1,4,5,6", "column 't' holds '-1'"},
           {"1,2,3,4,5,inf", "log.csv:2: column 'dur' holds 'inf'"},
           {"1,2,3,4,5,1e300", "column 'dur' holds '1e300'"},
           {"1,2,3,4,5,nan", "column 'dur' holds 'nan'"},
           {"1,2,3,4,5,2592000001", "column 'dur' holds '2592000001'"},  // > 30 days
           {"1,2,3,4,inf,6", "column 'play' holds 'inf'"},
           {"1,2,3,4,1e300,6", "column 'play' holds '1e300'"},
           {"1,2,3,4,nan,6", "column 'play' holds 'nan'"},
           {"1,2,3,inf,5,6", "column 'rating' holds 'inf'"},
           {"1,2,3,nan,5,6", "column 'rating' holds 'nan'"},
       }) {
    testing::WriteFile(dir.Sub("log.csv"),
                       absl::StrCat("u,i,t,rating,play,dur\n", c.row, "\n"));
    auto log = ReadInteractionLog(dir.Sub("log.csv"), Mapping());
    EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument) << c.row;
    EXPECT_THAT(std::string(log.status().message()), HasSubstr(c.expect)) << c.row;
  }
  // The bounds themselves are accepted.
  testing::WriteFile(dir.Sub("log.csv"),
                     "u,i,t,rating,play,dur\n"
                     "1,2,0,4,0,0\n"
                     "1,2,7258118400,4,2592000000,2592000000\n");
  auto log = ReadInteractionLog(dir.Sub("log.csv"), Mapping());
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->time_ms[1], int64_t{7258118400} * 1000);
  EXPECT_EQ(log->duration_ms[1], int64_t{2592000000});
}

TEST(InteractionLogTest, ErrorsQuoteAShortPrefixOfAHugeField) {
  testing::TempDir dir;
  const std::string huge(5'000'000, '7');
  testing::WriteFile(dir.Sub("log.csv"),
                     absl::StrCat("u,i,t,rating,play,dur\n1,x", huge, ",3,4,5,6\n"));
  auto log = ReadInteractionLog(dir.Sub("log.csv"), Mapping());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(log.status().message());
  EXPECT_LT(message.size(), 300u) << message.substr(0, 300);
  EXPECT_THAT(message, HasSubstr("log.csv:2: column 'i' holds 'x777"));
  EXPECT_THAT(message, HasSubstr("(5000001 bytes)"));

  // A huge header is not echoed whole either.
  testing::WriteFile(dir.Sub("log.csv"),
                     absl::StrCat("u,i,", huge, ",rating,play,dur\n1,2,3,4,5,6\n"));
  log = ReadInteractionLog(dir.Sub("log.csv"), Mapping());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(log.status().message().size(), 600u) << log.status().message().substr(0, 600);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("'t' is not a column"));
}

TEST(InteractionLogTest, SplitHoldsOutTheLastUtcDays) {
  InteractionLog log;
  const int64_t day = 86'400'000;
  for (int64_t t : {0 * day + 5, 1 * day + 7, 2 * day + 1, 2 * day + 99, 3 * day + 3}) {
    log.users.push_back(1);
    log.items.push_back(2);
    log.time_ms.push_back(t);
  }
  auto split = SplitByTime(log, 2);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->cutoff_ms, 2 * day);
  EXPECT_EQ(split->train, std::vector<size_t>({0, 1}));
  EXPECT_EQ(split->test, std::vector<size_t>({2, 3, 4}));
  EXPECT_THAT(std::string(SplitByTime(log, 4).status().message()),
              HasSubstr("no rows to train"));
  EXPECT_FALSE(SplitByTime(log, 0).ok());
}

TEST(InteractionLogTest, PerUserSplitHoldsOutEachUsersLastRows) {
  InteractionLog log;
  // (user, time): user 1 has 4 rows, two tied last; user 2 has 3, two tied;
  // user 3 has 1.
  const std::vector<std::pair<uint64_t, int64_t>> rows = {
      {1, 100}, {2, 50}, {1, 300}, {1, 200}, {3, 10}, {2, 50}, {1, 300}, {2, 20}};
  for (const auto& [user, t] : rows) {
    log.users.push_back(user);
    log.items.push_back(7);
    log.time_ms.push_back(t);
  }
  // User 1 by time: rows 0, 3, 2, 6 (2 and 6 tie: the later row is later);
  // user 2: rows 7, 1, 5.
  auto split = SplitLastNPerUser(log, 2);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->train, std::vector<size_t>({0, 3, 4, 7}));
  EXPECT_EQ(split->test, std::vector<size_t>({1, 2, 5, 6}));
  EXPECT_EQ(split->cutoff_ms, 50);  // the earliest held-out time, user 2's

  split = SplitLastNPerUser(log, 1);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->train, std::vector<size_t>({0, 1, 2, 3, 4, 7}));
  EXPECT_EQ(split->test, std::vector<size_t>({5, 6}));
  EXPECT_EQ(split->cutoff_ms, 50);

  // User 2 has exactly 3 rows and user 3 one: they keep all of them in train.
  split = SplitLastNPerUser(log, 3);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->train, std::vector<size_t>({0, 1, 4, 5, 7}));
  EXPECT_EQ(split->test, std::vector<size_t>({2, 3, 6}));
  EXPECT_EQ(split->cutoff_ms, 200);  // user 1's row 3 trains on nothing later
}

TEST(InteractionLogTest, PerUserSplitRefusesBadCases) {
  InteractionLog log;
  for (int64_t t : {5, 1, 3}) {
    log.users.push_back(1);
    log.items.push_back(2);
    log.time_ms.push_back(t);
  }
  for (int n : {0, -1, 1001}) {
    auto split = SplitLastNPerUser(log, n);
    EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_THAT(std::string(split.status().message()), HasSubstr("outside [1, 1000]"));
  }
  ASSERT_TRUE(SplitLastNPerUser(log, 2).ok());
  for (int n : {3, 1000}) {
    auto split = SplitLastNPerUser(log, n);
    EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_THAT(std::string(split.status().message()), HasSubstr("no rows to test"));
  }
  auto empty = SplitLastNPerUser(InteractionLog(), 1);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("no rows to train"));
}

}  // namespace
}  // namespace feedrank

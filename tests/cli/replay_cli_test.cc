// `feedrank replay` as a user runs it: a real process over real files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "ranking/bundle.h"
#include "replay/replay_log.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;

class ReplayCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteSmallBundle(testing::SmallSynth(2000, 100, "flat"), dir_.Sub("bundle"));
    auto bundle = LoadBundle(dir_.Sub("bundle"));
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    const Catalog& catalog = *(*bundle)->catalog;
    auto writer = ReplayLogWriter::Open(dir_.Sub("log.bin"));
    ASSERT_TRUE(writer.ok());
    for (int i = 0; i < 120; ++i) {
      v1::ReplayRecord r;
      r.mutable_request()->set_user_id(catalog.user_id(i % catalog.num_users()));
      r.mutable_request()->set_request_id(absl::StrCat("q", i));
      r.set_time_ms((*bundle)->manifest.data_time_ms() + i * 100);
      r.add_objectives((*bundle)->model->objectives()[0]);
      for (int j = 0; j < 5; ++j) {
        v1::ReplayOutcome* o = r.add_outcomes();
        o->set_video_id(catalog.video_id((i * 37 + j * 11) % catalog.num_videos()));
        o->add_labels(j % 2);
      }
      ASSERT_TRUE((*writer)->Append(r).ok());
    }
    ASSERT_TRUE((*writer)->Close().ok());
    testing::WriteFile(dir_.Sub("a.textproto"), "version: \"a\"\n");
    testing::WriteFile(
        dir_.Sub("b.textproto"),
        "version: \"b\"\nparams { creator_cap: 1 rerank_candidates: 50 }\n");
  }

  int Replay(std::vector<std::string> args, std::string* output) {
    std::vector<std::string> argv = {testing::FeedrankBinary(), "replay"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunProcess(argv, 120, output);
  }

  testing::TempDir dir_;
};

TEST_F(ReplayCliTest, TwoConfigsGiveATableJsonAndHtmlThatRepeatByteForByte) {
  std::string out;
  std::vector<std::string> args = {
      "--log",        dir_.Sub("log.bin"),     "--bundle", dir_.Sub("bundle"),
      "--config",     dir_.Sub("a.textproto"), "--config", dir_.Sub("b.textproto"),
      "--no-latency", "--resamples",           "200"};
  std::vector<std::string> first = args, second = args;
  for (auto* a : {&first, &second}) {
    const std::string n = a == &first ? "1" : "2";
    a->insert(a->end(), {"--json", dir_.Sub("r" + n + ".json"), "--html",
                         dir_.Sub("r" + n + ".html"), "--threads", n});
  }
  ASSERT_EQ(Replay(first, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("ndcg@10"));
  EXPECT_THAT(out, HasSubstr("Deltas"));
  EXPECT_THAT(out, HasSubstr("replay b"));  // the progress line names the variant
  ASSERT_EQ(Replay(second, &out), 0) << out;
  const std::string json1 = testing::ReadFile(dir_.Sub("r1.json"));
  EXPECT_THAT(json1, HasSubstr("\"name\": \"b\""));
  // Threads are reported; everything else is the same bytes.
  const std::string html1 = testing::ReadFile(dir_.Sub("r1.html"));
  const std::string html2 = testing::ReadFile(dir_.Sub("r2.html"));
  auto strip_threads = [](std::string s) {
    const size_t at = s.find("\"threads\"");
    if (at != std::string::npos) s.erase(at, s.find('\n', at) - at);
    return s;
  };
  EXPECT_EQ(strip_threads(json1), strip_threads(testing::ReadFile(dir_.Sub("r2.json"))));
  auto strip_html_threads = [](std::string s) {
    for (const char* n : {"1", "2"}) {
      const std::string cell = std::string("<dt>threads</dt><dd>") + n + "</dd>";
      const size_t at = s.find(cell);
      if (at != std::string::npos) s.erase(at, cell.size());
    }
    return s;
  };
  EXPECT_NE(html1.find("<dt>threads</dt>"), std::string::npos);
  EXPECT_EQ(strip_html_threads(html1), strip_html_threads(html2));
  EXPECT_THAT(html1, HasSubstr("<svg"));
  EXPECT_THAT(html1, ::testing::Not(HasSubstr("http://")));
}

TEST_F(ReplayCliTest, ArmsOfOneConfigBecomeVariants) {
  testing::WriteFile(dir_.Sub("exp.textproto"), R"pb(
    version: "exp"
    layers {
      name: "rank"
      salt: "s"
      experiments {
        name: "e"
        ranges { begin: 0 end: 10000 }
        arms {
          name: "model"
          ranges { begin: 0 end: 5000 }
        }
        arms {
          name: "retrieval"
          ranges { begin: 5000 end: 10000 }
          overrides { rerank_candidates: 0 }
        }
      }
    }
  )pb");
  std::string out;
  ASSERT_EQ(Replay({"--log", dir_.Sub("log.bin"), "--bundle", dir_.Sub("bundle"),
                    "--config", dir_.Sub("exp.textproto"), "--arms", "--no-latency",
                    "--resamples", "100", "--json", dir_.Sub("arms.json")},
                   &out),
            0)
      << out;
  const std::string json = testing::ReadFile(dir_.Sub("arms.json"));
  for (const char* name :
       {"exp@defaults", "exp@assigned", "exp@rank/model", "exp@rank/retrieval"}) {
    EXPECT_THAT(json, HasSubstr(absl::StrCat("\"name\": \"", name, "\""))) << name;
  }
  // --arms needs one config with arms.
  EXPECT_EQ(Replay({"--log", dir_.Sub("log.bin"), "--bundle", dir_.Sub("bundle"),
                    "--config", dir_.Sub("a.textproto"), "--arms"},
                   &out),
            2);
  EXPECT_THAT(out, HasSubstr("has no experiment arms"));
}

TEST_F(ReplayCliTest, BadFlagsAndBadLogsFailWithTheirExitCodes) {
  std::string out;
  // An unknown config field: refused, naming the file.
  testing::WriteFile(dir_.Sub("bad.textproto"), "params { beam: 3 }\n");
  EXPECT_EQ(Replay({"--log", dir_.Sub("log.bin"), "--bundle", dir_.Sub("bundle"),
                    "--config", dir_.Sub("bad.textproto")},
                   &out),
            2);
  EXPECT_THAT(out, HasSubstr("bad.textproto"));
  EXPECT_THAT(out, HasSubstr("beam"));
  // --config with --target, and a sweep over a field that does not exist.
  EXPECT_EQ(Replay({"--log", dir_.Sub("log.bin"), "--target", "127.0.0.1:1", "--config",
                    dir_.Sub("a.textproto")},
                   &out),
            2);
  EXPECT_THAT(out, HasSubstr("--config and --target"));
  EXPECT_EQ(Replay({"--log", dir_.Sub("log.bin"), "--bundle", dir_.Sub("bundle"),
                    "--sweep", "beam=1,2"},
                   &out),
            2);
  EXPECT_THAT(out, HasSubstr("not a field"));
  // A truncated log: fatal by default with the offset, skipped on request.
  const std::string bytes = testing::ReadFile(dir_.Sub("log.bin"));
  testing::WriteFile(dir_.Sub("cut.bin"), bytes.substr(0, bytes.size() - 3));
  EXPECT_EQ(Replay({"--log", dir_.Sub("cut.bin"), "--bundle", dir_.Sub("bundle")}, &out),
            1);
  EXPECT_THAT(out, HasSubstr("bad record at byte"));
  EXPECT_THAT(out, HasSubstr("truncated"));
  EXPECT_EQ(Replay({"--log", dir_.Sub("cut.bin"), "--bundle", dir_.Sub("bundle"),
                    "--on-bad-record", "skip", "--no-latency", "--resamples", "100"},
                   &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("records                  119 (1 skipped)"));
}

}  // namespace
}  // namespace feedrank

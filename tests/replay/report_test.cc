#include "replay/report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/test_util.h"

namespace feedrank {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Report = v1::ReplayReport;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr char kEvilName[] = "cand <script>alert(1)</script> & co";

void AddMetric(Report::Variant* v, const std::string& name, double value, double lo,
               double hi) {
  Report::Metric* m = v->add_metrics();
  m->set_name(name);
  m->set_value(value);
  m->set_lo(lo);
  m->set_hi(hi);
  m->set_users(120);
  m->set_requests(800);
}

void AddDelta(Report::Variant* v, const std::string& name, double delta, double lo,
              double hi, bool significant, bool few_users) {
  Report::Delta* d = v->add_deltas();
  d->set_name(name);
  d->set_delta(delta);
  d->set_lo(lo);
  d->set_hi(hi);
  d->set_significant(significant);
  d->set_users(few_users ? 12 : 120);
  d->set_few_users(few_users);
}

// A log-normal-ish latency curve: 101 percentiles from `p50_us`, spread `s`.
void AddLatency(Report::Variant* v, const std::string& stage, double p50_us, double s) {
  Report::Latency* l = v->add_latency();
  l->set_stage(stage);
  for (int p = 0; p <= 100; ++p) {
    const double z = (p - 50) / 50.0;
    l->add_percentiles_us(p50_us * std::exp(s * z * (1 + (p > 90 ? (p - 90) / 5.0 : 0))));
  }
  l->set_p50_us(l->percentiles_us(50));
  l->set_p95_us(l->percentiles_us(95));
  l->set_p99_us(l->percentiles_us(99));
  l->set_max_us(l->percentiles_us(100));
}

// Three variants (one named to break HTML), a NaN metric, a sweep, page diffs.
Report MakeReport() {
  Report r;
  r.set_log_path("/data/logs/replay-2024-05-01.log");
  r.set_mode("in-process");
  r.set_records(1000);
  r.set_skipped_records(3);
  r.set_users(120);
  r.set_requests_with_positives(800);
  r.set_users_with_positives(110);
  r.set_k(10);
  r.set_positive_objective("like");
  r.set_seed(42);
  r.set_bootstrap_resamples(1000);
  r.set_latency_included(true);
  r.set_threads(2);
  r.add_notes(
      "Metrics count only the outcomes the log holds: a video the live system never "
      "showed has no outcome, so a variant that surfaces new videos is scored as if "
      "they were never watched.");
  r.add_notes("Latency is measured in-process on this machine <b>not</b> the fleet.");

  Report::Variant* base = r.add_variants();
  base->set_name("base");
  base->set_config_path("configs/base.yaml");
  base->set_config_version("v7");
  base->set_bundle_path("bundles/2024-05-01");
  base->set_bundle_version("b1");
  base->set_qps(512.25);
  base->set_requests(1000);
  AddMetric(base, "ndcg@10", 0.1234, 0.1200, 0.1270);
  AddMetric(base, "recall@10", 0.3012, 0.2950, 0.3080);
  AddMetric(base, "auc/like", 0.7100, 0.7000, 0.7200);
  AddMetric(base, "coverage", 0.4200, 0.4200, 0.4200);
  AddMetric(base, "mean_age_hours", 1234.5, 1200.0, 1260.0);
  AddLatency(base, "request", 900, 0.5);
  AddLatency(base, "retrieve", 300, 0.4);
  AddLatency(base, "score", 450, 0.3);

  Report::Variant* cand = r.add_variants();
  cand->set_name(kEvilName);
  cand->set_config_path("configs/cand&\"x\".yaml");
  cand->set_qps(480.5);
  cand->set_requests(1000);
  cand->set_errors(3);
  (*cand->mutable_errors_by_code())["UNAVAILABLE"] = 1;
  (*cand->mutable_errors_by_code())["DEADLINE_EXCEEDED"] = 2;
  cand->set_same_pages(620);
  AddMetric(cand, "ndcg@10", 0.1301, 0.1260, 0.1340);
  AddMetric(cand, "recall@10", 0.3050, 0.2990, 0.3110);
  AddMetric(cand, "auc/like", kNaN, kNaN, kNaN);
  AddMetric(cand, "coverage", 0.4500, 0.4500, 0.4500);
  AddMetric(cand, "mean_age_hours", 1100.0, 1050.0, 1150.0);
  AddDelta(cand, "ndcg@10", 0.0067, 0.0041, 0.0093, true, false);
  AddDelta(cand, "recall@10", 0.0038, -0.0010, 0.0086, false, false);
  AddDelta(cand, "auc/like", kNaN, kNaN, kNaN, false, false);
  AddDelta(cand, "mean_age_hours", -134.5, -180.0, -90.0, true, false);
  AddLatency(cand, "request", 1100, 0.55);
  AddLatency(cand, "retrieve", 420, 0.45);
  AddLatency(cand, "score", 460, 0.3);

  Report::Variant* wide = r.add_variants();
  wide->set_name("ann_beam_width=256");
  wide->set_sweep_override("ann_beam_width=256");
  wide->set_qps(300);
  wide->set_requests(1000);
  wide->set_same_pages(700);
  AddMetric(wide, "ndcg@10", 0.1250, 0.1210, 0.1290);
  AddMetric(wide, "recall@10", 0.3020, 0.2960, 0.3090);
  AddMetric(wide, "auc/like", 0.7110, 0.7010, 0.7210);
  AddDelta(wide, "ndcg@10", 0.0016, -0.0030, 0.0062, false, true);
  AddDelta(wide, "recall@10", 0.0008, -0.0004, 0.0020, false, false);
  AddDelta(wide, "auc/like", 0.0010, -0.0020, 0.0040, false, false);
  AddLatency(wide, "request", 2500, 0.5);
  AddLatency(wide, "retrieve", 1800, 0.4);
  // A stage measured only by this variant, with holes in its percentiles.
  AddLatency(wide, "rerank", 60, 0.2);
  wide->mutable_latency(2)->set_percentiles_us(10, kNaN);
  wide->mutable_latency(2)->set_percentiles_us(100, kInf);
  wide->mutable_latency(2)->set_max_us(kInf);

  const int widths[] = {32, 64, 128, 256, 512};
  const double recall[] = {0.81, 0.90, 0.95, 0.98, 0.995};
  const double positives[] = {0.70, 0.78, 0.82, 0.84, 0.845};
  const double p50[] = {180, 260, 420, 800, 1500};
  for (int i = 0; i < 5; ++i) {
    Report::SweepPoint* p = r.add_sweep();
    p->set_param("ann_beam_width");
    p->set_value(widths[i]);
    p->set_recall_vs_exact(recall[i]);
    p->set_positive_recall(positives[i]);
    p->set_ann_p50_us(p50[i]);
    p->set_ann_p99_us(p50[i] * 2.2);
  }

  for (int i = 0; i < 3; ++i) {
    Report::RequestDiff* d = r.add_top_diffs();
    d->set_variant(i == 2 ? "ann_beam_width=256" : kEvilName);
    d->set_request_id(absl::StrCat("req-<", i, ">"));
    d->set_user_id(1000 + i);
    d->set_jaccard(0.1 * i);
    for (int j = 0; j < 10; ++j) {
      d->add_base_page(500 + j);
      d->add_variant_page(j < 3 * i ? 500 + j : 900 + j);
    }
    d->set_base_hits(1);
    d->set_variant_hits(2 + i);
  }
  return r;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n');
}

// The lines of the table that follows the line starting with `title`, up to
// the next blank line.
std::vector<std::string> TableAfter(const std::string& text, const std::string& title) {
  std::vector<std::string> out;
  bool in = false;
  for (const std::string& line : Lines(text)) {
    if (!in) {
      in = absl::StartsWith(line, title);
      continue;
    }
    if (line.empty()) break;
    out.push_back(line);
  }
  return out;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST(RenderReportTextTest, HeaderNamesTheRun) {
  const std::string text = RenderReportText(MakeReport());
  EXPECT_THAT(text, HasSubstr("/data/logs/replay-2024-05-01.log"));
  EXPECT_THAT(text, HasSubstr("in-process"));
  EXPECT_THAT(text, HasSubstr("1000 (3 skipped)"));
  EXPECT_THAT(text, HasSubstr("120 (110 with positives)"));
  EXPECT_THAT(text, HasSubstr("requests with positives  800"));
  EXPECT_THAT(text, HasSubstr("42 (1000 bootstrap resamples)"));
  // Error codes sorted, whatever the map's order.
  EXPECT_THAT(text, HasSubstr("3 (DEADLINE_EXCEEDED 2, UNAVAILABLE 1)"));
}

TEST(RenderReportTextTest, MetricsSideBySideInAlignedColumns) {
  const std::string text = RenderReportText(MakeReport());
  const std::vector<std::string> table = TableAfter(text, "Metrics");
  ASSERT_GE(table.size(), 7u) << text;
  const std::string& header = table[0];
  EXPECT_THAT(header, HasSubstr("metric"));
  // Every column starts where its header does.
  for (const std::string& name : {std::string("base"), std::string(kEvilName)}) {
    const size_t col = header.find(name);
    ASSERT_NE(col, std::string::npos) << header;
    for (size_t i = 1; i < table.size(); ++i) {
      ASSERT_GT(table[i].size(), col) << table[i];
      EXPECT_EQ(table[i][col - 1], ' ') << table[i];
      EXPECT_NE(table[i][col], ' ') << table[i];
    }
  }
  EXPECT_THAT(text, HasSubstr("0.1234 [0.1200, 0.1270]"));
  EXPECT_THAT(text, HasSubstr("1234.5 [1200.0, 1260.0]"));
  // Not resampled: the bare value.
  EXPECT_THAT(text, Not(HasSubstr("0.4200 [")));
  EXPECT_THAT(text, HasSubstr("0.4200"));
}

TEST(RenderReportTextTest, NonFiniteValuesReadNa) {
  const std::string text = RenderReportText(MakeReport());
  EXPECT_THAT(text, HasSubstr("n/a"));
  EXPECT_FALSE(std::regex_search(
      text, std::regex("(^|[^a-z])-?(nan|inf)([^a-z]|$)", std::regex::icase)))
      << text;
}

TEST(RenderReportTextTest, DeltasMarkSignificanceAndFewUsers) {
  const std::string text = RenderReportText(MakeReport());
  const std::vector<std::string> table = TableAfter(text, "Deltas vs base");
  ASSERT_GE(table.size(), 3u) << text;
  std::string ndcg;
  for (const std::string& line : table) {
    if (absl::StrContains(line, "ndcg@10")) ndcg = line;
  }
  EXPECT_THAT(ndcg, HasSubstr("+0.0067 [+0.0041, +0.0093] *"));
  EXPECT_THAT(ndcg, HasSubstr("+0.0016 [-0.0030, +0.0062] (few users)"));
  EXPECT_THAT(text, HasSubstr("-134.5 [-180.0, -90.0] *"));
}

TEST(RenderReportTextTest, LatencySweepDiffsAndNotes) {
  const std::string text = RenderReportText(MakeReport());
  EXPECT_THAT(text, HasSubstr("Latency\n"));
  EXPECT_THAT(text, HasSubstr("Throughput\n"));
  EXPECT_THAT(text, HasSubstr("512.2"));
  EXPECT_THAT(text, HasSubstr("Sweep\n"));
  EXPECT_THAT(text, HasSubstr("ann_beam_width"));
  EXPECT_THAT(text, HasSubstr("req-<1>"));
  // Notes last, wrapped.
  const size_t notes = text.find("\nNotes\n");
  ASSERT_NE(notes, std::string::npos);
  EXPECT_GT(notes, text.find("Sweep"));
  for (const std::string& line : Lines(text)) EXPECT_LE(line.size(), 110u) << line;
}

TEST(RenderReportTextTest, WithoutLatencySaysSo) {
  Report r = MakeReport();
  r.set_latency_included(false);
  const std::string text = RenderReportText(r);
  EXPECT_THAT(text, HasSubstr("Latency: not measured"));
  EXPECT_THAT(text, Not(HasSubstr("Throughput")));
}

TEST(RenderReportTextTest, ControlCharactersDoNotReachTheTerminal) {
  Report r = MakeReport();
  r.mutable_variants(0)->set_name("base\x1b[31m");
  const std::string text = RenderReportText(r);
  EXPECT_THAT(text, Not(HasSubstr("\x1b")));
  EXPECT_THAT(text, HasSubstr("base?[31m"));
}

TEST(HtmlEscapeTest, EscapesMarkupCharacters) {
  EXPECT_EQ(HtmlEscape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(HtmlEscape("plain"), "plain");
}

TEST(RenderReportHtmlTest, OneSelfContainedDocument) {
  const std::string html = RenderReportHtml(MakeReport());
  EXPECT_TRUE(absl::StartsWith(html, "<!DOCTYPE html>\n")) << html.substr(0, 100);
  EXPECT_TRUE(absl::EndsWith(html, "</html>\n"));
  EXPECT_THAT(html, Not(HasSubstr("http://")));
  EXPECT_THAT(html, Not(HasSubstr("https://")));
  for (const char* external : {"<script", "<link", "<img", "<iframe", "<object", "<embed",
                               "src=", "href=", "url(", "@import", "@font-face"}) {
    EXPECT_THAT(html, Not(HasSubstr(external))) << external;
  }
}

TEST(RenderReportHtmlTest, EscapesEveryStringFromTheReport) {
  const std::string html = RenderReportHtml(MakeReport());
  EXPECT_THAT(html, HasSubstr("cand &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
  EXPECT_THAT(html, HasSubstr("configs/cand&amp;&quot;x&quot;.yaml"));
  EXPECT_THAT(html, HasSubstr("req-&lt;1&gt;"));
  EXPECT_THAT(html, HasSubstr("&lt;b&gt;not&lt;/b&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("<b>not</b>")));
}

TEST(RenderReportHtmlTest, AChartPerSection) {
  const std::string html = RenderReportHtml(MakeReport());
  // The forest plot, one CDF per stage (request, retrieve, score, rerank),
  // the sweep.
  EXPECT_EQ(Count(html, "<svg"), 6u);
  EXPECT_EQ(Count(html, "</svg>"), 6u);
  EXPECT_THAT(html, HasSubstr("Deltas vs base</h2>"));
  EXPECT_THAT(html, HasSubstr("aria-label=\"Latency CDF: request\""));
  EXPECT_THAT(html, HasSubstr("aria-label=\"Sweep: recall against ANN latency\""));
  for (const char* id : {"summary", "notes", "variants", "metrics", "deltas", "latency",
                         "sweep", "diffs"}) {
    EXPECT_THAT(html, HasSubstr(absl::StrCat("<section id=\"", id, "\""))) << id;
  }
  // "request" comes first among the stages.
  EXPECT_LT(html.find("<h3>request</h3>"), html.find("<h3>retrieve</h3>"));
  // Notes come before the figures.
  EXPECT_LT(html.find("id=\"notes\""), html.find("id=\"metrics\""));
}

TEST(RenderReportHtmlTest, NonFiniteValuesAreNaAndNotDrawn) {
  const std::string html = RenderReportHtml(MakeReport());
  EXPECT_THAT(html, HasSubstr(">n/a<"));
  EXPECT_FALSE(std::regex_search(
      html, std::regex("(^|[^a-z])-?(nan|inf)([^a-z]|$)", std::regex::icase)));
}

TEST(RenderReportHtmlTest, SameReportSameBytes) {
  const Report r = MakeReport();
  const std::string first = RenderReportHtml(r);
  // A copy (its map may iterate differently) renders the same.
  Report copy;
  copy.ParseFromString(r.SerializeAsString());
  EXPECT_EQ(first, RenderReportHtml(copy));
  EXPECT_EQ(RenderReportText(r), RenderReportText(copy));
}

TEST(RenderReportHtmlTest, OneVariantAndEmptySections) {
  Report r;
  r.set_log_path("empty.jsonl");
  Report::Variant* only = r.add_variants();
  only->set_name("solo");
  AddMetric(only, "ndcg@10", 0.5, 0.4, 0.6);
  const std::string html = RenderReportHtml(r);
  EXPECT_THAT(html, HasSubstr("Only one variant: nothing to compare."));
  EXPECT_THAT(html, HasSubstr("Not measured in this run."));
  EXPECT_THAT(html, HasSubstr("No per-request page differences recorded."));
  EXPECT_THAT(html, HasSubstr("The report has no notes."));
  EXPECT_THAT(html, Not(HasSubstr("<svg")));
  EXPECT_THAT(html, Not(HasSubstr("id=\"sweep\"")));
  const std::string text = RenderReportText(r);
  EXPECT_THAT(text, HasSubstr("solo"));
  EXPECT_THAT(text, Not(HasSubstr("Deltas")));

  // Nothing at all still renders.
  EXPECT_THAT(RenderReportHtml(Report()), HasSubstr("No variants."));
  EXPECT_THAT(RenderReportText(Report()), HasSubstr("Metrics: none"));
}

TEST(RenderReportHtmlTest, EightVariantsEightColours) {
  std::set<std::string> colours;
  for (size_t i = 0; i < 8; ++i) colours.insert(VariantColour(i));
  EXPECT_EQ(colours.size(), 8u);

  Report r = MakeReport();
  r.mutable_variants()->DeleteSubrange(1, 2);
  for (int i = 1; i < 8; ++i) {
    Report::Variant* v = r.add_variants();
    v->set_name(absl::StrCat("variant-", i));
    AddMetric(v, "ndcg@10", 0.12 + 0.001 * i, 0.11, 0.13 + 0.001 * i);
    AddDelta(v, "ndcg@10", 0.001 * i, 0.001 * i - 0.003, 0.001 * i + 0.003, i > 3, false);
    AddLatency(v, "request", 900 + 100 * i, 0.5);
  }
  const std::string html = RenderReportHtml(r);
  for (size_t i = 0; i < 8; ++i) EXPECT_THAT(html, HasSubstr(VariantColour(i)));
  EXPECT_THAT(html, HasSubstr("variant-7"));
}

TEST(RenderReportHtmlTest, SweepWithoutLatencyPlotsAgainstTheParameter) {
  Report r = MakeReport();
  r.set_latency_included(false);
  for (Report::SweepPoint& p : *r.mutable_sweep()) {
    p.set_ann_p50_us(0);
    p.set_ann_p99_us(0);
  }
  const std::string html = RenderReportHtml(r);
  EXPECT_THAT(html, HasSubstr("ann_beam_width (no latency measured)"));
}

// --- A real browser --------------------------------------------------------

std::string FindChromium() {
  if (const char* env = std::getenv("FEEDRANK_CHROMIUM"); env != nullptr && *env)
    return env;
  for (const char* path : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

// Flags for a run that touches nothing outside `dir` and cannot reach any
// host: every name resolves to nothing, background services are off.
std::vector<std::string> ChromiumArgs(const std::string& chromium,
                                      const testing::TempDir& dir) {
  return {chromium,
          "--headless=new",
          "--no-sandbox",
          "--disable-gpu",
          "--no-first-run",
          "--no-default-browser-check",
          "--disable-extensions",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--disable-default-apps",
          "--host-resolver-rules=MAP * ~NOTFOUND",
          "--user-data-dir=" + dir.Sub("profile"),
          "--log-net-log=" + dir.Sub("net-log.json")};
}

constexpr double kChromiumTimeoutS = 20;

class ChromiumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    chromium_ = FindChromium();
    if (chromium_.empty()) {
      GTEST_SKIP()
          << "no chromium (/usr/bin/chromium; scripts/setup.sh installs it): the "
             "HTML report is not rendered in a browser";
    }
    html_path_ = dir_.Sub("report.html");
    testing::WriteFile(html_path_, RenderReportHtml(MakeReport()));
  }

  // The URLs the page asked the network for, from Chromium's net log: the
  // requests whose isolation key is the file:// page (the browser's own
  // background requests, which the host resolver rules also stop, have
  // another key), the file itself aside.
  std::vector<std::string> PageNetworkUrls() {
    return PageUrlsIn(dir_.Sub("net-log.json"));
  }

  static std::vector<std::string> PageUrlsIn(const std::string& net_log) {
    const std::string log = testing::ReadFile(net_log);
    EXPECT_FALSE(log.empty()) << "no net log at " << net_log;
    std::vector<std::string> urls;
    // A request's parameters: an object whose keys are in order (a sorted
    // dictionary), with string or number values between the two keys.
    const std::regex page_request(
        "\"network_isolation_key\":\"file://[^\"]*\","
        "(?:\"[a-z_]+\":(?:\"[^\"]*\"|[-0-9.a-z]+),)*"
        "\"url\":\"([^\"]*)\"");
    for (auto it = std::sregex_iterator(log.begin(), log.end(), page_request);
         it != std::sregex_iterator(); ++it) {
      const std::string u = (*it)[1];
      if (!absl::StartsWith(u, "file://")) urls.push_back(u);
    }
    return urls;
  }

  testing::TempDir dir_;
  std::string chromium_;
  std::string html_path_;
};

TEST_F(ChromiumTest, ScreenshotRenders) {
  const std::string png = dir_.Sub("report.png");
  std::vector<std::string> argv = ChromiumArgs(chromium_, dir_);
  argv.push_back("--window-size=1280,2400");
  argv.push_back("--screenshot=" + png);
  argv.push_back("file://" + html_path_);
  std::string output;
  ASSERT_EQ(testing::RunProcess(argv, kChromiumTimeoutS, &output), 0) << output;
  const std::string bytes = testing::ReadFile(png);
  ASSERT_GT(bytes.size(), 24u) << output;
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: width and height, big-endian, at bytes 16 and 20.
  auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1280u);
  EXPECT_EQ(be32(20), 2400u);
  // A blank page of that size compresses to a few KB; tables and charts
  // take far more.
  EXPECT_GT(bytes.size(), 60'000u);
  EXPECT_THAT(PageNetworkUrls(), ::testing::IsEmpty());
  if (const char* keep = std::getenv("FEEDRANK_KEEP_SCREENSHOT");
      keep != nullptr && *keep) {
    // To look at: the screenshot, and the page beside it.
    testing::WriteFile(keep, bytes);
    testing::WriteFile(std::string(keep) + ".html", testing::ReadFile(html_path_));
  }
}

TEST_F(ChromiumTest, RenderedDomHasTheChartsAndNoExternalResource) {
  std::vector<std::string> argv = ChromiumArgs(chromium_, dir_);
  argv.push_back("--dump-dom");
  argv.push_back("file://" + html_path_);
  std::string output;
  ASSERT_EQ(testing::RunProcess(argv, kChromiumTimeoutS, &output), 0) << output;
  // stdout and stderr share `output`: the DOM is the part from <html to </html>.
  const size_t begin = output.find("<html");
  const size_t end = output.rfind("</html>");
  ASSERT_NE(begin, std::string::npos) << output;
  ASSERT_NE(end, std::string::npos) << output;
  const std::string dom = output.substr(begin, end - begin);
  EXPECT_EQ(Count(dom, "<svg"), 6u);
  EXPECT_GT(Count(dom, "<polyline"), 8u);
  EXPECT_GT(Count(dom, "<circle"), 10u);
  EXPECT_THAT(dom, HasSubstr(">base<"));
  EXPECT_THAT(dom, HasSubstr("cand &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
  EXPECT_THAT(dom, HasSubstr("ann_beam_width=256"));
  // The name stayed text: the parser made no element of it.
  EXPECT_THAT(dom, Not(HasSubstr("<script")));
  for (const char* external :
       {"http://", "https://", "<link", "<img", "<iframe", "src=", "href="}) {
    EXPECT_THAT(dom, Not(HasSubstr(external))) << external;
  }
  EXPECT_THAT(PageNetworkUrls(), ::testing::IsEmpty());
}

// The net-log check above would see a page's request: a page with an
// external image and style sheet shows both.
TEST_F(ChromiumTest, NetLogShowsAPagesExternalRequests) {
  const std::string page = dir_.Sub("external.html");
  testing::WriteFile(
      page,
      "<!DOCTYPE html><html><body><img src=\"http://example.invalid/x.png\">"
      "<link rel=\"stylesheet\" href=\"https://example.invalid/a.css\">"
      "</body></html>");
  std::vector<std::string> argv = ChromiumArgs(chromium_, dir_);
  argv.push_back("--dump-dom");
  argv.push_back("file://" + page);
  std::string output;
  ASSERT_EQ(testing::RunProcess(argv, kChromiumTimeoutS, &output), 0) << output;
  EXPECT_THAT(PageNetworkUrls(),
              ::testing::IsSupersetOf(
                  {"http://example.invalid/x.png", "https://example.invalid/a.css"}));
}

}  // namespace
}  // namespace feedrank

#include "replay/report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace feedrank {
namespace {

using Report = v1::ReplayReport;

// ---------------------------------------------------------------------------
// Numbers, shared by both forms.

bool Finite(double v) { return std::isfinite(v); }

constexpr int kDecimals = 4;

// A metric's value with `decimals` decimals.
std::string FormatValue(double v, int decimals = kDecimals) {
  if (!Finite(v)) return "n/a";
  return absl::StrFormat("%.*f", decimals, v);
}

// A delta, always signed; a value that rounds to zero reads "+0.0000".
std::string FormatSigned(double v, int decimals = kDecimals) {
  if (!Finite(v)) return "n/a";
  if (std::abs(v) < 0.5 * std::pow(10.0, -decimals)) v = 0.0;
  return absl::StrFormat("%+.*f", decimals, v);
}

// "0.1234 [0.1200, 0.1270]"; the bare value when the interval is the point
// (not resampled), "n/a" when the value is.
std::string FormatWithInterval(double v, double lo, double hi, bool is_signed,
                               int decimals) {
  auto f = [is_signed, decimals](double x) {
    return is_signed ? FormatSigned(x, decimals) : FormatValue(x, decimals);
  };
  if (!Finite(v)) return "n/a";
  if (Finite(lo) && Finite(hi) && lo == v && hi == v) return f(v);
  return absl::StrCat(f(v), " [", f(lo), ", ", f(hi), "]");
}

// Microseconds, in the unit that keeps 3 significant-ish digits.
std::string FormatMicros(double us, absl::string_view micro) {
  if (!Finite(us)) return "n/a";
  if (std::abs(us) < 1000) return absl::StrFormat("%.0f%s", us, micro);
  if (std::abs(us) < 1e6) return absl::StrFormat("%.2fms", us / 1e3);
  return absl::StrFormat("%.2fs", us / 1e6);
}

std::string FormatQps(double qps) {
  if (!Finite(qps)) return "n/a";
  return absl::StrFormat("%.1f", qps);
}

// The first variant's name, or "the first variant".
std::string BaseName(const Report& report) {
  if (report.variants().empty()) return "the first variant";
  return report.variants(0).name();
}

// Metric names in order of first appearance over the variants.
std::vector<std::string> MetricNames(const Report& report) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const Report::Variant& v : report.variants()) {
    for (const Report::Metric& m : v.metrics()) {
      if (seen.insert(m.name()).second) names.push_back(m.name());
    }
  }
  return names;
}

std::vector<std::string> DeltaNames(const Report& report) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (int i = 1; i < report.variants_size(); ++i) {
    for (const Report::Delta& d : report.variants(i).deltas()) {
      if (seen.insert(d.name()).second) names.push_back(d.name());
    }
  }
  return names;
}

// Stage names, "request" first, the others in order of first appearance.
std::vector<std::string> StageNames(const Report& report) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  bool has_request = false;
  for (const Report::Variant& v : report.variants()) {
    for (const Report::Latency& l : v.latency()) {
      if (l.stage() == "request") {
        has_request = true;
      } else if (seen.insert(l.stage()).second) {
        names.push_back(l.stage());
      }
    }
  }
  if (has_request) names.insert(names.begin(), "request");
  return names;
}

const Report::Metric* FindMetric(const Report::Variant& v, absl::string_view name) {
  for (const Report::Metric& m : v.metrics()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

const Report::Delta* FindDelta(const Report::Variant& v, absl::string_view name) {
  for (const Report::Delta& d : v.deltas()) {
    if (d.name() == name) return &d;
  }
  return nullptr;
}

const Report::Latency* FindLatency(const Report::Variant& v, absl::string_view stage) {
  for (const Report::Latency& l : v.latency()) {
    if (l.stage() == stage) return &l;
  }
  return nullptr;
}

// The decimals of a metric's row (its values and its deltas): 4, or 1 when a
// variant's value reaches 100 (hours, counts), so a column reads alike.
int RowDecimals(const Report& r, absl::string_view name) {
  bool large = false;
  for (int i = 0; i < r.variants_size(); ++i) {
    const Report::Variant& v = r.variants(i);
    if (const Report::Metric* m = FindMetric(v, name); m != nullptr) {
      large |= Finite(m->value()) && std::abs(m->value()) >= 100;
    } else if (const Report::Delta* d = FindDelta(v, name); d != nullptr) {
      large |= Finite(d->delta()) && std::abs(d->delta()) >= 100;
    }
  }
  return large ? 1 : kDecimals;
}

// "3 (DEADLINE_EXCEEDED 2, UNAVAILABLE 1)", codes sorted (a proto map has no
// order of its own).
std::string FormatErrors(const Report::Variant& v) {
  std::string out = absl::StrCat(v.errors());
  if (v.errors_by_code().empty()) return out;
  std::map<std::string, int64_t> sorted(v.errors_by_code().begin(),
                                        v.errors_by_code().end());
  std::vector<std::string> parts;
  for (const auto& [code, n] : sorted) parts.push_back(absl::StrCat(code, " ", n));
  return absl::StrCat(out, " (", absl::StrJoin(parts, ", "), ")");
}

std::string FormatConfig(const Report::Variant& v) {
  std::string out = v.config_path().empty() ? "-" : v.config_path();
  if (!v.config_version().empty()) absl::StrAppend(&out, " (", v.config_version(), ")");
  return out;
}

std::string FormatBundle(const Report::Variant& v) {
  std::string out = v.bundle_path().empty() ? "-" : v.bundle_path();
  if (!v.bundle_version().empty()) absl::StrAppend(&out, " (", v.bundle_version(), ")");
  return out;
}

// ---------------------------------------------------------------------------
// Text.

// The report's own strings on a terminal: control characters (an escape
// sequence in a config name) become '?'.
std::string Clean(absl::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

// Columns on a terminal: UTF-8 characters, not bytes.
size_t DisplayWidth(absl::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

constexpr size_t kTextWidth = 100;

// Rows of cells, the first column the row names; rendered with columns
// padded to their widest cell and two spaces between, split into several
// tables (each with the first column again) when wider than kTextWidth.
class TextTable {
 public:
  // `right[i]`: column i right-aligned (numbers).
  TextTable(std::vector<std::string> header, std::vector<bool> right)
      : header_(std::move(header)), right_(std::move(right)) {
    right_.resize(header_.size(), false);
  }

  void AddRow(std::vector<std::string> row) {
    row.resize(header_.size());
    rows_.push_back(std::move(row));
  }

  bool empty() const { return rows_.empty(); }

  std::string Render() const {
    const size_t n = header_.size();
    std::vector<size_t> width(n, 0);
    for (size_t c = 0; c < n; ++c) {
      width[c] = DisplayWidth(header_[c]);
      for (const auto& row : rows_) width[c] = std::max(width[c], DisplayWidth(row[c]));
    }
    // Greedy packing of columns 1.. after column 0.
    std::vector<std::vector<size_t>> groups;
    size_t used = kTextWidth;
    for (size_t c = 1; c < n; ++c) {
      if (groups.empty() || used + 2 + width[c] > kTextWidth) {
        groups.push_back({});
        used = 2 + width[0];
      }
      groups.back().push_back(c);
      used += 2 + width[c];
    }
    if (groups.empty()) groups.push_back({});
    std::string out;
    for (size_t g = 0; g < groups.size(); ++g) {
      if (g > 0) out += "\n";
      std::vector<size_t> cols = {0};
      cols.insert(cols.end(), groups[g].begin(), groups[g].end());
      auto line = [&](const std::vector<std::string>& cells) {
        std::string l = "  ";
        for (size_t i = 0; i < cols.size(); ++i) {
          const size_t c = cols[i];
          if (i > 0) l += "  ";
          const std::string pad(width[c] - DisplayWidth(cells[c]), ' ');
          l += right_[c] ? pad + cells[c] : cells[c] + pad;
        }
        while (!l.empty() && l.back() == ' ') l.pop_back();
        return l + "\n";
      };
      out += line(header_);
      std::vector<std::string> rule(n);
      for (size_t c = 0; c < n; ++c) rule[c] = std::string(width[c], '-');
      out += line(rule);
      for (const auto& row : rows_) out += line(row);
    }
    return out;
  }

 private:
  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// `text` wrapped at word boundaries to `width` columns, the first line after
// `first`, the others after `rest`.
std::string Wrap(absl::string_view text, absl::string_view first, absl::string_view rest,
                 size_t width) {
  std::string out(first);
  size_t col = DisplayWidth(first);
  bool line_empty = true;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    const size_t w = DisplayWidth(word);
    if (!line_empty && col + 1 + w > width) {
      absl::StrAppend(&out, "\n", rest);
      col = DisplayWidth(rest);
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++col;
    }
    absl::StrAppend(&out, word);
    col += w;
    line_empty = false;
  }
  return out + "\n";
}

std::string TextHeader(const Report& r) {
  TextTable t({"", ""}, {false, false});
  t.AddRow({"log", Clean(r.log_path())});
  t.AddRow({"mode", Clean(r.mode())});
  t.AddRow(
      {"records", absl::StrCat(r.records(), " (", r.skipped_records(), " skipped)")});
  t.AddRow({"users",
            absl::StrCat(r.users(), " (", r.users_with_positives(), " with positives)")});
  t.AddRow({"requests with positives", absl::StrCat(r.requests_with_positives())});
  t.AddRow({"k", absl::StrCat(r.k())});
  if (!r.positive_objective().empty()) {
    t.AddRow({"positive objective", Clean(r.positive_objective())});
  }
  t.AddRow({"seed", absl::StrCat(r.seed(), " (", r.bootstrap_resamples(),
                                 " bootstrap resamples)")});
  if (r.threads() > 0) t.AddRow({"threads", absl::StrCat(r.threads())});
  // A two-column table without its header and rule.
  std::string body = t.Render();
  const size_t second = body.find('\n', body.find('\n') + 1);
  return "feedrank replay report\n" + body.substr(second + 1);
}

std::string TextVariants(const Report& r) {
  TextTable t({"#", "variant", "config", "bundle", "override", "requests", "errors",
               "degraded", "same pages"},
              {true, false, false, false, false, true, false, true, true});
  for (int i = 0; i < r.variants_size(); ++i) {
    const Report::Variant& v = r.variants(i);
    t.AddRow({absl::StrCat(i), Clean(v.name()), Clean(FormatConfig(v)),
              Clean(FormatBundle(v)),
              v.sweep_override().empty() ? "-" : Clean(v.sweep_override()),
              absl::StrCat(v.requests()), Clean(FormatErrors(v)),
              absl::StrCat(v.degraded()), i == 0 ? "-" : absl::StrCat(v.same_pages())});
  }
  return "\nVariants\n" + t.Render();
}

std::string TextMetrics(const Report& r) {
  const std::vector<std::string> names = MetricNames(r);
  if (names.empty()) return "\nMetrics: none\n";
  std::vector<std::string> header = {"metric"};
  for (const Report::Variant& v : r.variants()) header.push_back(Clean(v.name()));
  TextTable t(header, {});
  for (const std::string& name : names) {
    const int decimals = RowDecimals(r, name);
    std::vector<std::string> row = {Clean(name)};
    for (const Report::Variant& v : r.variants()) {
      const Report::Metric* m = FindMetric(v, name);
      row.push_back(m == nullptr ? "-"
                                 : FormatWithInterval(m->value(), m->lo(), m->hi(),
                                                      /*is_signed=*/false, decimals));
    }
    t.AddRow(std::move(row));
  }
  return "\nMetrics (value [95% bootstrap interval over users])\n" + t.Render();
}

std::string TextDeltas(const Report& r) {
  if (r.variants_size() < 2) return "";
  const std::vector<std::string> names = DeltaNames(r);
  const std::string base = Clean(BaseName(r));
  if (names.empty()) return absl::StrCat("\nDeltas vs ", base, ": none\n");
  std::vector<std::string> header = {"metric"};
  for (int i = 1; i < r.variants_size(); ++i)
    header.push_back(Clean(r.variants(i).name()));
  TextTable t(header, {});
  for (const std::string& name : names) {
    const int decimals = RowDecimals(r, name);
    std::vector<std::string> row = {Clean(name)};
    for (int i = 1; i < r.variants_size(); ++i) {
      const Report::Delta* d = FindDelta(r.variants(i), name);
      if (d == nullptr) {
        row.push_back("-");
        continue;
      }
      std::string cell =
          FormatWithInterval(d->delta(), d->lo(), d->hi(), /*is_signed=*/true, decimals);
      if (d->significant()) cell += " *";
      if (d->few_users()) cell += " (few users)";
      row.push_back(std::move(cell));
    }
    t.AddRow(std::move(row));
  }
  return absl::StrCat("\nDeltas vs ", base,
                      " (paired bootstrap 95% interval; * = excludes 0; few users = "
                      "not to be trusted)\n",
                      t.Render());
}

std::string TextLatency(const Report& r) {
  if (!r.latency_included()) return "\nLatency: not measured in this run\n";
  std::string out;
  const std::vector<std::string> stages = StageNames(r);
  if (!stages.empty()) {
    TextTable t({"stage", "variant", "p50", "p95", "p99", "max"},
                {false, false, true, true, true, true});
    for (const std::string& stage : stages) {
      for (const Report::Variant& v : r.variants()) {
        const Report::Latency* l = FindLatency(v, stage);
        if (l == nullptr) continue;
        t.AddRow({Clean(stage), Clean(v.name()), FormatMicros(l->p50_us(), "us"),
                  FormatMicros(l->p95_us(), "us"), FormatMicros(l->p99_us(), "us"),
                  FormatMicros(l->max_us(), "us")});
      }
    }
    out += "\nLatency\n" + t.Render();
  }
  TextTable q({"variant", "qps"}, {false, true});
  for (const Report::Variant& v : r.variants())
    q.AddRow({Clean(v.name()), FormatQps(v.qps())});
  out += "\nThroughput\n" + q.Render();
  return out;
}

std::string TextSweep(const Report& r) {
  if (r.sweep().empty()) return "";
  TextTable t(
      {"param", "value", "recall_vs_exact", "positive_recall", "ann p50", "ann p99"},
      {false, true, true, true, true, true});
  for (const Report::SweepPoint& p : r.sweep()) {
    t.AddRow({Clean(p.param()), absl::StrCat(p.value()), FormatValue(p.recall_vs_exact()),
              FormatValue(p.positive_recall()),
              r.latency_included() ? FormatMicros(p.ann_p50_us(), "us") : "-",
              r.latency_included() ? FormatMicros(p.ann_p99_us(), "us") : "-"});
  }
  return "\nSweep\n" + t.Render();
}

constexpr int kTextDiffs = 10;

std::string TextDiffs(const Report& r) {
  if (r.top_diffs().empty()) return "";
  TextTable t({"variant", "request", "user", "jaccard", "hits base", "hits variant"},
              {false, false, true, true, true, true});
  for (int i = 0; i < r.top_diffs_size() && i < kTextDiffs; ++i) {
    const Report::RequestDiff& d = r.top_diffs(i);
    t.AddRow({Clean(d.variant()), Clean(d.request_id()), absl::StrCat(d.user_id()),
              Finite(d.jaccard()) ? absl::StrFormat("%.3f", d.jaccard()) : "n/a",
              absl::StrCat(d.base_hits()), absl::StrCat(d.variant_hits())});
  }
  std::string out = absl::StrCat("\nPages that changed most (vs ", Clean(BaseName(r)),
                                 ")\n", t.Render());
  if (r.top_diffs_size() > kTextDiffs) {
    absl::StrAppend(&out, "  ... ", r.top_diffs_size() - kTextDiffs,
                    " more in the JSON and HTML reports\n");
  }
  return out;
}

std::string TextNotes(const Report& r) {
  if (r.notes().empty()) return "";
  std::string out = "\nNotes\n";
  for (const std::string& note : r.notes())
    out += Wrap(Clean(note), "  - ", "    ", kTextWidth);
  return out;
}

// ---------------------------------------------------------------------------
// HTML.

// Coordinates: one decimal, enough at screen resolution and stable.
std::string C(double v) { return absl::StrFormat("%.1f", v); }

// A number for an axis tick: as short as it can be.
std::string Tick(double v) {
  if (std::abs(v) < 1e-12) return "0";
  std::string s = absl::StrFormat("%.6g", v);
  return s;
}

// A "nice" step (1, 2, 2.5 or 5 times a power of ten) of at least `raw`.
double NiceStep(double raw) {
  if (!(raw > 0) || !Finite(raw)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * p >= raw * (1 - 1e-9)) return m * p;
  }
  return 10 * p;
}

// A linear axis over [lo, hi] with about `ticks` nice ticks.
struct LinearAxis {
  double lo = 0;
  double hi = 1;
  double step = 0.25;

  static LinearAxis Over(double lo, double hi, int ticks) {
    LinearAxis a;
    if (!(hi > lo)) {
      const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
      lo -= pad;
      hi += pad;
    }
    a.step = NiceStep((hi - lo) / ticks);
    a.lo = std::floor(lo / a.step + 1e-9) * a.step;
    a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
    return a;
  }
  std::vector<double> Ticks() const {
    std::vector<double> t;
    for (int i = 0;; ++i) {
      const double v = lo + i * step;
      if (v > hi + step * 1e-6) break;
      t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    }
    return t;
  }
};

// Maps [d0, d1] onto [p0, p1].
double Scale(double v, double d0, double d1, double p0, double p1) {
  if (d1 == d0) return (p0 + p1) / 2;
  return p0 + (v - d0) / (d1 - d0) * (p1 - p0);
}

// `s` cut to `n` characters (UTF-8 aware) with "…".
std::string Truncate(absl::string_view s, size_t n) {
  if (DisplayWidth(s) <= n) return std::string(s);
  size_t chars = 0;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == n - 1) break;
      ++chars;
    }
  }
  return absl::StrCat(s.substr(0, i), "\xE2\x80\xA6");
}

// SVG <text>; `text` is escaped here.
std::string SvgText(double x, double y, absl::string_view text, absl::string_view cls,
                    absl::string_view anchor = "start") {
  return absl::StrCat("<text x=\"", C(x), "\" y=\"", C(y), "\" class=\"", cls,
                      "\" text-anchor=\"", anchor, "\">", HtmlEscape(text), "</text>");
}

std::string SvgLine(double x1, double y1, double x2, double y2, absl::string_view cls) {
  return absl::StrCat("<line x1=\"", C(x1), "\" y1=\"", C(y1), "\" x2=\"", C(x2),
                      "\" y2=\"", C(y2), "\" class=\"", cls, "\"/>");
}

std::string SvgOpen(double width, double height, absl::string_view label) {
  return absl::StrCat("<svg class=\"chart\" width=\"", C(width), "\" height=\"",
                      C(height), "\" viewBox=\"0 0 ", C(width), " ", C(height),
                      "\" role=\"img\" aria-label=\"", HtmlEscape(label), "\">");
}

const char* const kStyle = R"css(
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --band: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
       Arial, sans-serif; color: var(--fg); margin: 24px auto; max-width: 1180px;
       padding: 0 16px; font-variant-numeric: tabular-nums; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 4px; }
p.sub, .muted { color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0 10px; max-width: 100%; }
td { overflow-wrap: anywhere; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.n { text-align: right; white-space: nowrap; }
td.page { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
          font-size: 12px; }
.ci { color: var(--muted); font-size: 12px; white-space: nowrap; }
.na { color: var(--muted); font-style: italic; }
.sw { font-size: 15px; line-height: 1; }
.notes { border: 2px solid #d4a72c; background: #fff8c5; border-radius: 6px;
         padding: 10px 16px; margin: 14px 0; }
.notes h2 { border: 0; margin: 0 0 4px; }
.notes li { margin: 3px 0; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px;
             margin: 8px 0; }
dl.summary dt { color: var(--muted); }
dl.summary dd { margin: 0; word-break: break-all; }
svg.chart { display: block; margin: 6px 0 4px; }
svg text { font-size: 12px; fill: var(--fg); }
svg text.small { font-size: 11px; fill: var(--muted); }
svg text.bold { font-weight: 600; }
svg text.sig { font-weight: 600; }
svg .axis { stroke: #57606a; stroke-width: 1; }
svg .grid { stroke: #e6e8eb; stroke-width: 1; }
svg .zero { stroke: #1f2328; stroke-width: 1.2; stroke-dasharray: 4 3; }
svg .frame { fill: none; stroke: var(--line); }
mark.sig { background: #fff1a8; padding: 0 2px; }
b.new { color: #1a7f37; }
)css";

std::string HtmlSummary(const Report& r) {
  std::string out = "<section id=\"summary\"><h2>Summary</h2><dl class=\"summary\">";
  auto item = [&out](absl::string_view key, absl::string_view value) {
    absl::StrAppend(&out, "<dt>", HtmlEscape(key), "</dt><dd>", HtmlEscape(value),
                    "</dd>");
  };
  item("log", r.log_path());
  item("mode", r.mode());
  item("records", absl::StrCat(r.records(), " (", r.skipped_records(), " skipped)"));
  item("users",
       absl::StrCat(r.users(), " (", r.users_with_positives(), " with positives)"));
  item("requests with positives", absl::StrCat(r.requests_with_positives()));
  item("k", absl::StrCat(r.k()));
  if (!r.positive_objective().empty()) item("positive objective", r.positive_objective());
  item("seed",
       absl::StrCat(r.seed(), " (", r.bootstrap_resamples(), " bootstrap resamples)"));
  if (r.threads() > 0) item("threads", absl::StrCat(r.threads()));
  item("latency", r.latency_included() ? "measured" : "not measured in this run");
  item("variants", absl::StrCat(r.variants_size()));
  out += "</dl></section>\n";
  return out;
}

std::string HtmlNotes(const Report& r) {
  std::string out =
      "<section id=\"notes\" class=\"notes\"><h2>What this replay can and cannot "
      "tell</h2>";
  if (r.notes().empty()) {
    out += "<p class=\"muted\">The report has no notes.</p>";
  } else {
    out += "<ul>";
    for (const std::string& note : r.notes())
      absl::StrAppend(&out, "<li>", HtmlEscape(note), "</li>");
    out += "</ul>";
  }
  out += "</section>\n";
  return out;
}

// A square in the variant's colour, kept on the line of the name after it.
std::string Swatch(size_t i) {
  return absl::StrCat("<span class=\"sw\" style=\"color:", VariantColour(i),
                      "\">&#9632;</span>&nbsp;");
}

std::string HtmlVariants(const Report& r) {
  std::string out = "<section id=\"variants\"><h2>Variants</h2>";
  if (r.variants().empty()) return out + "<p class=\"na\">No variants.</p></section>\n";
  out +=
      "<table><tr><th>#</th><th>variant</th><th>config</th><th>bundle</th>"
      "<th>override</th><th>requests</th><th>errors</th><th>degraded</th>"
      "<th>same pages</th><th>qps</th></tr>";
  for (int i = 0; i < r.variants_size(); ++i) {
    const Report::Variant& v = r.variants(i);
    absl::StrAppend(&out, "<tr><td class=\"n\">", i, "</td><td>", Swatch(i),
                    HtmlEscape(v.name()), "</td><td>", HtmlEscape(FormatConfig(v)),
                    "</td><td>", HtmlEscape(FormatBundle(v)), "</td><td>",
                    HtmlEscape(v.sweep_override().empty() ? "-" : v.sweep_override()),
                    "</td><td class=\"n\">", v.requests(), "</td><td>",
                    HtmlEscape(FormatErrors(v)), "</td><td class=\"n\">", v.degraded(),
                    "</td><td class=\"n\">", i == 0 ? "-" : absl::StrCat(v.same_pages()),
                    "</td><td class=\"n\">",
                    r.latency_included() ? FormatQps(v.qps()) : "-", "</td></tr>");
  }
  out += "</table></section>\n";
  return out;
}

std::string NaSpan() { return "<span class=\"na\">n/a</span>"; }

std::string HtmlMetrics(const Report& r) {
  std::string out =
      "<section id=\"metrics\"><h2>Metrics</h2><p class=\"sub\">Value and its 95% "
      "bootstrap interval over users; n = users / requests the figure rests on.</p>";
  const std::vector<std::string> names = MetricNames(r);
  if (names.empty()) return out + "<p class=\"na\">No metrics.</p></section>\n";
  out += "<table><tr><th>metric</th>";
  for (int i = 0; i < r.variants_size(); ++i) {
    absl::StrAppend(&out, "<th>", Swatch(i), HtmlEscape(r.variants(i).name()), "</th>");
  }
  out += "</tr>";
  for (const std::string& name : names) {
    const int decimals = RowDecimals(r, name);
    absl::StrAppend(&out, "<tr><td>", HtmlEscape(name), "</td>");
    for (const Report::Variant& v : r.variants()) {
      const Report::Metric* m = FindMetric(v, name);
      if (m == nullptr) {
        out += "<td class=\"n na\">-</td>";
        continue;
      }
      if (!Finite(m->value())) {
        out += "<td class=\"n\">" + NaSpan() + "</td>";
        continue;
      }
      absl::StrAppend(&out, "<td class=\"n\">", FormatValue(m->value(), decimals));
      if (!(m->lo() == m->value() && m->hi() == m->value())) {
        absl::StrAppend(&out, " <span class=\"ci\">[", FormatValue(m->lo(), decimals),
                        ", ", FormatValue(m->hi(), decimals), "]</span>");
      }
      absl::StrAppend(&out, "<br><span class=\"ci\">n = ", m->users(), " / ",
                      m->requests(), "</span></td>");
    }
    out += "</tr>";
  }
  out += "</table></section>\n";
  return out;
}

// The forest plot: per metric a group of rows (one per variant after the
// first) on the metric's own axis, symmetric around 0, since metrics differ in
// scale (ndcg vs hours).
std::string ForestPlot(const Report& r, const std::vector<std::string>& names) {
  constexpr double kWidth = 1080, kLabelX = 8, kPlotX0 = 250, kPlotX1 = 690, kTextX = 710,
                   kHeadH = 22, kRowH = 22, kAxisH = 22, kGap = 10;
  const int rows = r.variants_size() - 1;
  const double height = names.size() * (kHeadH + rows * kRowH + kAxisH + kGap) + 10;
  std::string body;
  double y = 6;
  for (const std::string& name : names) {
    const int decimals = RowDecimals(r, name);
    double extent = 0;
    for (int i = 1; i < r.variants_size(); ++i) {
      const Report::Delta* d = FindDelta(r.variants(i), name);
      if (d == nullptr) continue;
      for (double v : {d->delta(), d->lo(), d->hi()}) {
        if (Finite(v)) extent = std::max(extent, std::abs(v));
      }
    }
    const double step = NiceStep(extent > 0 ? extent * 1.05 / 2 : 0.5);
    const double m = 2 * step;
    auto x_of = [&](double v) { return Scale(v, -m, m, kPlotX0, kPlotX1); };
    const double top = y;
    const double rows_top = y + kHeadH;
    const double rows_bottom = rows_top + rows * kRowH;
    absl::StrAppend(&body, "<rect x=\"", C(kPlotX0), "\" y=\"", C(rows_top),
                    "\" width=\"", C(kPlotX1 - kPlotX0), "\" height=\"", C(rows * kRowH),
                    "\" fill=\"#f6f8fa\"/>");
    body += SvgText(kLabelX, top + 16, name, "bold");
    for (int t = -2; t <= 2; ++t) {
      const double x = x_of(t * step);
      if (t != 0) body += SvgLine(x, rows_top, x, rows_bottom, "grid");
      body += SvgLine(x, rows_bottom, x, rows_bottom + 4, "axis");
      body +=
          SvgText(x, rows_bottom + 16, t == 0 ? "0" : (t > 0 ? "+" : "") + Tick(t * step),
                  "small", "middle");
    }
    body += SvgLine(kPlotX0, rows_bottom, kPlotX1, rows_bottom, "axis");
    for (int i = 1; i < r.variants_size(); ++i) {
      const double row_y = rows_top + (i - 1) * kRowH;
      const double cy = row_y + kRowH / 2;
      const std::string colour = VariantColour(i);
      const Report::Variant& v = r.variants(i);
      const Report::Delta* d = FindDelta(v, name);
      const bool sig = d != nullptr && d->significant() && Finite(d->delta());
      if (sig) {
        absl::StrAppend(&body, "<rect x=\"2\" y=\"", C(row_y + 1), "\" width=\"",
                        C(kWidth - 4), "\" height=\"", C(kRowH - 2),
                        "\" fill=\"#fff1a8\" opacity=\"0.55\"/>");
      }
      absl::StrAppend(&body, "<rect x=\"", C(kLabelX + 14), "\" y=\"", C(cy - 5),
                      "\" width=\"10\" height=\"10\" rx=\"2\" fill=\"", colour, "\"/>");
      body +=
          absl::StrCat("<text x=\"", C(kLabelX + 30), "\" y=\"", C(cy + 4), "\" class=\"",
                       sig ? "sig" : "", "\">", HtmlEscape(Truncate(v.name(), 30)),
                       "<title>", HtmlEscape(v.name()), "</title></text>");
      if (d == nullptr || !Finite(d->delta())) {
        body += SvgText(kTextX, cy + 4, d == nullptr ? "-" : "n/a", "small");
        continue;
      }
      const char* dash = d->few_users() ? " stroke-dasharray=\"5 3\"" : "";
      const std::string stroke = sig ? colour : "#8c959f";
      if (Finite(d->lo()) && Finite(d->hi())) {
        const double x0 = x_of(std::max(d->lo(), -m)), x1 = x_of(std::min(d->hi(), m));
        absl::StrAppend(&body, "<line x1=\"", C(x0), "\" y1=\"", C(cy), "\" x2=\"", C(x1),
                        "\" y2=\"", C(cy), "\" stroke=\"", stroke, "\" stroke-width=\"",
                        sig ? "3" : "2", "\"", dash, "/>");
        for (double x : {x0, x1}) {
          absl::StrAppend(&body, "<line x1=\"", C(x), "\" y1=\"", C(cy - 5), "\" x2=\"",
                          C(x), "\" y2=\"", C(cy + 5), "\" stroke=\"", stroke,
                          "\" stroke-width=\"1.5\"/>");
        }
      }
      absl::StrAppend(&body, "<circle cx=\"", C(x_of(d->delta())), "\" cy=\"", C(cy),
                      "\" r=\"", sig ? "5" : "4", "\" fill=\"", sig ? colour : "#ffffff",
                      "\" stroke=\"", sig ? "#1f2328" : colour,
                      "\" stroke-width=\"1.5\"/>");
      std::string label =
          FormatWithInterval(d->delta(), d->lo(), d->hi(), true, decimals);
      if (sig) label += "  *";
      body += SvgText(kTextX, cy + 4, label, sig ? "sig" : "");
      if (d->few_users()) {
        body += SvgText(kTextX + 215, cy + 4,
                        absl::StrCat("few users (", d->users(), ")"), "small");
      }
    }
    // The zero line over the rows, drawn last to stay visible.
    body += SvgLine(x_of(0), rows_top - 2, x_of(0), rows_bottom, "zero");
    y = rows_bottom + kAxisH + kGap;
  }
  return SvgOpen(kWidth, height, "Deltas forest plot") + body + "</svg>";
}

std::string HtmlDeltas(const Report& r) {
  std::string out = absl::StrCat("<section id=\"deltas\"><h2>Deltas vs ",
                                 HtmlEscape(BaseName(r)), "</h2>");
  if (r.variants_size() < 2) {
    return out + "<p class=\"na\">Only one variant: nothing to compare.</p></section>\n";
  }
  const std::vector<std::string> names = DeltaNames(r);
  if (names.empty()) return out + "<p class=\"na\">No deltas.</p></section>\n";
  out +=
      "<p class=\"sub\">Each row: a variant minus the first, over the users both have "
      "the metric for; the dot is the difference, the bar its paired-bootstrap 95% "
      "interval, the dashed line zero. Each metric has its own axis. "
      "<mark class=\"sig\">Highlighted</mark> rows (filled dot, *) have an interval "
      "that excludes 0; a dashed bar rests on too few users to be trusted.</p>";
  out += ForestPlot(r, names);
  out += "</section>\n";
  return out;
}

// The label of a tick at mult * 10^e microseconds.
std::string DecadeLabel(int e, double mult) {
  const double us = mult * std::pow(10.0, e);
  if (us < 1) return absl::StrFormat("%.3g\xC2\xB5s", us);
  if (us < 1000) return absl::StrFormat("%.0f\xC2\xB5s", us);
  if (us < 1e6) return absl::StrFormat("%.0fms", us / 1e3);
  return absl::StrFormat("%.0fs", us / 1e6);
}

// A log-scale axis of microseconds: [l0, l1] in log10(us), the data's range
// a little wider, at least a third of a decade (so one value still gets an
// axis).
struct LogRange {
  double l0 = 0;
  double l1 = 1;

  // REQUIRES: 0 < lo <= hi
  static LogRange Over(double lo, double hi) {
    LogRange r{std::log10(lo), std::log10(hi)};
    if (r.l1 - r.l0 < 0.3) {
      const double mid = (r.l0 + r.l1) / 2;
      r.l0 = mid - 0.15;
      r.l1 = mid + 0.15;
    }
    const double pad = (r.l1 - r.l0) * 0.04;
    r.l0 -= pad;
    r.l1 += pad;
    return r;
  }
};

// The x axis's ticks and grid lines over a plot from x0 to x1, y0 (top) to
// y1 (bottom): a tick at 1, 2, ..., 9 times each power of ten in range;
// labels at the powers of ten, or also at 2 and 5 times them, or at all,
// whichever is the first to give 3 labels.
std::string LogXTicks(const LogRange& range, double x0, double x1, double y0, double y1) {
  std::vector<std::pair<int, int>> ticks;  // (e, m): m * 10^e
  for (int e = static_cast<int>(std::floor(range.l0));
       e <= static_cast<int>(std::ceil(range.l1)); ++e) {
    for (int m = 1; m <= 9; ++m) {
      const double lv = std::log10(m * std::pow(10.0, e));
      if (lv >= range.l0 && lv <= range.l1) ticks.emplace_back(e, m);
    }
  }
  auto labelled_at = [](int level, int m) {
    return m == 1 || level == 2 || (level == 1 && (m == 2 || m == 5));
  };
  int level = 0;
  for (; level < 2; ++level) {
    int labels = 0;
    for (const auto& [e, m] : ticks) labels += labelled_at(level, m);
    if (labels >= 3) break;
  }
  std::string s;
  for (const auto& [e, m] : ticks) {
    const double x = Scale(std::log10(m * std::pow(10.0, e)), range.l0, range.l1, x0, x1);
    const bool labelled = labelled_at(level, m);
    s += SvgLine(x, y1, x, y1 + (labelled ? 5 : 3), "axis");
    if (labelled) {
      s += SvgLine(x, y0, x, y1, "grid");
      s += SvgText(x, y1 + 18, DecadeLabel(e, m), m == 1 ? "" : "small", "middle");
    }
  }
  return s;
}

std::string CdfChart(const Report& r, const std::string& stage) {
  constexpr double kWidth = 1000, kHeight = 330, kX0 = 64, kX1 = 600, kY0 = 14, kY1 = 270,
                   kLegendX = 630;
  double lo = INFINITY, hi = -INFINITY;
  for (const Report::Variant& v : r.variants()) {
    const Report::Latency* l = FindLatency(v, stage);
    if (l == nullptr) continue;
    for (double p : l->percentiles_us()) {
      if (Finite(p) && p > 0) {
        lo = std::min(lo, p);
        hi = std::max(hi, p);
      }
    }
  }
  if (!(lo <= hi)) return "<p class=\"na\">No percentiles for this stage.</p>";
  const LogRange range = LogRange::Over(lo, hi);
  auto x_of = [&](double us) {
    return Scale(std::log10(us), range.l0, range.l1, kX0, kX1);
  };
  auto y_of = [&](double share) { return Scale(share, 0, 1, kY1, kY0); };
  std::string s = SvgOpen(kWidth, kHeight, absl::StrCat("Latency CDF: ", stage));
  absl::StrAppend(&s, "<rect x=\"", C(kX0), "\" y=\"", C(kY0), "\" width=\"",
                  C(kX1 - kX0), "\" height=\"", C(kY1 - kY0), "\" class=\"frame\"/>");
  s += LogXTicks(range, kX0, kX1, kY0, kY1);
  for (int q = 0; q <= 4; ++q) {
    const double y = y_of(q / 4.0);
    if (q > 0 && q < 4) s += SvgLine(kX0, y, kX1, y, "grid");
    s += SvgLine(kX0 - 5, y, kX0, y, "axis");
    s += SvgText(kX0 - 8, y + 4, absl::StrCat(q * 25, "%"), "", "end");
  }
  s += SvgLine(kX0, kY1, kX1, kY1, "axis");
  s += SvgLine(kX0, kY0, kX0, kY1, "axis");
  s += SvgText((kX0 + kX1) / 2, kY1 + 40, "latency (\xC2\xB5s, log scale)", "", "middle");
  absl::StrAppend(&s, "<text x=\"14\" y=\"", C((kY0 + kY1) / 2),
                  "\" text-anchor=\"middle\" transform=\"rotate(-90 14 ",
                  C((kY0 + kY1) / 2), ")\">share of requests at most x</text>");
  double legend_y = kY0 + 10;
  s += SvgText(kLegendX, legend_y, "variant", "small");
  s += SvgText(kWidth - 10, legend_y, "p50 / p99", "small", "end");
  legend_y += 20;
  for (int i = 0; i < r.variants_size(); ++i) {
    const Report::Latency* l = FindLatency(r.variants(i), stage);
    if (l == nullptr) continue;
    const std::string colour = VariantColour(i);
    std::vector<std::string> points;
    const int n = l->percentiles_us_size();
    for (int p = 0; p < n; ++p) {
      const double us = l->percentiles_us(p);
      if (!Finite(us) || us <= 0) continue;
      const double share = n > 1 ? static_cast<double>(p) / (n - 1) : 1.0;
      points.push_back(absl::StrCat(C(x_of(us)), ",", C(y_of(share))));
    }
    if (!points.empty()) {
      absl::StrAppend(&s, "<polyline fill=\"none\" stroke=\"", colour,
                      "\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"",
                      absl::StrJoin(points, " "), "\"><title>",
                      HtmlEscape(r.variants(i).name()), "</title></polyline>");
    }
    absl::StrAppend(&s, "<line x1=\"", C(kLegendX), "\" y1=\"", C(legend_y - 4),
                    "\" x2=\"", C(kLegendX + 22), "\" y2=\"", C(legend_y - 4),
                    "\" stroke=\"", colour, "\" stroke-width=\"3\"/>");
    absl::StrAppend(&s, "<text x=\"", C(kLegendX + 28), "\" y=\"", C(legend_y), "\">",
                    HtmlEscape(Truncate(r.variants(i).name(), 30)), "<title>",
                    HtmlEscape(r.variants(i).name()), "</title></text>");
    s += SvgText(kWidth - 10, legend_y,
                 absl::StrCat(FormatMicros(l->p50_us(), "\xC2\xB5s"), " / ",
                              FormatMicros(l->p99_us(), "\xC2\xB5s")),
                 "small", "end");
    legend_y += 20;
  }
  return s + "</svg>";
}

std::string HtmlLatency(const Report& r) {
  std::string out = "<section id=\"latency\"><h2>Latency</h2>";
  if (!r.latency_included()) {
    return out + "<p class=\"na\">Not measured in this run.</p></section>\n";
  }
  const std::vector<std::string> stages = StageNames(r);
  if (stages.empty()) return out + "<p class=\"na\">No latency recorded.</p></section>\n";
  out +=
      "<p class=\"sub\">Cumulative distribution per stage: for a latency x (log "
      "scale), the share of requests that took at most x. A curve further left is "
      "faster; the top of the curve is the tail.</p>";
  for (const std::string& stage : stages) {
    absl::StrAppend(&out, "<h3>", HtmlEscape(stage), "</h3>", CdfChart(r, stage));
  }
  out +=
      "<table><tr><th>stage</th><th>variant</th><th>p50</th><th>p95</th><th>p99</th>"
      "<th>max</th></tr>";
  for (const std::string& stage : stages) {
    for (int i = 0; i < r.variants_size(); ++i) {
      const Report::Latency* l = FindLatency(r.variants(i), stage);
      if (l == nullptr) continue;
      absl::StrAppend(&out, "<tr><td>", HtmlEscape(stage), "</td><td>", Swatch(i),
                      HtmlEscape(r.variants(i).name()), "</td>");
      for (double v : {l->p50_us(), l->p95_us(), l->p99_us(), l->max_us()}) {
        absl::StrAppend(&out, "<td class=\"n\">",
                        Finite(v) ? FormatMicros(v, "\xC2\xB5s") : NaSpan(), "</td>");
      }
      out += "</tr>";
    }
  }
  out += "</table></section>\n";
  return out;
}

std::string SweepChart(const Report& r) {
  constexpr double kWidth = 900, kHeight = 380, kX0 = 70, kX1 = 860, kY0 = 24, kY1 = 300;
  bool by_latency = false;
  for (const Report::SweepPoint& p : r.sweep()) {
    if (Finite(p.ann_p50_us()) && p.ann_p50_us() > 0) by_latency = true;
  }
  // On a log axis by latency (a sweep typically doubles its parameter);
  // else on a linear one by the parameter.
  auto x_value = [&](const Report::SweepPoint& p) {
    if (!by_latency) return static_cast<double>(p.value());
    return p.ann_p50_us() > 0 ? p.ann_p50_us() : NAN;
  };
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const Report::SweepPoint& p : r.sweep()) {
    const double x = x_value(p);
    if (!Finite(x)) continue;
    xlo = std::min(xlo, x);
    xhi = std::max(xhi, x);
    if (by_latency && Finite(p.ann_p99_us())) xhi = std::max(xhi, p.ann_p99_us());
    for (double y : {p.recall_vs_exact(), p.positive_recall()}) {
      if (Finite(y)) {
        ylo = std::min(ylo, y);
        yhi = std::max(yhi, y);
      }
    }
  }
  if (!(xlo <= xhi) || !(ylo <= yhi)) {
    return "<p class=\"na\">No finite sweep points to draw.</p>";
  }
  const LinearAxis xa = LinearAxis::Over(xlo, xhi, 6);
  const LogRange xr = LogRange::Over(xlo, xhi);
  // A little room below the lowest point; recall stops at 1.
  const double ypad = std::max(yhi - ylo, 0.01) * 0.06;
  const LinearAxis ya =
      LinearAxis::Over(std::max(0.0, ylo - ypad), std::min(1.0, yhi + ypad), 5);
  auto x_of = [&](double v) {
    return by_latency ? Scale(std::log10(v), xr.l0, xr.l1, kX0, kX1)
                      : Scale(v, xa.lo, xa.hi, kX0, kX1);
  };
  auto y_of = [&](double v) { return Scale(v, ya.lo, ya.hi, kY1, kY0); };
  const std::string param = r.sweep(0).param();
  std::string s = SvgOpen(kWidth, kHeight, "Sweep: recall against ANN latency");
  absl::StrAppend(&s, "<rect x=\"", C(kX0), "\" y=\"", C(kY0), "\" width=\"",
                  C(kX1 - kX0), "\" height=\"", C(kY1 - kY0), "\" class=\"frame\"/>");
  if (by_latency) {
    s += LogXTicks(xr, kX0, kX1, kY0, kY1);
  } else {
    for (double t : xa.Ticks()) {
      const double x = x_of(t);
      s += SvgLine(x, kY0, x, kY1, "grid");
      s += SvgLine(x, kY1, x, kY1 + 5, "axis");
      s += SvgText(x, kY1 + 18, Tick(t), "", "middle");
    }
  }
  for (double t : ya.Ticks()) {
    const double y = y_of(t);
    s += SvgLine(kX0, y, kX1, y, "grid");
    s += SvgLine(kX0 - 5, y, kX0, y, "axis");
    s += SvgText(kX0 - 8, y + 4, Tick(t), "", "end");
  }
  s += SvgLine(kX0, kY1, kX1, kY1, "axis");
  s += SvgLine(kX0, kY0, kX0, kY1, "axis");
  s += SvgText((kX0 + kX1) / 2, kY1 + 40,
               by_latency ? "ANN latency (\xC2\xB5s, log scale; dot: p50, whisker to p99)"
                          : absl::StrCat(param, " (no latency measured)"),
               "", "middle");
  absl::StrAppend(&s, "<text x=\"16\" y=\"", C((kY0 + kY1) / 2),
                  "\" text-anchor=\"middle\" transform=\"rotate(-90 16 ",
                  C((kY0 + kY1) / 2), ")\">recall</text>");
  // Points in order of x, so each series is a curve.
  std::vector<const Report::SweepPoint*> points;
  for (const Report::SweepPoint& p : r.sweep()) {
    if (Finite(x_value(p))) points.push_back(&p);
  }
  std::stable_sort(points.begin(), points.end(), [&](const auto* a, const auto* b) {
    return x_value(*a) < x_value(*b);
  });
  struct Series {
    const char* name;
    const char* colour;
    double (Report::SweepPoint::*get)() const;
    const char* dash;
    double label_dy;
    bool whiskers;  // the p99 whiskers, drawn on one series only
  };
  const Series series[] = {
      {"recall_vs_exact", "#4e79a7", &Report::SweepPoint::recall_vs_exact, "", -9, true},
      {"positive_recall", "#e15759", &Report::SweepPoint::positive_recall,
       " stroke-dasharray=\"6 4\"", 17, false},
  };
  for (const Series& se : series) {
    std::vector<std::string> line;
    std::string marks;
    for (const Report::SweepPoint* p : points) {
      const double yv = (p->*se.get)();
      if (!Finite(yv)) continue;
      const double x = x_of(x_value(*p)), y = y_of(yv);
      line.push_back(absl::StrCat(C(x), ",", C(y)));
      if (se.whiskers && by_latency && Finite(p->ann_p99_us()) &&
          p->ann_p99_us() > x_value(*p)) {
        absl::StrAppend(&marks, "<line x1=\"", C(x), "\" y1=\"", C(y), "\" x2=\"",
                        C(x_of(p->ann_p99_us())), "\" y2=\"", C(y), "\" stroke=\"",
                        se.colour, "\" stroke-width=\"1\" opacity=\"0.6\"/>");
        absl::StrAppend(&marks, "<line x1=\"", C(x_of(p->ann_p99_us())), "\" y1=\"",
                        C(y - 3), "\" x2=\"", C(x_of(p->ann_p99_us())), "\" y2=\"",
                        C(y + 3), "\" stroke=\"", se.colour,
                        "\" stroke-width=\"1\" opacity=\"0.6\"/>");
      }
      absl::StrAppend(&marks, "<circle cx=\"", C(x), "\" cy=\"", C(y),
                      "\" r=\"4\" fill=\"", se.colour, "\"><title>",
                      HtmlEscape(absl::StrCat(p->param(), "=", p->value(), ": ", se.name,
                                              " ", FormatValue(yv))),
                      "</title></circle>");
      marks += SvgText(x, y + se.label_dy, absl::StrCat(p->value()), "small", "middle");
    }
    if (line.size() > 1) {
      absl::StrAppend(&s, "<polyline fill=\"none\" stroke=\"", se.colour,
                      "\" stroke-width=\"2\"", se.dash, " points=\"",
                      absl::StrJoin(line, " "), "\"/>");
    }
    s += marks;
  }
  // Legend under the axis title.
  double lx = kX0;
  const double ly = kHeight - 14;
  for (const Series& se : series) {
    absl::StrAppend(&s, "<line x1=\"", C(lx), "\" y1=\"", C(ly - 4), "\" x2=\"",
                    C(lx + 24), "\" y2=\"", C(ly - 4), "\" stroke=\"", se.colour,
                    "\" stroke-width=\"2\"", se.dash, "/>");
    s += SvgText(lx + 30, ly, se.name, "");
    lx += 170;
  }
  s += SvgText(lx, ly, absl::StrCat("labels: ", param), "small");
  return s + "</svg>";
}

std::string HtmlSweep(const Report& r) {
  if (r.sweep().empty()) return "";
  std::string out =
      "<section id=\"sweep\"><h2>Sweep</h2><p class=\"sub\">The retrieval stage's recall "
      "(of the exact top candidates, and of the relevant videos) against the ANN "
      "source's latency, one point per parameter value.</p>";
  out += SweepChart(r);
  out +=
      "<table><tr><th>param</th><th>value</th><th>recall_vs_exact</th>"
      "<th>positive_recall</th><th>ANN p50</th><th>ANN p99</th></tr>";
  for (const Report::SweepPoint& p : r.sweep()) {
    absl::StrAppend(&out, "<tr><td>", HtmlEscape(p.param()), "</td><td class=\"n\">",
                    p.value(), "</td>");
    for (double v : {p.recall_vs_exact(), p.positive_recall()}) {
      absl::StrAppend(&out, "<td class=\"n\">", Finite(v) ? FormatValue(v) : NaSpan(),
                      "</td>");
    }
    for (double v : {p.ann_p50_us(), p.ann_p99_us()}) {
      absl::StrAppend(&out, "<td class=\"n\">",
                      !r.latency_included() ? "-"
                      : Finite(v)           ? FormatMicros(v, "\xC2\xB5s")
                                            : NaSpan(),
                      "</td>");
    }
    out += "</tr>";
  }
  out += "</table></section>\n";
  return out;
}

constexpr int kHtmlPageIds = 8;

// A page's first ids, those missing from `other` in bold.
std::string HtmlPage(const google::protobuf::RepeatedField<uint64_t>& page,
                     const google::protobuf::RepeatedField<uint64_t>& other) {
  if (page.empty()) return "<span class=\"na\">(empty)</span>";
  const std::set<uint64_t> in_other(other.begin(), other.end());
  std::vector<std::string> ids;
  for (int i = 0; i < page.size() && i < kHtmlPageIds; ++i) {
    ids.push_back(in_other.count(page[i])
                      ? absl::StrCat(page[i])
                      : absl::StrCat("<b class=\"new\">", page[i], "</b>"));
  }
  std::string out = absl::StrJoin(ids, " ");
  if (page.size() > kHtmlPageIds)
    absl::StrAppend(&out, " \xE2\x80\xA6 (+", page.size() - kHtmlPageIds, ")");
  return out;
}

std::string HtmlDiffs(const Report& r) {
  std::string out = absl::StrCat("<section id=\"diffs\"><h2>Pages that changed most (vs ",
                                 HtmlEscape(BaseName(r)), ")</h2>");
  if (r.top_diffs().empty()) {
    return out +
           "<p class=\"na\">No per-request page differences recorded.</p></section>\n";
  }
  out +=
      "<p class=\"sub\">Jaccard: overlap of the two pages as sets (1 = same videos). "
      "Hits: the request's relevant videos on each page. Ids in <b "
      "class=\"new\">bold</b> "
      "are not on the other page.</p>"
      "<table><tr><th>variant</th><th>request</th><th>user</th><th>Jaccard</th>"
      "<th>hits base &rarr; variant</th><th>base page</th><th>variant page</th></tr>";
  std::map<std::string, size_t> index;
  for (int i = 0; i < r.variants_size(); ++i) index.emplace(r.variants(i).name(), i);
  for (const Report::RequestDiff& d : r.top_diffs()) {
    const auto it = index.find(d.variant());
    absl::StrAppend(&out, "<tr><td>", it == index.end() ? "" : Swatch(it->second),
                    HtmlEscape(d.variant()), "</td><td>", HtmlEscape(d.request_id()),
                    "</td><td class=\"n\">", d.user_id(), "</td><td class=\"n\">",
                    Finite(d.jaccard()) ? absl::StrFormat("%.3f", d.jaccard()) : NaSpan(),
                    "</td><td class=\"n\">", d.base_hits(), " &rarr; ", d.variant_hits(),
                    "</td><td class=\"page\">", HtmlPage(d.base_page(), d.variant_page()),
                    "</td><td class=\"page\">", HtmlPage(d.variant_page(), d.base_page()),
                    "</td></tr>");
  }
  out += "</table></section>\n";
  return out;
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string VariantColour(size_t index) {
  // Tableau 10: distinct in hue and lightness, legible on white.
  static const char* const kColours[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                         "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
                                         "#ff9da7", "#bab0ac"};
  return kColours[index % (sizeof(kColours) / sizeof(kColours[0]))];
}

std::string RenderReportText(const v1::ReplayReport& report) {
  return absl::StrCat(TextHeader(report), TextVariants(report), TextMetrics(report),
                      TextDeltas(report), TextLatency(report), TextSweep(report),
                      TextDiffs(report), TextNotes(report));
}

std::string RenderReportHtml(const v1::ReplayReport& report) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>feedrank replay report</title><style>";
  out += kStyle;
  out += "</style></head>\n<body>\n<h1>feedrank replay report</h1>\n";
  out += HtmlSummary(report);
  out += HtmlNotes(report);
  out += HtmlVariants(report);
  out += HtmlMetrics(report);
  out += HtmlDeltas(report);
  out += HtmlLatency(report);
  out += HtmlSweep(report);
  out += HtmlDiffs(report);
  out += "</body></html>\n";
  return out;
}

}  // namespace feedrank

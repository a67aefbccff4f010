// How `feedrank replay` shows its ReplayReport (proto/feedrank/v1/replay.proto)
// to people: a plain-text table for the terminal, and one self-contained HTML
// page with its charts drawn as inline SVG (docs/REPLAY.md, "Reading the report").
//
// Both are pure functions of the report: the same report gives the same
// bytes (no clock, no locale; numbers through absl::StrFormat), so a report
// rendered twice, or on two machines, diffs clean. Thread-safe.
#ifndef FEEDRANK_REPLAY_REPORT_H_
#define FEEDRANK_REPLAY_REPORT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "feedrank/v1/replay.pb.h"

namespace feedrank {

// The stdout form: the run's header, the variants, their metrics side by side
// ("0.1234 [0.1200, 0.1270]"), the deltas against the first variant ("*" when
// the interval excludes 0, "few users" when it rests on too few users), the
// latency and throughput when report.latency_included(), the sweep, the
// pages that changed most, and the notes. Plain ASCII apart from the
// report's own strings (whose control characters become '?'); tables wider
// than ~100 columns are split into several, each repeating the row names.
// A value that is NaN or infinite reads "n/a".
std::string RenderReportText(const v1::ReplayReport& report);

// One HTML5 document with everything inline (CSS, SVG; no script, font,
// image or any other URL), which opens with no network: summary, notes,
// variants, metrics, a forest plot of the deltas, latency CDFs per stage
// (log-x), the sweep's recall against ANN latency, and the top page diffs.
// Every string from the report is HTML-escaped. Non-finite values read "n/a"
// and are left out of the charts; empty sections say so.
std::string RenderReportHtml(const v1::ReplayReport& report);

// `text` with & < > " ' replaced by their character references: safe in an
// element's text and in a quoted attribute value.
std::string HtmlEscape(absl::string_view text);

// The colour ("#rrggbb") the HTML report draws variant `index` in: 10
// distinct colours, repeating after that.
std::string VariantColour(size_t index);

}  // namespace feedrank

#endif  // FEEDRANK_REPLAY_REPORT_H_

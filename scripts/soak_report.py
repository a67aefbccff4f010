#!/usr/bin/env python3
"""The report of a soak run (scripts/soak.sh): a table per minute and an SVG.

Reads OUT/loadgen.jsonl (the load generator's --interval --json lines and
its final report), OUT/rss.tsv (the server's resident memory, sampled) and
OUT/events.tsv (config flips, bundle swaps). Prints a table, writes
OUT/soak.svg and OUT/soak.md, and exits 1 when a call failed or memory grew
more than --max-growth-mb between the end of the warm-up and the end.
"""
import argparse
import json
import os
import sys


def read_tsv(path):
    rows = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == len(header):
                rows.append(dict(zip(header, parts)))
    return rows


def median(xs):
    xs = sorted(xs)
    if not xs:
        return 0.0
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def polyline(points, x_of, y_of):
    return " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)


def svg_chart(intervals, rss, events, duration, path):
    """Two panels sharing the time axis: p99 (and p50) latency; resident MB."""
    width, left, right = 900, 70, 20
    panel_h, top, gap = 220, 30, 60
    plot_w = width - left - right
    height = top + 2 * panel_h + gap + 50
    t_max = max([duration] + [i["interval_end_s"] for i in intervals] +
                [r[0] for r in rss]) or 1.0

    def x_of(t):
        return left + plot_w * t / t_max

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']

    def panel(y0, title, series, unit):
        y_max = max([v for _, pts, _ in series for _, v in pts] + [1e-9]) * 1.15

        def y_of(v):
            return y0 + panel_h - panel_h * v / y_max

        out.append(f'<text x="{left}" y="{y0 - 8}" font-weight="bold">{title}</text>')
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" '
                   'fill="none" stroke="#999"/>')
        for k in range(5):
            v = y_max * k / 4
            y = y_of(v)
            out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                       'stroke="#eee"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                       f'{v:.1f}</text>')
        out.append(f'<text x="14" y="{y0 + panel_h / 2:.0f}" transform="rotate(-90 14 '
                   f'{y0 + panel_h / 2:.0f})" text-anchor="middle">{unit}</text>')
        for t, kind in events:
            color = "#c77" if kind == "swap" else "#7a7"
            out.append(f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{y0}" '
                       f'y2="{y0 + panel_h}" stroke="{color}" stroke-dasharray="3,3"/>')
        legend_x = left + 10
        for name, pts, color in series:
            if pts:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                           f'points="{polyline(pts, x_of, y_of)}"/>')
            out.append(f'<text x="{legend_x}" y="{y0 + 16}" fill="{color}">{name}</text>')
            legend_x += 90

    lat = [(i["interval_end_s"], i["p99_ms"]) for i in intervals if i["ok"] > 0]
    lat50 = [(i["interval_end_s"], i["p50_ms"]) for i in intervals if i["ok"] > 0]
    panel(top, "RankFeed latency per 10 s interval (open loop)",
          [("p99", lat, "#c33"), ("p50", lat50, "#36c")], "ms")
    mem = [(t, kb / 1024.0) for t, kb in rss]
    y1 = top + panel_h + gap
    panel(y1, "serve resident memory (VmRSS)", [("RSS", mem, "#333")], "MB")
    axis_y = y1 + panel_h
    for k in range(7):
        t = t_max * k / 6
        out.append(f'<text x="{x_of(t):.1f}" y="{axis_y + 18}" text-anchor="middle">'
                   f'{t:.0f} s</text>')
    out.append(f'<text x="{left}" y="{axis_y + 40}" fill="#555">dashed: green = config '
               'flip, red = bundle swap</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--warmup", type=float, default=60)
    ap.add_argument("--max-growth-mb", type=float, default=16)
    args = ap.parse_args()

    intervals, final = [], None
    with open(os.path.join(args.out, "loadgen.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            obj = json.loads(line)
            if "interval_end_s" in obj:
                intervals.append(obj)
            else:
                final = obj
    rss = [(float(r["t_s"]), float(r["rss_kb"])) for r in
           read_tsv(os.path.join(args.out, "rss.tsv")) if float(r["rss_kb"]) > 0]
    events = [(float(r["t_s"]), r["event"]) for r in
              read_tsv(os.path.join(args.out, "events.tsv"))]
    if final is None or not intervals or not rss:
        print("soak_report: the run left no final report, intervals or memory samples",
              file=sys.stderr)
        return 1
    duration = final.get("seconds", intervals[-1]["interval_end_s"])

    # The table: one row per minute.
    lines = ["| minute | calls ok | errors | degraded | p50 ms (median) | p99 ms (worst "
             "10 s) | RSS MB (end) | flips | swaps |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    # Each interval counts in the minute of its midpoint.
    prev = 0.0
    for i in intervals:
        i["mid_s"] = 0.5 * (prev + i["interval_end_s"])
        prev = i["interval_end_s"]
    minutes = int(max(i["mid_s"] for i in intervals) // 60) + 1
    for m in range(minutes):
        lo, hi = 60 * m, 60 * (m + 1)
        part = [i for i in intervals if lo <= i["mid_s"] < hi]
        if not part:
            continue
        mem = [kb for t, kb in rss if t <= hi]
        lines.append("| {} | {} | {} | {} | {:.2f} | {:.2f} | {:.1f} | {} | {} |".format(
            m + 1, sum(i["ok"] for i in part), sum(i["errors"] for i in part),
            sum(i["degraded"] for i in part),
            median([i["p50_ms"] for i in part if i["ok"] > 0]),
            max([i["p99_ms"] for i in part if i["ok"] > 0] or [0]),
            (mem[-1] if mem else 0) / 1024.0,
            sum(1 for t, e in events if lo < t <= hi and e == "flip"),
            sum(1 for t, e in events if lo < t <= hi and e == "swap")))

    after = [kb for t, kb in rss if t >= args.warmup]
    base = after[0] if after else rss[0][1]
    end = rss[-1][1]
    peak = max(kb for _, kb in rss)
    growth_mb = (end - base) / 1024.0
    errors = sum(final.get("errors", {}).values())
    calls = final.get("ok", 0) + errors
    summary = [
        f"calls {calls}, ok {final.get('ok', 0)}, errors {errors} "
        f"({', '.join(f'{k}={v}' for k, v in final.get('errors', {}).items()) or 'none'}), "
        f"degraded {final.get('degraded', 0)}; {final.get('qps', 0):.0f} calls/s over "
        f"{duration:.0f} s; latency p50 {final.get('p50_ms', 0):.2f} ms, "
        f"p99 {final.get('p99_ms', 0):.2f} ms, p99.9 {final.get('p999_ms', 0):.2f} ms, "
        f"max {final.get('max_ms', 0):.2f} ms",
        f"live upserts {final.get('upserted', 0)} acknowledged "
        f"({final.get('upsert_rate', 0):.0f}/s), {final.get('upsert_errors', 0)} refused",
        f"config flips {sum(1 for _, e in events if e == 'flip')}, bundle swaps "
        f"{sum(1 for _, e in events if e == 'swap')}",
        f"resident memory: {base / 1024:.1f} MB at {args.warmup:.0f} s, {end / 1024:.1f} MB "
        f"at the end ({growth_mb:+.2f} MB), peak {peak / 1024:.1f} MB",
    ]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary) + "\n"
    print(text, end="")
    with open(os.path.join(args.out, "soak.md"), "w") as f:
        f.write(text)
    svg = os.path.join(args.out, "soak.svg")
    svg_chart(intervals, rss, events, duration, svg)
    print(f"chart: {svg}")
    failed = False
    if errors > 0 or final.get("upsert_errors", 0) > 0:
        print("soak: FAILED: calls or updates failed", file=sys.stderr)
        failed = True
    if growth_mb > args.max_growth_mb:
        print(f"soak: FAILED: memory grew {growth_mb:.1f} MB after the warm-up "
              f"(limit {args.max_growth_mb} MB)", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

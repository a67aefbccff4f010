#!/usr/bin/env python3
"""scripts/soak_report.py's verdicts on small hand-made runs: a clean run
passes and writes its table and chart; a failed call, a refused update or
memory grown past the limit after the warm-up fails it."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

REPORT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "soak_report.py")


def write_run(d, errors=None, upsert_errors=0, rss_mb=(100, 100, 101, 101)):
    with open(os.path.join(d, "loadgen.jsonl"), "w") as f:
        for k in range(1, 4):
            f.write(json.dumps({"interval_end_s": 10.0 * k, "ok": 100, "errors": 0,
                                "degraded": 0, "p50_ms": 1.0, "p99_ms": 2.0,
                                "max_ms": 3.0}) + "\n")
        f.write(json.dumps({"ok": 300, "degraded": 0, "errors": errors or {},
                            "seconds": 30.0, "qps": 10.0, "p50_ms": 1.0, "p99_ms": 2.0,
                            "p999_ms": 2.5, "max_ms": 3.0, "upserted": 50,
                            "upsert_errors": upsert_errors, "upsert_rate": 2.0}) + "\n")
    with open(os.path.join(d, "rss.tsv"), "w") as f:
        f.write("t_s\trss_kb\n")
        for i, mb in enumerate(rss_mb):
            f.write(f"{10 * i}\t{mb * 1024}\n")
    with open(os.path.join(d, "events.tsv"), "w") as f:
        f.write("t_s\tevent\n12\tflip\n21\tswap\n")


def run(d, limit=16):
    return subprocess.run([sys.executable, REPORT, d, "--warmup", "10",
                           "--max-growth-mb", str(limit)],
                          capture_output=True, text=True)


class SoakReportTest(unittest.TestCase):
    def test_a_clean_run_passes_with_a_table_and_a_chart(self):
        with tempfile.TemporaryDirectory() as d:
            write_run(d)
            r = run(d)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("| minute |", r.stdout)
            self.assertIn("+1.00 MB", r.stdout)
            self.assertIn("<polyline", open(os.path.join(d, "soak.svg")).read())

    def test_a_failed_call_or_update_fails_it(self):
        for kwargs in ({"errors": {"UNAVAILABLE": 1}}, {"upsert_errors": 1}):
            with tempfile.TemporaryDirectory() as d:
                write_run(d, **kwargs)
                r = run(d)
                self.assertEqual(r.returncode, 1, kwargs)
                self.assertIn("calls or updates failed", r.stderr)

    def test_memory_grown_after_the_warm_up_fails_it(self):
        with tempfile.TemporaryDirectory() as d:
            # 50 MB during the warm-up does not count; 20 MB after it does.
            write_run(d, rss_mb=(50, 100, 110, 120))
            r = run(d)
            self.assertEqual(r.returncode, 1)
            self.assertIn("memory grew 20.0 MB", r.stderr)
            self.assertEqual(run(d, limit=25).returncode, 0)


if __name__ == "__main__":
    unittest.main()

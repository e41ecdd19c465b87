"""Benchmark (not a test): the HTML report of 5,000 fake VQA samples (two runs, real shards with an image each),
opened in the system Chromium, then paged, sorted and filtered. Prints one JSON line of timings.

    python tests/evaluation/bench_html_report.py [--samples 5000] [--out DIR]

The figure is quoted in docs/report.md. Each time is the wall clock from the action to the rows being on
screen (Playwright round trips included), on whatever machine runs it: read it as an order of magnitude.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_html_report import make_runs  # noqa: E402

from scaling.cli.main import main  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def run(samples: int, out: str) -> dict:
    t0 = time.perf_counter()
    made = make_runs(out, samples)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert main(["report", made["root"], "--no-charts"]) == 0
    t_report = time.perf_counter() - t0
    html = os.path.join(made["root"], "report", "index.html")
    from playwright.sync_api import sync_playwright

    timings: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        first = lambda: page.eval_on_selector("#gallery-0 tbody tr", "r => r.dataset.id")

        def timed(name, action, changed):
            before = first()
            t = time.perf_counter()
            action()
            page.wait_for_function(changed, arg=before) if changed else None
            timings[name] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        page.goto("file://" + html)
        page.wait_for_selector("#gallery-0[data-ready='1'] tbody tr")
        timings["open_to_first_page_s"] = round(time.perf_counter() - t, 3)
        timings["in_browser_navigation_to_first_page_s"] = int(page.get_attribute("#gallery-0", "data-ready-ms")) / 1000
        changed = "b => document.querySelector('#gallery-0 tbody tr').dataset.id !== b"
        timed("next_page_s", lambda: page.click("#gallery-0 .next"), changed)
        timed("sort_by_score_s", lambda: page.select_option("#gallery-0 .sort", "s1-asc"), changed)
        timed("filter_disagreements_s", lambda: page.check("#gallery-0 .disagree"), changed)
        timed("last_page_size_200_s", lambda: page.select_option("#gallery-0 .size", "200"), None)
        browser.close()
    return {"samples": samples, "html_bytes": os.path.getsize(html), "make_data_s": round(t_data, 1),
            "scaling_report_s": round(t_report, 1), **timings}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="bench_html_report_")
    print(json.dumps(run(args.samples, out)))

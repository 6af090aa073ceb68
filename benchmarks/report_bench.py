"""Benchmark ``samwsss report``: generation time, thumbnails/s, size, page load time.

Writes a synthetic run of N (default 1,000) 500x375 images with ground truth (a ring and
a two-part mask per image, tags, boxes; ``tests/run_fixtures.make_run``) in a temporary
folder, then times :func:`samwsss.report.build_report` with 1 thread and with
``--workers`` threads (the median of ``--repeats`` runs each), and reports the size of
``index.html`` and of the whole report folder. When playwright and a Chromium are
installed (``tests/browser.py``) it also times the page load in headless Chromium
(navigation to the first gallery page drawn) for the real report and for a report whose
inline data holds ``--page-items`` (default 10,000) images, to show the paged gallery
stays fast.

Usage::

    python benchmarks/report_bench.py
    python benchmarks/report_bench.py --num 200 --workers 2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from samwsss.evaluation import GroundTruthFolder
from samwsss.mapping import load_mapping
from samwsss.report import build_report
from tests.browser import HeadlessBrowser, missing
from tests.run_fixtures import make_run

logger = logging.getLogger("report_bench")

DRAWN = "document.querySelectorAll('#gallery .card').length"


def page_load_seconds(page: Path) -> float:
    """Seconds from navigation to the first gallery page drawn, in a fresh page load."""
    with HeadlessBrowser(timeout=120) as browser:
        browser.open(page)  # warm-up: the browser's own start is not the page's cost
        started = time.perf_counter()
        browser.open(page)
        while not browser.evaluate(DRAWN):
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        if browser.errors:
            raise RuntimeError(f"page errors: {browser.errors}")
        return seconds


def inflate(page: Path, count: int) -> Path:
    """A copy of ``page`` whose inline data repeats its images up to ``count`` items."""
    text = page.read_text(encoding="utf-8")
    pattern = r'(<script type="application/json" id="report-data">)(.*?)(</script>)'
    found = re.search(pattern, text, flags=re.S)
    if found is None:
        raise ValueError(f"{page} has no report data block")
    data = json.loads(found.group(2).replace("<\\/", "</"))
    items = data["items"]
    data["items"] = [
        {**items[i % len(items)], "id": f"copy_{i:06d}", "miou": items[i % len(items)]["miou"]}
        for i in range(count)
    ]
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    big = page.with_name(f"index_{count}.html")
    big.write_text(text[: found.start(2)] + payload + text[found.end(2) :], encoding="utf-8")
    return big


def main() -> None:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="images in the run")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--page-items", type=int, default=10_000)
    parser.add_argument("--thumb-size", type=int, default=240)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="samwsss-report-bench-") as tmp:
        started = time.perf_counter()
        run, gt_dir, _ = make_run(Path(tmp), num_images=args.num, size=(375, 500))
        logger.info("fixture: %d images in %.1f s", args.num, time.perf_counter() - started)
        dataset = GroundTruthFolder(gt_dir or run, load_mapping("voc").class_names)
        rows = []
        result = None
        for workers in sorted({1, args.workers}):
            totals, thumbs = [], []
            for _ in range(args.repeats):
                result = build_report(run, dataset, workers=workers, thumb_size=args.thumb_size)
                totals.append(result.seconds)
                thumbs.append(result.thumb_seconds)
            total, thumb = statistics.median(totals), statistics.median(thumbs)
            rows.append(
                f"| {workers} | {total:.2f} | {args.num / thumb:.0f} | "
                f"{result.html_bytes / 2**20:.2f} | {result.total_bytes / 2**20:.1f} |"
            )
        print(f"report of {args.num} images ({args.thumb_size} px thumbnails, with GT):")
        print("| threads | report s | thumbnails images/s | index.html MiB | folder MiB |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
        reason = missing()
        if result is None or reason is not None:
            print(f"page load not measured: {reason or 'no report'}")
            return
        load = page_load_seconds(result.path)
        big = inflate(result.path, args.page_items)
        big_load = page_load_seconds(big)
        print(
            f"page load in headless Chromium: {load * 1000:.0f} ms ({args.num} images); "
            f"{big_load * 1000:.0f} ms ({args.page_items} images, "
            f"{big.stat().st_size / 2**20:.1f} MiB page)"
        )


if __name__ == "__main__":
    main()

"""The report in a real headless Chromium: renders, no console errors, sort and filter work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from samwsss.evaluation import GroundTruthFolder
from samwsss.mapping import load_mapping
from samwsss.report import build_report
from tests.browser import HeadlessBrowser, missing
from tests.run_fixtures import make_run

SKIP_REASON = missing()
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    run, gt_dir, _ = make_run(tmp_path, num_images=60)
    assert gt_dir is not None
    dataset = GroundTruthFolder(gt_dir, load_mapping("voc").class_names)
    page = build_report(run, dataset, workers=2, thumb_size=96).path
    with HeadlessBrowser(timeout=60) as browser:
        browser.open(page)
        assert browser.evaluate("document.querySelectorAll('#miou-table tr').length") == 22
        assert browser.evaluate("document.querySelectorAll('#iou-chart rect.bar').length") >= 2
        assert browser.evaluate("document.querySelectorAll('#confusion tr').length") == 22
        # page 1 of 2 (48 per page), worst mIoU first
        assert browser.evaluate("document.querySelectorAll('#gallery .card').length") == 48
        assert "page 1 / 2" in browser.evaluate("document.getElementById('page-info').textContent")
        mious = browser.evaluate(
            "Array.from(document.querySelectorAll('#gallery .miou'))"
            ".map(e => parseFloat(e.textContent.replace('mIoU','')))"
        )
        assert mious == sorted(mious)
        # every thumbnail of the first cards loads from disk
        browser.evaluate(
            "Promise.all(Array.from(document.querySelectorAll('#gallery .card:nth-child(-n+3) img'))"
            ".map(i => {i.loading='eager'; return i.decode();}))"
        )
        assert browser.evaluate(
            "Array.from(document.querySelectorAll('#gallery .card:nth-child(-n+3) img'))"
            ".every(i => i.naturalWidth > 0)"
        )
        # sort: best first, by the select as a user would
        browser.evaluate(
            "(() => {const s = document.getElementById('sort'); s.value = 'miou-desc';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        mious = browser.evaluate(
            "Array.from(document.querySelectorAll('#gallery .miou'))"
            ".map(e => parseFloat(e.textContent.replace('mIoU','')))"
        )
        assert mious == sorted(mious, reverse=True)
        # next page, then a class no image has: empty gallery; then dog: every image
        browser.evaluate("document.getElementById('next').click()")
        assert browser.evaluate("document.querySelectorAll('#gallery .card').length") == 12
        browser.evaluate(
            "(() => {const s = document.getElementById('class'); s.value = '1';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert browser.evaluate("document.querySelectorAll('#gallery .card').length") == 0
        browser.evaluate(
            "(() => {const s = document.getElementById('class'); s.value = '12';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert "(60 images)" in browser.evaluate("document.getElementById('page-info').textContent")
        shot = browser.screenshot(
            Path(os.environ.get("SAMWSSS_SCREENSHOT_DIR", tmp_path)) / "report.png"
        )
        assert shot.stat().st_size > 10_000
        assert browser.errors == []

"""``samwsss report``: a static, self-contained HTML report of a run folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.evaluation import GroundTruthFolder
from samwsss.report import build_report
from tests.run_fixtures import make_run


def _data(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert found is not None
    loaded: dict[str, object] = json.loads(found.group(1).replace("<\\/", "</"))
    return loaded


def test_report_with_ground_truth(tmp_path: Path) -> None:
    run, gt_dir, _ = make_run(tmp_path, num_images=4)
    assert gt_dir is not None
    from samwsss.mapping import load_mapping

    dataset = GroundTruthFolder(gt_dir, load_mapping("voc").class_names)
    result = build_report(run, dataset, workers=2, thumb_size=64)
    assert result.path == run / "report" / "index.html"
    assert result.num_images == 4 and result.miou is not None and 0 < result.miou < 1
    page = result.path.read_text()
    assert "http://" not in page and "https://" not in page  # no CDN, no network
    for marker in ('id="miou-table"', '<svg id="iou-chart"', 'id="confusion"', 'id="gallery"'):
        assert marker.replace('"', "'") in page or marker in page
    assert "tiny-gdino" in page and "cannot decode image" in page  # models, failures
    data = _data(page)
    items = data["items"]
    assert isinstance(items, list) and len(items) == 4
    first = items[0]
    assert {"t", "g", "e", "miou", "dets", "tags", "src"} <= set(first)
    assert first["src"] == {"dog": ["dog"], "person": ["man", "person"]}
    assert first["dets"] == [[12, 0.6], [15, 0.7]]
    for key in ("t", "g", "e"):
        thumb = run / "report" / first[key]
        assert thumb.is_file()
        from PIL import Image

        with Image.open(thumb) as opened:
            assert max(opened.size) <= 64


def test_report_cli_without_ground_truth(tmp_path: Path) -> None:
    run, _, _ = make_run(tmp_path, num_images=2, with_gt=False)
    result = CliRunner().invoke(cli, ["report", str(run), "--workers", "1"])
    assert result.exit_code == 0, result.output
    page = (run / "report" / "index.html").read_text()
    assert "miou-table" not in page and 'id="gallery"' in page.replace("'", '"')
    items = _data(page)["items"]
    assert isinstance(items, list) and all("g" not in item for item in items)


def test_report_bad_values(tmp_path: Path) -> None:
    run, _, _ = make_run(tmp_path, num_images=1, with_gt=False)
    with pytest.raises(ValueError, match="thumb_size must be in 16..1024"):
        build_report(run, thumb_size=4)
    with pytest.raises(ValueError, match="neither masks/ nor masks_plain/"):
        build_report(tmp_path / "images")
    result = CliRunner().invoke(cli, ["report", str(run), "--split", "val"])
    assert result.exit_code != 0 and "need --data" in result.output

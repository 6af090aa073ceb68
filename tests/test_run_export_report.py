"""A real run (tiny models, ``--instances``) exported as COCO and YOLO-seg and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from samwsss.cli import cli
from tests.data_fixtures import make_voc_tree

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def voc_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path
) -> tuple[Path, Path]:
    voc = make_voc_tree(tmp_path_factory.mktemp("voc"))
    out = tmp_path_factory.mktemp("runs") / "voc"
    args = ["text-input", "--data", str(voc), "--split", "train_aug", "--out", str(out)]
    args += ["--instances", "--boxer", str(tiny_gdino_small_dir)]
    args += ["--masker", str(tiny_sam_session_dir), "--box-threshold", "0.2"]
    args += ["--text-threshold", "0", "--device", "cpu", "--batch-size", "2", "--workers", "1"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return voc, out


def test_export_and_report_of_a_run(voc_run: tuple[Path, Path]) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    voc, out = voc_run
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(out), "--format", "coco"])
    assert result.exit_code == 0, result.output
    dataset = json.loads((out / "export/coco/dataset.json").read_text())
    assert len(dataset["categories"]) == 20 and dataset["categories"][0]["name"] == "aeroplane"
    assert all(image["file_name"].endswith(".jpg") for image in dataset["images"])
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    dt = gt.loadRes(str(out / "export/coco/results.json"))
    key_of = {image["id"]: image["image_key"] for image in dataset["images"]}
    total = 0
    for number, key in key_of.items():
        record = json.loads((out / "instances" / f"{key}.json").read_text())
        wanted = [
            mask_utils.decode({**a["segmentation"], "counts": a["segmentation"]["counts"].encode()})
            for a in record["annotations"]
        ]
        got = [dt.annToMask(a) for a in dt.loadAnns(dt.getAnnIds(imgIds=[number]))]
        assert len(got) == len(wanted)
        for a, b in zip(got, wanted, strict=True):
            np.testing.assert_array_equal(a, b)
        total += len(got)
    assert total > 0
    result = runner.invoke(cli, ["export", str(out), "--format", "yolo-seg"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "export/yolo-seg/labels").glob("*.txt"))) == len(key_of)
    assert len(list((out / "export/yolo-seg/images").iterdir())) == len(key_of)
    result = runner.invoke(cli, ["report", str(out), "--data", str(voc), "--split", "train_aug"])
    assert result.exit_code == 0, result.output
    page = (out / "report" / "index.html").read_text()
    assert "miou-table" in page and "iou-chart" in page and "confusion" in page

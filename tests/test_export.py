"""``samwsss export``: COCO results and YOLO-seg labels round-trip the run's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.export import ExportError, export_run, mask_to_polygon, polygon_to_mask
from tests.run_fixtures import make_run, ring_mask, two_part_mask

pytest.importorskip("cv2")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    run_dir, _, masks = make_run(tmp_path, num_images=3, with_gt=False)
    return run_dir, masks


def test_coco_export_loads_and_evaluates(run: tuple[Path, dict[str, list[np.ndarray]]]) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    run_dir, masks = run
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "coco"])
    assert result.exit_code == 0, result.output
    out = run_dir / "export" / "coco"
    dataset = json.loads((out / "dataset.json").read_text())
    assert [c["id"] for c in dataset["categories"]] == list(range(1, 21))
    assert dataset["categories"][11]["name"] == "dog"
    assert [i["file_name"] for i in dataset["images"]] == [f"{k}.jpg" for k in sorted(masks)]
    assert dataset["images"][0]["height"] == 48 and dataset["images"][0]["width"] == 112
    # GT = the results themselves, so the evaluation must be perfect
    results = json.loads((out / "results.json").read_text())
    gt_dict = dict(dataset)
    gt_dict["annotations"] = [{**r, "id": n, "iscrowd": 0} for n, r in enumerate(results, start=1)]
    gt = COCO()
    gt.dataset = gt_dict
    gt.createIndex()
    dt = gt.loadRes(str(out / "results.json"))
    key_of = {image["id"]: image["image_key"] for image in dataset["images"]}
    for number, image_key in key_of.items():
        anns = dt.loadAnns(dt.getAnnIds(imgIds=[number]))
        decoded = [dt.annToMask(a).astype(bool) for a in anns]
        assert len(decoded) == 2
        for got, want in zip(decoded, masks[image_key], strict=True):
            np.testing.assert_array_equal(got, want)
    evaluator = COCOeval(gt, dt, "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_mask_to_polygon_ring_and_parts() -> None:
    for mask in (ring_mask(48, 64), two_part_mask(48, 64)):
        ring = mask_to_polygon(mask)
        assert ring is not None
        assert _iou(polygon_to_mask(ring, 48, 64), mask) >= 0.9
    ring = mask_to_polygon(ring_mask(48, 64))
    assert ring is not None and not polygon_to_mask(ring, 48, 64)[24, 27]  # the hole stays
    assert mask_to_polygon(np.zeros((5, 5), dtype=bool)) is None


def test_yolo_export_round_trip(run: tuple[Path, dict[str, list[np.ndarray]]]) -> None:
    run_dir, masks = run
    out = run_dir.parent / "yolo"
    result = CliRunner().invoke(
        cli, ["export", str(run_dir), "--format", "yolo-seg", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load((out / "dataset.yaml").read_text())
    assert spec["names"][0] == "aeroplane" and spec["names"][11] == "dog"
    assert spec["train"] == "images"
    for image_id, wanted in masks.items():
        assert (out / "images" / f"{image_id}.jpg").is_file()
        lines = (out / "labels" / f"{image_id}.txt").read_text().splitlines()
        assert [int(line.split()[0]) for line in lines] == [11, 14]
        for line, want in zip(lines, wanted, strict=True):
            values = np.array([float(v) for v in line.split()[1:]]).reshape(-1, 2)
            assert values.min() >= 0.0 and values.max() <= 1.0
            got = polygon_to_mask(values * np.array([112, 48]), 48, 112)
            assert _iou(got, want) >= 0.9


def test_export_needs_instances(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    with pytest.raises(ExportError, match="run with --instances"):
        export_run(tmp_path, "coco")
    with pytest.raises(ValueError, match="use one of coco, yolo-seg"):
        export_run(tmp_path, "voc")
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "yolo-seg"])
    assert result.exit_code != 0 and "run with --instances" in result.output


def test_coco_export_keeps_coco_ids(tmp_path: Path) -> None:
    from samwsss.classes import COCO_INDEX_TO_CATEGORY

    run_dir, _, _ = make_run(tmp_path, num_images=1, with_gt=False)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"] = {"data": str(tmp_path / "absent"), "mapping": "coco"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    source = run_dir / "instances" / "img_00000.json"
    record = json.loads(source.read_text())
    record["image_id"] = "COCO_val2014_000000000042"
    (run_dir / "instances" / "COCO_val2014_000000000042.json").write_text(json.dumps(record))
    source.unlink()
    paths = export_run(run_dir, "coco")
    dataset = json.loads(paths["dataset"].read_text())
    assert len(dataset["categories"]) == 80 and dataset["categories"][-1]["id"] == 90
    assert [image["id"] for image in dataset["images"]] == [42]
    results = json.loads(paths["results"].read_text())
    assert {r["category_id"] for r in results} == {
        COCO_INDEX_TO_CATEGORY[12],
        COCO_INDEX_TO_CATEGORY[15],
    }
    assert all(r["image_id"] == 42 for r in results)

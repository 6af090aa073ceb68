"""``samwsss export``: COCO results and YOLO-seg labels round-trip the run's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from samwsss.cli import cli
from samwsss.runs import export
from samwsss.runs.export import ExportError, export_run, mask_to_polygon, polygon_to_mask
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


# --------------------------------------------------------------------------- YOLO-seg rings
#: ``yolo_line(3, mask_to_polygon(mask), 20, 32)`` of the masks of ``_simple_mask``, as the
#: quadratic join (every ring bridged into the growing ring by a full distance matrix)
#: wrote them before the join was made near-linear: the new join must not change a byte.
SIMPLE_LINES = {
    "blob": "3 0.406250 0.150000 0.375000 0.200000 0.312500 0.200000 0.250000 0.300000 0.250000 0.400000 0.218750 0.450000 0.250000 0.500000 0.250000 0.600000 0.312500 0.700000 0.375000 0.700000 0.406250 0.750000 0.437500 0.700000 0.500000 0.700000 0.562500 0.600000 0.562500 0.500000 0.593750 0.450000 0.562500 0.400000 0.562500 0.300000 0.500000 0.200000 0.437500 0.200000",
    "blob_with_hole": "3 0.125000 0.150000 0.250000 0.350000 0.281250 0.300000 0.500000 0.300000 0.531250 0.350000 0.531250 0.550000 0.500000 0.600000 0.281250 0.600000 0.250000 0.550000 0.250000 0.350000 0.125000 0.150000 0.125000 0.800000 0.781250 0.800000 0.781250 0.150000",
    "blob_with_two_holes": "3 0.062500 0.100000 0.125000 0.250000 0.156250 0.200000 0.312500 0.200000 0.343750 0.250000 0.343750 0.400000 0.312500 0.450000 0.156250 0.450000 0.125000 0.400000 0.125000 0.250000 0.062500 0.100000 0.062500 0.850000 0.906250 0.850000 0.812500 0.700000 0.781250 0.750000 0.562500 0.750000 0.531250 0.700000 0.531250 0.550000 0.562500 0.500000 0.781250 0.500000 0.812500 0.550000 0.812500 0.700000 0.906250 0.850000 0.906250 0.100000",
    "two_parts": "3 0.218750 0.100000 0.187500 0.150000 0.156250 0.150000 0.125000 0.200000 0.125000 0.250000 0.093750 0.300000 0.125000 0.350000 0.125000 0.400000 0.156250 0.450000 0.187500 0.450000 0.218750 0.500000 0.250000 0.450000 0.281250 0.450000 0.312500 0.400000 0.562500 0.600000 0.562500 0.850000 0.875000 0.850000 0.875000 0.600000 0.562500 0.600000 0.312500 0.400000 0.312500 0.350000 0.343750 0.300000 0.312500 0.250000 0.312500 0.200000 0.281250 0.150000 0.250000 0.150000",
    "three_parts": "3 0.750000 0.550000 0.718750 0.600000 0.687500 0.600000 0.468750 0.350000 0.468750 0.100000 0.375000 0.100000 0.218750 0.100000 0.062500 0.100000 0.062500 0.350000 0.218750 0.350000 0.218750 0.100000 0.375000 0.100000 0.375000 0.350000 0.468750 0.350000 0.687500 0.600000 0.687500 0.650000 0.656250 0.700000 0.687500 0.750000 0.687500 0.800000 0.718750 0.800000 0.750000 0.850000 0.781250 0.800000 0.812500 0.800000 0.812500 0.750000 0.843750 0.700000 0.812500 0.650000 0.812500 0.600000 0.781250 0.600000",
    "touching_border": "3 0.781250 0.600000 0.281250 0.300000 0.281250 0.000000 0.000000 0.000000 0.000000 0.300000 0.281250 0.300000 0.781250 0.600000 0.781250 0.950000 0.968750 0.950000 0.968750 0.600000",
    "island_in_hole": "3 0.031250 0.050000 0.093750 0.200000 0.125000 0.150000 0.281250 0.400000 0.281250 0.550000 0.375000 0.550000 0.375000 0.400000 0.281250 0.400000 0.125000 0.150000 0.531250 0.150000 0.562500 0.200000 0.562500 0.750000 0.531250 0.800000 0.125000 0.800000 0.093750 0.750000 0.093750 0.200000 0.031250 0.050000 0.031250 0.900000 0.625000 0.900000 0.625000 0.050000",
    "specks": "3 0.500000 0.300000 0.468750 0.350000 0.437500 0.350000 0.406250 0.400000 0.406250 0.450000 0.375000 0.500000 0.406250 0.550000 0.406250 0.600000 0.437500 0.650000 0.468750 0.650000 0.500000 0.700000 0.531250 0.650000 0.562500 0.650000 0.593750 0.600000 0.593750 0.550000 0.625000 0.500000 0.593750 0.450000 0.593750 0.400000 0.562500 0.350000 0.531250 0.350000",
}


def _simple_mask(name: str) -> np.ndarray:
    """A ``(20, 32)`` bool mask: one blob, blobs with holes, separate parts, the border."""
    yy, xx = np.mgrid[:20, :32]
    mask = np.zeros((20, 32), dtype=bool)
    if name == "blob":
        mask = (yy - 9) ** 2 + (xx - 13) ** 2 <= 36
    elif name == "blob_with_hole":
        mask[3:17, 4:26] = True
        mask[7:12, 9:17] = False
    elif name == "blob_with_two_holes":
        mask[2:18, 2:30] = True
        mask[5:9, 5:11] = False
        mask[11:15, 18:26] = False
    elif name == "two_parts":
        mask = (yy - 6) ** 2 + (xx - 7) ** 2 <= 16
        mask[12:18, 18:29] = True
    elif name == "three_parts":  # two squares level with each other: tied nearest pairs
        mask[2:8, 2:8] = True
        mask[2:8, 12:16] = True
        mask |= (yy - 14) ** 2 + (xx - 24) ** 2 <= 9
    elif name == "touching_border":
        mask[0:7, 0:10] = True
        mask[12:20, 25:32] = True
    elif name == "island_in_hole":
        mask[1:19, 1:21] = True
        mask[4:16, 4:18] = False
        mask[8:12, 9:13] = True
    elif name == "specks":  # a blob, a single pixel and a one-pixel line (both dropped)
        mask = (yy - 10) ** 2 + (xx - 16) ** 2 <= 16
        mask[2, 3] = True
        mask[17, 20:28] = True
    return mask


def _force_fast_join(monkeypatch: pytest.MonkeyPatch, block: int | None = None) -> None:
    """Every join with a bridge through ``_join_fast``, comparing through the bounds
    (``_candidates``) and, with ``block``, in blocks of that many comparisons."""
    monkeypatch.setattr(export, "DIRECT_JOIN_PAIRS", -1)
    monkeypatch.setattr(export, "_UNPRUNED_PAIRS", -1)
    if block is not None:
        monkeypatch.setattr(export, "_BLOCK", block)


@pytest.mark.parametrize("path", ["default", "fast"])
@pytest.mark.parametrize("name", sorted(SIMPLE_LINES))
def test_yolo_lines_of_simple_masks_unchanged(
    name: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "fast":
        _force_fast_join(monkeypatch)
    ring = mask_to_polygon(_simple_mask(name))
    assert ring is not None and ring.dtype == np.int32
    assert export.yolo_line(3, ring, 20, 32) == SIMPLE_LINES[name]


def _fragmented_mask(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    """About 80 small blobs on a grid (some with a hole): a fragmented instance mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), dtype=bool)
    for cy in range(6, height - 6, 12):
        for cx in range(8, width - 8, 16):
            y, x = cy + rng.integers(-2, 3), cx + rng.integers(-3, 4)
            radius = int(rng.integers(2, 6))
            part = (yy - y) ** 2 + ((xx - x) * rng.uniform(0.6, 1.4)) ** 2 <= radius**2
            if radius >= 4 and rng.random() < 0.4:
                part &= (yy - y) ** 2 + (xx - x) ** 2 > 2
            mask |= part
    return mask


def test_fragmented_mask_polygon_keeps_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    mask = _fragmented_mask(0)
    height, width = mask.shape
    calls = []
    join_fast = export._join_fast

    def spy(*args: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(args[1]))
        return join_fast(*args)

    monkeypatch.setattr(export, "_join_fast", spy)
    ring = mask_to_polygon(mask)
    assert ring is not None and calls  # the parts went through the near-linear join
    contours, hierarchy = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    tree = hierarchy[0]
    kept = [
        contour[:, 0, :]
        for index, contour in enumerate(contours)
        if len(contour) >= 3 and (tree[index][3] == -1 or len(contours[tree[index][3]]) >= 3)
    ]
    parts = sum(1 for row in tree if row[3] == -1)
    assert parts > 60 and len(kept) > parts  # many parts, some with a hole
    # one ring through every point of every part and hole, two more points per bridge
    assert len(ring) == sum(len(points) for points in kept) + 2 * (len(kept) - 1)
    vertices = set(map(tuple, ring.tolist()))
    for points in kept:
        assert set(map(tuple, points.tolist())) <= vertices
    # a valid YOLO-seg line whose polygon covers every pixel of the mask
    values = export.yolo_line(7, ring, height, width).split()
    assert values[0] == "7" and len(values[1:]) == 2 * len(ring)
    coords = np.array([float(value) for value in values[1:]]).reshape(-1, 2)
    assert coords.min() >= 0.0 and coords.max() <= 1.0
    covered = polygon_to_mask(np.round(coords * np.array([width, height])), height, width)
    assert not (mask & ~covered).any()


@pytest.mark.parametrize("block", [None, 64])
def test_fast_join_equals_the_fold(block: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The near-linear join gives exactly the rings of bridging one ring after the other
    into the growing ring (``_fold``): fragmented masks, and arbitrary point rings (ties,
    repeated points, negative and large coordinates, several groups)."""
    masks = [_fragmented_mask(seed) for seed in (1, 2)]
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(150):
        span = int(rng.choice([4, 30, 1000, 40_000, 70_000]))
        groups = []
        for _ in range(int(rng.integers(1, 4))):
            rings = []
            for _ in range(int(rng.integers(1, 10))):
                points = rng.integers(-span // 2, span // 2 + 1, (int(rng.integers(1, 12)), 2))
                if len(points) > 2 and rng.random() < 0.3:
                    points[-1] = points[0]
                rings.append(points.astype(np.int64 if span > 40_000 else np.int32))
            groups.append(rings)
        cases.append(groups)
    with monkeypatch.context() as patch:  # every join folded: the definition
        patch.setattr(export, "DIRECT_JOIN_PAIRS", 10**12)
        patch.setattr(export, "DIRECT_JOIN_BRIDGES", 10**6)
        want_masks = [mask_to_polygon(mask) for mask in masks]
        want_groups = [export.join_groups(groups) for groups in cases]
    got = [[mask_to_polygon(mask) for mask in masks]]  # the default thresholds
    _force_fast_join(monkeypatch, block)
    got.append([mask_to_polygon(mask) for mask in masks])
    for computed in got:
        for ring, want in zip(computed, want_masks, strict=True):
            assert ring is not None and want is not None
            np.testing.assert_array_equal(ring, want)
    for groups, want_rings in zip(cases, want_groups, strict=True):
        for ring, want in zip(export.join_groups(groups), want_rings, strict=True):
            assert ring.dtype == want.dtype
            np.testing.assert_array_equal(ring, want)


def test_yolo_line_table_matches_formatting() -> None:
    """Integer points (looked up in a table) print as float points do (formatted)."""
    rng = np.random.default_rng(0)
    for height, width in ((20, 32), (375, 500), (1, 7), (4000, 3)):
        points = np.stack(
            [rng.integers(-3, width + 4, 50), rng.integers(-3, height + 4, 50)], axis=1
        )
        want = export.yolo_line(5, points.astype(np.float64), height, width)
        for dtype in (np.int16, np.int32, np.int64):
            assert export.yolo_line(5, points.astype(dtype), height, width) == want

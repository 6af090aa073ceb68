"""Palette PNG label maps and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samwsss.atomic import atomic_open, atomic_write_json, remove_stale_temporaries
from samwsss.classes import (
    COCO_CATEGORY_IDS,
    COCO_CATEGORY_TO_INDEX,
    COCO_CLASSES,
    VOC_CLASSES,
    voc_palette,
)
from samwsss.labelio import read_label_png, write_label_png


def test_class_lists_and_palette() -> None:
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person"
    assert (
        len(COCO_CLASSES) == 81 and COCO_CLASSES[1] == "person" and COCO_CLASSES[80] == "toothbrush"
    )
    assert COCO_CATEGORY_TO_INDEX[90] == 80 and len(set(COCO_CATEGORY_IDS)) == 80
    palette = voc_palette()
    assert len(palette) == 768
    assert palette[3:6] == [128, 0, 0] and palette[15 * 3 : 16 * 3] == [
        192,
        128,
        128,
    ]  # aeroplane, person
    assert palette[255 * 3 :] == [255, 255, 255]  # ignore shows white


def test_palette_png_round_trip_keeps_indices_and_255(tmp_path: Path) -> None:
    label = np.random.default_rng(0).integers(0, 21, (7, 9)).astype(np.uint8)
    label[0, :] = 255
    path = write_label_png(tmp_path / "sub" / "a.png", label)
    with Image.open(path) as png:
        assert png.mode == "P"
        assert png.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]
        rgb = np.asarray(png.convert("RGB"))
    assert (rgb[0] == 255).all()  # 255 drawn white
    np.testing.assert_array_equal(read_label_png(path), label)


def test_plain_png_as_the_authors_wrote_it(tmp_path: Path) -> None:
    label = np.arange(12, dtype=np.uint8).reshape(3, 4) * 6
    Image.fromarray(label, mode="L").save(tmp_path / "plain.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "plain.png"), label)
    write_label_png(tmp_path / "ours.png", label, palette=False)
    with Image.open(tmp_path / "ours.png") as png:
        assert png.mode == "L"
    np.testing.assert_array_equal(read_label_png(tmp_path / "ours.png"), label)


def test_bad_label_maps_are_rejected(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="mode 'RGB'"):
        read_label_png(tmp_path / "rgb.png")
    Image.fromarray(np.full((3, 3), 1000, dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="16-bit"):
        read_label_png(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="2-D"):
        write_label_png(tmp_path / "x.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype float"):
        write_label_png(tmp_path / "x.png", np.full((2, 2), 1.7))
    with pytest.raises(ValueError, match="0..255"):
        write_label_png(tmp_path / "x.png", np.full((2, 2), 300, dtype=np.int32))
    assert not (tmp_path / "x.png").exists()


def test_atomic_write_leaves_old_file_on_crash(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write('{"v": 2, "half')
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary left behind


def test_stale_temporaries_are_swept(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".tmp-x.png.123").write_bytes(b"partial")
    (tmp_path / "a" / "x.png").write_bytes(b"done")
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(os.listdir(tmp_path / "a")) == ["x.png"]

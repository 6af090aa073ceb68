"""The ``paper`` preset reproduces the survey authors' pipeline: each model's PIL resize,
unclipped boxes into SAM, float32; and text input never builds the tagger.

References are the calls the authors' scripts make: torchvision's functional transforms on
PIL images (what GroundingDINO's ``datasets/transforms.py`` and RAM's transform call),
``PIL.Image.resize`` and segment-anything's ``SamPredictor``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from samwsss.pipeline.config import preset
from samwsss.registry import create
from samwsss.stages.contracts import ImageBatch
from samwsss.stages.pil_resize import grounding_dino_size, longest_side_size

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1024, 200), (1331, 260)),  # aspect > 5/3: the long side is int(), not 1333
        ((200, 1024), (260, 1331)),
        ((375, 500), (800, 1066)),
        ((480, 640), (800, 1066)),
        ((800, 800), (800, 800)),
        ((300, 900), (444, 1332)),  # transformers: 444 x 1333
    ],
)
def test_grounding_dino_sizes_round_like_the_original_transform(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert grounding_dino_size(*size, 800, 1333) == expected


def test_sam_longest_side_rounds_half_up() -> None:
    assert longest_side_size(375, 500, 1024) == (768, 1024)
    assert longest_side_size(333, 500, 1024) == (682, 1024)  # 681.98 -> 682
    assert longest_side_size(1000, 7, 1024) == (1024, 7)


def _authors_gdino_input(image: np.ndarray, short: int, long: int) -> torch.Tensor:
    """``T.RandomResize([short], max_size=long)`` + ``ToTensor`` + ``Normalize``."""
    picture = Image.fromarray(image)
    size = grounding_dino_size(image.shape[0], image.shape[1], short, long)
    resized = TF.resize(picture, list(size))  # PIL input: PIL bilinear
    return TF.normalize(TF.to_tensor(resized), IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("size", [(40, 150), (150, 40), (37, 64), (64, 64)])
def test_paper_boxer_input_equals_the_original_transform(
    tiny_gdino_small_dir: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    boxer = create("boxer", str(tiny_gdino_small_dir), image_resize="pil", clip_boxes=False)
    seen: dict[int, torch.Tensor] = {}
    original = boxer._forward

    def spy(chunk, pixels):  # type: ignore[no-untyped-def]
        seen.update(pixels)
        return original(chunk, pixels)

    monkeypatch.setattr(boxer, "_forward", spy)
    image = _image(*size)
    boxer([image], [[(1, "cat")]])
    reference = _authors_gdino_input(image, 128, 213)
    assert seen[0].shape == reference.shape
    assert torch.equal(seen[0], reference)


def test_paper_boxer_keeps_unclipped_boxes_for_sam(tiny_gdino_small_dir: Path) -> None:
    boxer = create(
        "boxer", str(tiny_gdino_small_dir), image_resize="pil", clip_boxes=False,
        box_threshold=0.0, text_threshold=0.0,
    )  # fmt: skip
    (det,) = boxer([_image(48, 90)], [[(1, "cat"), (2, "dog")]])
    assert det.prompt_boxes is not None and len(det) > 0
    limit = torch.tensor([90, 48, 90, 48], dtype=torch.float32)
    assert torch.equal(det.boxes, torch.minimum(det.prompt_boxes.clamp(min=0), limit))
    clipped = create(
        "boxer", str(tiny_gdino_small_dir), image_resize="pil", box_threshold=0.0,
        text_threshold=0.0,
    )  # fmt: skip
    (default,) = clipped([_image(48, 90)], [[(1, "cat"), (2, "dog")]])
    assert default.prompt_boxes is None
    assert torch.allclose(default.boxes, det.boxes, atol=1e-4)  # the same up to rounding
    assert bool((det.prompt_boxes != det.boxes).any())  # some pass the border


def test_paper_ram_input_equals_pil_resize_then_the_official_normalisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from samwsss.testing.ram import (
        official_state_dict,
        tiny_config,
        tiny_vocabulary,
        write_checkpoint,
    )

    config = tiny_config("ram_plus")
    path = write_checkpoint(tmp_path / "ram.pth", official_state_dict(config, seed=0))
    tagger = create("tagger", path, vocabulary=tiny_vocabulary(), config=config, image_resize="pil")
    seen: list[torch.Tensor] = []
    original = tagger._logits

    def spy(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(pixels)
        return original(pixels)

    monkeypatch.setattr(tagger, "_logits", spy)
    images = [_image(50, 90, 1), _image(131, 47, 2)]
    tagger.tag(ImageBatch(images))
    side = config.image_size
    reference = torch.stack(
        [
            TF.normalize(
                TF.to_tensor(Image.fromarray(image).resize((side, side))),
                IMAGENET_MEAN,
                IMAGENET_STD,
            )
            for image in images
        ]
    )
    assert torch.equal(seen[0], reference)
    direct = tagger(images)  # the public call resizes the same way
    assert [r.tags for r in direct] == [r.tags for r in tagger.tag(ImageBatch(images))]


def test_the_dtype_choice_reaches_every_stage(
    tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path, tmp_path: Path
) -> None:
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.testing.ram import official_state_dict, tiny_config, write_checkpoint

    config = tiny_config("ram_plus")
    ram = write_checkpoint(tmp_path / "ram.pth", official_state_dict(config, seed=0))
    from samwsss.testing.ram import TINY_TAGS

    vocabulary, thresholds = tmp_path / "tags.txt", tmp_path / "thresholds.txt"
    vocabulary.write_text("".join(f"{tag}\n" for tag in TINY_TAGS))
    thresholds.write_text("".join("0.5\n" for _ in TINY_TAGS))
    for dtype, expected in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        pipe = Pipeline.from_preset(
            "paper", device="cpu", boxer=str(tiny_gdino_small_dir),
            masker=str(tiny_sam_session_dir), tagger=str(ram), ram_vocabulary=str(vocabulary),
            ram_thresholds=str(thresholds), dtype=dtype,
        )  # fmt: skip
        tagger = pipe.require_tagger()
        for stage in (pipe.boxer, pipe.masker, tagger):
            assert stage.compute_dtype == expected, (dtype, stage)  # type: ignore[union-attr]
    assert preset("paper").dtype == "float32" and preset("default").dtype == "auto"


def test_text_input_builds_no_tagger(
    tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path, tmp_path: Path
) -> None:
    from samwsss.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_preset(
        "paper", device="cpu", boxer=str(tiny_gdino_small_dir),
        masker=str(tiny_sam_session_dir), tagger=str(tmp_path / "unreachable" / "ram.pth"),
    )  # fmt: skip
    result = pipe.text_input(_image(40, 60), ["cat"])
    assert result.mask.shape == (40, 60)
    assert pipe.tagger is None and "tagger" not in pipe.stages
    with pytest.raises(ValueError, match="unreachable"):
        pipe.zero_shot(_image(40, 60))


def test_a_paper_run_resizes_in_the_decode_workers_with_the_same_masks(
    tiny_gdino_small_dir: Path, tiny_sam_session_dir: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from samwsss.cli import cli
    from samwsss.data import open_dataset
    from samwsss.labelio import read_label_png
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.runs.runner import DecodeDataset
    from tests.data_fixtures import make_voc_tree

    voc = make_voc_tree(tmp_path)
    models = [
        "--boxer", str(tiny_gdino_small_dir), "--masker", str(tiny_sam_session_dir),
        "--box-threshold", "0.2", "--text-threshold", "0", "--device", "cpu",
        "--batch-size", "2", "--preset", "paper", "--threads", "1",
    ]  # fmt: skip
    masks = {}
    for workers in ("0", "2"):
        out = tmp_path / f"run{workers}"
        result = CliRunner().invoke(
            cli,
            ["text-input", "--data", str(voc), "--split", "train_aug", "--out", str(out),
             "--workers", workers, *models],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        masks[workers] = {p.name: p.read_bytes() for p in sorted((out / "masks").glob("*.png"))}
    assert masks["0"] == masks["2"] and len(masks["0"]) == 3
    pipe = Pipeline.from_preset(
        "paper", device="cpu", boxer=str(tiny_gdino_small_dir),
        masker=str(tiny_sam_session_dir), box_threshold=0.2, text_threshold=0.0, batch_size=2,
    )  # fmt: skip
    resizes = pipe.host_resizes("text-input")
    assert {r.key for r in resizes} == {"grounding-dino", "sam"}
    dataset = open_dataset(voc, "train_aug")
    item = DecodeDataset(dataset, dataset.ids, resizes)[0]
    assert set(item["prepared"]) == {"grounding-dino", "sam"}
    for image_id in dataset.ids:
        direct = pipe.text_input(dataset.load_image(image_id), list(dataset.labels(image_id)))
        written = read_label_png(tmp_path / "run2" / "masks" / f"{image_id}.png")
        assert np.array_equal(direct.mask, written), image_id

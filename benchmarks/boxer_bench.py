"""Boxer throughput: batched GroundingDinoBoxer vs the authors' loop, same run, same model.

For each model size (``tiny``: the tests' tiny random config; ``full``: a random
``GroundingDinoConfig()`` = Swin-T + BERT-base, d_model 256, 900 queries, the real
grounding-dino-tiny architecture), written by :mod:`samwsss.testing.gdino` and loaded
through ``registry.create``, and each batch size, it times on 480x640 images with 2 class
prompts each:

* ``loop`` — the authors' style: for each image, for each class, the processor on the
  CPU, one forward, ``post_process_grounded_object_detection``;
* ``batched`` — one ``GroundingDinoBoxer`` call on the whole batch (per-class mode: all
  (image, class) rows of the batch in forwards of at most 8 rows bucketed by resized
  size, the backbone shared per image).

Both use the same weights and precision (bf16 autocast on CUDA, fp32 on CPU) and the box
threshold of the paper, 0.3. Reported: median seconds per batch, images/s, peak memory
growth (CUDA: max allocated; CPU: resident set, sampled) and the speed-up over the loop.
On CPU the full model runs batch 1 only (a forward takes tens of seconds).

``--families`` picks the architecture: ``grounding-dino`` (default) and/or
``mm-grounding-dino`` (MM-Grounding-DINO / LLMDet: the same sizes as an
``MMGroundingDinoConfig``, its class-head bias set to -1 so that some boxes pass the
threshold; written by :func:`samwsss.testing.gdino.build_tiny_mm_grounding_dino` with the
real 800/1333 resize).

Run from the repository root::

    python -m benchmarks.boxer_bench --sizes tiny full --device cpu --threads 1
    python -m benchmarks.boxer_bench --sizes tiny --families grounding-dino mm-grounding-dino
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import _measure

SIZES = ("tiny", "full")
FAMILIES = ("grounding-dino", "mm-grounding-dino")
PROMPTS = ("cat", "dog", "person", "wild bird", "dining table", "car")
CLASSES_PER_IMAGE = 2
IMAGE_SIZE = (480, 640)


def load_boxer(
    size: str, directory: Path, device: torch.device, family: str = "grounding-dino"
) -> Any:
    """Write a seeded random model of ``family`` and ``size`` (Grounding DINO: untempered
    logits) and load it with the paper's box threshold 0.3."""
    from transformers import GroundingDinoConfig, MMGroundingDinoConfig

    from samwsss.registry import create
    from samwsss.testing.gdino import build_tiny_grounding_dino, build_tiny_mm_grounding_dino

    if family == "mm-grounding-dino":
        mm_config = None if size == "tiny" else MMGroundingDinoConfig()
        build_tiny_mm_grounding_dino(
            directory, seed=0, shortest_edge=800, longest_edge=1333, config=mm_config
        )
    else:
        config = None if size == "tiny" else GroundingDinoConfig()
        build_tiny_grounding_dino(directory, seed=0, config=config)
    return create("boxer", directory, box_threshold=0.3, text_threshold=0.25, device=device)


def random_images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` uniform-noise uint8 RGB images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def authors_loop(
    boxer: Any, images: Sequence[np.ndarray], queries: Sequence[Sequence[tuple[int, str]]]
) -> int:
    """The authors' style: one processor call + forward + post-process per (image, class);
    returns the number of boxes found."""
    processor, model, device = boxer.processor, boxer.model, boxer.device
    dtype = boxer.compute_dtype
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    found = 0
    for image, image_queries in zip(images, queries, strict=True):
        for _, prompt in image_queries:
            caption = prompt.lower().strip()
            caption = caption if caption.endswith(".") else caption + "."
            inputs = processor(images=image, text=caption, return_tensors="pt").to(device)
            with torch.inference_mode(), autocast:
                outputs = model(**inputs)
            outputs.logits = outputs.logits.float()
            outputs.pred_boxes = outputs.pred_boxes.float()
            result = processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                threshold=boxer.box_threshold,
                text_threshold=boxer.text_threshold,
                target_sizes=[image.shape[:2]],
            )[0]
            found += len(result["boxes"])
    return found


def queries_for(batch: int) -> list[list[tuple[int, str]]]:
    """``CLASSES_PER_IMAGE`` ``(class id, prompt)`` pairs per image, cycling :data:`PROMPTS`."""
    return [
        [
            (1 + (i + c) % len(PROMPTS), PROMPTS[(i + c) % len(PROMPTS)])
            for c in range(CLASSES_PER_IMAGE)
        ]
        for i in range(batch)
    ]


def run(
    device: torch.device,
    sizes: Sequence[str],
    batch_sizes: Sequence[int],
    repeats: int | None,
    families: Sequence[str] = ("grounding-dino",),
) -> list[list[str]]:
    """Time the loop and the batched boxer; one table row per (family, size, batch, style).

    ``repeats`` defaults to 5, or 1 for the full model on CPU.
    """
    rows: list[list[str]] = []
    for family, size in [(f, s) for f in families for s in sizes]:
        with tempfile.TemporaryDirectory(prefix="samwsss-bench-gdino-") as folder:
            boxer = load_boxer(size, Path(folder), device, family)
        full_on_cpu = size == "full" and device.type == "cpu"
        here = [b for b in batch_sizes if not full_on_cpu or b <= 1] or [min(batch_sizes)]
        count = repeats if repeats is not None else (1 if full_on_cpu else 5)
        if not full_on_cpu:  # warm up both paths once (kernels, allocator, tokenizer)
            warm, warm_queries = random_images(1, 60, 80, seed=99), queries_for(1)
            boxer(warm, warm_queries)
            authors_loop(boxer, warm, warm_queries)
        dtype = str(boxer.compute_dtype).replace("torch.", "")
        for batch in here:
            images, queries = random_images(batch, *IMAGE_SIZE, seed=batch), queries_for(batch)
            calls: dict[str, Callable[[], object]] = {
                "loop": functools.partial(authors_loop, boxer, images, queries),
                "batched": functools.partial(boxer, images, queries),
            }
            results = _measure.interleave(calls, device, count)
            for style, result in results.items():
                loop = None if style == "loop" else results["loop"].median
                rows.append(
                    [
                        family,
                        size,
                        str(device),
                        dtype,
                        str(batch),
                        style,
                        f"{result.median:.3f}",
                        f"{batch / result.median:.3g}",
                        f"{result.growth_bytes / _measure.MIB:.0f}",
                        _measure.speedup(loop, result.median),
                    ]
                )
        del boxer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, print the table."""
    parser = _measure.parser(__doc__.split("\n")[0], repeats=None)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument(
        "--families", nargs="+", default=[FAMILIES[0]], choices=FAMILIES, help="architectures"
    )
    args = parser.parse_args(argv)
    device = _measure.resolve_device(args)
    rows = run(device, args.sizes, args.batch_sizes, args.repeats, args.families)
    header = [
        "family",
        "size",
        "device",
        "dtype",
        "batch",
        "style",
        "s/batch",
        "images/s",
        "peak MB",
        "speedup",
    ]
    sys.stdout.write(_measure.markdown_table(header, rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

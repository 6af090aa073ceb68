"""Peak memory on one huge image: 48 megapixels, 64 boxes, bounded vs unbounded, on a CPU.

One ``6000x8000`` image with 64 boxes over 20 VOC classes goes through the text-input
pipeline (``Pipeline.run_arrays``: the tiny random SAM of the tests, written and loaded like
a real checkpoint, then the merger) and its semantic mask is written as a PNG. A fixed
boxer hands over the 64 boxes, so every run masks the same boxes whatever the detector.

Two variants, each run in a fresh subprocess per repeat:

* ``bounded`` — the package as it is: full-resolution logits upscaled under
  ``masker.UPSCALE_BUDGET_PIXELS`` (one 48 MP mask at a time), the merge done in row bands
  of ``merger.MERGE_BUDGET_PIXELS`` mask pixels;
* ``unbounded`` (baseline) — both budgets infinite: all of an image's logits upscaled at
  once, the merge in one pass over the whole stack (the merger before the bands; the
  masker before its upscale budget).

Peak memory is the process's resident high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` once the models are loaded and warmed up) minus the resident
set at that moment: what the image, its 64 masks and every temporary add over the models.
The image itself (144 MB) is made after the reset, so it counts. The seconds are those of
the pipeline call and the PNG write. Both variants must give the same mask bits: the
children hash the label map and the instance masks and the parent compares them.

The unbounded baseline peaks near 15 GiB at 64 boxes: ``--skip-baseline`` leaves it out
on a machine that cannot spare that. Run from the repository root::

    python -m benchmarks.huge_image                      # bounded x3, baseline x1
    python -m benchmarks.huge_image --skip-baseline      # bounded only
    python -m benchmarks.huge_image --rule area --uncertain-margin 0.1 --skip-baseline
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _measure

#: The limit the bounded path must stay under (issue 10): GiB over the models' memory.
LIMIT_GIB = 4.0
VARIANTS = ("bounded", "unbounded")
INFINITE = 2**62
REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- child
def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_high_water_mark() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def fixed_detections(height: int, width: int, count: int, seed: int = 0) -> Any:
    """``count`` seeded boxes (5-40% of each side), classes ``1..20`` round-robin."""
    import torch

    from samwsss.detections import Detections

    rng = np.random.default_rng(seed)
    box_h = rng.uniform(0.05, 0.4, count) * height
    box_w = rng.uniform(0.05, 0.4, count) * width
    y1 = rng.uniform(0, 1, count) * (height - box_h)
    x1 = rng.uniform(0, 1, count) * (width - box_w)
    boxes = np.stack([x1, y1, x1 + box_w, y1 + box_h], 1)
    classes = [1 + i % 20 for i in range(count)]
    return Detections(
        image_size=(height, width),
        boxes=torch.tensor(boxes, dtype=torch.float32),
        box_scores=torch.tensor(rng.uniform(0.3, 0.9, count), dtype=torch.float32),
        class_ids=torch.tensor(classes, dtype=torch.int64),
        prompts=tuple(f"class {c}" for c in classes),
    )


class FixedBoxer:
    """A :class:`~samwsss.stages.contracts.Boxer` that returns the same boxes for every
    image (the detector is not what is measured here)."""

    def __init__(self, detections: Any) -> None:
        import torch

        self.detections = detections
        self._device = torch.device("cpu")

    @property
    def source(self) -> Any:
        from samwsss.stages.contracts import ModelSource

        return ModelSource("fixed boxes")

    @property
    def device(self) -> Any:
        return self._device

    def to(self, device: Any) -> FixedBoxer:
        import torch

        self._device = torch.device(device)
        return self

    def detect(
        self,
        images: Any,
        queries: Sequence[Any],
        *,
        prompt_mode: str | None = None,
        max_rows: int | None = None,
    ) -> list[Any]:
        """The fixed detections for each image of the batch (same size required)."""
        for size in images.sizes:
            if size != self.detections.image_size:
                raise ValueError(f"fixed boxes are for {self.detections.image_size}, got {size}")
        return [self.detections.to(self._device) for _ in images.sizes]


def child(options: dict[str, Any]) -> dict[str, Any]:
    """One measured run in this (fresh) process; returns the numbers as a dict."""
    import torch

    import samwsss.stages.masker as masker_module
    import samwsss.stages.merger as merger_module
    from samwsss.labelio import write_label_png
    from samwsss.mapping import load_mapping
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.registry import create
    from samwsss.stages.merger import MaskMerger

    if options["threads"]:
        torch.set_num_threads(options["threads"])
    if options["variant"] == "unbounded":
        masker_module.UPSCALE_BUDGET_PIXELS = INFINITE
        merger_module.MERGE_BUDGET_PIXELS = INFINITE
    height, width, count = options["height"], options["width"], options["boxes"]
    detections = fixed_detections(height, width, count)
    masker = create("masker", options["model"], device="cpu")
    pipe = Pipeline(
        load_mapping("voc"),
        FixedBoxer(detections),
        masker,
        MaskMerger(options["rule"], options["uncertain_margin"], options["min_area"]),
        batch_size=1,
    ).to("cpu")
    classes = sorted(set(detections.class_ids.tolist()))
    # warm-up on a small image: lazy imports, kernels and allocator pools count as models
    small = fixed_detections(300, 400, 4)
    warm = Pipeline(load_mapping("voc"), FixedBoxer(small), masker, batch_size=1)
    warm.run_arrays([np.zeros((300, 400, 3), np.uint8)], [tuple(classes)])
    del warm, small
    gc.collect()

    masked_kib = [0]
    masked_at = [0.0]
    segment = masker.segment

    def segment_and_note(*args: Any, **kwargs: Any) -> Any:
        result = segment(*args, **kwargs)
        masked_kib[0] = _status_kib("VmHWM")
        masked_at[0] = time.perf_counter()
        return result

    masker.segment = segment_and_note
    sampler = None
    base_kib = _status_kib("VmRSS")
    if not _reset_high_water_mark():  # fall back on sampling the resident set
        sampler = _measure.PeakMemory().__enter__()
    image = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    start = time.perf_counter()
    result = pipe.run_arrays([image], [tuple(classes)], keep_masks=True)[0]
    write_label_png(Path(options["scratch"]) / f"{options['variant']}.png", result.mask)
    seconds = time.perf_counter() - start
    if sampler is not None:
        sampler.__exit__(None, None, None)
        peak = sampler.peak
        masked = peak
    else:
        peak = _status_kib("VmHWM") * 1024
        masked = masked_kib[0] * 1024
    masks = result.detections.masks
    if masks is None:
        raise RuntimeError("the pipeline returned no instance masks (keep_masks=True)")
    return {
        "variant": options["variant"],
        "seconds": seconds,
        "masking_seconds": masked_at[0] - start,
        "peak_over_models": peak - base_kib * 1024,
        "masking_peak_over_models": masked - base_kib * 1024,
        "models_rss": base_kib * 1024,
        "label_sha256": hashlib.sha256(np.ascontiguousarray(result.mask).data).hexdigest(),
        "masks_sha256": hashlib.sha256(masks.contiguous().numpy().data).hexdigest(),
        "labels": sorted(int(v) for v in np.unique(result.mask)),
        # count_nonzero: a bool sum() would go through an int64 copy of all 64 masks
        "mask_pixels": int(torch.count_nonzero(masks)),
    }


# --------------------------------------------------------------------------- parent
def run_child(options: dict[str, Any]) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter (its own high-water mark); its dict back."""
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.huge_image", "--child", json.dumps(options)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"the {options['variant']} run failed (exit {completed.returncode}):\n"
            + completed.stderr[-4000:]
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def summarise(runs: dict[str, list[dict[str, Any]]]) -> tuple[list[list[str]], bool, bool]:
    """Table rows (medians), whether the bounded path is under the limit, and whether every
    run gave the same mask bits."""
    medians = {
        variant: {
            key: statistics.median(run[key] for run in found)
            for key in (
                "seconds",
                "masking_seconds",
                "peak_over_models",
                "masking_peak_over_models",
            )
        }
        for variant, found in runs.items()
        if found
    }
    baseline = medians.get("unbounded")
    rows = []
    for variant, median in medians.items():
        peak_ratio = time_ratio = ""
        if baseline is not None and variant != "unbounded":
            peak_ratio = f"{median['peak_over_models'] / baseline['peak_over_models']:.2f}"
            time_ratio = f"{median['seconds'] / baseline['seconds']:.2f}"
        rows.append(
            [
                variant,
                str(len(runs[variant])),
                f"{median['seconds']:.2f}",
                f"{median['masking_seconds']:.2f}",
                f"{median['peak_over_models'] / _measure.GIB:.2f}",
                f"{median['masking_peak_over_models'] / _measure.GIB:.2f}",
                peak_ratio,
                time_ratio,
            ]
        )
    every = [run for found in runs.values() for run in found]
    same = len({(run["label_sha256"], run["masks_sha256"]) for run in every}) == 1
    bounded = medians.get("bounded")
    under = bounded is not None and bounded["peak_over_models"] <= LIMIT_GIB * _measure.GIB
    return rows, under, same


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the variants in subprocesses, print the table."""
    parser = _measure.parser(__doc__.split("\n\n")[0], repeats=3, device=False)
    parser.add_argument("--height", type=int, default=6000)
    parser.add_argument("--width", type=int, default=8000)
    parser.add_argument("--boxes", type=int, default=64)
    parser.add_argument("--rule", default="score", choices=("score", "paper", "area"))
    parser.add_argument("--uncertain-margin", type=float, default=None)
    parser.add_argument("--min-area", type=int, default=0)
    parser.add_argument(
        "--baseline-repeats", type=int, default=1, help="unbounded runs (1: ~15 GiB each)"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="bounded path only")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        sys.stdout.write(json.dumps(child(json.loads(args.child))) + "\n")
        return 0

    from samwsss.testing.sam import build_tiny_sam

    scratch = _measure.scratch_directory("samwsss-huge-")
    try:
        model = build_tiny_sam(scratch / "sam")
        options = {
            "model": str(model),
            "scratch": str(scratch),
            "threads": args.threads,
            "height": args.height,
            "width": args.width,
            "boxes": args.boxes,
            "rule": args.rule,
            "uncertain_margin": args.uncertain_margin,
            "min_area": args.min_area,
        }
        repeats = {"bounded": args.repeats}
        if not args.skip_baseline:
            repeats["unbounded"] = args.baseline_repeats
        runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in repeats}
        # the variants take turns, so load drifting on a shared machine hits both alike
        for turn in range(max(repeats.values())):
            for variant, count in repeats.items():
                if turn < count:
                    runs[variant].append(run_child(dict(options, variant=variant)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows, under, same = summarise(runs)
    megapixels = args.height * args.width / 1e6
    sys.stdout.write(
        f"one {args.height}x{args.width} image ({megapixels:.1f} MP), {args.boxes} boxes, "
        f"tiny SAM, merge rule {args.rule}, uncertain margin {args.uncertain_margin}, "
        f"min area {args.min_area}; {_hardware(args.threads)}\n"
        f"models resident: {runs['bounded'][0]['models_rss'] / _measure.GIB:.2f} GiB; "
        f"medians over the runs; peak = resident high-water mark over the models\n\n"
    )
    header = [
        "variant",
        "runs",
        "seconds",
        "of which masking",
        "peak GiB over models",
        "peak GiB by end of masking",
        "peak vs unbounded",
        "time vs unbounded",
    ]
    sys.stdout.write(_measure.markdown_table(header, rows) + "\n\n")
    compared = sum(len(found) for found in runs.values()) > 1
    sys.stdout.write(
        f"bounded peak <= {LIMIT_GIB:.0f} GiB over the models: {'yes' if under else 'NO'}\n"
        f"same mask bits in every run (label map and instance masks): "
        f"{('yes' if same else 'NO') if compared else 'one run, nothing to compare'}\n"
    )
    return 0 if under and same else 1


def _hardware(threads: int | None) -> str:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return _measure.hardware("cpu")


if __name__ == "__main__":
    raise SystemExit(main())

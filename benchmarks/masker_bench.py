"""Masker throughput: batched ``SamMasker`` vs the authors' SAM loop, same run, same weights.

Model sizes (random weights, saved with ``save_pretrained`` and loaded through
``SamMasker.from_pretrained`` like real checkpoints):

* ``tiny``  — the tests' tiny SAM (ViT hidden 32, 2 layers, 256x256 input);
* ``vit-b`` — ``SamConfig()``: the full-size ViT-B SAM (1024x1024 input);
* ``vit-h`` — the full-size ViT-H SAM of the paper (for GPUs).

Styles timed on the same images and boxes:

* ``loop`` — the authors' style: per image, the SAM image processor then one encoder
  pass; then per class present, one prompt-encoder/decoder call with that class's boxes,
  ``post_process_masks`` and a copy of the masks to the CPU;
* ``batched`` — one ``SamMasker`` call on the whole batch (all images through the encoder
  together, all boxes decoded together on the shared embeddings).

Precision, for both styles: image encoder in bf16 autocast on CUDA (fp32 on CPU),
prompt encoder and mask decoder in fp32. Reported per (size,
batch, style): median seconds per batch, images/s, peak memory (CUDA: max allocated
growth; CPU: peak resident-set growth sampled every 5 ms) and the loop/batched speed-up.

Run from the repository root::

    python -m benchmarks.masker_bench --sizes tiny --batch-sizes 1 4 8
    python -m benchmarks.masker_bench --sizes vit-b --batch-sizes 1 2 --repeats 1 --warmup 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samwsss.detections import Detections
from samwsss.stages.masker import SamMasker
from samwsss.stages.masker_transforms import scale_boxes

#: VOC-like image sizes (H, W), used round-robin.
IMAGE_SIZES = ((375, 500), (500, 375), (333, 500), (500, 400))


class PeakRss:
    """Largest resident-set growth of this process while the block runs (Linux)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.base = 0
        self.peak = 0
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    def current(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * self.page_size

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> PeakRss:
        self.base = self.peak = self.current()
        self._done.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()
        self.peak = max(self.peak, self.current())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def model_config(size: str) -> Any:
    """The transformers ``SamConfig`` of ``size`` (``tiny``, ``vit-b``, ``vit-h``)."""
    from transformers import SamConfig, SamVisionConfig

    if size == "tiny":
        from tests.sam_fixtures import tiny_sam_config

        return tiny_sam_config("sam")
    if size == "vit-b":
        return SamConfig()
    if size == "vit-h":
        vision = SamVisionConfig(
            hidden_size=1280,
            num_hidden_layers=32,
            num_attention_heads=16,
            global_attn_indexes=[7, 15, 23, 31],
        )
        return SamConfig(vision_config=vision)
    raise ValueError(f"size must be 'tiny', 'vit-b' or 'vit-h', got {size!r}")


def save_random_sam(size: str, directory: Path) -> Path:
    """A random-weight SAM of ``size`` + its processor, written with ``save_pretrained``."""
    from transformers import SamModel

    torch.manual_seed(0)
    config = model_config(size)
    SamModel(config).save_pretrained(directory)
    save_sam_processor(directory, int(config.vision_config.image_size))
    return directory


def save_sam_processor(directory: Path, side: int) -> None:
    """Save a ``SamProcessor`` for a model of input ``side`` pixels (masks at side / 4)."""
    from transformers import SamImageProcessor, SamProcessor

    SamProcessor(
        SamImageProcessor(
            size={"longest_edge": side},
            pad_size={"height": side, "width": side},
            mask_size={"longest_edge": side // 4},
            mask_pad_size={"height": side // 4, "width": side // 4},
        )
    ).save_pretrained(directory)


def make_batch(
    count: int, boxes_per_image: int, classes_per_image: int, seed: int = 0
) -> tuple[list[np.ndarray], list[Detections]]:
    """``count`` random images with ``boxes_per_image`` boxes spread over the classes."""
    rng = np.random.default_rng(seed)
    images, dets = [], []
    for i in range(count):
        height, width = IMAGE_SIZES[i % len(IMAGE_SIZES)]
        images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        x = np.sort(rng.uniform(0, width, (boxes_per_image, 2)), axis=1)
        y = np.sort(rng.uniform(0, height, (boxes_per_image, 2)), axis=1)
        boxes = torch.tensor(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1), dtype=torch.float32)
        classes = torch.tensor([1 + j % classes_per_image for j in range(boxes_per_image)])
        dets.append(
            Detections(
                image_size=(height, width),
                boxes=boxes,
                box_scores=torch.full((boxes_per_image,), 0.5),
                class_ids=classes,
                prompts=tuple(f"class {int(c)}" for c in classes),
            )
        )
    return images, dets


def authors_loop(masker: SamMasker, processor: Any) -> Callable[[list[np.ndarray], list[Detections]], list]:
    """The reference scripts' pattern on the same transformers model: per image, embed
    once; per class, one decoder call with that class's boxes, post-process, to CPU."""
    model = masker.model
    device = masker.device
    autocast = (
        torch.autocast(device_type=device.type, dtype=masker.compute_dtype)
        if masker.compute_dtype != torch.float32
        else nullcontext()
    )

    def call(images: list[np.ndarray], dets: list[Detections]) -> list:
        results = []
        with torch.no_grad():
            for image, det in zip(images, dets):
                inputs = processor(images=image, return_tensors="pt")
                original = [tuple(int(v) for v in inputs["original_sizes"][0])]
                resized = [tuple(int(v) for v in inputs["reshaped_input_sizes"][0])]
                with autocast:
                    embeddings = model.get_image_embeddings(inputs["pixel_values"].to(device))
                embeddings = embeddings.float()  # decoder in float32, as SamMasker does
                per_class = []
                for class_id in det.class_ids.unique().tolist():
                    boxes = det.boxes[det.class_ids == class_id].double()
                    boxes = scale_boxes(boxes, original[0], resized[0]).to(device)
                    output = model(
                        image_embeddings=embeddings, input_boxes=boxes[None], multimask_output=False
                    )
                    masks = processor.post_process_masks(
                        output.pred_masks.float(), original, resized
                    )[0]
                    per_class.append((masks[:, 0].cpu(), output.iou_scores[0, :, 0].float().cpu()))
                results.append(per_class)
        return results

    return call


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    call: Callable[[], Any], device: torch.device, repeats: int, warmup: int
) -> tuple[float, float]:
    """Median seconds over ``repeats`` calls (after ``warmup``) and peak memory growth (MB)."""
    for _ in range(warmup):
        call()
    _synchronize(device)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        tracker: Any = nullcontext()
    else:
        tracker = PeakRss()
    with tracker:
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            _synchronize(device)
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = tracker.growth_mb
    return statistics.median(times), peak


def run(
    device: str | torch.device,
    sizes: Sequence[str] = ("tiny",),
    batch_sizes: Sequence[int] = (1, 4, 8),
    boxes_per_image: int = 4,
    classes_per_image: int = 2,
    repeats: int = 3,
    warmup: int = 1,
    dtype: str | None = None,
) -> list[dict[str, Any]]:
    """Benchmark the batched masker against the authors' loop.

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        sizes: model sizes among ``tiny``, ``vit-b``, ``vit-h``.
        batch_sizes: images per call.
        boxes_per_image, classes_per_image: boxes of each image, spread round-robin
            over that many classes (the loop makes one decoder call per class).
        repeats, warmup: timed and untimed calls per measurement.
        dtype: masker ``dtype`` (default: bf16 autocast on CUDA, fp32 on CPU).

    Returns:
        One dict per (size, batch, style): ``size, device, dtype, threads, batch,
        boxes_per_image, classes_per_image, style, seconds, images_per_s, peak_mem_mb,
        mem_kind, speedup_vs_loop`` (``None`` for the loop rows).
    """
    from transformers import SamProcessor

    device = torch.device(device)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            directory = save_random_sam(size, Path(tmp))
            processor = SamProcessor.from_pretrained(directory)
            for batch in batch_sizes:
                masker = SamMasker.from_pretrained(
                    directory, device=device, dtype=dtype, max_images_per_batch=batch
                )
                images, dets = make_batch(batch, boxes_per_image, classes_per_image)
                loop = authors_loop(masker, processor)
                timings = {
                    "loop": measure(lambda: loop(images, dets), device, repeats, warmup),
                    "batched": measure(lambda: masker(images, dets), device, repeats, warmup),
                }
                for style, (seconds, peak) in timings.items():
                    rows.append(
                        {
                            "size": size,
                            "device": str(device),
                            "dtype": str(masker.compute_dtype).replace("torch.", ""),
                            "threads": torch.get_num_threads(),
                            "batch": batch,
                            "boxes_per_image": boxes_per_image,
                            "classes_per_image": classes_per_image,
                            "style": style,
                            "seconds": round(seconds, 4),
                            "images_per_s": round(batch / seconds, 3),
                            "peak_mem_mb": round(peak, 1),
                            "mem_kind": "cuda_max_allocated" if device.type == "cuda" else "rss_growth",
                            "speedup_vs_loop": None
                            if style == "loop"
                            else round(timings["loop"][0] / seconds, 2),
                        }
                    )
                del masker
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of :func:`run` rows."""
    lines = [
        "| size | device | dtype | batch | style | s/batch | images/s | peak MB | speed-up |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        speedup = "" if row["speedup_vs_loop"] is None else f"{row['speedup_vs_loop']:.2f}x"
        lines.append(
            f"| {row['size']} | {row['device']} | {row['dtype']} | {row['batch']} | {row['style']} "
            f"| {row['seconds']:.3f} | {row['images_per_s']:.2f} | {row['peak_mem_mb']:.0f} | {speedup} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=None, help="tiny, vit-b, vit-h")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--boxes-per-image", type=int, default=4)
    parser.add_argument("--classes-per-image", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: bf16 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or (["tiny", "vit-h"] if args.device.startswith("cuda") else ["tiny"])
    rows = run(
        args.device,
        sizes=sizes,
        batch_sizes=args.batch_sizes,
        boxes_per_image=args.boxes_per_image,
        classes_per_image=args.classes_per_image,
        repeats=args.repeats,
        warmup=args.warmup,
        dtype=args.dtype,
    )
    sys.stdout.write(format_table(rows) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

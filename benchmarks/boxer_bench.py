"""Boxer throughput: batched GroundingDinoBoxer vs the authors' loop, same run, same model.

For each model size (``tiny``: the tests' tiny random config; ``full``: a random
``GroundingDinoConfig()`` = Swin-T + BERT-base, d_model 256, 900 queries, the real
grounding-dino-tiny architecture) and each batch size, it times

* ``loop`` — the authors' style: for each image, for each class, the processor on the
  CPU, one forward, ``post_process_grounded_object_detection``;
* ``batched`` — one ``GroundingDinoBoxer`` call on the whole batch (per-class mode: all
  (image, class) rows of the batch in forwards bucketed by resized size, backbone shared
  per image);
* ``batched_noshare`` (optional) — the same without backbone sharing.

Both use the same weights and precision (bf16 autocast on CUDA, fp32 on CPU). Reported:
median seconds per batch, images/s, peak memory (CUDA: max allocated; CPU: peak resident
set growth sampled every 5 ms), and batched/loop speedup. Weights are random, so the
number of boxes differs from real checkpoints; the box threshold is set to 0.3 as in the
paper (the work per forward does not depend on it).

Run from the repository root::

    python -m benchmarks.boxer_bench --sizes tiny full --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

PROMPTS = ("cat", "dog", "person", "wild bird", "dining table", "car")


class _RssSampler:
    """Peak resident set size growth of this process while active (Linux /proc)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * self.page

    def __enter__(self) -> _RssSampler:
        self.base = self._rss()
        self.peak = self.base
        self._stop.clear()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _boxer_call(
    boxer: Any,
    images: list[np.ndarray],
    queries: list[list[tuple[int, str]]],
    max_batch_rows: int,
    share: bool,
) -> Callable[[], Any]:
    """One boxer call with at most ``max_batch_rows`` rows a forward, sharing on or off."""

    def call() -> Any:
        boxer.max_batch_rows = max_batch_rows
        boxer.share_backbone = share
        try:
            return boxer(images, queries)
        finally:
            boxer.share_backbone = True

    return call


def build_model(size: str, seed: int = 0) -> tuple[Any, Any]:
    """A random ``GroundingDinoForObjectDetection`` of ``size`` and a processor with the
    real checkpoint's image settings and the tests' local vocabulary."""
    import tempfile

    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from tests.gdino_fixtures import REAL_PROCESSOR_SETTINGS, tiny_grounding_dino_config, tiny_vocabulary

    if size == "tiny":
        config = tiny_grounding_dino_config()
    elif size == "full":
        config = GroundingDinoConfig()  # Swin-T, BERT-base, d_model 256: grounding-dino-tiny
    else:
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        vocab = os.path.join(folder, "vocab.txt")
        with open(vocab, "w", encoding="utf-8") as handle:
            handle.write("\n".join(tiny_vocabulary()) + "\n")
        tokenizer = BertTokenizer(vocab)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(**REAL_PROCESSOR_SETTINGS), tokenizer=tokenizer
    )
    return model, processor


def _images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _loop(boxer: Any, images: Sequence[np.ndarray], queries: Sequence[Sequence[tuple[int, str]]]) -> int:
    """The authors' style: one processor call + forward + post-process per (image, class)."""
    import contextlib

    processor, model, device = boxer.processor, boxer.model, boxer.device
    dtype = boxer.compute_dtype
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    found = 0
    for image, image_queries in zip(images, queries):
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


def _time_call(call: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """Seconds of one call and its peak memory in MB (CUDA: max allocated above the
    allocation before the call; CPU: resident set growth, sampled)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        call()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return seconds, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with _RssSampler() as sampler:
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
    return seconds, sampler.growth_mb


def _measure_interleaved(
    calls: dict[str, Callable[[], Any]], device: torch.device, repeats: int
) -> dict[str, tuple[float, float]]:
    """Per style: median seconds over ``repeats`` and the largest peak memory.

    The styles take turns within each repetition so that a machine whose load drifts
    (shared CPUs) slows them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    peaks: dict[str, float] = {name: 0.0 for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            seconds, peak = _time_call(call, device)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
    return {name: (statistics.median(times[name]), peaks[name]) for name in calls}


def run(
    device: str | torch.device = "cpu",
    sizes: Sequence[str] = ("tiny", "full"),
    batch_sizes: Sequence[int] = (1, 4, 8),
    *,
    classes_per_image: int = 2,
    image_size: tuple[int, int] = (480, 640),
    repeats: int | None = None,
    full_cpu_max_images: int = 1,
    styles: Sequence[str] = ("loop", "batched"),
    dtype: str | None = None,
    threads: int | None = None,
    max_batch_rows: int | None = 8,
) -> list[dict[str, Any]]:
    """Time the boxer styles; one dict per (size, batch, style).

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        sizes: ``"tiny"`` and/or ``"full"`` model configurations.
        batch_sizes: images per call.
        classes_per_image: prompts per image (VOC averages ~1.5, COCO ~2.9).
        image_size: original ``(H, W)`` of the random images (480x640 -> 800x1066 input).
        repeats: timed repetitions (median); default 5 for tiny / GPU, 1 for full on CPU.
        full_cpu_max_images: on CPU the full model only runs batch sizes up to this (a
            forward takes tens of seconds); the smallest batch size always runs.
        styles: among ``loop``, ``batched``, ``batched_noshare``.
        dtype: boxer precision (default: bf16 on CUDA, fp32 on CPU).
        threads: ``torch.set_num_threads`` for the run (on a CPU shared with other jobs
            one thread is far steadier: OpenMP threads spin-wait on busy cores).
        max_batch_rows: the boxer's rows per forward (8 = its default); ``None`` puts all
            rows of a batch in one forward.

    Returns:
        dicts with ``size, device, dtype, threads, batch, classes_per_image, image_size,
        style, rows, seconds, images_per_s, peak_mem_mb, mem_kind, speedup_vs_loop``.
    """
    from samwsss.stages.boxer import GroundingDinoBoxer

    device = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    results: list[dict[str, Any]] = []
    for size in sizes:
        model, processor = build_model(size)
        boxer = GroundingDinoBoxer(model, processor, device=device, dtype=dtype)
        full_on_cpu = size == "full" and device.type == "cpu"
        sizes_here = [b for b in batch_sizes if not full_on_cpu or b <= full_cpu_max_images]
        sizes_here = sizes_here or [min(batch_sizes)]
        count = repeats if repeats is not None else (1 if full_on_cpu else 5)
        if not full_on_cpu:  # warm up both paths once (kernels, allocator, tokenizer)
            warm = _images(1, 60, 80, seed=99)
            warm_queries = [[(1 + c, PROMPTS[c % len(PROMPTS)]) for c in range(classes_per_image)]]
            boxer(warm, warm_queries)
            _loop(boxer, warm, warm_queries)
        for batch in sizes_here:
            images = _images(batch, *image_size, seed=batch)
            queries = [
                [(1 + (i + c) % len(PROMPTS), PROMPTS[(i + c) % len(PROMPTS)]) for c in range(classes_per_image)]
                for i in range(batch)
            ]
            rows = batch * classes_per_image
            calls: dict[str, Callable[[], Any]] = {}
            for style in styles:
                if style == "loop":
                    calls[style] = functools.partial(_loop, boxer, images, queries)
                elif style in ("batched", "batched_noshare"):
                    calls[style] = _boxer_call(
                        boxer, images, queries, max_batch_rows or rows, style == "batched"
                    )
                else:
                    raise ValueError(f"unknown style {style!r}: use loop, batched or batched_noshare")
            measured = _measure_interleaved(calls, device, count)
            loop_seconds = measured["loop"][0] if "loop" in measured else None
            for style, (seconds, peak) in measured.items():
                results.append(
                    {
                        "size": size,
                        "device": str(device),
                        "dtype": str(boxer.compute_dtype).replace("torch.", ""),
                        "threads": torch.get_num_threads(),
                        "batch": batch,
                        "classes_per_image": classes_per_image,
                        "image_size": f"{image_size[0]}x{image_size[1]}",
                        "style": style,
                        "rows": rows,
                        "max_batch_rows": None if style == "loop" else (max_batch_rows or rows),
                        "repeats": count,
                        "seconds": round(seconds, 4),
                        "images_per_s": round(batch / seconds, 3),
                        "peak_mem_mb": round(peak, 1),
                        "mem_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_growth",
                        "speedup_vs_loop": None
                        if loop_seconds is None or style == "loop"
                        else round(loop_seconds / seconds, 2),
                    }
                )
        del boxer, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run` results."""
    header = "| size | device | dtype | batch | style | s/batch | images/s | peak MB | speedup |"
    lines = [header, "|" + "---|" * 9]
    for r in results:
        speedup = "" if r["speedup_vs_loop"] is None else f"{r['speedup_vs_loop']:.2f}x"
        lines.append(
            f"| {r['size']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['style']} | "
            f"{r['seconds']:.3f} | {r['images_per_s']:.3g} | {r['peak_mem_mb']:.0f} | {speedup} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--classes-per-image", type=int, default=2)
    parser.add_argument("--image-size", nargs=2, type=int, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--full-cpu-max-images", type=int, default=1)
    parser.add_argument("--styles", nargs="+", default=["loop", "batched"])
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--max-batch-rows", type=int, default=8, help="rows per forward; 0 = a whole batch in one"
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    results = run(
        args.device,
        sizes=args.sizes,
        batch_sizes=args.batch_sizes,
        classes_per_image=args.classes_per_image,
        image_size=tuple(args.image_size),
        repeats=args.repeats,
        full_cpu_max_images=args.full_cpu_max_images,
        styles=args.styles,
        dtype=args.dtype,
        threads=args.threads,
        max_batch_rows=args.max_batch_rows or None,
    )
    sys.stdout.write(format_table(results) + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

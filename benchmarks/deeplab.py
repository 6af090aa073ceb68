"""DeepLabV2 training speed: iterations/s and peak memory at 321x321.

Times the trainer's own step (``forward_loss`` -> backward -> SGD with the three parameter
groups and the poly schedule) on synthetic uint8 crops and labels already in memory, so
the numbers are the model's cost without data loading (use DataLoader workers to hide
decoding in real runs). Weights are random (``init="none"``): the cost is the same as with
ImageNet weights.

* CPU (default there): a reduced batch (2) and a few iterations; peak memory is the
  process's peak resident set (``ru_maxrss``).
* CUDA: batch 10 (the COCO recipe; VOC uses 5) in bf16 autocast with channels-last,
  peak memory from ``torch.cuda.max_memory_allocated``.

Both print the projected wall time of ``--target`` iterations (default 20,000, the VOC
schedule) at the measured speed.

Usage (from the repository root)::

    python -m benchmarks.deeplab                      # CPU: batch 2, 3 timed iterations
    python -m benchmarks.deeplab --device cuda        # GPU: batch 10, bf16, 20 timed
    python -m benchmarks.deeplab --batch 5 --iterations 50 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from typing import Any

import torch

from samwsss.deeplab.config import DeepLabConfig
from samwsss.deeplab.model import build_deeplab, count_parameters
from samwsss.deeplab.train import build_optimizer, forward_loss, set_learning_rates


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_benchmark(
    *,
    device: torch.device,
    batch: int,
    iterations: int,
    warmup: int,
    crop: int,
    backbone: str,
    num_classes: int,
    amp: bool,
    channels_last: bool,
    target: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``iterations`` training steps after ``warmup`` untimed ones; return the numbers."""
    torch.manual_seed(seed)
    config = DeepLabConfig(
        backbone=backbone, init="none", iterations=max(target, warmup + iterations),
        batch_size=batch, crop_size=crop,
    ).resolve("voc")
    model = build_deeplab(num_classes, backbone=backbone, init="none").to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, crop, crop, 3), dtype=torch.uint8, generator=generator)
    labels = torch.randint(
        0, num_classes, (batch, crop, crop), dtype=torch.uint8, generator=generator
    )
    labels[:, : crop // 10] = 255  # some ignore pixels, as padded crops have
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    for step in range(warmup + iterations):
        _sync(device)
        started = time.perf_counter()
        set_learning_rates(optimizer, config, step)
        loss = forward_loss(
            model, images, labels, config, device=device, amp=amp, channels_last=channels_last
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    per_iteration = statistics.median(times)
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "threads": torch.get_num_threads(),
        "backbone": backbone,
        "parameters": count_parameters(model),
        "crop": crop,
        "batch": batch,
        "amp": "bf16" if amp and device.type == "cuda" else "fp32",
        "channels_last": channels_last,
        "timed_iterations": iterations,
        "seconds_per_iteration_median": per_iteration,
        "seconds_per_iteration_mean": statistics.fmean(times),
        "iterations_per_second": 1.0 / per_iteration,
        "images_per_second": batch / per_iteration,
        "final_loss": float(loss.item()),
        "target_iterations": target,
        "projected_hours_for_target": per_iteration * target / 3600.0,
    }
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default=None, help="cpu or cuda[:N] (default: cuda if available)"
    )
    parser.add_argument("--batch", type=int, default=None, help="images per step (CPU 2, CUDA 10)")
    parser.add_argument("--iterations", type=int, default=None, help="timed steps (CPU 3, CUDA 20)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (CPU 1, CUDA 5)"
    )
    parser.add_argument("--crop", type=int, default=321)
    parser.add_argument(
        "--backbone", default="resnet101", choices=["resnet50", "resnet101", "resnet152"]
    )
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--target", type=int, default=20_000, help="iterations to project (VOC 20k)"
    )
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA requested but not available")
    on_gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_benchmark(
        device=device,
        batch=args.batch or (10 if on_gpu else 2),
        iterations=args.iterations or (20 if on_gpu else 3),
        warmup=args.warmup if args.warmup is not None else (5 if on_gpu else 1),
        crop=args.crop,
        backbone=args.backbone,
        num_classes=args.num_classes,
        amp=on_gpu and not args.no_amp,
        channels_last=on_gpu and not args.no_channels_last,
        target=args.target,
    )
    memory = (
        f"peak GPU memory {result['peak_gpu_memory_gib']:.2f} GiB"
        if on_gpu
        else f"peak RSS {result['peak_rss_gib']:.2f} GiB"
    )
    sys.stdout.write(
        f"DeepLabV2 {result['backbone']} ({result['parameters'] / 1e6:.1f}M params) on "
        f"{result['device']} [{result['device_name']}, {result['threads']} threads], "
        f"{result['amp']}, crop {result['crop']}, batch {result['batch']}:\n"
        f"  {result['seconds_per_iteration_median']:.3f} s/iteration (median of "
        f"{result['timed_iterations']}), {result['iterations_per_second']:.3f} it/s, "
        f"{result['images_per_second']:.2f} images/s, {memory}\n"
        f"  projected {result['target_iterations']} iterations: "
        f"{result['projected_hours_for_target']:.2f} h (model step only, no data loading)\n"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

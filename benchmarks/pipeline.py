"""End-to-end pipeline benchmark: our batched dataset runs vs the authors' loop, same models.

For each route — ``text-input`` (labels given), ``zero-shot-grounding`` (the ``grounding``
tagger: Grounding DINO prompted with every class), ``zero-shot-ram`` (a RAM++ tagger) — it
times, over one folder of synthetic JPEGs and in the same process:

* ``ours w0``: :func:`samwsss.pipeline.runner.run_dataset` with ``workers=0`` (decoding in
  the main process), palette PNG masks written atomically — the whole call, nothing
  subtracted;
* ``ours w2``: the same with 2 DataLoader workers decoding ahead;
* ``loop``: the authors' style, with the same models and thresholds: per image, decode;
  (zero-shot-ram) tag the one image; per class, one Grounding DINO call with one image
  and one prompt (zero-shot-grounding: every class, tagged when its best box passes the
  tag threshold; ours prompts as the ``GroundingTagger`` does, joint captions by
  default); SAM per class (``--loop-sam embed-once``, the default, embeds the image once
  and decodes each class's boxes in its own call, as the authors' ``SamPredictor`` loop
  did; ``per-call`` calls the masker once per class, re-embedding the image each time);
  the paper's max-class-index merge; a plain index PNG written;
* ``ours mem`` (optional): ``Pipeline.run_arrays`` on already decoded images (no I/O).

Reported per (route, style): images/s and wall seconds (median over repeats; the styles
take turns within each repeat so load drifts on a shared machine hit them alike), the
seconds spent inside the models (forward hooks on the Grounding DINO model, the SAM model
and vision encoder, the RAM model; CUDA events on GPUs), our overhead per image = (wall -
model time) / images, peak memory (CPU: proportional set size of this process and its
DataLoader workers, sampled every 20 ms; CUDA: ``torch.cuda.max_memory_allocated``), GPU
utilisation (``nvidia-smi`` sampled every 100 ms, when present) and the speed-up over the
loop. On CPU a second table splits the overhead: JPEG decoding, Grounding DINO resize and
normalisation, SAM resize/pad, mask upsampling to the original size, merging, copies to
the CPU, writing (ours: in the runner's writer threads, off the critical path), and the
rest (Python glue, tokenising, box decoding, DataLoader, folders, manifest). Two fixed
per-run costs are printed too: a ``run_dataset`` with nothing left to do, and starting
2 DataLoader workers.

Models (``benchmarks._tiny_models``): on CPU the tests' tiny random Grounding DINO (its
processor's edges lowered to ``--gdino-edges``, default 160/267, to fit a ~3 minute run on
two shared cores; pass ``--gdino-edges 800 1333`` for the real resize), tiny SAM (256) and
tiny RAM++ (128); on CUDA full-size random Grounding DINO Swin-T, SAM ViT-H and RAM++
Swin-L in bf16 autocast (the stages' CUDA default). Random weights give arbitrary box and
tag counts, so thresholds are calibrated on the first ``--calibration-images`` images to
VOC-like workloads: ``--boxes-per-class`` boxes per (image, prompt) (box threshold, the
same for both styles), ``--classes-per-image`` classes per image for each tagger (RAM: one
global threshold, used by both styles with the same exact tag mapping; grounding: one
threshold for our tagger's prompting and one for the loop's per-class prompting, so both
pass ~the same number of classes to SAM); text-input labels average 1.5 classes per image
(VOC train). The achieved counts are printed.

Run from the repository root::

    python -m benchmarks.pipeline                      # CPU, tiny models, 1-3 min
    python -m benchmarks.pipeline --device cuda        # GPU, full-size models, bf16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import _tiny_models

ROUTES = ("text-input", "zero-shot-grounding", "zero-shot-ram")
STYLES = ("ours-w0", "ours-w2", "loop", "ours-mem")
DEFAULT_STYLES = ("ours-w0", "ours-w2", "loop")
STYLE_LABELS = {
    "ours-w0": "ours run_dataset workers=0",
    "ours-w2": "ours run_dataset workers=2",
    "ours-mem": "ours run_arrays (no I/O)",
    "loop": "authors' loop",
}
#: VOC-like original sizes (H, W), used round-robin.
IMAGE_SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (281, 500), (375, 500))
#: classes per image of the text-input labels, cycled (mean 1.5, as VOC train).
LABEL_COUNTS = (1, 2, 1, 2, 1, 3, 1, 1)
#: overhead parts timed on CPU, in table order.
PARTS = ("decode", "gdino_pre", "sam_pre", "sam_upscale", "merge", "to_cpu", "write")

logger = logging.getLogger("benchmarks.pipeline")


# --------------------------------------------------------------------------- images
def write_image_folder(folder: Path, count: int, mapping: Any, seed: int = 0) -> dict[str, list[str]]:
    """Write ``count`` synthetic photos-like JPEGs and ``labels.json``; return the labels.

    Images: smooth colour gradients with random ellipses and rectangles and mild noise (JPEG
    sizes and decode times like photographs, unlike pure noise), VOC-like sizes, quality 90.
    Labels: ``LABEL_COUNTS`` classes per image drawn from the mapping's classes.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [entry.name for entry in mapping.classes[1:]]
    labels: dict[str, list[str]] = {}
    for index in range(count):
        height, width = IMAGE_SIZES[index % len(IMAGE_SIZES)]
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        start, slope_x, slope_y = rng.uniform(0, 255, 3), rng.uniform(-0.3, 0.3, 3), rng.uniform(-0.3, 0.3, 3)
        base = start[None, None] + x[..., None] * slope_x + y[..., None] * slope_y
        canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(3, 8))):
            x0, x1 = sorted(rng.uniform(0, width, 2))
            y0, y1 = sorted(rng.uniform(0, height, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
        pixels = np.asarray(canvas).astype(np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
        name = f"img_{index:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        chosen = rng.choice(len(names), size=LABEL_COUNTS[index % len(LABEL_COUNTS)], replace=False)
        labels[name] = [names[i] for i in sorted(chosen)]
    (folder / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    return labels


# --------------------------------------------------------------------------- calibration
#: largest threshold a PipelineConfig accepts (< 1); random models saturate near 1.
_MAX_THRESHOLD = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


def _kth_largest(values: Sequence[float], k: int) -> float:
    """A threshold ``t`` in ``[0, 1)`` with about ``k`` of ``values`` strictly above it."""
    ordered = sorted(values, reverse=True)
    if not ordered:
        return 0.5
    k = min(max(k, 1), len(ordered))
    below = float(np.nextafter(np.float32(ordered[k - 1]), np.float32(-1.0)))
    return min(max(below, 0.0), _MAX_THRESHOLD)


@dataclass(frozen=True)
class Calibration:
    """Thresholds that give the random models VOC-like workloads, and what they gave on the
    calibration images (boxes per (image, prompt); classes per image)."""

    box_threshold: float
    grounding_tag_threshold: float
    loop_tag_threshold: float
    ram_threshold: float | None = None
    boxes_per_prompt: float = float("nan")
    grounding_classes: float = float("nan")
    loop_classes: float = float("nan")
    ram_classes: float = float("nan")


def calibrate_boxes(
    boxer_dir: Path, images: list[np.ndarray], mapping: Any, boxes_per_class: float,
    classes_per_image: float, device: str,
) -> tuple[float, float, float, float]:
    """Box threshold giving ``boxes_per_class`` boxes per (image, prompt) over every class of
    ``mapping`` prompted one at a time, the threshold on a class's best box that tags
    ``classes_per_image`` classes when every class is prompted alone (the loop's grounding
    tagger), and the boxes per prompt and classes per image they give (scores saturating
    at 1 would make them overshoot)."""
    from samwsss.stages.boxer import GroundingDinoBoxer

    boxer = GroundingDinoBoxer.from_pretrained(str(boxer_dir), box_threshold=0.0, device=device)
    queries = [[(entry.index, entry.prompt) for entry in mapping.classes[1:]] for _ in images]
    detections = boxer(images, queries)
    scores: list[float] = []
    best: list[float] = []
    for det in detections:
        values = det.box_scores.float().cpu().numpy()
        classes = det.class_ids.cpu().numpy()
        scores.extend(values.tolist())
        best.extend(float(values[classes == c].max()) for c in np.unique(classes))
    rows = len(images) * (len(mapping.classes) - 1)
    box_threshold = _kth_largest(scores, round(boxes_per_class * rows))
    tag_threshold = _kth_largest(best, round(classes_per_image * len(images)))
    del boxer
    boxes = sum(s > box_threshold for s in scores) / rows
    tagged = sum(b > max(tag_threshold, box_threshold) for b in best) / len(images)
    return box_threshold, tag_threshold, boxes, tagged


def calibrate_grounding_tagger(
    tagger: Any, images: list[np.ndarray], classes_per_image: float
) -> tuple[float, float]:
    """Threshold for ``tagger`` (a ``GroundingTagger`` without threshold, prompting as the
    pipeline does) tagging ~``classes_per_image`` classes, and the classes per image it gives."""
    tags = tagger(images)
    best = [p for result in tags for p in result.probabilities]
    threshold = _kth_largest(best, round(classes_per_image * len(images)))
    return threshold, sum(p > threshold for p in best) / len(images)


def calibrate_ram(
    tagger: Any, mapper: Any, images: list[np.ndarray], classes_per_image: float
) -> tuple[float, float]:
    """Global RAM threshold at which exact mapping gives ~``classes_per_image`` classes, and
    the classes per image it gives."""
    from samwsss.ram.types import TagResult

    probabilities = tagger.probabilities(images).numpy()
    tags = tagger.vocabulary.tags
    reaching = [i for i, tag in enumerate(tags) if mapper.classes_of_tag(tag)]
    candidates = sorted({float(p) for row in probabilities for p in row[reaching]}, reverse=True)
    target = classes_per_image * len(images)

    def mapped(threshold: float) -> int:
        return sum(
            len(mapper.map(TagResult.from_scores(row, threshold, tags)).class_ids) for row in probabilities
        )

    chosen = 0.5
    for candidate in candidates:  # descending: counts grow; stop at the first reaching target
        chosen = min(max(float(np.nextafter(np.float32(candidate), np.float32(-1.0))), 1e-6), _MAX_THRESHOLD)
        if mapped(chosen) >= target:
            break
    return chosen, mapped(chosen) / len(images)


# --------------------------------------------------------------------------- measurement
class ModelClock:
    """Seconds spent inside the given modules' forwards (outermost calls only).

    CPU: ``perf_counter`` around each call. CUDA: events recorded around each call and read
    after a synchronize, so timing does not stall the pipeline.
    """

    def __init__(self, modules: Sequence[torch.nn.Module], device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.depth = 0
        self.seconds = 0.0
        self._start = 0.0
        self._events: list[tuple[Any, Any]] = []
        self._open: Any = None
        self.handles = []
        for module in modules:
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, *_args: Any) -> None:
        if self.depth == 0:
            if self.cuda:
                self._open = torch.cuda.Event(enable_timing=True)
                self._open.record()
            else:
                self._start = time.perf_counter()
        self.depth += 1

    def _leave(self, *_args: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            if self.cuda:
                end = torch.cuda.Event(enable_timing=True)
                end.record()
                self._events.append((self._open, end))
            else:
                self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds = 0.0
        self._events.clear()

    def read(self) -> float:
        """Model seconds since the last :meth:`reset`."""
        if self.cuda:
            torch.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in self._events) / 1000.0
        return self.seconds

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class PartTimers:
    """CPU wall time of named overhead parts, by wrapping functions for the duration.

    Targets are ``(part, owner, attribute)``: ``owner`` a module, class or object whose
    ``attribute`` is replaced by a timing wrapper and restored on exit. Only meaningful on
    CPU (on CUDA these functions return before the kernels finish).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {part: 0.0 for part in PARTS}
        self._targets: list[tuple[str, Any, str]] = []
        self._saved: list[tuple[Any, str, Any, bool]] = []

    def add(self, part: str, owner: Any, attribute: str) -> None:
        if hasattr(owner, attribute):
            self._targets.append((part, owner, attribute))
        else:
            logger.warning("cannot time %s: %r has no %s", part, owner, attribute)

    def reset(self) -> None:
        for part in self.seconds:
            self.seconds[part] = 0.0

    def timed(self, part: str) -> contextlib.AbstractContextManager[None]:
        """Time a block of benchmark code (the loop's own decode and write)."""
        return _Timed(self.seconds, part)

    def __enter__(self) -> PartTimers:
        for part, owner, attribute in self._targets:
            original = getattr(owner, attribute)
            namespace = getattr(owner, "__dict__", {})
            in_dict = isinstance(owner, type) or attribute in namespace
            self._saved.append((owner, attribute, namespace.get(attribute, original), in_dict))
            setattr(owner, attribute, self._wrap(part, original))
        return self

    def __exit__(self, *_exc: object) -> None:
        for owner, attribute, original, in_dict in reversed(self._saved):
            if in_dict:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)  # was a bound method from the class
        self._saved.clear()

    def _wrap(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - start

        return timed


class _Timed:
    def __init__(self, seconds: dict[str, float], part: str) -> None:
        self.seconds, self.part = seconds, part

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self.seconds[self.part] += time.perf_counter() - self.start


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss_bytes() -> int:
    """Proportional set size of this process and its descendants (Linux), in bytes."""
    pending, total, seen = [os.getpid()], 0, set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _pss_bytes(pid)
        pending.extend(_children(pid))
    return total


class MemoryMeter:
    """Peak memory while active: CUDA max allocated, or sampled CPU tree PSS."""

    def __init__(self, device: torch.device, interval: float = 0.02) -> None:
        self.cuda = device.type == "cuda"
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryMeter:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self.peak = tree_pss_bytes()
        self._stop.clear()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, tree_pss_bytes())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, tree_pss_bytes())


class GpuUtilisation:
    """Mean GPU utilisation (%) from ``nvidia-smi -lms 100`` while active; ``None`` without it."""

    def __init__(self, device: torch.device) -> None:
        self.enabled = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        self.index = 0
        if self.enabled:
            self.index = device.index if device.index is not None else torch.cuda.current_device()
        self.samples: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuUtilisation:
        if not self.enabled:
            return self
        self.samples = []
        self._process = subprocess.Popen(
            ["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu",
             "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

        def read() -> None:
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:
                try:
                    self.samples.append(float(line.strip()))
                except ValueError:
                    continue

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._process = None

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


# --------------------------------------------------------------------------- the authors' loop
class AuthorsLoop:
    """The reference scripts' control flow on our stage objects (same models, thresholds).

    Args:
        pipe: the pipeline whose boxer, masker, tagger and mapper are used.
        route: one of :data:`ROUTES`.
        tag_threshold: zero-shot-grounding: a class is tagged when its best box, prompted
            alone, scores above this.
        sam_mode: ``"embed-once"`` (embed each image once, one decoder call per class, as
            the authors' ``SamPredictor`` loop) or ``"per-call"`` (the masker called per
            image per class, re-embedding).
        merger: a ``MaskMerger("paper")`` (the max-class-index rule).
        timers: overhead part timers (CPU), or ``None``.
    """

    def __init__(
        self, pipe: Any, route: str, tag_threshold: float | None, sam_mode: str,
        merger: Any, timers: PartTimers | None = None,
    ) -> None:
        self.pipe = pipe
        self.route = route
        self.tag_threshold = tag_threshold
        self.sam_mode = sam_mode
        self.merger = merger
        self.timers = timers

    def _timed(self, part: str) -> contextlib.AbstractContextManager[None]:
        return self.timers.timed(part) if self.timers is not None else contextlib.nullcontext()

    def classes(self, image: np.ndarray, labels: tuple[int, ...] | None) -> list[tuple[int, Any]]:
        """``(class id, its Detections)`` per class found in ``image``: one boxer call with
        one image and one prompt per class searched."""
        pipe = self.pipe
        boxer = pipe.boxer
        if self.route == "text-input":
            class_ids = list(labels or ())
        elif self.route == "zero-shot-ram":
            tags = pipe.tagger([image])[0]
            class_ids = list(pipe.mapper.map(tags).class_ids)
        else:  # grounding: every class prompted; tagged when its best box passes the threshold
            class_ids = [entry.index for entry in pipe.mapping.classes[1:]]
        found = []
        for cls in class_ids:
            det = boxer([image], [[(cls, pipe.mapping.classes[cls].prompt)]])[0]
            if self.route == "zero-shot-grounding":
                best = float(det.box_scores.max()) if len(det) else 0.0
                if not len(det) or (self.tag_threshold is not None and best <= self.tag_threshold):
                    continue
            if len(det):
                found.append((cls, det))
        return found

    def segment(self, image: np.ndarray, found: list[tuple[int, Any]]) -> list[Any]:
        """SAM on each class's boxes; the detections with masks, on the CPU."""
        if not found:
            return []
        masker = self.pipe.masker
        if self.sam_mode == "per-call":
            return [masker([image], [det])[0].cpu() for _, det in found]
        from samwsss.stages import masker as masker_module
        from samwsss.stages.masker_transforms import scale_boxes, to_chw_uint8

        backend, device = masker.backend, masker.device
        dtype = masker.compute_dtype
        autocast = (
            torch.autocast(device_type=device.type, dtype=dtype)
            if dtype != torch.float32 else contextlib.nullcontext()
        )
        out = []
        with torch.no_grad():
            pixel_values, resized = backend.preprocess([to_chw_uint8(image, device, 0)])
            with autocast:
                features = backend.encode(pixel_values)
            features = tuple(feature.float() for feature in features)
            for _, det in found:
                boxes = scale_boxes(det.boxes.detach().to("cpu", torch.float64), det.image_size, resized[0])
                boxes = boxes.to(device=device, dtype=backend.box_dtype)
                index = torch.zeros(len(det), dtype=torch.long, device=device)
                logits, scores = backend.decode(features, index, boxes, False)
                upscaled = masker_module.upscale_mask_logits(
                    logits[:, 0].float(), backend.geometry, resized[0], det.image_size
                )
                out.append(det.with_masks(upscaled > 0.0, scores[:, 0].float()).cpu())
        return out

    def image_mask(self, image: np.ndarray, labels: tuple[int, ...] | None) -> np.ndarray:
        """One image end to end (no I/O): ``(H, W)`` uint8 paper-merged mask."""
        from samwsss.detections import Detections

        with torch.inference_mode():
            parts = self.segment(image, self.classes(image, labels))
        if not parts:
            return np.zeros(image.shape[:2], dtype=np.uint8)
        return self.merger.merge(Detections.cat(parts)).numpy()

    def run_folder(self, dataset: Any, out: Path) -> None:
        """Decode, segment and write every image of ``dataset`` (plain index PNGs)."""
        from samwsss.labelio import write_label_png

        for image_id in dataset.ids:
            image = dataset.load_image(image_id)  # load_rgb, as our runner decodes
            mask = self.image_mask(image, dataset.labels(image_id))
            with self._timed("write"):
                write_label_png(out / f"{image_id}.png", mask, palette=False)


# --------------------------------------------------------------------------- running
@dataclass
class StyleResult:
    """One (route, style): per-repeat measurements and their medians."""

    route: str
    style: str
    images: int
    walls: list[float] = field(default_factory=list)
    models: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    peak_bytes: int = 0
    gpu_util: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def model(self) -> float:
        return statistics.median(self.models)

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall

    @property
    def overhead_ms(self) -> float:
        """Median over repeats of (wall - model) per image, in ms."""
        return statistics.median(w - m for w, m in zip(self.walls, self.models)) / self.images * 1e3

    @property
    def inline_write(self) -> bool:
        """Whether writing is on the critical path (the loop) or in the runner's writer threads."""
        return self.style == "loop"

    def part_ms(self, part: str) -> float:
        if not self.parts:
            return float("nan")
        return statistics.median(p[part] for p in self.parts) / self.images * 1e3

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route, "style": self.style, "images": self.images,
            "wall_s": round(self.wall, 4), "images_per_s": round(self.images_per_s, 3),
            "model_s": round(self.model, 4), "overhead_ms_per_image": round(self.overhead_ms, 2),
            "peak_memory_mib": round(self.peak_bytes / 2**20, 1),
            "gpu_util_percent": None if not self.gpu_util else round(statistics.median(self.gpu_util), 1),
            "walls": [round(w, 4) for w in self.walls], "model_seconds": [round(m, 4) for m in self.models],
            "parts_ms_per_image": {p: round(self.part_ms(p), 2) for p in PARTS} if self.parts else None,
        }


@dataclass
class Setup:
    """Everything built once: models, pipelines, data, thresholds."""

    device: torch.device
    size: str
    pipelines: dict[str, Any]
    dataset: Any
    images: list[np.ndarray]
    labels: list[tuple[int, ...]]
    calibration: Calibration
    loop_merger: Any
    clock_modules: list[torch.nn.Module]
    scratch: Path
    build_seconds: float


def build(args: argparse.Namespace, device: torch.device, scratch: Path) -> Setup:
    """Write the images, build the models and pipelines, calibrate the thresholds."""
    from samwsss.data import FolderDataset
    from samwsss.data.images import load_rgb
    from samwsss.mapping import load_mapping
    from samwsss.pipeline import Pipeline, PipelineConfig
    from samwsss.stages.grounding_tagger import GroundingTagger
    from samwsss.stages.mapper import TagMapper
    from samwsss.stages.merger import MaskMerger

    started = time.perf_counter()
    mapping = load_mapping("voc")
    folder = scratch / "images"
    write_image_folder(folder, args.images, mapping)
    dataset = FolderDataset(folder, labels=folder / "labels.json", mapping="voc")
    images = [load_rgb(dataset.image_path(i)) for i in dataset.ids]
    labels = [tuple(dataset.labels(i) or ()) for i in dataset.ids]

    boxer_dir = _tiny_models.write_grounding_dino(args.size, scratch / "gdino", *args.gdino_edges)
    sam_dir = _tiny_models.write_sam(args.size, scratch / "sam")
    calibration_images = images[: args.calibration_images]
    box_threshold, loop_tag_threshold, boxes_per_prompt, loop_classes = calibrate_boxes(
        boxer_dir, calibration_images, mapping, args.boxes_per_class, args.classes_per_image, str(device)
    )
    config = PipelineConfig(
        mapping="voc", boxer=str(boxer_dir), masker=str(sam_dir), tagger="grounding",
        box_threshold=box_threshold, batch_size=args.batch_size,
    )
    base = Pipeline.from_config(config, device=device, with_tagger=False)
    tag_threshold, grounding_classes = calibrate_grounding_tagger(
        GroundingTagger(base.boxer, base.mapping), calibration_images, args.classes_per_image
    )
    grounding = Pipeline(
        base.mapping, base.boxer, base.masker, merger=base.merger,
        tagger=GroundingTagger(base.boxer, base.mapping, threshold=tag_threshold),
        mapper=base.mapper, batch_size=args.batch_size, config=config,
    )
    pipelines: dict[str, Any] = {"text-input": base, "zero-shot-grounding": grounding}
    ram_threshold, ram_classes = None, float("nan")
    clock_modules: list[torch.nn.Module] = [base.boxer.model, base.masker.model]
    encoder = getattr(base.masker.model, "vision_encoder", None)
    if isinstance(encoder, torch.nn.Module):
        clock_modules.append(encoder)
    if "zero-shot-ram" in args.routes:
        tagger = _tiny_models.build_ram_tagger(args.size, base.mapping, scratch / "ram").to(device)
        mapper = TagMapper(base.mapping, mode="exact")
        ram_threshold, ram_classes = calibrate_ram(tagger, mapper, calibration_images, args.classes_per_image)
        tagger.set_thresholds(ram_threshold)
        pipelines["zero-shot-ram"] = Pipeline(
            base.mapping, base.boxer, base.masker, merger=base.merger, tagger=tagger,
            mapper=mapper, batch_size=args.batch_size,
            config=config.replace(tagger=f"{args.size} random ram++"),
        )
        clock_modules.append(tagger.model)
    return Setup(
        device=device, size=args.size, pipelines=pipelines, dataset=dataset, images=images,
        labels=labels,
        calibration=Calibration(
            box_threshold, tag_threshold, loop_tag_threshold, ram_threshold, boxes_per_prompt,
            grounding_classes, loop_classes, ram_classes,
        ),
        loop_merger=MaskMerger("paper"),
        clock_modules=clock_modules, scratch=scratch, build_seconds=time.perf_counter() - started,
    )


def _part_timers(setup: Setup, pipe: Any, merger: Any) -> PartTimers:
    from samwsss.detections import Detections
    from samwsss.pipeline import runner
    from samwsss.stages import boxer as boxer_module
    from samwsss.stages import masker as masker_module

    timers = PartTimers()
    timers.add("decode", setup.dataset, "load_image")
    timers.add("gdino_pre", boxer_module, "preprocess_image")
    timers.add("sam_pre", pipe.masker.backend, "preprocess")
    timers.add("sam_upscale", masker_module, "upscale_mask_logits")
    timers.add("merge", merger, "merge")
    timers.add("to_cpu", Detections, "cpu")
    timers.add("write", runner, "write_outputs")
    return timers


def run_style(setup: Setup, route: str, style: str, out: Path, args: argparse.Namespace,
              timers: PartTimers | None) -> None:
    """One timed pass of ``style`` over the whole folder."""
    from samwsss.pipeline.runner import RunOptions, run_dataset

    pipe = setup.pipelines[route]
    if style in ("ours-w0", "ours-w2"):
        options = RunOptions(
            route="text-input" if route == "text-input" else "zero-shot", out=out,
            workers=0 if style == "ours-w0" else 2, evaluate=False,
        )
        run_dataset(pipe, setup.dataset, options, {"data": str(setup.dataset.root), "benchmark": route})
    elif style == "ours-mem":
        pipe.run_arrays(setup.images, setup.labels if route == "text-input" else None)
    elif style == "loop":
        out.mkdir(parents=True, exist_ok=True)
        loop = AuthorsLoop(
            pipe, route, setup.calibration.loop_tag_threshold, args.loop_sam, setup.loop_merger, timers
        )
        loop.run_folder(setup.dataset, out)
    else:
        raise ValueError(f"unknown style {style!r}: use one of {', '.join(STYLES)}")


def warm_up(setup: Setup, route: str, args: argparse.Namespace) -> None:
    """One untimed pass of every code path on two images (kernels, caches, lazy imports)."""
    pipe = setup.pipelines[route]
    pipe.run_arrays(setup.images[:2], setup.labels[:2] if route == "text-input" else None)
    loop = AuthorsLoop(pipe, route, setup.calibration.loop_tag_threshold, args.loop_sam, setup.loop_merger)
    loop.image_mask(setup.images[0], setup.labels[0])
    from samwsss.pipeline.runner import RunOptions, run_dataset

    out = setup.scratch / f"warm-{route}"
    run_dataset(
        pipe, setup.dataset,
        RunOptions(route="text-input" if route == "text-input" else "zero-shot", out=out, workers=0,
                   evaluate=False, max_images=2),
        {"data": str(setup.dataset.root), "benchmark": "warm-up"},
    )
    shutil.rmtree(out, ignore_errors=True)


def measure(setup: Setup, args: argparse.Namespace) -> list[StyleResult]:
    """Every (route, style), repeats interleaved; medians in the results."""
    cuda = setup.device.type == "cuda"
    clock = ModelClock(setup.clock_modules, setup.device)
    results: list[StyleResult] = []
    try:
        for route in args.routes:
            warm_up(setup, route, args)
            by_style = {style: StyleResult(route, style, len(setup.images)) for style in args.styles}
            for repeat in range(args.repeats):
                for style in args.styles:
                    pipe = setup.pipelines[route]
                    out = setup.scratch / f"out-{route}-{style}-{repeat}"
                    timers = None
                    if not cuda:  # CPU timers of the overhead parts (the loop has its own merger)
                        merger = setup.loop_merger if style == "loop" else pipe.merger
                        timers = _part_timers(setup, pipe, merger)
                    result = by_style[style]
                    with contextlib.ExitStack() as stack:
                        if timers is not None:
                            stack.enter_context(timers)
                        memory = stack.enter_context(MemoryMeter(setup.device))
                        utilisation = stack.enter_context(GpuUtilisation(setup.device))
                        if cuda:
                            torch.cuda.synchronize()
                        clock.reset()
                        start = time.perf_counter()
                        run_style(setup, route, style, out, args, timers)
                        if cuda:
                            torch.cuda.synchronize()
                        wall = time.perf_counter() - start
                    result.walls.append(wall)
                    result.models.append(clock.read())
                    result.peak_bytes = max(result.peak_bytes, memory.peak)
                    if utilisation.mean is not None:
                        result.gpu_util.append(utilisation.mean)
                    if timers is not None:
                        result.parts.append(dict(timers.seconds))
                    shutil.rmtree(out, ignore_errors=True)
                    logger.info("%s %s repeat %d: %.2f s", route, style, repeat, wall)
            results.extend(by_style.values())
    finally:
        clock.close()
    return results


class _DecodeOne(torch.utils.data.Dataset):
    """The first image of a dataset, decoded (for timing DataLoader worker start-up)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.dataset.load_image(self.dataset.ids[index])


def fixed_costs(setup: Setup, repeats: int = 3) -> dict[str, float]:
    """Per-run costs that do not grow with the images (medians, seconds).

    ``resume_noop``: ``run_dataset`` over a folder whose outputs are all complete (folder
    and config checks, completeness checks, failures file, manifest). ``worker_start``:
    a DataLoader with 2 workers (fork, prefetch 4, as the runner's) decoding one image,
    minus decoding it in-process: starting and stopping the workers.
    """
    from samwsss.pipeline.runner import RunOptions, run_dataset

    pipe = setup.pipelines["text-input"]
    out = setup.scratch / "fixed-costs"
    options = RunOptions(route="text-input", out=out, workers=0, evaluate=False)
    data = {"data": str(setup.dataset.root), "benchmark": "fixed costs"}
    run_dataset(pipe, setup.dataset, options, data)
    noop, start = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        run_dataset(pipe, setup.dataset, options, data)
        noop.append(time.perf_counter() - began)
        decode = _DecodeOne(setup.dataset)
        began = time.perf_counter()
        for _batch in torch.utils.data.DataLoader(
            decode, batch_size=1, num_workers=2, collate_fn=list, prefetch_factor=4
        ):
            pass
        with_workers = time.perf_counter() - began
        began = time.perf_counter()
        decode[0]
        start.append(with_workers - (time.perf_counter() - began))
    shutil.rmtree(out, ignore_errors=True)
    return {"resume_noop": statistics.median(noop), "worker_start": statistics.median(start)}


# --------------------------------------------------------------------------- report
def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )


def format_table(results: Sequence[StyleResult], device: torch.device) -> str:
    """Markdown table of the medians, with the speed-up over the loop per route."""
    memory_label = "peak GPU GiB" if device.type == "cuda" else "peak PSS MiB"
    lines = [
        "| route | style | images/s | wall s | model s | overhead ms/img | "
        f"{memory_label} | GPU util % | vs loop |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    loops = {r.route: r for r in results if r.style == "loop"}
    for r in results:
        loop = loops.get(r.route)
        ratio = "" if loop is None or r.style == "loop" else f"{r.images_per_s / loop.images_per_s:.2f}x"
        memory = r.peak_bytes / 2**30 if device.type == "cuda" else r.peak_bytes / 2**20
        util = f"{statistics.median(r.gpu_util):.0f}" if r.gpu_util else "n/a"
        lines.append(
            f"| {r.route} | {STYLE_LABELS[r.style]} | {r.images_per_s:.2f} | {r.wall:.2f} | {r.model:.2f} | "
            f"{r.overhead_ms:.1f} | {memory:.{2 if device.type == 'cuda' else 0}f} | {util} | {ratio} |"
        )
    return "\n".join(lines)


def format_parts(results: Sequence[StyleResult]) -> str:
    """Markdown table of the overhead parts (ms/image, medians)."""
    header = "| route | style | overhead | " + " | ".join(PARTS) + " | other |"
    lines = [header, "|" + "---|" * (len(PARTS) + 4)]
    for r in results:
        if not r.parts:
            continue
        parts = [r.part_ms(p) for p in PARTS]
        serial = [ms for p, ms in zip(PARTS, parts) if p != "write" or r.inline_write]
        other = r.overhead_ms - sum(serial)
        lines.append(
            f"| {r.route} | {STYLE_LABELS[r.style]} | {r.overhead_ms:.1f} | "
            + " | ".join(f"{p:.1f}" for p in parts) + f" | {other:.1f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=_tiny_models.SIZES, default=None,
                        help="model sizes (default: tiny on CPU, full on CUDA)")
    parser.add_argument("--images", type=int, default=None, help="synthetic JPEGs (default 8 CPU, 32 CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="pipeline batch (default 4 CPU, 8 CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per style (median)")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(DEFAULT_STYLES))
    parser.add_argument("--loop-sam", choices=("embed-once", "per-call"), default="embed-once")
    parser.add_argument("--gdino-edges", nargs=2, type=int, default=None, metavar=("SHORT", "LONG"),
                        help="Grounding DINO resize (default 160 267 tiny, 800 1333 full; the full "
                        "model's 900 queries need >= ~256 on the short side)")
    parser.add_argument("--boxes-per-class", type=float, default=2.0)
    parser.add_argument("--classes-per-image", type=float, default=1.5)
    parser.add_argument("--calibration-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1 on CPU: on shared cores OpenMP threads "
                        "that wait for each other make every op 3-30x slower)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    cuda = str(args.device).startswith("cuda")
    args.size = args.size or ("full" if cuda else "tiny")
    args.images = args.images or (32 if cuda else 8)
    args.batch_size = args.batch_size or (8 if cuda else 4)
    args.gdino_edges = tuple(args.gdino_edges or ((800, 1333) if args.size == "full" else (160, 267)))
    for name in ("images", "batch_size", "repeats", "calibration_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    for noisy in ("transformers", "huggingface_hub", "samwsss"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    scratch = _tiny_models.scratch_directory()
    total = time.perf_counter()
    try:
        setup = build(args, device, scratch)
        cal = setup.calibration
        tagger = setup.pipelines["zero-shot-grounding"].tagger
        text = setup.pipelines["text-input"]
        edges = args.gdino_edges
        lines = [
            f"device: {device} — {hardware(device)}; torch {torch.__version__}",
            f"models: {args.size} random (Grounding DINO resize {edges[0]}/{edges[1]}); precision: "
            f"boxer {str(text.boxer.compute_dtype).replace('torch.', '')}, "
            f"SAM encoder {str(text.masker.compute_dtype).replace('torch.', '')}",
            f"data: {args.images} synthetic JPEGs (VOC-like sizes), batch {args.batch_size}, "
            f"{args.repeats} repeats (medians), loop SAM {args.loop_sam}",
            f"calibrated on {min(args.calibration_images, args.images)} images: box threshold "
            f"{cal.box_threshold:.7f} -> {cal.boxes_per_prompt:.2f} boxes/prompt (target "
            f"{args.boxes_per_class}); grounding tagger ({getattr(tagger, 'prompt_mode', 'per-class')} "
            f"prompts) threshold {cal.grounding_tag_threshold:.7f} -> {cal.grounding_classes:.2f} "
            f"classes/image, loop (per-class prompts) {cal.loop_tag_threshold:.7f} -> "
            f"{cal.loop_classes:.2f}; RAM threshold "
            f"{'n/a' if cal.ram_threshold is None else f'{cal.ram_threshold:.4f}'} -> "
            f"{cal.ram_classes:.2f} classes/image (target {args.classes_per_image}); text-input labels "
            f"{np.mean([len(x) for x in setup.labels]):.2f} classes/image; "
            f"built in {setup.build_seconds:.1f} s",
        ]
        if device.type == "cpu":
            lines.append(f"memory: process PSS before the runs {tree_pss_bytes() / 2**20:.0f} MiB")
        sys.stdout.write("\n".join(lines) + "\n\n")
        sys.stdout.flush()
        results = measure(setup, args)
        fixed = fixed_costs(setup)
        sys.stdout.write(format_table(results, device) + "\n")
        sys.stdout.write(
            f"\nfixed per-run costs (in the wall times above, spread over {args.images} images): "
            f"run_dataset with nothing left to do {fixed['resume_noop'] * 1e3:.0f} ms; starting "
            f"2 DataLoader workers {fixed['worker_start'] * 1e3:.0f} ms\n"
        )
        if device.type != "cuda":
            sys.stdout.write(
                "\noverhead parts, ms/image (medians; decoding in workers is not counted for workers=2; "
                "ours write in the runner's 2 writer threads, overlapping the rest, so 'other' = "
                "overhead - the serial parts):\n" + format_parts(results) + "\n"
            )
        sys.stdout.write(f"\ntotal benchmark time {time.perf_counter() - total:.0f} s\n")
        if args.json:
            args.json.write_text(json.dumps({
                "device": str(device), "hardware": hardware(device), "size": args.size,
                "images": args.images, "batch_size": args.batch_size, "repeats": args.repeats,
                "gdino_edges": list(args.gdino_edges), "loop_sam": args.loop_sam,
                "fixed_costs_s": fixed,
                "calibration": {k: (None if isinstance(v, float) and np.isnan(v) else v)
                                for k, v in dataclasses.asdict(cal).items()},
                "results": [r.to_dict() for r in results],
            }, indent=2), encoding="utf-8")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""End-to-end pipeline benchmark: our dataset runner vs the authors' loop, same models.

For each route — ``text-input`` (labels given) and ``zero-shot`` (a RAM++ tagger) — it
times, over one folder of synthetic JPEGs and in the same process:

* ``ours-w0``: :func:`samwsss.runs.runner.run_dataset` with ``workers=0`` (decoding in
  the main process), palette PNG masks written atomically: the whole call;
* ``ours-w2``: the same with 2 DataLoader workers decoding ahead;
* ``pil-w0`` / ``pil-w2``: the same with ``image_resize="pil"`` (the paper preset's PIL
  resizes for every model: in the main process with 0 workers, in the decode workers with
  2), to price matching the authors' resizes against ``ours-w0`` / ``ours-w2``;
* ``sam3-w0``: the ``sam3`` preset's pipeline on the same images and labels: one random
  SAM 3 (tiny on CPU at its released 1008 input; full size on CUDA) replaces Grounding DINO
  + SAM, and (zero-shot) its presence score replaces RAM++, calibrated to the same 1.5
  classes per image; ``workers=0``;
* ``loop``: the authors' style with the same models and thresholds: per image, decode;
  (zero-shot) tag the one image; per class, one Grounding DINO call with one image and one
  prompt; SAM embeds the image once and decodes each class's boxes in its own call (the
  authors' ``SamPredictor`` loop); the paper's max-class-index merge; a plain index PNG.

Reported per (route, style), medians over ``--repeats`` (the styles take turns within each
repeat): images/s, wall seconds, seconds inside the models (forward hooks on Grounding
DINO, SAM and its vision encoder, RAM++; CUDA events on GPUs), our overhead per image =
(wall - model seconds) / images, peak memory (CPU: proportional set size of this process
and its DataLoader workers; CUDA: ``torch.cuda.max_memory_allocated``) and the speed-up
over the loop.

Models (:mod:`samwsss.testing`): on CPU the tests' tiny random Grounding DINO (its
processor resizing to 160/267 to fit a short run on two shared cores), tiny SAM (256) and
tiny RAM++ (128); on CUDA full-size random Grounding DINO Swin-T (800/1333), SAM ViT-H and
RAM++ Swin-L in bf16 autocast (the stages' CUDA default). Random weights give arbitrary box
and tag counts, so the first 4 images calibrate the thresholds to VOC-like workloads: 2
boxes per (image, prompt) and 1.5 RAM++ classes per image; text-input labels average 1.5
classes per image (VOC train). The achieved counts are printed.

Run from the repository root::

    python -m benchmarks.pipeline                                # CPU, tiny models
    python -m benchmarks.pipeline --repeats 3 --styles ours-w0 loop
    python -m benchmarks.pipeline --device cuda                  # GPU, full-size, bf16
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import _measure

ROUTES = ("text-input", "zero-shot")
STYLES = ("ours-w0", "ours-w2", "pil-w0", "pil-w2", "sam3-w0", "loop")
STYLE_LABELS = {
    "ours-w0": "ours run_dataset workers=0",
    "ours-w2": "ours run_dataset workers=2",
    "pil-w0": "ours image_resize=pil workers=0",
    "pil-w2": "ours image_resize=pil workers=2",
    "sam3-w0": "SAM 3 segmenter workers=0",
    "loop": "authors' loop",
}
#: VOC-like original sizes (H, W), used round-robin.
IMAGE_SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (281, 500), (375, 500))
#: classes per image of the text-input labels, cycled (mean 1.5, as VOC train).
LABEL_COUNTS = (1, 2, 1, 2, 1, 3, 1, 1)
#: workload the thresholds are calibrated to, on the first CALIBRATION_IMAGES images.
BOXES_PER_CLASS = 2.0
CLASSES_PER_IMAGE = 1.5
CALIBRATION_IMAGES = 4

logger = logging.getLogger("benchmarks.pipeline")


# --------------------------------------------------------------------------- images
def write_image_folder(folder: Path, count: int, mapping: Any, seed: int = 0) -> None:
    """Write ``count`` photo-like JPEGs and their ``labels.json`` into ``folder``.

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
        start = rng.uniform(0, 255, 3)
        slope_x, slope_y = rng.uniform(-0.3, 0.3, 3), rng.uniform(-0.3, 0.3, 3)
        base = start[None, None] + x[..., None] * slope_x + y[..., None] * slope_y
        canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(3, 8))):
            x0, x1 = sorted(rng.uniform(0, width, 2))
            y0, y1 = sorted(rng.uniform(0, height, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([x0, y0, x1, y1], fill=colour)
        noise = rng.normal(0, 6, (height, width, 3)).astype(np.int16)
        pixels = np.asarray(canvas).astype(np.int16) + noise
        name = f"img_{index:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        chosen = rng.choice(len(names), size=LABEL_COUNTS[index % len(LABEL_COUNTS)], replace=False)
        labels[name] = [names[i] for i in sorted(chosen)]
    (folder / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- calibration
#: largest threshold a PipelineConfig accepts (< 1); random models saturate near 1.
_MAX_THRESHOLD = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


def _just_below(value: float, low: float = 0.0) -> float:
    """The float32 just below ``value``, clipped to ``[low, _MAX_THRESHOLD]``."""
    below = float(np.nextafter(np.float32(value), np.float32(-1.0)))
    return min(max(below, low), _MAX_THRESHOLD)


def calibrate_boxes(
    boxer_dir: Path, images: list[np.ndarray], mapping: Any, device: torch.device
) -> tuple[float, float]:
    """The box threshold giving ``BOXES_PER_CLASS`` boxes per (image, prompt) over every
    class of ``mapping`` prompted one at a time, and the boxes per prompt it gives (scores
    saturating at 1 can make it overshoot)."""
    from samwsss.registry import create

    boxer = create("boxer", boxer_dir, box_threshold=0.0, device=device)
    queries = [[(entry.index, entry.prompt) for entry in mapping.classes[1:]] for _ in images]
    scores = sorted(
        (float(s) for det in boxer(images, queries) for s in det.box_scores.float().cpu()),
        reverse=True,
    )
    rows = len(images) * (len(mapping.classes) - 1)
    if not scores:
        return 0.5, 0.0
    k = min(max(round(BOXES_PER_CLASS * rows), 1), len(scores))
    threshold = _just_below(scores[k - 1])
    return threshold, sum(s > threshold for s in scores) / rows


def calibrate_ram(tagger: Any, mapper: Any, images: list[np.ndarray]) -> tuple[float, float]:
    """The global RAM threshold at which exact mapping gives ``CLASSES_PER_IMAGE`` classes
    per image, and the classes per image it gives."""
    from samwsss.ram.types import TagResult

    probabilities = tagger.probabilities(images).numpy()
    tags = tagger.vocabulary.tags
    reaching = [i for i, tag in enumerate(tags) if mapper.classes_of_tag(tag)]
    candidates = sorted({float(p) for row in probabilities for p in row[reaching]}, reverse=True)
    target = CLASSES_PER_IMAGE * len(images)

    def mapped(threshold: float) -> int:
        results = (TagResult.from_scores(row, threshold, tags) for row in probabilities)
        return sum(len(mapper.map(result).class_ids) for result in results)

    chosen = 0.5
    for candidate in candidates:  # descending: counts grow; stop at the first reaching target
        chosen = _just_below(candidate, low=1e-6)
        if mapped(chosen) >= target:
            break
    return chosen, mapped(chosen) / len(images)


# --------------------------------------------------------------------------- the authors' loop
class AuthorsLoop:
    """The reference scripts' control flow on our stage objects (same models, thresholds).

    Args:
        pipe: the pipeline whose boxer, masker, tagger and mapper are used.
        route: one of :data:`ROUTES`.
        merger: a ``MaskMerger("paper")`` (the max-class-index rule).
    """

    def __init__(self, pipe: Any, route: str, merger: Any) -> None:
        self.pipe = pipe
        self.route = route
        self.merger = merger

    def classes(self, image: np.ndarray, labels: tuple[int, ...] | None) -> list[tuple[int, Any]]:
        """``(class id, its Detections)`` per class found in ``image``: one boxer call with
        one image and one prompt per class."""
        pipe = self.pipe
        if self.route == "text-input":
            class_ids = list(labels or ())
        else:
            class_ids = list(pipe.mapper.map(pipe.tagger([image])[0]).class_ids)
        found = []
        for cls in class_ids:
            det = pipe.boxer([image], [[(cls, pipe.mapping.classes[cls].prompt)]])[0]
            if len(det):
                found.append((cls, det))
        return found

    def segment(self, image: np.ndarray, found: list[tuple[int, Any]]) -> list[Any]:
        """SAM on each class's boxes, embedding the image once; detections with masks, on
        the CPU."""
        if not found:
            return []
        from samwsss.stages import masker as masker_module
        from samwsss.stages.masker_transforms import scale_boxes, to_chw_uint8

        masker = self.pipe.masker
        backend, device, dtype = masker.backend, masker.device, masker.compute_dtype
        autocast = (
            torch.autocast(device_type=device.type, dtype=dtype)
            if dtype != torch.float32
            else contextlib.nullcontext()
        )
        out = []
        with torch.no_grad():
            pixel_values, resized = backend.preprocess([to_chw_uint8(image, device, 0)])
            with autocast:
                features = backend.encode(pixel_values)
            features = tuple(feature.float() for feature in features)
            for _, det in found:
                boxes = det.boxes.detach().to("cpu", torch.float64)
                boxes = scale_boxes(boxes, det.image_size, resized[0])
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

        out.mkdir(parents=True, exist_ok=True)
        for image_id in dataset.ids:
            image = dataset.load_image(image_id)  # load_rgb, as our runner decodes
            mask = self.image_mask(image, dataset.labels(image_id))
            write_label_png(out / f"{image_id}.png", mask, palette=False)


# --------------------------------------------------------------------------- set-up
@dataclass
class Setup:
    """Everything built once: models, pipelines, data, thresholds."""

    device: torch.device
    size: str
    edges: tuple[int, int]
    batch_size: int
    pipelines: dict[str, Any]
    dataset: Any
    images: list[np.ndarray]
    labels: list[tuple[int, ...]]
    calibration: str
    loop_merger: Any
    clock_modules: list[torch.nn.Module]
    scratch: Path
    build_seconds: float
    sam3: dict[str, Any] = field(default_factory=dict)


def build_sam3(
    size: str, base: Any, routes: Sequence[str], images: list[np.ndarray], scratch: Path
) -> tuple[dict[str, Any], str, list[torch.nn.Module]]:
    """The ``sam3`` pipelines of ``routes`` around one random SAM 3, the presence threshold
    calibrated to :data:`CLASSES_PER_IMAGE` on ``images``."""
    from samwsss.choices import PRESENCE_TAGGER
    from samwsss.pipeline import Pipeline
    from samwsss.registry import create
    from samwsss.stages.contracts import ImageBatch
    from samwsss.testing.sam3 import write_sam3

    segmenter = create("segmenter", str(write_sam3(size, scratch / "sam3")), score_threshold=0.2)
    segmenter.to(base.device)
    pipelines = {
        "text-input": Pipeline(
            base.mapping, segmenter, None, merger=base.merger, batch_size=base.batch_size
        )
    }
    note = "SAM 3 score threshold 0.2"
    if "zero-shot" in routes:
        queries = [[(c.index, c.prompt) for c in base.mapping.classes[1:]]] * len(images)
        _, presence = segmenter.detect_with_presence(ImageBatch(images, base.device), queries)
        values = np.sort(torch.cat(presence).float().cpu().numpy())[::-1]
        keep = int(round(CLASSES_PER_IMAGE * len(images)))
        threshold = _just_below(float(values[min(keep, len(values)) - 1]))
        tagger = create("tagger", PRESENCE_TAGGER, segmenter=segmenter, mapping=base.mapping,
                        threshold=threshold)  # fmt: skip
        pipelines["zero-shot"] = Pipeline(
            base.mapping, segmenter, None, merger=base.merger, tagger=tagger,
            batch_size=base.batch_size,
        )  # fmt: skip
        note += f"; presence threshold {threshold:.4f} (target {CLASSES_PER_IMAGE} classes/image)"
    return pipelines, note, [segmenter.model]


def build(
    routes: Sequence[str],
    images_count: int,
    device: torch.device,
    scratch: Path,
    with_sam3: bool = False,
) -> Setup:
    """Write the images and models, build the pipelines, calibrate the thresholds."""
    from samwsss.data import FolderDataset
    from samwsss.data.images import load_rgb
    from samwsss.mapping import load_mapping
    from samwsss.pipeline import Pipeline, PipelineConfig
    from samwsss.stages.mapper import TagMapper
    from samwsss.stages.merger import MaskMerger
    from samwsss.testing.gdino import write_grounding_dino
    from samwsss.testing.ram import build_ram_tagger
    from samwsss.testing.sam import write_sam

    started = time.perf_counter()
    size = "full" if device.type == "cuda" else "tiny"
    edges = (800, 1333) if size == "full" else (160, 267)
    mapping = load_mapping("voc")
    folder = scratch / "images"
    write_image_folder(folder, images_count, mapping)
    dataset = FolderDataset(folder, labels=folder / "labels.json", mapping="voc")
    images = [load_rgb(dataset.image_path(i)) for i in dataset.ids]
    labels = [tuple(dataset.labels(i) or ()) for i in dataset.ids]
    calibration_images = images[:CALIBRATION_IMAGES]

    boxer_dir = write_grounding_dino(size, scratch / "gdino", *edges)
    sam_dir = write_sam(size, scratch / "sam")
    box_threshold, boxes_per_prompt = calibrate_boxes(
        boxer_dir, calibration_images, mapping, device
    )
    batch_size = 8 if device.type == "cuda" else 4
    config = PipelineConfig(
        mapping="voc",
        boxer=str(boxer_dir),
        masker=str(sam_dir),
        box_threshold=box_threshold,
        batch_size=batch_size,
    )
    base: Any = Pipeline.from_config(config, device=device, with_tagger=False)
    pipelines: dict[str, Any] = {"text-input": base}
    clock_modules: list[torch.nn.Module] = [base.boxer.model, base.masker.model]
    encoder = getattr(base.masker.model, "vision_encoder", None)
    if isinstance(encoder, torch.nn.Module):
        clock_modules.append(encoder)
    calibration = (
        f"box threshold {box_threshold:.7f} -> {boxes_per_prompt:.2f} boxes/prompt "
        f"(target {BOXES_PER_CLASS})"
    )
    if "zero-shot" in routes:
        tagger = build_ram_tagger(size, base.mapping, scratch / "ram").to(device)
        mapper = TagMapper(base.mapping, mode="exact")
        ram_threshold, ram_classes = calibrate_ram(tagger, mapper, calibration_images)
        tagger.set_thresholds(ram_threshold)
        pipelines["zero-shot"] = Pipeline(
            base.mapping,
            base.boxer,
            base.masker,
            merger=base.merger,
            tagger=tagger,
            mapper=mapper,
            batch_size=batch_size,
            config=config.replace(tagger=f"{size} random ram++"),
        )
        clock_modules.append(tagger.model)
        calibration += (
            f"; RAM++ threshold {ram_threshold:.4f} -> {ram_classes:.2f} classes/image "
            f"(target {CLASSES_PER_IMAGE})"
        )
    sam3: dict[str, Any] = {}
    if with_sam3:
        sam3, note, modules = build_sam3(size, base, routes, calibration_images, scratch)
        calibration += f"; {note}"
        clock_modules.extend(modules)
    return Setup(
        sam3=sam3,
        device=device,
        size=size,
        edges=edges,
        batch_size=batch_size,
        pipelines=pipelines,
        dataset=dataset,
        images=images,
        labels=labels,
        calibration=calibration,
        loop_merger=MaskMerger("paper"),
        clock_modules=clock_modules,
        scratch=scratch,
        build_seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- running
def style_call(setup: Setup, route: str, style: str) -> Callable[[], None]:
    """One pass of ``style`` over the whole folder, into a fresh output folder each call."""
    from samwsss.runs.runner import RunOptions, run_dataset

    pipe = setup.pipelines[route]
    counter = itertools.count()
    data = {"data": str(setup.dataset.root), "benchmark": route}
    loop = AuthorsLoop(pipe, route, setup.loop_merger)

    def call() -> None:
        out = setup.scratch / f"out-{route}-{style}-{next(counter)}"
        if style == "loop":
            loop.run_folder(setup.dataset, out)
            return
        if style == "sam3-w0":
            options = RunOptions(route=route, out=out, workers=0, evaluate=False)
            run_dataset(setup.sam3[route], setup.dataset, options, data)
            return
        workers = 0 if style.endswith("w0") else 2
        options = RunOptions(route=route, out=out, workers=workers, evaluate=False)
        with image_resize(pipe, "pil" if style.startswith("pil") else "torch"):
            run_dataset(pipe, setup.dataset, options, data)

    return call


@contextlib.contextmanager
def image_resize(pipe: Any, mode: str) -> Any:
    """Switch every stage of ``pipe`` to ``image_resize=mode`` for a block."""
    stages = [s for s in (pipe.boxer, pipe.masker, pipe.tagger) if hasattr(s, "image_resize")]
    before = [stage.image_resize for stage in stages]
    for stage in stages:
        stage.image_resize = mode
    try:
        yield
    finally:
        for stage, value in zip(stages, before, strict=True):
            stage.image_resize = value


def warm_up(setup: Setup, route: str) -> None:
    """One untimed pass of every code path on two images (kernels, caches, lazy imports)."""
    from samwsss.runs.runner import RunOptions, run_dataset

    pipe = setup.pipelines[route]
    labels = setup.labels[:2] if route == "text-input" else None
    pipe.run_arrays(setup.images[:2], labels)
    AuthorsLoop(pipe, route, setup.loop_merger).image_mask(setup.images[0], setup.labels[0])
    out = setup.scratch / f"warm-{route}"
    options = RunOptions(route=route, out=out, workers=0, evaluate=False, max_images=2)
    run_dataset(pipe, setup.dataset, options, {"data": str(setup.dataset.root)})
    shutil.rmtree(out, ignore_errors=True)
    if route in setup.sam3:
        setup.sam3[route].run_arrays(setup.images[:2], labels)


def measure(
    setup: Setup, routes: Sequence[str], styles: Sequence[str], repeats: int
) -> list[list[str]]:
    """The table rows of every (route, style)."""
    clock = _measure.ModelClock(setup.clock_modules, setup.device)
    cuda = setup.device.type == "cuda"
    count = len(setup.images)
    rows = []
    try:
        for route in routes:
            warm_up(setup, route)
            calls = {style: style_call(setup, route, style) for style in styles}
            results = _measure.interleave(calls, setup.device, repeats, tree=not cuda, clock=clock)
            loop = results["loop"].median if "loop" in results else None
            for style, result in results.items():
                memory = result.peak_bytes / (_measure.GIB if cuda else _measure.MIB)
                rows.append(
                    [
                        route,
                        STYLE_LABELS[style],
                        f"{count / result.median:.2f}",
                        f"{result.median:.2f}",
                        f"{result.model_median:.2f}",
                        f"{result.overhead_ms(count):.1f}",
                        f"{memory:.{2 if cuda else 0}f}",
                        "" if style == "loop" else _measure.speedup(loop, result.median),
                    ]
                )
    finally:
        clock.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Build, measure, print."""
    parser = _measure.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES))
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument(
        "--images", type=int, default=None, help="synthetic JPEGs (default 8 CPU, 32 CUDA)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.images is not None and args.images < 1):
        parser.error("--repeats and --images must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for noisy in ("transformers", "huggingface_hub", "samwsss"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # one CPU thread by default: on shared cores OpenMP threads that wait for each other make
    # every op 3-30x slower
    device = _measure.resolve_device(args, cpu_threads=1)
    cuda = device.type == "cuda"
    images = args.images or (32 if cuda else 8)
    scratch = _measure.scratch_directory()
    total = time.perf_counter()
    try:
        setup = build(args.routes, images, device, scratch, with_sam3="sam3-w0" in args.styles)
        text = setup.pipelines["text-input"]
        dtypes = (str(text.boxer.compute_dtype), str(text.masker.compute_dtype))
        boxer_dtype, sam_dtype = (d.replace("torch.", "") for d in dtypes)
        sys.stdout.write(
            f"device: {device} — {_measure.hardware(device)}; torch {torch.__version__}\n"
            f"models: {setup.size} random (Grounding DINO resize {setup.edges[0]}/"
            f"{setup.edges[1]}); precision: boxer {boxer_dtype}, SAM encoder {sam_dtype}\n"
            f"data: {images} synthetic JPEGs (VOC-like sizes), batch "
            f"{setup.batch_size}, {args.repeats} repeats (medians)\n"
            f"calibrated on {min(CALIBRATION_IMAGES, images)} images: {setup.calibration}; "
            f"text-input labels {np.mean([len(x) for x in setup.labels]):.2f} classes/image; "
            f"built in {setup.build_seconds:.1f} s\n\n"
        )
        sys.stdout.flush()
        rows = measure(setup, args.routes, args.styles, args.repeats)
        memory = "peak GPU GiB" if cuda else "peak PSS MiB"
        header = [
            "route",
            "style",
            "images/s",
            "wall s",
            "model s",
            "overhead ms/img",
            memory,
            "vs loop",
        ]
        sys.stdout.write(_measure.markdown_table(header, rows) + "\n")
        sys.stdout.write(f"\ntotal benchmark time {time.perf_counter() - total:.0f} s\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Masker throughput: batched ``SamMasker`` vs the authors' SAM loop, same run, same weights.

Model sizes (random weights with transformers' own seeded initialisation, written by
:func:`samwsss.testing.sam.write_sam_default_init` and loaded through
``registry.create("masker", folder)`` like real checkpoints):

* ``tiny``  — the tests' tiny SAM configuration (ViT hidden 32, 2 layers, 256x256 input);
* ``vit-b`` — ``SamConfig()``: the full-size ViT-B SAM (1024x1024 input);
* ``vit-h`` — the full-size ViT-H SAM of the paper (the default on GPUs, with tiny).

Styles timed on the same VOC-sized images with 4 random boxes over 2 classes each:

* ``loop`` — the authors' style: per image, the SAM image processor then one encoder
  pass; then per class present, one prompt-encoder/decoder call with that class's boxes,
  ``post_process_masks`` and a copy of the masks to the CPU;
* ``batched`` — one ``SamMasker`` call on the whole batch (all images through the encoder
  together, all boxes decoded together on the shared embeddings).

Precision, for both styles: image encoder in bf16 autocast on CUDA (fp32 on CPU),
prompt encoder and mask decoder in fp32. Reported per (size, batch, style): median
seconds per batch after one warm-up call, images/s, peak memory growth (CUDA: max
allocated; CPU: resident set, sampled) and the speed-up over the loop.

Run from the repository root::

    python -m benchmarks.masker_bench --sizes tiny --batch-sizes 1 4 8
    python -m benchmarks.masker_bench --sizes vit-b --batch-sizes 1 2 --repeats 1
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import _measure
from samwsss.detections import Detections
from samwsss.stages.masker_transforms import scale_boxes
from samwsss.testing.sam import SAM_SIZES, sam_config, write_sam_default_init

#: VOC-like image sizes (H, W), used round-robin.
IMAGE_SIZES = ((375, 500), (500, 375), (333, 500), (500, 400))
BOXES_PER_IMAGE = 4
CLASSES_PER_IMAGE = 2


def make_batch(count: int, seed: int = 0) -> tuple[list[np.ndarray], list[Detections]]:
    """``count`` random images with ``BOXES_PER_IMAGE`` boxes spread over the classes."""
    rng = np.random.default_rng(seed)
    images, dets = [], []
    for i in range(count):
        height, width = IMAGE_SIZES[i % len(IMAGE_SIZES)]
        images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        x = np.sort(rng.uniform(0, width, (BOXES_PER_IMAGE, 2)), axis=1)
        y = np.sort(rng.uniform(0, height, (BOXES_PER_IMAGE, 2)), axis=1)
        corners = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)
        boxes = torch.tensor(corners, dtype=torch.float32)
        classes = torch.tensor([1 + j % CLASSES_PER_IMAGE for j in range(BOXES_PER_IMAGE)])
        dets.append(
            Detections(
                image_size=(height, width),
                boxes=boxes,
                box_scores=torch.full((BOXES_PER_IMAGE,), 0.5),
                class_ids=classes,
                prompts=tuple(f"class {int(c)}" for c in classes),
            )
        )
    return images, dets


def authors_loop(
    masker: Any, processor: Any
) -> Callable[[list[np.ndarray], list[Detections]], list[Any]]:
    """The reference scripts' pattern on the same transformers model: per image, embed
    once; per class, one decoder call with that class's boxes, post-process, to CPU."""
    model = masker.model
    device = masker.device
    autocast = (
        torch.autocast(device_type=device.type, dtype=masker.compute_dtype)
        if masker.compute_dtype != torch.float32
        else nullcontext()
    )

    def call(images: list[np.ndarray], dets: list[Detections]) -> list[Any]:
        results = []
        with torch.no_grad():
            for image, det in zip(images, dets, strict=True):
                inputs = processor(images=image, return_tensors="pt")
                height, width = (int(v) for v in inputs["original_sizes"][0])
                resized_height, resized_width = (int(v) for v in inputs["reshaped_input_sizes"][0])
                original, resized = [(height, width)], [(resized_height, resized_width)]
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


def run(
    device: torch.device, sizes: Sequence[str], batch_sizes: Sequence[int], repeats: int
) -> list[list[str]]:
    """Time the loop and the batched masker; one table row per (size, batch, style)."""
    from transformers import SamProcessor

    from samwsss.registry import create

    rows: list[list[str]] = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="samwsss-bench-sam-") as tmp:
            directory = write_sam_default_init(sam_config(size), Path(tmp))
            processor = SamProcessor.from_pretrained(directory)
            for batch in batch_sizes:
                masker = create("masker", directory, device=device, max_images_per_batch=batch)
                images, dets = make_batch(batch)
                loop = authors_loop(masker, processor)
                calls: dict[str, Callable[[], object]] = {
                    "loop": functools.partial(loop, images, dets),
                    "batched": functools.partial(masker, images, dets),
                }
                results = _measure.interleave(calls, device, repeats, warmup=1)
                dtype = str(masker.compute_dtype).replace("torch.", "")
                for style, result in results.items():
                    base = None if style == "loop" else results["loop"].median
                    rows.append(
                        [
                            size,
                            str(device),
                            dtype,
                            str(batch),
                            style,
                            f"{result.median:.3f}",
                            f"{batch / result.median:.2f}",
                            f"{result.growth_bytes / _measure.MIB:.0f}",
                            _measure.speedup(base, result.median),
                        ]
                    )
                del masker, calls
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, print the table."""
    parser = _measure.parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        choices=SAM_SIZES,
        default=None,
        help="default: tiny on CPU, tiny and vit-h on CUDA",
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    args = parser.parse_args(argv)
    device = _measure.resolve_device(args)
    sizes = args.sizes or (["tiny", "vit-h"] if device.type == "cuda" else ["tiny"])
    rows = run(device, sizes, args.batch_sizes, args.repeats)
    header = [
        "size",
        "device",
        "dtype",
        "batch",
        "style",
        "s/batch",
        "images/s",
        "peak MB",
        "speed-up",
    ]
    sys.stdout.write(_measure.markdown_table(header, rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

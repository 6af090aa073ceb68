"""The SAM masker stage: boxes -> instance masks at original resolution, batched.

``SamMasker`` turns the boxer's :class:`~samwsss.detections.Detections` into the same
detections with ``masks`` ``(N, H, W)`` bool and ``mask_scores`` (SAM's predicted IoU).
Backends: transformers ``SamModel`` / ``SamHQModel`` / ``Sam2Model`` (hub ids or
``save_pretrained`` folders, type read from ``config.json``) and Meta's original ``.pth``
checkpoints through the optional ``segment-anything`` package.

How a call runs:

1. Images go through the image encoder in batches of at most ``max_images_per_batch``
   (each image is embedded exactly once, however many boxes it has). Resizing,
   normalisation and padding run in torch on the model's device.
2. All boxes of the encoder batch are decoded on the shared embeddings in chunks of at
   most ``max_boxes_per_chunk`` (memory stays bounded for any box count). No padding
   boxes are used, so a batched call gives the one-at-a-time results.
3. Low-resolution logits are upsampled exactly like ``SamProcessor.post_process_masks``
   (to the padded input, crop, to the original size) and thresholded at 0, a few masks
   at a time under ``UPSCALE_BUDGET_PIXELS`` (one at a time on a 48-megapixel image), into
   the preallocated ``(N, H, W)`` bool masks.

Precision: the image encoder runs under bfloat16 autocast on CUDA by default (float32 on
CPU); the prompt encoder and mask decoder always run in float32.

Resizing: ``image_resize="torch"`` (default) resizes on the device with torchvision's
antialiased bilinear, as transformers' processors do; ``"pil"`` resizes with PIL bilinear
on the host (:class:`~samwsss.stages.pil_resize.PilResize`), as segment-anything's
``SamPredictor.set_image`` does (the authors' call). Boxes are
``Detections.sam_boxes``: the detector's unclipped boxes when the boxer kept them.

``multimask="single"`` (default, the paper): ``multimask_output=False``.
``multimask="best"``: the three multimask outputs, keeping the one with the highest
predicted IoU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from samwsss import registry
from samwsss.checks import check_choice, check_count
from samwsss.choices import IMAGE_RESIZES, MULTIMASK
from samwsss.detections import Detections
from samwsss.released import MASKER_MODELS
from samwsss.stages import masker_official
from samwsss.stages.contracts import ImageBatch, ModelSource
from samwsss.stages.masker_backend import SamBackend
from samwsss.stages.masker_hf import load_transformers_backend
from samwsss.stages.masker_official import OFFICIAL_CHECKPOINTS
from samwsss.stages.masker_transforms import InputGeometry, scale_boxes, upscale_mask_logits
from samwsss.stages.model_stage import ModelStage
from samwsss.stages.pil_resize import BILINEAR, PilResize

if TYPE_CHECKING:
    from typing_extensions import Self

logger = logging.getLogger(__name__)

Multimask = Literal["single", "best"]
_CHECKPOINT_SUFFIXES = (".pth", ".pt")


#: At most this many full-resolution mask logits (float32) exist at once (256 MiB), and
#: at least one mask's: a 48-megapixel image is upscaled one mask at a time, a VOC-sized
#: image with up to ~350 boxes in one go (see :func:`threshold_upscaled`).
UPSCALE_BUDGET_PIXELS = 2**26


class SamMasker(ModelStage):
    """Segment Anything on detector boxes, for batches of images.

    Build it with :meth:`from_pretrained` (registry name, hub id, local folder or official
    ``.pth``) or around a backend. Call it with images and their detections.

    Args:
        backend: the SAM implementation (:mod:`samwsss.stages.masker_hf`,
            :mod:`samwsss.stages.masker_official`).
        multimask: ``"single"`` (SAM's single-mask output, the paper) or ``"best"``
            (highest predicted IoU of the three multimask outputs).
        max_boxes_per_chunk: boxes decoded together at most (bounds decoder memory).
        max_images_per_batch: images through the image encoder together at most;
            ``None`` = 8 on CUDA, 1 elsewhere (on a CPU batching gains no speed, the
            encoder is compute-bound, but multiplies activation memory: ~1.7 GB per
            ViT-B image at 1024x1024).
        dtype: image-encoder compute dtype; ``None`` = bfloat16 autocast on CUDA, float32
            elsewhere. ``torch.bfloat16``/``torch.float16`` (or ``"bf16"``/``"fp16"``)
            autocast on any device; ``torch.float32`` disables autocast. Weights stay
            float32, and the prompt encoder / mask decoder always run in float32 (they
            cost ~0.1% of the encoder per box; float32 keeps box encoding exact).
        image_resize: ``"torch"`` or ``"pil"`` (see the module docstring).
    """

    image_resize: str
    pil_resize: PilResize

    def __init__(
        self,
        backend: SamBackend,
        *,
        multimask: Multimask = "single",
        max_boxes_per_chunk: int = 64,
        max_images_per_batch: int | None = None,
        dtype: torch.dtype | str | None = None,
        image_resize: str = "torch",
    ) -> None:
        check_choice("multimask", multimask, MULTIMASK)
        self.image_resize = check_choice("image_resize", image_resize, IMAGE_RESIZES)
        geometry = backend.geometry
        self.pil_resize = (
            PilResize("sam", "longest-side", geometry.longest_edge, resample=BILINEAR)
            if geometry.mode == "longest"
            else PilResize("sam", "square", geometry.pad_size[0], resample=BILINEAR)
        )
        self.backend = backend
        self.multimask: Multimask = multimask
        self.max_boxes_per_chunk = check_count("max_boxes_per_chunk", max_boxes_per_chunk)
        self._set_precision(dtype, max_images_per_batch)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "sam-vit-huge",
        *,
        multimask: Multimask = "single",
        max_boxes_per_chunk: int = 64,
        max_images_per_batch: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        model_type: str | None = None,
        hq_token_only: bool = False,
        image_resize: str = "torch",
        decoder_num_heads: int | None = None,
        **hub_kwargs: Any,
    ) -> SamMasker:
        """Load a SAM masker.

        Args:
            name_or_path: a registered masker name (``"sam-vit-huge"`` ...; see
                ``samwsss.registry.list_models("masker")``), a hub id
                (``"facebook/sam-vit-base"``), a ``save_pretrained`` directory (SAM,
                SAM-HQ or SAM 2, detected from ``config.json``), or an official
                checkpoint (``.pth`` path, released file name such as
                ``"sam_vit_h_4b8939.pth"``, or URL).
            multimask, max_boxes_per_chunk, max_images_per_batch, dtype, image_resize: see
                the class.
            device: where to run; default CUDA when available, else CPU.
            model_type: official checkpoints only: ``"vit_h"``/``"vit_l"``/``"vit_b"``
                (inferred from the weights when None).
            hq_token_only: SAM-HQ only: the HQ mask alone instead of SAM + HQ.
            decoder_num_heads: official checkpoints of a custom size only: the mask
                decoder's head count (no weight reveals it; released models use 8).
            hub_kwargs: for transformers ``from_pretrained`` (``revision``, ``cache_dir``,
                ``local_files_only`` ...).

        Raises:
            ValueError: unknown name, missing path, not a SAM-family checkpoint, or bad
                options.
            ImportError: an official checkpoint without ``segment-anything`` installed.
        """
        check_choice("multimask", multimask, MULTIMASK)
        source = registry.weights_of("masker", name_or_path)
        backend = _load_backend(
            source,
            model_type=model_type,
            hq_token_only=hq_token_only,
            decoder_num_heads=decoder_num_heads,
            **hub_kwargs,
        )
        backend.revision = hub_kwargs.get("revision")
        masker = cls(
            backend,
            multimask=multimask,
            max_boxes_per_chunk=max_boxes_per_chunk,
            max_images_per_batch=max_images_per_batch,
            dtype=dtype,
            image_resize=image_resize,
        )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return masker.to(device)

    def to(self, device: torch.device | str) -> Self:
        """Move the model (the backend's) to ``device``; returns ``self``."""
        self.backend.to(torch.device(device))
        return self

    @property
    def device(self) -> torch.device:
        """Device the model runs on."""
        return self.backend.device

    @property
    def model(self) -> torch.nn.Module:
        """The wrapped SAM module."""
        return self.backend.model

    @property
    def source(self) -> ModelSource:
        """Where the weights came from (hub id, folder or checkpoint file; revision)."""
        return ModelSource(str(self.backend.source), self.backend.revision)

    def __repr__(self) -> str:
        return (
            f"SamMasker({self.backend.family}, source={self.backend.source!r}, "
            f"multimask={self.multimask!r}, device={self.device}, dtype={self.compute_dtype})"
        )

    # -- inference ----------------------------------------------------------------------
    def __call__(
        self, images: Sequence[np.ndarray], detections: Sequence[Detections]
    ) -> list[Detections]:
        """Masks for every box of every image.

        Args:
            images: ``(H, W, 3)`` uint8 RGB arrays (numpy or torch, CPU or device).
            detections: one :class:`Detections` per image, same order, with boxes in that
                image's original pixels (``image_size`` must equal the image's ``(H, W)``).

        Returns:
            The detections with ``masks`` ``(N, H, W)`` bool at original resolution and
            ``mask_scores`` ``(N,)`` float32 = SAM's predicted IoU, on each input
            detections' device. Images without boxes get ``(0, H, W)`` masks and are not
            encoded.

        Raises:
            ValueError: lengths differ, an image is not ``(H, W, 3)`` uint8, or a
                detections' ``image_size`` differs from its image.
        """
        batch = ImageBatch.of(images, self.device)
        return self.segment(batch, _check_detections(batch, detections))

    def segment(
        self, images: ImageBatch, detections: Sequence[Detections], *, max_images: int | None = None
    ) -> list[Detections]:
        """:meth:`__call__` on a checked batch (the pipeline's entry: no input checks).

        Args:
            images: the batch (its images are uploaded to the device once).
            detections: one per image, boxes in that image's pixels.
            max_images: images per encoder forward at most (default:
                :attr:`max_images_per_batch`).
        """
        results: list[Detections | None] = [None] * len(images)
        pending = []
        for position, det in enumerate(detections):
            if len(det) == 0:
                results[position] = _with_empty_masks(det)
            else:
                pending.append(position)
        step = self.max_images_per_batch if max_images is None else max_images
        pictures = images.on_device
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            if self.image_resize == "pil":
                inputs = [
                    torch.from_numpy(images.resized(i, self.pil_resize)).to(self.device)
                    for i in batch
                ]
            else:
                inputs = [pictures[i] for i in batch]
            masks = self._segment_batch(inputs, [detections[i] for i in batch])
            for position, (mask, score) in zip(batch, masks, strict=True):
                det = detections[position]
                results[position] = det.with_masks(mask.to(det.device), score.to(det.device))
        return results  # type: ignore[return-value]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.compute_dtype
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _segment_batch(
        self, images: Sequence[torch.Tensor], detections: Sequence[Detections]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Masks ``(N_i, H_i, W_i)`` bool and scores ``(N_i,)`` for one encoder batch.

        ``images`` are ``(H, W, 3)`` uint8 on the device: the originals, or already resized
        to the model's input size (PIL resize), which the backend then does not resize.
        """
        backend = self.backend
        device = self.device
        tensors = [image.permute(2, 0, 1) for image in images]
        with torch.no_grad():
            pixel_values, resized_sizes = backend.preprocess(tensors)
            with self._autocast():
                features = backend.encode(pixel_values)
            # The decoder runs in float32: it costs ~0.1% of the encoder per box, and
            # float32 keeps the boxes' Fourier positional encoding and the logits exact.
            features = tuple(feature.float() for feature in features)
            boxes = torch.cat(
                [
                    # scaled in the reference's dtype: float64 like SamProcessor (numpy),
                    # float32 like segment-anything's apply_boxes_torch
                    scale_boxes(
                        det.sam_boxes.detach().to("cpu", backend.box_dtype), det.image_size, size
                    )
                    for det, size in zip(detections, resized_sizes, strict=True)
                ]
            ).to(device=device, dtype=backend.box_dtype)
            counts = [len(det) for det in detections]
            image_index = torch.repeat_interleave(
                torch.arange(len(detections)), torch.tensor(counts)
            ).to(device)
            outputs = [
                (
                    torch.empty((count, *det.image_size), dtype=torch.bool, device=device),
                    torch.empty(count, dtype=torch.float32, device=device),
                )
                for count, det in zip(counts, detections, strict=True)
            ]
            offsets = np.concatenate([[0], np.cumsum(counts)])
            for start in range(0, len(boxes), self.max_boxes_per_chunk):
                stop = min(start + self.max_boxes_per_chunk, len(boxes))
                chunk_index = image_index[start:stop]
                logits, scores = backend.decode(
                    features, chunk_index, boxes[start:stop], self.multimask == "best"
                )
                logits, scores = _select(logits.float(), scores.float(), self.multimask)
                for image, first, last in _segments(offsets, start, stop):
                    local = slice(first - offsets[image], last - offsets[image])
                    threshold_upscaled(
                        logits[first - start : last - start],
                        backend.geometry,
                        resized_sizes[image],
                        outputs[image][0][local],
                    )
                    outputs[image][1][local] = scores[first - start : last - start]
        return outputs


def threshold_upscaled(
    logits: torch.Tensor,
    geometry: InputGeometry,
    resized_size: tuple[int, int],
    out: torch.Tensor,
) -> None:
    """Upscale low-resolution logits and write ``logits > 0`` into ``out``, a few at a time.

    The full-resolution float32 logits are the largest temporaries of the masker (4 bytes
    per pixel and mask): they are made for ``max(1, UPSCALE_BUDGET_PIXELS // (H * W))``
    masks at a time and thresholded straight into ``out``, so a huge image needs one
    mask's float logits on top of its bool masks, while a small image is done in one go.
    Interpolation treats every mask of a batch on its own, so the bits do not depend on
    the piece size.

    Args:
        logits: ``(n, h0, w0)`` float low-resolution mask logits.
        geometry: the backend's input geometry.
        resized_size: the image's ``(h, w)`` inside the model input.
        out: ``(n, H, W)`` bool, contiguous, written in place.
    """
    count, height, width = out.shape
    step = max(1, UPSCALE_BUDGET_PIXELS // max(1, height * width))
    for low in range(0, count, step):
        high = min(low + step, count)
        upscaled = upscale_mask_logits(logits[low:high], geometry, resized_size, (height, width))
        torch.gt(upscaled, 0.0, out=out[low:high])
        del upscaled  # free before the next piece is made


def _select(
    logits: torch.Tensor, scores: torch.Tensor, multimask: Multimask
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T, K, h, w)``, ``(T, K)`` -> ``(T, h, w)``, ``(T,)``: the single or the best mask."""
    if multimask == "single" or logits.shape[1] == 1:
        return logits[:, 0], scores[:, 0]
    best = scores.argmax(dim=1)
    rows = torch.arange(len(best), device=best.device)
    return logits[rows, best], scores[rows, best]


def _segments(offsets: np.ndarray, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """``(image, first, last)`` global box ranges of each image inside ``[start, stop)``."""
    for image in range(len(offsets) - 1):
        first = max(int(offsets[image]), start)
        last = min(int(offsets[image + 1]), stop)
        if first < last:
            yield image, first, last


def _with_empty_masks(det: Detections) -> Detections:
    height, width = det.image_size
    return det.with_masks(
        torch.zeros((0, height, width), dtype=torch.bool, device=det.device),
        torch.zeros(0, dtype=torch.float32, device=det.device),
    )


def _check_detections(batch: ImageBatch, detections: Sequence[Detections]) -> list[Detections]:
    """``detections`` as a list, one per image of ``batch`` with the image's size.

    Raises:
        ValueError: a count that differs, something that is not a ``Detections``, or an
            ``image_size`` that is not its image's ``(H, W)``.
    """
    detections = list(detections)
    if len(batch) != len(detections):
        raise ValueError(
            f"got {len(batch)} images but {len(detections)} detections: give one "
            "Detections per image, in the same order"
        )
    for position, (size, det) in enumerate(zip(batch.sizes, detections, strict=True)):
        if not isinstance(det, Detections):
            raise ValueError(
                f"detections[{position}] must be a samwsss.detections.Detections, got "
                f"{type(det).__name__}"
            )
        if size != det.image_size:
            raise ValueError(
                f"detections[{position}].image_size is {det.image_size} but images[{position}] "
                f"is {size[0]}x{size[1]} (H x W): boxes must be in the original image's pixels"
            )
    return detections


def _load_backend(
    source: str,
    *,
    model_type: str | None,
    hq_token_only: bool,
    decoder_num_heads: int | None = None,
    **hub_kwargs: Any,
) -> SamBackend:
    """Pick the backend for ``source``: official ``.pth`` files/URLs or transformers."""
    path = Path(source).expanduser()
    name = source.rsplit("/", 1)[-1]
    is_official = (
        source.lower().endswith(_CHECKPOINT_SUFFIXES)
        or name in OFFICIAL_CHECKPOINTS
        or path.is_file()
    )
    if is_official:
        if hub_kwargs:
            raise ValueError(
                f"options {sorted(hub_kwargs)} apply to transformers checkpoints only; "
                f"{source!r} is an official segment-anything checkpoint"
            )
        return masker_official.load_official_backend(
            source, model_type=model_type, decoder_num_heads=decoder_num_heads
        )
    given = [
        f"{name}={value!r}"
        for name, value in (("model_type", model_type), ("decoder_num_heads", decoder_num_heads))
        if value is not None
    ]
    if given:
        raise ValueError(
            f"{' and '.join(given)} only applies to official .pth checkpoints; "
            f"{source!r} is loaded through transformers, which reads its config"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(
            f"{source!r} is a directory without config.json: give a save_pretrained folder "
            "of a SAM / SAM-HQ / SAM 2 model"
        )
    return load_transformers_backend(source, hq_token_only=hq_token_only, **hub_kwargs)


#: The released SAM weights this masker loads by name (declared in :mod:`samwsss.released`):
#: transformers checkpoints on the hub, and Meta's original files through segment-anything.
MODELS = MASKER_MODELS

"""SAM 3 text segmenter: images + (class, prompt) queries -> instance masks in one stage.

SAM 3 (``Sam3Model``) and its LiteText variants (``Sam3LiteTextModel``, a small text
encoder with the same detector) find every instance of a short noun phrase, with a box,
a mask and a score, so :class:`Sam3Segmenter` takes the place of the Grounding DINO boxer
*and* the SAM masker (a :class:`~samwsss.stages.contracts.TextSegmenter`).

The model splits into three parts, and a call runs each part as rarely as it can:

* the **vision encoder** (ViT + FPN neck; most of the cost) runs once per image, on every
  image of a call, at most ``max_images_per_batch`` images per forward;
* the **text encoder** runs once per distinct prompt and its output is cached on the
  segmenter for the rest of the run (a mapping's prompts never change), see
  :meth:`Sam3Segmenter.text_features`;
* the **detector and mask heads** (DETR encoder/decoder, presence head, mask decoder) run
  once per (image, prompt) *row*, on the shared vision and text features, at most
  ``max_batch_rows`` rows per forward.

Post-processing is ``Sam3Processor.post_process_instance_segmentation``: a query's score is
``sigmoid(logit) * sigmoid(presence logit)``, kept when ``> score_threshold``; its mask is
the sigmoid of the mask logits, bilinearly resized to the original image and kept where
``> mask_threshold``. Masks are resized a few at a time (:data:`UPSCALE_BUDGET_PIXELS`), so
a huge image never holds every instance's float mask at once.

Registry names (kind ``"segmenter"``): ``sam3`` (facebook/sam3) and ``sam3-litetext-s0``,
``sam3-litetext-s1``, ``sam3-litetext-l`` (vil-uob/sam3-litetext-*). Any other string is a
hub id or a ``save_pretrained`` folder; its ``config.json`` ``model_type`` picks the class.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samwsss import registry
from samwsss.checks import check_count, check_fraction
from samwsss.detections import Detections
from samwsss.released import DEFAULT_SEGMENTER, SEGMENTER_MODELS
from samwsss.stages.contracts import ImageBatch, Query, check_queries
from samwsss.stages.model_stage import ModelStage, hub_options

logger = logging.getLogger(__name__)

#: The released SAM 3 weights this segmenter loads by name (in :mod:`samwsss.released`).
MODELS = SEGMENTER_MODELS
DEFAULT_MODEL = DEFAULT_SEGMENTER

#: Score a query must pass to count as an instance. transformers' SAM 3 documentation
#: runs ``post_process_instance_segmentation(threshold=0.5, mask_threshold=0.5)`` in every
#: example (the processor's own keyword default, 0.3, is a generic one); 0.5 is also the
#: point where ``sigmoid(logit) * sigmoid(presence)`` says "more likely than not".
DEFAULT_SCORE_THRESHOLD = 0.5
#: Mask probability a pixel must pass (the same examples' ``mask_threshold``).
DEFAULT_MASK_THRESHOLD = 0.5

#: ``config.json`` ``model_type`` -> the transformers class that loads it. ``sam3_video``
#: is facebook/sam3's own config: ``Sam3Model`` loads its detector part.
ARCHITECTURES = {
    "sam3": "Sam3Model",
    "sam3_video": "Sam3Model",
    "sam3_lite_text": "Sam3LiteTextModel",
}

#: Tokens per prompt: ``Sam3Processor`` pads (and the text encoder is built for) 32.
TEXT_LENGTH = 32

#: At most this many full-resolution float mask probabilities (float32) exist at once
#: (256 MiB), and at least one mask's (the masker's budget).
UPSCALE_BUDGET_PIXELS = 2**26


@dataclass(frozen=True)
class TextFeatures:
    """A prompt's text-encoder output, as ``Sam3Model.forward`` takes it back.

    Attributes:
        embeds: ``(1, L, D)`` projected text features (``get_text_features().pooler_output``),
            ``L`` the processor's padded text length (32), ``D`` the detector width.
        attention_mask: ``(1, L)`` int64, 1 on the prompt's real tokens.
    """

    embeds: torch.Tensor
    attention_mask: torch.Tensor


@dataclass(frozen=True)
class ImageSettings:
    """How ``Sam3ImageProcessor`` turns an image into ``pixel_values``.

    The processor resizes the uint8 image to a fixed ``height`` x ``width`` (aspect ratio
    not kept) with antialiased torchvision interpolation, then normalises with the
    rescale factor folded into mean and std: ``(x - mean / r) / (std / r)``.
    """

    height: int = 1008
    width: int = 1008
    interpolation: Any = None
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_image_processor(cls, image_processor: Any) -> ImageSettings:
        """Read the settings off a loaded ``Sam3ImageProcessor``.

        Raises:
            ValueError: the processor does not resize to a fixed height and width.
        """
        from samwsss.stages.boxer_preprocess import _PIL_TO_TORCH

        size = image_processor.size
        height = size.get("height") if isinstance(size, dict) else getattr(size, "height", None)
        width = size.get("width") if isinstance(size, dict) else getattr(size, "width", None)
        if not height or not width or not getattr(image_processor, "do_resize", True):
            raise ValueError(
                "the SAM 3 image processor must resize to a fixed {'height', 'width'} (the "
                f"released 1008x1008), got size={size!r}"
            )
        resample = getattr(image_processor, "resample", 2)
        interpolation = (
            resample if not isinstance(resample, int) else _PIL_TO_TORCH.get(int(resample))
        )
        return cls(
            height=int(height),
            width=int(width),
            interpolation=interpolation,
            image_mean=tuple(float(v) for v in image_processor.image_mean),  # type: ignore[arg-type]
            image_std=tuple(float(v) for v in image_processor.image_std),  # type: ignore[arg-type]
            rescale_factor=float(image_processor.rescale_factor),
            do_rescale=bool(image_processor.do_rescale),
            do_normalize=bool(image_processor.do_normalize),
        )

    def pixel_values(self, image: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``(H, W, 3)`` uint8 RGB (any device) -> ``(3, height, width)`` float32 on ``device``,
        as the processor computes it (only the uint8 pixels cross to ``device``)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        chw = image.to(device).permute(2, 0, 1).contiguous()
        interpolation = self.interpolation or InterpolationMode.BILINEAR
        resized = tvF.resize(
            chw, [self.height, self.width], interpolation=interpolation, antialias=True
        )
        pixels = resized.to(torch.float32)
        if self.do_rescale and self.do_normalize:
            mean = torch.tensor(self.image_mean) * (1.0 / self.rescale_factor)
            std = torch.tensor(self.image_std) * (1.0 / self.rescale_factor)
            return tvF.normalize(pixels, mean.tolist(), std.tolist())
        if self.do_rescale:
            pixels = pixels * self.rescale_factor
        if self.do_normalize:
            pixels = tvF.normalize(pixels, list(self.image_mean), list(self.image_std))
        return pixels


@dataclass(frozen=True)
class _Row:
    """One (image, prompt) row of a detector forward."""

    image: int  # position in the call's batch
    query: int  # position in the image's query list
    prompt: str


class Sam3Segmenter(ModelStage):
    """Instance masks for (image, class prompt) queries with transformers' SAM 3.

    Call ``segmenter(images, queries)``:

    * ``images``: ``(H, W, 3)`` uint8 RGB numpy arrays or torch tensors (any device);
    * ``queries``: per image, ``(class_id, prompt)`` pairs, ``class_id`` in ``1..C``;
      prompts are short noun phrases (``"wild bird"``), stripped of surrounding space and
      of a trailing ``"."`` (SAM 3 prompts are phrases, not Grounding DINO captions).

    Returns one :class:`~samwsss.detections.Detections` per image, on the model's device:

    * ``boxes`` ``(N, 4)`` float32 xyxy pixels of the original image, clipped to it;
    * ``box_scores`` ``(N,)`` float32: SAM 3's score ``sigmoid(logit) * sigmoid(presence)``;
    * ``class_ids`` ``(N,)`` int64 and ``prompts``: the query each instance answers;
    * ``masks`` ``(N, H, W)`` bool at the original resolution;
    * ``mask_scores`` ``(N,)`` float32 ones: SAM 3 gives one score per instance, so the
      merger's ``box_score * mask_score`` is exactly SAM 3's score.

    Instances are ordered by the image's query order, then by SAM 3 query index (not by
    score) — the order of ``post_process_instance_segmentation``.

    Args:
        model: a loaded ``Sam3Model`` or ``Sam3LiteTextModel``.
        processor: its ``Sam3Processor`` (tokenizer and image settings are read from it).
        score_threshold: keep a query when its score is ``>`` this
            (:data:`DEFAULT_SCORE_THRESHOLD`).
        mask_threshold: a pixel is in the mask when its resized mask probability is ``>``
            this (:data:`DEFAULT_MASK_THRESHOLD`).
        device: where to run (default CPU; :meth:`from_pretrained` picks CUDA when there).
        dtype: autocast dtype; ``None``/``"auto"`` = bfloat16 on CUDA, float32 elsewhere.
            Weights stay float32; scores and masks are post-processed in float32.
        max_batch_rows: (image, prompt) rows per detector forward at most (memory: each row
            holds ``num_queries`` mask logits, 200 x 288 x 288 for SAM 3).
        max_images_per_batch: images per vision-encoder forward at most; ``None`` = 8 on
            CUDA, 1 elsewhere (a CPU gains no speed from batching, only memory).
        checkpoint, revision: where the weights came from (:attr:`source`).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        max_batch_rows: int = 8,
        max_images_per_batch: int | None = None,
        checkpoint: str | None = None,
        revision: str | None = None,
    ) -> None:
        self.score_threshold = check_fraction("score_threshold", score_threshold)
        self.mask_threshold = check_fraction("mask_threshold", mask_threshold)
        self.max_batch_rows = check_count("max_batch_rows", max_batch_rows)
        self._set_precision(dtype, max_images_per_batch)
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_settings = ImageSettings.from_image_processor(processor.image_processor)
        self.checkpoint = checkpoint
        self.revision = revision
        self._text_cache: dict[str, TextFeatures] = {}
        self.text_encoder_calls = 0  # prompts encoded so far (cache misses)
        self.vision_encoder_calls = 0  # images encoded so far
        self.to(device if device is not None else "cpu")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        *,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        max_batch_rows: int = 8,
        max_images_per_batch: int | None = None,
        image_resize: str | None = None,
        **hub_kwargs: Any,
    ) -> Sam3Segmenter:
        """Load SAM 3 (or SAM 3 LiteText) and its processor.

        Args:
            name_or_path: ``sam3`` / ``sam3-litetext-s0`` / ``-s1`` / ``-l`` (registry
                names, resolved to hub ids), or any hub id or local ``save_pretrained``
                folder. Its ``config.json`` ``model_type`` picks ``Sam3Model``
                (``sam3``, ``sam3_video``) or ``Sam3LiteTextModel`` (``sam3_lite_text``).
            device: where to run; default CUDA when available, else CPU.
            image_resize: accepted for the pipeline's uniform stage options and ignored:
                SAM 3 has one resize (the processor's fixed square).
            hub_kwargs: passed to every ``from_pretrained`` (``revision``, ``cache_dir``,
                ``local_files_only``, ``token``...).

        The other arguments are those of :class:`Sam3Segmenter`.

        Raises:
            ValueError: an empty name, a folder without ``config.json``, a config of another
                architecture (named in the message), or bad options.
        """
        import transformers

        if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
            raise ValueError(
                f"name_or_path must be a registry name ({', '.join(_names())}), a hub id or "
                f"a local folder, got {name_or_path!r}"
            )
        del image_resize  # one resize only; see the docstring
        checkpoint = registry.weights_of("segmenter", str(name_or_path))
        model_type = _model_type(checkpoint, hub_kwargs)
        class_name = ARCHITECTURES.get(str(model_type))
        if class_name is None:
            raise ValueError(
                f"{checkpoint} holds a {model_type!r} model, not SAM 3: the segmenter loads "
                f"model_type {', '.join(repr(t) for t in ARCHITECTURES)} "
                f"(e.g. {', '.join(_names())})"
            )
        logger.info("loading %s from %s", class_name, checkpoint)
        processor = transformers.Sam3Processor.from_pretrained(checkpoint, **hub_kwargs)
        model = getattr(transformers, class_name).from_pretrained(checkpoint, **hub_kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(
            model,
            processor,
            score_threshold=score_threshold,
            mask_threshold=mask_threshold,
            device=device,
            dtype=dtype,
            max_batch_rows=max_batch_rows,
            max_images_per_batch=max_images_per_batch,
            checkpoint=checkpoint,
            revision=hub_kwargs.get("revision"),
        )

    def _moved(self) -> None:
        """Move the cached text features with the model (see :meth:`ModelStage.to`)."""
        self._text_cache = {
            prompt: TextFeatures(f.embeds.to(self._device), f.attention_mask.to(self._device))
            for prompt, f in self._text_cache.items()
        }

    # -- call ---------------------------------------------------------------------------
    def __call__(
        self,
        images: Sequence[np.ndarray | torch.Tensor] | ImageBatch,
        queries: Sequence[Sequence[Query]],
    ) -> list[Detections]:
        """Segment the queried classes in each image; see the class docstring.

        Raises:
            ValueError: an image is not ``(H, W, 3)`` uint8, ``queries`` does not have one
                list per image, or a query is not a ``(class_id >= 1, non-empty prompt)``
                pair.
        """
        batch = ImageBatch.of(images, self._device)
        return self.detect(batch, check_queries(queries, len(batch), normalize_prompt))

    def detect(
        self,
        images: ImageBatch,
        queries: Sequence[Sequence[Query]],
        *,
        prompt_mode: str | None = None,
        max_rows: int | None = None,
    ) -> list[Detections]:
        """:meth:`__call__` on a checked batch (the pipeline's entry: no image checks).

        Args:
            images: the batch.
            queries: per image, ``(class_id >= 1, prompt)`` pairs.
            prompt_mode: ignored (the Boxer protocol's option): SAM 3 always runs one
                (image, prompt) row per query, its text encoder gives one phrase.
            max_rows: rows per detector forward at most (default: ``max_batch_rows``).
        """
        del prompt_mode
        detections, _ = self.detect_with_presence(images, queries, max_rows=max_rows)
        return detections

    def detect_with_presence(
        self,
        images: ImageBatch,
        queries: Sequence[Sequence[Query]],
        *,
        max_rows: int | None = None,
    ) -> tuple[list[Detections], list[torch.Tensor]]:
        """:meth:`detect`, plus each query's presence probability.

        Returns:
            ``(detections, presence)``: ``detections`` as :meth:`detect`; ``presence[i]``
            ``(len(queries[i]),)`` float32 on the device, ``sigmoid(presence logit)`` of
            image ``i`` and each of its queries (SAM 3's image-level "is this concept in the
            image" head, whatever the instances' scores).
        """
        step = self.max_batch_rows if max_rows is None else check_count("max_rows", max_rows)
        if len(queries) != len(images):
            raise ValueError(f"got {len(images)} images but {len(queries)} query lists")
        normalized = [[(int(c), normalize_prompt(p)) for c, p in image] for image in queries]
        sizes = images.sizes
        self._encode_prompts(sorted({p for image in normalized for _, p in image}))
        parts: dict[int, list[Detections]] = {i: [] for i in range(len(images))}
        presence = [
            torch.zeros(len(image), dtype=torch.float32, device=self._device)
            for image in normalized
        ]
        with_rows = [i for i, image in enumerate(normalized) if image]
        per_group = self.max_images_per_batch
        for start in range(0, len(with_rows), per_group):
            group = with_rows[start : start + per_group]
            vision = self._vision_features(images, group)
            rows = [
                _Row(image, position, prompt)
                for image in group
                for position, (_, prompt) in enumerate(normalized[image])
            ]
            for low in range(0, len(rows), step):
                chunk = rows[low : low + step]
                outputs = self._forward(chunk, vision, group)
                scores, present = _scores(outputs)
                for position, row in enumerate(chunk):
                    presence[row.image][row.query] = present[position]
                    class_id = normalized[row.image][row.query][0]
                    parts[row.image].append(
                        self._decode_row(outputs, scores, position, row, class_id, sizes[row.image])
                    )
                del outputs
            del vision
        results = []
        for image_index, size in enumerate(sizes):
            pieces = parts[image_index]
            results.append(
                Detections.cat(pieces)
                if pieces
                else Detections.empty(size, self._device, with_masks=True)
            )
        return results, presence

    # -- text ---------------------------------------------------------------------------
    def text_features(self, prompt: str) -> TextFeatures:
        """The cached text features of ``prompt`` (encoded on first use)."""
        prompt = normalize_prompt(prompt)
        self._encode_prompts([prompt])
        return self._text_cache[prompt]

    def clear_text_cache(self) -> None:
        """Forget every cached prompt (e.g. to free memory between runs of other classes)."""
        self._text_cache.clear()

    def _encode_prompts(self, prompts: Sequence[str]) -> None:
        """Run the text encoder on the prompts not cached yet, ``max_batch_rows`` at a time."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        for prompt in missing:
            length = len(self.tokenizer(prompt)["input_ids"])
            if length > TEXT_LENGTH:
                raise ValueError(
                    f"prompt {prompt!r} is {length} tokens long, more than SAM 3's text length "
                    f"{TEXT_LENGTH}: shorten it"
                )
        for start in range(0, len(missing), self.max_batch_rows):
            chunk = missing[start : start + self.max_batch_rows]
            tokens = self.processor(text=chunk, return_tensors="pt")
            input_ids = tokens["input_ids"].to(self._device)
            attention_mask = tokens["attention_mask"].to(self._device)
            with torch.inference_mode(), self._autocast():
                embeds = self.model.get_text_features(
                    input_ids=input_ids, attention_mask=attention_mask, return_dict=True
                ).pooler_output
            for index, prompt in enumerate(chunk):
                self._text_cache[prompt] = TextFeatures(
                    embeds[index : index + 1].clone(), attention_mask[index : index + 1].clone()
                )
            self.text_encoder_calls += len(chunk)

    # -- vision -------------------------------------------------------------------------
    def _vision_features(self, images: ImageBatch, group: list[int]) -> Any:
        """Vision-encoder output of the images at ``group`` (one forward, one pass each)."""
        pictures = images.on_device
        pixels = torch.stack(
            [self.image_settings.pixel_values(pictures[i], self._device) for i in group]
        )
        with torch.inference_mode(), self._autocast():
            vision = self.model.get_vision_features(pixel_values=pixels)
        self.vision_encoder_calls += len(group)
        return vision

    # -- detector -----------------------------------------------------------------------
    def _forward(self, chunk: list[_Row], vision: Any, group: list[int]) -> Any:
        """Detector + mask heads on ``chunk``'s rows; vision and text features are shared
        (gathered per row, never recomputed)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        take = torch.tensor(
            [group.index(row.image) for row in chunk], dtype=torch.long, device=self._device
        )
        row_vision = type(vision)(
            fpn_hidden_states=tuple(t.index_select(0, take) for t in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(
                t.index_select(0, take) for t in vision.fpn_position_encoding
            ),
        )
        texts = [self._text_cache[row.prompt] for row in chunk]
        text = BaseModelOutputWithPooling(pooler_output=torch.cat([t.embeds for t in texts]))
        attention_mask = torch.cat([t.attention_mask for t in texts])
        with torch.inference_mode(), self._autocast():
            return self.model(
                vision_embeds=row_vision, text_embeds=text, attention_mask=attention_mask
            )

    def _decode_row(
        self,
        outputs: Any,
        scores: torch.Tensor,
        position: int,
        row: _Row,
        class_id: int,
        image_size: tuple[int, int],
    ) -> Detections:
        """Row ``position`` of a forward as Detections, as the processor post-processes it."""
        height, width = image_size
        keep = (scores[position] > self.score_threshold).nonzero().flatten()
        count = int(keep.numel())
        boxes = outputs.pred_boxes[position].float().index_select(0, keep)
        scale = torch.tensor(
            [width, height, width, height], dtype=torch.float32, device=boxes.device
        )
        pixel_boxes = torch.minimum((boxes * scale).clamp(min=0.0), scale)  # clipped
        masks = torch.empty((count, height, width), dtype=torch.bool, device=self._device)
        threshold_probabilities(
            outputs.pred_masks[position].index_select(0, keep), self.mask_threshold, masks
        )
        return Detections(
            image_size=(height, width),
            boxes=pixel_boxes,
            box_scores=scores[position].index_select(0, keep),
            class_ids=torch.full((count,), class_id, dtype=torch.int64, device=self._device),
            prompts=(row.prompt,) * count,
            masks=masks,
            mask_scores=torch.ones(count, dtype=torch.float32, device=self._device),
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.compute_dtype
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=dtype)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(checkpoint={self.checkpoint!r}, "
            f"score_threshold={self.score_threshold}, mask_threshold={self.mask_threshold}, "
            f"device={str(self._device)!r})"
        )


def _scores(outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, Q)`` instance scores and ``(R,)`` presence probabilities of a forward, float32."""
    logits = outputs.pred_logits.float().sigmoid()
    if outputs.presence_logits is None:
        return logits, torch.ones(logits.shape[0], dtype=torch.float32, device=logits.device)
    present = outputs.presence_logits.float().sigmoid()  # (R, 1)
    return logits * present, present[:, 0]


def threshold_probabilities(logits: torch.Tensor, threshold: float, out: torch.Tensor) -> None:
    """``sigmoid(logits)`` bilinearly resized to ``out``'s size, ``> threshold``, into ``out``.

    As ``post_process_instance_segmentation`` does (sigmoid first, then
    ``F.interpolate(..., mode="bilinear", align_corners=False)``), a few masks at a time:
    at most ``max(1, UPSCALE_BUDGET_PIXELS // (H * W))`` float masks exist at once. Each
    mask is interpolated on its own, so the bits do not depend on the piece size.

    Args:
        logits: ``(n, h, w)`` low-resolution mask logits (any float dtype).
        threshold: probability a pixel must pass.
        out: ``(n, H, W)`` bool, contiguous, written in place.
    """
    count, height, width = out.shape
    step = max(1, UPSCALE_BUDGET_PIXELS // max(1, height * width))
    for low in range(0, count, step):
        high = min(low + step, count)
        probabilities = logits[low:high].float().sigmoid().unsqueeze(0)
        upscaled = torch.nn.functional.interpolate(
            probabilities, size=(height, width), mode="bilinear", align_corners=False
        )[0]
        torch.gt(upscaled, threshold, out=out[low:high])
        del upscaled


def normalize_prompt(prompt: Any) -> str:
    """A SAM 3 prompt: surrounding space and a trailing ``"."`` removed, inner space single.

    Raises:
        ValueError: not a string, or empty once stripped.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be a string, got {prompt!r}")
    text = " ".join(prompt.split()).rstrip(".").strip()
    if not text:
        raise ValueError(f"empty prompt {prompt!r}: give a short noun phrase such as 'dog'")
    return text


def _model_type(checkpoint: str, hub_kwargs: dict[str, Any]) -> str | None:
    """``model_type`` of ``checkpoint``'s ``config.json`` (a folder or a hub id).

    Raises:
        ValueError: an existing folder without ``config.json``.
    """
    path = Path(checkpoint).expanduser()
    if path.exists():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ValueError(
                f"{path} has no config.json: give a folder written by save_pretrained, a hub "
                f"id or one of {', '.join(_names())}"
            )
    else:
        from transformers.utils import cached_file

        found = cached_file(checkpoint, "config.json", **hub_options(hub_kwargs))
        if found is None:
            raise ValueError(f"{checkpoint} has no config.json")
        config_file = Path(found)
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    return None if model_type is None else str(model_type)


def _names() -> list[str]:
    return [card.name for card in MODELS]

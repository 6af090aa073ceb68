"""Grounding DINO boxer: images + (class, prompt) queries -> boxes as :class:`Detections`.

The survey authors run one Grounding DINO forward per (image, class) with the
class name as caption (``"wild bird."``), keeps a query when the largest sigmoid over its
text tokens exceeds ``box_threshold`` (0.3), ignores the extracted phrase and labels the box
with the prompt's class. :class:`GroundingDinoBoxer` gives the same results but batches:

* ``per-class`` (default, the paper): every (image, prompt) pair of a call is one row; all
  rows go through batched forwards, grouped ("bucketed") by resized image size, because
  images of one size batch exactly while padding different sizes together changes the
  outputs. Rows of one image share one backbone pass (``share_backbone``).
* ``joint``: all prompts of an image in one caption (``"cat. dog."``; split into several
  captions when longer than the model's ``max_text_len``). Each kept query goes to the class
  whose prompt's token span holds its largest probability — never to the decoded phrase.

Any checkpoint of the Grounding DINO family runs through the same paths: the original
(``model_type`` ``grounding-dino``) and MM-Grounding-DINO / LLMDet (``mm-grounding-dino``);
the model class is picked by ``model_type`` (:mod:`samwsss.stages.boxer_family`), other
architectures are refused by name. Default thresholds depend on the family (0.3 / 0.25 for
the original, 0.4 / 0.3 for MM-Grounding-DINO and LLMDet); :func:`family_defaults` tells them.

Registry names (:data:`MODELS`): ``grounding-dino-tiny`` (IDEA-Research/grounding-dino-tiny,
the paper's Swin-T trained on O365+GoldG+Cap4M), ``grounding-dino-base`` (Swin-B),
``mm-grounding-dino-tiny|base|large`` (openmmlab-community) and ``llmdet-tiny|base|large``
(iSEE-Laboratory). Any other string is a hub id or local folder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samwsss import registry
from samwsss.checks import (
    check_choice,
    check_count,
    check_fraction,
    check_optional_fraction,
)
from samwsss.choices import IMAGE_RESIZES, PROMPT_MODES
from samwsss.detections import Detections
from samwsss.released import BOXER_FAMILIES, BOXER_MODELS, DEFAULT_BOXER
from samwsss.stages.boxer_backbone import backbone_module, shared_backbone
from samwsss.stages.boxer_family import (
    BoxerFamily,
    cached_model_type,
    family_of_model,
    family_of_type,
    folder_model_type,
    hub_model_type,
)
from samwsss.stages.boxer_preprocess import (
    PreprocessSettings,
    normalize_resized,
    preprocess_image,
)
from samwsss.stages.boxer_text import (
    EncodedCaption,
    assign_spans,
    encode_caption,
    normalize_prompt,
    pack_captions,
)
from samwsss.stages.contracts import ImageBatch, Query, check_queries
from samwsss.stages.model_stage import ModelStage
from samwsss.stages.pil_resize import BILINEAR, PilResize

logger = logging.getLogger(__name__)

#: The released Grounding DINO family weights this boxer loads by name (declared in
#: :mod:`samwsss.released`); each card's ``defaults`` are its family's thresholds.
MODELS = BOXER_MODELS
#: Registry name -> family.
CARD_FAMILIES: dict[str, BoxerFamily] = BOXER_FAMILIES
DEFAULT_MODEL = DEFAULT_BOXER


@dataclass(frozen=True)
class _Row:
    """One forward row: an image and a caption holding some of its queries."""

    image: int
    caption: EncodedCaption
    queries: tuple[int, ...]  # positions in the image's query list, one per caption span
    joint: bool = False  # classes assigned from token spans (joint captions)


class GroundingDinoBoxer(ModelStage):
    """Boxes for (image, class prompt) queries with a transformers Grounding DINO family model
    (``GroundingDinoForObjectDetection`` or ``MMGroundingDinoForObjectDetection``).

    Call ``boxer(images, queries)``:

    * ``images``: a sequence of ``(H, W, 3)`` uint8 RGB images, numpy arrays (as datasets
      yield them) or torch tensors of the same layout (on any device).
    * ``queries``: per image, a sequence of ``(class_id, prompt)`` pairs, ``class_id`` in
      ``1..C``. Prompts are normalised as in the paper: stripped, lower-cased, ``"."``
      appended. An image may have no query (its result is empty). Several prompts may
      share a class (synonyms).

    Returns one :class:`Detections` per image: ``boxes`` ``(N, 4)`` float32 xyxy in original
    image pixels clipped to the image, ``box_scores`` ``(N,)`` the largest sigmoid over the
    caption's real text tokens (the paper's score), ``class_ids`` ``(N,)`` int64,
    ``prompts`` the normalised prompt of each box. Boxes are ordered by the image's query
    order, then by Grounding DINO query index (not by score). Tensors are on the model's
    device.

    Thresholds (``None``: the family's default, see :func:`family_defaults`):

    * ``box_threshold`` (0.3; MM-Grounding-DINO / LLMDet 0.4): a query is kept when its score (max sigmoid over all real
      text tokens of its caption: ``[CLS]``, words, ``"."``, ``[SEP]``) is ``>`` it.
    * ``text_threshold`` (0.25; MM-Grounding-DINO / LLMDet 0.3): in the paper it only selects the tokens of the phrase
      string, which the authors then discard; so in ``per-class`` mode it changes nothing.
      In ``joint`` mode a kept query is also required to have its assigned class's span
      maximum ``>`` ``text_threshold``, i.e. the class would appear in the paper's phrase
      (a query that fires only on ``"."``/``[CLS]`` is dropped).
    * ``nms_iou``: if set, class-wise NMS (``torchvision.ops.batched_nms``) per image with
      that IoU; ``None`` (the paper) keeps every box.

    Images and boxes:

    * ``image_resize="torch"`` (default) resizes like transformers' processor with an
      antialiased torchvision resize on the device; ``"pil"`` is GroundingDINO's own
      transform, as the survey authors run it: the size rounded as its ``RandomResize``
      does, PIL bilinear, ``/ 255``.
    * ``clip_boxes=False`` keeps each box as the detector gave it (it may pass the border
      by a few pixels) in ``Detections.prompt_boxes``, computed as the authors' demo does,
      so SAM is prompted with it; ``boxes`` are clipped either way.

    Precision: on CUDA, bf16 autocast by default (``dtype`` may be ``"fp16"``/``"fp32"``);
    on CPU fp32 unless ``dtype`` says otherwise. ``max_batch_rows`` bounds the caption rows
    of one forward (memory); ``share_backbone`` runs the Swin backbone once per image of a
    forward instead of once per row (same result).
    """

    image_resize: str
    pil_resize: PilResize

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
        prompt_mode: str = "per-class",
        nms_iou: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        max_batch_rows: int = 8,
        share_backbone: bool = True,
        image_resize: str = "torch",
        clip_boxes: bool = True,
        checkpoint: str | None = None,
        revision: str | None = None,
    ) -> None:
        """Wrap a loaded Grounding DINO family model and its ``GroundingDinoProcessor``.

        The family is read off ``model.config.model_type``; thresholds left ``None`` take
        its defaults.

        Raises:
            ValueError: a model whose ``model_type`` is not of the Grounding DINO family, a
                threshold outside [0, 1], an unknown ``prompt_mode`` or ``dtype``,
                ``nms_iou`` outside (0, 1], ``max_batch_rows`` < 1, or a processor that does
                not resize by shortest/longest edge.
        """
        self.family = family_of_model(model)
        self.box_threshold = check_fraction(
            "box_threshold",
            self.family.box_threshold if box_threshold is None else box_threshold,
        )
        self.text_threshold = check_fraction(
            "text_threshold",
            self.family.text_threshold if text_threshold is None else text_threshold,
        )
        self.prompt_mode = check_choice("prompt_mode", prompt_mode, PROMPT_MODES)
        self.nms_iou = check_optional_fraction("nms_iou", nms_iou, include_low=False)
        self.max_batch_rows = check_count("max_batch_rows", max_batch_rows)
        self.image_resize = check_choice("image_resize", image_resize, IMAGE_RESIZES)
        self.clip_boxes = bool(clip_boxes)
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.preprocess_settings = PreprocessSettings.from_image_processor(
            processor.image_processor
        )
        self.pil_resize = PilResize(
            "grounding-dino",
            "short-side",
            self.preprocess_settings.shortest_edge,
            self.preprocess_settings.longest_edge,
            BILINEAR,
        )
        self.share_backbone = (
            bool(share_backbone)
            and self.family.share_backbone
            and backbone_module(model) is not None
        )
        self.checkpoint = checkpoint
        self.revision = revision
        self._set_precision(dtype)
        self.max_text_len = int(getattr(model.config, "max_text_len", 256))
        self.to(device if device is not None else "cpu")

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
        prompt_mode: str = "per-class",
        nms_iou: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        max_batch_rows: int = 8,
        share_backbone: bool = True,
        image_resize: str = "torch",
        clip_boxes: bool = True,
        **load_kwargs: Any,
    ) -> GroundingDinoBoxer:
        """Load a Grounding DINO family checkpoint and its processor.

        The model class comes from the checkpoint's family: a registry name's card, else the
        ``model_type`` of its ``config.json`` (``grounding-dino`` ->
        ``GroundingDinoForObjectDetection``; ``mm-grounding-dino``, also LLMDet ->
        ``MMGroundingDinoForObjectDetection``). Only the config is read before refusing
        another architecture.

        Args:
            name_or_path: a registry name (:data:`MODELS`: ``grounding-dino-tiny``,
                ``mm-grounding-dino-base``, ``llmdet-large``..., resolved to hub ids first),
                or any hub id or local folder holding a transformers Grounding DINO family
                model (``config.json``, weights, processor and tokenizer files).
            box_threshold, text_threshold: ``None`` takes the family's defaults
                (:func:`family_defaults`).
            load_kwargs: passed to both ``from_pretrained`` calls (``revision``,
                ``cache_dir``, ``local_files_only``, ``token``...).

        The other arguments are those of :class:`GroundingDinoBoxer`.

        Raises:
            ValueError: an unknown name, a folder without ``config.json``, or a checkpoint
                whose ``model_type`` is not of the Grounding DINO family (named, with the
                supported types).
        """
        from transformers import AutoProcessor

        if not isinstance(name_or_path, str) or not name_or_path:
            raise ValueError(
                f"name_or_path must be a registry name ({', '.join(_names())}), a hub id or "
                f"a local folder, got {name_or_path!r}"
            )
        family = _source_family(name_or_path, load_kwargs)
        checkpoint = registry.weights_of("boxer", name_or_path)
        logger.info("loading %s (%s) from %s", family.label, family.model_class, checkpoint)
        processor = AutoProcessor.from_pretrained(checkpoint, **load_kwargs)
        model = family.load_class().from_pretrained(checkpoint, **load_kwargs)
        loaded = family_of_model(model)
        if loaded is not family:
            raise ValueError(
                f"{checkpoint} was expected to hold a {family.model_type!r} model but holds "
                f"a {loaded.model_type!r} one: load it by its hub id or folder instead"
            )
        return cls(
            model,
            processor,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            prompt_mode=prompt_mode,
            nms_iou=nms_iou,
            device=device,
            dtype=dtype,
            max_batch_rows=max_batch_rows,
            share_backbone=share_backbone,
            image_resize=image_resize,
            clip_boxes=clip_boxes,
            checkpoint=checkpoint,
            revision=load_kwargs.get("revision"),
        )

    # -- call -------------------------------------------------------------------------
    def __call__(
        self,
        images: Sequence[np.ndarray | torch.Tensor],
        queries: Sequence[Sequence[Query]],
        *,
        prompt_mode: str | None = None,
    ) -> list[Detections]:
        """Detect the queried classes in each image; see the class docstring.

        Args:
            prompt_mode: ``"per-class"`` or ``"joint"`` for this call only (default: the
                boxer's own ``prompt_mode``).

        Raises:
            ValueError: an image is not ``(H, W, 3)`` uint8, ``queries`` does not have one
                entry per image, a query is not a ``(class_id >= 1, non-empty prompt)``
                pair, or ``prompt_mode`` is unknown.
        """
        batch = ImageBatch.of(images, self._device)
        return self.detect(
            batch, check_queries(queries, len(batch), normalize_prompt), prompt_mode=prompt_mode
        )

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
            images: the batch (its images are uploaded to the device once).
            queries: per image, ``(class_id >= 1, prompt)`` pairs; prompts are normalised
                here (stripped, lower-cased, ``"."`` appended).
            prompt_mode: ``"per-class"`` or ``"joint"`` for this call (default: the boxer's).
            max_rows: caption rows per forward at most (default: ``max_batch_rows``).
        """
        mode = self.prompt_mode if prompt_mode is None else prompt_mode
        check_choice("prompt_mode", mode, PROMPT_MODES)
        step = self.max_batch_rows if max_rows is None else max_rows
        pictures = images.on_device
        sizes = images.sizes
        normalized = [[(int(c), normalize_prompt(p)) for c, p in image] for image in queries]
        rows = self._plan_rows(normalized, mode)
        pixels: dict[int, torch.Tensor] = {}
        for image_index in sorted({row.image for row in rows}):
            if self.image_resize == "pil":
                pixels[image_index] = normalize_resized(
                    images.resized(image_index, self.pil_resize),
                    self.preprocess_settings,
                    self._device,
                )
            else:
                pixels[image_index] = preprocess_image(
                    pictures[image_index], self.preprocess_settings, self._device
                )
        buckets: dict[tuple[int, int], list[_Row]] = {}
        for row in rows:
            size = tuple(pixels[row.image].shape[1:])
            buckets.setdefault(size, []).append(row)  # type: ignore[arg-type]
        parts: dict[int, list[tuple[int, Detections]]] = {}
        for size, bucket_rows in buckets.items():
            logger.debug("bucket %s: %d rows", size, len(bucket_rows))
            for start in range(0, len(bucket_rows), step):
                chunk = bucket_rows[start : start + step]
                logits, boxes = self._forward(chunk, pixels)
                for position, row in enumerate(chunk):
                    detections = self._decode_row(
                        row,
                        normalized[row.image],
                        logits[position],
                        boxes[position],
                        sizes[row.image],
                    )
                    parts.setdefault(row.image, []).append((row.queries[0], detections))
        results = []
        for image_index, (height, width) in enumerate(sizes):
            pieces = [d for _, d in sorted(parts.get(image_index, []), key=lambda item: item[0])]
            detections = (
                Detections.cat(pieces)
                if pieces
                else Detections.empty((height, width), self._device)
            )
            results.append(self._nms(detections))
        return results

    # -- internals ----------------------------------------------------------------------
    def _plan_rows(self, queries: list[list[Query]], prompt_mode: str) -> list[_Row]:
        """Captions of every image: one per query (per-class) or packed prompts (joint)."""
        singles: dict[str, EncodedCaption] = {}
        packs: dict[tuple[str, ...], list[EncodedCaption]] = {}
        rows: list[_Row] = []
        for image_index, image_queries in enumerate(queries):
            prompts = [prompt for _, prompt in image_queries]
            if prompt_mode == "per-class":
                for position, prompt in enumerate(prompts):
                    if prompt not in singles:
                        singles[prompt] = self._single_caption(prompt)
                    rows.append(_Row(image_index, singles[prompt], (position,)))
            elif prompts:
                key = tuple(prompts)
                if key not in packs:
                    packs[key] = pack_captions(self.tokenizer, prompts, self.max_text_len)
                position = 0
                for caption in packs[key]:
                    count = len(caption.spans)
                    rows.append(
                        _Row(image_index, caption, tuple(range(position, position + count)), True)
                    )
                    position += count
        return rows

    def _single_caption(self, prompt: str) -> EncodedCaption:
        caption = encode_caption(self.tokenizer, [prompt])
        if len(caption.input_ids) > self.max_text_len:
            raise ValueError(
                f"prompt {prompt!r} is {len(caption.input_ids)} tokens long, more than the "
                f"model's max_text_len {self.max_text_len}: shorten it"
            )
        return caption

    def _forward(
        self, chunk: list[_Row], pixels: dict[int, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched forward of ``chunk`` (same resized size): float32 logits and boxes.

        Returns ``logits`` ``(R, Q, max_text_len)`` (``-inf`` at padded text positions) and
        ``pred_boxes`` ``(R, Q, 4)`` normalised ``cx, cy, w, h``.
        """
        device = self._device
        length = max(len(row.caption.input_ids) for row in chunk)
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for index, row in enumerate(chunk):
            ids = torch.tensor(row.caption.input_ids, dtype=torch.long)
            input_ids[index, : ids.numel()] = ids
            attention_mask[index, : ids.numel()] = 1
        images = list(dict.fromkeys(row.image for row in chunk))
        row_to_image = torch.tensor(
            [images.index(row.image) for row in chunk], dtype=torch.long, device=device
        )
        share = self.share_backbone and len(images) < len(chunk)
        pixel_values = torch.stack([pixels[i] for i in images])
        if not share:
            pixel_values = pixel_values.index_select(0, row_to_image)
        height, width = pixel_values.shape[-2:]
        pixel_mask = torch.ones((len(chunk), height, width), dtype=torch.long, device=device)
        dtype = self.compute_dtype
        autocast = (
            torch.autocast(device_type=device.type, dtype=dtype)
            if dtype != torch.float32
            else contextlib.nullcontext()
        )
        sharing = shared_backbone(self.model, row_to_image) if share else contextlib.nullcontext()
        with torch.inference_mode(), autocast, sharing:
            outputs = self.model(
                pixel_values=pixel_values,
                input_ids=input_ids.to(device),
                token_type_ids=torch.zeros_like(input_ids).to(device),
                attention_mask=attention_mask.to(device),
                pixel_mask=pixel_mask,
            )
        return outputs.logits.float(), outputs.pred_boxes.float()

    def _decode_row(
        self,
        row: _Row,
        image_queries: list[Query],
        logits: torch.Tensor,
        boxes: torch.Tensor,
        image_size: tuple[int, int],
    ) -> Detections:
        """Threshold one row's ``(Q, T)`` logits and ``(Q, 4)`` boxes into Detections."""
        probs = logits.sigmoid()
        scores = probs.amax(dim=1)
        keep = scores > self.box_threshold
        if row.joint:
            span_index, span_prob = assign_spans(probs, row.caption.spans)
            keep &= span_prob > self.text_threshold
        else:
            span_index = torch.zeros_like(scores, dtype=torch.long)
        kept = keep.nonzero().flatten()
        chosen = [row.queries[i] for i in span_index[kept].tolist()]
        class_ids = torch.tensor(
            [image_queries[q][0] for q in chosen], dtype=torch.int64, device=logits.device
        )
        height, width = int(image_size[0]), int(image_size[1])
        if self.clip_boxes:
            pixel_boxes, prompt_boxes = cxcywh_to_pixels(boxes[kept], height, width), None
        else:
            prompt_boxes = authors_pixel_boxes(boxes[kept], height, width)
            pixel_boxes = clip_to_image(prompt_boxes, height, width)
        return Detections(
            image_size=(height, width),
            boxes=pixel_boxes,
            box_scores=scores[kept],
            class_ids=class_ids,
            prompts=tuple(image_queries[q][1] for q in chosen),
            prompt_boxes=prompt_boxes,
        )

    def _nms(self, detections: Detections) -> Detections:
        if self.nms_iou is None or len(detections) < 2:
            return detections
        from torchvision.ops import batched_nms

        keep = batched_nms(
            detections.boxes, detections.box_scores, detections.class_ids, self.nms_iou
        )
        return detections[keep.sort().values]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(checkpoint={self.checkpoint!r}, "
            f"family={self.family.model_type!r}, prompt_mode={self.prompt_mode!r}, "
            f"box_threshold={self.box_threshold}, text_threshold={self.text_threshold}, "
            f"nms_iou={self.nms_iou}, device={str(self._device)!r})"
        )


def _source_family(name_or_path: str, load_kwargs: dict[str, Any]) -> BoxerFamily:
    """The family of what ``name_or_path`` names, checked before any weights are loaded.

    A registered name gives its card's family; a folder its ``config.json`` ``model_type``;
    a hub id ``owner/name`` the ``model_type`` of its config (fetched alone).

    Raises:
        ValueError: a folder without ``config.json``, a ``model_type`` outside the Grounding
            DINO family, or a string that is neither a registered name, nor an existing
            folder, nor a hub id ``owner/name``.
    """
    if name_or_path in CARD_FAMILIES:
        return CARD_FAMILIES[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.exists():
        return family_of_type(_folder_type(path), str(path))
    _check_hub_id(name_or_path)
    return family_of_type(hub_model_type(name_or_path, load_kwargs), name_or_path)


def _folder_type(path: Path) -> object:
    if not (path / "config.json").is_file():
        raise ValueError(
            f"{path} has no config.json: give a folder written by save_pretrained, a hub "
            f"id or one of {', '.join(_names())}"
        )
    return folder_model_type(path)


def _check_hub_id(name: str) -> None:
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or name.startswith((".", "~")):
        raise ValueError(
            f"boxer {name!r} is neither a registered name ({', '.join(_names())}), "
            "nor an existing folder, nor a hub id like IDEA-Research/grounding-dino-tiny"
        )


def family_defaults(name_or_path: str | Path) -> dict[str, float]:
    """Default ``box_threshold`` / ``text_threshold`` of the checkpoint ``name_or_path`` names.

    For callers that pass thresholds explicitly (the pipeline passes its config's) and want
    the family's values when the user gave none: ``{"box_threshold": 0.3,
    "text_threshold": 0.25}`` for the original Grounding DINO, ``0.4`` / ``0.3`` for
    MM-Grounding-DINO and LLMDet (see :mod:`samwsss.stages.boxer_family` for why). Reads no
    weights and never touches the network.

    Args:
        name_or_path: a registry name (its card's family), a ``save_pretrained`` folder (its
            ``config.json`` ``model_type``) or a hub id (its cached ``config.json``, if any).

    Returns:
        The family's thresholds, or ``{}`` for a hub id whose config is not cached (the
        family cannot be known offline; the caller keeps its own values).

    Raises:
        ValueError: a folder without ``config.json`` or holding another architecture, or a
            string that is neither a registered name, a folder nor a hub id.
    """
    name = str(name_or_path)
    if name in CARD_FAMILIES:
        return CARD_FAMILIES[name].defaults
    path = Path(name).expanduser()
    if path.exists():
        return family_of_type(_folder_type(path), str(path)).defaults
    _check_hub_id(name)
    model_type = cached_model_type(name)
    return {} if model_type is None else family_of_type(model_type, name).defaults


def cxcywh_to_pixels(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``(N, 4)`` ``cx, cy, w, h`` -> float32 xyxy pixels of an ``height`` x ``width``
    image, clipped to ``[0, width]`` x ``[0, height]``."""
    cx, cy, w, h = boxes.float().unbind(-1)
    xyxy = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    return clip_to_image(xyxy * scale, height, width)


def authors_pixel_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``(N, 4)`` ``cx, cy, w, h`` -> float32 xyxy pixels, unclipped, with the
    Grounded-SAM demo's arithmetic (scale first; ``x1 = cx - w / 2``; ``x2 = x1 + w``)."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    scaled = boxes.float() * scale
    corner = scaled[:, :2] - scaled[:, 2:] / 2
    return torch.cat((corner, corner + scaled[:, 2:]), dim=1)


def clip_to_image(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, 4)`` xyxy pixels clipped to ``[0, width]`` x ``[0, height]``."""
    limit = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    return torch.minimum(boxes.clamp(min=0.0), limit)


def _names() -> list[str]:
    return [card.name for card in MODELS]

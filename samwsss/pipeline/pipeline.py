"""``Pipeline``: owns the stages and runs the text-input and zero-shot routes on batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from samwsss.detections import Detections
from samwsss.devices import resolve_device
from samwsss.mapping import ClassMapping, load_mapping
from samwsss.pipeline.batching import BatchPlan
from samwsss.pipeline.builders import build_boxer, build_masker, build_segmenter, build_tagger
from samwsss.pipeline.config import PipelineConfig, preset
from samwsss.pipeline.inputs import (
    ImageLike,
    LabelLike,
    as_image_list,
    resolve_labels,
    to_rgb_array,
)
from samwsss.pipeline.overlay import draw_overlay
from samwsss.stages.contracts import (
    Boxer,
    ImageBatch,
    Masker,
    Stage,
    Tagger,
    TagResult,
    TextSegmenter,
)
from samwsss.stages.mapper import TagMapper
from samwsss.stages.merger import MaskMerger
from samwsss.stages.pil_resize import PilResize

logger = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What the pipeline gives for one image.

    Attributes:
        mask: ``(H, W)`` uint8 semantic mask: 0 background, class ids ``1..C``, 255 uncertain.
        detections: the instances (boxes, masks, scores, classes, prompts) on the CPU.
        class_ids: the classes Grounding DINO was prompted with (given labels, or mapped tags).
        tags: zero-shot only: ``{tag: probability}`` of the tagger's tags above threshold.
        tag_sources: zero-shot only: ``{class_id: tags that produced it}``.
    """

    mask: np.ndarray
    detections: Detections
    class_ids: tuple[int, ...]
    tags: dict[str, float] = field(default_factory=dict)
    tag_sources: dict[int, tuple[str, ...]] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    def overlay(self, image: ImageLike, alpha: float = 0.5) -> np.ndarray:
        """The image ``(H, W, 3)`` uint8 with the mask (VOC palette colours) and the boxes
        with their class names and scores drawn over it."""
        return draw_overlay(
            to_rgb_array(image),
            self.mask,
            self.detections,
            alpha=alpha,
            class_names=self.class_names or None,
        )


class _Route:
    """A pipeline route usable on an instance or on the class (which builds the default)."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.__doc__ = method.__doc__
        self.__name__ = method.__name__

    def __get__(self, instance: Pipeline | None, owner: type[Pipeline]) -> Callable[..., Any]:
        if instance is not None:
            return self.method.__get__(instance, owner)
        method = self.method

        def on_default(*args: Any, **kwargs: Any) -> Any:
            # built on the first call, not on attribute access (help(), IDEs, docs)
            return method(owner.default(), *args, **kwargs)

        on_default.__doc__ = method.__doc__
        on_default.__name__ = method.__name__
        return on_default


class Pipeline:
    """The stages of both routes, owned together and moved with one ``.to(device)``.

    Args:
        mapping: the class list, prompts and tag synonyms.
        boxer: a :class:`~samwsss.stages.contracts.Boxer` (Grounding DINO), or a
            :class:`~samwsss.stages.contracts.TextSegmenter` that returns masks itself
            (then ``masker`` is ``None``).
        masker: a :class:`~samwsss.stages.contracts.Masker` (SAM), or ``None`` after a
            text segmenter.
        merger: a :class:`MaskMerger` (default: score rule).
        tagger: a :class:`~samwsss.stages.contracts.Tagger` for the zero-shot route, or
            ``None``.
        tagger_factory: builds the tagger when the zero-shot route first needs it (so a
            text-input user never loads RAM); ignored when ``tagger`` is given.
        mapper: tag -> class mapper for the zero-shot route (default: exact matching).
        batch_size: images per forward batch; halved automatically on CUDA out-of-memory.
            The batch plan (:class:`~samwsss.pipeline.batching.BatchPlan`) derived from it
            sets the stages' own batch limits too.
        config: the settings the stages were built from (recorded in run manifests).

    Example:
        >>> pipe = Pipeline.from_preset("default", mapping="voc").to("cuda")
        >>> result = pipe.text_input("cat.jpg", ["cat"])
        >>> result.mask.shape  # (H, W) uint8
    """

    _default_instance: Pipeline | None = None

    def __init__(
        self,
        mapping: ClassMapping,
        boxer: Boxer | TextSegmenter,
        masker: Masker | None,
        merger: MaskMerger | None = None,
        tagger: Tagger | None = None,
        mapper: Any | None = None,
        batch_size: int = 8,
        config: PipelineConfig | None = None,
        tagger_factory: Callable[[], Tagger] | None = None,
    ) -> None:
        self.plan = BatchPlan.for_device(batch_size, "cpu")  # checks batch_size first
        self.mapping = mapping
        self.boxer = boxer
        self.masker = masker
        self.merger = merger if merger is not None else MaskMerger()
        self.tagger = tagger
        self._tagger_factory = tagger_factory
        if mapper is None:
            mapper = TagMapper(mapping, mode="exact")
        self.mapper = mapper
        self.config = config
        self.device = torch.device("cpu")

    @property
    def batch_size(self) -> int:
        """Images per forward batch (halved for good after a CUDA out-of-memory error)."""
        return self.plan.images

    @property
    def stages(self) -> dict[str, Stage]:
        """The model stages by role (``tagger``, ``boxer``, ``masker``; ``segmenter`` for a
        text segmenter without masker), those present (a tagger built on first use appears
        once built)."""
        boxer_role = "boxer" if self.masker is not None else "segmenter"
        found = {"tagger": self.tagger, boxer_role: self.boxer, "masker": self.masker}
        return {role: stage for role, stage in found.items() if stage is not None}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        device: str | torch.device | None = None,
        with_tagger: bool = True,
    ) -> Pipeline:
        """Build every stage named in ``config`` (downloading default weights on first use).

        Args:
            config: the settings.
            device: where to run; default CUDA when available, else CPU.
            with_tagger: give the pipeline the zero-shot tagger, built when the zero-shot
                route first runs (or on :meth:`require_tagger`); ``False``: text input only.
        """
        mapping = load_mapping(config.mapping)
        boxer: Boxer | TextSegmenter
        masker: Masker | None
        if config.segmenter is not None:
            boxer, masker = build_segmenter(config), None
        else:
            boxer, masker = build_boxer(config), build_masker(config)
        pipe = cls(
            mapping=mapping,
            boxer=boxer,
            masker=masker,
            merger=MaskMerger(config.merge_rule, config.uncertain_margin, config.min_area),
            mapper=TagMapper(mapping, mode=config.tag_match),
            batch_size=config.batch_size,
            config=config,
            tagger_factory=(lambda: build_tagger(config, mapping, boxer)) if with_tagger else None,
        )
        return pipe.to(device)

    @classmethod
    def from_preset(
        cls, name: str = "default", device: str | torch.device | None = None, **overrides: Any
    ) -> Pipeline:
        """Build a preset (``"default"`` or ``"paper"``) with settings overridden by keyword."""
        return cls.from_config(preset(name, **overrides), device=device)

    @classmethod
    def default(cls) -> Pipeline:
        """The default preset, built once and reused by ``Pipeline.text_input(...)`` on the class."""
        if cls._default_instance is None:
            cls._default_instance = cls.from_preset("default")
        return cls._default_instance

    def to(self, device: str | torch.device | None) -> Pipeline:
        """Move every stage to ``device`` (``None``: CUDA when available); returns ``self``.

        Raises:
            ValueError: not a device (e.g. ``"gpu"``), or CUDA asked for but not present.
        """
        self.device = resolve_device(device)
        self.plan = BatchPlan.for_device(self.plan.images, self.device.type)
        for stage in self.stages.values():
            stage.to(self.device)
        return self

    def host_resizes(self, route: str) -> tuple[PilResize, ...]:
        """The PIL resizes the stages of ``route`` compute on the host
        (``image_resize="pil"``): a dataset run has its decode workers compute them ahead
        (see :class:`~samwsss.stages.contracts.ImageBatch` ``prepared``)."""
        stages: list[Stage | None] = [self.boxer, self.masker]
        if route == "zero-shot":
            stages.append(self.require_tagger())
        resizes = [stage.host_resize for stage in stages if stage is not None]
        found = {resize.key: resize for resize in resizes if resize is not None}
        return tuple(found.values())

    def require_tagger(self) -> Tagger:
        """The zero-shot tagger, built now if the pipeline builds it on first use.

        Raises:
            ValueError: the pipeline has no tagger and no way to build one.
        """
        if self.tagger is None and self._tagger_factory is not None:
            self.tagger = self._tagger_factory()
            self.tagger.to(self.device)
        if self.tagger is None:
            raise ValueError(
                "this pipeline has no tagger, so it cannot run zero-shot: build it with "
                "with_tagger=True or give labels to text_input"
            )
        return self.tagger

    # -- routes -------------------------------------------------------------------------
    @_Route
    def text_input(
        self,
        images: ImageLike | Sequence[ImageLike],
        labels: Sequence[LabelLike] | Sequence[Sequence[LabelLike]],
    ) -> PipelineResult | list[PipelineResult]:
        """Masks from image-level labels: labels -> Grounding DINO -> SAM -> merge.

        Args:
            images: one image or a list (paths, PIL images or ``(H, W, 3)`` uint8 arrays).
            labels: class names or indices of the mapping: one list for one image, or one
                list per image.

        Returns:
            One :class:`PipelineResult` for one image, else a list in input order.
        """
        items, single = as_image_list(images)
        class_ids = resolve_labels(labels, len(items), single, self.mapping)
        results = self.run_arrays(items, class_ids)
        return results[0] if single else results

    @_Route
    def zero_shot(
        self, images: ImageLike | Sequence[ImageLike]
    ) -> PipelineResult | list[PipelineResult]:
        """Masks with no labels: tagger -> tags to classes -> Grounding DINO -> SAM -> merge."""
        items, single = as_image_list(images)
        results = self.run_arrays(items, None)
        return results[0] if single else results

    def run_arrays(
        self,
        images: Sequence[ImageLike],
        class_ids: list[tuple[int, ...]] | None,
        keep_masks: bool = True,
        prepared: Sequence[dict[str, np.ndarray]] | None = None,
    ) -> list[PipelineResult]:
        """Run a route in batches of ``batch_size``; a CUDA out-of-memory halves the batch
        size for good and retries.

        Args:
            images: ``(H, W, 3)`` uint8 RGB arrays, paths or PIL images (decoded one batch
                at a time, so long lists of paths do not fill the memory).
            class_ids: per-image class ids for text input, or ``None`` for zero-shot.
            keep_masks: return the instance masks; ``False`` leaves them on the device
                (the semantic mask, boxes and scores still come back), saving a copy of
                ``N x H x W`` per image when nothing needs them.
            prepared: per image, PIL resizes computed ahead (:meth:`host_resizes`).
        """
        if class_ids is None:
            self.require_tagger()
        results: list[PipelineResult] = []
        start = 0
        while start < len(images):
            stop = min(start + self.plan.images, len(images))
            try:
                batch = [to_rgb_array(image) for image in images[start:stop]]
                results.extend(
                    self.run_batch(
                        batch,
                        None if class_ids is None else class_ids[start:stop],
                        keep_masks,
                        None if prepared is None else prepared[start:stop],
                    )
                )
            except torch.cuda.OutOfMemoryError:
                if self.plan.images == 1:
                    raise
                out_of_memory = True
            else:
                out_of_memory = False
                start = stop
            if out_of_memory:  # outside the except block, so the failed batch's tensors are freed
                self.plan = self.plan.halved(self.device.type)
                torch.cuda.empty_cache()
                logger.warning("CUDA out of memory: batch size now %d", self.plan.images)
        return results

    @torch.inference_mode()
    def run_batch(
        self,
        images: list[np.ndarray],
        class_ids: list[tuple[int, ...]] | None,
        keep_masks: bool = True,
        prepared: Sequence[dict[str, np.ndarray]] | None = None,
    ) -> list[PipelineResult]:
        """One forward batch through every stage (no splitting).

        Args:
            images: ``(H, W, 3)`` uint8 RGB arrays, checked and uploaded here once.
            class_ids: per-image class ids (text input), or ``None`` to tag (zero-shot).
            keep_masks, prepared: see :meth:`run_arrays`.
        """
        batch = ImageBatch(images, self.device, prepared)
        tags: list[TagResult] = [TagResult() for _ in images]
        sources: list[dict[int, tuple[str, ...]]] = [{} for _ in images]
        found: list[Detections | None] = [None] * len(images)
        if class_ids is None:
            class_ids, tags, sources, found = self._tag(batch)
        missing = [i for i, det in enumerate(found) if det is None]
        if missing:
            queries = [
                [(cls, self.mapping.classes[cls].prompt) for cls in class_ids[i]] for i in missing
            ]
            subset = batch if len(missing) == len(batch) else batch.select(missing)
            for i, det in zip(
                missing,
                self.boxer.detect(subset, queries, max_rows=self.plan.boxer_rows),
                strict=True,
            ):
                found[i] = det
        detections: list[Detections] = [det for det in found if det is not None]
        if self.masker is not None:
            detections = self.masker.segment(batch, detections, max_images=self.plan.encoder_images)
        masks = self.merger(detections)
        return [
            PipelineResult(
                mask=mask.cpu().numpy(),
                detections=(det if keep_masks else replace(det, masks=None)).cpu(),
                class_ids=tuple(ids),
                tags=tag.as_dict(),
                tag_sources=source,
                class_names=self.mapping.class_names,
            )
            for mask, det, ids, tag, source in zip(
                masks, detections, class_ids, tags, sources, strict=True
            )
        ]

    def _tag(
        self, batch: ImageBatch
    ) -> tuple[
        list[tuple[int, ...]],
        list[TagResult],
        list[dict[int, tuple[str, ...]]],
        list[Detections | None],
    ]:
        """Zero-shot: the classes of each image, its tags, the tags behind each class, and
        the detections a tagger already found (``None`` where the boxer must run)."""
        tags = self.require_tagger().tag(batch)
        class_ids: list[tuple[int, ...]] = []
        sources: list[dict[int, tuple[str, ...]]] = []
        for result in tags:
            if result.class_ids is not None:
                class_ids.append(tuple(sorted(result.class_ids)))
                sources.append(
                    {cls: (tag,) for cls, tag in zip(result.class_ids, result.tags, strict=True)}
                )
            else:
                mapped = self.mapper.map(result)
                class_ids.append(tuple(mapped.class_ids))
                sources.append(dict(mapped.sources))
        return class_ids, tags, sources, [result.detections for result in tags]

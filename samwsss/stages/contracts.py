"""What the stages promise each other: the stage protocols and the values they exchange.

A pipeline is built from stages of four kinds, each a :class:`typing.Protocol` here:

- :class:`Tagger`: images -> one :class:`TagResult` per image (zero-shot route);
- :class:`Boxer`: images + ``(class_id, prompt)`` queries -> boxes as ``Detections``;
- :class:`Masker`: images + boxes -> the same ``Detections`` with masks;
- :class:`TextSegmenter`: images + queries -> ``Detections`` with masks in one stage
  (it takes the place of boxer + masker).

Every stage has a public ``__call__`` that checks what a user hands it, and a trusted
method (``tag``, ``detect``, ``segment``) that the pipeline calls with an
:class:`ImageBatch` it has checked and uploaded once. Every stage names where its
weights came from as a :class:`ModelSource`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from samwsss.detections import Detections
    from samwsss.stages.pil_resize import PilResize

#: One query: ``(class id 1..C, prompt text)``.
Query = tuple[int, str]


@dataclass(frozen=True)
class ModelSource:
    """Where a stage's weights came from, as recorded in run manifests.

    Attributes:
        weights: hub id, URL, local folder or checkpoint file.
        revision: hub revision (branch, tag or commit) when one was asked for, else ``None``.
    """

    weights: str
    revision: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """``{"weights": ..., "revision": ...}`` (JSON-safe)."""
        return {"weights": self.weights, "revision": self.revision}


@dataclass(frozen=True)
class TagResult:
    """What a tagger kept for one image, most probable first.

    Attributes:
        tags: tag texts as the tagger's vocabulary writes them.
        indices: each tag's row in the tagger's vocabulary (0-based).
        probabilities: each tag's score in [0, 1] (RAM: sigmoid of the logit; Grounding
            DINO: best box score), non-increasing.
        class_ids: for taggers whose vocabulary is the dataset's classes: each tag's class
            id ``1..C``; ``None`` when tags still need mapping to classes.
        detections: the boxes a tagger already found for its tagged classes (Grounding
            DINO tagger), so the pipeline does not detect them again; else ``None``.
    """

    tags: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    probabilities: tuple[float, ...] = ()
    class_ids: tuple[int, ...] | None = None
    detections: Detections | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))
        object.__setattr__(self, "probabilities", tuple(float(p) for p in self.probabilities))
        if not len(self.tags) == len(self.indices) == len(self.probabilities):
            raise ValueError(
                f"TagResult needs one index and one probability per tag, got {len(self.tags)} "
                f"tags, {len(self.indices)} indices and {len(self.probabilities)} probabilities"
            )
        if self.class_ids is not None:
            object.__setattr__(self, "class_ids", tuple(int(c) for c in self.class_ids))
            if len(self.class_ids) != len(self.tags):
                raise ValueError(
                    f"TagResult class_ids needs one class per tag, got {len(self.class_ids)} "
                    f"for {len(self.tags)} tags"
                )
        if any(a < b for a, b in pairwise(self.probabilities)):
            raise ValueError("TagResult probabilities must be sorted from most to least probable")

    def __len__(self) -> int:
        return len(self.tags)

    def __contains__(self, tag: object) -> bool:
        return tag in self.tags

    def as_dict(self) -> dict[str, float]:
        """``{tag: probability}`` in order (for JSON output)."""
        return dict(zip(self.tags, self.probabilities, strict=True))

    @classmethod
    def from_scores(
        cls,
        scores: np.ndarray,
        thresholds: np.ndarray | float,
        names: Sequence[str],
    ) -> TagResult:
        """Keep the entries with ``score > threshold`` (strictly), sorted by score.

        Args:
            scores: ``(T,)`` float scores of every vocabulary entry.
            thresholds: ``(T,)`` per-entry thresholds or one float for all.
            names: the ``T`` vocabulary texts.

        Ties in score keep vocabulary order.
        """
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        limits = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), scores.shape)
        if len(names) != scores.shape[0]:
            raise ValueError(f"{scores.shape[0]} scores but {len(names)} vocabulary entries")
        kept = np.flatnonzero(scores > limits)
        order = kept[np.argsort(-scores[kept], kind="stable")]
        return cls(
            tags=tuple(names[i] for i in order),
            indices=tuple(int(i) for i in order),
            probabilities=tuple(float(scores[i]) for i in order),
        )


class ImageBatch:
    """A batch of RGB images checked once, with one upload to the device.

    Args:
        images: ``(H, W, 3)`` uint8 RGB numpy arrays or torch tensors (any device).
        device: where the stages run.

        prepared: per image, PIL resizes already computed (``{PilResize.key: (h, w, 3)
            uint8}``, e.g. by a dataset run's decode workers); a stage that needs one that
            is missing computes it (see :meth:`resized`).

    Attributes:
        host: the images as ``(H, W, 3)`` uint8 CPU tensors (no copy for numpy input).
        device: the stages' device.

    Raises:
        ValueError: ``images`` is not a list of ``(H, W, 3)`` uint8 images; the message
            names the position, what it got and what to pass.
    """

    def __init__(
        self,
        images: Sequence[Any],
        device: torch.device | str = "cpu",
        prepared: Sequence[dict[str, np.ndarray]] | None = None,
    ) -> None:
        import torch

        if isinstance(images, (np.ndarray, torch.Tensor)) or not isinstance(images, Sequence):
            raise ValueError(
                "images must be a list of (H, W, 3) uint8 RGB arrays; for a single image, "
                "wrap it in a list"
            )
        self.device = torch.device(device)
        self._given = tuple(check_image(image, i) for i, image in enumerate(images))
        self.host = tuple(image.cpu() for image in self._given)
        if prepared is not None and len(prepared) != len(self.host):
            raise ValueError(f"{len(prepared)} prepared entries for {len(self.host)} images")
        self._prepared = [dict(p) for p in prepared] if prepared else [{} for _ in self.host]

    def resized(self, index: int, resize: PilResize) -> np.ndarray:
        """Image ``index`` after ``resize``: ``(h, w, 3)`` uint8, computed once per batch."""
        cache = self._prepared[index]
        if resize.key not in cache:
            cache[resize.key] = resize(self.host[index])
        return cache[resize.key]

    def __len__(self) -> int:
        return len(self.host)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of every image."""
        return [(int(image.shape[0]), int(image.shape[1])) for image in self.host]

    @cached_property
    def on_device(self) -> tuple[torch.Tensor, ...]:
        """The images as ``(H, W, 3)`` uint8 tensors on :attr:`device`, uploaded once."""
        return tuple(
            image if image.device == self.device else image.to(self.device, non_blocking=True)
            for image in self._given
        )

    def select(self, positions: Sequence[int]) -> ImageBatch:
        """The images at ``positions`` (already checked; nothing is copied)."""
        subset = ImageBatch.__new__(ImageBatch)
        subset.device = self.device
        subset._given = tuple(self._given[i] for i in positions)
        subset.host = tuple(self.host[i] for i in positions)
        subset._prepared = [self._prepared[i] for i in positions]
        if "on_device" in self.__dict__:
            subset.__dict__["on_device"] = tuple(self.on_device[i] for i in positions)
        return subset

    @classmethod
    def of(cls, images: ImageBatch | Sequence[Any], device: torch.device | str) -> ImageBatch:
        """``images`` as a batch on ``device`` (a batch already on ``device`` is reused)."""
        import torch

        if isinstance(images, ImageBatch) and images.device == torch.device(device):
            return images
        if isinstance(images, ImageBatch):
            return cls(images.host, device, images._prepared)
        return cls(images, device)


def check_image(image: Any, position: int) -> torch.Tensor:
    """One ``(H, W, 3)`` uint8 image as a torch tensor (numpy memory shared, not copied).

    Raises:
        ValueError: anything else; ``position`` names the image in the message.
    """
    import torch

    if isinstance(image, np.ndarray):
        dtype, shape = image.dtype, image.shape
    elif isinstance(image, torch.Tensor):
        dtype, shape = image.dtype, tuple(image.shape)
    else:
        raise ValueError(
            f"images[{position}] is a {type(image).__name__}: give an (H, W, 3) uint8 numpy "
            "array or torch tensor (samwsss.data.images.load_rgb reads files that way)"
        )
    if dtype not in (np.uint8, torch.uint8):
        raise ValueError(
            f"images[{position}] has dtype {dtype}: give uint8 RGB pixels 0..255 "
            "(e.g. samwsss.data.images.load_rgb)"
        )
    if len(shape) != 3 or shape[2] != 3 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(
            f"images[{position}] has shape {tuple(shape)}: give (H, W, 3) RGB, channels last"
        )
    if isinstance(image, np.ndarray):
        image = np.ascontiguousarray(image)
        if not image.flags.writeable:  # torch.from_numpy warns on read-only memory
            image = image.copy()
        return torch.from_numpy(image)
    return image


@runtime_checkable
class Stage(Protocol):
    """What every model stage has: a weights source, a device to move to and its host resize
    (:class:`~samwsss.stages.model_stage.ModelStage` implements them)."""

    @property
    def source(self) -> ModelSource:
        """Where the weights came from."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        ...

    def to(self, device: torch.device | str) -> Any:
        """Move the model to ``device``; returns the stage."""
        ...

    @property
    def host_resize(self) -> PilResize | None:
        """The PIL resize the stage computes on the host (``image_resize="pil"``), so that a
        dataset run's decode workers compute it ahead; ``None`` when it resizes on the
        device."""
        ...


@runtime_checkable
class Tagger(Stage, Protocol):
    """Images -> tags (zero-shot route)."""

    def tag(self, images: ImageBatch) -> list[TagResult]:
        """One :class:`TagResult` per image of a checked batch."""
        ...


@runtime_checkable
class Boxer(Stage, Protocol):
    """Images + per-image ``(class_id, prompt)`` queries -> boxes."""

    def detect(
        self,
        images: ImageBatch,
        queries: Sequence[Sequence[Query]],
        *,
        prompt_mode: str | None = None,
        max_rows: int | None = None,
    ) -> list[Detections]:
        """One ``Detections`` (boxes, scores, class ids, prompts; no masks) per image.

        Args:
            images: a checked batch.
            queries: per image, ``(class_id >= 1, prompt)`` pairs, already normalised.
            prompt_mode: ``"per-class"`` or ``"joint"`` for this call (default: the stage's).
            max_rows: at most this many prompt rows per forward (default: the stage's).
        """
        ...


@runtime_checkable
class Masker(Stage, Protocol):
    """Images + boxes -> the same detections with instance masks."""

    def segment(
        self, images: ImageBatch, detections: Sequence[Detections], *, max_images: int | None = None
    ) -> list[Detections]:
        """The detections with ``masks`` ``(N, H, W)`` bool and ``mask_scores`` set.

        Args:
            images: a checked batch.
            detections: one per image, boxes in that image's pixels.
            max_images: at most this many images per encoder forward (default: the stage's).
        """
        ...


@runtime_checkable
class TextSegmenter(Boxer, Protocol):
    """Images + queries -> detections with masks in one stage (replaces boxer + masker):
    :meth:`Boxer.detect`'s call, whose ``Detections`` carry ``masks`` and ``mask_scores``."""


def check_queries(
    queries: Sequence[Sequence[Query]], count: int, normalize: Callable[[Any], str]
) -> list[list[Query]]:
    """Validate per-image ``(class_id, prompt)`` queries; prompts pass through ``normalize``
    (each stage's own prompt form).

    Raises:
        ValueError: not one list per image, or a query that is not ``(int >= 1, prompt)``;
            the message names the position and the value.
    """
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise ValueError("queries must be a list with one list of (class_id, prompt) per image")
    if len(queries) != count:
        raise ValueError(
            f"got {count} images but {len(queries)} query lists: give one list of "
            "(class_id, prompt) pairs per image (an empty list for none)"
        )
    checked: list[list[Query]] = []
    for image_index, image_queries in enumerate(queries):
        if isinstance(image_queries, (str, bytes)) or not isinstance(image_queries, Sequence):
            raise ValueError(
                f"queries[{image_index}] must be a list of (class_id, prompt) pairs, "
                f"got {image_queries!r}"
            )
        pairs: list[Query] = []
        for query in image_queries:
            if (
                isinstance(query, (str, bytes))
                or not isinstance(query, Sequence)
                or len(query) != 2
            ):
                raise ValueError(
                    f"queries[{image_index}] holds {query!r}: each query is a (class_id, prompt) pair"
                )
            class_id, prompt = query
            if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
                raise ValueError(
                    f"queries[{image_index}] class_id {class_id!r} must be an integer >= 1"
                )
            if int(class_id) < 1:
                raise ValueError(
                    f"queries[{image_index}] class_id {class_id} must be >= 1 (0 is background)"
                )
            pairs.append((int(class_id), normalize(prompt)))
        checked.append(pairs)
    return checked

"""How images are grouped for the models: decided here and nowhere else.

A :class:`BatchPlan` sets, from the pipeline's batch size and device, how many images go
through the pipeline together and how each stage splits that batch for memory: Grounding
DINO caption rows per forward, SAM images per encoder forward. :func:`fixed_grid` cuts a dataset run into batches on a grid that does not depend
on what is already done, so that a resumed run batches images as an uninterrupted one;
a :class:`Shard` is the part of a dataset one process runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from samwsss.checks import check_count

#: ``image id -> (height, width)``, or ``None`` when the size cannot be read.
SizeOf = Callable[[str], "tuple[int, int] | None"]


@dataclass(frozen=True)
class BatchPlan:
    """Batch sizes of one pipeline batch and of each stage inside it (these override the
    stages' own limits when the pipeline calls them).

    Attributes:
        images: images per pipeline batch (halved on CUDA out-of-memory).
        boxer_rows: Grounding DINO ``(image, caption)`` rows per forward: every row of a
            batch in as few forwards as memory allows (4 per image, at least 8).
        encoder_images: SAM images per image-encoder forward (8 on CUDA; 1 on a CPU,
            where batching gains no speed and multiplies activation memory).
    """

    images: int
    boxer_rows: int
    encoder_images: int

    @classmethod
    def for_device(cls, images: int, device_type: str) -> BatchPlan:
        """The plan for ``images`` per batch on a device of type ``"cuda"``, ``"cpu"``, ..."""
        images = check_count("batch_size", images)
        return cls(
            images=images,
            boxer_rows=boxer_rows(images),
            encoder_images=8 if device_type == "cuda" else 1,
        )

    def halved(self, device_type: str) -> BatchPlan:
        """The plan after an out-of-memory error: half the images (at least one)."""
        return BatchPlan.for_device(max(1, self.images // 2), device_type)


def boxer_rows(images: int) -> int:
    """Grounding DINO caption rows per forward for ``images`` per batch (see :class:`BatchPlan`)."""
    return max(8, 4 * images)


def fixed_grid(
    ids: Sequence[str], batch_size: int, skip: set[str], complete: set[str], limit: int | None
) -> tuple[list[list[str]], set[str]]:
    """Batches on a fixed grid over ``ids``, and the ids that need outputs.

    Args:
        ids: the shard's ids in run order.
        batch_size: grid step.
        skip: ids left out of every batch (recorded failures).
        complete: ids whose outputs exist: a grid cell with nothing else to do is dropped,
            a cell with some left runs whole (writing only what is missing).
        limit: at most this many ids needing outputs (``None``: all).
    """
    batches: list[list[str]] = []
    pending: set[str] = set()
    for start in range(0, len(ids), batch_size):
        grid = [image_id for image_id in ids[start : start + batch_size] if image_id not in skip]
        todo = [image_id for image_id in grid if image_id not in complete]
        if not todo:
            continue
        if limit is not None and len(pending) + len(todo) > limit:
            todo = todo[: limit - len(pending)]
            grid = todo
        if grid:
            batches.append(grid)
            pending.update(todo)
        if limit is not None and len(pending) >= limit:
            break
    return batches, pending


def order_by_size(ids: Sequence[str], size_of: SizeOf) -> list[str]:
    """``ids`` sorted by image size (height, width), then id, so that a batch holds images
    of one size (Grounding DINO batches only images of equal resized size exactly).
    Unreadable images (``None``) come first."""

    def key(image_id: str) -> tuple[int, int, str]:
        size = size_of(image_id) or (0, 0)
        return int(size[0]), int(size[1]), image_id

    return sorted(ids, key=key)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a dataset: ids ``index, index + count, ...``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """``"i/n"`` -> Shard; ``None`` -> the torchrun rank/world size, or 0/1."""
        if text is None:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            return cls(int(os.environ.get("RANK", "0")), world) if world > 1 else cls()
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError as error:
            raise ValueError(f"--shard must look like 0/4 (index/count), got {text!r}") from error
        return cls(index, count)

    def select(self, ids: list[str]) -> list[str]:
        """This shard's ids (deterministic, disjoint across shards, covering all ids)."""
        return ids[self.index :: self.count]

    @property
    def suffix(self) -> str:
        """File-name suffix for per-shard files (empty for an unsharded run)."""
        return "" if self.count == 1 else f"-shard-{self.index}-of-{self.count}"

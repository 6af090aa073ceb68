"""Normalise what users pass to the pipeline: paths, PIL images or uint8 arrays."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from samwsss.data.images import load_rgb
from samwsss.mapping import ClassMapping
from samwsss.storage import is_location

#: A path, an fsspec URL (``s3://...``) or UPath, a PIL image or an array.
ImageLike = str | os.PathLike | np.ndarray | Any  # Any: PIL.Image.Image, upath.UPath
LabelLike = str | int


def is_single_image(images: Any) -> bool:
    """Whether ``images`` is one image (path or URL, PIL image, (H, W, 3) array) rather than
    many."""
    if is_location(images):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim in (2, 3)
    return _is_pil(images)


def _is_pil(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(value, Image.Image)


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """One image as an ``(H, W, 3)`` uint8 RGB array.

    Accepts a file path, a PIL image (any mode) or a uint8 array of shape ``(H, W)``,
    ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped).

    Raises:
        ValueError: for other dtypes or shapes, naming what was given and what to pass.
    """
    if is_location(image):  # a path, an fsspec URL or a UPath
        return load_rgb(image)  # type: ignore[arg-type]
    if _is_pil(image):
        from PIL import ImageOps

        converted = ImageOps.exif_transpose(image).convert("RGB")  # type: ignore[arg-type]
        return np.array(converted, dtype=np.uint8)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(
                f"image arrays must be uint8 RGB (H, W, 3), got dtype {image.dtype}; "
                "scale floats to 0..255 and cast with .astype(np.uint8)"
            )
        if image.ndim == 2:
            return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return np.ascontiguousarray(image[:, :, :3])
        raise ValueError(
            f"image arrays must have shape (H, W, 3) (RGB) or (H, W), got {image.shape}; "
            "channels-first tensors need .transpose(1, 2, 0)"
        )
    raise ValueError(
        f"cannot use {type(image).__name__} as an image: pass a file path, a PIL image or "
        "a uint8 numpy array (H, W, 3)"
    )


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> tuple[list[ImageLike], bool]:
    """``images`` (one or many) as a list, undecoded, and whether one image was given.

    Raises:
        ValueError: ``images`` is neither an image nor a sequence of images.
    """
    if is_single_image(images):
        return [images], True
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    if not isinstance(images, Sequence) or isinstance(images, (bytes, bytearray)):
        raise ValueError(
            f"images must be an image or a list of images, got {type(images).__name__}"
        )
    return list(images), False


def resolve_labels(
    labels: Sequence[LabelLike] | Sequence[Sequence[LabelLike]],
    count: int,
    single: bool,
    mapping: ClassMapping,
) -> list[tuple[int, ...]]:
    """Per-image class ids (sorted, unique, ``1..C``) from class names or indices.

    Args:
        labels: for one image, a list of names/indices (or one name); for many, one such
            list per image.
        count: number of images.
        single: whether one image was given.
        mapping: the class list names are looked up in.

    Raises:
        ValueError: an unknown class name (the message lists the valid names) or a count
            that does not match the images.
    """
    if single:
        per_image: list[Any] = [[labels] if isinstance(labels, (str, int)) else labels]
    else:
        if isinstance(labels, (str, int)) or len(labels) != count:
            given = 1 if isinstance(labels, (str, int)) else len(labels)
            raise ValueError(
                f"labels must hold one list of class names per image: got {given} for {count} images"
            )
        per_image = list(labels)
        if any(isinstance(item, (str, int)) for item in per_image):
            raise ValueError(
                f"for {count} images give one list of class names per image, e.g. "
                "[['cat'], ['dog', 'person']]; got a flat list"
            )
    out: list[tuple[int, ...]] = []
    for item in per_image:
        names = [item] if isinstance(item, (str, int)) else list(item)
        out.append(tuple(sorted({mapping.index_of(name) for name in names})))
    return out

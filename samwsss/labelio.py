"""Read and write single-channel PNG label maps.

Writes use the VOC colour palette (mode ``P``): pixel values are class indices, 255 stays
255 (shown white). Reads accept palette PNGs and plain 8-bit grayscale PNGs (what the
survey authors' scripts wrote); both give the stored indices, never colours.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from samwsss.atomic import atomic_write_bytes
from samwsss.classes import voc_palette
from samwsss.images import ImageReadError
from samwsss.storage import AnyPath, as_path, open_binary

_PALETTE = voc_palette()


class LabelReadError(ImageReadError):
    """A label PNG that cannot be opened or decoded (corrupt, truncated, too large)."""


def read_label_png(path: str | os.PathLike[str] | AnyPath) -> np.ndarray:
    """Read a label map.

    Args:
        path: a palette (``P``) or 8-bit grayscale (``L``) PNG; a local path or an fsspec
            location (:func:`samwsss.storage.as_path`).

    Returns:
        ``(H, W)`` uint8 array of class indices (255 = ignore).

    Raises:
        ValueError: if the file is an RGB/RGBA colour image or a 16-bit PNG, which cannot be
            read as indices without guessing; the message says how to convert it.
        LabelReadError (a ``ValueError``): the file is not an image, truncated or too large.
        FileNotFoundError: if ``path`` does not exist.
    """
    source = as_path(path)
    try:
        with open_binary(source) as handle, Image.open(handle) as image:
            mode = image.mode
            if mode in ("P", "L"):
                return np.array(image, dtype=np.uint8)
            if mode in ("I;16", "I;16B", "I", "I;16L"):
                array = np.array(image)
                if array.size and int(array.max()) > 255:
                    raise ValueError(
                        f"{path}: 16-bit label PNG with values up to {int(array.max())}; "
                        "label maps must hold class indices 0..255 in an 8-bit PNG"
                    )
                return array.astype(np.uint8)
            if mode == "1":
                return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as error:
        raise LabelReadError(f"{path}: label PNG too large to decode safely ({error})") from error
    except (OSError, SyntaxError, EOFError) as error:  # UnidentifiedImageError is an OSError
        raise LabelReadError(f"{path}: cannot decode label PNG ({error})") from error
    raise ValueError(
        f"{path}: label PNG has mode {mode!r}; expected a palette ('P') or 8-bit grayscale "
        "('L') PNG of class indices, not a colour rendering"
    )


def encode_label_png(label: np.ndarray, palette: bool = True) -> bytes:
    """Encode an ``(H, W)`` uint8 label map as PNG bytes (palette ``P`` or plain ``L``)."""
    array = np.asarray(label)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"label map must be a non-empty 2-D (H, W) array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise ValueError(
            f"label maps hold class indices, got dtype {array.dtype}; round and cast with "
            ".astype(np.uint8)"
        )
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"label values must be in 0..255, got {array.min()}..{array.max()} "
                f"({array.dtype}); cast class indices to uint8"
            )
        array = array.astype(np.uint8)
    image = Image.fromarray(array, mode="L")
    if palette:
        image = image.convert("P")
        image.putpalette(_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def write_label_png(
    path: str | os.PathLike[str] | AnyPath,
    label: np.ndarray,
    palette: bool = True,
    fsync: bool = True,
) -> AnyPath:
    """Atomically write an ``(H, W)`` uint8 label map as a PNG.

    Args:
        path: destination; parent folders are created (an fsspec location is written as
            one object).
        label: class indices, 255 = ignore.
        palette: ``True`` (default) writes a VOC-palette ``P`` PNG that image viewers show
            in colour; ``False`` writes a plain grayscale index PNG like the authors' scripts.
        fsync: force the file to disk before the rename (see :func:`samwsss.atomic.atomic_open`).

    Returns:
        The written path.
    """
    target = as_path(path)
    atomic_write_bytes(target, encode_label_png(label, palette=palette), fsync=fsync)
    return target

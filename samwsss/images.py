"""Robust image decoding: the image suffixes, the decode error and :func:`load_rgb`.

A base-layer module (it imports only :mod:`samwsss.storage`), shared by the datasets, the
label-map reader, the pipeline and training; :mod:`samwsss.data.images` re-exports it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samwsss.storage import AnyPath, as_path, is_folder, is_url, open_binary

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class ImageReadError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def load_rgb(path: str | os.PathLike[str] | AnyPath) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array.

    ``path`` is a local path or an fsspec URL / remote location (``s3://...``; see
    :func:`samwsss.storage.as_path`); a remote image is fetched whole in one request.
    EXIF orientation is applied; grayscale, palette, RGBA (alpha dropped, composited on
    nothing), CMYK and 16-bit images are converted to 8-bit RGB.

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt (the
            message names the path or URL).
        ValueError: a URL whose file system package is not installed.
    """
    target = (
        Path(path) if isinstance(path, (str, os.PathLike)) and not is_url(path) else as_path(path)
    )
    source: Path | IO[bytes]
    if isinstance(target, Path):
        if target.is_symlink() and not target.exists():
            raise ImageReadError(f"{target}: dangling symbolic link (to {os.readlink(target)})")
        if target.is_dir():
            raise ImageReadError(f"{target}: is a folder, not an image file")
        source = target
    else:
        source = io.BytesIO(_read_remote(target))
    try:
        with Image.open(source) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if array.max(initial=0) > 255 else 255.0
                gray = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
            if image.mode != "RGB":
                image = image.convert("RGB")
            array = np.array(
                image, dtype=np.uint8
            )  # a writable copy (torch.from_numpy warns otherwise)
    except FileNotFoundError as error:
        raise ImageReadError(f"{target}: file not found") from error
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"{target}: image too large to decode safely ({error}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"{target}: cannot decode image ({error})") from error
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"{target}: decoded to unexpected shape {array.shape}")
    return np.ascontiguousarray(array)


def _read_remote(target: AnyPath) -> bytes:
    """The bytes of the remote image ``target`` (one request; a folder is only looked for
    when the read fails, so a readable image costs nothing more)."""
    try:
        with open_binary(target) as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError) as error:
        if is_folder(target):
            raise ImageReadError(f"{target}: is a folder, not an image file") from error
        raise ImageReadError(f"{target}: file not found") from error
    except OSError as error:
        raise ImageReadError(f"{target}: cannot read image ({error})") from error

"""Robust image decoding shared by every dataset and the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class ImageReadError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array.

    EXIF orientation is applied; grayscale, palette, RGBA (alpha dropped, composited on
    nothing), CMYK and 16-bit images are converted to 8-bit RGB.

    Raises:
        ImageReadError: the file is missing, not an image, truncated or corrupt.
    """
    target = Path(path)
    if target.is_symlink() and not target.exists():
        raise ImageReadError(f"{target}: dangling symbolic link (to {os.readlink(target)})")
    if target.is_dir():
        raise ImageReadError(f"{target}: is a folder, not an image file")
    try:
        with Image.open(target) as image:
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

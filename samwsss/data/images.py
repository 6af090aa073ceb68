"""Image decoding for the datasets: a re-export of :mod:`samwsss.images` (its old home)."""

from __future__ import annotations

from samwsss.images import IMAGE_SUFFIXES, ImageReadError, load_rgb

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "load_rgb"]

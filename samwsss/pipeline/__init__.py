"""The pipeline: stages owned together and the two routes, in memory (dataset runs, which
write run folders, are :mod:`samwsss.runs`).

:class:`Pipeline` and :class:`PipelineResult` are imported on first use, so that reading
settings (:mod:`samwsss.pipeline.config`) loads no torch: the run commands check their
options before paying for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from samwsss.pipeline.config import PRESETS, PipelineConfig, preset

if TYPE_CHECKING:
    from samwsss.pipeline.pipeline import Pipeline, PipelineResult

__all__ = ["PRESETS", "Pipeline", "PipelineConfig", "PipelineResult", "preset"]

_LAZY = ("Pipeline", "PipelineResult")


def __getattr__(name: str) -> Any:
    """:class:`Pipeline` and :class:`PipelineResult`, imported on first use."""
    if name in _LAZY:
        from samwsss.pipeline import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

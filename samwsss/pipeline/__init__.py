"""The pipeline: stages owned together, the two routes, dataset runs."""

from samwsss.pipeline.config import PRESETS, PipelineConfig, preset
from samwsss.pipeline.pipeline import Pipeline, PipelineResult

__all__ = ["PRESETS", "Pipeline", "PipelineConfig", "PipelineResult", "preset"]

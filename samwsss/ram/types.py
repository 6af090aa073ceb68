"""What a tagger returns for one image: :class:`~samwsss.stages.contracts.TagResult`."""

from __future__ import annotations

from samwsss.stages.contracts import TagResult

__all__ = ["TagResult"]

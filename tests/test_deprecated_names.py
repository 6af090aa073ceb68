"""Old import paths keep working, with a DeprecationWarning where the name moved."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = ("config", "data", "distributed", "guard", "logs", "optim", "predict", "state",
         "train", "transforms")  # fmt: skip


@pytest.mark.parametrize("name", MOVED)
def test_samwsss_deeplab_modules_are_the_training_modules(name: str) -> None:
    sys.modules.pop(f"samwsss.deeplab.{name}", None)
    with pytest.warns(DeprecationWarning, match=f"samwsss.training.{name}"):
        old = importlib.import_module(f"samwsss.deeplab.{name}")
    assert old is importlib.import_module(f"samwsss.training.{name}")


def test_old_names_of_the_config_the_network_and_the_architectures() -> None:
    sys.modules.pop("samwsss.deeplab.config", None)
    with pytest.warns(DeprecationWarning):
        from samwsss.deeplab.config import DeepLabConfig
    from samwsss.deeplab.archs import resolve_arch
    from samwsss.deeplab.model import build_deeplab
    from samwsss.segnets.deeplab import build_deeplab as current
    from samwsss.segnets.registry import resolve_arch as current_resolve
    from samwsss.training.config import TrainConfig

    assert DeepLabConfig is TrainConfig
    assert build_deeplab is current and resolve_arch is current_resolve

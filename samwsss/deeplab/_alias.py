"""Make ``samwsss.deeplab.<name>`` the module ``samwsss.training.<name>``."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old_name: str) -> None:
    """Replace the module ``old_name`` (``samwsss.deeplab.X``) by ``samwsss.training.X``."""
    new_name = "samwsss.training." + old_name.rsplit(".", 1)[1]
    warnings.warn(
        f"{old_name} is now {new_name}; the old name will be removed in a later release",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old_name] = importlib.import_module(new_name)

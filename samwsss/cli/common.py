"""Helpers shared by the subcommands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click


@contextlib.contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn a user error (``ValueError``, a missing file, a failed download) into a short
    message and exit code 1 instead of a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:  # e.g. weights that cannot be downloaded while offline
        raise click.ClickException(
            f"{error}\n(if the weights cannot be downloaded here, pass local paths: "
            "--boxer/--masker folders or files, --tagger a .pth file)"
        ) from error

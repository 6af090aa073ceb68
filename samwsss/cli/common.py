"""Helpers shared by the subcommands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click


@contextlib.contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn a user error (``ValueError``, missing file) into a one-line message and exit 1."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error

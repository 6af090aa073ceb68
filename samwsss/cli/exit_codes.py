"""Exit codes of the run commands (``text-input``, ``zero-shot``), as the README lists them.

A script can tell "every image done" from "done, some images unreadable" from "failed"
without parsing the output. Usage errors keep click's code 2.
"""

from __future__ import annotations

import enum
import os


class ExitCode(enum.IntEnum):
    """What a run command's exit status means."""

    DONE = 0
    """Every image of the run is done (or was left for later by ``--max-images``)."""
    FAILED = 1
    """An error stopped the command, or no image of the run succeeded."""
    USAGE = 2
    """A bad option or argument (click's own code)."""
    DONE_WITH_UNREADABLE = 3
    """The run finished, but some images were unreadable (``failures/failures.jsonl``)."""


def under_torchrun() -> bool:
    """Whether this process is one of torchrun's workers (its elastic agent sets
    ``TORCHELASTIC_RUN_ID``): the agent stops every worker when one exits non-zero."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def run_exit_code(complete: int, failed_total: int) -> ExitCode:
    """The exit code of a run folder in which ``complete`` images have every output and
    ``failed_total`` are recorded as unreadable (this shard's images, all invocations).

    ``FAILED`` when images were tried and none succeeded; ``DONE_WITH_UNREADABLE`` when
    some are unreadable, except under torchrun (see :func:`under_torchrun`), where a
    shard's code would stop the other shards, so it is ``DONE`` and the caller warns.
    """
    if failed_total > 0 and complete == 0:
        return ExitCode.FAILED
    if failed_total > 0 and not under_torchrun():
        return ExitCode.DONE_WITH_UNREADABLE
    return ExitCode.DONE

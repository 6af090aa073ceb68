"""The trainer's divergence guard: stop a run whose loss explodes, before it saves anything.

A run that diverges (a learning rate too high, random initial weights at a recipe tuned for
pretrained ones, bad or empty masks) otherwise trains on to the end and overwrites its last
good checkpoint with NaN weights. :class:`DivergenceGuard` looks at the losses the trainer
already reads back to the CPU (the mean of each log window, averaged over the processes)
and raises :class:`TrainingDiverged` when one is

* not finite (NaN or infinite): always, or
* above ``factor`` times the *reference* loss, the first finite positive logged loss of the
  run (``factor``: the config's ``divergence_factor``, 1e3 by default; 0 or ``None`` turns
  this ratio check off).

The trainer checks at every log row and, between log rows, before each validation and
checkpoint, so a checkpoint is never written from a diverged state. Every process compares
the same all-reduced value, so all of them stop at the same iteration. The reference is
saved in the training checkpoints (:meth:`DivergenceGuard.state`), so a resumed run
compares with the same one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_DIVERGENCE_FACTOR", "DivergenceGuard", "TrainingDiverged"]

#: ``divergence_factor``'s default: a logged loss 1000 x the first one stops the run.
DEFAULT_DIVERGENCE_FACTOR = 1e3

#: What usually makes a segmenter's training diverge (part of the error message).
LIKELY_CAUSES = (
    "a learning rate too high (lower --lr / --set lr=...), training from random weights "
    "(--init none: use pretrained weights or a lower learning rate and warmup_iterations), "
    "or bad or empty masks (check --masks)"
)


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite or exploded; the run stopped without saving.

    Attributes:
        iteration: iterations completed when the guard stopped the run.
        first_iteration: first iteration (1-based) of the logged window that diverged.
        loss: the window's mean loss (every process).
        reference: the run's reference loss (``None``: none yet).
        reference_iteration: the iteration whose logged loss is the reference.
        factor: the ratio that was exceeded (``None`` for a non-finite loss).
        checkpoint: the last good checkpoint (``None``: none was written).
        checkpoint_iteration: its iteration.
    """

    def __init__(
        self,
        message: str,
        *,
        iteration: int = 0,
        first_iteration: int = 0,
        loss: float = math.nan,
        reference: float | None = None,
        reference_iteration: int | None = None,
        factor: float | None = None,
        checkpoint: Path | None = None,
        checkpoint_iteration: int | None = None,
    ) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.first_iteration = first_iteration
        self.loss = loss
        self.reference = reference
        self.reference_iteration = reference_iteration
        self.factor = factor
        self.checkpoint = checkpoint
        self.checkpoint_iteration = checkpoint_iteration


class DivergenceGuard:
    """Compare each logged loss with the run's reference; raise when training diverged.

    Args:
        factor: stop when a logged loss exceeds ``factor x reference``; ``None`` or 0 turns
            the ratio check off (non-finite losses stop the run all the same).
        state: :meth:`state` of a resumed run's checkpoint (its reference loss), if any.

    Raises:
        ValueError: a negative or non-finite ``factor``.
    """

    def __init__(self, factor: float | None, state: Mapping[str, Any] | None = None) -> None:
        if factor is not None and (not math.isfinite(factor) or factor < 0):
            raise ValueError(
                f"divergence_factor must be a number >= 0 (0 or null: no ratio check), got {factor}"
            )
        self.factor = factor if factor else None
        self.reference: float | None = None
        self.reference_iteration: int | None = None
        if state and state.get("reference") is not None:
            self.reference = float(state["reference"])
            self.reference_iteration = int(state.get("reference_iteration") or 0)
        self.checkpoint: Path | None = None
        self.checkpoint_iteration: int | None = None

    def state(self) -> dict[str, Any]:
        """The reference loss and its iteration, for a checkpoint (plain floats and ints)."""
        return {"reference": self.reference, "reference_iteration": self.reference_iteration}

    def saved(self, checkpoint: Path, iteration: int) -> None:
        """Record the last checkpoint written (named by the error as the one to go back to)."""
        self.checkpoint = checkpoint
        self.checkpoint_iteration = iteration

    def check(self, loss: float, iteration: int, first_iteration: int) -> None:
        """Check the mean loss of iterations ``first_iteration .. iteration`` (1-based).

        The first finite positive loss checked becomes the reference.

        Raises:
            TrainingDiverged: ``loss`` is not finite, or above ``factor x reference``.
        """
        if not math.isfinite(loss):
            self._stop(loss, iteration, first_iteration, f"loss {loss} is not finite")
        if self.reference is None:
            if loss > 0:
                self.reference = loss
                self.reference_iteration = iteration
            return
        if self.factor is not None and loss > self.factor * self.reference:
            self._stop(
                loss,
                iteration,
                first_iteration,
                f"loss {loss:.4g} is {loss / self.reference:.3g} x the reference loss "
                f"{self.reference:.4g} (the first logged one, iteration "
                f"{self.reference_iteration}), above divergence_factor {self.factor:g}",
            )

    def _stop(self, loss: float, iteration: int, first_iteration: int, what: str) -> None:
        """Raise :class:`TrainingDiverged` with the full message (``what``: the check)."""
        where = f"iteration {iteration}"
        if first_iteration < iteration:
            where += f" (mean loss of iterations {first_iteration}..{iteration})"
        if not math.isfinite(loss):
            what += (
                f" (reference loss {self.reference:.4g}, iteration {self.reference_iteration})"
                if self.reference is not None
                else " (no reference loss yet)"
            )
        if self.checkpoint is not None:
            kept = (
                f"{self.checkpoint} (iteration {self.checkpoint_iteration}) is the last good "
                "checkpoint, kept as it was"
            )
            again = "train into a new --out"
        else:
            kept = "no checkpoint had been written yet"
            again = "train again"
        if math.isfinite(loss):
            advice = (
                f"{again}, or --resume with a larger divergence_factor if such a rise is "
                "expected (0 turns this ratio check off)"
                if self.checkpoint is not None
                else f"{again} (a larger divergence_factor, or 0, if such a rise is expected)"
            )
        else:
            advice = f"{again}; a non-finite loss always stops the run"
        message = (
            f"training diverged at {where}: {what}. Likely causes: {LIKELY_CAUSES}. Stopped "
            f"without saving anything from the diverged state: {kept}. Fix the cause and "
            f"{advice}"
        )
        raise TrainingDiverged(
            message,
            iteration=iteration,
            first_iteration=first_iteration,
            loss=loss,
            reference=self.reference,
            reference_iteration=self.reference_iteration,
            factor=self.factor if math.isfinite(loss) else None,
            checkpoint=self.checkpoint,
            checkpoint_iteration=self.checkpoint_iteration,
        )

"""Torch settings shared by the tests of every stage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch CPU ops on one thread inside the block, restoring the setting after.

    The test machine's few cores are shared: with several intra-op threads contending
    (OpenMP threads spinning), a tiny model's step gets 5-20x slower than on one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

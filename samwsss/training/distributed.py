"""The trainer's process group: join it from ``torchrun``'s environment, wrap the model in
``DistributedDataParallel``, leave the group at the end.

Outside ``torchrun`` (``WORLD_SIZE`` unset or 1) every helper here is a no-op and the
context says rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# The trainer's records share one logger name, whichever of its modules writes them.
logger = logging.getLogger("samwsss.training.train")


@dataclass
class DistributedContext:
    """This process's place in the job.

    Attributes:
        rank, world_size, local_rank: from ``torchrun``'s environment (0, 1, 0 otherwise).
        owns_group: this trainer created the process group (and destroys it at the end).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.enabled:
            dist.barrier()

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum ``tensor`` over every process, in place (no-op alone)."""
        if self.enabled:
            dist.all_reduce(tensor)


def init_distributed(use_cuda: bool) -> DistributedContext:
    """Join the process group described by ``torchrun``'s environment, if any.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``
    through ``init_method="env://"``); backend NCCL when ``use_cuda`` else gloo. An already
    initialised group is reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if use_cuda else "gloo"
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    logger.info("joined %s process group: rank %d of %d", backend, rank, world_size)
    return DistributedContext(rank, world_size, local_rank, True)


def close_distributed(ctx: DistributedContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it for ``ctx``."""
    if ctx.owns_group:
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(use_cuda: bool) -> Iterator[DistributedContext]:
    """:func:`init_distributed` for the ``with`` block, :func:`close_distributed` after it
    (also when the block raises)."""
    ctx = init_distributed(use_cuda)
    try:
        yield ctx
    finally:
        close_distributed(ctx)


def wrap_for_training(model: nn.Module, ctx: DistributedContext, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when several processes train, else itself.

    The wrapper uses gradient bucket views and, on CUDA, ``device_ids=[device.index]``.
    The frozen-BN buffers are identical on every rank; DDP's default buffer sync of them
    (about 0.4 MB for ResNet-101) is left on.
    """
    if not ctx.enabled:
        return model
    ddp_kwargs: dict[str, Any] = {"gradient_as_bucket_view": True}
    if device.type == "cuda":
        ddp_kwargs["device_ids"] = [device.index]
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)

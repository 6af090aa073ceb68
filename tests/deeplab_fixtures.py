"""Synthetic data and tiny model settings for the DeepLabV2 tests.

``ShapesDataset`` is a small in-memory :class:`SegmentationDataset`: each image is a noisy
grey background with one or two filled shapes, each class drawn in its own colour
(1 = red rectangle, 2 = green disc, 3 = blue triangle), so a tiny network can learn it in
tens of iterations. ``write_shapes_folder`` writes the same images to disk as JPEG/PNG.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from samwsss.data.base import SegmentationDataset
from samwsss.training.config import TrainConfig
from tests.torch_fixtures import one_torch_thread  # noqa: F401  (re-exported)

SHAPE_CLASSES = ("background", "rectangle", "disc", "triangle")
_COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (50, 70, 230)}


def make_shape_sample(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(H, W, 3)`` uint8 image and its ``(H, W)`` uint8 mask (0..3)."""
    image = rng.normal(120, 25, size=(height, width, 3)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    classes = rng.choice([1, 2, 3], size=int(rng.integers(1, 3)), replace=False)
    for cls in classes:
        size = int(rng.integers(min(height, width) // 3, min(height, width) // 2 + 1))
        top = int(rng.integers(0, height - size))
        left = int(rng.integers(0, width - size))
        if cls == 1:
            region = (yy >= top) & (yy < top + size) & (xx >= left) & (xx < left + size)
        elif cls == 2:
            radius = size / 2
            region = (yy - top - radius) ** 2 + (xx - left - radius) ** 2 <= radius**2
        else:
            rel_y = yy - top
            region = (rel_y >= 0) & (rel_y < size) & (np.abs(xx - left - size / 2) <= rel_y / 2)
        noise = rng.normal(0, 12, size=(int(region.sum()), 3))
        image[region] = (np.asarray(_COLOURS[int(cls)]) + noise).clip(0, 255).astype(np.uint8)
        mask[region] = cls
    return image, mask


class ShapesDataset(SegmentationDataset):
    """``count`` synthetic images of coloured shapes with masks (kept in memory).

    Args:
        count: number of images.
        size: ``(H, W)``; ``sizes`` (a list) gives per-image sizes instead.
        seed: generator seed.
    """

    kind = "folder"
    class_names = SHAPE_CLASSES

    def __init__(
        self,
        count: int = 8,
        size: tuple[int, int] = (48, 48),
        seed: int = 0,
        sizes: list[tuple[int, int]] | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        dims = sizes if sizes is not None else [size] * count
        self._ids = [f"img_{i:03d}" for i in range(len(dims))]
        self._items = {
            i: make_shape_sample(rng, h, w) for i, (h, w) in zip(self._ids, dims, strict=True)
        }

    @property
    def ids(self) -> list[str]:
        return self._ids

    def image_path(self, image_id: str) -> Path:
        return Path(f"/nonexistent/{image_id}.png")

    def labels(self, image_id: str) -> tuple[int, ...]:
        mask = self._items[image_id][1]
        return tuple(int(v) for v in np.unique(mask) if 0 < v < 255)

    @property
    def has_gt(self) -> bool:
        return True

    def gt(self, image_id: str) -> np.ndarray:
        return self._items[image_id][1].copy()

    def load_image(self, image_id: str) -> np.ndarray:
        return self._items[image_id][0].copy()


def write_shapes_folder(root: str | os.PathLike[str], dataset: ShapesDataset) -> tuple[Path, Path]:
    """Write ``root/images/<id>.png`` and ``root/masks/<id>.png``; return both folders."""
    from PIL import Image

    from samwsss.labelio import write_label_png

    base = Path(root)
    images, masks = base / "images", base / "masks"
    images.mkdir(parents=True, exist_ok=True)
    for image_id in dataset.ids:
        Image.fromarray(dataset.load_image(image_id)).save(images / f"{image_id}.png")
        write_label_png(masks / f"{image_id}.png", dataset.gt(image_id))
    return images, masks


def tiny_config(**overrides: object) -> TrainConfig:
    """A config with a 1-1-1-1 Bottleneck backbone of width 8 for fast CPU tests."""
    values: dict[str, object] = {
        "backbone": "custom",
        "backbone_layers": [1, 1, 1, 1],
        "width_per_group": 8,
        "init": "none",
        "atrous_rates": [1, 2, 3, 4],
        "iterations": 4,
        "batch_size": 2,
        "crop_size": 40,
        "lr": 0.01,
        "workers": 0,
        "log_every": 1,
        "checkpoint_every": 1000,
        "device": "cpu",
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for the gloo rendezvous)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: The ``model`` section of a YAML ``--config`` for a tiny DeepLabV2 (CLI tests).
TINY_MODEL_SECTION = {
    "backbone": "custom",
    "backbone_layers": [1, 1, 1, 1],
    "width_per_group": 8,
    "atrous_rates": [1, 2],
}


def as_rank(rank: int, world_size: int, port: int) -> None:
    """Make this (forked) process rank ``rank`` of a local gloo group on ``port``, as
    torchrun would (environment variables), on one torch thread."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)


def global_batch_gradients(
    config: TrainConfig, rank: int, world_size: int
) -> dict[str, torch.Tensor]:
    """Gradients of iteration 0's loss (the trainer's ``arch_forward_loss``) for this process.

    Builds the seeded tiny model, takes this rank's slots of the global batch from the
    trainer's sample stream, wraps the model in DDP when ``world_size > 1`` (the process
    group must exist), and returns the (all-reduced) parameter gradients.
    """
    from torch import nn

    from samwsss.segnets.deeplab import DeepLabArch, build_deeplab
    from samwsss.training.data import AugmentedSegmentationData, SampleStream
    from samwsss.training.train import arch_forward_loss
    from samwsss.training.transforms import TrainAugmentation

    dataset = ShapesDataset(6, (40, 40), seed=2)
    torch.manual_seed(config.seed)
    model = build_deeplab(
        dataset.num_classes,
        backbone="custom",
        layers=config.backbone_layers,
        width_per_group=config.width_per_group,
        atrous_rates=config.atrous_rates,
        init="none",
    )
    wrapped: nn.Module = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    augmentation = TrainAugmentation(
        crop_size=config.crop_size, scale_min=config.scale_min, scale_max=config.scale_max
    )
    data = AugmentedSegmentationData(dataset, augmentation, seed=config.seed)
    stream = SampleStream(
        len(dataset),
        int(config.batch_size or 1),
        1,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
    )
    keys = stream.batch_keys(0)
    images, labels = zip(*(data[key] for key in keys), strict=True)
    loss = arch_forward_loss(
        DeepLabArch.from_config(config),
        wrapped,
        torch.stack(images),
        torch.stack(labels),
        config,
        device=torch.device("cpu"),
        world_size=world_size,
    )
    loss.backward()
    return {
        name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None
    }


def ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Entry point of one spawned gloo process: gradients, then a short DDP training run."""
    from samwsss.training.train import Trainer

    as_rank(rank, world_size, port)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        config = ddp_test_config(batch_size=2)
        grads = global_batch_gradients(config, rank, world_size)
        torch.save(grads, Path(out_dir) / f"grads_rank{rank}.pt")
        Trainer(config, ShapesDataset(6, (40, 40), seed=2), Path(out_dir) / "ddp").run()
    finally:
        dist.destroy_process_group()


def ddp_test_config(batch_size: int) -> TrainConfig:
    """The config both the DDP processes (per-process batch) and the reference run use.

    Seed 3 makes the two ranks' crops hold different numbers of valid (non-padded) pixels
    in both iterations, so a per-process loss mean would not match the global one.
    """
    return tiny_config(
        iterations=2,
        batch_size=batch_size,
        crop_size=32,
        scale_min=0.5,
        scale_max=1.5,
        checkpoint_every=2,
        log_every=1,
        seed=3,
    )


def run_two_ranks(worker: Any, tmp_path: Path, seconds: float = 120) -> None:
    """Run ``worker(rank, 2, port, tmp_path)`` in two forked gloo ranks; kill them and fail
    after ``seconds`` (the ranks did not stop together)."""
    context = mp.start_processes(
        worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False, start_method="fork"
    )
    deadline = time.monotonic() + seconds
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the ranks did not stop together (deadlock)")

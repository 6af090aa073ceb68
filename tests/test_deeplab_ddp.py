"""Two-process DDP (gloo, CPU) equals one process with the whole global batch."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from samwsss.training.data import AugmentedSegmentationData, SampleStream
from samwsss.training.train import Trainer
from samwsss.training.transforms import TrainAugmentation
from tests.deeplab_fixtures import (
    ShapesDataset,
    ddp_test_config,
    ddp_worker,
    free_port,
    global_batch_gradients,
    one_torch_thread,
)


def _valid_pixels_per_rank(iteration: int) -> list[int]:
    config = ddp_test_config(batch_size=2)
    augmentation = TrainAugmentation(
        crop_size=config.crop_size, scale_min=config.scale_min, scale_max=config.scale_max
    )
    data = AugmentedSegmentationData(
        ShapesDataset(6, (40, 40), seed=2), augmentation, seed=config.seed
    )
    counts = []
    for rank in (0, 1):
        stream = SampleStream(6, 2, 2, seed=config.seed, rank=rank, world_size=2)
        counts.append(sum(int((data[key][1] != 255).sum()) for key in stream.batch_keys(iteration)))
    return counts


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_process_gloo_matches_single_process(tmp_path) -> None:
    # the ranks see different numbers of valid pixels: a per-rank mean loss would not match
    assert all(len(set(_valid_pixels_per_rank(it))) == 2 for it in (0, 1))
    # fork, not spawn: a spawned child re-imports torch/torchvision (10-20 s on a busy
    # machine); the children never touch CUDA and set up gloo themselves
    mp.start_processes(
        ddp_worker,
        args=(2, free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    with one_torch_thread():
        reference = global_batch_gradients(ddp_test_config(batch_size=4), rank=0, world_size=1)
        single = Trainer(
            ddp_test_config(batch_size=4), ShapesDataset(6, (40, 40), seed=2), tmp_path / "single"
        ).run()
    grads = [torch.load(tmp_path / f"grads_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert grads[0].keys() == reference.keys()
    for name, expected in reference.items():
        torch.testing.assert_close(grads[0][name], expected, rtol=1e-4, atol=1e-7, msg=name)
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=0, msg=name)
    ddp_state = torch.load(tmp_path / "ddp" / "model_final.pt", weights_only=True)
    single_state = torch.load(single.final_model, weights_only=True)
    assert ddp_state["world_size"] == 2 and single_state["world_size"] == 1
    for name, expected in single_state["model"].items():
        torch.testing.assert_close(
            ddp_state["model"][name], expected, rtol=1e-4, atol=1e-6, msg=name
        )
    ddp_log = (tmp_path / "ddp" / "train_log.csv").read_text().splitlines()
    single_log = (tmp_path / "single" / "train_log.csv").read_text().splitlines()
    for row_ddp, row_single in zip(ddp_log[1:], single_log[1:], strict=True):
        loss_ddp, loss_single = float(row_ddp.split(",")[1]), float(row_single.split(",")[1])
        assert loss_ddp == pytest.approx(loss_single, rel=1e-4)

"""DeepLabV2 inference: multi-scale + flip averaging, original sizes, PNG output."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from samwsss.labelio import read_label_png, write_label_png
from samwsss.training.predict import (
    InferenceOptions,
    LoadedModel,
    load_checkpoint_model,
    predict_dataset,
    predict_labels,
    predict_probabilities,
)
from samwsss.training.prediction_identity import IDENTITY_NAME, state_dict_sha256
from samwsss.training.train import Trainer
from tests.deeplab_fixtures import ShapesDataset, one_torch_thread, tiny_config

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TTA = InferenceOptions(scales=(0.5, 0.75, 1.0, 1.25, 1.5), flip=True)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> LoadedModel:
    """A tiny model trained for a few iterations, restored from its checkpoint."""
    with one_torch_thread():
        run = tmp_path_factory.mktemp("run")
        result = Trainer(tiny_config(iterations=3), ShapesDataset(4, (40, 40)), run).run()
        return load_checkpoint_model(result.final_model, "cpu")


def test_multiscale_flip_probabilities_have_original_size(trained: LoadedModel) -> None:
    shapes = ShapesDataset(2, (37, 53), seed=4)
    images = torch.from_numpy(np.stack([shapes.load_image(i) for i in ("img_000", "img_001")]))
    probs = predict_probabilities(trained.model, images, mean=MEAN, std=STD, options=TTA)
    assert probs.shape == (2, 4, 37, 53) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 37, 53))
    single = predict_probabilities(trained.model, images, mean=MEAN, std=STD)
    assert not torch.allclose(single, probs)  # the augmentation changes the average


def test_flip_averaging_is_flip_equivariant(trained: LoadedModel) -> None:
    image = torch.from_numpy(ShapesDataset(1, (41, 45), seed=5).load_image("img_000"))[None]
    options = InferenceOptions(scales=(0.75, 1.0), flip=True)
    probs = predict_probabilities(trained.model, image, mean=MEAN, std=STD, options=options)
    mirrored = predict_probabilities(
        trained.model, image.flip(2), mean=MEAN, std=STD, options=options
    )
    torch.testing.assert_close(mirrored, probs.flip(-1), rtol=1e-4, atol=1e-5)


def test_mixed_sizes_grouped_equal_one_at_a_time(trained: LoadedModel) -> None:
    dataset = ShapesDataset(sizes=[(40, 40), (33, 47), (40, 40), (29, 31)], seed=6)
    images = [dataset.load_image(i) for i in dataset.ids]
    batched = predict_labels(trained.model, images, mean=MEAN, std=STD, options=TTA)
    assert [p.shape for p in batched] == [im.shape[:2] for im in images]
    assert all(p.dtype == np.uint8 and p.max() < 4 for p in batched)
    for image, label in zip(images, batched, strict=True):
        alone = predict_labels(trained.model, [image], mean=MEAN, std=STD, options=TTA)[0]
        assert np.array_equal(alone, label)
    with pytest.raises(ValueError, match="uint8 RGB"):
        predict_labels(trained.model, [images[0][..., 0]], mean=MEAN, std=STD)


def test_predict_dataset_writes_palette_pngs_and_resumes(trained: LoadedModel, tmp_path) -> None:
    dataset = ShapesDataset(sizes=[(30, 50), (44, 36), (40, 40)], seed=7)
    summary = predict_dataset(
        trained, dataset, tmp_path / "pred", options=TTA, batch_size=2, workers=0
    )
    assert (summary.written, summary.skipped) == (3, 0)
    for image_id in dataset.ids:
        path = tmp_path / "pred" / f"{image_id}.png"
        with Image.open(path) as png:
            assert png.mode == "P"
        label = read_label_png(path)
        assert label.shape == dataset.load_image(image_id).shape[:2]
    again = predict_dataset(trained, dataset, tmp_path / "pred", options=TTA, workers=0)
    assert (again.written, again.skipped) == (0, 3)


def test_prediction_folder_identity_resumes_refuses_and_overwrites(
    trained: LoadedModel, tmp_path
) -> None:
    dataset = ShapesDataset(sizes=[(30, 34), (28, 36), (32, 32)], seed=8)
    out = tmp_path / "pred"
    first = predict_dataset(trained, dataset, out, options=TTA, workers=0, ids=dataset.ids[:2])
    assert (first.written, first.skipped) == (2, 0)
    identity = json.loads((out / IDENTITY_NAME).read_text())
    assert identity["checkpoint"]["iteration"] == 3
    assert identity["checkpoint"]["path"] == str(trained.path)
    assert identity["checkpoint"]["weights_sha256"] == trained.weights_sha256
    assert identity["inference"] == {
        "scales": list(TTA.scales),
        "flip": True,
        "bf16": False,
        "palette": True,
    }
    # the same run resumes: only the missing image is predicted
    resumed = predict_dataset(trained, dataset, out, options=TTA, workers=0)
    assert (resumed.written, resumed.skipped) == (1, 2)
    stamp = (out / "img_000.png").stat().st_mtime_ns
    # other scales / flip, other weights, another dataset: refused, naming --overwrite
    with pytest.raises(ValueError, match=r"inference scales: folder .*--overwrite"):
        predict_dataset(trained, dataset, out, workers=0)
    with pytest.raises(ValueError, match="inference flip"):
        predict_dataset(
            trained, dataset, out, options=InferenceOptions(scales=TTA.scales), workers=0
        )
    retrained = copy.deepcopy(trained.model)
    with torch.no_grad():
        retrained.head.branches[0].bias.add_(1.0)
    other_model = LoadedModel(
        retrained, trained.config, trained.class_names, 7, trained.device, path=tmp_path / "b.pt"
    )
    with pytest.raises(ValueError, match=r"checkpoint weights: folder .*iteration 3.*iteration 7"):
        predict_dataset(other_model, dataset, out, options=TTA, workers=0)
    with pytest.raises(ValueError, match="dataset ids_sha256"):
        predict_dataset(trained, ShapesDataset(4, (30, 30), seed=9), out, options=TTA, workers=0)
    on_disk = ShapesDataset(sizes=[(30, 34), (28, 36), (32, 32)], seed=8)
    on_disk.root = tmp_path / "photos"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"dataset root: folder None, now .*photos"):
        predict_dataset(trained, on_disk, out, options=TTA, workers=0)
    with pytest.raises(ValueError, match="inference palette"):
        predict_dataset(trained, dataset, out, options=TTA, workers=0, palette=False)
    assert (out / "img_000.png").stat().st_mtime_ns == stamp  # refusals touch nothing
    # --overwrite clears the folder's predictions and records the new run
    stale = out / "img_002.png"
    redone = predict_dataset(
        other_model, dataset, out, options=TTA, workers=0, overwrite=True, ids=dataset.ids[:1]
    )
    assert (redone.written, redone.skipped) == (1, 0)
    assert not stale.exists()  # an image of the old run not redone yet is gone too
    saved = json.loads((out / IDENTITY_NAME).read_text())
    assert saved["checkpoint"]["iteration"] == 7
    assert saved["checkpoint"]["weights_sha256"] != trained.weights_sha256
    finished = predict_dataset(other_model, dataset, out, options=TTA, workers=0)
    assert (finished.written, finished.skipped) == (2, 1)


def test_prediction_folder_without_identity_is_refused(trained: LoadedModel, tmp_path) -> None:
    dataset = ShapesDataset(2, (24, 24), seed=10)
    out = tmp_path / "pred"
    write_label_png(out / "img_001.png", np.zeros((24, 24), np.uint8))
    (out / "unrelated.png").write_bytes(b"not ours")
    with pytest.raises(ValueError, match=r"not empty \(img_001.png\) but .*no prediction_ident"):
        predict_dataset(trained, dataset, out, workers=0)
    summary = predict_dataset(trained, dataset, out, workers=0, overwrite=True)
    assert (summary.written, summary.skipped) == (2, 0)
    assert (out / "unrelated.png").read_bytes() == b"not ours"
    # a moved checkpoint with the same weights is the same model: resume, and keep its path
    moved = LoadedModel(
        trained.model,
        trained.config,
        trained.class_names,
        trained.iteration,
        trained.device,
        path=tmp_path / "elsewhere.pt",
    )
    assert predict_dataset(moved, dataset, out, workers=0).skipped == 2


def test_checkpoint_and_class_checks(trained: LoadedModel, tmp_path) -> None:
    other = ShapesDataset(1)
    other.class_names = ("background", "a", "b")  # type: ignore[misc]
    with pytest.raises(ValueError, match="predicts 4 classes"):
        predict_dataset(trained, other, tmp_path / "x", workers=0)
    plain = tmp_path / "plain.pt"
    torch.save(trained.model.state_dict(), plain)
    with pytest.raises(ValueError, match="not a samwsss DeepLabV2 checkpoint"):
        load_checkpoint_model(plain)
    with pytest.raises(ValueError, match="no such file"):
        load_checkpoint_model(tmp_path / "missing.pt")
    assert trained.iteration == 3 and trained.class_names == ShapesDataset.class_names
    assert trained.weights_sha256 == state_dict_sha256(trained.model.state_dict())

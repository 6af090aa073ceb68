"""Runner pieces that need no model: shards, batch planning, temporaries, failures, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samwsss.pipeline.batching import Shard, fixed_grid, order_by_size
from samwsss.runs.failures import read_failures
from samwsss.runs.folder import RunFolder
from samwsss.runs.lock import RunConflictError
from samwsss.runs.runner import RunOptions, _size_reader, overlay_sample, prepare_folder
from samwsss.runs.writers import OutputSpec


def test_shards_are_disjoint_and_cover_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"im{i}" for i in range(11)]
    parts = [Shard(i, 3).select(ids) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids) and not set(parts[0]) & set(parts[1])
    assert Shard.parse("1/3") == Shard(1, 3)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert Shard.parse(None) == Shard(2, 4)
    for bad in ("3/3", "x", "1-2", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_plan_reruns_the_interrupted_batch_whole(tmp_path: Path) -> None:
    spec = OutputSpec(root=tmp_path, instances=True)
    ids = ["a", "b", "c", "d", "e"]
    (tmp_path / "masks").mkdir()
    (tmp_path / "instances").mkdir()
    for done in ("a", "b", "c"):  # killed after a, b, c of the batch [c, d]
        (tmp_path / "masks" / f"{done}.png").write_bytes(b"x")
        (tmp_path / "instances" / f"{done}.json").write_bytes(b"{}")
    (tmp_path / "instances" / "d.json").write_bytes(b"{}")  # d was cut off before its mask
    complete = spec.complete_ids(ids)
    assert complete == {"a", "b", "c"} == {i for i in ids if spec.is_complete(i)}
    batches, pending = fixed_grid(ids, 2, set(), complete, None)
    assert batches == [["c", "d"], ["e"]] and pending == {"d", "e"}
    batches, pending = fixed_grid(ids, 2, {"e"}, complete, None)
    assert batches == [["c", "d"]] and pending == {"d"}
    batches, pending = fixed_grid(ids, 2, set(), complete, 1)
    assert pending == {"d"} and batches == [["c", "d"]]
    assert OutputSpec(root=tmp_path / "new").complete_ids(["p"]) == set()
    batches, pending = fixed_grid(["p", "q", "r"], 3, set(), set(), 2)
    assert pending == {"p", "q"} and batches == [["p", "q"]]


def test_only_this_shards_temporaries_are_swept(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    mine = masks / ".tmp-a.png.x1"
    theirs = masks / ".tmp-b.png.x2"
    mine.write_bytes(b"")
    theirs.write_bytes(b"")
    RunFolder(tmp_path).remove_temporaries(["masks"], {"a"})
    assert not mine.exists() and theirs.exists()


def test_failures_survive_a_torn_last_line(tmp_path: Path) -> None:
    folder = tmp_path / "failures"
    folder.mkdir()
    (folder / "failures-shard-0-of-2.jsonl").write_text(
        json.dumps({"image_id": "x", "reason": "corrupt"}) + "\n" + '{"image_id": "y", "rea'
    )
    (folder / "failures-shard-1-of-2.jsonl").write_text(
        json.dumps({"image_id": "z", "reason": "cut"}) + "\n"
    )
    assert read_failures(tmp_path) == {"x": "corrupt", "z": "cut"}


def test_folder_checks(tmp_path: Path) -> None:
    identity = {"route": "text-input"}
    foreign = tmp_path / "foreign"
    (foreign / "masks").mkdir(parents=True)
    with pytest.raises(RunConflictError, match="holds no samwsss run"):
        prepare_folder(RunOptions("text-input", foreign), identity, set())
    run = tmp_path / "run"
    prepare_folder(RunOptions("text-input", run), identity, set())
    with pytest.raises(RunConflictError, match="cannot be combined with sharding"):
        prepare_folder(
            RunOptions("zero-shot", run, shard=Shard(0, 2), overwrite=True),
            {"route": "zero-shot"},
            set(),
        )
    with pytest.raises(RunConflictError, match="route: folder text-input, now zero-shot.*--resume"):
        prepare_folder(RunOptions("zero-shot", run), {"route": "zero-shot"}, set())
    with pytest.raises(ValueError, match="route must be one of"):
        RunOptions("zeroshot", run)


def test_overlay_sample_is_spread_and_stable() -> None:
    ids = [str(i) for i in range(100)]
    sample = overlay_sample(ids, 5)
    assert sample == {"0", "25", "50", "74", "99"} and overlay_sample(ids, 0) == frozenset()


def test_images_are_ordered_by_size_so_batches_share_a_size(tmp_path: Path) -> None:
    from PIL import Image

    from samwsss.data import open_dataset

    sizes = {"a": (30, 40), "b": (20, 20), "c": (30, 40), "d": (20, 20), "e": (25, 10)}
    for name, (height, width) in sizes.items():
        Image.new("RGB", (width, height)).save(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    dataset = open_dataset(tmp_path)
    expected = ["broken", "b", "d", "e", "a", "c"]
    assert order_by_size(list(dataset.ids), _size_reader(dataset, list(dataset.ids))) == expected
    # the same folder in an object store: its headers are read all at once, in threads
    import uuid

    import fsspec

    url = f"memory://samwsss-sizes-{uuid.uuid4().hex}/imgs"
    for path in tmp_path.iterdir():
        fsspec.filesystem("memory").pipe_file(f"{url}/{path.name}", path.read_bytes())
    remote = open_dataset(url)
    reader = _size_reader(remote, list(remote.ids))
    assert reader("a") == (30, 40) and reader("broken") is None
    assert order_by_size(list(remote.ids), reader) == expected

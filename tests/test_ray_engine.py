"""``--engine ray``: the same outputs, failures and resume as the local runner, on a local
Ray cluster the tests start (2 CPUs, no dashboard) with tiny models.

Both engines run with ``--threads 1``: float reductions depend on torch's thread count,
and outputs are byte-identical for the same settings."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from samwsss.cli import cli
from samwsss.cli.exit_codes import ExitCode
from tests.data_fixtures import make_coco_tree, make_voc_tree
from tests.forked_runs import (
    CORRUPT_ID,
    KILLABLE_CLI,
    failure_ids,
    leftovers,
    output_hashes,
    run_args,
)
from tests.ray_cluster import local_ray_cluster, source_pythonpath
from tests.test_cli_run import _bad_image_folder, _outputs

#: The exit code of a run whose data hold an unreadable image (the kill tree's, a bomb).
UNREADABLE = ExitCode.DONE_WITH_UNREADABLE

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with local_ray_cluster():
        yield


@pytest.fixture(scope="module")
def models(models: list[str]) -> list[str]:
    """The tiny models on one torch thread (the local reference uses the same)."""
    return [*models, "--threads", "1"]


RAY = ["--engine", "ray", "--ray-actors", "1", "--ray-decode-tasks", "1"]


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc_tree(tmp_path_factory.mktemp("voc"))


def _voc_args(voc: Path, out: Path | str, models: list[str]) -> list[str]:
    return [
        "text-input", "--data", str(voc), "--split", "train_aug", "--out", str(out),
        "--plain", "--instances", "--overlays", "2", "--workers", "0", *models,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def local_voc_run(voc: Path, models: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "voc"
    result = _run(_voc_args(voc, out, models))
    assert result.exit_code == 0, result.output
    return out


def test_ray_outputs_identical_to_local(
    ray_cluster: None, voc: Path, local_voc_run: Path, models: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    result = _run([*_voc_args(voc, out, models), *RAY])
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output
    local = _outputs(local_voc_run)
    assert any(name.startswith("masks_plain/") for name in local)
    assert any(name.startswith("instances/") for name in local)
    assert _outputs(out) == local
    # the same run identity: the local folder's config resumes under ray as nothing to do
    assert (out / "config.yaml").read_text() == (local_voc_run / "config.yaml").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"images": 3, "complete": 3, "failed": 0, "remaining": 0}
    engine = manifest["environment"]["engine"]
    assert engine["name"] == "ray" and engine["actors"] == 1 and engine["device"] == "cpu"
    assert engine["cluster"]["CPU"] == 2.0
    local_manifest = json.loads((local_voc_run / "manifest.json").read_text())
    assert local_manifest["environment"]["engine"] == {"name": "local"}
    evaluation = json.loads((out / "evaluation.json").read_text())
    expected = json.loads((local_voc_run / "evaluation.json").read_text())
    for key in ("predictions", "elapsed_s"):
        evaluation.pop(key), expected.pop(key)
    assert evaluation == expected


def test_ray_resumes_a_local_runs_folder(
    ray_cluster: None, voc: Path, local_voc_run: Path, models: list[str], tmp_path: Path
) -> None:
    """The same identity under both engines: ray finishes a local run's folder, writing
    only the outputs that are missing."""
    import shutil

    out = tmp_path / "resumed"
    shutil.copytree(local_voc_run, out)
    removed = sorted((out / "masks").glob("*.png"))[0]
    removed.unlink()
    (out / "instances" / f"{removed.stem}.json").unlink()
    rerun = _run([*_voc_args(voc, out, models), *RAY])
    assert rerun.exit_code == 0, rerun.output
    assert "1 images processed, 2 already done" in rerun.output
    assert _outputs(out) == _outputs(local_voc_run)


def test_ray_failures_logged_like_local(
    ray_cluster: None, tmp_path: Path, models: list[str]
) -> None:
    folder = _bad_image_folder(tmp_path)
    args = [
        "text-input", "--data", str(folder), "--labels", str(tmp_path / "labels.json"),
        "--mapping", "voc", "--workers", "0", "--instances", "--plain", "--overlays", "3",
        *models,
    ]  # fmt: skip
    local = _run([*args, "--out", str(tmp_path / "local")])
    assert local.exit_code == UNREADABLE, local.output
    # each actor writes its own images' outputs (one machine: --out is shared)
    remote = _run([*args, "--out", str(tmp_path / "ray"), *RAY, "--ray-writes", "actors"])
    assert remote.exit_code == UNREADABLE, remote.output

    def failures(out: Path) -> list[dict[str, str]]:
        lines = (out / "failures" / "failures.jsonl").read_text().splitlines()
        return sorted((json.loads(line) for line in lines), key=lambda f: f["image_id"])

    assert [f["image_id"] for f in failures(tmp_path / "ray")] == ["corrupt", "truncated"]
    assert failures(tmp_path / "ray") == failures(tmp_path / "local")
    outputs = _outputs(tmp_path / "ray")
    assert any(name.startswith("overlays/") for name in outputs)
    assert outputs == _outputs(tmp_path / "local")


def test_ray_engine_rejects_bad_settings() -> None:
    from samwsss.runs.ray_engine import RayEngine

    with pytest.raises(ValueError, match="actors"):
        RayEngine(actors=0)
    with pytest.raises(ValueError, match="gpus_per_actor"):
        RayEngine(gpus_per_actor=-1)
    with pytest.raises(ValueError, match="whole number"):
        RayEngine(gpus_per_actor=1.5)
    with pytest.raises(ValueError, match="writes must be one of auto, driver, actors"):
        RayEngine(writes="workers")
    from samwsss.storage import as_path

    assert RayEngine().writer_of(Path("/tmp/x")) == "driver"
    assert RayEngine().writer_of(as_path("memory://b/run")) == "driver"  # the driver's memory
    assert RayEngine(writes="actors").writer_of(Path("/tmp/x")) == "actors"
    assert RayEngine(gpus_per_actor=0.5).actor_device == "cuda"


def test_resources_the_cluster_cannot_hold_are_named() -> None:
    from samwsss.runs.ray_engine import RayEngine, _check_resources_message

    cluster = {"CPU": 2.0, "GPU": 1.0}
    assert _check_resources_message(RayEngine(actors=1, decode_cpus=1.0), cluster) is None
    message = _check_resources_message(RayEngine(actors=2, gpus_per_actor=1.0), cluster)
    assert message is not None
    assert "3 CPUs (2 actor(s) x 1 + 1 for a decode task) but the cluster has 2" in message
    assert "2 GPUs (2 actor(s) x 1) but the cluster has 1" in message
    assert "--ray-actors" in message
    assert _check_resources_message(RayEngine(actors=2, gpus_per_actor=0.5), cluster) is not None
    fits = RayEngine(actors=2, gpus_per_actor=0.5, cpus_per_actor=0.5)
    assert _check_resources_message(fits, cluster) is None


def test_ray_object_store_out_round_trips(
    ray_cluster: None, voc: Path, local_voc_run: Path, models: list[str], tmp_path: Path
) -> None:
    """The driver writes: a memory:// folder (this process's) holds the same outputs."""
    import fsspec

    url = f"memory://samwsss-ray-{uuid.uuid4().hex}/run"
    result = _run([*_voc_args(voc, url, models), *RAY])
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output
    fs = fsspec.filesystem("memory")
    root = "/" + url.removeprefix("memory://")
    for name in fs.find(root):
        target = tmp_path / "copy" / name[len(root) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fs.cat_file(name))
    assert _outputs(tmp_path / "copy") == _outputs(local_voc_run)
    assert not (tmp_path / "copy" / ".lock").exists()


def test_ray_zero_shot_identical_to_local(
    ray_cluster: None, tmp_path: Path, models: list[str]
) -> None:
    coco = make_coco_tree(tmp_path)
    args = [
        "zero-shot", "--data", str(coco / "val2014"), "--tagger", "grounding", "--instances",
        "--workers", "0", *models,
    ]  # fmt: skip
    local = _run([*args, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    # file:// URLs name the same local folders
    args[2] = f"file://{coco / 'val2014'}"
    remote = _run([*args, "--out", f"file://{tmp_path / 'ray'}", *RAY])
    assert remote.exit_code == 0, remote.output
    outputs = _outputs(tmp_path / "ray")
    assert any(name.startswith("instances/") for name in outputs)
    assert outputs == _outputs(tmp_path / "local")


@pytest.mark.parametrize(
    ("writes", "point"),
    [("driver", "commit:3"), ("actors", "failure:1")],
    ids=["driver-writes", "actors-write"],
)
def test_a_killed_ray_run_resumes_to_the_same_outputs(
    ray_cluster: None,
    kill_tree: Path,
    kill_reference: Path,
    models: list[str],
    tmp_path: Path,
    writes: str,
    point: str,
) -> None:
    """The driver (a separate process attached to the test's cluster) is SIGKILLed: after
    its third committed file when it writes, after it logs the unreadable image of the
    first batch when the actors write (that batch's other image is written by then, the
    second batch may be written too); the same command run again gives the same files."""
    import subprocess

    from samwsss.testing.killpoints import KILL_AT

    out = tmp_path / "killed"
    args = [*run_args(kill_tree, out, models), *RAY, "--ray-writes", writes]
    env = {
        **os.environ,
        KILL_AT: point,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "PYTHONPATH": source_pythonpath(),
    }
    killed = subprocess.run(
        [*KILLABLE_CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / ".lock" / "shard-0-of-1.json").is_file()
    assert not (out / "manifest.json").exists()
    written = [p for sub in ("masks", "masks_plain", "instances", "overlays")
               for p in (out / sub).glob("[!.]*")]  # fmt: skip
    if writes == "driver":
        assert 3 <= len(written) < len(_outputs(kill_reference))
    # (the actors run ahead of the driver: they may have written every image by then)
    resumed = _run(args)
    assert resumed.exit_code == UNREADABLE, resumed.output
    assert output_hashes(out) == output_hashes(kill_reference)
    assert failure_ids(out) == [CORRUPT_ID]
    assert leftovers(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["environment"]["engine"]["writes"] == writes

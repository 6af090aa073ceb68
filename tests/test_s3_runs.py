"""Runs against S3 through the real s3fs, served by a local moto server (no network).

The dataset is uploaded to a bucket; ``--data s3://...`` and ``--out s3://...`` then go
through s3fs as a user's would (listings, single-object puts, deletes, the lease lock):
the masks, instances and overlays equal a local run's, a rerun resumes from the bucket's
listing, a run killed part-way resumes to the same objects, and Ray actors write their
images' objects themselves. Skipped without s3fs and moto (both in the dev extras).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from samwsss.cli import cli
from samwsss.cli.exit_codes import ExitCode
from samwsss.testing.killpoints import KILL_AT
from tests.forked_runs import (
    CORRUPT_ID,
    fork_cli,
    output_hashes,
    run_args,
    wait_exit,
)
from tests.ray_cluster import local_ray_cluster

#: The exit code of a run whose data hold an unreadable image (the kill tree's, a bomb).
UNREADABLE = ExitCode.DONE_WITH_UNREADABLE

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
pytest.importorskip("boto3")

BUCKET = "samwsss-test"
PER_IMAGE = ("masks/", "masks_plain/", "instances/", "overlays/")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free local port, with the environment pointing at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def _threads(torch_threads_restored: None) -> None:
    """Runs here use one torch thread; restored after the module."""


@pytest.fixture(scope="module")
def data_url(s3: dict[str, str], kill_tree: Path) -> str:
    """The kill kill_tree uploaded to the bucket."""
    import boto3

    client = boto3.client("s3")
    for path in sorted(kill_tree.rglob("*")):
        if path.is_file():
            client.put_object(
                Bucket=BUCKET, Key=f"voc/{path.relative_to(kill_tree)}", Body=path.read_bytes()
            )
    return f"s3://{BUCKET}/voc"


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _s3_args(data_url: str, out: str, models: list[str]) -> list[str]:
    args = run_args(Path("unused"), out, models)
    args[args.index("--data") + 1] = data_url
    return args


def _bucket_hashes(prefix: str) -> dict[str, str]:
    """SHA-256 of every object under ``prefix`` (relative keys)."""
    import boto3

    client = boto3.client("s3")
    hashes = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            hashes[item["Key"][len(prefix) :]] = hashlib.sha256(body).hexdigest()
    return hashes


def _per_image(hashes: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in hashes.items() if key.startswith(PER_IMAGE)}


def _read(key: str) -> bytes:
    import boto3

    return bytes(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_an_s3_run_equals_the_local_run_and_resumes_from_the_bucket(
    data_url: str, kill_reference: Path, models: list[str]
) -> None:
    out = f"s3://{BUCKET}/runs/plain"
    result = _run(_s3_args(data_url, out, models))
    assert result.exit_code == UNREADABLE, result.output
    assert "3 images processed" in result.output and "1 unreadable" in result.output
    objects = _bucket_hashes("runs/plain/")
    assert _per_image(objects) == _per_image(output_hashes(kill_reference))
    assert not any(key.startswith(".lock/") for key in objects)  # the lease removed
    failures = _read("runs/plain/failures/failures.jsonl").decode().splitlines()
    assert [json.loads(line)["image_id"] for line in failures] == [CORRUPT_ID]
    evaluation = json.loads(_read("runs/plain/evaluation.json"))
    expected = json.loads((kill_reference / "evaluation.json").read_text())
    assert evaluation["miou"] == expected["miou"]
    manifest = json.loads(_read("runs/plain/manifest.json"))
    assert manifest["counts"] == {"images": 4, "complete": 3, "failed": 1, "remaining": 0}

    again = _run(_s3_args(data_url, out, models))
    assert again.exit_code == UNREADABLE, again.output
    assert "0 images processed, 3 already done" in again.output
    assert _per_image(_bucket_hashes("runs/plain/")) == _per_image(objects)


def test_a_killed_s3_run_resumes_to_the_same_objects(
    data_url: str, kill_reference: Path, models: list[str], tmp_path: Path
) -> None:
    out = f"s3://{BUCKET}/runs/killed"
    args = _s3_args(data_url, out, models)
    pid = fork_cli(args, tmp_path / "killed.log", {KILL_AT: "commit:3"})
    assert wait_exit(pid) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    left = _bucket_hashes("runs/killed/")
    assert ".lock/shard-0-of-1.json" in left and "manifest.json" not in left
    assert 3 <= len(_per_image(left)) < len(_per_image(output_hashes(kill_reference)))
    resumed = _run(args)
    assert resumed.exit_code == UNREADABLE, resumed.output
    objects = _bucket_hashes("runs/killed/")
    assert _per_image(objects) == _per_image(output_hashes(kill_reference))
    assert not any(key.startswith(".lock/") for key in objects)


def test_ray_actors_write_their_objects_to_s3(
    s3: dict[str, str], data_url: str, kill_reference: Path, models: list[str]
) -> None:
    """--out s3://: the actors (other processes, reaching the bucket themselves) write."""
    pytest.importorskip("ray.data")
    out = f"s3://{BUCKET}/runs/ray"
    engine = ["--engine", "ray", "--ray-actors", "1", "--ray-decode-tasks", "1"]
    with local_ray_cluster(env_vars=s3):
        result = _run([*_s3_args(data_url, out, models), *engine])
    assert result.exit_code == UNREADABLE, result.output
    objects = _bucket_hashes("runs/ray/")
    assert _per_image(objects) == _per_image(output_hashes(kill_reference))
    manifest = json.loads(_read("runs/ray/manifest.json"))
    assert manifest["environment"]["engine"]["writes"] == "actors"  # auto, resolved

"""Run a dataset's planned batches on a Ray cluster (``--engine ray``).

The plan is the local runner's: :func:`samwsss.runs.runner.run_dataset` decides the
identity, the lock, the folder, the order, the fixed batch grid and what to resume; this
engine only executes the planned batches, as a Ray Data plan::

    planned batches (one row each) -> decode on CPU tasks -> map_batches on actors that
    each hold one Pipeline (models loaded once per actor) -> results to the driver

One row is one planned batch, and every ``map_batches`` takes one row per call, so a
forward batch holds exactly the images the local runner puts together (images of one
size): the outputs are byte-identical.

Who writes (:attr:`RayEngine.writes`): by default the driver, for a local ``--out``:
actors return each image's mask, detections (on the CPU) and tags, and the driver writes
them with the same atomic writers as a local run, so the folder needs no storage shared
between nodes. For an object store the actors write their own images' outputs (the same
writers: one object per file), so the write load spreads over the cluster and masks never
travel to the driver; they return only which images they wrote. Either way the driver
alone appends the failure log and writes the manifest, and an image counts as complete
only once all its files exist, so a killed job resumes the same way.

Ray is imported only when this engine runs (``pip install 'samwsss[ray]'``); the rest of
the local runner is imported with this module.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import samwsss
from samwsss.data.base import SegmentationDataset
from samwsss.pipeline.config import PipelineConfig
from samwsss.pipeline.pipeline import Pipeline
from samwsss.runs.runner import (
    DecodeDataset,
    RunPlan,
    progress_bar,
    run_decoded,
    unreadable_reason,
)
from samwsss.runs.writers import OutputSpec, OutputWriter
from samwsss.storage import AnyPath

logger = logging.getLogger(__name__)

__all__ = ["WRITE_MODES", "RayEngine"]

#: Who writes a ray run's outputs (see :attr:`RayEngine.writes`).
WRITE_MODES = ("auto", "driver", "actors")


@dataclass
class RayEngine:
    """Executes planned batches with Ray Data: CPU decode tasks, then a pool of actors
    that each hold one :class:`~samwsss.pipeline.pipeline.Pipeline`.

    Attributes:
        address: the cluster to use (``ray.init(address=...)``); ``None``: a running
            cluster if there is one (``RAY_ADDRESS`` or a local one), else start one here.
            Ignored when Ray is already initialised in this process.
        actors: pipeline actors (each loads the models once).
        gpus_per_actor: GPUs each actor reserves; fractions share a GPU (``0.5``: two
            actors per GPU); ``0``: actors run on the CPU.
        cpus_per_actor: CPUs each actor reserves (fractions allowed).
        decode_tasks: CPU decode tasks running at once (image decoding and the stages'
            PIL resizes, as the local runner's ``--workers``).
        decode_cpus: CPUs each decode task reserves (fractions allowed).
        device: the actors' torch device; default ``cuda`` with GPUs, else ``cpu``.
        threads: torch CPU threads in each actor (``None``: Ray's default, the actor's
            whole CPUs). Float reductions depend on the thread count: outputs are
            byte-identical to a local run with the same ``--threads``.
        writes: who writes the outputs: ``"driver"`` (results travel to the driver, which
            writes them: any ``--out``, even a folder only the driver's machine sees),
            ``"actors"`` (each actor writes its own images' outputs, with the same atomic
            writers: the write load spreads over the cluster, and masks never travel to
            the driver; every node must reach ``--out``: an object store or a shared file
            system), or ``"auto"``: actors for an object store (not ``memory://``, which
            lives in the driver's process), the driver for a local path.
    """

    address: str | None = None
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    decode_tasks: int = 2
    decode_cpus: float = 1.0
    device: str | None = None
    threads: int | None = None
    writes: str = "auto"
    _cluster: dict[str, float] | None = field(default=None, init=False, repr=False)
    _writes_resolved: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.actors, bool) or not isinstance(self.actors, int) or self.actors < 1:
            raise ValueError(f"ray actors must be an integer >= 1, got {self.actors!r}")
        if (
            isinstance(self.decode_tasks, bool)
            or not isinstance(self.decode_tasks, int)
            or self.decode_tasks < 1
        ):
            raise ValueError(f"ray decode tasks must be an integer >= 1, got {self.decode_tasks!r}")
        for name in ("gpus_per_actor", "cpus_per_actor", "decode_cpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"ray {name} must be a number >= 0, got {value!r}")
        if self.writes not in WRITE_MODES:
            raise ValueError(
                f"ray writes must be one of {', '.join(WRITE_MODES)}, got {self.writes!r}"
            )
        if self.gpus_per_actor > 1 and float(self.gpus_per_actor) != int(self.gpus_per_actor):
            raise ValueError(
                f"ray gpus_per_actor above 1 must be a whole number, got {self.gpus_per_actor!r}; "
                "use a fraction (<= 1) to share a GPU, or a whole number of GPUs"
            )

    def describe(self) -> dict[str, Any]:
        """The engine's settings and the cluster's resources, for the manifest."""
        info: dict[str, Any] = {
            "name": "ray",
            "address": self.address,
            "actors": self.actors,
            "gpus_per_actor": self.gpus_per_actor,
            "cpus_per_actor": self.cpus_per_actor,
            "decode_tasks": self.decode_tasks,
            "decode_cpus": self.decode_cpus,
            "device": self.actor_device,
            "writes": self._writes_resolved or self.writes,
        }
        if self._cluster is not None:
            info["cluster"] = self._cluster
        return info

    def _check_resources(self) -> None:
        """Warn when the cluster, as it is now, cannot hold the actors and a decode task."""
        message = _check_resources_message(self, self._cluster or {})
        if message is not None:
            logger.warning(message)

    def writer_of(self, out: AnyPath) -> str:
        """``"driver"`` or ``"actors"``: who writes into ``out`` (``auto`` resolved)."""
        if self.writes != "auto":
            return self.writes
        if isinstance(out, Path) or getattr(out, "protocol", "") == "memory":
            return "driver"
        return "actors"

    @property
    def actor_device(self) -> str:
        """The torch device of each actor's pipeline."""
        if self.device is not None:
            return self.device
        return "cuda" if self.gpus_per_actor > 0 else "cpu"

    def run_batches(self, plan: RunPlan) -> int:
        """Run ``plan.batches`` on Ray; the driver or the actors write (see :attr:`writes`
        and :class:`~samwsss.runs.runner.BatchEngine`).

        Raises:
            ValueError: the pipeline was not built from a config (actors rebuild it from
                ``pipeline.config``).
        """
        pipeline, options, spec, batches = plan.pipeline, plan.options, plan.spec, plan.batches
        if not batches:
            return 0
        if pipeline.config is None:
            raise ValueError(
                "the ray engine rebuilds the pipeline in each actor from its settings, and "
                "this pipeline has none: build it with Pipeline.from_config (or from_preset)"
            )
        ray = _connect(self.address)
        self._cluster = {
            key: float(value)
            for key, value in ray.cluster_resources().items()
            if key in ("CPU", "GPU", "memory")
        }
        self._check_resources()
        self._writes_resolved = self.writer_of(spec.root)
        actors_write = self._writes_resolved == "actors"
        resizes = pipeline.host_resizes(options.route)
        rows = [
            {
                "batch": json.dumps(batch),
                # the images of the batch to write (the rest ran before: kept for the batch)
                "write": json.dumps([i for i in batch if i in plan.pending]),
            }
            for batch in batches
        ]
        flow = (
            ray.data.from_items(rows)
            .map_batches(
                _decode,
                batch_size=1,
                # wrapped: Ray Data walks sequence-like arguments, and a dataset iterates
                # (decoding every image)
                fn_kwargs={"source": _Source(plan.dataset, resizes)},
                num_cpus=self.decode_cpus,
                compute=ray.data.TaskPoolStrategy(size=self.decode_tasks),
            )
            .map_batches(
                _PipelineActor,
                batch_size=1,
                fn_constructor_kwargs={
                    "config": pipeline.config,
                    "device": self.actor_device,
                    "route": options.route,
                    "keep_masks": spec.instances,
                    "overlay_ids": spec.overlay_ids,
                    "threads": self.threads,
                    "spec": spec if actors_write else None,
                },
                num_cpus=self.cpus_per_actor,
                num_gpus=self.gpus_per_actor,
                compute=ray.data.ActorPoolStrategy(size=self.actors),
            )
        )
        logger.info(
            "ray: %d batches on %d actor(s) (%s, %g GPU each), %d decode task(s), the %s write",
            len(batches), self.actors, self.actor_device, self.gpus_per_actor, self.decode_tasks,
            "actors" if actors_write else "driver",
        )  # fmt: skip
        processed = 0
        with (
            OutputWriter(spec, pipeline.mapping, pipeline.batch_size) as writer,
            progress_bar(sum(len(batch) for batch in batches), "samwsss[ray]") as bar,
        ):
            for row in flow.iter_rows():
                records: list[dict[str, Any]] = pickle.loads(row["payload"])
                for record in records:
                    if not plan.readable(record) or record["image_id"] not in plan.pending:
                        continue  # unreadable, or finished by an earlier run (kept the batch)
                    processed += 1
                    if not record.get("written"):  # else its actor wrote it
                        writer.submit(record["image_id"], record["image"], record["result"])
                bar.update(len(records))
        return processed


def _check_resources_message(engine: RayEngine, cluster: dict[str, float]) -> str | None:
    """Why the cluster as it is now cannot hold the actors and one decode task (``None``
    when it can)."""
    cpus = engine.actors * engine.cpus_per_actor + engine.decode_cpus
    gpus = engine.actors * engine.gpus_per_actor
    short = []
    if cpus > cluster.get("CPU", 0.0):
        short.append(
            f"{cpus:g} CPUs ({engine.actors} actor(s) x {engine.cpus_per_actor:g} + "
            f"{engine.decode_cpus:g} for a decode task) but the cluster has "
            f"{cluster.get('CPU', 0.0):g}"
        )
    if gpus > cluster.get("GPU", 0.0):
        short.append(
            f"{gpus:g} GPUs ({engine.actors} actor(s) x {engine.gpus_per_actor:g}) but the "
            f"cluster has {cluster.get('GPU', 0.0):g}"
        )
    if not short:
        return None
    return (
        "the ray engine asks for " + "; and ".join(short) + ": unless the cluster "
        "autoscales, the run waits for resources that never come. Use fewer --ray-actors, "
        "a smaller --ray-cpus-per-actor / --ray-gpus-per-actor (fractions share), or a "
        "bigger cluster"
    )


def _connect(address: str | None) -> Any:
    """Import Ray and connect (or start a local cluster) unless already initialised.

    The workers get this process's ``samwsss`` on their ``PYTHONPATH``, so that a local
    cluster runs the same code as the driver (a source checkout, not an older install).
    """
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ValueError(
            "--engine ray needs Ray Data: pip install 'samwsss[ray]' (or 'ray[data]'), or use "
            "--engine local"
        ) from error
    if not ray.is_initialized():
        source = str(Path(samwsss.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(
            address=address,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
            logging_level=logging.WARNING,
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


@dataclass(frozen=True)
class _Source:
    """The dataset and the stages' PIL resizes, shipped to the decode tasks."""

    dataset: SegmentationDataset
    resizes: tuple[Any, ...]


def _decode(batch: dict[str, np.ndarray], source: _Source) -> dict[str, np.ndarray]:
    """Decode one planned batch (a Ray Data task): the local runner's decode of each id,
    pickled as one payload; the ids to write pass through."""
    payloads = []
    for planned in batch["batch"]:
        ids = [str(image_id) for image_id in json.loads(planned)]
        decoder = DecodeDataset(source.dataset, ids, source.resizes)
        items = [decoder[index] for index in range(len(ids))]
        payloads.append(pickle.dumps(items, protocol=5))
    return {"payload": np.array(payloads, dtype=object), "write": batch["write"]}


class _PipelineActor:
    """A Ray actor holding one pipeline: runs decoded batches, returns results."""

    def __init__(
        self,
        config: PipelineConfig,
        device: str,
        route: str,
        keep_masks: bool,
        overlay_ids: frozenset[str],
        threads: int | None = None,
        spec: OutputSpec | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.pipeline = Pipeline.from_config(
            config, device=device, with_tagger=route == "zero-shot"
        )
        self.route = route
        self.keep_masks = keep_masks
        self.overlay_ids = overlay_ids
        self.spec = spec  # None: the driver writes
        self._writer: OutputWriter | None = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run each decoded batch; write its outputs when this actor writes; return
        per-image records (pickled, one per batch)."""
        payloads = []
        for payload, to_write in zip(batch["payload"], batch["write"], strict=True):
            items: list[dict[str, Any]] = pickle.loads(payload)
            good = [item for item in items if unreadable_reason(item, self.route) is None]
            results = run_decoded(self.pipeline, good, self.route, self.keep_masks) if good else []
            by_id = {item["image_id"]: r for item, r in zip(good, results, strict=True)}
            written = None
            if self.spec is not None:
                written = self._write(self.spec, items, by_id, set(json.loads(to_write)))
            records = []
            for item in items:
                record = {key: item[key] for key in ("image_id", "error", "labels")}
                if written is not None:
                    record["written"] = item["image_id"] in written
                else:  # the image goes back only for an overlay
                    record["image"] = (
                        item["image"] if item["image_id"] in self.overlay_ids else None
                    )
                    record["result"] = by_id.get(item["image_id"])
                records.append(record)
            payloads.append(pickle.dumps(records, protocol=5))
        return {"payload": np.array(payloads, dtype=object)}

    def _write(
        self,
        spec: OutputSpec,
        items: list[dict[str, Any]],
        results: dict[str, Any],
        to_write: set[str],
    ) -> set[str]:
        """Write the outputs of the ids in ``to_write`` that ran; returns them once every
        file is in place (a record saying "written" is true)."""
        chosen = [i for i in items if i["image_id"] in to_write and i["image_id"] in results]
        if self._writer is None:  # one pool of writer threads for the actor's life
            self._writer = OutputWriter(spec, self.pipeline.mapping, self.pipeline.batch_size)
        for item in chosen:
            self._writer.submit(item["image_id"], item["image"], results[item["image_id"]])
        self._writer.drain()
        return {item["image_id"] for item in chosen}

"""``samwsss text-input`` and ``samwsss zero-shot``: dataset runs of the two routes.

Settings come from a preset, then a YAML ``--config`` file, then command-line options
(later wins). The resolved settings are saved in the output folder as ``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from samwsss.choices import (
    DEFAULT_WORKERS,
    IMAGE_RESIZES,
    MERGE_RULES,
    MULTIMASK,
    PIPELINE_DTYPES,
    PRESET_NAMES,
    PROMPT_MODES,
    TAG_MATCHES,
)
from samwsss.cli.common import (
    coco_gt_rule_option,
    data_option,
    fail_cleanly,
    gt_dir_option,
    label_source_option,
    mapping_option,
    split_option,
)
from samwsss.cli.exit_codes import ExitCode, run_exit_code

# Settings a YAML --config file may hold besides the pipeline's own (PipelineConfig fields).
RUN_KEYS = (
    "data", "split", "labels", "gt_dir", "label_source", "coco_gt_rule", "out", "device",
    "workers", "threads", "shard", "plain", "palette", "instances", "overlays", "evaluate", "max_images",
    "overwrite", "resume", "retry_failures", "engine", "ray_address", "ray_actors",
    "ray_gpus_per_actor", "ray_cpus_per_actor", "ray_decode_tasks", "ray_writes",
)  # fmt: skip


def _pipeline_options(zero_shot: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        data_option("VOC root, coco/val2014-style folder, or a folder of images."),
        split_option("VOC split (train, val, train_aug, ...) or COCO split."),
        click.option(
            "--labels",
            type=click.Path(dir_okay=False),
            default=None,
            help="Image labels for a plain folder (JSON or CSV).",
        ),
        gt_dir_option("Folder of ground-truth PNGs (<id>.png) to evaluate against."),
        label_source_option("VOC image labels from the XML annotations (default) or the GT masks."),
        coco_gt_rule_option(),
        click.option(
            "--out",
            type=click.Path(file_okay=False),
            default=None,
            help="Output folder (required): a local path or an fsspec URL (s3://bucket/run, "
            "gs://..., needs s3fs/gcsfs).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            help="YAML file of settings; command-line options override it.",
        ),
        click.option(
            "--preset",
            type=click.Choice(PRESET_NAMES),
            default=None,
            help="'default' (ours) or 'paper' (the survey authors' protocol).",
        ),
        mapping_option("Class mapping: voc, coco or a YAML path (default: the dataset's)."),
        click.option(
            "--boxer",
            type=str,
            default=None,
            help="Grounding DINO: registry name, hub id or local folder.",
        ),
        click.option(
            "--masker",
            type=str,
            default=None,
            help="SAM: registry name, hub id, local folder or official .pth.",
        ),
        click.option(
            "--segmenter",
            type=str,
            default=None,
            help="A text-prompted segmenter replacing --boxer/--masker: sam3, "
            "sam3-litetext-s0|s1|l, a hub id or a local folder (preset sam3 sets it).",
        ),
        click.option(
            "--segment-threshold",
            type=float,
            default=None,
            help="The segmenter's instance score threshold [its own default].",
        ),
        click.option("--box-threshold", type=float, default=None),
        click.option("--text-threshold", type=float, default=None),
        click.option("--prompt-mode", type=click.Choice(PROMPT_MODES), default=None),
        click.option(
            "--nms-iou",
            type=float,
            default=None,
            help="Class-wise NMS IoU on boxes (default: none).",
        ),
        click.option("--multimask", type=click.Choice(MULTIMASK), default=None),
        click.option(
            "--dtype",
            type=click.Choice(PIPELINE_DTYPES),
            default=None,
            help="Compute precision of every stage: auto (bfloat16 on CUDA, float32 on CPU) "
            "or one dtype [preset: default auto, paper float32].",
        ),
        click.option(
            "--image-resize",
            type=click.Choice(IMAGE_RESIZES),
            default=None,
            help="torch: fast antialiased resizes on the device; pil: each model's original "
            "PIL resize, as the authors' code [preset: default torch, paper pil].",
        ),
        click.option(
            "--clip-boxes/--no-clip-boxes",
            default=None,
            help="Clip Grounding DINO's boxes to the image before SAM [preset: default clip, "
            "paper no clip].",
        ),
        click.option("--merge-rule", type=click.Choice(MERGE_RULES), default=None),
        click.option(
            "--uncertain-margin",
            type=float,
            default=None,
            help="Close overlaps of different classes become 255.",
        ),
        click.option(
            "--min-area", type=int, default=None, help="Drop masks smaller than this (pixels)."
        ),
        click.option(
            "--batch-size",
            type=int,
            default=None,
            help="Images per GPU batch (halved on out-of-memory).",
        ),
        click.option(
            "--device",
            type=str,
            default=None,
            help="cuda, cuda:1, cpu (default: cuda when available).",
        ),
        click.option(
            "--workers",
            type=int,
            default=None,
            help=f"Decoding worker processes (default {DEFAULT_WORKERS}).",
        ),
        click.option(
            "--threads", type=int, default=None, help="CPU threads for torch (default: torch's)."
        ),
        click.option(
            "--shard",
            type=str,
            default=None,
            help="i/n: run part i of n (default: torchrun rank, or all).",
        ),
        click.option(
            "--plain/--no-plain", default=None, help="Also write plain index PNGs (masks_plain/)."
        ),
        click.option(
            "--palette/--no-palette", default=None, help="Write palette PNGs (masks/, default on)."
        ),
        click.option(
            "--instances/--no-instances",
            default=None,
            help="Write COCO-style instance JSON with RLE masks.",
        ),
        click.option(
            "--overlays", type=int, default=None, help="Number of images that get overlay JPEGs."
        ),
        click.option(
            "--evaluate/--no-evaluate",
            default=None,
            help="Evaluate at the end when GT exists (default on).",
        ),
        click.option(
            "--max-images",
            type=int,
            default=None,
            help="Stop after this many images (a rerun resumes).",
        ),
        click.option(
            "--overwrite",
            is_flag=True,
            default=None,
            help="Delete a different run's outputs in --out.",
        ),
        click.option(
            "--resume",
            is_flag=True,
            default=None,
            help="Continue in --out even if its saved settings differ.",
        ),
        click.option(
            "--retry-failures",
            is_flag=True,
            default=None,
            help="Retry images recorded as unreadable by earlier runs.",
        ),
        click.option(
            "--engine",
            type=click.Choice(("local", "ray")),
            default=None,
            help="local: this process (default); ray: Ray Data, CPU decode tasks and "
            "pipeline actors (pip install 'samwsss[ray]'). Same outputs either way.",
        ),
        click.option(
            "--ray-address",
            type=str,
            default=None,
            help="Ray cluster address (default: a running cluster if any, else a local one).",
        ),
        click.option("--ray-actors", type=int, default=None, help="Pipeline actors (default 1)."),
        click.option(
            "--ray-gpus-per-actor",
            type=float,
            default=None,
            help="GPUs per actor, fractions allowed (default: 1 with CUDA, else 0).",
        ),
        click.option(
            "--ray-cpus-per-actor",
            type=float,
            default=None,
            help="CPUs per actor, fractions allowed (default 1).",
        ),
        click.option(
            "--ray-writes",
            type=click.Choice(("auto", "driver", "actors")),
            default=None,
            help="Who writes the outputs: the driver, or each actor its own images (every "
            "node must reach --out) [auto: actors for an object store, else the driver].",
        ),
        click.option(
            "--ray-decode-tasks",
            type=int,
            default=None,
            help="CPU decode tasks at once (default: --workers, at least 1).",
        ),
    ]
    if zero_shot:
        options += [
            click.option(
                "--tagger",
                type=str,
                default=None,
                help="RAM registry name or checkpoint path, 'grounding' (Grounding DINO on "
                "every class) or 'sam3-presence' (the segmenter's presence scores).",
            ),
            click.option("--tag-match", type=click.Choice(TAG_MATCHES), default=None),
            click.option(
                "--tag-threshold",
                type=float,
                default=None,
                help="One RAM threshold for all tags (default: per tag).",
            ),
            click.option(
                "--ram-vocabulary",
                type=click.Path(dir_okay=False, exists=True),
                default=None,
                help="Local ram_tag_list.txt (default: fetched and cached).",
            ),
            click.option(
                "--ram-thresholds",
                type=click.Path(dir_okay=False, exists=True),
                default=None,
                help="Local ram_tag_list_threshold.txt.",
            ),
        ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _resolve_settings(route: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge preset < config file < command line; split into (pipeline, run) settings."""
    import yaml

    from samwsss.pipeline.config import PipelineConfig

    pipeline_keys = set(PipelineConfig.__dataclass_fields__)
    merged: dict[str, Any] = {}
    config_file = options.pop("config_file")
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{config_file}: not valid YAML ({error})") from error
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: must be a mapping of setting: value")
        loaded = {str(k).replace("-", "_"): v for k, v in loaded.items()}
        unknown = sorted(set(loaded) - pipeline_keys - set(RUN_KEYS) - {"preset"})
        if unknown:
            raise ValueError(
                f"{config_file}: unknown setting(s) {', '.join(unknown)}; valid: "
                + ", ".join(sorted(pipeline_keys | set(RUN_KEYS) | {"preset"}))
            )
        merged.update(loaded)
    merged.update({k: v for k, v in options.items() if v is not None})
    preset_name = merged.pop("preset", None) or "default"
    pipeline = {k: v for k, v in merged.items() if k in pipeline_keys}
    run = {k: v for k, v in merged.items() if k not in pipeline_keys}
    run["preset"] = preset_name
    if route == "text-input":
        for key in ("tagger", "tag_match", "tag_threshold", "ram_vocabulary", "ram_thresholds"):
            pipeline.pop(key, None)
    return pipeline, run


def _run(route: str, options: dict[str, Any]) -> ExitCode:
    from samwsss.checks import check_count
    from samwsss.data import open_dataset
    from samwsss.pipeline.config import preset
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.pipeline.run_folder import FAILURES_DIR
    from samwsss.pipeline.run_lock import check_run_lock
    from samwsss.pipeline.runner import RunOptions, Shard, check_writable, run_dataset
    from samwsss.storage import as_path, describe

    pipeline_settings, run = _resolve_settings(route, options)
    if not run.get("data"):
        raise ValueError(
            "--data is required: a VOC root, a coco/val2014 folder or a folder of images"
        )
    if not run.get("out"):
        raise ValueError("--out is required: the folder the masks and the run manifest go to")
    out = as_path(str(run["out"]))  # a folder, or an fsspec URL (s3://bucket/run, ...)
    dataset = open_dataset(
        run["data"],
        run.get("split"),
        mapping=pipeline_settings.get("mapping"),
        labels=run.get("labels"),
        gt_dir=run.get("gt_dir"),
        label_source=run.get("label_source", "xml"),
        coco_gt_rule=run.get("coco_gt_rule", "overwrite"),
    )
    pipeline_settings.setdefault("mapping", _mapping_of(dataset))
    config = preset(run["preset"], **pipeline_settings)
    shard = Shard.parse(run.get("shard"))
    # a folder a live run holds is refused now, not after minutes of loading weights
    # (run_dataset takes the lock for the run itself)
    check_writable(out)
    check_run_lock(out, shard)
    device = _device_for_rank(run.get("device"))
    if run.get("threads") is not None:
        import torch

        torch.set_num_threads(check_count("--threads", run["threads"]))
    engine = _engine(run, device)
    # under ray the models run in the actors: the driver's pipeline (the run's identity and
    # manifest) stays on the CPU
    pipe = Pipeline.from_config(
        config, device="cpu" if engine is not None else device, with_tagger=route == "zero-shot"
    )
    if route == "zero-shot":
        pipe.require_tagger()  # load it now: a missing download fails before the run starts
    run_options = RunOptions(
        route=route,
        out=out,
        shard=shard,
        workers=int(run.get("workers", DEFAULT_WORKERS)),
        palette=bool(run.get("palette", True)),
        plain=bool(run.get("plain", False)),
        instances=bool(run.get("instances", False)),
        overlays=int(run.get("overlays", 0)),
        overwrite=bool(run.get("overwrite", False)),
        resume=bool(run.get("resume", False)),
        evaluate=bool(run.get("evaluate", True)),
        max_images=run.get("max_images"),
        retry_failures=bool(run.get("retry_failures", False)),
    )
    data_identity = {
        "data": describe(as_path(str(run["data"]))),
        "split": run.get("split"),
        "label_source": run.get("label_source", "xml"),
        "coco_gt_rule": run.get("coco_gt_rule", "overwrite"),
        "labels": _file_identity(run.get("labels")),
        "gt_dir": describe(as_path(str(run["gt_dir"]))) if run.get("gt_dir") else None,
        "mapping": _file_identity(config.mapping)
        if Path(config.mapping).is_file()
        else config.mapping,
    }
    summary = run_dataset(pipe, dataset, run_options, data_identity, engine=engine)
    click.echo(
        f"{route}: {summary.processed} images processed, {summary.skipped} already done, "
        f"{summary.failed} unreadable, {summary.images_per_second:.2f} images/s -> {run_options.out}"
    )
    remaining = summary.total - summary.complete - summary.failed_total
    click.echo(
        f"the run so far: {summary.complete} of {summary.total} images complete, "
        f"{summary.failed_total} unreadable (listed in {FAILURES_DIR}/), {remaining} to run"
    )
    if summary.report_table is not None:
        click.echo(summary.report_table)
    if summary.miou is not None:
        click.echo(f"mIoU {summary.miou * 100:.2f} (report: {run_options.out / 'evaluation.json'})")
    code = run_exit_code(summary.complete, summary.failed_total)
    if code == ExitCode.FAILED:
        raise click.ClickException(
            f"no image of the run succeeded: {summary.failed_total} unreadable, listed with "
            f"the reason in {run_options.out / FAILURES_DIR}/failures.jsonl; fix or replace "
            "them and rerun with --retry-failures"
        )
    if summary.failed_total:
        click.echo(
            f"warning: {summary.failed_total} unreadable images (exit code "
            f"{int(code)}; see {FAILURES_DIR}/failures.jsonl)",
            err=True,
        )
    return code


def _engine(run: dict[str, Any], device: str | None) -> Any:
    """The batch engine of ``--engine`` (``None``: the local runner)."""
    engine = run.get("engine", "local")
    if engine == "local":
        return None
    if engine != "ray":
        raise ValueError(f"--engine must be local or ray, got {engine!r}")
    from samwsss.pipeline.ray_engine import RayEngine

    gpus = run.get("ray_gpus_per_actor")
    if gpus is None:
        import torch

        gpus = 1.0 if (device or "cuda").startswith("cuda") and torch.cuda.is_available() else 0.0
    workers = int(run.get("workers", DEFAULT_WORKERS))
    return RayEngine(
        address=run.get("ray_address"),
        actors=int(run.get("ray_actors", 1)),
        gpus_per_actor=float(gpus),
        cpus_per_actor=float(run.get("ray_cpus_per_actor", 1.0)),
        decode_tasks=int(run.get("ray_decode_tasks", max(1, workers))),
        device=device if device is not None else ("cuda" if gpus > 0 else "cpu"),
        threads=run.get("threads"),
        writes=str(run.get("ray_writes", "auto")),
    )


def _mapping_of(dataset: Any) -> str:
    """The dataset's mapping: a built-in name (``voc``/``coco``) or the user's file."""
    mapping = getattr(dataset, "mapping", None)
    source = getattr(mapping, "source", None)
    if source and Path(source).is_file():
        from samwsss.mapping import BUILTIN_MAPPINGS, builtin_mapping_path

        for name in BUILTIN_MAPPINGS:
            if Path(source).resolve() == builtin_mapping_path(name).resolve():
                return name
        return str(source)
    return "coco" if getattr(dataset, "kind", "") == "coco" else "voc"


def _file_identity(path: str | None) -> dict[str, str] | None:
    """Path (or URL) and content hash of a settings file, so an edited file counts as a new
    run."""
    if not path:
        return None
    import hashlib

    from samwsss.storage import as_path, describe

    target = as_path(path)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()[:16]
    return {"path": describe(target), "sha256": digest}


def _device_for_rank(device: str | None) -> str | None:
    """Under torchrun each rank uses its own GPU: ``cuda`` (or nothing) means ``cuda:LOCAL_RANK``."""
    import os

    if "LOCAL_RANK" not in os.environ:
        return device
    import torch

    if not torch.cuda.is_available() or (device is not None and not device.startswith("cuda")):
        return device
    local = int(os.environ["LOCAL_RANK"])
    if device not in (None, "cuda", f"cuda:{local}"):
        raise ValueError(
            f"--device {device} under torchrun: each rank uses its own GPU (this is rank "
            f"{local}); leave --device out or pass --device cuda"
        )
    torch.cuda.set_device(local)
    return f"cuda:{local}"


@click.command("text-input")
@_pipeline_options(zero_shot=False)
def text_input_command(**options: Any) -> None:
    """Pseudo masks from image-level labels: Grounding DINO -> SAM -> merged mask per image."""
    with fail_cleanly():
        code = _run("text-input", options)
    click.get_current_context().exit(int(code))


@click.command("zero-shot")
@_pipeline_options(zero_shot=True)
def zero_shot_command(**options: Any) -> None:
    """Masks with no labels: RAM tags -> classes -> Grounding DINO -> SAM -> merged mask."""
    with fail_cleanly():
        code = _run("zero-shot", options)
    click.get_current_context().exit(int(code))

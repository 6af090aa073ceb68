"""``samwsss text-input`` and ``samwsss zero-shot``: dataset runs of the two routes.

Settings come from a preset, then a YAML ``--config`` file, then command-line options
(later wins). The resolved settings are saved in the output folder as ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from samwsss.checks import check_count, check_file, check_folder
from samwsss.choices import (
    IMAGE_RESIZES,
    MERGE_RULES,
    MULTIMASK,
    PIPELINE_DTYPES,
    PRESET_NAMES,
    PROMPT_MODES,
    TAG_MATCHES,
)
from samwsss.cli.exit_codes import ExitCode, run_exit_code
from samwsss.cli.options import (
    coco_gt_rule_option,
    data_option,
    fail_cleanly,
    gt_dir_option,
    label_source_option,
    mapping_option,
    split_option,
    workers_option,
)
from samwsss.devices import check_device
from samwsss.pipeline.batching import Shard
from samwsss.pipeline.config import PipelineConfig, preset
from samwsss.runs.folder import RunFolder, check_writable
from samwsss.settings import given, layered, parse_overrides, read_mapping
from samwsss.storage import as_path, describe
from samwsss.workers import default_workers

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
        label_source_option(
            "VOC image labels: 'xml' (the XML annotations) or 'gt' (the classes in the GT "
            "masks) [default: xml]."
        ),
        coco_gt_rule_option("How COCO instances become semantic GT [default: overwrite]."),
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
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any setting of --config, over every other layer (value read as YAML); "
            "repeatable.",
        ),
        click.option(
            "--preset",
            type=click.Choice(PRESET_NAMES),
            default=None,
            help="Settings to start from: 'default' (ours), 'paper' (the survey authors' "
            "protocol) or 'sam3' (SAM 3 segments each class prompt and tags the zero-shot "
            "route) [default: default].",
        ),
        mapping_option("Class mapping: voc, coco or a YAML path [default: the dataset's]."),
        click.option(
            "--boxer",
            type=str,
            default=None,
            help="Grounding DINO: registry name, hub id or local folder "
            "[default: grounding-dino-tiny].",
        ),
        click.option(
            "--masker",
            type=str,
            default=None,
            help="SAM: registry name, hub id, local folder or official .pth "
            "[default: sam-vit-huge].",
        ),
        click.option(
            "--segmenter",
            type=str,
            default=None,
            help="A text-prompted segmenter replacing --boxer/--masker: sam3, "
            "sam3-litetext-s0|s1|l, a hub id or a local folder [default: none; preset "
            "sam3: sam3].",
        ),
        click.option(
            "--segment-threshold",
            type=float,
            default=None,
            help="The segmenter's instance score threshold [default: the segmenter's own].",
        ),
        click.option(
            "--box-threshold",
            type=float,
            default=None,
            help="Grounding DINO box score threshold, 0 to 1 [default: the boxer family's: "
            "0.3 for Grounding DINO, 0.4 for MM-Grounding-DINO / LLMDet; preset paper: 0.3].",
        ),
        click.option(
            "--text-threshold",
            type=float,
            default=None,
            help="Grounding DINO text-token threshold, 0 to 1 [default: the boxer family's: "
            "0.25 for Grounding DINO, 0.3 for MM-Grounding-DINO / LLMDet; preset paper: "
            "0.25].",
        ),
        click.option(
            "--prompt-mode",
            type=click.Choice(PROMPT_MODES),
            default=None,
            help="Grounding DINO prompts: one per image and class (per-class, the paper) or "
            "all of an image's classes in one (joint) [default: per-class].",
        ),
        click.option(
            "--nms-iou",
            type=float,
            default=None,
            help="Class-wise NMS IoU on boxes [default: none, no NMS].",
        ),
        click.option(
            "--multimask",
            type=click.Choice(MULTIMASK),
            default=None,
            help="SAM's output: its single mask (the paper) or the best of its three "
            "[default: single].",
        ),
        click.option(
            "--dtype",
            type=click.Choice(PIPELINE_DTYPES),
            default=None,
            help="Compute precision of every stage: auto (bfloat16 on CUDA, float32 on CPU) "
            "or one dtype [default: auto; preset paper: float32].",
        ),
        click.option(
            "--image-resize",
            type=click.Choice(IMAGE_RESIZES),
            default=None,
            help="torch: fast antialiased resizes on the device; pil: each model's original "
            "PIL resize, as the authors' code [default: torch; preset paper: pil].",
        ),
        click.option(
            "--clip-boxes/--no-clip-boxes",
            default=None,
            help="Clip Grounding DINO's boxes to the image before SAM [default: clip-boxes; "
            "preset paper: no-clip-boxes].",
        ),
        click.option(
            "--merge-rule",
            type=click.Choice(MERGE_RULES),
            default=None,
            help="Where masks of different classes overlap: the higher score wins (score), "
            "the higher class index (paper) or the smaller mask (area) "
            "[default: score; preset paper: paper].",
        ),
        click.option(
            "--uncertain-margin",
            type=float,
            default=None,
            help="Overlaps of different classes whose scores differ by less than this become "
            "255 (ignored) [default: none].",
        ),
        click.option(
            "--min-area",
            type=int,
            default=None,
            help="Drop masks smaller than this (pixels) [default: 0].",
        ),
        click.option(
            "--batch-size",
            type=int,
            default=None,
            help="Images per GPU batch, halved on out-of-memory [default: 8].",
        ),
        click.option(
            "--device",
            type=str,
            default=None,
            help="cuda, cuda:1, cpu [default: cuda when available, else cpu].",
        ),
        workers_option("Decoding worker processes; 0 = decode in this process.", layered=True),
        click.option(
            "--threads", type=int, default=None, help="CPU threads for torch [default: torch's]."
        ),
        click.option(
            "--shard",
            type=str,
            default=None,
            help="i/n: run part i of n [default: the torchrun rank, else all].",
        ),
        click.option(
            "--plain/--no-plain",
            default=None,
            help="Also write plain index PNGs (masks_plain/) [default: no-plain].",
        ),
        click.option(
            "--palette/--no-palette",
            default=None,
            help="Write VOC-palette PNGs (masks/) [default: palette].",
        ),
        click.option(
            "--instances/--no-instances",
            default=None,
            help="Write COCO-style instance JSON with RLE masks [default: no-instances].",
        ),
        click.option(
            "--overlays",
            type=int,
            default=None,
            help="Number of images that get overlay JPEGs [default: 0].",
        ),
        click.option(
            "--evaluate/--no-evaluate",
            default=None,
            help="Evaluate at the end when the dataset has ground truth [default: evaluate].",
        ),
        click.option(
            "--max-images",
            type=int,
            default=None,
            help="Stop after this many images; a rerun resumes [default: all].",
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
            help="local: this process; ray: Ray Data, CPU decode tasks and pipeline actors "
            "(pip install 'samwsss[ray]'). Same outputs either way [default: local].",
        ),
        click.option(
            "--ray-address",
            type=str,
            default=None,
            help="Ray cluster address [default: a running cluster if any, else a local one].",
        ),
        click.option("--ray-actors", type=int, default=None, help="Pipeline actors [default: 1]."),
        click.option(
            "--ray-gpus-per-actor",
            type=float,
            default=None,
            help="GPUs per actor, fractions allowed [default: 1 with CUDA, else 0].",
        ),
        click.option(
            "--ray-cpus-per-actor",
            type=float,
            default=None,
            help="CPUs per actor, fractions allowed [default: 1].",
        ),
        click.option(
            "--ray-writes",
            type=click.Choice(("auto", "driver", "actors")),
            default=None,
            help="Who writes the outputs: the driver, or each actor its own images (every "
            "node must reach --out); auto: the actors for an object store, else the driver "
            "[default: auto].",
        ),
        click.option(
            "--ray-decode-tasks",
            type=int,
            default=None,
            help="CPU decode tasks at once [default: --workers, at least 1].",
        ),
    ]
    if zero_shot:
        options += [
            click.option(
                "--tagger",
                type=str,
                default=None,
                help="RAM registry name or checkpoint path, 'grounding' (Grounding DINO on "
                "every class) or 'sam3-presence' (the segmenter's presence scores) "
                "[default: ram-plus-swin-large-14m; preset paper: ram-swin-large-14m; preset "
                "sam3: sam3-presence].",
            ),
            click.option(
                "--tag-match",
                type=click.Choice(TAG_MATCHES),
                default=None,
                help="Tag -> class matching: whole tags (exact) or substrings (paper) "
                "[default: exact; preset paper: paper].",
            ),
            click.option(
                "--tag-threshold",
                type=float,
                default=None,
                help="One RAM threshold for all tags [default: RAM's per-tag thresholds].",
            ),
            click.option(
                "--ram-vocabulary",
                type=click.Path(dir_okay=False, exists=True),
                default=None,
                help="Local ram_tag_list.txt [default: fetched once and cached].",
            ),
            click.option(
                "--ram-thresholds",
                type=click.Path(dir_okay=False, exists=True),
                default=None,
                help="Local ram_tag_list_threshold.txt [default: fetched with the tag list].",
            ),
        ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _resolve_settings(route: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge preset < config file < command line < ``--set``; split into (pipeline, run)
    settings.

    ``workers`` that no layer sets is :func:`samwsss.workers.default_workers`."""
    pipeline_keys = set(PipelineConfig.__dataclass_fields__)
    valid = pipeline_keys | set(RUN_KEYS) | {"preset"}
    config_file = options.pop("config_file")
    overrides = options.pop("overrides", ())

    def checked(values: dict[Any, Any], where: str) -> dict[str, Any]:
        named = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(named) - valid)
        if unknown:
            raise ValueError(
                f"{where}: unknown setting(s) {', '.join(unknown)}; valid: "
                + ", ".join(sorted(valid))
            )
        return named

    loaded: dict[str, Any] = {}
    if config_file:
        raw = read_mapping(config_file, "must be a mapping of setting: value")
        loaded = checked(raw, config_file)
    merged = layered(loaded, given(options), checked(parse_overrides(overrides), "--set"))
    preset_name = merged.pop("preset", None) or "default"
    pipeline = {k: v for k, v in merged.items() if k in pipeline_keys}
    run = {k: v for k, v in merged.items() if k not in pipeline_keys}
    run["preset"] = preset_name
    run.setdefault("workers", default_workers())
    if route == "text-input":
        for key in ("tagger", "tag_match", "tag_threshold", "ram_vocabulary", "ram_thresholds"):
            pipeline.pop(key, None)
    return pipeline, run


def pipeline_config_of(route: str, options: dict[str, Any], mapping: str) -> PipelineConfig:
    """The pipeline settings a ``route`` run given the parsed command ``options`` would use
    (preset < --config < options < --set), ``mapping`` where no layer sets one. Opens no dataset
    and loads no model (``samwsss reproduce`` checks every step's weights with it)."""
    pipeline_settings, run = _resolve_settings(route, dict(options))
    pipeline_settings.setdefault("mapping", mapping)
    return preset(run["preset"], **pipeline_settings)


def _run(route: str, options: dict[str, Any]) -> ExitCode:
    """One dataset run of ``route``. What needs no weights is checked first (torch is not
    imported before), then that every model's weights are here or downloadable, then the
    models load; a local ``--out`` this run made is removed again if it fails before
    writing anything."""
    with contextlib.ExitStack() as stack:
        return _run_in(route, options, stack)


def _run_in(route: str, options: dict[str, Any], stack: contextlib.ExitStack) -> ExitCode:
    """:func:`_run`, with ``stack`` holding what lasts until the run ends."""
    from samwsss.data import open_dataset

    pipeline_settings, run = _resolve_settings(route, options)
    if not run.get("data"):
        raise ValueError(
            "--data is required: a VOC root, a coco/val2014 folder or a folder of images"
        )
    if not run.get("out"):
        raise ValueError("--out is required: the folder the masks and the run manifest go to")
    out = as_path(str(run["out"]))  # a folder, or an fsspec URL (s3://bucket/run, ...)
    stack.enter_context(_removed_if_left_empty(out))
    _check_before_loading(run, pipeline_settings, out)
    dataset = open_dataset(
        run["data"],
        run.get("split"),
        mapping=pipeline_settings.get("mapping"),
        labels=run.get("labels"),
        gt_dir=run.get("gt_dir"),
        label_source=run.get("label_source", "xml"),
        coco_gt_rule=run.get("coco_gt_rule", "overwrite"),
    )
    _check_labels(route, dataset)
    pipeline_settings.setdefault("mapping", _mapping_of(dataset))
    config = preset(run["preset"], **pipeline_settings)
    from samwsss.pipeline.builders import run_weights
    from samwsss.weights import hub_offline, preflight

    shard = Shard.parse(run.get("shard"))
    # every model's weights are here or downloadable now, else one error names them all
    # (in seconds, before torch is imported); with the hub unreachable and everything
    # cached, the models load from the cache alone instead of waiting on retries
    weights = run_weights(config, with_tagger=route == "zero-shot")
    stack.enter_context(hub_offline(preflight(weights)))
    from samwsss.pipeline.pipeline import Pipeline
    from samwsss.runs.failures import FAILURES_DIR
    from samwsss.runs.runner import RunOptions, run_dataset

    # a folder a live run holds is refused now, not after minutes of loading weights
    # (run_dataset takes the lock for the run itself); a local --out that does not exist
    # yet was checked above and is made when the run starts writing
    if not isinstance(out, Path) or out.exists():
        RunFolder(out, shard).check_lock()
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
        workers=int(run.get("workers", default_workers())),
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


def _check_before_loading(run: dict[str, Any], pipeline: dict[str, Any], out: Any) -> None:
    """The checks that need no weights and no torch (but for a CUDA device where the NVIDIA
    driver is present): ``--labels`` a file, ``--gt-dir`` a folder, ``--boxer``/
    ``--masker``/``--segmenter``/``--tagger`` paths of the right kind, ``--out`` writable
    or creatable (nothing is created locally; on an object store a probe object is put and
    deleted), the device present. Opening the dataset next checks
    ``--data`` and ``--mapping``.

    Raises:
        ValueError: naming the option, the bad value and what to give.
    """
    from samwsss.weights import KINDS, check_model_option

    if run.get("labels") and "://" not in str(run["labels"]):
        check_file("--labels", run["labels"], "a JSON or CSV file of image labels")
    if run.get("gt_dir") and "://" not in str(run["gt_dir"]):
        check_folder("--gt-dir", run["gt_dir"], "the folder of ground-truth <id>.png files")
    for kind in KINDS:
        check_model_option(kind, pipeline.get(kind))
    check_writable(out)
    if run.get("engine", "local") != "ray":  # under ray, the actors' machines run the models
        check_device(run.get("device"))


def _check_labels(route: str, dataset: Any) -> None:
    """Text input over a plain image folder needs image labels: refused before any model
    loads (VOC and COCO bring their own).

    Raises:
        ValueError: no image of the folder has labels; the message says what to pass.
    """
    if route != "text-input" or getattr(dataset, "kind", "") != "folder":
        return
    if any(dataset.labels(image_id) is not None for image_id in dataset.ids):
        return
    raise ValueError(
        f"text-input needs image-level labels, and the image folder {dataset.root} has none: "
        "give a labels file (--labels labels.json, a JSON or CSV file like "
        "examples/labels.json), or use the zero-shot route (samwsss zero-shot)"
    )


@contextlib.contextmanager
def _removed_if_left_empty(out: Any) -> Iterator[None]:
    """Remove the local folder ``out`` again if this run made it and fails while it holds
    nothing but empty folders. A folder that existed before, or that holds any file, is
    kept as it is."""
    made = isinstance(out, Path) and not out.exists()
    try:
        yield
    except BaseException:
        if made:
            for folder, _, _ in os.walk(out, topdown=False):  # children before parents
                with contextlib.suppress(OSError):  # not empty (or gone): kept
                    os.rmdir(folder)
        raise


def _engine(run: dict[str, Any], device: str | None) -> Any:
    """The batch engine of ``--engine`` (``None``: the local runner)."""
    engine = run.get("engine", "local")
    if engine == "local":
        return None
    if engine != "ray":
        raise ValueError(f"--engine must be local or ray, got {engine!r}")
    from samwsss.runs.ray_engine import RayEngine

    gpus = run.get("ray_gpus_per_actor")
    if gpus is None:
        import torch

        gpus = 1.0 if (device or "cuda").startswith("cuda") and torch.cuda.is_available() else 0.0
    workers = int(run.get("workers", default_workers()))
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
    target = as_path(path)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()[:16]
    return {"path": describe(target), "sha256": digest}


def _device_for_rank(device: str | None) -> str | None:
    """Under torchrun each rank uses its own GPU: ``cuda`` (or nothing) means ``cuda:LOCAL_RANK``."""
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

"""``samwsss reproduce voc|coco``: the survey's protocol as one resumable command.

The plan (:mod:`samwsss.reproduce.plan`) is the ordinary commands, each with its own run
folder under ``--out``; this module checks the data and every weight first, runs the steps
in order through the same click commands a user types (so each keeps its identity, lock,
resume and manifest), skips the steps already done, and writes ``results.json`` /
``results.md`` (:mod:`samwsss.reproduce.table`) after every step.

A step is done when its final file exists and ``reproduce.json`` records the same command
for it: rerunning skips it without loading a model. A killed step is simply run again: the
labelling and predict commands resume their folder, training resumes from
``checkpoints/last.pt`` (``--resume`` is added when that file exists).

Under ``torchrun`` every process runs this command: the labelling steps are sharded by rank
(each command's default), training is DDP, and ``evaluate``/``predict`` run on rank 0 while
the others wait for the step's final file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from samwsss.atomic import atomic_write_text
from samwsss.cli import cli
from samwsss.cli.run import pipeline_config_of
from samwsss.data import open_dataset
from samwsss.data.voc import find_voc_root
from samwsss.pipeline.builders import run_weights
from samwsss.reproduce.estimates import ASSUMED_DEVICE, estimate_seconds, format_duration
from samwsss.reproduce.plan import (
    GROUPS,
    LAYOUTS,
    PROTOCOLS,
    PlanOptions,
    Step,
    build_plan,
    select_steps,
)
from samwsss.reproduce.table import collect, write_results
from samwsss.segnets.registry import init_weights
from samwsss.weights import MissingWeightsError, Weights, hub_offline, preflight

logger = logging.getLogger(__name__)

#: The record of finished steps under ``--out``: step name -> the command that made it.
RECORD_FILE = "reproduce.json"
#: Seconds between looks at another rank's step while waiting for it.
WAIT_POLL_SECONDS = 5.0


class StepFailed(click.ClickException):
    """A step's command failed; the message names the step and its command."""

    exit_code = 1


# -- checks ---------------------------------------------------------------------------------------
def layout_problems(dataset: str, data: Path) -> tuple[list[str], dict[str, int]]:
    """What is missing from ``data`` for ``dataset``'s plan, and the images per split found.

    VOC: the VOC root (``VOCdevkit/VOC2012`` or a folder holding it) with ``JPEGImages``,
    ``SegmentationClass``, ``SegmentationClassAug`` and the ``train_aug``, ``train`` and
    ``val`` lists (opened as the commands open them). COCO: ``train2014/``, ``val2014/``
    and ``annotations/instances_{train,val}2014.json`` (present, not parsed: the COCO
    annotation files take tens of seconds to load).
    """
    layout = LAYOUTS[dataset]
    problems: list[str] = []
    sizes: dict[str, int] = {}
    if not data.is_dir():
        return [f"--data {data} is not a folder"], sizes
    if dataset == "voc":
        root = find_voc_root(data)
        if root is None:
            return [f"--data {data} holds no VOC root (VOCdevkit/VOC2012 with JPEGImages)"], sizes
        problems += [
            f"{root / name} is missing" for name in layout.folders if not (root / name).is_dir()
        ]
        for split in (layout.masks_split, layout.pm_split, layout.val_split):
            try:
                sizes[split] = len(open_dataset(root, split))
            except ValueError as error:
                problems.append(f"split {split}: {error}")
        return problems, sizes
    for split in (layout.masks_split, layout.val_split):
        folder = data / split
        if not folder.is_dir():
            problems.append(f"{folder} is missing (COCO 2014 images of {split})")
        else:
            sizes[split] = sum(1 for entry in os.scandir(folder) if entry.name.endswith(".jpg"))
        annotations = data / "annotations" / f"instances_{split}.json"
        if not annotations.is_file():
            problems.append(f"{annotations} is missing (COCO 2014 instance annotations)")
    return problems, sizes


def step_weights(steps: Sequence[Step], dataset: str) -> list[Weights]:
    """The weights every model-loading step needs, each once: the labelling runs' models as
    their commands resolve them, and the segmenter's initial weights.

    Raises:
        ValueError: a model name, ``--init`` or labelling ``--config`` that names nothing
            loadable (the message says what to give).
    """
    found: dict[tuple[str, str], Weights] = {}
    for step in steps:
        if step.kind not in ("label", "train"):
            continue
        command = cli.get_command(click.Context(cli), step.argv[0])
        assert command is not None
        with command.make_context(step.argv[0], list(step.argv[1:])) as ctx:
            params = dict(ctx.params)
        if step.kind == "label":
            config = pipeline_config_of(step.argv[0], params, dataset)
            weights = run_weights(config, with_tagger=step.argv[0] == "zero-shot")
        elif step.kind == "train":
            weights = init_weights(params["arch"], params.get("init"))
        for entry in weights:
            found.setdefault((entry.kind, entry.location), entry)
    return list(found.values())


# -- running --------------------------------------------------------------------------------------
def read_record(out: Path) -> dict[str, list[str]]:
    """``reproduce.json``: step name -> the command that finished it (its
    :attr:`~samwsss.reproduce.plan.Step.identity`)."""
    path = out / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s is not valid JSON; every step is checked again", path)
        return {}
    steps = record.get("steps") if isinstance(record, dict) else None
    return steps if isinstance(steps, dict) else {}


def write_record(out: Path, record: dict[str, list[str]]) -> None:
    """Save ``record`` as ``reproduce.json`` (atomically)."""
    text = json.dumps({"format": "samwsss-reproduce", "version": 1, "steps": record}, indent=2)
    atomic_write_text(out / RECORD_FILE, text + "\n")


def is_done(step: Step, record: dict[str, list[str]]) -> bool:
    """The step's final file exists and the same command made it (options that change only
    the speed aside)."""
    return step.is_finished() and record.get(step.name) == step.identity


def step_argv(step: Step) -> list[str]:
    """The command line to run for ``step`` now: a training step whose run left a
    checkpoint resumes from it."""
    argv = list(step.argv)
    if step.kind == "train" and (step.out / "checkpoints" / "last.pt").is_file():
        argv.append("--resume")
    return argv


def run_command(argv: list[str], verbose: int) -> int:
    """Run ``samwsss <argv>`` in this process, as the shell would; its exit code."""

    try:
        code = cli.main(args=["-v"] * verbose + argv, prog_name="samwsss", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return int(stop.exit_code)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return code if isinstance(code, int) else 0


def failure_marker(out: Path, step: Step, rank: int) -> Path:
    """The file a process leaves when its part of ``step`` failed, so that the processes
    waiting for that step stop instead of waiting for ever."""
    return out / f".failed-{step.name}-rank{rank}"


def wait_for(step: Step, out: Path, since: float) -> None:
    """Block until the other processes have finished ``step`` (its final file exists).

    Raises:
        StepFailed: another process left a failure marker for the step after ``since``
            (this invocation's start, seconds since the epoch).
    """
    waited = 0.0
    while not step.is_finished():
        failed = [
            marker
            for marker in out.glob(f".failed-{step.name}-rank*")
            if marker.stat().st_mtime >= since
        ]
        if failed:
            raise StepFailed(
                f"step {step.name} failed in another process ({failed[0].name}: "
                f"{failed[0].read_text(encoding='utf-8').strip()}); see its output"
            )
        if waited % 300 < WAIT_POLL_SECONDS:
            logger.info("waiting for the other processes to finish %s", step.name)
        time.sleep(WAIT_POLL_SECONDS)
        waited += WAIT_POLL_SECONDS


def run_plan(
    plan: list[Step], selected: list[Step], options: PlanOptions, verbose: int
) -> dict[str, Any]:
    """Run the ``selected`` steps of ``plan`` that are not done; write the results after
    each. Returns the results document.

    Raises:
        StepFailed: a step's command failed, or a step needs one that has not finished.
    """
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    started = time.time() - 1.0  # markers older than this are an earlier invocation's
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    record = read_record(out)
    names = {step.name: step for step in plan}

    def results() -> dict[str, Any]:
        document = collect(
            plan, dataset=options.dataset, protocol=options.protocol, segmenter=options.segmenter
        )
        if rank == 0:
            write_results(out, document)
        return document

    for step in selected:
        if is_done(step, record):
            click.echo(f"{step.name}: done ({step.out})")
            continue
        missing = [name for name in step.needs if not names[name].is_finished()]
        if missing:
            raise StepFailed(
                f"step {step.name} needs the output of {', '.join(missing)}, which has not "
                f"finished: run its group first (--steps {names[missing[0]].group},...)"
            )
        if step.kind in ("predict", "evaluate") and rank != 0:
            wait_for(step, out, started)
        else:
            argv = step_argv(step)
            click.echo(f"{step.name}: samwsss {' '.join(argv)}")
            marker = failure_marker(out, step, rank)
            marker.unlink(missing_ok=True)
            code = run_command(argv, verbose)
            if code not in (0, 3):  # 3: done, some images unreadable (reported by the step)
                if world > 1:
                    atomic_write_text(marker, f"exit code {code}\n")
                raise StepFailed(
                    f"step {step.name} failed (exit code {code}); fix what it reported and "
                    f"run the same reproduce command again: finished steps are skipped and "
                    f"this one resumes. Its command: {step.command}"
                )
            if world > 1:
                wait_for(step, out, started)  # the labelling shards of the other ranks
        if not step.is_finished():
            raise StepFailed(
                f"step {step.name} ended without writing {step.out / step.marker}: its "
                f"command's output above says why. Its command: {step.command}"
            )
        if rank == 0:
            record[step.name] = step.identity
            write_record(out, record)
        results()
    return results()


# -- the command ----------------------------------------------------------------------------------
def print_plan(
    plan: list[Step], selected: list[Step], out: Path, segmenter: str, dataset: str
) -> None:
    """``--dry-run``: each step's state, command and estimated time."""
    record = read_record(out)
    total = 0.0
    click.echo(f"Plan ({len(selected)} of {len(plan)} steps), run folders under {out}:")
    for step in plan:
        if step not in selected:
            state = "not selected"
        elif is_done(step, record):
            state = "done"
        else:
            state = "to run"
        seconds, source = estimate_seconds(step, segmenter, dataset)
        if state == "to run" and seconds is not None:
            total += seconds
        estimate = "no estimate" if seconds is None else f"~{format_duration(seconds)}"
        click.echo(f"\n  [{state}] {step.name} ({step.group}): {estimate}")
        click.echo(f"    {step.command}")
        click.echo(f"    estimate from: {source}")
    click.echo(
        f"\nEstimated time of the steps to run: ~{format_duration(total)} on {ASSUMED_DEVICE} "
        "(an ESTIMATE, not a measurement: see each step's source)."
    )


def _pairs(flag: str, values: Sequence[str]) -> tuple[str, ...]:
    return tuple(item for value in values for item in (flag, value))


def _options(name: str, values: dict[str, Any]) -> tuple[str, ...]:
    """``--name value`` when ``values[name]`` was given."""
    value = values.get(name.replace("-", "_"))
    return () if value is None else (f"--{name}", str(value))


@click.command(
    "reproduce",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("dataset", type=click.Choice(sorted(LAYOUTS)))
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="VOC: VOCdevkit/VOC2012 (with SegmentationClassAug and train_aug); COCO: the root "
    "holding train2014/, val2014/ and annotations/.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Plan folder.")
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="paper",
    show_default=True,
    help="Labelling settings: 'paper' (the survey authors' protocol), 'default' (ours) or "
    "'sam3' (SAM 3 segments and tags).",
)
@click.option(
    "--segmenter",
    default="deeplabv2",
    show_default=True,
    help="Architecture trained on the pseudo masks (samwsss models --kind arch).",
)
@click.option("--upper-bound", is_flag=True, help="Also train the segmenter on the GT.")
@click.option(
    "--steps",
    default=None,
    help=f"Comma-separated step groups to run: {', '.join(GROUPS)} [default: all].",
)
@click.option("--dry-run", is_flag=True, help="Print the plan, weights and estimates; run nothing.")
@click.option(
    "--config",
    "label_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML settings of the labelling runs (text-input, zero-shot --config).",
)
@click.option("--boxer", help="Labelling runs' --boxer.")
@click.option("--masker", help="Labelling runs' --masker.")
@click.option("--tagger", help="Zero-shot runs' --tagger.")
@click.option("--label-batch-size", type=int, help="Labelling runs' --batch-size.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="Labelling runs' --engine.")
@click.option("--ray-address", help="Labelling runs' --ray-address.")
@click.option(
    "--train-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML settings of the training runs (train-segmenter --config).",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Training runs' --set."
)
@click.option("--init", help="Training runs' --init.")
@click.option("--iterations", type=int, help="Training runs' --iterations.")
@click.option("--batch-size", type=int, help="Training runs' --batch-size.")
@click.option("--device", help="Every step's --device.")
@click.option("--workers", type=int, help="Every step's --workers.")
@click.pass_context
def reproduce_command(ctx: click.Context, **values: Any) -> None:
    """Reproduce the survey's Table 1 rows: pseudo masks, zero-shot masks, a segmenter
    trained on the masks, and optionally the fully-supervised upper bound.

    Each step is an ordinary samwsss run in its own folder under --out; rerunning skips
    the finished steps and resumes a killed one. results.md / results.json set our mIoU
    beside the published figures.
    """
    dataset, data, out = values["dataset"], values["data"].resolve(), values["out"].resolve()
    label_config = values["label_config"]
    train_config = values["train_config"]
    labelling = (
        *(("--config", str(label_config.resolve())) if label_config else ()),
        *_options("boxer", values),
        *_options("masker", values),
        *(("--batch-size", str(values["label_batch_size"])) if values["label_batch_size"] else ()),
        *_options("engine", values),
        *_options("ray-address", values),
    )
    training = (
        *(("--config", str(train_config.resolve())) if train_config else ()),
        *_pairs("--set", values["overrides"]),
        *_options("init", values),
        *_options("iterations", values),
        *_options("batch-size", values),
    )
    problems, sizes = layout_problems(dataset, data)
    options = PlanOptions(
        dataset,
        data,
        out,
        protocol=values["protocol"],
        segmenter=values["segmenter"],
        upper_bound=values["upper_bound"],
        labelling=labelling,
        tagging=_options("tagger", values),
        training=training,
        common=(*_options("device", values), *_options("workers", values)),
        sizes=sizes,
    )
    plan = build_plan(options)
    try:
        selected = select_steps(plan, values["steps"])
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--steps") from error
    try:  # a bad model name, --init or --config: its message, before anything runs
        weights = step_weights([step for step in selected if not step.is_finished()], dataset)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    if values["dry_run"]:
        print_plan(plan, selected, out, options.segmenter, dataset)
        click.echo("\nWeights the steps load:")
        for entry in weights:
            state = "here" if entry.available() else "NOT HERE: " + entry.fetch_command()
            click.echo(f"  {entry.kind} {entry.name}: {state}")
        for problem in problems:
            click.echo(f"Data problem: {problem}", err=True)
        return
    if problems:
        raise click.ClickException(
            f"--data {data} does not hold the {dataset.upper()} layout the plan needs:\n  "
            + "\n  ".join(problems)
        )
    try:
        offline = preflight(weights)
    except MissingWeightsError as error:
        raise click.ClickException(str(error)) from error
    verbose = ctx.find_root().params.get("verbose", 0)
    with hub_offline(offline):
        results = run_plan(plan, selected, options, verbose)
    filled = sum(line["ours"] is not None for line in results["lines"])
    click.echo(f"results: {out / 'results.md'} ({filled} of {len(results['lines'])} lines filled)")

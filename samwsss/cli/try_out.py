"""``samwsss try-out``: the whole text-input route on tiny RANDOM models, offline, in seconds.

The command writes a seeded tiny random Grounding DINO and SAM with the builders of the
test suite (:mod:`samwsss.testing`) into ``<out>/tiny-models/``, then runs the real
commands on them, exactly as a user would type them: ``samwsss text-input`` (with the two
local folders as ``--boxer``/``--masker`` and ``--instances``), ``samwsss report`` and
``samwsss export --format coco`` / ``--format yolo-seg``.

The weights are random: the masks mean nothing, only the outputs' formats and the plumbing
are real. That is said at the start and the end of the output, in ``RANDOM_WEIGHTS.txt``
in ``<out>``, in the run folder and in the models folder, and by the models' folder names,
which the run's ``config.yaml``, ``manifest.json`` and HTML report record.

Nothing is downloaded: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set while the
command runs, and every model is a local folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

import samwsss
from samwsss.cli.export import export_command
from samwsss.cli.options import data_option
from samwsss.cli.report import report_command
from samwsss.cli.run import text_input_command

logger = logging.getLogger(__name__)

#: The marker file written into ``--out``, the run folder and the models folder.
MARKER_NAME = "RANDOM_WEIGHTS.txt"
#: Folder names under ``--out``; the model folder names say "random" so that every record
#: of the run (config.yaml, manifest.json, the report's settings) says it too.
MODELS_DIR = "tiny-models"
BOXER_DIR = "random-grounding-dino-tiny"
MASKER_DIR = "random-sam-tiny"
RUN_DIR = "run"
#: The tiny Grounding DINO's processor resize (the real one is 800/1333; this is ~15x
#: faster on a CPU and the outputs keep the input images' sizes either way).
BOXER_EDGES = (128, 213)
#: With the tempered random Grounding DINO this keeps about one box per image and class
#: (random masks are speckled, and every kept box adds a polygon to the YOLO export).
BOX_THRESHOLD = 0.9
#: The run's exit codes that still leave outputs to report and export (0 done, 3 done with
#: some unreadable images; see :mod:`samwsss.cli.exit_codes`).
USABLE_RUN_CODES = (0, 3)

WARNING_LINES = (
    "RANDOM WEIGHTS: this try-out uses tiny models with RANDOM weights, built here.",
    "The masks, boxes, scores and reports are MEANINGLESS; only the outputs' formats are real.",
)
REAL_COMMANDS = (
    "samwsss zero-shot --data examples/images --mapping voc --out runs/examples --overlays 3",
    "samwsss text-input --data examples/images --labels examples/labels.json --mapping voc "
    "--out runs/examples-text --instances --overlays 3",
)


def repository_examples() -> tuple[Path, Path] | None:
    """``(images folder, labels file)`` of the repository's ``examples/``, or ``None``.

    Looks next to the package (an editable install from a checkout) and then in the
    current folder (a command run from the repository); an installed wheel carries no
    ``examples/``.
    """
    package_root = Path(samwsss.__file__).resolve().parent.parent
    for root in (package_root, Path.cwd()):
        images, labels = root / "examples" / "images", root / "examples" / "labels.json"
        if images.is_dir() and labels.is_file():
            return images, labels
    return None


def write_random_models(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the tiny random Grounding DINO and SAM of the tests into ``directory``.

    Grounding DINO is :func:`samwsss.testing.gdino.write_grounding_dino` (``tiny``, class
    logits tempered so that a box threshold cuts them, processor resize
    :data:`BOXER_EDGES`); SAM is :func:`samwsss.testing.sam.build_tiny_sam`. Both are
    ``save_pretrained`` folders, loaded by the run as any local ``--boxer``/``--masker``.

    Returns:
        ``(boxer folder, masker folder)``.
    """
    from samwsss.testing.gdino import write_grounding_dino
    from samwsss.testing.sam import build_tiny_sam

    shortest, longest = BOXER_EDGES
    boxer = write_grounding_dino(
        "tiny", directory / BOXER_DIR, shortest_edge=shortest, longest_edge=longest, seed=seed
    )
    masker = build_tiny_sam(directory / MASKER_DIR, seed=seed)
    return boxer, masker


def marker_text(seed: int) -> str:
    """The text of :data:`MARKER_NAME`."""
    lines = [
        *WARNING_LINES,
        "",
        "These outputs were made by `samwsss try-out`: a tiny Grounding DINO and SAM with",
        f"random weights (seed {seed}), built without any download and saved in {MODELS_DIR}/.",
        "Do not use the masks for anything; they only show what a run writes. For real masks",
        "run (downloads the real weights, several GB, once):",
        "",
        *(f"  {command}" for command in REAL_COMMANDS),
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` in the environment for the
    duration (restored afterwards), so nothing reaches for the Hugging Face Hub."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _banner() -> None:
    """The random-weights warning, framed."""
    rule = "!" * 92
    click.secho(rule, fg="red", bold=True)
    for line in WARNING_LINES:
        click.secho(f"!! {line}", fg="red", bold=True)
    click.secho(rule, fg="red", bold=True)


def _step(command: click.Command, name: str, args: Sequence[str]) -> int:
    """Run the real ``samwsss <name>`` command with ``args`` (echoed first) and return its
    exit code; click errors propagate."""
    click.echo(f"\n$ samwsss {name} {shlex.join(args)}")
    code = command.main(args=list(args), prog_name=f"samwsss {name}", standalone_mode=False)
    return int(code or 0)


def _check_out(out: Path) -> bool:
    """Whether ``out`` holds an earlier try-out (which is then updated); refuse a non-empty
    folder that is not one."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise click.ClickException(f"--out {out} is a file; give a folder")
    if (out / MARKER_NAME).is_file():
        return True
    if any(out.iterdir()):
        raise click.ClickException(
            f"--out {out} is not empty and holds no earlier try-out ({MARKER_NAME}); "
            "give a new or empty folder"
        )
    return False


@click.command("try-out")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/try-out"),
    show_default=True,
    help="Folder for the random models, the run, its report and exports (an earlier "
    "try-out there is updated).",
)
@data_option(
    "Images to run on: anything text-input's --data takes [default: the repository's "
    "examples/images; required when examples/ is not found]."
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Image labels (JSON or CSV) for --data [default: examples/labels.json with the "
    "default --data].",
)
@click.option(
    "--mapping",
    default="voc",
    show_default=True,
    help="Class mapping of the labels: voc, coco or a YAML path.",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Run on at most this many images.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
def try_out_command(
    out: Path, data: str | None, labels: str | None, mapping: str, max_images: int, seed: int
) -> None:
    """Try the whole text-input route offline in under a minute, on tiny RANDOM models.

    Builds a seeded tiny Grounding DINO and SAM with random weights (no download), runs
    the real `samwsss text-input` with them over --data (default: the repository's
    examples/), then `samwsss report` and `samwsss export --format coco` and
    `--format yolo-seg` on that run. THE WEIGHTS ARE RANDOM: the masks are meaningless,
    only the outputs' formats are real; RANDOM_WEIGHTS.txt in --out says so too.

    \b
    Examples:
      samwsss try-out
      samwsss try-out --out /tmp/try --data photos/ --labels labels.json --mapping voc
    """
    started = time.perf_counter()
    if data is None:
        examples = repository_examples()
        if examples is None:
            raise click.UsageError(
                "--data is required here: the repository's examples/ folder is not found (an "
                "installed package does not carry it). Give a folder of images with --labels "
                "(JSON or CSV naming classes of --mapping), or run from a checkout of samwsss."
            )
        data = str(examples[0])
        labels = labels or str(examples[1])
    redo = _check_out(out)
    _banner()
    with offline():
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER_NAME).write_text(marker_text(seed), encoding="utf-8")
        models = out / MODELS_DIR
        click.echo(f"\nbuilding tiny RANDOM models (seed {seed}) in {models} ...")
        boxer, masker = write_random_models(models, seed)
        (models / MARKER_NAME).write_text(marker_text(seed), encoding="utf-8")
        run_dir = out / RUN_DIR
        args = ["--data", data]
        args += ["--labels", str(labels)] if labels else []
        args += ["--mapping", mapping, "--out", str(run_dir)]
        args += ["--boxer", str(boxer), "--masker", str(masker)]
        args += ["--box-threshold", str(BOX_THRESHOLD), "--text-threshold", "0"]
        args += ["--device", "cpu", "--batch-size", "2", "--workers", "0"]
        args += ["--instances", "--overlays", str(max_images), "--max-images", str(max_images)]
        args += ["--overwrite"] if redo else []
        code = _step(text_input_command, "text-input", args)
        if code not in USABLE_RUN_CODES:
            raise click.ClickException(f"samwsss text-input stopped with exit code {code}")
        (run_dir / MARKER_NAME).write_text(marker_text(seed), encoding="utf-8")
        _step(report_command, "report", [str(run_dir)])
        for fmt in ("coco", "yolo-seg"):
            _step(export_command, "export", [str(run_dir), "--format", fmt])
    _summary(out, run_dir, time.perf_counter() - started)


def _summary(out: Path, run_dir: Path, seconds: float) -> None:
    """Where every output lies, the warning again, and the commands of the real thing."""
    click.echo(f"\ntry-out done in {seconds:.0f} s. Outputs (formats real, contents random):")
    rows = [
        ("random models", out / MODELS_DIR),
        ("masks (VOC-palette PNGs)", run_dir / "masks"),
        ("instances (COCO-style JSON, RLE)", run_dir / "instances"),
        ("overlays", run_dir / "overlays"),
        ("settings and manifest", run_dir / "config.yaml"),
        ("", run_dir / "manifest.json"),
        ("HTML report", run_dir / "report" / "index.html"),
        ("COCO results", run_dir / "export" / "coco" / "results.json"),
        ("", run_dir / "export" / "coco" / "dataset.json"),
        ("YOLO-seg labels", run_dir / "export" / "yolo-seg" / "labels"),
        ("", run_dir / "export" / "yolo-seg" / "dataset.yaml"),
        ("this warning, kept", out / MARKER_NAME),
    ]
    for name, path in rows:
        click.echo(f"  {name:34} {path}")
    click.echo("")
    _banner()
    click.echo("For real masks (downloads the real weights, several GB, once; a GPU helps):")
    for command in REAL_COMMANDS:
        click.echo(f"  {command}")

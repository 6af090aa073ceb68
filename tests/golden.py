"""Golden outputs: record every byte a fixed set of CLI runs writes, and compare two records.

A refactor must leave every mask, plain mask, instance file, report and export byte, and
every trained checkpoint's weights, identical. ``record`` runs the package's commands as
users run them (click's ``CliRunner``) on tiny seeded random models and the test suite's
fixture datasets, on the CPU with one torch thread, and writes ``DIR/hashes.json``;
``compare`` lists what differs between two records. Not a pytest module (no ``test_``).

Commands (``source /work/venv/bin/activate`` first; a record takes about 2 minutes, 1 with
``--skip ray``)::

    # the baseline, commit 9239ddd in a worktree outside /work/main (PYTHONPATH picks it)
    git -C /work/main worktree add /tmp/golden-base 9239ddd     # once
    PYTHONPATH=/tmp/golden-base python /work/main/tests/golden.py record /tmp/golden/base

    # the working tree (no PYTHONPATH: the editable install's samwsss, /work/main)
    python /work/main/tests/golden.py record /tmp/golden/new

    python /work/main/tests/golden.py compare /tmp/golden/base /tmp/golden/new [--diff]

``record DIR [--skip NAME,...] [--only NAME,...]``: ``DIR`` must be missing or empty; the
names are those of :data:`RUNS` (``--skip ray`` leaves out the slow Ray run). Exit 1 when a
run failed (its reason is in ``hashes.json`` and ``DIR/logs/<run>.txt``).

``compare A B [--ignore GLOB ...] [--diff]``: per run, the files that differ, are missing
from B or extra in B; a failed run counts too, a run recorded on one side only (skipped)
is named but not compared. ``--diff`` shows a unified diff of each differing text file
(normalised) and, for a checkpoint part, the tensors that differ with the largest absolute
difference. Exit 1 on any difference, 0 on none, 2 on a usage error.

``rehash DIR``: hash a record's files again (after a change of the rules below).

Which tree is measured: ``samwsss`` is imported the normal way (``PYTHONPATH`` first, then
the editable install), and the tree holding that ``samwsss`` also gives the ``tests``
helpers (``tests.data_fixtures``, ``tests.forked_runs``, ``tests.ray_cluster``, ...) and
the Ray workers' ``PYTHONPATH``. ``hashes.json`` records the tree, its ``git describe``
and ``samwsss.__file__``; the first line of output names the tree.

Runs (:data:`RUNS`; each in ``runs/<name>/``): ``text_input`` (VOC train_aug, ``--plain
--instances --overlays 2``), ``text_input_paper`` (the same, ``--preset paper``, two
decode workers), ``zero_shot_grounding`` (COCO, ``--tagger grounding``), ``zero_shot_ram``
(VOC, a tiny RAM++ checkpoint), ``sam3_text_input`` and ``sam3_zero_shot`` (``--preset
sam3``, the tiny SAM 3), ``object_store`` (``--out objdisk://...``, the kill tree with an
unreadable image, exit 3; the objects copied back), ``ray`` (``--engine ray`` on a local
2-CPU cluster), ``report``, ``export_coco``, ``export_yolo`` and ``evaluate`` (of the
text-input run; evaluate also of the COCO run with ``--coco-gt-rule smallest``),
``train_deeplab`` (tiny DeepLabV2, ``--init none``, 2 iterations on the text-input run's
pseudo masks, validation on val, then ``predict`` multi-scale + flip) and
``train_segmenter`` (a tiny SegFormer from a seeded MiT backbone folder, 2 iterations on
the VOC GT, then ``predict`` flip + sliding window). Every run works in
:data:`WORK` (a fixed folder, locked: a second record waits), so the absolute paths that
outputs hold (config.yaml, manifests, the evaluation plot's title) are the same in every
record; the results are then moved to ``DIR``.

``DIR`` also holds ``models/`` (the tiny models, built once per record with the tree's
seeded builders in ``samwsss.testing``, shared by all runs: their hashes show that two
records used the same weights), ``data/`` (the fixture datasets), ``logs/`` (each command
and its output) and ``timings.json`` (seconds per run); the last two are not hashed.

Normalised (everything else is hashed byte for byte):

* paths, in text files and symlink targets: the work folder (and ``DIR``) become
  ``<DIR>``, the measured tree ``<TREE>`` (the YOLO export's image symlinks hash as their
  target);
* keys of :data:`VOLATILE` in JSON/YAML files (a manifest's ``timing`` and ``host``, a
  Ray cluster's free memory, an evaluation's ``elapsed_s``): the file is parsed, the keys
  dropped and the rest hashed (so the other keys still count);
* columns of :data:`VOLATILE_COLUMNS` in CSV files (train_log.csv's seconds, throughput,
  peak GPU memory);
* spans of :data:`VOLATILE_SPANS` (the report page's start time, seconds, throughput);
* checkpoints (``*.pt``, ``*.pth``): hashed as loaded, not as pickle bytes:
  ``<file>#model`` (the model state dict), ``<file>#optimizer`` (the optimizer state),
  ``<file>#rest`` (the other keys: config, iteration, RNG states, ...), each a hash of the
  keys in sorted order with every tensor's dtype, shape and bytes;
* lock folders (``.lock/``) and temporaries (``.tmp-*``) are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Keys dropped from JSON/YAML files before hashing: file glob -> dotted key paths ("*"
#: matches any one key or list index). Each differs run to run with the same code.
VOLATILE: dict[str, tuple[str, ...]] = {
    # a run's manifest: start time, seconds, throughput; the host name; a Ray cluster's
    # memory (what the machine had free when the cluster started)
    "**/manifest*.json": (
        "timing",
        "environment.host",
        "environment.engine.cluster.memory",
        "environment.engine.cluster.object_store_memory",
        "seconds_per_shard",
        "shard_manifests.*.timing",
        "shard_manifests.*.environment.host",
        "shard_manifests.*.environment.engine.cluster.memory",
        "shard_manifests.*.environment.engine.cluster.object_store_memory",
    ),
    # an evaluation report: how long it took
    "**/evaluation*.json": ("elapsed_s",),
}

#: Columns dropped from CSV files before hashing: file glob -> column names.
VOLATILE_COLUMNS: dict[str, tuple[str, ...]] = {
    # the training log: wall time per logged step, throughput, peak GPU memory
    "**/train_log.csv": ("seconds", "images_per_second", "max_memory_mb"),
}

#: Text spans replaced by ``<VOLATILE>`` before hashing: file glob -> regular expressions
#: (group 1, the value, is what is replaced).
VOLATILE_SPANS: dict[str, tuple[str, ...]] = {
    # the report's counts-and-timing table shows the manifest's timing
    "**/report/index.html": (
        r"<th>started</th><td>([^<]*)</td>",
        r"<th>seconds</th><td>([^<]*)</td>",
        r"<th>images_per_second</th><td>([^<]*)</td>",
    ),
}

#: File name patterns never hashed (logs of the harness itself).
NOT_HASHED = ("logs/*", "timings.json", "hashes.json")

#: Files hashed as their loaded tensors (torch.save pickles; see _checkpoint_hashes).
CHECKPOINT_SUFFIXES = {".pt", ".pth"}

TEXT_SUFFIXES = {".json", ".jsonl", ".yaml", ".yml", ".txt", ".html", ".csv", ".log", ".md"}


# --------------------------------------------------------------------------- the tree


def say(text: str) -> None:
    """One line on stdout (the script's report; the package itself logs)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@dataclass
class Tree:
    """The source tree being measured."""

    root: Path
    samwsss_file: Path
    describe: str


def measured_tree() -> Tree:
    """Import ``samwsss`` the normal way and put its tree first on ``sys.path`` (so the
    ``tests`` helpers come from the same tree)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != here]
    import samwsss

    samwsss_file = Path(samwsss.__file__).resolve()
    root = samwsss_file.parents[1]
    own = here.parent
    if (
        (own / "samwsss" / "__init__.py").is_file()
        and own != root
        and not os.environ.get("PYTHONPATH")
    ):
        say(
            f"note: measuring {root} (its samwsss is the one imported), not {own} (this "
            f"script's tree); PYTHONPATH={own} measures that one"
        )
    if not (root / "tests" / "data_fixtures.py").is_file():
        raise SystemExit(f"{root} (the tree of {samwsss_file}) has no tests/ helpers")
    sys.path.insert(0, str(root))
    import tests

    if Path(tests.__file__).resolve().parent != root / "tests":
        raise SystemExit(f"tests imported from {tests.__file__}, not {root / 'tests'}")
    try:
        describe = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        describe = "unknown"
    return Tree(root, samwsss_file, describe)


# --------------------------------------------------------------------------- recording


#: The run settings, fixed here (not read from the measured tree's tests, which may change):
#: tests/test_cli_zero_shot_ram.py's tags that always fire (threshold 0; the others 1),
RAM_FIRED = ("cat", "dog", "person")
#: tests/test_deeplab_cli.py's tiny DeepLabV2 (TINY_MODEL),
DEEPLAB_CONFIG = {
    "model": {
        "backbone": "custom",
        "backbone_layers": [1, 1, 1, 1],
        "width_per_group": 8,
        "atrous_rates": [1, 2],
    },
    "train": {
        "iterations": 2,
        "batch_size": 2,
        "crop_size": 32,
        "workers": 0,
        "checkpoint_every": 1,
    },
}
#: tests/test_train_segmenter_archs.py's training settings of a tiny backbone.
SEGMENTER_CONFIG = {
    "iterations": 2,
    "batch_size": 2,
    "crop_size": 64,
    "workers": 0,
    "checkpoint_every": 1,
}


@dataclass
class Context:
    """What the runs share: the record folder, the models and the datasets."""

    out: Path
    tree: Tree
    models: dict[str, Path] = field(default_factory=dict)
    data: dict[str, Path] = field(default_factory=dict)

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def tiny_run_options(self) -> list[str]:
        """The tests' ``tiny_run_options`` (tests/conftest.py) on one torch thread."""
        return [
            "--boxer", str(self.models["gdino"]), "--masker", str(self.models["sam"]),
            "--box-threshold", "0.2", "--text-threshold", "0", "--device", "cpu",
            "--batch-size", "2", "--threads", "1",
        ]  # fmt: skip


class RunFailed(Exception):
    """A command exited with an unexpected code."""


def invoke(ctx: Context, name: str, args: list[str], expect: int = 0) -> None:
    """``samwsss <args>`` through click's CliRunner; the output goes to ``logs/<name>.txt``."""
    from click.testing import CliRunner

    from samwsss.cli import cli

    result = CliRunner().invoke(cli, args)
    log = ctx.out / "logs" / f"{name}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ samwsss {' '.join(args)}\n{result.output}\n")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            handle.write("".join(traceback.format_exception(result.exception)))
        handle.write(f"exit code {result.exit_code}\n\n")
    if result.exit_code != expect:
        raise RunFailed(f"samwsss {args[0]} exited {result.exit_code}, expected {expect}")


def build_models(ctx: Context) -> None:
    """The tiny random models, once per record, with the builders' fixed seeds."""
    from samwsss.testing.gdino import build_tiny_grounding_dino
    from samwsss.testing.ram import official_state_dict, tiny_config, write_checkpoint
    from samwsss.testing.sam import build_tiny_sam
    from samwsss.testing.sam3 import build_tiny_sam3
    from samwsss.testing.segnets import write_tiny_backbone

    models = ctx.out / "models"
    models.mkdir(parents=True)
    # the arguments of tests/conftest.py (tiny_gdino_small_dir, tiny_sam_session_dir)
    ctx.models["gdino"] = build_tiny_grounding_dino(
        models / "gdino_small", shortest_edge=128, longest_edge=213
    )
    ctx.models["sam"] = build_tiny_sam(models / "sam")
    ctx.models["sam3"] = build_tiny_sam3(models / "sam3")
    # tests/test_cli_zero_shot_ram.py: a tiny RAM++ in the authors' layout, seed 4
    ctx.models["ram"] = write_checkpoint(
        models / "tiny_ram_plus.pth", official_state_dict(tiny_config("ram_plus"), seed=4)
    )
    ctx.models["mit"] = write_tiny_backbone("mit", models / "mit")


def build_data(ctx: Context) -> None:
    """The fixture datasets of tests/data_fixtures.py and tests/forked_runs.py."""
    from tests.data_fixtures import make_coco_tree, make_voc_tree
    from tests.forked_runs import make_kill_tree

    data = ctx.out / "data"
    ctx.data["voc"] = make_voc_tree(data / "voc")
    ctx.data["coco"] = make_coco_tree(data / "coco")
    ctx.data["kill"] = make_kill_tree(data / "kill")
    # the RAM vocabulary and thresholds of tests/test_cli_zero_shot_ram.py (RAM_FIRED tags
    # always fire, the others never)
    from samwsss.testing.ram import TINY_TAGS

    ram = data / "ram"
    ram.mkdir(parents=True)
    ctx.data["ram_vocabulary"] = ram / "tags.txt"
    ctx.data["ram_vocabulary"].write_text("".join(f"{t}\n" for t in TINY_TAGS), encoding="utf-8")
    ctx.data["ram_thresholds"] = ram / "thresholds.txt"
    ctx.data["ram_thresholds"].write_text(
        "".join(f"{0.0 if t in RAM_FIRED else 1.0}\n" for t in TINY_TAGS), encoding="utf-8"
    )


def _voc_text_input(ctx: Context, out: Path | str, *extra: str) -> list[str]:
    """The text-input run of tests/test_cli_run.py (voc_run) on one torch thread."""
    return [
        "text-input", "--data", str(ctx.data["voc"]), "--split", "train_aug",
        "--out", str(out), "--plain", "--instances", "--overlays", "2",
        "--workers", "0", *ctx.tiny_run_options(), *extra,
    ]  # fmt: skip


def run_text_input(ctx: Context, name: str) -> None:
    invoke(ctx, name, _voc_text_input(ctx, ctx.run_dir(name)))


def run_text_input_paper(ctx: Context, name: str) -> None:
    # two decode workers: the paper preset resizes there (tests/test_paper_preset.py)
    args = _voc_text_input(ctx, ctx.run_dir(name), "--preset", "paper")
    args[args.index("--workers") + 1] = "2"
    invoke(ctx, name, args)


def run_zero_shot_grounding(ctx: Context, name: str) -> None:
    invoke(
        ctx, name,
        ["zero-shot", "--data", str(ctx.data["coco"] / "val2014"), "--out",
         str(ctx.run_dir(name)), "--tagger", "grounding", "--instances", "--plain",
         "--workers", "0", *ctx.tiny_run_options()],
    )  # fmt: skip


def run_zero_shot_ram(ctx: Context, name: str) -> None:
    invoke(
        ctx, name,
        ["zero-shot", "--data", str(ctx.data["voc"]), "--split", "train_aug",
         "--out", str(ctx.run_dir(name)), "--tagger", str(ctx.models["ram"]),
         "--ram-vocabulary", str(ctx.data["ram_vocabulary"]),
         "--ram-thresholds", str(ctx.data["ram_thresholds"]), "--instances",
         "--workers", "0", *ctx.tiny_run_options()],
    )  # fmt: skip


def _sam3_args(ctx: Context, route: str, out: Path) -> list[str]:
    """tests/test_sam3_pipeline.py's run."""
    return [
        route, "--data", str(ctx.data["voc"]), "--split", "train_aug", "--out", str(out),
        "--preset", "sam3", "--segmenter", str(ctx.models["sam3"]),
        "--segment-threshold", "0.2", "--device", "cpu", "--workers", "0", "--instances",
        "--batch-size", "2", "--threads", "1",
    ]  # fmt: skip


def run_sam3_text_input(ctx: Context, name: str) -> None:
    invoke(ctx, name, _sam3_args(ctx, "text-input", ctx.run_dir(name)))


def run_sam3_zero_shot(ctx: Context, name: str) -> None:
    invoke(ctx, name, [*_sam3_args(ctx, "zero-shot", ctx.run_dir(name)), "--tag-threshold", "0.3"])


def run_object_store(ctx: Context, name: str) -> None:
    """tests/test_remote_runs.py's run (the kill tree: 3 images and an unreadable one, exit
    3) with ``--out`` on ``objdisk://`` (whole-object puts, no rename); the store's
    folder is then copied (objects only) into the run folder."""
    from samwsss.cli.exit_codes import ExitCode
    from samwsss.testing import object_disk
    from tests.forked_runs import run_args

    object_disk.register()
    store = ctx.out / "store" / "bucket" / "run"
    url = f"objdisk://{store}"
    args = run_args(ctx.data["kill"], url, ctx.tiny_run_options())
    invoke(ctx, name, args, expect=int(ExitCode.DONE_WITH_UNREADABLE))
    import fsspec

    fs = fsspec.filesystem(object_disk.PROTOCOL)
    local = ctx.run_dir(name)
    for obj in fs.find(str(store)):
        target = local / Path(obj).relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fs.cat_file(obj))
    shutil.rmtree(ctx.out / "store")


def run_ray(ctx: Context, name: str) -> None:
    """tests/test_ray_engine.py's run on a local 2-CPU cluster (tests/ray_cluster.py)."""
    from tests.ray_cluster import local_ray_cluster

    ray_args = ["--engine", "ray", "--ray-actors", "1", "--ray-decode-tasks", "1"]
    with local_ray_cluster():
        invoke(ctx, name, [*_voc_text_input(ctx, ctx.run_dir(name)), *ray_args])


def run_report(ctx: Context, name: str) -> None:
    source = ctx.run_dir("text_input")
    invoke(
        ctx, name,
        ["report", str(source), "--data", str(ctx.data["voc"]), "--split", "train_aug",
         "--out", str(ctx.run_dir(name)), "--workers", "1"],
    )  # fmt: skip


def run_export_coco(ctx: Context, name: str) -> None:
    source = ctx.run_dir("text_input")
    invoke(ctx, name, ["export", str(source), "--format", "coco", "--out", str(ctx.run_dir(name))])


def run_export_yolo(ctx: Context, name: str) -> None:
    source = ctx.run_dir("text_input")
    invoke(
        ctx, name, ["export", str(source), "--format", "yolo-seg", "--out", str(ctx.run_dir(name))]
    )


def run_evaluate(ctx: Context, name: str) -> None:
    """``evaluate`` of the text-input run's plain masks against the VOC GT, and of the
    COCO zero-shot masks against the COCO GT with the ``smallest`` rule."""
    out = ctx.run_dir(name)
    invoke(
        ctx, name,
        ["evaluate", "--pred", str(ctx.run_dir("text_input") / "masks_plain"),
         "--data", str(ctx.data["voc"]), "--split", "train_aug", "--workers", "0",
         "--report", str(out / "evaluation_voc.json"), "--plot", str(out / "evaluation_voc.png")],
    )  # fmt: skip
    invoke(
        ctx, name,
        ["evaluate", "--pred", str(ctx.run_dir("zero_shot_grounding") / "masks"),
         "--data", str(ctx.data["coco"] / "val2014"), "--coco-gt-rule", "smallest",
         "--workers", "0", "--report", str(out / "evaluation_coco.json"),
         "--plot", str(out / "evaluation_coco.png")],
    )  # fmt: skip


def run_train_deeplab(ctx: Context, name: str) -> None:
    """train-deeplab (tests/test_deeplab_cli.py's tiny model, --init none) on the
    text-input run's pseudo masks, validating on val at the end, then predict (scales
    0.75,1,1.25, flip) on val."""
    import yaml

    out = ctx.run_dir(name)
    out.mkdir(parents=True)
    config = out / "tiny.yaml"
    config.write_text(yaml.safe_dump(DEEPLAB_CONFIG), encoding="utf-8")
    voc = str(ctx.data["voc"])
    invoke(
        ctx, name,
        ["train-deeplab", "--data", voc, "--split", "train_aug",
         "--masks", str(ctx.run_dir("text_input") / "masks"), "--out", str(out / "train"),
         "--config", str(config), "--init", "none", "--device", "cpu", "--set", "lr=0.001",
         "--val-split", "val", "--val-every", "2"],
    )  # fmt: skip
    invoke(
        ctx, name,
        ["predict", "--checkpoint", str(out / "train" / "model_final.pt"), "--data", voc,
         "--split", "val", "--out", str(out / "predict"), "--scales", "0.75,1,1.25",
         "--flip", "--workers", "0", "--device", "cpu"],
    )  # fmt: skip


def run_train_segmenter(ctx: Context, name: str) -> None:
    """train-segmenter with a tiny SegFormer (a seeded MiT backbone folder as --arch, as in
    tests/test_train_segmenter_archs.py) on the VOC GT, then predict (flip, 32-pixel sliding
    windows as in tests/test_segmenter_trainer.py) on val."""
    import yaml

    out = ctx.run_dir(name)
    out.mkdir(parents=True)
    config = out / "tiny.yaml"
    config.write_text(yaml.safe_dump(SEGMENTER_CONFIG), encoding="utf-8")
    voc = str(ctx.data["voc"])
    invoke(
        ctx, name,
        ["train-segmenter", "--arch", str(ctx.models["mit"]), "--data", voc, "--split",
         "train_aug", "--out", str(out / "train"), "--config", str(config), "--device", "cpu"],
    )  # fmt: skip
    invoke(
        ctx, name,
        ["predict", "--checkpoint", str(out / "train" / "model_final.pt"), "--data", voc,
         "--split", "val", "--out", str(out / "predict"), "--workers", "0", "--device", "cpu",
         "--flip", "--sliding-window", "--window", "32"],
    )  # fmt: skip


#: The runs, in order (later ones read earlier ones' outputs).
RUNS: dict[str, Callable[[Context, str], None]] = {
    "text_input": run_text_input,
    "text_input_paper": run_text_input_paper,
    "zero_shot_grounding": run_zero_shot_grounding,
    "zero_shot_ram": run_zero_shot_ram,
    "sam3_text_input": run_sam3_text_input,
    "sam3_zero_shot": run_sam3_zero_shot,
    "object_store": run_object_store,
    "ray": run_ray,
    "report": run_report,
    "export_coco": run_export_coco,
    "export_yolo": run_export_yolo,
    "evaluate": run_evaluate,
    "train_deeplab": run_train_deeplab,
    "train_segmenter": run_train_segmenter,
}

#: Runs that read another run's outputs.
NEEDS: dict[str, tuple[str, ...]] = {
    "report": ("text_input",),
    "export_coco": ("text_input",),
    "export_yolo": ("text_input",),
    "evaluate": ("text_input", "zero_shot_grounding"),
    "train_deeplab": ("text_input",),
}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread in this process (commands without ``--threads``: training,
    predict), as tests/torch_fixtures.py's ``one_torch_thread``."""
    from tests.torch_fixtures import one_torch_thread

    with one_torch_thread():
        yield


#: Where every record runs: the same absolute paths in every record, so outputs that show
#: a path (the evaluation plot's title, config.yaml, the report) match byte for byte.
WORK = Path(tempfile.gettempdir()) / "samwsss-golden-work"


@contextlib.contextmanager
def work_folder() -> Iterator[Path]:
    """:data:`WORK`, emptied, held under a lock (a second record waits for the first)."""
    import fcntl

    lock_path = WORK.with_name(WORK.name + ".lock")
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another record ({lock_path} is locked)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        try:
            yield WORK
        finally:
            shutil.rmtree(WORK, ignore_errors=True)


def record(out: Path, skip: set[str], only: set[str] | None) -> int:
    """Run every run (in :data:`WORK`), hash the outputs, move them to ``out`` with
    ``out/hashes.json``; 1 if a run failed."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    tree = measured_tree()
    import tests.conftest as conftest  # the test session's environment: offline, caches

    shutil.rmtree(conftest._CACHE, ignore_errors=True)  # its caches go into WORK instead
    say(f"recording {tree.root} ({tree.describe}) into {out}")
    with work_folder() as work:
        cache = work / "cache"
        os.environ["SAMWSSS_CACHE"] = str(cache / "samwsss")
        os.environ["TORCH_HOME"] = str(cache / "torch")
        failed, timings = run_all(Context(work, tree), skip, only)
        meta = {
            "tree": str(tree.root),
            "describe": tree.describe,
            "samwsss": str(tree.samwsss_file),
            "work": str(work),
            "runs": [n for n in RUNS if n not in skip and (only is None or n in only)],
            "failed": failed,
        }
        shutil.rmtree(cache, ignore_errors=True)
        count = write_hashes(work, meta)
        for item in sorted(work.iterdir()):
            shutil.move(item, out / item.name)
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")
    say(f"{count} hashes in {out / 'hashes.json'}; {timings['total']} s in all")
    if failed:
        say(f"failed runs: {', '.join(failed)} (see {out / 'logs'})")
        return 1
    return 0


def run_all(
    ctx: Context, skip: set[str], only: set[str] | None
) -> tuple[dict[str, str], dict[str, float]]:
    """Build the models and data, then every run of :data:`RUNS` not skipped; returns the
    failed runs (name -> reason) and the seconds each step took."""
    timings: dict[str, float] = {}
    failed: dict[str, str] = {}
    started = time.perf_counter()
    with one_thread():
        for name, step in (("models", build_models), ("data", build_data)):
            begin = time.perf_counter()
            step(ctx)
            timings[name] = round(time.perf_counter() - begin, 1)
        for name, run in RUNS.items():
            if name in skip or (only is not None and name not in only):
                continue
            missing = [n for n in NEEDS.get(name, ()) if n in failed or not ctx.run_dir(n).exists()]
            if missing:
                failed[name] = f"needs the run {', '.join(missing)}"
                say(f"{name}: not run ({failed[name]})")
                continue
            begin = time.perf_counter()
            try:
                run(ctx, name)
            except Exception as error:  # noqa: BLE001 -- recorded, the next run goes on
                failed[name] = f"{type(error).__name__}: {error}"
                log = ctx.out / "logs" / f"{name}.txt"
                log.parent.mkdir(parents=True, exist_ok=True)
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(traceback.format_exc())
            timings[name] = round(time.perf_counter() - begin, 1)
            status = f"FAILED ({failed[name]})" if name in failed else "ok"
            say(f"{name}: {status} in {timings[name]} s")
    timings["total"] = round(time.perf_counter() - started, 1)
    return failed, timings


# --------------------------------------------------------------------------- hashing


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _matches(name: str, pattern: str) -> bool:
    """``fnmatch`` where a leading ``**/`` also matches no folder at all."""
    return fnmatch.fnmatch(name, pattern) or (
        pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])
    )


def _rules(table: dict[str, tuple[str, ...]], name: str) -> list[str]:
    return [rule for pattern, rules in table.items() if _matches(name, pattern) for rule in rules]


def _replace_paths(text: str, paths: dict[str, str]) -> str:
    """Each absolute path of ``paths`` (longest first) replaced by its placeholder."""
    for path, placeholder in sorted(paths.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, placeholder)
    return text


def _drop(value: Any, parts: list[str]) -> None:
    """Remove the dotted key path ``parts`` ("*": every key or index) from ``value``."""
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        for key in list(value) if head == "*" else [head] if head in value else []:
            if rest:
                _drop(value[key], rest)
            else:
                del value[key]
    elif isinstance(value, list) and head == "*" and rest:
        for item in value:
            _drop(item, rest)


def _tensor_hash(tensor: Any) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    import torch

    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}:{list(tensor.shape)}:".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _canonical(value: Any, paths: dict[str, str]) -> Any:
    """``value`` as JSON-able data: paths replaced, tensors and arrays by their hashes."""
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {str(key): _canonical(item, paths) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item, paths) for item in value]
    if isinstance(value, str | Path):
        return _replace_paths(str(value), paths)
    if isinstance(value, torch.Tensor):
        return f"tensor:{_tensor_hash(value)}"
    if isinstance(value, np.ndarray):
        return f"ndarray:{value.dtype}:{list(value.shape)}:{_sha(value.tobytes())}"
    if isinstance(value, bytes):
        return f"bytes:{_sha(value)}"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return f"{type(value).__name__}:{_replace_paths(repr(value), paths)}"


def _state_hash(state: Any, paths: dict[str, str]) -> str:
    """The hash of a (nested) state, keys sorted, tensors by dtype, shape and bytes."""
    return _sha(json.dumps(_canonical(state, paths), sort_keys=True).encode())


def _checkpoint_hashes(path: Path, name: str, paths: dict[str, str]) -> dict[str, str]:
    """``name#model``, ``name#optimizer`` and ``name#rest`` (the other keys, normalised)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict):
        return {f"{name}#rest": _state_hash(state, paths)}
    state = dict(state)
    hashes = {
        f"{name}#{key}": _state_hash(state.pop(key), paths)
        for key in ("model", "optimizer")
        if key in state
    }
    for key in _rules(VOLATILE, name):
        _drop(state, key.split("."))
    hashes[f"{name}#rest"] = _state_hash(state, paths)
    return hashes


def _normalised_text(path: Path, name: str, text: str, pretty: bool = False) -> str:
    """``text`` with the volatile keys, columns and spans of ``name`` taken out.

    A JSON/YAML file with volatile keys is parsed, the keys dropped and the rest dumped as
    JSON in its own key order (a change of key order still shows); one without is hashed
    as it is, unless ``pretty`` (for a diff: JSON indented).
    """
    suffix = path.suffix.lower()
    keys = _rules(VOLATILE, name)
    if (keys or pretty) and suffix in (".json", ".yaml", ".yml"):
        import yaml

        try:
            value = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):  # not JSON/YAML after all: hashed as text
            value = None
        if value is not None and (keys or suffix == ".json"):
            for key in keys:
                _drop(value, key.split("."))
            text = json.dumps(value, indent=1)
    columns = set(_rules(VOLATILE_COLUMNS, name))
    if columns and suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        keep = [i for i, column in enumerate(rows[0] if rows else []) if column not in columns]
        text = "\n".join(",".join(row[i] for i in keep if i < len(row)) for row in rows)
    for span in _rules(VOLATILE_SPANS, name):
        text = re.sub(span, lambda m: m.group(0).replace(m.group(1), "<VOLATILE>"), text)
    return text


def file_hashes(path: Path, name: str, paths: dict[str, str]) -> dict[str, str]:
    """The hash entries of one file (three for a checkpoint)."""
    if path.is_symlink():
        return {name: "symlink:" + _sha(_replace_paths(os.readlink(path), paths).encode())}
    if path.suffix in CHECKPOINT_SUFFIXES:
        return _checkpoint_hashes(path, name, paths)
    data = path.read_bytes()
    if path.suffix.lower() in TEXT_SUFFIXES:
        with contextlib.suppress(UnicodeDecodeError):
            text = _replace_paths(data.decode("utf-8"), paths)
            data = _normalised_text(path, name, text).encode("utf-8")
    return {name: _sha(data)}


def group_of(name: str) -> str:
    """``runs/<run>/...`` -> ``<run>``; ``models/...`` -> ``models``; ``data/...`` -> ``data``."""
    parts = name.split("/")
    return parts[1] if parts[0] == "runs" and len(parts) > 2 else parts[0]


def hash_record(out: Path, paths: dict[str, str]) -> dict[str, dict[str, str]]:
    """``{group: {relative path[#part]: sha256}}`` of every file under ``out``."""
    groups: dict[str, dict[str, str]] = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        parts = path.relative_to(out).parts
        if path.is_dir() and not path.is_symlink():
            continue
        if any(_matches(name, pattern) for pattern in NOT_HASHED):
            continue
        if ".lock" in parts or path.name.startswith(".tmp-"):
            continue
        groups.setdefault(group_of(name), {}).update(file_hashes(path, name, paths))
    return groups


def write_hashes(out: Path, meta: dict[str, Any]) -> int:
    """Hash every file of the record ``out`` into ``out/hashes.json`` (with ``meta``: the
    tree, its cache folder, the failed runs); returns the number of hashes."""
    paths = {str(out): "<DIR>", meta["work"]: "<DIR>", meta["tree"]: "<TREE>"}
    files = hash_record(out, paths)
    payload = {**meta, "files": files}
    text = json.dumps(payload, indent=1, sort_keys=True) + "\n"
    (out / "hashes.json").write_text(text, encoding="utf-8")
    return sum(len(group) for group in files.values())


def rehash(out: Path) -> int:
    """Hash a record's files again (after a change of the normalisation rules)."""
    out = out.resolve()
    meta = json.loads((out / "hashes.json").read_text(encoding="utf-8"))
    meta.pop("files")
    say(f"{write_hashes(out, meta)} hashes in {out / 'hashes.json'}")
    return 0


# --------------------------------------------------------------------------- comparing


def _record_paths(out: Path, meta: dict[str, Any]) -> dict[str, str]:
    """The path placeholders of the record ``out`` (see :func:`write_hashes`)."""
    return {str(out.resolve()): "<DIR>", meta["work"]: "<DIR>", meta["tree"]: "<TREE>"}


def _show_text_diff(first: Path, second: Path, metas: list[dict[str, Any]], name: str) -> None:
    """A unified diff (at most 40 lines) of a text file's normalised copies."""
    import difflib

    texts = []
    for out, meta in zip((first, second), metas, strict=True):
        path = out / name
        text = _replace_paths(path.read_text(encoding="utf-8"), _record_paths(out, meta))
        texts.append(_normalised_text(path, name, text, pretty=True).splitlines())
    lines = list(
        difflib.unified_diff(texts[0], texts[1], "A/" + name, "B/" + name, lineterm="", n=1)
    )
    for line in lines[:40]:
        say("      " + line[:200])
    if len(lines) > 40:
        say(f"      ... {len(lines) - 40} more lines")


def _show_checkpoint_diff(first: Path, second: Path, name: str) -> None:
    """The tensors of a checkpoint part (``file.pt#model``) that differ, with the largest
    absolute difference."""
    import torch

    file, _, part = name.partition("#")
    states = [
        torch.load(out / file, map_location="cpu", weights_only=False) for out in (first, second)
    ]
    if part != "rest":
        states = [state.get(part, {}) for state in states]
    flat = [dict(_flatten(state)) for state in states]
    keys = sorted(set(flat[0]) | set(flat[1]))
    shown = 0
    for key in keys:
        left, right = flat[0].get(key), flat[1].get(key)
        if isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor):
            if left.shape != right.shape or left.dtype != right.dtype:
                note = f"{left.dtype}{list(left.shape)} vs {right.dtype}{list(right.shape)}"
            elif torch.equal(left, right):
                continue
            else:
                delta = (left.double() - right.double()).abs().max().item()
                note = f"max |A - B| = {delta:.3g}"
        elif repr(left) == repr(right):
            continue
        else:
            note = f"{repr(left)[:60]} vs {repr(right)[:60]}"
        if shown < 20:
            say(f"      {key}: {note}")
        shown += 1
    if shown > 20:
        say(f"      ... {shown - 20} more")


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}{key}.")
    elif isinstance(value, list | tuple) and not all(isinstance(v, int | float) for v in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}{index}.")
    else:
        yield prefix.rstrip("."), value


def compare(first: Path, second: Path, ignore: list[str], diff: bool = False) -> int:
    """Print, per run, the files of two records that differ, are missing from B or extra
    in B (with ``diff``: what differs in text files and checkpoints); 1 if any, else 0.

    A run recorded in one record only (``--skip``/``--only``) is named and not compared.
    """
    a = json.loads((first / "hashes.json").read_text(encoding="utf-8"))
    b = json.loads((second / "hashes.json").read_text(encoding="utf-8"))
    say(f"A: {first} ({a['describe']}, {a['tree']})")
    say(f"B: {second} ({b['describe']}, {b['tree']})")
    problems = 0
    for label, record_ in (("A", a), ("B", b)):
        for name, reason in sorted(record_.get("failed", {}).items()):
            say(f"run {name} failed in {label}: {reason}")
            problems += 1
    runs_a, runs_b = set(a.get("runs", RUNS)), set(b.get("runs", RUNS))
    for group in sorted(set(a["files"]) | set(b["files"])):
        if group in RUNS and (group not in runs_a or group not in runs_b):
            side = "B" if group not in runs_b else "A"
            say(f"{group}: not recorded in {side}, not compared")
            continue
        files_a, files_b = a["files"].get(group, {}), b["files"].get(group, {})
        lines: list[tuple[str, str]] = []
        for name in sorted(set(files_a) | set(files_b)):
            if any(_matches(name, pattern) for pattern in ignore):
                continue
            if name not in files_b:
                lines.append(("missing", name))
            elif name not in files_a:
                lines.append(("extra", name))
            elif files_a[name] != files_b[name]:
                lines.append(("differs", name))
        differing = sum(kind == "differs" for kind, _ in lines)
        same = len(set(files_a) & set(files_b)) - differing
        say(f"{group}: {same} identical" + (f", {len(lines)} not:" if lines else ""))
        for kind, name in lines:
            say(f"  {kind:8} {name}")
            if diff and kind == "differs":
                if "#" in name:
                    _show_checkpoint_diff(first, second, name)
                elif Path(name).suffix.lower() in TEXT_SUFFIXES:
                    with contextlib.suppress(UnicodeDecodeError):
                        _show_text_diff(first, second, [a, b], name)
        problems += len(lines)
    say("no difference" if not problems else f"{problems} differences")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="run every run into DIR and hash the outputs")
    rec.add_argument("dir", type=Path)
    rec.add_argument("--skip", default="", help=f"runs to leave out, of: {', '.join(RUNS)}")
    rec.add_argument("--only", default=None, help="run only these (comma-separated)")
    cmp = commands.add_parser("compare", help="differences between two records")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    cmp.add_argument("--ignore", action="append", default=[], help="glob of names to ignore")
    cmp.add_argument("--diff", action="store_true", help="show what differs in each file")
    again = commands.add_parser("rehash", help="hash a record's files again (same rules)")
    again.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "rehash":
        return rehash(args.dir)
    if args.command == "compare":
        return compare(args.a, args.b, args.ignore, args.diff)
    skip = {s for s in args.skip.split(",") if s}
    only = {s for s in args.only.split(",") if s} if args.only else None
    unknown = (skip | (only or set())) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    return record(args.dir, skip, only)


if __name__ == "__main__":
    sys.exit(main())

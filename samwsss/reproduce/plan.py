"""The plan of ``samwsss reproduce``: the survey's protocol as ordinary ``samwsss`` runs.

For VOC 2012 (COCO 2014 the same with its splits; the segmenter's iterations and batch are
its recipe's for the dataset, e.g. DeepLabV2's 20k/10 on VOC and 100k/10 on COCO):

====================  ===========  =================================================
step                  group        command (its run folder is ``DIR/<step>``)
====================  ===========  =================================================
text-input            masks        ``text-input`` over ``train_aug``: the pseudo masks
text-input-pm         masks        ``evaluate`` them on ``train`` (the survey's P.M.;
                                   COCO: the run's own evaluation on ``train2014``)
zero-shot-train       zero-shot    ``zero-shot`` over ``train`` (P.M.)
zero-shot-val         zero-shot    ``zero-shot`` over ``val`` (evaluated directly)
train                 train        ``train-segmenter`` on the text-input masks
predict               predict      ``predict`` ``val`` (multi-scale + flip), evaluated
upper-bound-train     upper-bound  ``train-segmenter`` on the ground truth (optional)
upper-bound-predict   upper-bound  ``predict`` ``val`` with it
====================  ===========  =================================================

Each step is a run folder of its own command (identity, lock, resume, manifest); a step is
done when its command's final file exists (:attr:`Step.marker`) and the command that made
it is the one planned now (:mod:`samwsss.cli.reproduce` records it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

#: The step groups ``--steps`` selects, in plan order.
GROUPS = ("masks", "zero-shot", "train", "predict", "upper-bound")
#: ``--protocol`` -> the labelling runs' ``--preset``.
PROTOCOLS = ("paper", "default", "sam3")
#: The test-time augmentation of the ``predict`` steps (the DeepLab family's usual one).
TTA_SCALES = "0.5,0.75,1,1.25,1.5"


@dataclass(frozen=True)
class DatasetLayout:
    """What one dataset's plan needs.

    Attributes:
        name: ``"voc"`` or ``"coco"``.
        masks_split: split the text-input pseudo masks (and the segmenter) are made on.
        pm_split: split the pseudo masks are scored on (the survey's P.M. column).
        val_split: split the segmenter and the zero-shot masks are scored on.
        sizes: images per split in the official release (the ``--dry-run`` estimate's
            image counts when the data cannot be read).
        folders: folders under ``--data`` the plan reads.
    """

    name: str
    masks_split: str
    pm_split: str
    val_split: str
    sizes: dict[str, int]
    folders: tuple[str, ...]


LAYOUTS: dict[str, DatasetLayout] = {
    "voc": DatasetLayout(
        "voc",
        masks_split="train_aug",
        pm_split="train",
        val_split="val",
        sizes={"train_aug": 10582, "train": 1464, "val": 1449},
        folders=("JPEGImages", "SegmentationClass", "SegmentationClassAug"),
    ),
    "coco": DatasetLayout(
        "coco",
        masks_split="train2014",
        pm_split="train2014",
        val_split="val2014",
        sizes={"train2014": 82783, "val2014": 40504},
        folders=("train2014", "val2014", "annotations"),
    ),
}


@dataclass(frozen=True)
class Step:
    """One step of the plan: a ``samwsss`` command and its run folder.

    Attributes:
        name: the step's name, also its folder under ``--out``.
        group: the ``--steps`` group it belongs to (:data:`GROUPS`).
        argv: the command line after ``samwsss`` (every path absolute).
        out: its run folder.
        marker: the file under ``out`` whose presence means the command finished.
        kind: ``"label"`` (a labelling run, sharded under torchrun), ``"train"`` (DDP under
            torchrun), ``"predict"`` or ``"evaluate"`` (rank 0 only).
        images: images the step reads (for the estimate); ``None`` for training.
        cell: ``(row, column)`` of the table the step's evaluation fills, if any.
        needs: steps whose outputs it reads.
    """

    name: str
    group: str
    argv: tuple[str, ...]
    out: Path
    marker: str
    kind: str
    images: int | None = None
    cell: tuple[str, str] | None = None
    needs: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The step as a shell line (``samwsss ...``)."""
        return shlex.join(("samwsss", *self.argv))

    @property
    def identity(self) -> list[str]:
        """``argv`` without the options that change speed, not outputs (``--workers``,
        ``--engine``, ``--ray-address``; a labelling run's ``--batch-size``): what must
        match for a finished step to count as this step."""
        speed = {"--workers", "--engine", "--ray-address"}
        if self.kind == "label":
            speed.add("--batch-size")
        kept: list[str] = []
        skip = False
        for item in self.argv:
            if skip:
                skip = False
            elif item in speed:
                skip = True
            else:
                kept.append(item)
        return kept

    def is_finished(self) -> bool:
        """Whether the step's command has written its final file."""
        return (self.out / self.marker).is_file()


@dataclass(frozen=True)
class PlanOptions:
    """What ``samwsss reproduce`` was asked for (see its ``--help``).

    ``labelling``, ``tagging``, ``training`` and ``predicting`` are option lists passed on as
    they are to every labelling command (``text-input``/``zero-shot``), zero-shot command,
    training command (``train-segmenter``) and ``predict``; ``common`` goes to every
    command that loads a model.
    """

    dataset: str
    data: Path
    out: Path
    protocol: str = "default"
    segmenter: str = "deeplabv2"
    upper_bound: bool = False
    labelling: tuple[str, ...] = ()
    tagging: tuple[str, ...] = ()
    training: tuple[str, ...] = ()
    predicting: tuple[str, ...] = ()
    common: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=dict)


def build_plan(options: PlanOptions) -> list[Step]:
    """Every step of ``options.dataset``'s plan, in order (see the module docstring).

    Args:
        options: the request; ``options.sizes`` (split -> images) replaces the official
            counts of :data:`LAYOUTS` for the estimate.

    Raises:
        ValueError: an unknown dataset or protocol.
    """
    if options.dataset not in LAYOUTS:
        raise ValueError(f"unknown dataset {options.dataset!r}: give one of {', '.join(LAYOUTS)}")
    if options.protocol not in PROTOCOLS:
        raise ValueError(
            f"unknown --protocol {options.protocol!r}: give one of {', '.join(PROTOCOLS)}"
        )
    layout = LAYOUTS[options.dataset]
    sizes = {**layout.sizes, **options.sizes}
    data, out = str(options.data), options.out
    common = options.common

    def label(name: str, route: str, split: str, cell: tuple[str, str] | None) -> Step:
        argv = (route, "--data", data, "--split", split, "--out", str(out / name),
                "--preset", options.protocol, *options.labelling, *common)  # fmt: skip
        group = "masks" if route == "text-input" else "zero-shot"
        if route == "zero-shot":
            argv += options.tagging
        return Step(name, group, argv, out / name, "evaluation.json", "label", sizes[split], cell)

    def train(name: str, masks: Path | None, needs: tuple[str, ...]) -> Step:
        argv = ["train-segmenter", "--arch", options.segmenter, "--data", data,
                "--split", layout.masks_split, "--out", str(out / name)]  # fmt: skip
        if masks is not None:
            argv += ["--masks", str(masks)]
        group = "train" if masks is not None else "upper-bound"
        argv += [*options.training, *common]
        return Step(name, group, tuple(argv), out / name, "model_final.pt", "train", needs=needs)

    def predict(name: str, trained: str, row: str, group: str) -> Step:
        argv = ("predict", "--checkpoint", str(out / trained / "model_final.pt"), "--data",
                data, "--split", layout.val_split, "--out", str(out / name), "--scales",
                TTA_SCALES, "--flip", *options.predicting, *common)  # fmt: skip
        return Step(name, group, argv, out / name, "evaluation.json", "predict",
                    sizes[layout.val_split], (row, "val"), (trained,))  # fmt: skip

    masks = out / "text-input" / "masks"
    steps = [label("text-input", "text-input", layout.masks_split, None)]
    if layout.pm_split == layout.masks_split:
        steps[0] = replace(steps[0], cell=("text-input", "pm"))
    else:
        report = out / "text-input-pm" / "evaluation.json"
        argv = ("evaluate", "--pred", str(masks), "--data", data, "--split", layout.pm_split,
                "--report", str(report), "--plot", str(report.with_name("evaluation_iou.png")))  # fmt: skip
        steps.append(
            Step(
                "text-input-pm",
                "masks",
                argv,
                report.parent,
                report.name,
                "evaluate",
                sizes[layout.pm_split],
                ("text-input", "pm"),
                ("text-input",),
            )  # fmt: skip
        )
    steps += [
        label("zero-shot-train", "zero-shot", layout.pm_split, ("zero-shot", "pm")),
        label("zero-shot-val", "zero-shot", layout.val_split, ("zero-shot", "val")),
        train("train", masks, ("text-input",)),
        predict("predict", "train", "text-input", "predict"),
    ]
    if options.upper_bound:
        steps += [
            train("upper-bound-train", None, ()),
            predict("upper-bound-predict", "upper-bound-train", "fully-supervised", "upper-bound"),
        ]
    return steps


def select_steps(steps: list[Step], groups: str | None) -> list[Step]:
    """The steps of the comma-separated ``groups`` (``None``: all), in plan order.

    Raises:
        ValueError: an unknown group name (the message lists the groups).
    """
    if groups is None:
        return list(steps)
    wanted = [name.strip() for name in groups.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(GROUPS))
    if unknown or not wanted:
        raise ValueError(
            f"--steps {groups!r}: unknown group(s) {', '.join(unknown) or '(none given)'}; "
            f"give a comma-separated list of {', '.join(GROUPS)}"
        )
    return [step for step in steps if step.group in wanted]

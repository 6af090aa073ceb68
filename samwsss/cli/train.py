"""``samwsss train-segmenter``, ``samwsss train-deeplab`` and ``samwsss predict``.

Thin click layers over :mod:`samwsss.training`; torch and the model code are imported only
when a command runs, so ``samwsss --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from samwsss.choices import PREDICT_DTYPES, TRAIN_AMP_OF_DTYPE
from samwsss.cli.options import (
    PLOT_NAME,
    REPORT_NAME,
    coco_gt_rule_option,
    data_option,
    deprecated_flag,
    fail_cleanly,
    gt_dir_option,
    mapping_option,
    reject_deprecated_conflict,
    split_option,
    workers_option,
)
from samwsss.devices import check_device
from samwsss.runs.folder import check_writable
from samwsss.segnets.registry import (
    DEEPLAB_ARCH,
    default_segmenter_arch,
    lookup_arch,
    recipe_values,
)
from samwsss.workers import default_workers

if TYPE_CHECKING:
    from samwsss.data.base import SegmentationDataset
    from samwsss.training.config import TrainConfig

logger = logging.getLogger(__name__)


def _absolute(value: str | Path | None) -> str | None:
    """An existing path made absolute (so ``--resume`` works from another folder), else as is."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else str(value)


def _layered_config(
    base: TrainConfig,
    out: Path,
    resume: bool,
    config_file: Path | None,
    explicit: dict[str, Any],
    overrides: tuple[str, ...],
) -> TrainConfig:
    """``base`` < the run's saved config.yaml (with --resume) < --config < options < --set."""
    from samwsss.settings import given, parse_overrides
    from samwsss.training.config import config_from_dict, load_config

    config = base
    saved = out / "config.yaml"
    for path in (saved if resume and saved.is_file() else None, config_file):
        if path is not None:
            config = load_config(path, base=config)
    config = config_from_dict(given(explicit), base=config)
    return config_from_dict(parse_overrides(overrides), base=config)


def _build_config(
    out: Path,
    resume: bool,
    config_file: Path | None,
    explicit: dict[str, Any],
    overrides: tuple[str, ...],
    default_arch: str = "deeplabv2",
) -> TrainConfig:
    """defaults (``workers``: :func:`samwsss.workers.default_workers`) < the architecture's
    recipe < saved config.yaml (--resume) < --config < options < --set.

    The architecture is the one these layers name (``arch``, else ``default_arch``).
    DeepLabV2 has no recipe layer (the config's defaults are its recipe); any other
    architecture brings its normalisation and, with a card, its recipe and default init
    (the recipe's global batch divided over ``WORLD_SIZE`` processes).
    """
    from samwsss.training.config import TrainConfig, config_from_dict

    layers = (out, resume, config_file, explicit, overrides)
    # the machine's worker count replaces the config's fixed default (below every layer)
    workers = default_workers()
    first = _layered_config(TrainConfig(arch=default_arch, workers=workers), *layers)
    if first.arch == DEEPLAB_ARCH:
        return first
    arch, card = lookup_arch(first.arch)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    base = config_from_dict(
        recipe_values(arch, card, world_size),
        base=TrainConfig(arch=first.arch, workers=workers),
    )
    return _layered_config(base, *layers)


def open_training_dataset(config: TrainConfig, missing_masks: str = "error") -> SegmentationDataset:
    """The training set of ``config``: ``open_dataset(data, split)``, GT or pseudo masks.

    Raises:
        ValueError: ``config.data`` unset, a dataset with fewer than two classes (a plain
            folder without ``--mapping``), or whatever ``open_dataset`` /
            :class:`~samwsss.training.data.PseudoMaskDataset` reject.
    """
    from samwsss.data import open_dataset
    from samwsss.training.data import PseudoMaskDataset

    if not config.data:
        raise ValueError(
            "no training data: pass --data (a VOC root, COCO split folder or image folder)"
        )
    base = open_dataset(
        config.data,
        config.split,
        mapping=config.mapping,
        gt_dir=None if config.masks else config.gt_dir,
        coco_gt_rule=config.coco_gt_rule,
    )
    if base.num_classes < 2:
        raise ValueError(
            f"{config.data}: the dataset has {base.num_classes} class "
            f"{list(base.class_names)}, so there is nothing to segment; a plain image "
            "folder needs its class list: pass --mapping voc|coco|FILE (a mapping YAML)"
        )
    if config.masks:
        return PseudoMaskDataset(base, config.masks, missing=missing_masks)
    return base


def open_validation_dataset(
    config: TrainConfig, dataset: SegmentationDataset
) -> SegmentationDataset:
    """The validation set of ``config``: ``open_dataset(val_data or data, val_split)``.

    Raises:
        ValueError: its class list differs from the training ``dataset``'s, or whatever
            ``open_dataset`` rejects.
    """
    from samwsss.data import open_dataset

    val_dataset = open_dataset(
        config.val_data or config.data or "",
        config.val_split,
        mapping=config.mapping,
        coco_gt_rule=config.coco_gt_rule,
    )
    if tuple(val_dataset.class_names) != tuple(dataset.class_names):
        raise ValueError(
            f"the validation dataset has the classes {list(val_dataset.class_names)} "
            f"but the training set {list(dataset.class_names)}; validate on a "
            "dataset with the same class list (--val-data/--val-split, --mapping)"
        )
    if config.val_every == 0:
        logger.warning("a validation set is given but val_every is 0: no validation")
    return val_dataset


def _training_options(deeplab: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options ``train-deeplab`` and ``train-segmenter`` share (help per command)."""
    if deeplab:
        helps = {
            "iterations": "Iterations [default: VOC 20000, COCO 100000].",
            "batch": "Batch per process [default: VOC 5, COCO 10].",
            "lr": "Backbone learning rate; head x10 / x20 [default: 2.5e-4].",
            "crop": "Square crop side [default: 321].",
            "init": "imagenet | imagenet-v2 | none | PATH (checkpoint) [default: imagenet].",
        }
    else:
        helps = {
            "iterations": "Iterations [default: the architecture's recipe].",
            "batch": "Batch per process [default: the recipe's global batch / processes].",
            "lr": "Base (head) learning rate; backbone x backbone_lr_mult [default: the recipe's].",
            "crop": "Square crop side [default: the recipe's].",
            "init": "Initial weights: hub id, folder or file [default: the architecture's].",
        }
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        data_option("Training data: VOC root, COCO split folder/root, or image folder."),
        split_option("Training split, e.g. train_aug (VOC) or train2014 (COCO root)."),
        click.option(
            "--masks",
            default=None,
            type=click.Path(file_okay=False, path_type=Path),
            help="Pseudo masks <id>.png replacing the ground truth (omit: train on the "
            "dataset's GT).",
        ),
        mapping_option("Class list for a plain image folder ('voc', 'coco' or a YAML)."),
        gt_dir_option("GT folder <id>.png replacing the dataset's own (no --masks)."),
        coco_gt_rule_option("How COCO instances become semantic GT [default: overwrite]."),
        click.option(
            "--out",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Run directory: config.yaml, logs, curves, checkpoints/, model_final.pt.",
        ),
        click.option(
            "--config",
            "config_file",
            default=None,
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="YAML file of training settings, for every --arch: the keys of a run's saved "
            "config.yaml (lr, iterations, batch_size, crop_size, ...); options and --set "
            "override it.",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override any config key (value read as YAML), e.g. --set lr=1e-3 --set "
            "flip=false.",
        ),
        click.option(
            "--iterations",
            type=click.IntRange(min=1),
            default=None,
            help=helps["iterations"],
        ),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help=helps["batch"]),
        click.option("--lr", type=float, default=None, help=helps["lr"]),
        click.option("--crop-size", type=click.IntRange(min=8), default=None, help=helps["crop"]),
        click.option("--init", default=None, help=helps["init"]),
        click.option(
            "--allow-segmentation-init",
            is_flag=True,
            default=None,
            help="Accept --init weights trained on segmentation data (COCO, ADE20K, "
            "Cityscapes ...). This leaves the WSSS protocol (classification or "
            "self-supervised pretraining only).",
        ),
        workers_option("DataLoader workers per process.", layered=True),
        click.option(
            "--device",
            default=None,
            help="cpu, cuda, cuda:N [default: cuda when available, else cpu].",
        ),
        click.option(
            "--dtype",
            type=click.Choice(tuple(TRAIN_AMP_OF_DTYPE)),
            default=None,
            help="Compute precision: auto (bfloat16 autocast on CUDA, float32 on the CPU), "
            "bfloat16 autocast on any device, or float32; the config key amp "
            "(auto | bf16 | none) [default: auto].",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=None,
            help="Seed of init, data order, crops [default: 0].",
        ),
        click.option(
            "--checkpoint-every",
            type=click.IntRange(min=1),
            default=None,
            help="Iterations between checkpoints [default: 1000].",
        ),
        click.option("--val-data", default=None, help="Validation dataset [default: --data]."),
        click.option("--val-split", default=None, help="Validation split with GT, e.g. val."),
        click.option(
            "--val-every",
            type=click.IntRange(min=0),
            default=None,
            help="Validate every N iterations; 0 = never [default: 0].",
        ),
        click.option(
            "--missing-masks",
            type=click.Choice(["error", "skip"]),
            default="error",
            show_default=True,
            help="Images of the split without a pseudo mask: fail, or leave them out.",
        ),
        click.option(
            "--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt."
        ),
    ]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _explicit_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Config values of the command-line options (``None``: not given); paths absolute."""
    explicit = {
        key: values.get(key)
        for key in (
            "split",
            "coco_gt_rule",
            "iterations",
            "batch_size",
            "lr",
            "crop_size",
            "backbone",
            "init",
            "allow_segmentation_init",
            "workers",
            "device",
            "seed",
            "checkpoint_every",
            "val_split",
            "val_every",
            "arch",
        )
    }
    if values.get("dtype") is not None:  # --dtype sets the config key amp
        explicit["amp"] = TRAIN_AMP_OF_DTYPE[values["dtype"]]
    for key in ("data", "masks", "mapping", "gt_dir", "val_data"):
        explicit[key] = _absolute(values.get(key))
    return explicit


def _train(values: dict[str, Any], default_arch: str, command: str) -> None:
    """Build the config of a training command, open the data, train, report (rank 0)."""
    out: Path = values["out"]
    resume: bool = values["resume"]
    with fail_cleanly(download_errors=False):
        from samwsss.training.train import Trainer, TrainingDiverged

        config = _build_config(
            out,
            resume,
            values["config_file"],
            _explicit_settings(values),
            values["overrides"],
            default_arch,
        )
        if command == "train-deeplab" and config.arch != DEEPLAB_ARCH:
            raise ValueError(
                f"train-deeplab trains {DEEPLAB_ARCH}, but the config sets arch "
                f"{config.arch!r}; use samwsss train-segmenter --arch {config.arch}"
            )
        validation_set = config.val_split is not None or config.val_data is not None
        if config.val_every > 0 and not validation_set:
            raise ValueError(
                f"--val-every {config.val_every} needs a validation set with ground truth: "
                "pass --val-split (e.g. val; from --data, or from --val-data when given)"
            )
        check_device(config.device)  # before the data opens and any weights load
        check_writable(out)
        dataset = open_training_dataset(config, values["missing_masks"])
        val_dataset = open_validation_dataset(config, dataset) if validation_set else None
        try:
            result = Trainer(config, dataset, out, val_dataset=val_dataset, resume=resume).run()
        except TrainingDiverged as error:  # a stop the message explains, not a crash
            if os.environ.get("RANK", "0") != "0":  # every rank stops; rank 0 reports
                raise click.exceptions.Exit(1) from None
            raise click.ClickException(str(error)) from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    click.echo(
        f"trained {result.iterations} iterations (from {result.start_iteration}); "
        f"loss {result.last_loss:.4f}"
    )
    if result.val_miou is not None:
        click.echo(f"val mIoU {100 * result.val_miou:.2f}%")
    click.echo(f"model: {result.final_model}")


@click.command(name="train-deeplab")
@_training_options(deeplab=True)
@click.option(
    "--backbone", default=None, help="resnet50 | resnet101 | resnet152 [default: resnet101]."
)
def train_deeplab_command(**values: Any) -> None:
    """Train DeepLabV2 (ResNet-101, ASPP-v2) on pseudo masks or ground truth.

    Defaults follow the survey: 321x321 crops, batch 5 / 20k iterations (VOC) or 10 / 100k
    (COCO), SGD momentum 0.9, lr 2.5e-4 (head x10, biases x20), weight decay 5e-4, poly 0.9.
    Under torchrun the batch is per process (effective batch = batch x processes).
    Same as train-segmenter --arch deeplabv2.
    """
    values["arch"] = "deeplabv2"
    _train(values, "deeplabv2", "train-deeplab")


@click.command(name="train-segmenter")
@click.option(
    "--arch",
    default=None,
    help="Architecture name (deeplabv2, mask2former-swin-large, segformer-b5, ...) or "
    "folder [default: mask2former-swin-large].",
)
@_training_options(deeplab=False)
def train_segmenter_command(**values: Any) -> None:
    """Train a segmenter (any --arch) on pseudo masks or ground truth.

    Each architecture brings its recipe (optimizer, learning rates, weight decay,
    iterations, global batch, crop) and default ImageNet / self-supervised initial
    weights; --config, the options and --set override them. Under torchrun the batch is
    per process (the recipe's global batch is divided over the processes).
    """
    _train(values, default_segmenter_arch(), "train-segmenter")


def _parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give comma-separated numbers, e.g. 0.5,0.75,1,1.25,1.5"
        ) from None
    if not scales or any(s <= 0 for s in scales):
        raise click.BadParameter(f"{text!r}: scales must be positive numbers")
    return scales


@click.command(name="predict")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="model_final.pt (or checkpoints/last.pt) of a train-segmenter / train-deeplab run.",
)
@data_option("Images: VOC root, COCO split folder/root, or image folder.", required=True)
@split_option("Split to predict, e.g. val or test.")
@mapping_option("Class list for a plain image folder with GT.")
@gt_dir_option("GT folder <id>.png to evaluate against instead of the dataset's.")
@coco_gt_rule_option(default="overwrite")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for <id>.png predictions (+ evaluation.json when GT exists).",
)
@click.option(
    "--scales",
    default="1.0",
    show_default=True,
    help="Comma-separated input scales averaged, e.g. 0.5,0.75,1.0,1.25,1.5.",
)
@click.option(
    "--flip/--no-flip",
    default=False,
    show_default=True,
    help="Also average horizontally flipped inputs.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Images per forward.",
)
@workers_option("Image decoding worker processes; 0 = decode in this process.")
@click.option(
    "--sliding-window",
    is_flag=True,
    help="Cut each scale's input into overlapping square windows (stride 2/3) and average "
    "their probabilities; on by default for architectures with a fixed input size.",
)
@click.option(
    "--window",
    type=click.IntRange(min=8),
    default=None,
    help="Sliding-window side in pixels [default: the training crop size].",
)
@click.option(
    "--device", default=None, help="cpu, cuda, cuda:N [default: cuda when available, else cpu]."
)
@click.option(
    "--dtype",
    type=click.Choice(PREDICT_DTYPES),
    default="auto",
    show_default=True,
    callback=reject_deprecated_conflict,
    help="Compute precision: auto (bfloat16 autocast on CUDA, float32 on the CPU) or float32.",
)
@deprecated_flag("--amp", new="--dtype auto", target="dtype", value="auto")
@deprecated_flag("--no-amp", new="--dtype float32", target="dtype", value="float32")
@click.option(
    "--plain/--no-plain",
    default=False,
    show_default=True,
    callback=reject_deprecated_conflict,
    help="Write plain index PNGs instead of VOC-palette ones (same pixel values).",
)
@deprecated_flag("--palette", new="--no-plain", target="plain", value=False)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete the predictions (and report) already in --out and predict every image "
    "again. Without it a rerun with the same checkpoint and settings resumes, and one with "
    "another checkpoint, scales, flip or dataset is refused.",
)
@click.option(
    "--evaluate/--no-evaluate",
    default=True,
    show_default=True,
    callback=reject_deprecated_conflict,
    help="Evaluate the predictions when the dataset has ground truth.",
)
@deprecated_flag("--no-eval", new="--no-evaluate", target="evaluate", value=False)
def predict_command(
    checkpoint: Path,
    data: str,
    split: str | None,
    mapping: str | None,
    gt_dir: str | None,
    coco_gt_rule: str,
    out: Path,
    scales: str,
    flip: bool,
    batch_size: int,
    workers: int,
    sliding_window: bool,
    window: int | None,
    device: str | None,
    dtype: str,
    plain: bool,
    overwrite: bool,
    evaluate: bool,
) -> None:
    """Predict masks with a trained segmenter (multi-scale, flip) and evaluate them.

    Any train-segmenter / train-deeplab checkpoint works: the network is rebuilt from the
    architecture the checkpoint records (no download).

    --out records the checkpoint (weights hash, iteration), dataset, scales, flip, bf16
    (--dtype auto on CUDA) and palette (--no-plain) in prediction_identity.json:
    rerunning with the same ones resumes (finished images are kept), other ones are
    refused unless --overwrite clears the folder's predictions first.
    """
    scale_values = _parse_scales(scales)
    with fail_cleanly(download_errors=False):
        from samwsss.data import open_dataset
        from samwsss.training.predict import (
            InferenceOptions,
            check_class_names,
            load_checkpoint_model,
            predict_dataset,
        )

        check_device(device)  # before the data opens and the checkpoint loads
        check_writable(out)
        dataset = open_dataset(
            data, split, mapping=mapping, gt_dir=gt_dir, coco_gt_rule=coco_gt_rule
        )
        loaded = load_checkpoint_model(checkpoint, device)
        fixed = loaded.arch is not None and loaded.arch.fixed_input_size
        side = window if window is not None else loaded.config.crop_size
        options = InferenceOptions(
            scales=scale_values,
            flip=flip,
            amp=dtype == "auto",
            sliding_window=side if sliding_window or fixed or window is not None else None,
        )
        check_class_names(loaded.class_names, dataset)
        summary = predict_dataset(
            loaded,
            dataset,
            out,
            options=options,
            batch_size=batch_size,
            workers=workers,
            overwrite=overwrite,
            palette=not plain,
            reports=(REPORT_NAME, PLOT_NAME),
        )
        click.echo(
            f"wrote {summary.written} predictions to {summary.out_dir} ({summary.skipped} existed)"
        )
        if summary.failed:
            click.echo(
                f"{len(summary.failed)} images could not be read and got no prediction "
                f"(first: {next(iter(summary.failed.values()))})",
                err=True,
            )
        if dataset.has_gt and evaluate:
            _evaluate_predictions(out, dataset, count_missing=bool(summary.failed))


def _evaluate_predictions(out: Path, dataset: SegmentationDataset, count_missing: bool) -> None:
    """Evaluate the ``<id>.png`` in ``out`` against ``dataset``'s GT: write the report and
    its IoU chart beside them, echo the table. With ``count_missing`` (some images were
    unreadable), images without a prediction count as all background."""
    from samwsss.evaluation import evaluate_folder

    report = evaluate_folder(out, dataset, missing="background" if count_missing else "error")
    report.to_json(out / REPORT_NAME)
    report.plot(out / PLOT_NAME)
    click.echo(report.format_table())
    click.echo(f"report: {out / REPORT_NAME}")

"""``samwsss evaluate``: mIoU report of a folder of predicted masks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import click

from samwsss.cli.options import (
    PLOT_NAME,
    REPORT_NAME,
    coco_gt_rule_option,
    data_option,
    gt_dir_option,
    label_source_option,
    mapping_option,
    split_option,
    workers_option,
)
from samwsss.storage import as_path, is_folder

if TYPE_CHECKING:
    from samwsss.data.base import SegmentationDataset

logger = logging.getLogger(__name__)


@click.command(name="evaluate")
@click.option(
    "--pred",
    "pred_dir",
    required=True,
    type=str,
    help="Folder of predicted masks, <image_id>.png (palette or plain uint8 PNG); a path or "
    "an fsspec URL (s3://..., needs s3fs).",
)
@data_option(
    "Dataset: a VOC root (VOCdevkit/VOC2012), a COCO image folder (coco/val2014) or "
    "a folder of images. Optional when --gt-dir is given."
)
@split_option("Split to evaluate, e.g. train, val, train_aug.")
@gt_dir_option(
    "Folder of ground-truth PNGs. With --data: precomputed GT for that dataset; "
    "alone: evaluate against this folder (ids = PNG names), classes from --mapping."
)
@mapping_option("Class list: 'voc', 'coco' or a mapping YAML file (required with --gt-dir alone).")
@label_source_option(
    "Where image-level labels come from: 'xml' or 'gt' (passed to the dataset loader; not "
    "used by the metric) [default: xml]."
)
@coco_gt_rule_option(
    "How COCO instances become semantic GT: 'overwrite' (the later annotation wins, crowd "
    "excluded) or 'smallest' (the smallest area wins) [default: overwrite]."
)
@click.option(
    "--missing",
    type=click.Choice(["error", "background"]),
    default="error",
    show_default=True,
    help="Images with no prediction: fail, or count them as all background.",
)
@workers_option("Parallel decoders; 0 or 1 = decode in this process.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "thread", "process"]),
    default="auto",
    show_default=True,
    help="Parallel decoding in worker processes (fastest) or threads; 'auto' uses "
    "processes where the platform forks them, else threads.",
)
@click.option(
    "--report",
    "report_path",
    type=str,
    default=None,
    help=f"JSON report path [default: <pred>/{REPORT_NAME}].",
)
@click.option(
    "--plot",
    "plot_path",
    type=str,
    default=None,
    help=f"Per-class IoU bar chart PNG [default: <pred>/{PLOT_NAME}].",
)
@click.option("--no-plot", is_flag=True, help="Do not draw the bar chart.")
def evaluate_command(
    pred_dir: str,
    data: str | None,
    split: str | None,
    gt_dir: str | None,
    mapping: str | None,
    label_source: str | None,
    coco_gt_rule: str | None,
    missing: str,
    workers: int,
    backend: str,
    report_path: str | None,
    plot_path: str | None,
    no_plot: bool,
) -> None:
    """Compute per-class IoU, mIoU and pixel accuracy of predicted masks.

    Ground-truth 255 pixels are ignored, a predicted 255 counts as background, and classes
    absent from both GT and prediction are left out of the mean. Prints a per-class table,
    writes a JSON report and a per-class IoU bar chart beside the predictions.

    \b
    Examples:
      samwsss evaluate --pred out/masks --data VOCdevkit/VOC2012 --split train
      samwsss evaluate --pred out/masks --data coco/val2014
      samwsss evaluate --pred out/masks --gt-dir my_gt --mapping voc
    """
    from samwsss.evaluation import EvaluationWorkerError, evaluate_folder

    try:
        predictions = as_path(pred_dir)
        if not is_folder(predictions):  # checked first: the GT may be fine, --pred is not
            raise ValueError(
                f"--pred {pred_dir!r} does not exist or is not a folder: give the folder of "
                "predicted <image_id>.png masks (a run's masks/ folder, e.g. runs/voc_text/masks)"
            )
        dataset = _open_ground_truth(data, split, gt_dir, mapping, label_source, coco_gt_rule)
        report = evaluate_folder(
            predictions,
            dataset,
            missing=missing,  # type: ignore[arg-type]
            workers=workers,
            backend=backend,  # type: ignore[arg-type]
        )
    except (ValueError, EvaluationWorkerError) as error:
        raise click.ClickException(str(error)) from error

    click.echo(report.format_table())
    click.echo(f"mIoU: {report.miou * 100.0:.2f}%")
    json_path = as_path(report_path) if report_path else predictions / REPORT_NAME
    chart_path = as_path(plot_path) if plot_path else predictions / PLOT_NAME
    try:
        report.to_json(json_path)
        click.echo(f"report: {json_path}")
        if not no_plot:
            report.plot(chart_path)
            click.echo(f"chart: {chart_path}")
    except OSError as error:
        raise click.ClickException(f"cannot write the report: {error}") from error


def _open_ground_truth(
    data: str | None,
    split: str | None,
    gt_dir: str | None,
    mapping: str | None,
    label_source: str | None,
    coco_gt_rule: str | None,
) -> SegmentationDataset:
    """The dataset to evaluate against: ``open_dataset(...)``, or a GT-only folder."""
    if data is None:
        if gt_dir is None:
            raise ValueError(
                "give the ground truth: --data DATASET (with --split for VOC), or "
                "--gt-dir FOLDER with --mapping voc|coco|FILE"
            )
        if mapping is None:
            raise ValueError(
                "--gt-dir without --data needs --mapping (voc, coco or a mapping YAML file) "
                "to name the classes"
            )
        for name, value in (("--split", split), ("--label-source", label_source),
                            ("--coco-gt-rule", coco_gt_rule)):  # fmt: skip
            if value is not None:
                raise ValueError(f"{name} applies to --data datasets, not to --gt-dir alone")
        from samwsss.evaluation.gt_folder import GroundTruthFolder
        from samwsss.mapping import load_mapping

        return GroundTruthFolder(gt_dir, load_mapping(mapping).class_names)

    from samwsss.data import open_dataset

    options: dict[str, Any] = {}
    if mapping is not None:
        options["mapping"] = mapping
    if gt_dir is not None:
        options["gt_dir"] = gt_dir
    if label_source is not None:
        options["label_source"] = label_source
    if coco_gt_rule is not None:
        options["coco_gt_rule"] = coco_gt_rule
    return open_dataset(data, split, **options)

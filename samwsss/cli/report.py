"""``samwsss report``: a static HTML report of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from samwsss.cli.options import data_option, gt_dir_option, split_option, workers_option


@click.command(name="report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@data_option(
    "Dataset with ground truth (VOC root, COCO image folder, folder with --gt-dir): adds "
    "the mIoU table, confusion matrix, per-image mIoU and error maps."
)
@split_option("Split of --data, e.g. train, val, train_aug.")
@gt_dir_option("Folder of ground-truth PNGs for --data.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder [default: RUN_DIR/report].",
)
@workers_option("Thumbnail threads.", minimum=1)
@click.option(
    "--thumb-size",
    type=click.IntRange(16, 1024),
    default=240,
    show_default=True,
    help="Longest side of a gallery thumbnail, pixels.",
)
def report_command(
    run_dir: Path,
    data: str | None,
    split: str | None,
    gt_dir: str | None,
    out: Path | None,
    workers: int,
    thumb_size: int,
) -> None:
    """Write RUN_DIR/report/index.html: settings, models, counts, timing, failures,
    mIoU table, per-class IoU chart, confusion matrix and an image gallery. It opens
    from disk (no server, no network).

    \b
    Examples:
      samwsss report out/voc
      samwsss report out/voc --data VOCdevkit/VOC2012 --split train
    """
    from samwsss.report import build_report

    try:
        dataset = _ground_truth(run_dir, data, split, gt_dir)
        result = build_report(run_dir, dataset, out=out, workers=workers, thumb_size=thumb_size)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"report: {result.path} ({result.num_images} images, {result.seconds:.1f} s, "
        f"{result.images_per_second:.1f} thumbnails/s)"
    )


def _ground_truth(run_dir: Path, data: str | None, split: str | None, gt_dir: str | None) -> Any:
    """The GT dataset for ``--data`` (with the run's mapping), or ``None``."""
    if data is None:
        if split is not None or gt_dir is not None:
            raise ValueError("--split and --gt-dir need --data (the dataset the run was made on)")
        return None
    from samwsss.data import open_dataset
    from samwsss.runs.export import read_run_config

    options: dict[str, Any] = {}
    mapping = read_run_config(run_dir).get("data", {}).get("mapping")
    source = mapping.get("path") if isinstance(mapping, dict) else mapping
    if source is not None:
        options["mapping"] = source
    if gt_dir is not None:
        options["gt_dir"] = gt_dir
    dataset = open_dataset(data, split, **options)
    if not dataset.has_gt:
        raise ValueError(
            f"{data} has no ground truth; give a dataset with masks, or --gt-dir FOLDER"
        )
    return dataset

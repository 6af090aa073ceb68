"""``samwsss export``: a run's instances as COCO results or YOLO-seg labels."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["coco", "yolo-seg"]),
    required=True,
    help="coco: results.json (RLE) + dataset.json; yolo-seg: labels/<id>.txt + dataset.yaml.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder [default: RUN_DIR/export/<format>].",
)
def export_command(run_dir: Path, fmt: str, out: Path | None) -> None:
    """Export the instances of RUN_DIR (a run made with --instances).

    \b
    Examples:
      samwsss export out/voc --format coco
      samwsss export out/voc --format yolo-seg --out yolo_voc
    """
    from samwsss.runs.export import export_run

    try:
        paths = export_run(run_dir, fmt, out)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    for name, path in paths.items():
        click.echo(f"{name}: {path}")

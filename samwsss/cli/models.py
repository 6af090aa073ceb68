"""``samwsss models``: the released models each stage loads by name, and the segmenter
architectures ``train-segmenter --arch`` trains."""

from __future__ import annotations

import click

from samwsss.registry import KINDS, model_table
from samwsss.segnets.registry import arch_table

#: The ``--kind`` of the training architectures (``samwsss.segnets.registry.ARCHS``).
ARCH_KIND = "arch"


@click.command("models")
@click.option(
    "--kind",
    type=click.Choice((*KINDS, ARCH_KIND)),
    default=None,
    help="Only this stage kind, or arch: the architectures train-segmenter trains [default: all].",
)
def models_command(kind: str | None) -> None:
    """List the registry: stage kind, name, where the weights are, what it is; for an
    architecture its default initial weights and the source of its recipe."""
    stages = [kind] if kind in KINDS else [] if kind else list(KINDS)
    rows = [(*row, "") for row in model_table(stages)]
    if kind in (None, ARCH_KIND):
        rows += [
            (ARCH_KIND, name, init, description, f"recipe: {source}")
            for name, init, description, source in arch_table()
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for stage, name, weights, description, recipe in rows:
        click.echo(f"{stage:<{widths[0]}}  {name:<{widths[1]}}  {weights}")
        click.echo(f"{'':<{widths[0]}}  {'':<{widths[1]}}  {description}")
        if recipe:
            click.echo(f"{'':<{widths[0]}}  {'':<{widths[1]}}  {recipe}")

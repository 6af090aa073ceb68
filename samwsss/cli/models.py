"""``samwsss models``: the released models each stage loads by name."""

from __future__ import annotations

import click

from samwsss.registry import KINDS, model_table


@click.command("models")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="Only this stage kind [default: all].",
)
def models_command(kind: str | None) -> None:
    """List the registry: stage kind, name, where the weights are, what it is."""
    rows = model_table((kind,) if kind else KINDS)
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for stage, name, weights, description in rows:
        click.echo(f"{stage:<{widths[0]}}  {name:<{widths[1]}}  {weights}")
        click.echo(f"{'':<{widths[0]}}  {'':<{widths[1]}}  {description}")

"""The ``samwsss`` command line: a thin click group over the library.

Each subcommand lives in its own module and is imported only when it is run, so
``samwsss --help`` stays fast and heavy dependencies load lazily.
"""

from __future__ import annotations

import importlib
import logging

import click

#: subcommand name -> "module:attribute" of its click command.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "text-input": (
        "samwsss.cli.run",
        "text_input_command",
    ),
    "zero-shot": ("samwsss.cli.run", "zero_shot_command"),
    "evaluate": ("samwsss.cli.evaluate", "evaluate_command"),
    "train-segmenter": ("samwsss.cli.train", "train_segmenter_command"),
    "train-deeplab": ("samwsss.cli.train", "train_deeplab_command"),
    "predict": ("samwsss.cli.train", "predict_command"),
    "models": ("samwsss.cli.models", "models_command"),
    "export": ("samwsss.cli.export", "export_command"),
    "report": ("samwsss.cli.report", "report_command"),
    "try-out": ("samwsss.cli.try_out", "try_out_command"),
    "reproduce": ("samwsss.cli.reproduce", "reproduce_command"),
}

SHORT_HELP = {
    "text-input": "Pseudo masks from image-level labels (Grounding DINO -> SAM -> merge).",
    "zero-shot": "Masks with no labels (RAM tags -> classes -> Grounding DINO -> SAM).",
    "evaluate": "mIoU report of a folder of predicted masks against ground truth.",
    "train-segmenter": "Train a segmenter (--arch: Mask2Former, SegFormer, EoMT, DeepLabV2).",
    "train-deeplab": "Train DeepLabV2 (ResNet-101) on pseudo masks or ground truth.",
    "predict": "Predict masks with a trained segmenter (multi-scale, flip) and evaluate.",
    "models": "List the models each stage loads by name (registry).",
    "export": "Export a run's instances as COCO results or YOLO-seg labels.",
    "report": "Static HTML report of a run (settings, mIoU, confusion, gallery).",
    "try-out": "Offline demo on tiny RANDOM models: text-input, report, exports (no download).",
    "reproduce": "The survey's Table 1 protocol in one resumable command (masks, train, eval).",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module_name, attribute = SUBCOMMANDS[name]
        module = importlib.import_module(module_name)
        command: click.Command = getattr(module, attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP[name]) for name in SUBCOMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="samwsss")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log progress (-v) or debug details (-vv); warnings always show.",
)
def cli(verbose: int) -> None:
    """samwsss: semantic-segmentation pseudo masks from image-level labels or none."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("samwsss").setLevel(level)
    from samwsss.weights import tidy_hub_logging

    tidy_hub_logging()  # huggingface_hub's lines once, its retries one line per repository


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="samwsss")

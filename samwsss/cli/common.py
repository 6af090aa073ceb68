"""Helpers shared by the subcommands: error handling, the evaluation report file names and
the dataset options (``--data``, ``--split``, ``--mapping``, ``--gt-dir``,
``--label-source``, ``--coco-gt-rule``) with one name, type and default each.

Every option factory takes the command's own ``help`` text; the defaults here are the
generic wording.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

#: A click option decorator.
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: File names of the evaluation written beside predictions.
REPORT_NAME = "evaluation.json"
PLOT_NAME = "evaluation_iou.png"

#: ``--coco-gt-rule`` values (:data:`samwsss.data.common.COCO_GT_RULES`, repeated here so
#: that ``--help`` imports no data code).
COCO_GT_RULES = ("overwrite", "smallest")


@contextlib.contextmanager
def fail_cleanly(*, download_errors: bool = True) -> Iterator[None]:
    """Turn a user error (``ValueError``, a missing file, a failed download) into a short
    message and exit code 1 instead of a traceback.

    Args:
        download_errors: also show any other ``OSError`` (e.g. weights that cannot be
            downloaded while offline) as a message that names the local-path options of
            the zero-shot commands (``--boxer``, ``--masker``, ``--tagger``). Commands
            without those options pass ``False``; an ``OSError`` then propagates as it is.
    """
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:  # e.g. weights that cannot be downloaded while offline
        if not download_errors:
            raise
        raise click.ClickException(
            f"{error}\n(if the weights cannot be downloaded here, pass local paths: "
            "--boxer/--masker folders or files, --tagger a .pth file)"
        ) from error


def data_option(
    help: str = "Dataset: VOC root, COCO split folder/root, or image folder.",
    *,
    required: bool = False,
) -> Decorator:
    """``--data`` (str; ``None`` when not given unless ``required``)."""
    return click.option("--data", required=required, default=None, help=help)


def split_option(help: str = "Split, e.g. train, val or train_aug.") -> Decorator:
    """``--split`` (str or ``None``)."""
    return click.option("--split", default=None, help=help)


def mapping_option(
    help: str = "Class list: 'voc', 'coco' or a mapping YAML file.",
) -> Decorator:
    """``--mapping`` (str or ``None``)."""
    return click.option("--mapping", default=None, help=help)


def gt_dir_option(
    help: str = "Folder of ground-truth <id>.png replacing the dataset's own.",
) -> Decorator:
    """``--gt-dir`` (a folder, as given: a local path or an fsspec URL; ``None`` when not
    given)."""
    return click.option("--gt-dir", default=None, type=str, help=help)


def label_source_option(
    help: str = "Where image-level labels come from: 'xml' (the dataset's annotations) "
    "or 'gt' (the classes in the GT masks).",
) -> Decorator:
    """``--label-source`` (str or ``None``; the dataset loader checks the value)."""
    return click.option("--label-source", default=None, help=help)


def coco_gt_rule_option(
    help: str = "How COCO instances become semantic GT.", default: str | None = None
) -> Decorator:
    """``--coco-gt-rule``: one of :data:`COCO_GT_RULES`, or ``default`` (shown in the help
    when it is not ``None``)."""
    return click.option(
        "--coco-gt-rule",
        type=click.Choice(COCO_GT_RULES),
        default=default,
        show_default=default is not None,
        help=help,
    )

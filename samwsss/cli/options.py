"""Helpers shared by the subcommands: error handling, the evaluation report file names and
the dataset options (``--data``, ``--split``, ``--mapping``, ``--gt-dir``,
``--label-source``, ``--coco-gt-rule``) with one name, type and default each.

Every option factory takes the command's own ``help`` text; the defaults here are the
generic wording.

Help texts write defaults one way, ``[default: x]``: click's ``show_default`` where the
default is a literal, the same words by hand where it is computed or comes from a preset,
a config file or the architecture's recipe. A renamed option keeps its old spelling for
one release as a hidden :func:`deprecated_flag` that warns on stderr.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click
from click.core import ParameterSource

from samwsss.workers import MAX_DEFAULT_WORKERS, default_workers

#: A click option decorator.
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: File names of the evaluation written beside predictions.
REPORT_NAME = "evaluation.json"
PLOT_NAME = "evaluation_iou.png"

#: ``ctx.meta`` key of the values that deprecated spellings set: ``{parameter: (old, value)}``.
_DEPRECATED_META = "samwsss.deprecated"

#: ``--coco-gt-rule`` values (:data:`samwsss.data.indexed.COCO_GT_RULES`, repeated here so
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
        from samwsss.weights import MissingWeightsError

        if isinstance(error, MissingWeightsError):  # names each model and what to do
            raise click.ClickException(str(error)) from error
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


def workers_help(what: str) -> str:
    """``what`` followed by the ``--workers`` default of every command, in words."""
    return (
        f"{what} [default: the CPUs this process may use (divided among torchrun's "
        f"processes on the node), at most {MAX_DEFAULT_WORKERS}: {default_workers()} here]"
    )


def workers_option(what: str, *, minimum: int = 0, layered: bool = False) -> Decorator:
    """``--workers``: an int >= ``minimum`` whose default is
    :func:`samwsss.workers.default_workers`.

    Args:
        what: what the workers are (the help's first words).
        minimum: the smallest count accepted.
        layered: the command layers settings (preset, config file, options): the option
            then defaults to ``None`` (not given) and the command applies
            :func:`~samwsss.workers.default_workers` when no layer sets ``workers``.
    """
    return click.option(
        "--workers",
        type=click.IntRange(min=minimum),
        default=None if layered else default_workers,
        help=workers_help(what),
    )


def warn_deprecated(old: str, new: str) -> None:
    """Tell the user on stderr that ``old`` is deprecated and ``new`` replaces it."""
    click.echo(
        f"warning: {old} is deprecated and will be removed in the next release; use {new}.",
        err=True,
    )


def deprecated_flag(old: str, *, new: str, target: str, value: Any) -> Decorator:
    """A hidden flag ``old`` kept for one release: giving it warns (:func:`warn_deprecated`)
    and sets the parameter ``target`` to ``value``, exactly as ``new`` does.

    The flag is eager, so it runs before ``target``'s option and sets ``value`` as that
    option's default; ``target`` given on the command line wins. Give ``target``'s option
    ``callback=`` :func:`reject_deprecated_conflict` so that contradicting spellings
    (e.g. ``--no-eval --evaluate``) are an error rather than a silent choice.
    """

    def callback(ctx: click.Context, param: click.Parameter, given: bool) -> None:
        if not given or ctx.resilient_parsing:
            return
        warn_deprecated(old, new)
        # eager flags run in command-line order: the last deprecated spelling wins, as the
        # last of a --flag/--no-flag pair did
        ctx.meta.setdefault(_DEPRECATED_META, {})[target] = (old, value)
        ctx.default_map = {**(ctx.default_map or {}), target: value}

    return click.option(
        old,
        is_flag=True,
        default=False,
        hidden=True,
        expose_value=False,
        is_eager=True,
        callback=callback,
        help=f"Deprecated: use {new}.",
    )


def reject_deprecated_conflict(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Option callback: ``value`` as it is, unless the option was given on the command line
    and a deprecated spelling (:func:`deprecated_flag`) asked for another value."""
    chosen: dict[str, tuple[str, Any]] = ctx.meta.get(_DEPRECATED_META, {})
    name = param.name or ""
    if name in chosen and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
        old, wanted = chosen[name]
        if value != wanted:
            raise click.BadParameter(f"contradicts the deprecated {old} given too", ctx, param)
    return value

"""``results.json`` and ``results.md`` of ``samwsss reproduce``: ours beside the published.

One line per table cell and published figure: the survey's Table 1 rows 54-56 (P.M. on the
pseudo-mask split, segmentation on ``val``) and FMA-WSSS's Mask2Former ``val`` figures. Our
value is read from the evaluation report of the step that fills the cell (``null`` / ``-``
while that step has not run); the difference is ours minus the published figure, in mIoU
points. ``results.json``::

    {"format": "samwsss-reproduce-results", "version": 1, "dataset": "voc",
     "protocol": "paper", "segmenter": "deeplabv2",
     "lines": [{"row": "text-input", "name": "SAM (text input)", "column": "pm",
                "split": "train", "step": "text-input-pm", "ours": 85.12,
                "published": 86.4, "source": "survey Table 1, row 54",
                "published_segmenter": null, "difference": -1.28}, ...]}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from samwsss.atomic import atomic_write_text
from samwsss.reproduce.plan import LAYOUTS, Step
from samwsss.reproduce.published import ROWS, published

RESULTS_FORMAT = "samwsss-reproduce-results"
RESULTS_VERSION = 1
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

_COLUMNS = {"pm": "P.M.", "val": "val"}


def step_miou(step: Step) -> float | None:
    """mIoU in percent from ``step``'s evaluation report; ``None`` when it has none yet."""
    path = step.out / step.marker
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("miou")
    if not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return 100.0 * float(value)


def collect(steps: list[Step], *, dataset: str, protocol: str, segmenter: str) -> dict[str, Any]:
    """The results document (see the module docstring) of the plan ``steps``.

    Every cell of rows 54-56 is listed whether or not the plan fills it (the upper-bound
    cells stay empty without ``--upper-bound``).
    """
    layout = LAYOUTS[dataset]
    filled = {step.cell: step for step in steps if step.cell is not None}
    lines: list[dict[str, Any]] = []
    for row, name in ROWS.items():
        for column in _COLUMNS:
            step = filled.get((row, column))
            ours = step_miou(step) if step is not None else None
            if row == "fully-supervised" and column == "pm":
                ours = 100.0  # the ground truth scored against itself
            split = layout.pm_split if column == "pm" else layout.val_split
            mine = segmenter if column == "val" and row != "zero-shot" else None
            for figure in published(dataset, row, column, mine):
                lines.append(
                    {
                        "row": row,
                        "name": name,
                        "column": column,
                        "split": split,
                        "step": step.name if step is not None else None,
                        "segmenter": mine,
                        "ours": _round(ours),
                        "published": figure.miou,
                        "source": figure.source,
                        "published_segmenter": figure.segmenter,
                        "difference": _round(None if ours is None else ours - figure.miou),
                    }
                )
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "dataset": dataset,
        "protocol": protocol,
        "segmenter": segmenter,
        "lines": lines,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def render_markdown(results: dict[str, Any]) -> str:
    """``results.md``: a heading, the settings, and one table line per published figure."""
    dataset = results["dataset"].upper()
    head = [
        f"# samwsss reproduce: {dataset}",
        "",
        f"Protocol `{results['protocol']}`, segmenter `{results['segmenter']}`. mIoU in %; "
        "difference = ours - published, in points; `-` = not run (yet).",
        "",
        "| Row | Metric | Split | Ours | Published | Difference | Published by |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    body = []
    for line in results["lines"]:
        metric = _COLUMNS[line["column"]]
        if line["published_segmenter"]:
            metric += f" ({line['published_segmenter']})"
        ours = _cell(line["ours"])
        if line["segmenter"] and line["ours"] is not None:
            ours += f" ({line['segmenter']})"
        body.append(
            f"| {line['name']} | {metric} | {line['split']} | {ours} | {line['published']:.1f} "
            f"| {_cell(line['difference'], signed=True)} | {line['source']} |"
        )
    return "\n".join([*head, *body, ""])


def write_results(out: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out`` (atomically); their paths."""
    json_path, md_path = out / RESULTS_JSON, out / RESULTS_MD
    atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
    atomic_write_text(md_path, render_markdown(results))
    return json_path, md_path


def read_results(folder: Path) -> dict[str, Any] | None:
    """The results document in ``folder`` (a reproduce folder), ``None`` when there is none
    or it is not one."""
    path = folder / RESULTS_JSON
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return (
        results if isinstance(results, dict) and results.get("format") == RESULTS_FORMAT else None
    )

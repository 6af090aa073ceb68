"""Smoke tests of examples/: the demo notebook is a valid, output-free nbformat-4 notebook
whose code compiles and names real APIs; the labels file and images are consistent."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samwsss.classes import VOC_CLASSES
from samwsss.data.images import IMAGE_SUFFIXES, load_rgb

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "pipeline_demo.ipynb"
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _notebook() -> dict[str, Any]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _code_cells(notebook: dict[str, Any]) -> list[str]:
    return [_source(cell) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_notebook_is_nbformat4_without_outputs() -> None:
    notebook = _notebook()
    assert notebook["nbformat"] == 4 and isinstance(notebook["nbformat_minor"], int)
    assert isinstance(notebook["metadata"], dict)
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    ids = []
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code", "raw")
        assert isinstance(cell["metadata"], dict)
        source = cell["source"]
        assert isinstance(source, str) or all(isinstance(line, str) for line in source)
        if notebook["nbformat_minor"] >= 5:
            assert _CELL_ID.match(cell["id"]), cell.get("id")
            ids.append(cell["id"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "outputs are stored"
        else:
            assert "outputs" not in cell and "execution_count" not in cell
    assert len(ids) == len(set(ids)), "cell ids must be unique"
    try:
        import nbformat
    except ImportError:
        return
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))


def test_notebook_code_compiles_and_uses_both_routes_and_presets() -> None:
    cells = _code_cells(_notebook())
    assert cells
    for index, source in enumerate(cells):
        compile(source, f"{NOTEBOOK.name}[code cell {index}]", "exec")
    code = "\n".join(cells)
    for call in (
        'Pipeline.from_preset("default", mapping="voc")',
        "pipe.text_input(",
        "pipe.zero_shot(",
        ".overlay(",
        'Pipeline.from_preset("paper", mapping="voc")',
        ".tags",
        ".tag_sources",
        "labels.json",
    ):
        assert call in code, f"the notebook no longer shows {call}"


def test_notebook_imports_and_attributes_exist() -> None:
    """Every ``from samwsss... import name`` resolves, and the methods it calls exist."""
    tree = ast.parse("\n".join(_code_cells(_notebook())))
    imported = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("samwsss")
        for alias in node.names
    ]
    assert imported
    for module, name in imported:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"
    from samwsss.pipeline import Pipeline, PipelineResult

    for attribute in ("from_preset", "text_input", "zero_shot"):
        # getattr_static: a plain getattr of a route on the class builds the default pipeline
        assert inspect.getattr_static(Pipeline, attribute, None) is not None, (
            f"Pipeline.{attribute} is gone"
        )
    assert callable(PipelineResult.overlay)


def test_labels_name_present_images_and_voc_classes() -> None:
    labels = json.loads((EXAMPLES / "labels.json").read_text(encoding="utf-8"))
    assert isinstance(labels, dict) and labels
    present = {
        p.name for p in (EXAMPLES / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    }
    assert set(labels) <= present, f"labels for missing images: {sorted(set(labels) - present)}"
    objects = set(VOC_CLASSES[1:])
    for name, classes in labels.items():
        assert isinstance(classes, list) and classes, name
        assert set(classes) <= objects, (
            f"{name}: {sorted(set(classes) - objects)} are not VOC classes"
        )


@pytest.mark.parametrize("path", sorted((EXAMPLES / "images").iterdir()), ids=lambda p: p.name)
def test_example_images_decode(path: Path) -> None:
    image = load_rgb(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 32
    assert image.std() > 5  # a real picture, not a blank file

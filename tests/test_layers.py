"""The package's folders form a ladder: each imports only the floors below it, and no
module imports itself back through others (every import counts: top of file, inside
functions, under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "samwsss"
#: Floors from the ground up: the top-level modules (``samwsss/*.py``), then each folder.
#: A folder may import its own modules, the top-level ones and the folders before it.
LADDER = (
    "",
    "data",
    "evaluation",
    "stages",
    "segnets",
    "ram",
    "pipeline",
    "runs",
    "training",
    "reproduce",
    "report",
    "testing",
    "deeplab",
    "cli",
)
#: The console entry point sits above everything.
ENTRY_POINT = "samwsss.__main__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a import b`` counts ``a.b`` when it is
    a module, else ``a``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in subs if t in modules] or [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else ""


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports(path, modules) for path in paths}


def test_every_folder_is_on_the_ladder() -> None:
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(LADDER) - {""}


def test_imports_go_down_the_ladder() -> None:
    upward = []
    for module, targets in graph().items():
        if module in (ENTRY_POINT, "samwsss"):
            continue
        level = LADDER.index(floor(module))
        for target in targets:
            if target != "samwsss" and LADDER.index(floor(target)) > level:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_module_imports_itself_back() -> None:
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target.startswith(module + "."):  # a package re-exporting its own module
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []

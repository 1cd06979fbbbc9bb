"""The layers of ``../shared/DESIGN.md`` hold: imports point down, no cycles, pure cores stay pure.

Every import is read from the source (``ast``), including imports inside functions, so a lazy
import cannot hide an upward dependency or a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"

# top to bottom; a module may import its own layer and any layer below it
LAYERS = (
    "cli",
    "ui",
    "batch",
    "plots",
    "workflows",
    "training",
    "analysis",
    "store",
    "models",
    "data",
    "physics",
    "base",
)
BASE = {"limits", "events", "fileio", "versions", "forms", "lazy_import", "__init__"}
NO_WIDGETS = LAYERS[LAYERS.index("batch") :]
NO_PLOTTING = LAYERS[LAYERS.index("workflows") :]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    top = parts[1]
    if top == "__main__":
        return "cli"
    return "base" if top in BASE else top


def _imports(path: Path) -> list[tuple[str, int, bool, int]]:
    """(imported module, line, inside a function, last line) for every import of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, int, bool, int]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, nested, child.end_lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("workbench"):
                    # `from . import x` / `from .pkg import mod`: the submodule when it is one
                    for alias in child.names:
                        candidate = f"{target}.{alias.name}"
                        sub = PACKAGE.parent / Path(*candidate.split("."))
                        module = candidate if sub.with_suffix(".py").is_file() or sub.is_dir() else target
                        found.append((module, child.lineno, nested, child.end_lineno))
                else:
                    found.append((target, child.lineno, nested, child.end_lineno))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> dict[str, list[tuple[str, int, bool, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_imports_point_down_the_layers() -> None:
    upward = []
    for module, imports in _graph().items():
        mine = LAYERS.index(_layer(module))
        for target, line, _, _ in imports:
            if target.startswith("workbench") and LAYERS.index(_layer(target)) < mine:
                upward.append(f"{module}:{line} imports {target} ({_layer(module)} → {_layer(target)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    graph = {
        m: sorted({t for t, _, _, _ in imps if t.startswith("workbench") and t != m}) for m, imps in _graph().items()
    }
    graph = {
        m: [t for t in targets if t in graph and not m.startswith(t + ".") and not (t + ".").startswith(m + ".")]
        for m, targets in graph.items()
    }
    cycles, state = [], {}

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            dfs(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    ("layers", "forbidden"), [(NO_WIDGETS, ("ipywidgets", "anywidget")), (NO_PLOTTING, ("plotly",))]
)
def test_pure_layers_import_no_widgets_or_plots(layers, forbidden) -> None:
    found = [
        f"{m}:{line} imports {t}"
        for m, imps in _graph().items()
        if _layer(m) in layers
        for t, line, _, _ in imps
        if t.split(".")[0] in forbidden
    ]
    assert not found, "\n".join(found)


def test_lazy_imports_say_why() -> None:
    """An import inside a function is for a heavy or optional dependency, and a comment on its line says so."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, line, nested, last in _imports(path):
            if nested and not any("#" in text for text in lines[line - 1 : last]):
                silent.append(f"{_module_name(path)}:{line} {target}")
    assert not silent, f"{len(silent)} imports inside functions without a reason:\n" + "\n".join(sorted(set(silent)))

"""The house is one-way: every module sits in a layer, imports only run downward, and no circle hides anywhere.

The import graph is read from the source (``ast``), so it sees what a runtime check does not: imports under
``if TYPE_CHECKING:`` and imports inside functions count as edges, and are themselves refused (each was a circle
dodged). The layers, top to bottom, as ``src/recsys_attn/__init__.py`` draws them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "recsys_attn"
COMMANDS = ("train", "evaluate", "predict", "export", "ope", "compare", "prepare")
LEAVES = ("errors", "constants", "atomic", "settings")
LAYERS: tuple[tuple[str, ...], ...] = (
    COMMANDS,
    ("jobs",),
    ("run",),
    ("tracking",),
    ("serving",),
    ("models",),
    ("evaluation",),
    ("data",),
    LEAVES,
)
"""Top to bottom: a module may import its own layer (without a circle) and the layers below it."""


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (both dotted module names) at ``line``, as ``kind``."""

    source: str
    target: str
    line: int
    kind: str  # "module" (top level), "type-only" (under TYPE_CHECKING), "in-function"


def modules(src: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package under ``src``."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _kinds(tree: ast.Module) -> dict[int, str]:
    """``id(node)`` -> the kind of every import node that is not at module level."""
    kinds: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            kinds.update({id(n): "type-only" for b in node.body for n in ast.walk(b)})
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            kinds.update({id(n): "in-function" for n in ast.walk(node) if id(n) not in kinds and n is not node})
    return kinds


def edges(src: Path) -> Iterator[Edge]:
    """Every import of a module of the package by another, with where and how."""
    known = modules(src)
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        kinds = _kinds(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                root = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                base = f"{root}.{node.module}" if root and node.module else (node.module or root)
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            targets = set()
            for candidate in candidates:
                while candidate and candidate not in known:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name and not name.startswith(candidate + "."):
                    targets.add(candidate)
            if isinstance(node, ast.ImportFrom) and any(f"{base}.{a.name}" in known for a in node.names):
                targets.discard(base)  # ``from pkg import module``: the module, not its package
            for target in sorted(targets):
                yield Edge(name, target, node.lineno, kinds.get(id(node), "module"))


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of ``module`` (``recsys_attn`` itself: the bottom), None when it has no layer."""
    parts = module.split(".")
    if parts == [PACKAGE]:
        return len(LAYERS) - 1
    for index, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return index
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(src: Path) -> list[str]:
    """Everything that breaks the house's rules, one line each (empty: the house is one-way)."""
    found = []
    all_edges = list(edges(src))
    for name in modules(src):
        if layer_of(name) is None:
            found.append(f"{name}: in no layer (the top level holds the commands and {', '.join(LEAVES)} only)")
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        where = f"{e.source}:{e.line} imports {e.target}"
        graph.setdefault(e.source, set()).add(e.target)
        if e.kind != "module":
            found.append(
                f"{where} {e.kind} (import at module level; a circle it avoided is a module in the wrong place)"
            )
        source, target = layer_of(e.source), layer_of(e.target)
        if source is not None and target is not None and target < source:
            found.append(f"{where}: upward, from layer {'/'.join(LAYERS[source])} to {'/'.join(LAYERS[target])}")
    found += [f"circle: {' <-> '.join(c)}" for c in cycles(graph)]
    return found


def test_the_house_is_one_way() -> None:
    assert violations(SRC) == []


def test_the_graph_sees_the_real_imports() -> None:
    """The checker is not vacuous: it finds known edges of each kind of import statement."""
    found = {(e.source, e.target) for e in edges(SRC)}
    assert ("recsys_attn.train", "recsys_attn.jobs") in found  # from recsys_attn.jobs import run_job
    assert ("recsys_attn.jobs.train", "recsys_attn.run.runner") in found
    assert ("recsys_attn.data.formats", "recsys_attn.data.readers") in found  # from recsys_attn.data import readers
    assert ("recsys_attn.models.base", "recsys_attn.evaluation.metrics") in found
    assert len(found) > 150


@pytest.fixture
def src_copy(tmp_path: Path) -> Path:
    """A copy of ``src/`` to plant bad imports in."""
    shutil.copytree(SRC / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(src: Path, module: str, text: str) -> None:
    path = src / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + "\n" + text + "\n")


def test_a_planted_upward_import_fails(src_copy: Path) -> None:
    _plant(src_copy, "recsys_attn.models.base", "from recsys_attn.tracking.callbacks import EpochTimer")
    found = violations(src_copy)
    assert any(
        v.startswith("recsys_attn.models.base:") and "imports recsys_attn.tracking.callbacks: upward" in v
        for v in found
    ), found


def test_a_circle_closed_under_type_checking_fails(src_copy: Path) -> None:
    _plant(
        src_copy,
        "recsys_attn.data.sources",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recsys_attn.data.formats import READERS",
    )
    found = violations(src_copy)
    assert any("imports recsys_attn.data.formats type-only" in v for v in found), found
    assert any(v.startswith("circle:") and "recsys_attn.data.sources" in v for v in found), found


def test_an_import_inside_a_function_fails(src_copy: Path) -> None:
    _plant(src_copy, "recsys_attn.data.sources", "def _late() -> None:\n    from recsys_attn.data import formats")
    found = violations(src_copy)
    assert any("recsys_attn.data.sources:" in v and "formats in-function" in v for v in found), found


def test_a_new_top_level_module_needs_a_layer(src_copy: Path) -> None:
    (src_copy / PACKAGE / "helpers.py").write_text('"""Misc."""\n')
    assert "recsys_attn.helpers: in no layer" in " ".join(violations(src_copy))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_imports_no_torch_until_it_runs(command: str) -> None:
    """``--help`` stays fast: importing a command module loads neither torch nor Lightning (its job does)."""
    probe = (
        f"import sys, recsys_attn.{command}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'polars', 'numpy'}))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout

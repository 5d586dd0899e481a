"""The import graph of the four packages: no cycles between modules (function-level imports
included, `if TYPE_CHECKING:` blocks excluded), and the pipeline's arrows point one way:
mobilecodec core -> mobilecodec.quant -> mobilecodec.export -> mobilecodec.runtime, with the CLI and
the demo on top. Built from the source folders the installed packages map to."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"mobilecodec": "mobilecodec", "mobilecodec.quant": "quant", "mobilecodec.export": "export",
           "mobilecodec.runtime": "runtime"}
LAYER = {"mobilecodec": 0, "mobilecodec.quant": 1, "mobilecodec.export": 2, "mobilecodec.runtime": 3}
ON_TOP = ("mobilecodec.cli", "mobilecodec.demo", "mobilecodec.demo_report", "mobilecodec.demo_models",
          "mobilecodec.__main__")



def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in FOLDERS.items():
        for f in (ROOT / folder).rglob("*.py"):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = f
    return mods


def _imports(tree: ast.AST) -> set[str]:
    """Absolute imports anywhere in the module except under `if TYPE_CHECKING:`."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t in _imports(ast.parse(f.read_text())) if t in mods and t != m} for m, f in mods.items()}


def _package(mod: str) -> str:
    return max((p for p in LAYER if mod == p or mod.startswith(p + ".")), key=len)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles():
    graph = _graph()
    assert len(graph) > 80  # the walk really found the packages
    assert _cycles(graph) == []


def test_cycle_detector_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_pipeline_arrows_point_one_way():
    bad = []
    for mod, targets in _graph().items():
        if mod.startswith(ON_TOP):
            continue
        for t in targets:  # the CLI and the demo sit on top of every layer: none imports them
            if LAYER[_package(t)] > LAYER[_package(mod)] or t.startswith(ON_TOP):
                bad.append(f"{mod} -> {t}")
    assert bad == []

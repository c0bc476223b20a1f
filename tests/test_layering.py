"""The package's imports follow its layers: no import circle between modules, and no package imports one above it.

Read from the source (every `import vlmlab...` and `from vlmlab... import`, at the top of a module or inside a
function), so a lazy import that closes a circle counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vlmlab

ROOT = Path(vlmlab.__file__).parent
# Low to high, in the order of the flow (spec -> plan -> train -> eval -> records -> tables): a package may import
# its own rank and those below. `run_record` is the typed contract every stage fills or reads, so it is at the
# bottom with the errors. The spec and plan (`sweep`) read the configs the way training will (its budget, stages,
# parallel layout: vlmlab.train's config readers), so they sit above `train`; the records check a run's identity
# (`sweep.identity`); `launch` runs the plan and writes the records, so it comes after them. `pretrain` builds the
# zoo's backbones from models and data with train's schedules; `launch` runs it before the sweeps that need them.
RANKS = {"errors": 0, "run_record": 0, "models": 1, "data": 2, "eval": 3, "train": 4, "pretrain": 5, "sweep": 6,
         "results": 7, "launch": 8, "tune": 9, "cli": 10, "bench": 10}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("vlmlab", *path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's vlmlab modules imported, wherever in it (a `from package import module` names the module)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
        graph[name] = targets - {name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_module_imports_itself_through_others():
    assert _circles(_imports(_modules())) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_package_imports_a_package_above_it():
    graph = _imports(_modules())
    assert {_package(m) for m in graph} - {"vlmlab"} <= set(RANKS), "a new package needs its rank here"
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if module != "vlmlab" and RANKS[_package(target)] > RANKS[_package(module)])
    assert upward == []

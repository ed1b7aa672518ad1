"""The package's import graph: no cycles, and every import runs down the layers."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bandit_router"

# Lowest first. A module may import its own layer's modules and any lower layer's, never a higher one's.
LAYERS: list[set[str]] = [
    {"v1", "data", "client"},
    {"config", "errors"},
    {"domain"},
    {"embedding", "store", "energy", "policy", "traffic"},
    {"observability"},
    {"serving", "learning"},
    {"transport"},
    {"runtime"},
    {"offline"},
    {"bench"},
    {"cli", "__main__"},
]
# Pairs where the first must not import the second, whatever the layers allow: the routing side never imports
# the learner, nor the learner routing; a transport reaches Redis only through the router (serving), never the
# store itself.
APART = [("serving", "learning"), ("learning", "serving"), ("transport", "store")]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("bandit_router", *parts))] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (at any depth of the file: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            # `from package import module` needs the module, not the package's __init__.
            names = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        found |= {n for n in names if n in modules and n != "bandit_router"}
    return found


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _layer(module: str) -> int:
    top = _top(module)
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


GRAPH = {m: _imports(p, _modules()) for m, p in _modules().items() if m != "bandit_router"}


def test_every_import_runs_down_the_layers() -> None:
    upward = [
        f"{m} ({_top(m)}) imports {i} ({_top(i)})"
        for m, targets in GRAPH.items()
        for i in targets
        if _layer(i) > _layer(m) or (_top(m), _top(i)) in APART
    ]
    assert upward == []


def test_transports_reach_the_store_only_through_the_router() -> None:
    """Neither an import of the store (APART) nor a reach through the router's ``.store`` attribute."""
    reaches = sorted(
        f"{m}:{node.lineno}"
        for m, path in _modules().items()
        if _top(m) == "transport"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "store"
    )
    assert reaches == []


def test_the_decision_rule_imports_no_serving_code() -> None:
    """``policy/`` (the rule, the regressor, budgets) runs alone, as ``simulations/rules.py`` runs it."""
    found = sorted(f"{m} imports {i}" for m in GRAPH if _top(m) == "policy" for i in GRAPH[m] if _layer(i) > _layer(m))
    assert "bandit_router.policy.rule" in GRAPH and found == []


def test_nothing_imports_the_benchmarks_but_the_command_line() -> None:
    """Benchmarks drive the service from outside: nothing of the service imports them back (tests may)."""
    importers = sorted(
        m for m, targets in GRAPH.items() if _top(m) not in {"bench", "cli"} for i in targets if _top(i) == "bench"
    )
    assert importers == []


def test_the_import_graph_has_no_cycle() -> None:
    # Only package-internal edges between modules (a package's __init__ holds no code here).
    graph = {m: {i for i in t if i in GRAPH and i != m} for m, t in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


# Generated code (bandit_router/v1) is protoc's to write, docstrings included.
@pytest.mark.parametrize("module", sorted(m for m in GRAPH if "v1" not in m.split(".")))
def test_every_module_says_its_job_in_its_first_line(module: str) -> None:
    path = _modules()[module]
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc, f"{path} has no docstring"


def test_the_client_imports_nothing_of_the_server() -> None:
    """``pip install bandit-router`` (the client, without the server extra) has httpx and the standard library."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "httpx"}
    found = set()
    for path in (ROOT / "client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    foreign = sorted(n for n in found if n.split(".")[0] not in allowed and not n.startswith("bandit_router.client"))
    assert found and foreign == []

"""Dependencies point one way (DESIGN.md, layering): checked on the source with ``ast``.

Every import of every module under ``src/medsight`` counts, including those inside functions
and under ``TYPE_CHECKING`` (a lazy import is still a dependency; only doctests are not parsed).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "medsight"

#: Lower layers: they may not reach up into these packages.
LOW = ("models", "transforms", "io", "core")
HIGH = ("training", "evaluation", "inference", "analysis", "batch", "service", "cli")

#: Edges the rules forbid but that are needed for now: (importing module, imported module) ->
#: reason.  Empty: every forbidden edge has been moved.  Add an entry only with its reason.
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def _imports(path: Path) -> set[str]:
    """Every ``medsight`` module (or ``medsight.x`` name) imported anywhere in ``path``."""
    name, is_pkg = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "medsight":  # ``from medsight import training``
                found.update(f"medsight.{a.name}" for a in node.names)
            else:
                found.add(module)
    return {m for m in found if m == "medsight" or m.startswith("medsight.")}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        graph[_module_name(path)[0]] = _imports(path)
    return graph


GRAPH = _graph()


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    out = []
    for module, imported in sorted(GRAPH.items()):
        if _package(module) not in sources:
            continue
        for target in sorted(imported):
            pkg = _package(target)
            if pkg in targets and pkg != _package(module) and (module, target) not in ALLOWED:
                out.append(f"{module} imports {target}")
    return out


def test_graph_is_populated():
    assert len(GRAPH) > 100
    assert "medsight.training.seg_runner" in GRAPH["medsight.cli.segment"]  # function-level


def test_inference_imports_neither_training_nor_evaluation():
    assert _violations(("inference",), ("training", "evaluation")) == []


@pytest.mark.parametrize("low", LOW)
def test_lower_layers_do_not_import_upper_ones(low):
    assert _violations((low,), HIGH) == []


def test_family_registry_imports_only_core():
    """The registry names its parts as strings; importing it pulls in nothing above core."""
    out = []
    for module, imported in sorted(GRAPH.items()):
        if _package(module) == "families":
            out += [
                f"{module} imports {t}"
                for t in sorted(imported)
                if _package(t) not in {"core", "families"}
            ]
    assert out == []


def test_core_imports_no_other_medsight_package():
    out = []
    for module, imported in sorted(GRAPH.items()):
        if _package(module) == "core":
            out += [f"{module} imports {t}" for t in sorted(imported) if _package(t) != "core"]
    assert out == []


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_subpackages_form_no_import_cycle():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, imported in GRAPH.items():
        src = _package(module)
        for target in imported:
            dst = _package(target)
            if src and dst and src != dst and (module, target) not in ALLOWED:
                packages[src].add(dst)
    cycle = _find_cycle(dict(packages))
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_qc_modules_form_no_import_cycle():
    qc = {m: {t for t in imp if t.startswith("medsight.data.qc.")} for m, imp in GRAPH.items()}
    qc = {m: t for m, t in qc.items() if m.startswith("medsight.data.qc.")}
    cycle = _find_cycle(qc)
    assert cycle is None, "medsight.data.qc import cycle: " + " -> ".join(cycle or [])

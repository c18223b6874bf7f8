"""The library's layering: no import circle, and the data objects import no stage after them."""

from __future__ import annotations

import ast
from pathlib import Path

import exactsnn

ROOT = Path(exactsnn.__file__).parent


def _module_graph() -> dict[str, set[str]]:
    """Intra-package imports of every module, function-level imports included."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    graph = {}
    for name, (path, package) in modules.items():
        here = name.split(".") if package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    deps.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state, stack, found = {}, [], []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def _reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for v in graph[todo.pop()] - seen:
            seen.add(v)
            todo.append(v)
    return seen


def test_the_graph_checker_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_import_circle_in_the_library():
    graph = _module_graph()
    assert "exactsnn.simulator.network" in graph and "exactsnn.neurons.alpha" in graph
    assert _cycles(graph) == []


def test_data_objects_and_neuron_models_import_no_simulator():
    graph = _module_graph()
    for module in ("exactsnn.spiking", "exactsnn.preprocess", "exactsnn.preprocessed", "exactsnn.folding",
                   "exactsnn.scaling", "exactsnn.synapses", "exactsnn.ir", "exactsnn.neurons", "exactsnn.serialize"):
        later = {m for m in _reachable(graph, module) if m.startswith(("exactsnn.simulator", "exactsnn.measure"))}
        assert not later, f"{module} imports {sorted(later)}"

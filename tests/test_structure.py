"""The package's shape: dependencies point one way, and plugin.py only wires.

A newcomer should find each concern in a module of its own; a cycle between
modules, or logic creeping back into the entry point, is what blurs that.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_mountns

PACKAGE = Path(pytest_mountns.__file__).parent


def imports_within_the_package() -> dict[str, set[str]]:
    """Each module's imports of the package's other modules, ``TYPE_CHECKING`` ones too."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module is None:  # from . import a, b
                    found.update(alias.name for alias in node.names)
                else:  # from .a import name
                    found.add(node.module.split(".")[0])
        graph[module] = found - {module}
    return graph


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the path that closes it, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported, [*path, module])
            if cycle is not None:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle is not None:
            return cycle
    return None


def test_the_finder_sees_a_cycle_where_there_is_one() -> None:
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle() -> None:
    graph = imports_within_the_package()
    assert {"plugin", "_runner", "_forking", "_inprocess", "_isolation"} <= set(graph)
    assert a_cycle(graph) is None, " -> ".join(a_cycle(graph) or [])


def test_the_runners_know_nothing_of_each_other_nor_of_mounts() -> None:
    graph = imports_within_the_package()
    mounts = {"_namespace", "_hermetic", "_plan", "_spec", "plugin"}
    for runner in ("_runner", "_forking", "_inprocess", "_isolation"):
        assert not graph[runner] & mounts, (runner, graph[runner] & mounts)
    assert "_runner" not in graph["_inprocess"] and "_forking" not in graph["_inprocess"]
    assert "_runner" not in graph["_forking"]


def test_plugin_py_only_wires_hooks_and_fixtures() -> None:
    """Every function in it is a hook, a fixture, or the protocol it routes to pytest."""
    tree = ast.parse((PACKAGE / "plugin.py").read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions
    for function in functions:
        decorators = [ast.unparse(decorator) for decorator in function.decorator_list]
        fixture = any(decorator.startswith("pytest.fixture") for decorator in decorators)
        assert function.name.startswith("pytest_") or fixture or function.name == "_run_protocol", (
            f"plugin.py defines {function.name}, neither a hook nor a fixture"
        )


@pytest.mark.parametrize(
    "name", ["DeclarationError", "LeftoverProcessWarning", "LeftoverThreadWarning"]
)
def test_what_filters_and_except_clauses_name_is_public(name: str) -> None:
    assert name in pytest_mountns.__all__
    assert getattr(pytest_mountns, name).__module__.startswith("pytest_mountns.")

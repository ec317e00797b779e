"""The package's shape: no import cycle between its modules (function-level imports included), the command line
on top (nothing imports ``probekit.cli``), and the public API of ``probekit/__init__.py`` importable lazily."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import probekit

PACKAGE = Path(probekit.__file__).resolve().parent


def _module_name(path: Path) -> str:
    return ".".join(("probekit", *path.relative_to(PACKAGE).with_suffix("").parts))


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports anywhere in its code}``; ``__init__`` files are not nodes
    (their lazy re-exports are the package's face, not a dependency)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    graph = {}
    for name, path in modules.items():
        package = name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []


def test_nothing_in_the_package_imports_the_command_line():
    graph = import_graph()
    importers = sorted(
        name for name, targets in graph.items() if "probekit.cli" in targets and name != "probekit.__main__"
    )
    assert importers == []


def test_the_public_api_resolves_every_name():
    import probekit.evaluate.run  # binds the subpackage probekit.evaluate: no API name may be shadowed by one

    for name in probekit.__all__[1:]:
        value = getattr(probekit, name)
        assert callable(value) and not isinstance(value, types.ModuleType), name
    from probekit import GenerationConfig, check_solution, compute_labels, draw_problem

    problem, solution = draw_problem(GenerationConfig("med", seed=5), 0)
    assert check_solution(problem, solution).correct
    assert compute_labels(problem, solution).steps


def test_importing_probekit_and_its_help_do_not_import_torch(imported_modules):
    code = "import probekit, probekit.cli; probekit.cli.build_parser()"
    assert imported_modules(code, ["torch", "pandas"]) == []

"""The shape of the code, read from the source with ``ast``: imports point one way (no cycles), the core ``darts/``
never imports a concrete search space, only the entry points use Hydra, and no module shadows a standard one."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("darts", "search_spaces", "benchmarks")
ENTRY_POINTS = ("train_search", "train_final", "cli")
CONCRETE_SPACES = "search_spaces.base"  # the one module of search_spaces/ that darts/ may import: the interface


def module_name(path: Path) -> str:
    """``darts/runs/search.py`` -> ``darts.runs.search``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every project module by dotted name (packages, their sub-packages and the entry points)."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + [ROOT / f"{e}.py" for e in ENTRY_POINTS]
    return {module_name(p): p for p in files}


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules ``path`` imports anywhere in it (type-checking and function-level imports included): for
    ``from a.b import c`` that is ``a.b.c`` when it is a module, else ``a.b``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names)
    return names


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (a package's __init__ imports count as the package's)."""
    modules = project_modules()
    return {name: {m for m in imported(path, modules) if m in modules} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of the graph (each as the modules on it), by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle(graph):
    """No chain of imports among the project's modules leads back to where it started."""
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-module loop is reported."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"]]


def test_core_imports_no_concrete_space(graph):
    """darts/ (the core) imports search_spaces.base only: never a concrete space."""
    bad = {(mod, dep) for mod, deps in graph.items() if mod.split(".")[0] == "darts"
           for dep in deps if dep.startswith("search_spaces") and dep != CONCRETE_SPACES}
    assert bad == set()


def test_only_entry_points_use_hydra():
    """Hydra and OmegaConf appear only in the entry points (the library takes plain typed arguments)."""
    modules = project_modules()
    bad = {name for name, path in modules.items() if name not in ENTRY_POINTS
           and any(m.split(".")[0] in ("hydra", "omegaconf") for m in imported(path, modules))}
    assert bad == set()


def test_no_module_shadows_a_standard_module():
    """No project module or package is named like a standard-library module (e.g. logging)."""
    names = {name.rsplit(".", 1)[-1] for name in project_modules()}
    assert names & set(sys.stdlib_module_names) == set()

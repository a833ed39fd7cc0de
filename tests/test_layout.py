"""The shape of the code, read from the source with ``ast``: imports point one way (no cycles, none from a lower layer
to a higher one), the core ``darts/`` never imports a concrete search space, only the application layer
(``darts.app`` and the thin wrappers) uses Hydra, files stay short and no module shadows a standard one."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("darts", "search_spaces", "benchmarks")
ENTRY_POINTS = ("train_search", "train_final")
APP = "darts.app"  # the only package that imports hydra and omegaconf
# Layers from the top: a module imports only from its own layer or those below (the first prefix that matches wins).
LAYERS = (
    ("train_search", "train_final", "benchmarks", APP),  # commands
    ("darts.reporting", "darts.deploy"),  # read finished runs
    ("darts.runs",),  # the run lifecycle and its kinds
    ("darts.strategies", "darts.evaluators", "darts.selections"),  # algorithms
    ("search_spaces",),  # topology
    ("darts",),  # the core: ops, supernet, training loop, data, context
)
MAX_LINES = 300
MAX_CORE_MODULES = 12
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


def test_only_the_application_uses_hydra():
    """Hydra and OmegaConf appear only in darts.app (the library takes plain typed arguments)."""
    modules = project_modules()
    bad = {name for name, path in modules.items() if name not in ENTRY_POINTS and not name.startswith(APP)
           and any(m.split(".")[0] in ("hydra", "omegaconf") for m in imported(path, modules))}
    assert bad == set()


def layer(module: str) -> int:
    """The layer of a module (0 = the top), by the first prefix of ``LAYERS`` that names it or a package above it."""
    return next(k for k, prefixes in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + "."))


def test_no_import_runs_back_up(graph):
    """No module imports one of a higher layer (e.g. the core never imports a strategy, a run never a command)."""
    bad = sorted((mod, dep) for mod, deps in graph.items() for dep in deps if layer(dep) < layer(mod))
    assert bad == []


def test_layer_check_finds_an_upward_import():
    """The check above can fail: the core importing a run is upward."""
    assert layer("darts.training") > layer("darts.runs.search") > layer("darts.app.search")


def test_library_files_are_short():
    """No library module is over 300 lines (the original DARTS files are each under 250)."""
    long = {name: n for name, path in project_modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES and not name.startswith("benchmarks")}
    assert long == {}


def test_the_core_has_few_modules():
    """At most 12 modules directly in darts/ besides its sub-packages: the rest is grouped by capability."""
    core = [p.name for p in (ROOT / "darts").glob("*.py") if p.name != "__init__.py"]
    assert len(core) <= MAX_CORE_MODULES, sorted(core)


def test_no_module_shadows_a_standard_module():
    """No project module or package is named like a standard-library module (e.g. logging)."""
    names = {name.rsplit(".", 1)[-1] for name in project_modules()}
    assert names & set(sys.stdlib_module_names) == set()


def test_every_package_is_a_regular_package():
    """Every folder of Python code under darts/ and search_spaces/ has an __init__.py, so that a non-editable
    ``pip install .`` (setuptools ``packages.find``) ships it, and no .gitignore rule hides a module from git."""
    import subprocess
    ignored = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "darts",
                              "search_spaces"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert [f for f in ignored if f.endswith((".py", ".yaml"))] == []
    for pkg in ("darts", "search_spaces"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert (path.parent / "__init__.py").exists(), f"{path.parent.relative_to(ROOT)} has no __init__.py"

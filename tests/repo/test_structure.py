"""The repository's shape: short one-job modules and files, and an import graph that points one way, without cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import softshare

PACKAGE = Path(softshare.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
ROOT = Path(__file__).resolve().parents[2]
# The C++ sources of the compiled module (vendored headers live in third_party/).
CSRC = ROOT / "csrc"
#: The repository's other Python files: tests, benchmarks, tools.
REPO_SOURCES = sorted(p for d in ("tests", "benchmarks", "tools") for p in (ROOT / d).rglob("*.py"))
NATIVE_SOURCES = sorted(
    p
    for p in CSRC.rglob("*")
    if p.suffix in {".cpp", ".hpp", ".h"} and "third_party" not in p.relative_to(CSRC).parts
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, at any depth of its code."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            named = {f"{module}.{alias.name}" for alias in node.names}
            found.update(named)
            if not named <= MODULES:  # names defined in ``module``, not only its submodules
                found.add(module)
    return found


#: The package's modules, the compiled ones (``_core``) included.
MODULES = {
    _module_name(p.with_name(p.name.split(".")[0] + ".py"))
    for p in PACKAGE.rglob("*")
    if p.suffix in {".py", ".pyi", ".so", ".pyd"}
}
GRAPH = {_module_name(p): _imports(p) for p in SOURCES}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _short(path: Path, limit: int) -> str:
    """``path``'s text, checked to be at most ``limit`` lines."""
    text = path.read_text()
    assert len(text.splitlines()) <= limit, (
        f"{path.name} has more than {limit} lines (split it by job)"
    )
    return text


def test_sources_found() -> None:
    assert "softshare.torch.prior" in GRAPH
    assert "softshare.compress" in GRAPH
    assert "softshare.demo.recipe" in GRAPH
    assert "softshare.jax._ffi" in GRAPH
    names = {str(p.relative_to(CSRC)) for p in NATIVE_SOURCES}
    assert {"bindings.cpp", "softshare/driver.hpp", "softshare/block-inl.hpp"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_short_and_states_its_job(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(_short(path, 500)))
    assert doc, f"{path.name} has no module docstring stating its job"


@pytest.mark.parametrize("path", REPO_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_python_file_is_short_and_states_its_job(path: Path) -> None:
    tree = ast.parse(_short(path, 500))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring stating its job"
    future = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert future, f"{path.name} does not import annotations from __future__"


@pytest.mark.parametrize("path", NATIVE_SOURCES, ids=lambda p: str(p.relative_to(CSRC)))
def test_native_file_is_short_and_states_its_job(path: Path) -> None:
    first = (_short(path, 450).splitlines() or [""])[0]
    states_job = first.startswith("// ") and len(first.split()) >= 4  # "//" and three words
    assert states_job, f"{path.name} does not start with a comment line stating its job"


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("softshare", "softshare.demo"),  # the library never reaches into the demo
        ("softshare.compress", "softshare.torch"),  # the recipe is framework-free
        ("softshare.torch", "softshare.demo"),
        ("softshare.compress", "softshare.demo"),
        ("softshare.compress", "softshare.jax"),  # the recipe is framework-free
        ("softshare.jax", "softshare.torch"),  # the adapters are independent of each other
        ("softshare.torch", "softshare.jax"),
        ("softshare.jax", "softshare.demo"),
    ],
)
def test_import_graph_points_one_way(importer: str, imported: str) -> None:
    offenders = [
        (module, target)
        for module, targets in GRAPH.items()
        if _within(module, importer)
        and not _within(module, imported)
        and module != "softshare.__main__"  # the command line is where the demo is started
        for target in targets
        if _within(target, imported)
    ]
    assert not offenders, f"{importer} must not import {imported}: {offenders}"


def _reached_from(start: str) -> set[str]:
    """The package's modules that importing ``start`` loads (statically)."""
    reach, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in reach:
            continue
        reach.add(module)
        todo.extend(t for t in GRAPH.get(module, ()) if t in GRAPH and t != module)
    return reach


def test_top_level_package_never_imports_torch() -> None:
    """Nothing ``import softshare`` loads imports torch, statically or at run time."""
    reach = _reached_from("softshare")
    bad = sorted(m for m in reach if _within(m, "softshare.torch") or "torch" in GRAPH[m])
    assert not bad, f"import softshare reaches torch through {bad}"
    code = "import sys, softshare; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compress_never_imports_torch_at_run_time() -> None:
    code = (
        "import sys, softshare.compress; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('softshare.torch')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_top_level_package_never_imports_jax() -> None:
    """Nothing ``import softshare`` loads imports jax, statically or at run time."""
    reach = _reached_from("softshare")
    bad = sorted(
        m for m in reach if _within(m, "softshare.jax") or any(_within(t, "jax") for t in GRAPH[m])
    )
    assert not bad, f"import softshare reaches jax through {bad}"
    code = (
        "import sys, softshare, softshare.compress; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib') "
        "or m.startswith('softshare.jax')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _shortest_cycle(start: str) -> list[str] | None:
    """The shortest chain of imports from ``start`` back to it (``[start, ..., start]``), if any."""
    came_from: dict[str, str] = {}
    todo = [start]
    while todo:
        following = []
        for module in todo:
            for target in sorted(GRAPH[module]):
                if target == start:
                    chain = [module]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return [*reversed(chain), start]
                if target in GRAPH and target not in came_from:
                    came_from[target] = module
                    following.append(target)
        todo = following
    return None


def test_no_import_cycles_type_only_included() -> None:
    """No module imports itself through others: at run time, under ``TYPE_CHECKING``, or in a function.

    Importing a submodule runs its package's ``__init__`` first; that alone is no
    edge here (``from . import _core`` is an edge to ``_core``), but importing a
    name the package defines is.
    """
    cycles: list[list[str]] = []
    for module in sorted(GRAPH):
        if any(module in cycle for cycle in cycles):
            continue
        cycle = _shortest_cycle(module)
        if cycle is not None:
            cycles.append(cycle)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

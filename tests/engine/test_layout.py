"""The package's layout (README, Architecture):

- no import circles among the modules of core/, algorithms/ and scripts/ (every import, also those inside
  functions, which only defer a circle; those under ``TYPE_CHECKING`` never run);
- core/'s folders are layers, ``cli > operations > runtime > io > kernels > the bottom modules``, and core/
  never imports QGIS: import-linter's contracts in pyproject.toml, run here as ``lint-imports``;
- no module imports another module's private name (a leading underscore): what is shared is public;
- algorithms/ (imported by QGIS when the plugin loads) never imports numba or rasterio at module level:
  they live in the engine's environment, which QGIS's Python may not have.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "algorithms")
HEAVY = ("numba", "rasterio")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["tilewise"] + parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports_run(tree: ast.Module):
    """Every import statement, except those under ``if TYPE_CHECKING:`` (annotations only)."""
    todo: List[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _imports_run(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found |= {t for t in targets if t in known and t != name}
    return found


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every import circle, each once (from its smallest module name)."""
    found = []

    def walk(start: str, node: str, path: List[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_no_import_circles():
    mods = modules()
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    assert sum(map(len, graph.values())) > 100          # the walk did find the imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_core_never_imports_qgis():
    mods = modules()
    for name, path in mods.items():
        if name.startswith("tilewise.core"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    assert not any(a.name.split(".")[0] in ("qgis", "processing") for a in node.names), name
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    assert node.module.split(".")[0] not in ("qgis", "processing"), name


def test_every_package_is_in_pyproject():
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p.parent / "__init__.py") for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    assert found - listed == set()


def _python_files(*patterns: str) -> Iterator[Path]:
    for pattern in patterns:
        yield from sorted(ROOT.glob(pattern))


def private_imports(path: Path) -> List[str]:
    """``file:line: from X import _name`` for every private name ``path`` imports from another module.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d, "m.py")
    ...     _ = p.write_text("from __future__ import annotations\\nfrom .a import b, _c\\nfrom . import __version__\\n")
    ...     [line.split(": ", 1)[1] for line in private_imports(p)]
    ['from .a import _c']
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    where = f"{'.' * node.level}{node.module or ''}"
                    found.append(f"{path}:{node.lineno}: from {where} import {alias.name}")
    return found


def module_level_imports(tree: ast.Module) -> Iterator[Tuple[int, str]]:
    """``(line, module)`` of the imports that run when the module is imported: at its top level, and in
    module-level ``if``/``try``/``with`` blocks (not in functions or classes)."""
    todo: List[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    todo.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def test_import_contracts_hold():
    """import-linter's contracts (pyproject.toml) pass; ``lint-imports`` sits beside the engine's Python."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"{lint} is missing: import-linter is in the [test] extra (make deps installs it)")
    import tilewise  # through the plugin link (build/plugins/tilewise), as make test imports it

    plugins = Path(tilewise.__file__).parent.parent  # the folder holding the plugin link, not its target
    env = dict(os.environ)
    env["PYTHONPATH"] = str(plugins)
    proc = subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=str(plugins), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_private_name_crosses_a_module():
    found = [line for path in _python_files("core/**/*.py", "algorithms/*.py", "*.py", "scripts/*.py")
             for line in private_imports(path)]
    assert not found, "private names imported from other modules (make them public or keep them home):\n" + \
        "\n".join(found)


def test_algorithms_never_import_the_engines_packages_at_module_level():
    found = []
    for path in _python_files("algorithms/*.py", "*.py"):
        for line, module in module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module.split(".")[0] in HEAVY:
                found.append(f"{path}:{line}: import {module}")
    assert not found, "QGIS's Python may lack these; import them in the engine process only:\n" + "\n".join(found)


def test_module_level_imports_are_found():
    """The check above can fail: it sees an import in a module-level ``try`` and ignores one in a function."""
    tree = ast.parse("import os\ntry:\n    import numba\nexcept ImportError:\n    pass\n"
                     "def f():\n    import rasterio\n")
    assert [m for _, m in module_level_imports(tree)] == ["os", "numba"]


def test_scripts_have_no_import_circle():
    scripts = {p.stem: p for p in sorted((ROOT / "scripts").glob("*.py"))}
    graph = {name: imports(name, path, set(scripts)) for name, path in scripts.items()}
    assert sum(map(len, graph.values())) > 0            # the scripts do import each other
    assert cycles(graph) == []


REFERENCE = re.compile(r":(?:mod|func|class|meth|data|attr|exc|obj):`~?([A-Za-z_.][\w.]*)`")
EXTERNAL = {"numpy", "np", "rasterio", "numba", "numexpr", "dask", "distributed", "pyogrio", "shapely", "pyarrow",
            "pystac", "pystac_client", "os", "json", "concurrent", "subprocess", "typing", "datetime", "urllib",
            "threading", "multiprocessing", "signal", "warnings", "contextlib", "tempfile", "pathlib", "queue"}


def _resolves(name: str) -> bool:
    """``name`` (a dotted path) is a module, or an attribute path in one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if parts[:2] == ["tilewise", "algorithms"] and i >= 3:      # QGIS's side: its file is enough here
            return (ROOT / "algorithms" / f"{parts[2]}.py").exists()
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _members(module) -> Set[str]:
    """Names a bare reference in ``module`` can mean: its own, and those of its classes (fields too)."""
    names = set(vars(module))
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__:
            names |= set(dir(value)) | set(getattr(value, "__annotations__", {}))
    return names


def unresolved_references(names: Dict[str, Path]) -> List[str]:
    """The Sphinx references (``:func:`...``` and the like) in ``names``' modules that name nothing:
    ``tilewise.…`` paths, ``.suffix`` paths (any module ending so), and bare names of the module itself."""
    found = []
    for name, path in names.items():
        module = importlib.import_module(name)
        text = path.read_text(encoding="utf-8")
        for match in REFERENCE.finditer(text):
            ref = match.group(1)
            if ref.startswith("tilewise."):
                ok = _resolves(ref)
            elif ref.startswith("."):
                ok = any(_resolves(f"{other}.{ref.lstrip('.')}") for other in names) or \
                    any(other.endswith(ref) for other in names)
            elif ref.split(".")[0] in EXTERNAL or ref in dir(builtins):
                ok = True
            else:
                ok = ref.split(".")[0] in _members(module) or _resolves(f"{name}.{ref}")
            if not ok:
                found.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}")
    return found


def test_docstring_references_resolve():
    """A docstring that points at a module, class or function points at one that exists (renames leave
    none behind)."""
    core = {name: path for name, path in modules().items() if name.startswith("tilewise.core")}
    found = unresolved_references(core)
    assert not found, "\n".join(found)


def test_an_unresolved_reference_is_found(tmp_path, monkeypatch):
    (tmp_path / "tw_probe_refs.py").write_text('"""See :func:`.no_such_module.f`, :func:`here` and :mod:`json`."""\n'
                                               "def here():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = unresolved_references({"tw_probe_refs": tmp_path / "tw_probe_refs.py"})
    assert [line.split(": ", 1)[1] for line in found] == [":func:`.no_such_module.f`"]


def _defined_names(path: Path) -> Set[str]:
    """Names a module defines or imports, read from its source (the QGIS side cannot be imported here)."""
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return out


def unresolved_plugin_references(folder: Path) -> List[str]:
    """The Sphinx references in ``folder``'s modules (the plugin's QGIS side) that name nothing: ``.module.name``
    (a file of ``folder`` that defines ``name``), ``tilewise.…`` paths (the engine's, imported), bare names
    (defined or imported by the module itself)."""
    found = []
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in REFERENCE.finditer(text):
            ref = match.group(1)
            if ref.startswith("."):
                module, *rest = ref[1:].split(".")
                target = folder / f"{module}.py"
                ok = target.exists() and (not rest or rest[0] in _defined_names(target))
            elif ref.startswith("tilewise."):
                ok = _resolves(ref)
            elif ref.split(".")[0] in EXTERNAL | {"qgis"} or ref in dir(builtins):
                ok = True
            else:
                ok = ref.split(".")[0] in _defined_names(path)
            if not ok:
                found.append(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}")
    return found


def test_the_plugins_docstring_references_resolve(tmp_path):
    """The same for algorithms/ (read, not imported: it needs QGIS); e.g. a module renamed on that side."""
    found = unresolved_plugin_references(ROOT / "algorithms")
    assert not found, "\n".join(found)
    (tmp_path / "probe.py").write_text('"""See :func:`.engine.start`, :class:`Here`, :func:`.probe.Here` and '
                                       ':class:`Gone`."""\nclass Here:\n    pass\n')
    found = unresolved_plugin_references(tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [":func:`.engine.start`", ":class:`Gone`"]

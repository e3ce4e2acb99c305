"""The layers of the code hold (README, Architecture).

- core/'s folders are layers, ``cli > operations > runtime > io > kernels > the bottom modules``, and
  core/ never imports QGIS: import-linter's contracts in pyproject.toml, run here as ``lint-imports``;
- no module imports another module's private name (a name with a leading underscore): what is shared
  is public, and what is private stays in its module;
- algorithms/ (imported by QGIS when the plugin loads) never imports numba or rasterio at module level:
  they live in the engine's environment, which QGIS's Python may not have;
- scripts/ has no import circle.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numba", "rasterio")


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
                    found.append(f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
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


def _script_imports() -> Dict[str, Set[str]]:
    names = {p.stem for p in _python_files("scripts/*.py")}
    graph: Dict[str, Set[str]] = {}
    for path in _python_files("scripts/*.py"):
        imported: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        graph[path.stem] = imported & names - {path.stem}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The import circles of ``graph`` (module -> modules it imports), each from its smallest name.

    >>> cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    found = set()

    def walk(start: str, node: str, path: List[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                found.add(tuple(path))
            elif nxt not in path and nxt > start:
                walk(start, nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return [list(c) for c in sorted(found)]


def test_scripts_have_no_import_circle():
    assert not cycles(_script_imports())

"""A real, headless QGIS for the whole session, with Processing and Tilewise loaded the way QGIS loads them.

Run with QGIS's own Python (``make test-qgis``). The plugin folder is
``<repo>/build/plugins`` (``make plugin-link`` points ``build/plugins/tilewise``
at the checkout), so the package imports as ``tilewise`` wherever the repository is.
"""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # tests/readonly.py, shared with the engine tests
PLUGINS_DIR = REPO / "build" / "plugins"
ENGINE_PYTHON = REPO / ".venv" / "bin" / "python"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if ENGINE_PYTHON.exists():
    os.environ.setdefault("TILEWISE_PYTHON", str(ENGINE_PYTHON))


def pytest_configure(config):
    if not (PLUGINS_DIR / "tilewise" / "metadata.txt").exists():
        pytest.exit(f"{PLUGINS_DIR}/tilewise is missing: run `make plugin-link` (or `make test-qgis`) first.",
                    returncode=2)


@pytest.fixture(scope="session", autouse=True)
def qgis_app(tmp_path_factory):
    """QgsApplication + Processing + the Tilewise plugin, once per session.

    QGIS settings go to a throw-away folder, so a Tilewise interpreter set in the
    developer's own profile cannot change what the tests run.
    """
    home = tmp_path_factory.mktemp("qgis-home")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    from qgis.core import QgsApplication

    app = QgsApplication([], False, str(home / "profile"))
    app.initQgis()

    # QGIS puts its bundled plugins and the plugin folders on sys.path at startup.
    qgis_python = os.path.join(QgsApplication.pkgDataPath(), "python")
    for path in (qgis_python, os.path.join(qgis_python, "plugins"), str(PLUGINS_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)
    from processing.core.Processing import Processing
    Processing.initialize()

    assert "tilewise" not in sys.modules, "the plugin must be imported by qgis.utils, not before"
    import qgis.utils
    qgis.utils.plugin_paths.insert(0, str(PLUGINS_DIR))
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin("tilewise"), "qgis.utils.loadPlugin('tilewise') failed"
    assert qgis.utils.startProcessingPlugin("tilewise"), "qgis.utils.startProcessingPlugin('tilewise') failed"
    yield app
    # No exitQgis(): tearing QGIS down while Python still holds Qt objects can crash the
    # interpreter at exit, and the process ends here anyway.


#: Packages (and their libraries) that belong in the engine's process only.
ENGINE_ONLY = ("rasterio", "numba", "llvmlite", "dask", "distributed")


def engine_packages_in_qgis():
    """The engine's packages imported into this (the QGIS) process, and their libraries mapped into it."""
    modules = sorted(m for m in sys.modules if m.split(".")[0] in ENGINE_ONLY)
    with open(f"/proc/{os.getpid()}/maps", encoding="utf-8", errors="replace") as f:
        libraries = {line.split()[-1] for line in f if ".so" in line}   # shared libraries only
    return modules + sorted(p for p in libraries if any(n in p for n in ENGINE_ONLY + (".venv", "rasterio.libs")))


@pytest.fixture(autouse=True)
def _engine_stays_out_of_qgis():
    """After every test, whatever the order: the engine's packages never entered the QGIS process."""
    yield
    loaded = engine_packages_in_qgis()
    assert loaded == [], f"imported into the QGIS process: {loaded}"


@pytest.fixture
def out_dir(tmp_path):
    """An empty folder for outputs only, so that any leftover file shows up."""
    path = tmp_path / "out"
    path.mkdir()
    return path

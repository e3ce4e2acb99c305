"""The plugin as a QGIS user installs it, on a machine without an engine: the zip of `make package`
extracted into a fresh QGIS profile (as "Install from ZIP" does), the plugins folder mounted read-only,
a new home (no engine environment, an empty numba cache). Then tilewise:setupengine, offline from the
wheels of the locked packages (`make wheelhouse`), and tilewise:temporalmedian on 6-band uint8 scenes.
Everything through qgis_process, where sys.executable is QGIS, not Python."""

import json
import os
import sys
import time
import zipfile

import pytest

from conftest import REPO
from readonly import run_readonly
from twtest import assert_band_medians, assert_installed_the_lock, reported_scenes

sys.path.insert(0, str(REPO / "scripts"))
import package  # noqa: E402  (scripts/ is no package)
from qgis_process import qgis_process_binary  # noqa: E402

WHEELHOUSE = REPO / "build" / "wheelhouse"
VERSION = package.check_metadata(str(REPO))
#: what the user's environment may hold that would give the engine away
NOT_FOR_A_NEW_USER = ("TILEWISE_PYTHON", "NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "PYTHONPATH", "QGIS_PLUGINPATH",
                      "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "QGIS_CUSTOM_CONFIG_PATH")


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """``(qgis_process runner, home, plugins folder)`` of a fresh user with the zip installed."""
    if not (WHEELHOUSE / ".complete").exists():
        pytest.fail(f"{WHEELHOUSE} is missing: run `make wheelhouse` (make test-qgis does)")
    root = tmp_path_factory.mktemp("zip-install")
    zip_path = package.build(str(root / "dist"), str(REPO))
    config = root / "config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:   # what QGIS's "Install from ZIP" does
        zf.extractall(plugins)
    ini = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ntilewise=true\n", encoding="utf-8")
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in NOT_FOR_A_NEW_USER}
    env.update(HOME=str(home), QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen", QGIS_OPTS="")
    binary = qgis_process_binary()

    def qgis_process(*args, timeout=300):
        t0 = time.perf_counter()
        proc = run_readonly([(plugins, plugins)], [binary, *args], env, timeout=timeout, cwd=str(root))
        return proc, time.perf_counter() - t0
    return qgis_process, home, plugins


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return reported_scenes(tmp_path_factory.mktemp("zip-scenes"))


def results(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout)["results"]


def cache_files(folder):
    return {os.path.join(r, f): os.stat(os.path.join(r, f)).st_mtime_ns for r, _, fs in os.walk(folder) for f in fs}


def test_the_zip_holds_one_plugin_folder(profile):
    _, _, plugins = profile
    assert sorted(p.name for p in plugins.iterdir()) == ["tilewise"]
    names = {p.relative_to(plugins / "tilewise").as_posix() for p in (plugins / "tilewise").rglob("*")}
    for needed in ("metadata.txt", "__init__.py", "plugin.py", "LICENSE", "constraints.txt", "resources/icon.svg",
                   "algorithms/setup_engine.py", "core/kernels/reducers.py", "core/runtime/driver.py"):
        assert needed in names, needed
    for unwanted in ("tests", "scripts", "docs", "build", "Makefile", ".ci", "demo-output", ".venv"):
        assert unwanted not in names, unwanted
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_install_from_zip_then_setupengine_then_a_first_run(profile, scenes, tmp_path):
    qgis_process, home, plugins = profile
    paths, arrays = scenes
    inputs = [f"INPUT={p}" for p in paths]
    venv_python = home / ".local" / "share" / "tilewise" / "venv" / "bin" / "python"
    cache = home / ".cache" / "tilewise" / f"numba-{VERSION}"

    # no engine yet: the error names the one step to take
    proc, _ = qgis_process("run", "tilewise:temporalmedian", "--", *inputs, f"OUTPUT={tmp_path / 'early.tif'}")
    assert proc.returncode != 0
    assert "tilewise:setupengine" in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (tmp_path / "early.tif").exists()

    # the set-up: its own environment, the locked packages from the wheels, the kernels compiled
    proc, setup_seconds = qgis_process("--json", "run", "tilewise:setupengine", "--", f"WHEELHOUSE={WHEELHOUSE}",
                                       timeout=1200)
    done = results(proc)
    report = done["REPORT"]
    assert done["PYTHON"] == str(venv_python), report
    assert done["CACHE"] == str(cache), report
    assert "Created the engine environment" in report, report
    assert_installed_the_lock(report, REPO / "constraints.txt")
    assert "Compiled 39 kernel specialization(s)" in report, report   # 16 + 14 + 9 (test_first_contact)
    assert venv_python.is_file()
    assert not [p for p in plugins.rglob("*") if p.name == "__pycache__"]   # nothing written beside the code
    compiled = cache_files(cache)
    assert compiled

    # the first run after the set-up: every kernel from the cache, nothing compiled
    output = tmp_path / "median.tif"
    proc, first_seconds = qgis_process("run", "tilewise:temporalmedian", "--", *inputs, "STATISTIC=0",
                                       f"OUTPUT={output}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Engine interpreter: {venv_python}" in proc.stdout
    assert cache_files(cache) == compiled, "the first run compiled kernels the set-up had not"
    assert_band_medians(output, arrays, 0, bands=range(1, 7))

    # once more: a warm run, and a set-up that finds nothing to do
    proc, warm_seconds = qgis_process("run", "tilewise:temporalmedian", "--", *inputs, f"OUTPUT={output}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, again_seconds = qgis_process("--json", "run", "tilewise:setupengine", "--", f"WHEELHOUSE={WHEELHOUSE}")
    again = results(proc)["REPORT"]
    assert "nothing to install" in again and "nothing to compile" in again, again
    assert "Created" not in again and "Installed" not in again, again
    print(f"\nzip install: setupengine {setup_seconds:.1f} s, first run {first_seconds:.1f} s, warm run "
          f"{warm_seconds:.1f} s, setupengine again {again_seconds:.1f} s\n{report}\n{again}")

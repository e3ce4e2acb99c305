"""Reproducible installs: the lock (constraints.txt), pyproject.toml, metadata.txt, and what
tilewise:setupengine reads of the lock and of pip's output (its QGIS-free part)."""

from __future__ import annotations

import importlib.metadata
import os
import re

import pytest

from tilewise.algorithms import environment
from tilewise.algorithms.interpreter import PACKAGES
from tilewise.core import REQUIRED_PACKAGES, __version__

from support import PLUGINS_DIR

ROOT = os.path.join(PLUGINS_DIR, "tilewise")


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def names(requirements) -> set:
    return {environment.canonical(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements}


def test_the_lock_pins_the_engine_and_only_the_engine_in_its_engine_section():
    lock = environment.read_lock()
    engine = set(lock.engine)
    assert {"numpy", "numba", "llvmlite", "rasterio", "numexpr", "tqdm", "affine"} <= engine
    assert not engine & {"pytest", "hypothesis", "dask", "distributed", "bottleneck", "matplotlib", "pip"}
    assert {"pytest", "dask", "distributed", "bottleneck", "matplotlib", "pip"} <= set(lock.development)
    project = pyproject()["project"]
    assert names(project["dependencies"]) <= engine
    for extra in project["optional-dependencies"].values():
        assert names(extra) <= engine | set(lock.development), extra
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for _, v in lock.engine.values())


def test_the_engine_environment_has_the_locked_versions():
    """make deps installs the lock (make test-latest does not: it clears TILEWISE_LOCK)."""
    if not os.environ.get("TILEWISE_LOCK"):
        pytest.skip("not a locked environment (make test-latest)")
    lock = environment.read_lock(os.environ["TILEWISE_LOCK"])
    for name, version in lock.engine.values():
        assert importlib.metadata.version(name) == version, name
    installed = {environment.canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    for key, (name, version) in lock.development.items():   # the benchmark's peers only after make bench
        assert installed.get(key, version) == version, name
    assert {"pytest", "hypothesis", "dask", "distributed"} <= set(installed)


def test_bottleneck_is_no_dependency_of_the_engine():
    assert "bottleneck" not in PACKAGES and "bottleneck" not in REQUIRED_PACKAGES
    assert "bottleneck" not in names(pyproject()["project"]["dependencies"])
    for folder in ("core", "algorithms"):
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith(".py"):
                with open(os.path.join(ROOT, folder, name), encoding="utf-8") as f:
                    assert "bottleneck" not in f.read(), name


def test_one_version_everywhere_and_a_modern_license_field():
    project = pyproject()
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tilewise.core.__version__"}
    assert project["project"]["license"] == "GPL-2.0-or-later"   # an SPDX expression, not a table
    assert "tilewise.resources" in project["tool"]["setuptools"]["packages"]
    with open(os.path.join(ROOT, "metadata.txt"), encoding="utf-8") as f:
        assert re.search(r"^version=(.+)$", f.read(), re.M).group(1) == __version__


# -- what setupengine reads ----------------------------------------------------------------------------------

LOCK = """# a comment
# [engine] what the engine needs
numpy==2.0.1
Click-Plugins==1.1
# [development] the rest
pytest==8.0.0
"""


@pytest.fixture
def lock(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text(LOCK)
    return environment.read_lock(str(path))


def test_reading_a_lock(lock):
    assert lock.engine == {"numpy": ("numpy", "2.0.1"), "click-plugins": ("Click-Plugins", "1.1")}
    assert lock.development == {"pytest": ("pytest", "8.0.0")}
    assert lock.requirements() == ["numpy==2.0.1", "Click-Plugins==1.1"]


def test_a_lock_without_an_engine_section_is_an_error(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text("numpy==2.0.1\n")
    with pytest.raises(environment.EngineError, match="no \\[engine\\] section"):
        environment.read_lock(str(path))


def test_what_is_to_install(lock):
    assert environment.packages_to_install(lock, {"numpy": "2.0.1", "click-plugins": "1.1"}, []) == []
    assert environment.packages_to_install(lock, {"numpy": "1.26.4"}, []) == [
        ("numpy", "1.26.4", "2.0.1"), ("Click-Plugins", "", "1.1")]
    assert environment.packages_to_install(lock, {"numpy": "2.0.1", "click-plugins": "1.1"}, ["numpy"]) == [
        ("numpy", "2.0.1", "2.0.1")]


class Progress(environment.SetupFeedback):
    def __init__(self):
        self.values, self.lines = [], []

    def progress(self, percent):
        self.values.append(percent)

    def line(self, text):
        self.lines.append(text)


def test_progress_follows_pip_s_log(lock):
    feedback = Progress()
    follow = environment._PipProgress(lock, feedback, 10.0, 75.0)
    for text in ["Looking in links: /wheels",
                 "Processing /wheels/click_plugins-1.1-py2.py3-none-any.whl (from -r req.txt (line 2))",
                 "Collecting numpy==2.0.1 (from -r req.txt (line 1))",
                 "Requirement already satisfied: numpy==2.0.1 in ./lib/python3.11/site-packages",
                 "Installing collected packages: numpy, click-plugins",
                 "Successfully installed click-plugins-1.1 numpy-2.0.1"]:
        follow(text)
    assert feedback.lines[0] == "Looking in links: /wheels" and len(feedback.lines) == 6
    assert feedback.values == pytest.approx([10 + 65 * 0.4, 10 + 65 * 0.8, 10 + 65 * 0.8, 10 + 65 * 0.85, 75.0])


# -- a lock for every platform (universal: markers and hashes) -------------------------------------------------

UNIVERSAL = """# [engine] what the engine needs
numpy==2.0.2 ; python_full_version < '3.10' \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
numpy==2.4.6 ; python_full_version >= '3.10' \\
    --hash=sha256:cccc
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:dddd
tqdm==4.70.1 \\
    --hash=sha256:eeee
# [development] the rest
pytest==9.2.0 ; python_full_version >= '3.11' \\
    --hash=sha256:ffff
"""


def test_a_universal_lock_gives_the_pins_that_hold_for_the_interpreter(tmp_path):
    import sys
    path = tmp_path / "constraints.txt"
    path.write_text(UNIVERSAL)
    lock = environment.read_lock(str(path))
    here = sys.version_info >= (3, 10)
    assert lock.engine["numpy"] == ("numpy", "2.4.6" if here else "2.0.2")
    assert lock.hashes["numpy"] == (["sha256:cccc"] if here else ["sha256:aaaa", "sha256:bbbb"])
    assert ("colorama" in lock.engine) == (sys.platform == "win32")
    assert lock.requirements(hashes=True)[-1] == "tqdm==4.70.1 --hash=sha256:eeee"
    assert ("pytest" in lock.development) == (sys.version_info >= (3, 11))
    # another interpreter's markers: read from it, not from this one
    assert environment.read_lock(str(path), sys.executable).engine == lock.engine
    assert "Python %d.%d.%d, %s" % (*sys.version_info[:3], sys.platform) in lock.where


def test_the_repository_lock_covers_python_3_9_to_3_14_on_three_platforms():
    """Every engine package has one pin for each Python and platform QGIS users run (none missing,
    none twice), with hashes."""
    text = open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8").read()
    markers = pytest.importorskip("packaging.markers")
    engine = text.replace("\\\n", " ").split("# [engine]", 1)[1].split("# [development]", 1)[0]
    pins = [re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)\s*(?:;\s*(.*?))?\s*((?:--hash=sha256:\w+\s*)+)", line).groups()
            for line in engine.splitlines()[1:] if line.strip()]
    names = {environment.canonical(n) for n, _, _, _ in pins}
    assert {"numpy", "numba", "rasterio", "pystac-client", "pystac"} <= names
    for system, platform, machine in [("linux", "Linux", "x86_64"), ("win32", "Windows", "AMD64"),
                                      ("darwin", "Darwin", "arm64"), ("darwin", "Darwin", "x86_64")]:
        for minor in range(9, 15):
            values = dict(markers.default_environment(), sys_platform=system, platform_system=platform,
                          platform_machine=machine, python_version=f"3.{minor}", python_full_version=f"3.{minor}.1")
            held = [environment.canonical(n) for n, _, m, _ in pins if not m or markers.Marker(m).evaluate(values)]
            assert len(held) == len(set(held)), (system, minor)
            for name in ("numpy", "numba", "llvmlite", "rasterio", "pyogrio", "shapely", "pyarrow", "numexpr",
                         "pystac-client", "pystac"):
                assert name in held, (name, system, machine, minor)
    assert all(hashes for _, _, _, hashes in pins)

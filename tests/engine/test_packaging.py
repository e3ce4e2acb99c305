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

"""tilewise:setupengine never installs an unpinned release silently: a pin that cannot be had for this
Python or platform is named, with what is installed instead (real pip, offline, in a fresh venv)."""

from __future__ import annotations

import ensurepip
import glob
import os
import shutil
import subprocess
import sys

import pytest

from tilewise.algorithms import environment


class Steps(environment.SetupFeedback):
    def __init__(self):
        self.steps, self.lines = [], []

    def step(self, message):
        self.steps.append(message)

    def line(self, text):
        self.lines.append(text)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    return environment.venv_python(str(folder))


@pytest.fixture
def bundled_wheels(tmp_path):
    """A folder with the setuptools wheel Python ships for ensurepip (Debian keeps it in
    /usr/share/python-wheels): a folder of wheels that needs no network."""
    found = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "setuptools-*.whl")) + \
        glob.glob("/usr/share/python-wheels/setuptools-*.whl")
    if not found:
        pytest.skip("this Python ships no setuptools wheel")
    folder = tmp_path / "wheels"
    folder.mkdir()
    shutil.copy(found[0], folder)
    return str(folder)


def lock_of(tmp_path, *pins):
    path = tmp_path / "constraints.txt"
    path.write_text("# [engine]\n" + "".join(f"{p}\n" for p in pins))
    return environment.read_lock(str(path))


def test_a_pin_without_a_wheel_is_named_with_what_is_installed_instead(venv, bundled_wheels, tmp_path):
    lock = lock_of(tmp_path, "setuptools==0.0.1")
    feedback = Steps()
    relaxed = environment.install_locked(venv, lock, bundled_wheels, feedback)
    assert relaxed == ["setuptools"]
    said = [s for s in feedback.steps if "setuptools 0.0.1" in s]
    assert said and "newest release" in said[0] and "not the tested version" in said[0], feedback.steps
    assert "Python %d.%d" % sys.version_info[:2] in said[0], said   # which Python and platform it was for
    wheel = os.listdir(bundled_wheels)[0]
    assert environment.installed_versions(venv)["setuptools"] == wheel.split("-")[1]


def test_a_package_that_cannot_be_had_at_all_is_an_error_naming_pip_s_log(venv, bundled_wheels, tmp_path):
    lock = lock_of(tmp_path, "tilewise-no-such-package==1.0")
    feedback = Steps()
    with pytest.raises(environment.EngineError, match="No release of tilewise-no-such-package can be installed "
                                                      "for .*Python %d.%d" % sys.version_info[:2]) as info:
        environment.install_locked(venv, lock, bundled_wheels, feedback)
    assert environment.pip_log() in str(info.value) and bundled_wheels in str(info.value)
    assert "another Python version" in str(info.value)
    assert any("tilewise-no-such-package 1.0" in s for s in feedback.steps), feedback.steps


def test_unavailable_reads_pip_s_words():
    tail = ["ERROR: Could not find a version that satisfies the requirement numba==0.68.1 (from versions: 0.70.0)",
            "ERROR: No matching distribution found for numba==0.68.1"]
    assert environment.unavailable(tail) == ["numba"]
    assert environment.unavailable(["ERROR: ResolutionImpossible"]) == []

"""tilewise:setupengine never installs an unpinned release silently: a pin that cannot be had for this
Python or platform is named, with what is installed instead (real pip, offline, in a fresh venv)."""

from __future__ import annotations

import ensurepip
import glob
import os
import shutil
import subprocess
import sys
import tempfile

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
    relaxed = environment.install_locked(venv, lock, bundled_wheels, feedback, str(tmp_path / "pip.log"))
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
        environment.install_locked(venv, lock, bundled_wheels, feedback, str(tmp_path / "pip.log"))
    assert str(tmp_path / "pip.log") in str(info.value) and bundled_wheels in str(info.value)
    assert "tilewise-no-such-package" in (tmp_path / "pip.log").read_text(encoding="utf-8")
    assert "another Python version" in str(info.value)
    assert any("tilewise-no-such-package 1.0" in s for s in feedback.steps), feedback.steps


def test_each_set_up_has_a_pip_log_of_its_own_and_the_newest_ten_are_kept(tmp_path, monkeypatch):
    """Two set-ups at once (two QGIS windows, or a test run beside a session) do not write or remove
    each other's log; old logs do not pile up."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    logs = []
    for _ in range(14):
        log = environment.new_pip_log()
        assert log not in logs and not os.path.exists(log)
        with open(log, "w", encoding="utf-8") as f:
            f.write("pip\n")
        logs.append(log)
    folder = tmp_path / "tilewise" / "setup-logs"
    kept = sorted(str(p) for p in folder.glob("pip-*.log"))
    assert len(kept) == environment.PIP_LOGS_KEPT
    assert set(logs[-environment.PIP_LOGS_KEPT:]) == set(kept)


def test_without_a_writable_cache_the_pip_log_goes_to_this_user_s_temporary_folder(tmp_path, monkeypatch):
    """A read-only home (here a cache path under a file, which root cannot write either): the log is
    still written, in this user's private folder of the temporary folder."""
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file" / "cache"))
    monkeypatch.setattr(sys, "platform", "linux")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    log = environment.new_pip_log()
    assert os.path.dirname(log) == os.path.join(str(tmp_path / "tmp"), f"tilewise-{os.getuid()}", "setup-logs")
    with open(log, "w", encoding="utf-8") as f:
        f.write("pip\n")


def test_unavailable_reads_pip_s_words():
    tail = ["ERROR: Could not find a version that satisfies the requirement numba==0.68.1 (from versions: 0.70.0)",
            "ERROR: No matching distribution found for numba==0.68.1"]
    assert environment.unavailable(tail) == ["numba"]
    assert environment.unavailable(["ERROR: ResolutionImpossible"]) == []

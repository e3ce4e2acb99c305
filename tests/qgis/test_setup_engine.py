"""tilewise:setupengine from processing.run: no required parameters, the pip log and progress in the
feedback, an interpreter set by the user installed into (a fresh virtual environment without pip),
and the engine then running there. Its default path (Tilewise's own environment, from a zip install,
read-only) is test_install_from_zip.py."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

from conftest import REPO
from twtest import assert_installed_the_lock, read_raster, run, write_raster

WHEELHOUSE = REPO / "build" / "wheelhouse"


class Recorder(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.info, self.console, self.progress = [], [], []

    def pushInfo(self, info):  # noqa: N802 (QGIS's names)
        self.info.append(info)

    def pushConsoleInfo(self, info):  # noqa: N802
        self.console.append(info)

    def setProgress(self, progress):  # noqa: N802
        self.progress.append(progress)
        super().setProgress(progress)


def test_the_algorithm_is_in_the_setup_group_and_needs_no_parameter():
    alg = QgsApplication.processingRegistry().algorithmById("tilewise:setupengine")
    assert alg is not None
    assert (alg.group(), alg.groupId()) == ("Setup", "setup")
    assert [p.name() for p in alg.parameterDefinitions()] == ["WHEELHOUSE"]
    assert alg.checkParameterValues({}, QgsProcessingContext()) == (True, "")   # nothing required
    assert {o.name() for o in alg.outputDefinitions()} == {"PYTHON", "CACHE", "REPORT"}


@pytest.fixture
def new_venv(tmp_path):
    """A fresh virtual environment without pip, set as the Tilewise interpreter by the user."""
    venv = tmp_path / "my engine"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return str(venv / "bin" / "python")


def test_setupengine_installs_into_the_configured_interpreter(new_venv, monkeypatch, tmp_path, out_dir):
    if not (WHEELHOUSE / ".complete").exists():
        pytest.fail(f"{WHEELHOUSE} is missing: run `make wheelhouse` (make test-qgis does)")
    monkeypatch.setenv("TILEWISE_PYTHON", new_venv)
    feedback = Recorder()
    result = run("tilewise:setupengine", {"WHEELHOUSE": str(WHEELHOUSE)}, feedback=feedback)
    assert result["PYTHON"] == new_venv
    report = result["REPORT"]
    assert f"Using the interpreter set for Tilewise: {new_venv}" in report, report
    assert f"Added pip to {new_venv}" in report, report
    assert_installed_the_lock(report, REPO / "constraints.txt")
    # pip's own log in the dialog, progress up to the end
    assert any(line.startswith("Successfully installed") for line in feedback.console), feedback.console[-20:]
    assert feedback.progress == sorted(feedback.progress) and feedback.progress[-1] == 100
    log = re.search(r"\(pip's log: (.+?)\)\.", report).group(1)
    assert "Successfully installed" in Path(log).read_text(encoding="utf-8")
    # the engine now runs there
    inputs = [write_raster(tmp_path / f"i{i}.tif", np.full((30, 40), i + 1, np.uint16), nodata=0) for i in range(2)]
    feedback = Recorder()
    out = run("tilewise:temporalmedian", {"INPUT": inputs, "STATISTIC": 1, "OUTPUT": str(out_dir / "mean.tif")},
              feedback=feedback)
    assert f"Engine interpreter: {new_venv}" in feedback.info
    np.testing.assert_array_equal(read_raster(out["OUTPUT"]).array, 1.5)


def test_a_configured_interpreter_managed_by_the_system_is_refused(monkeypatch):
    """pip may not install into Debian's own Python (PEP 668): the message says what to do instead."""
    import sysconfig
    if not (Path(sysconfig.get_paths()["stdlib"]) / "EXTERNALLY-MANAGED").exists():
        pytest.skip("this system's Python is not marked as managed by the system (PEP 668)")
    monkeypatch.setenv("TILEWISE_PYTHON", sys.executable)
    with pytest.raises(QgsProcessingException) as info:
        run("tilewise:setupengine", {})
    message = str(info.value)
    assert "managed by the system" in message and "Clear it" in message, message

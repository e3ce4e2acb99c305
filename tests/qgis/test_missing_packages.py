"""An engine interpreter without numba / rasterio: the message names them, tilewise:setupengine as the
step to take, and the command that installs them by hand."""

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from twtest import read_raster, run, write_raster

ALG_ID = "tilewise:temporalmedian"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A fresh virtual environment with nothing installed (created without pip, which is fast)."""
    venv = tmp_path_factory.mktemp("bare venv")  # a space in the path: the command must quote it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    assert python.exists()
    return str(python)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mp")
    return [write_raster(folder / f"i{i}.tif", np.full((30, 40), i + 1, np.uint16), nodata=0) for i in range(2)]


def processing_setting(value):
    from processing.core.ProcessingConfig import ProcessingConfig
    ProcessingConfig.setSettingValue("TILEWISE_PYTHON", value)


@pytest.mark.parametrize("how", ["TILEWISE_PYTHON variable", "Processing option"])
def test_missing_packages_are_named_with_the_install_command(how, bare_python, inputs, out_dir, monkeypatch):
    if how == "Processing option":
        processing_setting(bare_python)  # wins over the environment variable
    else:
        monkeypatch.setenv("TILEWISE_PYTHON", bare_python)
    try:
        with pytest.raises(QgsProcessingException) as info:
            run(ALG_ID, {"INPUT": inputs, "OUTPUT": str(out_dir / "out.tif")})
    finally:
        processing_setting("")
    message = str(info.value)
    assert f"runs in {bare_python}" in message, message
    assert "numba" in message and "rasterio" in message, message
    # the one step to take, first
    assert message.splitlines()[1].startswith("Run the algorithm tilewise:setupengine once"), message
    # then the command line for doing it by hand, as the user copies it: this interpreter's pip,
    # every missing package
    command = message.split("Or install them yourself with:", 1)[1].strip().splitlines()[0]
    steps = [shlex.split(step) for step in command.split("&&")]
    install = steps[-1]
    assert install[:4] == [bare_python, "-m", "pip", "install"], command
    assert {"numpy", "numba", "rasterio"} <= set(install[4:]), command
    # at the versions set-up installs: the plugin's lock as pip's constraints
    import tilewise   # loaded by QGIS by now (the session fixture)
    lock = os.path.join(os.path.dirname(tilewise.__file__), "constraints.txt")
    assert install[4:6] == ["-c", lock], command
    assert "--user" not in install, command  # pip refuses --user inside a virtual environment
    for step in steps[:-1]:
        assert step[0] == bare_python, command
    assert list(out_dir.iterdir()) == []


def test_the_configured_interpreter_runs_again_afterwards(inputs, out_dir):
    result = run(ALG_ID, {"INPUT": inputs, "STATISTIC": 1, "OUTPUT": str(out_dir / "out.tif")})
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, 1.5)

"""Scaling out from QGIS: the DASK_SCHEDULER parameter and Processing setting (a real Dask cluster on
127.0.0.1, run in the engine's Python), and RESUME after a cancel."""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from conftest import ENGINE_PYTHON, PLUGINS_DIR
from twtest import read_raster, run, wait_for, write_raster

ALG_ID = "tilewise:temporalmedian"


class Recorder(QgsProcessingFeedback):
    """Feedback that keeps the messages the algorithm pushes."""

    def __init__(self):
        super().__init__()
        self.infos = []

    def pushInfo(self, info):  # noqa: N802 (QGIS's name)
        self.infos.append(info)
        super().pushInfo(info)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    value = wait_for(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes of the engine's environment (QGIS's Python has
    no Dask, and needs none: only the engine talks to the cluster)."""
    folder = tmp_path_factory.mktemp("dask")
    dask = os.path.join(os.path.dirname(str(ENGINE_PYTHON)), "dask")
    env = dict(os.environ, PYTHONPATH=str(PLUGINS_DIR))
    port = free_port()
    log = folder / "scheduler.log"
    procs = []

    def spawn(args, log_path):
        with open(log_path, "ab") as f:
            procs.append(subprocess.Popen([dask, *args], stdout=f, stderr=f, stdin=subprocess.DEVNULL, env=env,
                                          cwd=folder))

    try:
        spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"], log)
        address = f"tcp://127.0.0.1:{port}"
        for i in range(2):
            spawn(["worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                   "--dashboard-address", "127.0.0.1:0"], folder / f"worker{i}.log")
        wait_until(lambda: log.exists() and log.read_text(errors="replace").count("Register worker") >= 2, 60,
                 "two Dask workers")
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture(scope="module")
def small_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(4)
    return [write_raster(folder / f"s{i}.tif", rng.integers(1, 3000, (150, 200)).astype(np.uint16), nodata=0)
            for i in range(7)]


@pytest.fixture
def scheduler_setting():
    from processing.core.ProcessingConfig import ProcessingConfig
    previous = ProcessingConfig.getSetting("TILEWISE_DASK_SCHEDULER")
    yield lambda value: ProcessingConfig.setSettingValue("TILEWISE_DASK_SCHEDULER", value)
    ProcessingConfig.setSettingValue("TILEWISE_DASK_SCHEDULER", previous or "")


def test_dask_scheduler_parameter_gives_the_local_output(dask_address, small_series, out_dir):
    local = run(ALG_ID, {"INPUT": small_series, "TILE_SIZE": 64, "WORKERS": 2,
                         "OUTPUT": str(out_dir / "local.tif")})
    feedback = Recorder()
    remote = run(ALG_ID, {"INPUT": small_series, "TILE_SIZE": 64, "DASK_SCHEDULER": dask_address,
                          "OUTPUT": str(out_dir / "dask.tif")}, feedback=feedback)
    assert f"12 tiles of up to 64 x 64 pixels on 2 Dask worker thread(s) at {dask_address}" in feedback.infos
    np.testing.assert_array_equal(read_raster(remote["OUTPUT"]).array, read_raster(local["OUTPUT"]).array)
    assert sorted(p.name for p in out_dir.iterdir()) == ["dask.tif", "local.tif"]


def test_the_processing_setting_is_the_default_and_local_overrides_it(dask_address, small_series, out_dir,
                                                                      scheduler_setting):
    scheduler_setting(dask_address)
    feedback = Recorder()
    run(ALG_ID, {"INPUT": small_series, "TILE_SIZE": 64, "OUTPUT": str(out_dir / "a.tif")}, feedback=feedback)
    assert any(f"Dask worker thread(s) at {dask_address}" in m for m in feedback.infos), feedback.infos
    feedback = Recorder()
    run(ALG_ID, {"INPUT": small_series, "TILE_SIZE": 64, "WORKERS": 2, "DASK_SCHEDULER": "local",
                 "OUTPUT": str(out_dir / "b.tif")}, feedback=feedback)
    assert "12 tiles of up to 64 x 64 pixels on 2 worker(s)" in feedback.infos
    np.testing.assert_array_equal(read_raster(out_dir / "a.tif").array, read_raster(out_dir / "b.tif").array)


def test_unreachable_scheduler_is_one_clear_error(small_series, out_dir):
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, {"INPUT": small_series, "DASK_SCHEDULER": address, "OUTPUT": str(out_dir / "out.tif")})
    assert str(info.value) == (f"Cannot reach the Dask scheduler at {address}: connection refused (no scheduler "
                               "listens there; start one with `dask scheduler`, or check the address).")
    assert list(out_dir.iterdir()) == []


# -- RESUME ----------------------------------------------------------------------------------------------------

SIDE = 2048


@pytest.fixture(scope="module")
def heavy_series(tmp_path_factory):
    """16 inputs of 2048 x 2048 from 4 distinct files (hard links): 64 tiles of 256 pixels."""
    folder = tmp_path_factory.mktemp("heavy")
    rng = np.random.default_rng(9)
    distinct = [write_raster(folder / f"d{k}.tif", rng.integers(1, 10000, (SIDE, SIDE), dtype=np.uint16), nodata=0,
                             options=("TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1")) for k in range(4)]
    paths = []
    for i in range(16):
        path = str(folder / f"scene{i:02d}.tif")
        try:
            os.link(distinct[i % 4], path)
        except OSError:
            shutil.copy(distinct[i % 4], path)
        paths.append(path)
    yield paths
    shutil.rmtree(folder, ignore_errors=True)


def journal_lines(output):
    path = os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.tilewise-work", "finished.txt")
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_resume_after_a_cancel_reuses_the_finished_tiles(heavy_series, out_dir, tmp_path):
    output = str(out_dir / "median.tif")
    params = {"INPUT": heavy_series, "TILE_SIZE": 256, "WORKERS": 2, "RESUME": True, "OUTPUT": output}
    feedback = QgsProcessingFeedback()

    def cancel():
        wait_until(lambda: feedback.progress() >= 25, 120, "a quarter of the tiles")
        feedback.cancel()

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, params, feedback=feedback)
    canceller.join(10)
    message = str(info.value)
    assert "Cancelled" in message and "finished tiles are kept" in message, message
    done, total = map(int, re.search(r"after (\d+) of (\d+) tiles", message).groups())
    assert total == 64 and 0 < done < total, message
    # the work folder stays (QGIS's clean-up leaves it for RESUME), the output and partial file do not
    assert [p.name for p in out_dir.iterdir()] == [".median.tif.tilewise-work"]
    kept = len(journal_lines(output))
    assert kept >= done

    feedback = Recorder()
    result = run(ALG_ID, params, feedback=feedback)
    assert (f"Resuming: {kept} of 64 tiles were already finished and are reused; {64 - kept} to compute"
            in feedback.infos), feedback.infos
    assert any(m.startswith(f"64 tiles ({kept} reused) on 2 workers") for m in feedback.infos), feedback.infos
    assert [p.name for p in out_dir.iterdir()] == ["median.tif"]    # the work folder is gone after success

    reference = run(ALG_ID, dict(params, RESUME=False, OUTPUT=str(tmp_path / "reference.tif")))
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, read_raster(reference["OUTPUT"]).array)

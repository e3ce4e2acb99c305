"""A remote input whose server never sends the pixels (issue 26, A3), in real QGIS: the HTTP timeout of the
Processing settings ends the run with one clear QgsProcessingException, and a cancel ends it at once.

The server answers the GeoTIFF's header (QGIS loads the layer) and never its pixels (the engine waits)."""

import os
import sys
import threading
import time

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer

from conftest import REPO
from twtest import my_engine, run, still_running, wait_for, write_raster

sys.path.append(str(REPO / "tests" / "engine"))   # the servers (standard library only)
from stalling import StallingServer  # noqa: E402

ALG_ID = "tilewise:temporalmedian"
SETTING = "TILEWISE_HTTP_TIMEOUT"


@pytest.fixture(scope="module")
def scene_bytes(tmp_path_factory):
    """A 1024 x 1024 tiled, uncompressed GeoTIFF: its header fits in the first 16 KiB."""
    path = tmp_path_factory.mktemp("stalling") / "scene.tif"
    data = np.random.default_rng(7).integers(1, 9999, (1024, 1024)).astype("uint16")
    write_raster(path, data, nodata=0, options=("TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"))
    return path.read_bytes()


@pytest.fixture
def stalling(scene_bytes):
    with StallingServer(scene_bytes, cutoff=16384) as server:
        yield server


@pytest.fixture
def http_timeout(monkeypatch):
    """Sets the Processing setting (the environment variable, which would win, is removed meanwhile)."""
    from processing.core.ProcessingConfig import ProcessingConfig
    monkeypatch.delenv(SETTING, raising=False)
    previous = ProcessingConfig.getSetting(SETTING)

    def set_to(seconds):
        ProcessingConfig.setSettingValue(SETTING, seconds)

    yield set_to
    ProcessingConfig.setSettingValue(SETTING, previous)


def params(url, output):
    """The layer as a user adds it (Layer > Add Raster Layer > Protocol: HTTP(S)): QGIS reads its header."""
    layer = QgsRasterLayer(url, "scene", "gdal")
    assert layer.isValid(), url
    return {"INPUT": [layer], "TILE_SIZE": 256, "WORKERS": 2, "OUTPUT": output}


def test_the_http_timeout_setting_ends_a_run_whose_server_is_silent(stalling, http_timeout, out_dir):
    http_timeout(3)
    url = f"{stalling.url}/scene.tif"
    feedback = QgsProcessingFeedback()
    watchdog = threading.Timer(120, feedback.cancel)    # a run that never ends would hang the suite
    watchdog.start()
    started = time.monotonic()
    try:
        with pytest.raises(QgsProcessingException) as info:
            run(ALG_ID, params(url, str(out_dir / "median.tif")), feedback=feedback)
    finally:
        watchdog.cancel()
    seconds = time.monotonic() - started
    message = str(info.value)
    assert f"Reading {url} at rows " in message and " timed out: the server sent nothing, or less than 1 byte/s, " \
        "for 3 s" in message, message
    assert "HTTP timeout" in message and "Traceback" not in message
    assert stalling.stalled >= 1
    assert seconds < 3 + 3 + 40, f"took {seconds:.0f} s"
    assert list(out_dir.iterdir()) == []


def test_cancel_while_the_engine_waits_for_a_silent_server(stalling, http_timeout, out_dir):
    http_timeout(600)
    feedback = QgsProcessingFeedback()
    seen = {}

    def cancel():
        if wait_for(lambda: stalling.stalled >= 1, 90):
            time.sleep(0.5)        # the engine's workers are inside GDAL's wait
            seen["engine"] = my_engine()
            seen["at"] = time.monotonic()
            feedback.cancel()

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, params(f"{stalling.url}/scene.tif", str(out_dir / "median.tif")), feedback=feedback)
    stopped = time.monotonic()
    canceller.join(10)
    assert "at" in seen, f"the run ended before the cancel: {info.value}"
    assert stopped - seen["at"] < 5.0, f"took {stopped - seen['at']:.1f} s to stop after the cancel"
    message = str(info.value)
    assert "Cancelled" in message and "no output was written" in message, message
    assert seen["engine"] is not None and still_running([seen["engine"]]) == []
    assert my_engine() is None
    assert list(out_dir.iterdir()) == []
    assert os.environ.get(SETTING) is None

"""Cancelling stops the engine at once and a dead engine or worker becomes a clear error; QGIS stays up."""

import os
import re
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from twtest import children_of, my_engine, read_raster, run, still_running, wait_for, write_raster

ALG_ID = "tilewise:temporalmedian"
SIDE = 4000  # 40 inputs of 4000 x 4000: well over 5 s on two cores, so the run is surely cut mid-way
LAYERS = 40


@pytest.fixture(scope="module")
def big_series(tmp_path_factory):
    """40 inputs from 4 distinct files (hard links: reading them costs the engine the same)."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(2)
    distinct = []
    for k in range(4):
        a = rng.integers(1, 10000, (SIDE, SIDE), dtype=np.uint16)
        distinct.append(write_raster(folder / f"distinct{k}.tif", a, nodata=0,
                                     options=("TILED=YES", "COMPRESS=DEFLATE", "ZLEVEL=1")))
    paths = []
    for i in range(LAYERS):
        path = str(folder / f"scene{i:02d}.tif")
        try:
            os.link(distinct[i % 4], path)
        except OSError:  # a file system without hard links
            shutil.copy(distinct[i % 4], path)
        paths.append(path)
    yield paths
    shutil.rmtree(folder, ignore_errors=True)  # 120 MB: not kept among pytest's last three runs


def big_params(paths, output):
    return {"INPUT": paths, "TILE_SIZE": 256, "WORKERS": 2, "OUTPUT": output}


def test_cancel_stops_the_engine_and_leaves_nothing(big_series, out_dir):
    feedback = QgsProcessingFeedback()
    seen = {}

    def cancel():
        # as a user does: a moment after the progress bar started moving (a cold numba cache
        # may delay the first tile, so the wait is not a fixed time from the start)
        engine = wait_for(lambda: feedback.progress() > 0 and my_engine(), 60)
        time.sleep(1.0)
        seen["engine"] = engine
        seen["workers"] = children_of(engine.pid) if engine else []
        seen["progress"] = feedback.progress()
        seen["at"] = time.monotonic()
        feedback.cancel()

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, big_params(big_series, str(out_dir / "median.tif")), feedback=feedback)
    stopped = time.monotonic()
    canceller.join(10)

    assert "at" in seen, "the run ended before the cancel"
    assert stopped - seen["at"] < 3.0, f"took {stopped - seen['at']:.1f} s to stop after the cancel"
    message = str(info.value)
    assert "Cancelled" in message and "no output was written" in message, message
    # the cancel came mid-run: the engine and its two workers were running, with tiles left to do
    assert seen["engine"] is not None and len(seen["workers"]) == 2, seen
    done, total = map(int, re.search(r"after (\d+) of (\d+) tiles", message).groups())
    assert total == (SIDE // 256 + 1) ** 2 and 0 < done < total, message
    assert seen["progress"] < 100
    assert still_running([seen["engine"]] + seen["workers"]) == []
    assert my_engine() is None
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("victim", ["worker", "engine"])
def test_killed_process_is_a_clear_error_and_qgis_stays_up(victim, big_series, out_dir, tmp_path):
    feedback = QgsProcessingFeedback()
    killed = []

    def kill():
        # once tiles are being computed, kill one worker (or the engine itself) from outside, like the OOM killer
        engine = wait_for(lambda: feedback.progress() > 0 and my_engine(), 60)
        if engine is None:
            return
        workers = wait_for(lambda: children_of(engine.pid), 5) or []
        target = workers[0] if victim == "worker" and workers else engine
        os.kill(target.pid, signal.SIGKILL)
        killed.append((target, engine, workers))

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, big_params(big_series, str(out_dir / "median.tif")), feedback=feedback)
    killer.join(10)

    assert killed, "no engine process was found to kill"
    target, engine, workers = killed[0]
    assert len(workers) == 2 and (target in workers) == (victim == "worker"), killed
    # the engine and its workers run in the engine's interpreter, never in QGIS's
    assert all(p.cmdline.startswith(os.environ["TILEWISE_PYTHON"] + " ") for p in [engine] + workers), killed
    message = str(info.value)
    if victim == "worker":
        assert "Tilewise worker process died" in message, message
    else:
        assert "Tilewise engine process was killed by signal SIGKILL" in message, message
        assert "Nothing was written" in message, message
    assert "Traceback" not in message
    assert still_running([engine] + workers) == []  # the other worker too
    assert my_engine() is None
    assert list(out_dir.iterdir()) == []

    # the same QGIS runs the next job normally
    small = [write_raster(tmp_path / f"small{i}.tif", np.full((40, 50), i + 1, np.uint16), nodata=0)
             for i in range(3)]
    result = run(ALG_ID, {"INPUT": small, "OUTPUT": str(out_dir / "after.tif")})
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, 2)

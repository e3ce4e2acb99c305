"""The warm engine inside a QGIS session: processing.run after processing.run on one engine process,
replaced without an error when it died between runs, off by the setting, ended by the plugin's unload;
qgis_process takes the cold path."""

import os
import signal
import sys

import numpy as np
import pytest

from twtest import children_of, messages, processes, read_raster, run, still_running, write_raster

ALG_ID = "tilewise:temporalmedian"
WARM = "Ran on the warm engine"


@pytest.fixture(autouse=True)
def no_engine_left():
    from tilewise.algorithms import warm_engine
    warm_engine.shutdown()
    yield warm_engine
    warm_engine.shutdown()


@pytest.fixture
def series(tmp_path):
    rng = np.random.default_rng(11)
    arrays = [rng.integers(1, 250, (33, 81)).astype(np.float32) for _ in range(6)]
    return [write_raster(tmp_path / f"t{i}.tif", a, nodata=-1) for i, a in enumerate(arrays)], arrays


def serving():
    """Warm engines this test process started."""
    return [p for p in processes() if p.ppid == os.getpid() and "--serve" in p.cmdline]


def test_runs_in_one_session_share_one_engine(series, out_dir, no_engine_left):
    paths, arrays = series
    logs = []
    for k in range(3):
        feedback = messages()
        result = run(ALG_ID, {"INPUT": paths, "OUTPUT": str(out_dir / f"m{k}.tif")}, feedback=feedback)
        np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, np.median(np.stack(arrays), axis=0))
        logs.append(feedback.text)
        if k == 0:
            engine = no_engine_left.current()
            workers = children_of(engine.pid)
    assert all(WARM in text for text in logs), logs
    assert no_engine_left.current().pid == engine.pid and len(serving()) == 1
    assert children_of(engine.pid) == workers and len(workers) >= 1
    # the engine's packages stay in the engine's interpreter (the autouse check covers the QGIS process)
    assert all(p.cmdline.startswith(os.environ["TILEWISE_PYTHON"] + " ") for p in serving() + workers)


def test_an_engine_killed_between_runs_is_replaced_without_an_error(series, out_dir, no_engine_left):
    paths, arrays = series
    run(ALG_ID, {"INPUT": paths, "OUTPUT": str(out_dir / "a.tif")})
    engine = no_engine_left.current()
    workers = children_of(engine.pid)
    os.kill(engine.pid, signal.SIGKILL)
    assert still_running([p for p in processes() if p.pid == engine.pid] + workers) == []
    feedback = messages()
    result = run(ALG_ID, {"INPUT": paths, "OUTPUT": str(out_dir / "b.tif")}, feedback=feedback)
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, np.median(np.stack(arrays), axis=0))
    assert WARM in feedback.text and no_engine_left.current().pid != engine.pid


def test_the_setting_zero_starts_an_engine_for_every_run(series, out_dir, monkeypatch, no_engine_left):
    monkeypatch.setenv("TILEWISE_WARM_ENGINE_MINUTES", "0")
    feedback = messages()
    run(ALG_ID, {"INPUT": series[0], "OUTPUT": str(out_dir / "a.tif")}, feedback=feedback)
    assert WARM not in feedback.text
    assert no_engine_left.current() is None and serving() == []


def test_the_setting_is_declared_in_processing_options():
    from processing.core.ProcessingConfig import ProcessingConfig
    from tilewise.algorithms.settings import WARM_SETTING
    assert float(ProcessingConfig.getSetting(WARM_SETTING)) == 10.0


def test_unloading_the_plugin_ends_the_warm_engine(series, out_dir, no_engine_left):
    import qgis.utils
    run(ALG_ID, {"INPUT": series[0], "OUTPUT": str(out_dir / "a.tif")})
    engine = no_engine_left.current()
    procs = [p for p in processes() if p.pid == engine.pid] + children_of(engine.pid)
    plugin = qgis.utils.plugins["tilewise"]
    plugin.unload()              # as QGIS does when the plugin is disabled, or at exit
    try:
        assert still_running(procs) == [] and no_engine_left.current() is None
    finally:
        plugin.initProcessing()
    result = run(ALG_ID, {"INPUT": series[0], "OUTPUT": str(out_dir / "b.tif")})
    assert os.path.exists(result["OUTPUT"])


def test_qgis_process_takes_the_cold_path(series, out_dir, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
    from qgis_process import run_algorithm
    from conftest import PLUGINS_DIR
    out = out_dir / "q.tif"
    proc = run_algorithm(ALG_ID, [("INPUT", p) for p in series[0]] + [("OUTPUT", out)], str(PLUGINS_DIR),
                         str(tmp_path / "profile"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists() and "Engine interpreter" in proc.stdout, proc.stdout
    assert WARM not in proc.stdout + proc.stderr

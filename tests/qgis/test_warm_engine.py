"""The warm engine inside a QGIS session: processing.run after processing.run on one engine process,
replaced without an error when it died between runs, off by the setting, ended by the plugin's unload;
qgis_process takes the cold path."""

import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest

from twtest import children_of, messages, processes, read_raster, run, still_running, wait_for, write_raster

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


# -- runs from the algorithm dialog ------------------------------------------------------------------------------
# The dialog (processing's AlgorithmDialog.runAlgorithm in QGIS 3.22) does not call processing.run: it hands a
# QgsProcessingAlgRunnerTask to QgsApplication.taskManager(), which prepares a copy of the algorithm
# (createInstance) on the main thread, runs it on a thread of a QThreadPool and post-processes it on the main
# thread again. A pool thread ends after its expiry timeout (30 s) without work: between two dialog runs, the
# thread that started the warm engine is gone.

def zombies():
    """This process's children that ended and were never waited for (``<defunct>`` in ps)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if state == "Z" and int(ppid) == os.getpid():
            found.append(int(entry))
    return found


def run_as_the_dialog(parameters, feedback, timeout=300):
    """Run ALG_ID as AlgorithmDialog.runAlgorithm does: a QgsProcessingAlgRunnerTask in the task manager;
    wait for it (the main thread turns the event loop meanwhile, as QGIS's does)."""
    from processing.tools import dataobjects
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask
    from qgis.PyQt.QtCore import QCoreApplication
    algorithm = QgsApplication.processingRegistry().algorithmById(ALG_ID)
    context = dataobjects.createContext(feedback)
    done = {}
    task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
    task.executed.connect(lambda ok, results: done.update(ok=ok, results=results))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + timeout
    while "ok" not in done and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert done.get("ok"), f"the dialog's task failed or timed out:\n{feedback.text}"
    return done["results"]


def dialog_feedback():
    """messages() that also notes the thread that ran the engine (it says which interpreter it starts)."""
    class Threads(type(messages())):
        def __init__(self):
            super().__init__()
            self.threads = set()

        def pushInfo(self, info):  # noqa: N802 (QGIS's name)
            if info.startswith("Engine interpreter"):
                self.threads.add(threading.get_native_id())
            super().pushInfo(info)

    return Threads()


def engine_start_seconds(text):
    found = re.search(r"Phases \(s\):.*?engine start (\d+\.\d+)", text)
    assert found, text
    return float(found.group(1))


@pytest.fixture
def short_lived_pool_threads():
    """Pool threads that end 0.2 s after their last task (QGIS's pool keeps them 30 s): the same as a user
    who takes half a minute to fill in the dialog again, without the wait."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QThreadPool
    pools = [QThreadPool.globalInstance()]
    if hasattr(QgsApplication.taskManager(), "threadPool"):   # QGIS >= 3.34 has a pool of its own
        pools.append(QgsApplication.taskManager().threadPool())
    kept = [pool.expiryTimeout() for pool in pools]
    for pool in pools:
        pool.setExpiryTimeout(200)
    yield
    for pool, timeout in zip(pools, kept):
        pool.setExpiryTimeout(timeout)


def test_dialog_runs_reuse_the_engine_after_their_thread_ends(series, out_dir, no_engine_left, monkeypatch,
                                                              short_lived_pool_threads):
    monkeypatch.setenv("TILEWISE_DEBUG", "1")          # the phases line as an info line
    paths, arrays = series
    pids, starts = [], []
    for k in range(3):
        feedback = dialog_feedback()
        result = run_as_the_dialog({"INPUT": paths, "OUTPUT": str(out_dir / f"d{k}.tif")}, feedback)
        np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, np.median(np.stack(arrays), axis=0))
        assert WARM in feedback.text, feedback.text
        engine = no_engine_left.current()
        pids.append(engine.pid if engine else None)
        starts.append(engine_start_seconds(feedback.text))
        # the algorithm ran on a pool thread, which ends after the run, as between two runs in QGIS
        assert feedback.threads and threading.get_native_id() not in feedback.threads
        ended = wait_for(lambda feedback=feedback: all(not os.path.exists(f"/proc/self/task/{t}")
                                                       for t in feedback.threads), 60)
        assert ended, f"the task's thread {feedback.threads} did not end"
    # the engine of the first run served the second and the third; it is up, and nothing is left <defunct>
    assert pids[1:] == pids[:1] * 2, f"engine processes of the three runs: {pids}"
    assert starts[1] < 0.5 * starts[0] and starts[2] < 0.5 * starts[0], f"engine start (s) per run: {starts}"
    assert still_running([p for p in processes() if p.pid == pids[0]], timeout=2.0) != []
    assert zombies() == []


def test_an_engine_that_ends_between_runs_leaves_no_zombie(series, out_dir, no_engine_left, monkeypatch):
    """An engine that ends by itself (here its idle timeout of 3 s) is waited for at once, not at the next run."""
    monkeypatch.setenv("TILEWISE_WARM_ENGINE_MINUTES", "0.05")
    run(ALG_ID, {"INPUT": series[0], "OUTPUT": str(out_dir / "a.tif")})
    engine = no_engine_left.current()
    assert engine is not None
    assert still_running([p for p in processes() if p.pid == engine.pid], timeout=120) == []
    assert wait_for(lambda: zombies() == [], 30), f"<defunct> children of QGIS: {zombies()}"

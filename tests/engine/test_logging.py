"""The engine logs through Python's logging (issue 22): module loggers under ``tilewise``, one handler
(:class:`tilewise.core.logs.LineHandler`) forwarding the records as the lines they always were to a ``log=``
callback, the command line's stderr and the engine process's events; unexpected failures keep their cause."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from affine import Affine

from tilewise.core import composite
from tilewise.core.errors import CatalogError
from tilewise.core.logs import ROOT, line, logging_to
from tilewise.core.operations.stac.search import stac_search

from support import subprocess_env, write_raster

SHAPE = (20, 30)
FAR = Affine(10, 0, 700_000, 0, -10, 5_000_000)
TILES = "4 tiles of up to 16 x 16 pixels on 1 worker(s)"
OUTSIDE = "1 of 2 inputs do not overlap the output grid and add nothing to it: "


@pytest.fixture
def scenes(tmp_path):
    """A raster, and one far from it (a planning warning when both are composited)."""
    rng = np.random.default_rng(3)
    near = write_raster(tmp_path / "near.tif", rng.integers(1, 200, SHAPE).astype("uint8"), nodata=0)
    far = write_raster(tmp_path / "far.tif", np.ones(SHAPE, "uint8"), nodata=0, transform=FAR)
    return near, far


@pytest.fixture
def unsigned(tmp_path):
    """An ItemCollection whose one asset is remote, and a signing hook that fails (a ``KeyError``) on it."""
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "a", "links": [],
            "geometry": {"type": "Point", "coordinates": [15, 45]}, "bbox": [15, 45, 15, 45],
            "properties": {"datetime": "2024-05-01T10:00:00Z"},
            "assets": {"red": {"href": "https://127.0.0.1:9/red.tif", "type": "image/tiff; application=geotiff"}}}
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    (tmp_path / "badsign.py").write_text("def sign(href):\n    raise KeyError('no token for ' + href)\n")
    return path


def tilewise_lines(records):
    return [line(r) for r in records if r.name.startswith(ROOT + ".") and r.levelno >= logging.INFO]


def test_a_library_user_captures_the_records_with_caplog(tmp_path, scenes, caplog):
    caplog.set_level(logging.INFO, logger=ROOT)
    composite([scenes[0]], str(tmp_path / "o.tif"), tile_size=16, workers=1)
    said = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("tilewise.core.runtime.runner", "INFO", TILES) in said
    assert any(n == "tilewise.core.runtime.sinks" and m == "Assembling the Cloud-Optimized GeoTIFF"
               for n, _, m in said), said
    # the run leaves the logger as it found it: no handler of its own, its level as the user set it
    assert logging.getLogger(ROOT).handlers == [] and logging.getLogger(ROOT).level == logging.INFO


def test_the_log_callback_hears_the_records_as_lines(tmp_path, scenes, caplog):
    """``log=`` and logging hear the same run: every INFO-and-above record of ``tilewise`` is one line, a
    warning as ``Warning: ...``; the callback is detached afterwards."""
    caplog.set_level(logging.INFO, logger=ROOT)
    said = []
    composite(list(scenes), str(tmp_path / "o.tif"), tile_size=16, workers=1, log=said.append)
    assert said == tilewise_lines(caplog.records)
    assert f"Warning: {OUTSIDE}{scenes[1]}" in said
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == [f"{OUTSIDE}{scenes[1]}"]
    assert logging.getLogger(ROOT).handlers == []
    said.clear()
    logging.getLogger("tilewise.core.example").warning("after the run")
    assert said == []


def test_the_log_level_is_lowered_for_a_callback_and_restored(tmp_path, scenes):
    """Without any logging set up (the tilewise logger follows the root's WARNING) a ``log=`` callback still
    hears the INFO lines, and the logger's level is as it was afterwards."""
    logger = logging.getLogger(ROOT)
    assert logger.level == logging.NOTSET
    said = []
    composite([scenes[0]], str(tmp_path / "o.tif"), tile_size=16, workers=1, log=said.append)
    assert any(m == TILES for m in said), said
    assert logger.level == logging.NOTSET and logger.handlers == []


def test_nested_blocks_do_not_repeat_a_line():
    said = []
    with logging_to(said.append), logging_to(said.append):
        logging.getLogger("tilewise.core.example").info("once")
    assert said == ["once"]


def test_an_unexpected_failure_keeps_its_cause(tmp_path, unsigned):
    """The signing hook's own error is the cause of the message (a traceback shows where it failed)."""
    def sign(href):
        raise KeyError(f"no token for {href}")

    with pytest.raises(CatalogError, match=r"The URL signing hook failed on https://127\.0\.0\.1:9/red\.tif: "
                                           r"KeyError") as raised:
        stac_search(str(unsigned), tmp_path / "out", "red", sign=sign)
    assert isinstance(raised.value.__cause__, KeyError)
    assert raised.value.__cause__.args == ("no token for https://127.0.0.1:9/red.tif",)


def cli(*args, cwd):
    env = subprocess_env()
    env["PYTHONPATH"] += f":{cwd}"    # the signing hook's module
    proc = subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def test_the_cli_prints_the_lines_and_warnings_in_order(tmp_path, scenes):
    code, err = cli("composite", "-j", "1", "--tile-size", "16", "-o", "o.tif", *scenes, cwd=tmp_path)
    assert code == 0, err
    lines = [ln.strip() for ln in err.splitlines() if "tile/s" not in ln and ln.strip()]
    warning = lines.index(f"Warning: {OUTSIDE}{scenes[1]}")
    tiles = next(i for i, ln in enumerate(lines) if ln == TILES)
    assert warning < tiles < lines.index("Assembling the Cloud-Optimized GeoTIFF"), lines


def test_the_cli_shows_a_failure_s_cause_with_debug_only(tmp_path, unsigned):
    args = ("composite", "--stac", unsigned, "--assets", "red", "--sign", "badsign:sign", "-o", "x.tif")
    error = ("tilewise: error: The URL signing hook failed on https://127.0.0.1:9/red.tif: KeyError: "
             "'no token for https://127.0.0.1:9/red.tif'")
    code, err = cli(*args, "-q", cwd=tmp_path)
    assert code == 2 and err.splitlines() == [error], err
    code, err = cli(*args, "--debug", cwd=tmp_path)
    assert code == 2, err
    after = err.split(error + "\n", 1)[1]
    assert after.startswith("CatalogError was caused by:\nTraceback (most recent call last):"), err
    assert 'badsign.py", line 2, in sign' in after and after.rstrip().endswith(
        "KeyError: 'no token for https://127.0.0.1:9/red.tif'"), err


def run_driver(job, cwd, **env):
    path = cwd / "job.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "tilewise.core.runtime.driver", str(path)], cwd=cwd,
                          env={**subprocess_env(), "PYTHONPATH": subprocess_env()["PYTHONPATH"] + f":{cwd}", **env},
                          capture_output=True, text=True, timeout=300)
    return proc, [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]


def test_the_engine_process_sends_the_records_as_log_events(tmp_path, scenes):
    job = {"operation": "composite", "params": {"inputs": list(scenes), "output": str(tmp_path / "o.tif"),
                                                "tile_size": 16, "workers": 1}}
    proc, events = run_driver(job, tmp_path)
    assert proc.returncode == 0, proc.stderr
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert logs[0] == f"Warning: {OUTSIDE}{scenes[1]}"
    assert any(m == TILES for m in logs), logs
    assert "Assembling the Cloud-Optimized GeoTIFF" in logs
    assert [e["event"] for e in events][-1] == "done"


def test_the_engine_process_sends_a_failure_s_cause_in_debug_mode(tmp_path, unsigned):
    job = {"operation": "stacsearch", "params": {"url": str(unsigned), "output": str(tmp_path / "out"),
                                                 "assets": "red", "sign": "badsign:sign"}}
    for debug in ("", "1"):
        proc, events = run_driver(job, tmp_path, TILEWISE_DEBUG=debug)
        assert proc.returncode == 2, proc.stderr
        assert events[-1]["event"] == "error" and events[-1]["kind"] == "CatalogError"
        assert events[-1]["message"].startswith("The URL signing hook failed on https://127.0.0.1:9/red.tif")
        causes = [e["message"] for e in events if e["event"] == "log" and "was caused by" in e["message"]]
        if debug:
            assert len(causes) == 1 and causes[0].startswith("CatalogError was caused by:\nTraceback"), events
            assert causes[0].endswith("KeyError: 'no token for https://127.0.0.1:9/red.tif'"), causes
        else:
            assert causes == [], events


def test_records_in_another_thread_reach_only_their_own_handler():
    """QGIS runs algorithms in threads: each hears its own thread's records (``this_thread``)."""
    import threading

    from tilewise.core.logs import lines_to
    mine = []
    with lines_to(mine.append, this_thread=True):
        worker = threading.Thread(target=lambda: logging.getLogger("tilewise.core.example").info("theirs"))
        worker.start()
        worker.join(30)
        logging.getLogger("tilewise.core.example").info("mine")
    assert mine == ["mine"]


def say_in_a_worker(text: str) -> int:
    logging.getLogger("tilewise.core.example").warning(text)
    return os.getpid()


def test_worker_processes_do_not_write_on_the_handler_they_inherit(tmp_path):
    """A worker forked while a handler was attached (the engine's: its event stream on stdout) drops it: its
    records would otherwise interleave with the engine's own lines. Nothing of a worker's log arrived before
    logging either."""
    from tilewise.core.logs import lines_to
    from tilewise.core.runtime.executor import LocalExecutor
    heard = tmp_path / "heard.txt"

    def send(message: str) -> None:
        with open(heard, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {message}\n")

    with lines_to(send):
        executor = LocalExecutor(2)
        try:
            pids = set(executor.run(say_in_a_worker, [("from a worker",)] * 4))
        finally:
            executor.close()
        logging.getLogger("tilewise.core.example").warning("from the engine")
    assert os.getpid() not in pids
    assert heard.read_text().splitlines() == [f"{os.getpid()} Warning: from the engine"]

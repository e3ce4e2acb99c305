"""The engine process QGIS starts: ``python -m tilewise.core.runtime.driver job.json``, JSON lines on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support import as_output, leftovers, numpy_reference, read_raster, subprocess_env, to_nan_stack


def run_driver(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "tilewise.core.runtime.driver", *map(str, args)], cwd=cwd,
                          env=subprocess_env(), stdin=subprocess.PIPE, capture_output=True, text=True,
                          timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines()]   # every line is one JSON object
    return proc, events


@pytest.fixture
def job(tmp_path, raster):
    """A job file for a median of three float32 scenes (NaN nodata); returns (path, params, stack)."""
    rng = np.random.default_rng(21)
    layers = []
    for _ in range(3):
        a = rng.random((50, 70)).astype("float32")
        a[rng.random(a.shape) < 0.2] = np.nan
        layers.append(a)
    paths = [raster(f"s{i}.tif", a, nodata=float("nan")) for i, a in enumerate(layers)]
    params = {"inputs": paths, "output": str(tmp_path / "out.tif"), "statistic": "median",
              "tile_size": 16, "workers": 2}

    def write(**changes):
        path = tmp_path / "job.json"
        path.write_text(json.dumps({"operation": "composite", "params": dict(params, **changes)}))
        return path
    return write, params, to_nan_stack(layers, None)


def test_driver_reports_progress_then_done(job, tmp_path):
    write, params, stack = job
    proc, events = run_driver(write(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert set(kinds) <= {"progress", "log", "done"}
    progress = [(e["done"], e["total"]) for e in events if e["event"] == "progress"]
    total = 4 * 5                                                         # 50 x 70 in 16-pixel tiles
    assert [d for d, _ in progress] == list(range(total + 1))             # 0, 1, ... total, each once
    assert {t for _, t in progress} == {total}
    report = events[-1]["report"]
    assert report["output"] == params["output"]
    assert (report["tiles"], report["workers"], report["width"], report["height"], report["bands"]) == \
        (total, 2, 70, 50, 1)
    data, _ = read_raster(params["output"])
    np.testing.assert_array_equal(data, as_output(numpy_reference(stack, "median")))


def test_driver_bad_input_is_an_error_event(job, tmp_path):
    write, params, _ = job
    missing = str(tmp_path / "gone.tif")
    proc, events = run_driver(write(inputs=params["inputs"] + [missing]), cwd=tmp_path)
    assert proc.returncode == 2
    assert events[-1]["event"] == "error"
    assert events[-1]["kind"] == "InputError"
    assert missing in events[-1]["message"]
    assert "done" not in [e["event"] for e in events]
    assert leftovers(params["output"]) == []


def test_driver_unknown_operation(job, tmp_path):
    write, _, _ = job
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"operation": "mosaic-everything", "params": {}}))
    proc, events = run_driver(path, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(events) == 1
    assert (events[0]["event"], events[0]["kind"]) == ("error", "ParameterError")
    assert "mosaic-everything" in events[0]["message"]


def test_driver_check(tmp_path):
    proc, events = run_driver("--check", cwd=tmp_path)
    assert proc.returncode == 0
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "ok"
    assert event["packages"] == []
    assert event["python"] == sys.executable
    assert set(event["required"]) >= {"numpy", "numba", "rasterio"}


def test_driver_without_job_is_a_usage_error(tmp_path):
    proc, events = run_driver(cwd=tmp_path)
    assert proc.returncode == 2
    assert [e["event"] for e in events] == ["error"]
    assert "usage" in events[0]["message"]

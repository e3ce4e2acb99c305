"""Resumable runs: a work folder with a manifest and a journal of finished tiles; an interrupted run
(kill -9, a failing tile) continued with resume gives the output of an uninterrupted run, byte for
byte, without recomputing the finished tiles."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tilewise.core import composite
from tilewise.core.errors import TileError
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.paths import partial_path, workdir_for
from tilewise.core.options import RunOptions
from tilewise.core.runtime.runner import run_tiles
from tilewise.core.operations.composite import composite_tile, plan_composite
from tilewise.core.operations.series import CompositeOptions
from tilewise.core.runtime.workdir import MANIFEST

from support import build_stack, journal, leftovers, read_raster, subprocess_env

SHAPE = (40, 60)       # 16-pixel tiles: 3 x 4 = 12 tiles


def raise_on_tile_five(job, tile, path):
    if tile.index == 5:
        raise TileError(f"{tile.name}: reading {job.inputs[1]} failed: connection reset")
    return composite_tile(job, tile, path)


def stamps(output, names) -> dict:
    """Identity of tile files: a recomputed tile is a new file (written aside, then renamed)."""
    folder = workdir_for(str(output))
    return {n: (os.stat(os.path.join(folder, n)).st_ino, os.stat(os.path.join(folder, n)).st_mtime_ns)
            for n in names}


def same_bytes(a, b) -> None:
    np.testing.assert_array_equal(read_raster(a)[0], read_raster(b)[0])
    assert Path(a).read_bytes() == Path(b).read_bytes()


@pytest.fixture
def inputs(tmp_path, raster):
    rng = np.random.default_rng(1)
    return [raster(f"in{i}.tif", rng.integers(0, 9, SHAPE).astype("uint8")) for i in range(3)]


@pytest.fixture
def failed(tmp_path, inputs):
    """A median run with resume that failed at tile 5 (tiles 0-4 finished, serially)."""
    job = plan_composite(inputs, str(tmp_path / "out.tif"), CompositeOptions("median"))
    with pytest.raises(TileError, match="tile 5"):
        run_tiles(job, raise_on_tile_five, RunOptions(tile_size=16, executor=SerialExecutor(), resume=True))
    return job


def fresh(inputs, folder, statistic="median") -> Path:
    folder.mkdir(exist_ok=True)
    composite(inputs, str(folder / "out.tif"), statistic, tile_size=16, workers=1)
    return folder / "out.tif"


def test_a_failed_run_with_resume_keeps_its_finished_tiles(failed):
    out = failed.output.path
    assert leftovers(out) == [workdir_for(out)]                     # no output, no partial file
    assert journal(out) == [f"tile_{r:07d}_{c:07d}.tif" for r, c in [(0, 0), (0, 16), (0, 32), (0, 48), (16, 0)]]
    manifest = json.loads((Path(workdir_for(out)) / MANIFEST).read_text())
    assert (manifest["tile_size"], manifest["tiles"], manifest["grid"]) == (16, 12, [60, 40])


def test_resume_reuses_finished_tiles_and_gives_the_uninterrupted_output(failed, inputs, tmp_path):
    out = failed.output.path
    before = stamps(out, journal(out))
    logs, seen = [], []
    report = run_tiles(failed, composite_tile, RunOptions(executor=SerialExecutor(), resume=True, keep_workdir=True,
                                                          log=logs.append, progress=lambda d, t: seen.append((d, t))))
    assert (report.tiles, report.reused) == (12, 5)                  # the tile size came from the manifest
    assert "Resuming: 5 of 12 tiles were already finished and are reused; 7 to compute" in logs
    assert seen == [(i, 12) for i in range(5, 13)]
    assert stamps(out, before) == before                             # not recomputed
    assert len(journal(out)) == 12
    same_bytes(out, fresh(inputs, tmp_path / "fresh"))


def test_a_changed_job_is_not_resumed(failed, inputs, tmp_path):
    out = failed.output.path
    logs = []
    job = plan_composite(inputs, out, CompositeOptions("max"))
    report = run_tiles(job, composite_tile, RunOptions(executor=SerialExecutor(), resume=True, log=logs.append))
    assert report.reused == 0
    assert any("belongs to another job" in m for m in logs), logs
    same_bytes(out, fresh(inputs, tmp_path / "fresh", "max"))
    assert leftovers(out) == [out]


def test_a_rewritten_input_is_not_resumed(failed, inputs, tmp_path, raster):
    time.sleep(0.01)
    raster("in1.tif", np.full(SHAPE, 4, "uint8"))                    # same name, same shape, new pixels
    logs = []
    report = run_tiles(failed, composite_tile, RunOptions(executor=SerialExecutor(), resume=True, log=logs.append))
    assert report.reused == 0 and any("belongs to another job" in m for m in logs), logs
    same_bytes(failed.output.path, fresh(inputs, tmp_path / "fresh"))


def test_damaged_and_unlisted_tiles_are_recomputed(failed, inputs, tmp_path):
    out = failed.output.path
    folder = Path(workdir_for(out))
    listed = journal(out)
    with open(folder / listed[1], "r+b") as f:                       # cut short (e.g. by a power cut)
        f.truncate(100)
    os.remove(folder / listed[2])
    (folder / "tile_0000016_0000048.tif.part").write_bytes(b"half a tile")   # a write that never finished
    (folder / "tile_0000032_0000000.tif").write_bytes(b"not listed")         # finished after the last entry?
    report = run_tiles(failed, composite_tile, RunOptions(executor=SerialExecutor(), resume=True))
    assert report.reused == 3
    same_bytes(out, fresh(inputs, tmp_path / "fresh"))


def test_resume_without_a_work_folder_runs_everything(inputs, tmp_path):
    logs = []
    out = tmp_path / "out.tif"
    report = composite(inputs, str(out), tile_size=16, workers=1, resume=True, log=logs.append)
    assert report.reused == 0 and "No interrupted run to resume: computing every tile" in logs
    assert leftovers(out) == [str(out)]                              # removed after success


# -- kill -9 of a real run -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """16 uint16 scenes of 1024 x 1024: 64 tiles of 128 pixels, a few seconds on two workers."""
    return build_stack(tmp_path_factory.mktemp("heavy"), "uint16", 0, 16, height=1024, width=1024, seed=3)


def engine(kind, heavy, output, *, resume=False):
    """The engine started as users start it: the ``tilewise`` command line, or the driver QGIS starts
    (``python -m tilewise.core.runtime.driver job.json``, JSON lines on stdout)."""
    folder = Path(output).parent
    if kind == "cli":
        args = ["-m", "tilewise", "composite", "--tile-size", "128", "-j", "2", "-o", str(output), *heavy.paths]
        args += ["--resume", "--keep-workdir"] if resume else ["-q"]
    else:
        job = folder / ("resume.json" if resume else "job.json")
        job.write_text(json.dumps({"operation": "composite", "params": {
            "inputs": heavy.paths, "output": str(output), "tile_size": 128, "workers": 2, "resume": resume,
            "keep_workdir": resume}}))
        args = ["-m", "tilewise.core.runtime.driver", str(job)]
    return subprocess.Popen([sys.executable, *args], cwd=folder, env=subprocess_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(kind, proc):
    """``(exit code, log text, tiles reused)`` of a finished engine."""
    out, err = proc.communicate(timeout=300)
    if kind == "cli":
        reused = re.search(r"64 tiles \((\d+) reused\) on 2 workers", out)
        return proc.returncode, err, int(reused.group(1)) if reused else 0
    events = [json.loads(line) for line in out.splitlines()]
    log = "\n".join(e["message"] for e in events if e["event"] == "log")
    done = [e["report"] for e in events if e["event"] == "done"]
    return proc.returncode, log + err, done[0]["reused"] if done else None


@pytest.mark.parametrize("kind", ["cli", "driver"])
def test_kill_9_then_resume_gives_the_uninterrupted_output(kind, heavy, tmp_path):
    out = tmp_path / "median.tif"
    proc = engine(kind, heavy, out)
    try:
        deadline = time.monotonic() + 120
        while len(journal(out)) < 32 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)                            # about half the tiles are finished
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    finished = journal(out)
    assert 0 < len(finished) < 64, len(finished)
    assert not out.exists()
    before = stamps(out, finished)
    k = len(finished)
    print(f"\nkill -9 of the {kind} after {k} of 64 tiles")

    rc, log, reused = finish(kind, engine(kind, heavy, out, resume=True))
    assert rc == 0, log
    assert f"Resuming: {k} of 64 tiles were already finished and are reused; {64 - k} to compute" in log
    assert reused == k
    assert stamps(out, finished) == before                           # the finished tiles were not recomputed
    assert not os.path.exists(partial_path(str(out)))

    (tmp_path / "ref").mkdir()
    reference = tmp_path / "ref" / "median.tif"
    rc, log, _ = finish(kind, engine(kind, heavy, reference))
    assert rc == 0, log
    same_bytes(out, reference)


# -- inputs changed in ways a size and a date do not show (issue 26 A2) ---------------------------------------

FAIL_AT_TILE_FIVE = """
import sys
from tilewise.core.errors import TileError
from tilewise.core.options import RunOptions
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.runtime.runner import run_tiles
from tilewise.core.operations.composite import composite_tile, plan_composite
from tilewise.core.operations.series import CompositeOptions

def fail(job, tile, path):
    if tile.index == 5:
        raise TileError("tile 5 failed")
    return composite_tile(job, tile, path)

job = plan_composite(sys.argv[2:], sys.argv[1], CompositeOptions("median"))
try:
    run_tiles(job, fail, RunOptions(tile_size=16, executor=SerialExecutor(), resume=True))
except TileError:
    print("failed at tile 5")
"""


def fail_in_another_process(inputs, out) -> None:
    """The median run with resume that fails at tile 5, in a process of its own: GDAL caches what it
    fetched over HTTP per process, and this one must see the inputs only as they are after the edit."""
    done = subprocess.run([sys.executable, "-c", FAIL_AT_TILE_FIVE, str(out), *map(str, inputs)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "failed at tile 5", done.stderr
    assert len(journal(out)) == 5


def resume(inputs, out) -> tuple:
    """The same job resumed in this process: ``(report, log)``."""
    logs = []
    job = plan_composite(list(inputs), str(out), CompositeOptions("median"))
    report = run_tiles(job, composite_tile, RunOptions(executor=SerialExecutor(), resume=True, log=logs.append))
    return report, logs


def rewrite(path, data) -> None:
    """New pixels in place (an uncompressed GeoTIFF keeps its size and inode)."""
    import rasterio
    with rasterio.open(path, "r+") as dst:
        dst.write(data, 1)


def test_a_vrt_whose_source_was_edited_is_not_resumed(inputs, tmp_path):
    import rasterio.shutil
    vrt = tmp_path / "in1.vrt"
    rasterio.shutil.copy(inputs[1], str(vrt), driver="VRT")
    assert "in1.tif" in vrt.read_text()
    series = [inputs[0], str(vrt), inputs[2]]
    out = tmp_path / "out.tif"
    fail_in_another_process(series, out)
    vrt_before = vrt.stat()
    time.sleep(0.01)
    rewrite(inputs[1], np.full(SHAPE, 8, "uint8"))                  # the VRT itself is untouched
    assert (vrt.stat().st_mtime_ns, vrt.stat().st_ctime_ns) == (vrt_before.st_mtime_ns, vrt_before.st_ctime_ns)
    report, logs = resume(series, out)
    assert report.reused == 0 and any("belongs to another job" in m for m in logs), logs
    same_bytes(out, fresh(series, tmp_path / "fresh"))


def test_an_input_rewritten_with_its_size_and_date_restored_is_not_resumed(inputs, tmp_path):
    out = tmp_path / "out.tif"
    fail_in_another_process(inputs, out)
    before = os.stat(inputs[1])
    rewrite(inputs[1], np.full(SHAPE, 8, "uint8"))
    os.utime(inputs[1], ns=(before.st_atime_ns, before.st_mtime_ns))   # touch -d: the old date back
    after = os.stat(inputs[1])
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    report, logs = resume(inputs, out)
    assert report.reused == 0 and any("belongs to another job" in m for m in logs), logs
    same_bytes(out, fresh(inputs, tmp_path / "fresh"))


@pytest.fixture
def served(tmp_path, inputs):
    """The inputs served by nginx (an ETag and a Last-Modified date for each): ``(folder, urls)``."""
    from servers import Nginx
    root = tmp_path / "www"
    root.mkdir()
    for path in inputs:
        os.link(path, root / os.path.basename(path))
    with Nginx(root, tmp_path / "nginx") as server:
        yield root, [f"{server.url}/{os.path.basename(p)}" for p in inputs]


def test_an_unchanged_http_input_is_resumed(served, tmp_path):
    _, urls = served
    out = tmp_path / "out.tif"
    fail_in_another_process(urls, out)
    report, logs = resume(urls, out)
    assert report.reused == 5, logs
    same_bytes(out, fresh(urls, tmp_path / "fresh"))


def test_an_http_input_edited_on_the_server_is_not_resumed(served, tmp_path):
    root, urls = served
    out = tmp_path / "out.tif"
    fail_in_another_process(urls, out)
    edited = root / "in1.tif"
    before = edited.stat()
    rewrite(str(edited), np.full(SHAPE, 8, "uint8"))
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))  # nginx's ETag: mtime, size
    assert edited.stat().st_size == before.st_size
    report, logs = resume(urls, out)
    assert report.reused == 0 and any("belongs to another job" in m for m in logs), logs
    same_bytes(out, fresh(urls, tmp_path / "fresh"))


def test_an_http_input_without_etag_or_date_is_never_resumed(inputs, tmp_path):
    from hostile import ScriptedServer
    files = {f"/{os.path.basename(p)}": (200, {"Content-Type": "image/tiff"}, Path(p).read_bytes()) for p in inputs}
    with ScriptedServer(files) as server:
        urls = [f"{server.url}{name}" for name in files]
        out = tmp_path / "out.tif"
        fail_in_another_process(urls, out)
        assert json.loads((Path(workdir_for(str(out))) / MANIFEST).read_text())["job"] is None
        report, logs = resume(urls, out)
        reference = fresh(urls, tmp_path / "fresh")
    assert report.reused == 0, logs
    said = [m for m in logs if m.startswith("Not resuming:")]
    assert said == [f"Not resuming: the server of the input {urls[0]} gives neither an ETag nor a Last-Modified "
                    f"date, so its tiles in {workdir_for(str(out))} may be stale; starting afresh"], logs
    same_bytes(out, reference)

"""The fixed costs of a tiny run (issue 21: a warm engine's tiny job against its floor).

A run of one tile that neither resumes nor keeps its work folder has nothing to resume: it journals nothing,
flushes nothing, and its worker writes the COG straight from the tile's array, byte for byte the file the
tile-files route (tile file -> VRT -> GDAL's COG driver) writes. A run that resumes or keeps its folder
journals its tile as before. Input headers are read once while their files, side-cars and folder are unchanged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio

from tilewise.core import composite
from tilewise.core.io import headers
from tilewise.core.io.sources import describe_raster
from tilewise.core.paths import JOURNAL_NAME, workdir_for

from support import DTYPE_NODATA, build_stack, leftovers


def _workdir_files(output):
    """A progress callback that records the work folder's files as each tile is finished."""
    seen = []

    def progress(done, total):
        folder = workdir_for(str(output))
        if done:
            seen.append(sorted(os.listdir(folder)) if os.path.isdir(folder) else None)
    return seen, progress


@pytest.mark.parametrize("dtype,nodata", DTYPE_NODATA)
@pytest.mark.parametrize("size,overviews", [((33, 81), True), ((600, 700), True), ((120, 90), False)])
def test_one_tile_is_written_straight_and_is_the_tile_routes_file(tmp_path, dtype, nodata, size, overviews):
    height, width = size
    stack = build_stack(tmp_path / "in", dtype, nodata, 4, height=height, width=width)
    tile = max(height, width)
    direct, kept = tmp_path / "direct.tif", tmp_path / "kept.tif"
    seen, progress = _workdir_files(direct)
    report = composite(stack.paths, str(direct), "median", tile_size=tile, workers=1, overviews=overviews,
                       progress=progress)
    assert report.tiles == 1
    assert seen == [None]          # no work folder (tile file, journal): the COG went straight to its place
    seen_kept, progress_kept = _workdir_files(kept)
    composite(stack.paths, str(kept), "median", tile_size=tile, workers=1, overviews=overviews,
              keep_workdir=True, progress=progress_kept)
    assert JOURNAL_NAME in seen_kept[0] and any(n.startswith("tile_") for n in seen_kept[0])
    assert direct.read_bytes() == kept.read_bytes()
    assert leftovers(direct) == [str(direct)]


def test_several_outputs_of_one_tile(tmp_path):
    """Percentiles of a 2-band stack: one COG of 4 bands, from the one tile."""
    stack = build_stack(tmp_path / "in", "int16", -9999, 5, height=40, width=50)
    outputs = {}
    for keep in (False, True):
        out = tmp_path / f"p{keep}.tif"
        composite(stack.paths, str(out), "percentile", percentiles=[10, 90], tile_size=64, workers=1,
                  keep_workdir=keep)
        outputs[keep] = out.read_bytes()
    assert outputs[False] == outputs[True]


def test_resumed_or_kept_runs_of_one_tile_journal_it(tmp_path):
    stack = build_stack(tmp_path / "in", "float32", -9999.0, 3, height=30, width=40)
    out = tmp_path / "out.tif"
    for options in (dict(resume=True), dict(keep_workdir=True)):
        seen, progress = _workdir_files(out)
        composite(stack.paths, str(out), "mean", tile_size=64, workers=1, progress=progress, **options)
        assert JOURNAL_NAME in seen[0], options
        os.remove(out)


def test_several_tiles_still_journal_each(tmp_path):
    stack = build_stack(tmp_path / "in", "uint8", 0, 3, height=40, width=50)
    out = tmp_path / "out.tif"
    seen, progress = _workdir_files(out)
    report = composite(stack.paths, str(out), "median", tile_size=16, workers=1, progress=progress)
    assert report.tiles > 1
    assert all(JOURNAL_NAME in files for files in seen)


def _aged(*paths, seconds=60.0):
    """Date files (or folders) back, as inputs that were written a while ago."""
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def test_headers_are_read_once_while_the_file_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(headers, "SETTLE_SECONDS", 0.0)  # dating the file back makes its change time now
    stack = build_stack(tmp_path / "in", "float32", -9999.0, 1, height=20, width=30)
    path = stack.paths[0]
    _aged(path, tmp_path / "in")
    headers.forget()
    first = describe_raster(path)
    assert describe_raster(path) is first          # kept: not opened again
    with rasterio.open(path, "r+") as dst:          # the same file rewritten: same size, another origin
        dst.transform = rasterio.Affine(10.0, 0.0, 400_000.0, 0.0, -10.0, 5_000_000.0)
    _aged(path, seconds=30.0)
    again = describe_raster(path)
    assert again.transform[2] == 400_000.0 and first.transform[2] == 500_000.0


def test_a_new_side_car_is_seen(tmp_path, monkeypatch):
    """A ``.aux.xml`` added beside an input (here a nodata GDAL reads from it) is read, not the kept header."""
    monkeypatch.setattr(headers, "SETTLE_SECONDS", 0.0)
    stack = build_stack(tmp_path / "in", "float32", None, 1, height=20, width=30)
    path = stack.paths[0]
    _aged(path, tmp_path / "in")
    headers.forget()
    first = describe_raster(path)
    assert describe_raster(path) is first and first.nodata is None
    with open(path + ".aux.xml", "w") as f:
        f.write('<PAMDataset><PAMRasterBand band="1"><NoDataValue>-5</NoDataValue></PAMRasterBand></PAMDataset>')
    assert describe_raster(path).nodata == -5


def test_files_changed_just_now_are_not_kept(tmp_path):
    stack = build_stack(tmp_path / "in", "uint8", 0, 1, height=20, width=30)
    headers.forget()
    first = describe_raster(stack.paths[0])
    assert describe_raster(stack.paths[0]) is not first     # written just now: read anew each time
    assert np.isclose(first.nodata, 0)


def test_one_tile_of_several_outputs_and_layers(tmp_path):
    """Gap filling to one COG per date in a folder, with a flags COG of another tile layer: every file written
    straight is the tile route's."""
    from tilewise.core.operations.gapfill import gapfill
    from support import write_raster
    rng = np.random.default_rng(3)
    dates = ["2024-01-01", "2024-01-11", "2024-01-21", "2024-02-01"]
    paths = []
    for day in dates:
        data = rng.random((20, 30)).astype(np.float32)
        data[rng.random((20, 30)) < 0.3] = -9999.0
        paths.append(write_raster(tmp_path / f"ndvi_{day}.tif", data, nodata=-9999.0))
    files = {}
    for keep in (False, True):
        folder, flags = tmp_path / f"dates{keep}", tmp_path / f"flags{keep}.tif"
        seen, progress = _workdir_files(folder)
        report = gapfill(paths, str(folder), "linear", edges=1, per_date=True, flags=str(flags), workers=1,
                         tile_size=64, keep_workdir=keep, progress=progress)
        assert report.tiles == 1 and (JOURNAL_NAME in (seen[0] or ())) == keep
        files[keep] = [open(p, "rb").read() for p in report.outputs]
        assert len(files[keep]) == len(dates) + 1
    assert files[False] == files[True]


FORKED_AFTER_GDAL_THREADS = """
import sys
from pathlib import Path
from support import build_stack
from tilewise.core import composite, mosaic
from tilewise.core.runtime.executor import LocalExecutor
folder = sys.argv[1]
stack = build_stack(Path(folder), "uint16", 0, 4, height=1100, width=1300)
# GDAL's COG driver on all cores in this process (a mosaic of same-grid inputs: VRT -> COG, no kernels, as the
# engine's own assemblies): it starts GDAL's thread pool here
mosaic(stack.paths, folder + "/first.tif", overlap="first")
# workers forked now inherit that pool without its threads; a one-tile run writes its COG in one of them
with LocalExecutor(2) as pool:
    composite(stack.paths, folder + "/one.tif", "median", tile_size=2048, overviews=False, executor=pool,
              workers=2)
    composite(stack.paths, folder + "/many.tif", "median", tile_size=256, overviews=False, executor=pool,
              workers=2)
print("ok")
"""


def test_a_one_tile_run_on_workers_forked_after_gdal_started_its_threads(tmp_path):
    # The warm engine forks a new worker after its own assemblies; a COG written with GDAL's threads in such a
    # worker waited forever for threads that do not exist (the engine suite hung here)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""),
                                                        os.path.dirname(os.path.abspath(__file__))]))
    proc = subprocess.Popen([sys.executable, "-c", FORKED_AFTER_GDAL_THREADS, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)       # its hung workers too
        proc.communicate()
        pytest.fail("the one-tile run on a pool forked after GDAL had started its threads never ended")
    assert proc.returncode == 0 and stdout.strip() == "ok", stderr[-3000:]
    with rasterio.open(tmp_path / "one.tif") as one, rasterio.open(tmp_path / "many.tif") as many:
        assert (one.read() == many.read()).all()

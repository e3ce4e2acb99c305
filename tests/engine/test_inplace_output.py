"""Uncompressed outputs are written in place (the workers write into the final file's blocks, and the
overview levels they build): the file is byte for byte the one the tile-files route writes (tiles -> VRT ->
GDAL's COG driver), a failed run leaves no output, a resumed run continues in the same file, a full disk is
one message.

The tile-files route is what a run takes on an executor the runner does not know to be local (e.g. Dask
workers on other machines): :class:`ElsewhereExecutor` is such an executor, so both routes run the same
tile plan.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tilewise.core import composite
from tilewise.core.errors import OutputError, TileError
from tilewise.core.io.inplace import open_layout
from tilewise.core.io.overviews import overview_sizes
from tilewise.core.operations.bandmath import index
from tilewise.core.operations.composite import composite_tile, plan_composite
from tilewise.core.operations.series import CompositeOptions
from tilewise.core.options import OutputSpec, RunOptions, split_options
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.runtime.executor_base import Executor
from tilewise.core.paths import workdir_for
from tilewise.core.runtime.runner import run_tiles

from support import in_small_disk, journal, leftovers, write_raster


class ElsewhereExecutor(Executor):
    """Runs the tiles one after the other here, but is not one of the executors the runner knows to be
    local: the run writes tile files and assembles them, as on a Dask cluster."""

    def run(self, fn, tasks):
        for args in tasks:
            yield fn(*args)


def scenes(folder: Path, shape, bands: int, dtype: str, nodata, n: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        data = rng.integers(1, 120, (bands,) + shape).astype(dtype)
        data[:, rng.random(shape) < 0.1] = nodata if nodata is not None and not np.isnan(nodata) else 0
        if nodata is not None and np.isnan(nodata):
            data[:, rng.random(shape) < 0.1] = np.nan
        paths.append(write_raster(folder / f"s{i}.tif", data, nodata=nodata))
    return paths


def run_both(paths, folder: Path, tile_size: int, **options):
    """The same composite in place (2 workers) and through tile files; ``(in place, tile files)`` outputs."""
    folder.mkdir(exist_ok=True)
    logs = {}
    outs = []
    for name, executor in (("inplace", None), ("tiles", ElsewhereExecutor())):
        out = folder / f"{name}.tif"
        log = logs.setdefault(name, [])
        composite(paths, str(out), "max", tile_size=tile_size, compression="NONE", overviews=False,
                  executor=executor, workers=2 if executor is None else None, log=log.append, **options)
        assert leftovers(out) == [str(out)]
        outs.append(out)
    assert "Putting the Cloud-Optimized GeoTIFF in place" in logs["inplace"]
    assert "Assembling the Cloud-Optimized GeoTIFF" in logs["tiles"]
    return outs


@pytest.mark.parametrize("shape,bands,dtype,nodata,output_type,tile_size", [
    ((1100, 1300), 2, "int16", -1, "float32", 384),    # edge blocks both ways, tiles across blocks
    ((1100, 1300), 1, "uint8", 0, "uint8", 512),       # tiles = blocks, one byte per pixel
    ((512, 1024), 3, "int16", -9999, "int16", 256),    # whole blocks only, three bands
    ((200, 300), 1, "float32", float("nan"), "float32", 64),   # smaller than one block
    ((700, 530), 2, "uint8", None, "uint8", 100),      # no input nodata; tile edges inside the blocks
    ((600, 515), 1, "uint16", 65535, "int16", 516),    # a tile wider than a block, a 3-pixel edge block
])
def test_in_place_is_the_tile_files_output_byte_for_byte(tmp_path, shape, bands, dtype, nodata, output_type,
                                                         tile_size):
    paths = scenes(tmp_path, shape, bands, dtype, nodata)
    inplace, tiles = run_both(paths, tmp_path / "out", tile_size, output_type=output_type)
    assert inplace.read_bytes() == tiles.read_bytes()
    with rasterio.open(inplace) as src:
        assert (src.count, src.dtypes[0], src.block_shapes[0], src.overviews(1)) == (bands, output_type,
                                                                                     (512, 512), [])
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        data = src.read()
        valid = data != src.nodata if not np.isnan(src.nodata) else ~np.isnan(data)
    stack = []
    for p in paths:
        with rasterio.open(p) as s:
            a = s.read().astype("float64")
            if s.nodata is not None:
                a[a == s.nodata] = np.nan
            stack.append(a)
    expected = np.max(np.stack(stack), axis=0)            # NaN where any scene is nodata: those are not checked
    checked = valid & ~np.isnan(expected)
    assert checked.sum() > 0.5 * data.size
    np.testing.assert_array_equal(data[checked], expected[checked].astype(output_type))


def test_a_tile_size_off_the_4_pixel_grid_keeps_tile_files(tmp_path):
    """The block trailer repeats a block's last 4 bytes, which one tile must hold: tiles of 130 pixels
    go through tile files, and the output is the same."""
    paths = scenes(tmp_path, (300, 400), 1, "uint8", 0)
    outs, logs = [], []
    for size in (130, 128):
        out = tmp_path / f"out{size}.tif"
        composite(paths, str(out), "max", tile_size=size, workers=1, compression="NONE", overviews=False,
                  output_type="uint8", log=logs.append)
        outs.append(out)
    assert logs.count("Assembling the Cloud-Optimized GeoTIFF") == 1
    assert logs.count("Putting the Cloud-Optimized GeoTIFF in place") == 1
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_compressed_outputs_keep_tile_files(tmp_path):
    paths = scenes(tmp_path, (300, 400), 1, "uint8", 0)
    logs = []
    composite(paths, str(tmp_path / "a.tif"), "max", tile_size=128, workers=1, log=logs.append)
    composite(paths, str(tmp_path / "b.tif"), "max", tile_size=128, workers=1, compression="ZSTD", overviews=False,
              log=logs.append)
    assert logs.count("Assembling the Cloud-Optimized GeoTIFF") == 2 and not any("in place" in m for m in logs)


@pytest.mark.parametrize("shape,output_type,resampling,tile_size,in_place", [
    ((1536, 2048), "float32", "average", 1024, True),    # the workers build level 1, GDAL level 2 from it
    ((1024, 1024), "float32", "average", 1024, True),    # the workers build the only level
    ((2048, 4096), "float32", "nearest", 2048, True),    # levels 1 and 2 by the workers, 3 by GDAL
    ((1536, 2048), "uint8", "nearest", 1024, True),
    ((1030, 1500), "float32", "average", 512, False),    # no level for the workers: tile files, GDAL's levels
    ((300, 400), "int16", "average", 128, True),         # one block: no overview level at all
])
def test_in_place_with_overviews_is_the_tile_files_output(tmp_path, shape, output_type, resampling, tile_size,
                                                          in_place):
    rng = np.random.default_rng(5)
    data = (rng.random((2,) + shape) * 200).astype("float32")
    data[:, rng.random(shape) < 0.2] = -9999
    path = write_raster(tmp_path / "in.tif", data, nodata=-9999)
    outs = []
    for name, executor in (("inplace", None), ("tiles", ElsewhereExecutor())):
        logs = []
        out = tmp_path / f"{name}.tif"
        report = composite([path], str(out), "max", tile_size=tile_size, compression="NONE", output_type=output_type,
                           overview_resampling=resampling, executor=executor,
                           workers=2 if executor is None else None, log=logs.append)
        assert ("Putting the Cloud-Optimized GeoTIFF in place" in logs) == (in_place and executor is None), logs
        assert leftovers(out) == [str(out)]
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    with rasterio.open(outs[0]) as src:
        expected = len(overview_sizes(shape[1], shape[0]))
        assert len(src.overviews(1)) == expected
        if expected and in_place:   # the tile route's report (the last) counts the workers' levels apart too
            assert report.phases.get("overviews", 0) > 0
            level = src.read(out_shape=(2, shape[0] // 2, shape[1] // 2))
            assert (level != src.nodata).mean() > 0.5              # the levels hold pixels, not holes


def test_one_file_per_scene_in_place(tmp_path):
    """Several outputs of one run (one COG per scene), each taking its band of every tile."""
    rng = np.random.default_rng(4)
    shape = (600, 700)
    files = [write_raster(tmp_path / f"scene{i}.tif", rng.integers(1, 3000, (4,) + shape).astype("uint16"), nodata=0)
             for i in range(3)]
    roles = [{"RED": (f, 3), "NIR": (f, 4)} for f in files]
    outs = {}
    for name, executor in (("inplace", None), ("tiles", ElsewhereExecutor())):
        logs = []
        index(roles, "ndvi", str(tmp_path / name), per_scene=True, tile_size=256, compression="NONE",
              overviews=False, executor=executor, workers=2 if executor is None else None, log=logs.append)
        assert any("in place" in m for m in logs) == (executor is None), logs
        outs[name] = sorted((tmp_path / name).glob("*.tif"))
    assert [p.name for p in outs["inplace"]] == [p.name for p in outs["tiles"]] and len(outs["inplace"]) == 3
    for a, b in zip(outs["inplace"], outs["tiles"]):
        assert a.read_bytes() == b.read_bytes()
    with rasterio.open(outs["inplace"][1]) as src:
        red, nir = rasterio.open(files[1]).read([3, 4]).astype("float64")
        np.testing.assert_allclose(src.read(1), ((nir - red) / (nir + red)).astype("float32"), rtol=1e-6)


# -- a failed run, resumed -----------------------------------------------------------------------------------

def fail_on_tile_five(job, tile, target):
    if tile.index == 5:
        raise TileError(f"{tile.name}: reading {job.inputs[0]} failed: connection reset")
    return composite_tile(job, tile, target)


@pytest.fixture
def failed(tmp_path):
    """A median run in place, with resume, that failed at tile 5 of 20 (tiles 0-4 finished, serially)."""
    paths = scenes(tmp_path, (100, 130), 1, "int16", -9999, n=3)
    own, shared = split_options(dict(compression="NONE", overviews=False), CompositeOptions, statistic="median")
    job = plan_composite(paths, str(tmp_path / "out.tif"), own, shared)
    with pytest.raises(TileError, match="tile 5"):
        run_tiles(job, fail_on_tile_five, RunOptions(tile_size=32, executor=SerialExecutor(), resume=True))
    return job, paths


def test_a_failed_run_leaves_no_output_and_its_finished_tiles_in_the_partial_file(failed):
    job, _ = failed
    out = job.output.path
    assert not os.path.exists(out) and leftovers(out) == [workdir_for(out)]
    assert journal(out) == [f"inplace0_{r:07d}_{c:07d}" for r, c in [(0, 0), (0, 32), (0, 64), (0, 96), (0, 128)]]
    partial = os.path.join(workdir_for(out), "output_0.tif")
    layouts = open_layout(partial, OutputSpec(out, "float32", -9999.0, "NONE", overviews=False))
    assert [(l.width, l.height) for l in layouts] == [(130, 100)] and os.path.getsize(partial) == layouts[0].end
    assert not [n for n in os.listdir(workdir_for(out)) if n.startswith("tile_")]    # no tile files


def test_resume_continues_in_the_partial_file(failed, tmp_path):
    job, paths = failed
    out = job.output.path
    partial = os.path.join(workdir_for(out), "output_0.tif")
    inode = os.stat(partial).st_ino
    logs = []
    report = run_tiles(job, composite_tile, RunOptions(executor=SerialExecutor(), resume=True, keep_workdir=True,
                                                       log=logs.append))
    assert (report.tiles, report.reused) == (20, 5)
    assert "Resuming: 5 of 20 tiles were already finished and are reused; 15 to compute" in logs
    assert os.stat(out).st_ino == inode                                  # the same file, renamed
    fresh = tmp_path / "fresh.tif"
    composite(paths, str(fresh), "median", tile_size=32, workers=2, compression="NONE", overviews=False)
    assert Path(out).read_bytes() == fresh.read_bytes()


def test_resume_without_the_partial_file_recomputes_every_tile(failed, tmp_path):
    job, paths = failed
    out = job.output.path
    os.remove(os.path.join(workdir_for(out), "output_0.tif"))
    report = run_tiles(job, composite_tile, RunOptions(executor=SerialExecutor(), resume=True))
    assert report.reused == 0
    assert leftovers(out) == [out]
    fresh = tmp_path / "fresh.tif"
    composite(paths, str(fresh), "median", tile_size=32, workers=1, compression="NONE", overviews=False)
    assert Path(out).read_bytes() == fresh.read_bytes()


def test_resume_with_a_damaged_partial_file_is_one_message(failed):
    job, _ = failed
    out = job.output.path
    partial = os.path.join(workdir_for(out), "output_0.tif")
    size = os.path.getsize(partial)
    with open(partial, "r+b") as f:                 # the header overwritten, the size kept
        f.write(b"\0" * 64)
    assert os.path.getsize(partial) == size
    with pytest.raises(OutputError, match=r"The partial output .*output_0.tif of the interrupted run is damaged "
                                          r".*run again without resume"):
        run_tiles(job, composite_tile, RunOptions(executor=SerialExecutor(), resume=True))
    assert not os.path.exists(out)


# -- a full disk ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_cli_full_disk_in_place_is_one_clear_message(tmp_path, resume):
    src = write_raster(tmp_path / "noise.tif", np.random.default_rng(1).random((700, 700)).astype("float32"))
    disk = tmp_path / "disk"
    disk.mkdir()
    cli = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "tilewise", "composite", "-o", "out.tif",
                                             "--tile-size", "128", "-j", "2", "--compression", "NONE",
                                             "--no-overviews", src] + (["--resume"] if resume else []))
    proc = in_small_disk(cli, disk)
    text = proc.stdout + proc.stderr
    assert "rc=2" in proc.stdout, text
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tilewise: error:")]
    assert len(errors) == 1, text
    assert re.search(rf"The disk is full: {re.escape(str(disk))} has [\d.]+ (B|KiB) free, and this run needs up to "
                     r"[\d.]+ MiB", errors[0]), errors[0]
    assert "Traceback" not in text
    left = proc.stdout.split("LEFT:")[1].split()
    assert left == ([".out.tif.tilewise-work"] if resume else []), text


# -- the layout itself ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bigtiff", ["NO", "YES"])
def test_layout_written_tile_by_tile_is_gdals_cog(tmp_path, bigtiff):
    """The layout module alone, on a classic TIFF and a BigTIFF (what outputs above 4 GB get): a file laid
    out and written tile by tile is the COG GDAL's COG driver writes from the same pixels."""
    from rasterio.shutil import copy as gdal_copy
    from tilewise.core.grid import Grid, plan_tiles
    from tilewise.core.io.cog import Placement, cog_options, write_vrt
    from tilewise.core.io.inplace import plan_layout, write_tile_in_place
    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 1100, 700)
    spec = OutputSpec(str(tmp_path / "out.tif"), "int16", -9999.0, "NONE", overviews=False)
    data = np.random.default_rng(2).integers(-500, 500, (2, 700, 1100)).astype("int16")
    source = write_raster(tmp_path / "source.tif", data, nodata=-9999)
    options = dict(cog_options(spec), BIGTIFF=bigtiff)
    reference = tmp_path / "reference.tif"               # as the tile route makes it: a VRT of the pixels
    full = write_vrt(str(tmp_path / "full.vrt"), grid, spec, ["a", "b"], [Placement(source, 0, 0, 700, 1100)])
    gdal_copy(full, str(reference), driver="COG", **options)
    vrt = write_vrt(str(tmp_path / "empty.vrt"), grid, spec, ["a", "b"], [])
    (layout,) = plan_layout(vrt, str(tmp_path / "inplace.tif"), spec, options)
    for tile in plan_tiles(grid, 200):
        write_tile_in_place(layout, tile, data[:, tile.row_off:tile.row_off + tile.height,
                                               tile.col_off:tile.col_off + tile.width])
    written = (tmp_path / "inplace.tif").read_bytes()
    assert written[2:4] == (b"+\0" if bigtiff == "YES" else b"*\0")
    with rasterio.open(reference) as ref, rasterio.open(tmp_path / "inplace.tif") as got:
        np.testing.assert_array_equal(got.read(), ref.read())
    assert written == reference.read_bytes()

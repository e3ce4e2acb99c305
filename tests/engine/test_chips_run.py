"""Image chips on the tile runner: the task plan reads each window once, in rectangles bounded by the tile
size; Dask and the local pool write the same files; an interrupted run resumes; a VRT input works as its
file; the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely

from tilewise.core import chips
from tilewise.core.errors import TileError
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.chips.run import ChipsOptions, chips_tile, plan_chips_job
from tilewise.core.options import Options, RunOptions
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.paths import workdir_for
from tilewise.core.runtime.runner import run_tiles

from support import UTM_CRS, subprocess_env, write_raster

H, W = 120, 150
X0, Y0 = 500_000.0, 5_000_000.0


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips_run")
    rng = np.random.default_rng(5)
    paths = []
    for day in ["2023-04-01", "2023-04-11", "2023-04-21", "2023-05-01"]:
        data = rng.integers(0, 10000, (2, H, W)).astype(np.uint16)
        paths.append(write_raster(folder / f"b_{day}.tif", data, nodata=0))
    return paths


@pytest.fixture(scope="module")
def zones():
    rng = np.random.default_rng(11)
    xs, ys = X0 + rng.uniform(-30, W * 10 + 30, 60), Y0 - rng.uniform(-30, H * 10 + 30, 60)
    geoms = [shapely.Point(x, y) for x, y in zip(xs, ys)]
    geoms += [shapely.box(X0 + 100, Y0 - 900, X0 + 700, Y0 - 300),
              shapely.LineString([(X0, Y0), (X0 + 1400, Y0 - 1100)])]
    return zones_from_geometries(geoms, UTM_CRS, ids=[f"f{i:02d}" for i in range(len(geoms))])


def contents(folder) -> dict:
    return {name: (Path(folder) / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_tasks_read_disjoint_rectangles_within_their_tiles_covering_every_chip(series, zones, tmp_path):
    job = plan_chips_job(series, zones, str(tmp_path / "out"), ChipsOptions("patch", size_x=9, size_y=7),
                         Options(run=RunOptions(tile_size=32)))
    plan = job.plan
    covered = np.zeros(len(plan.windows), np.int64)
    seen = np.zeros((job.grid.height, job.grid.width), np.int64)
    for k, (r, c, h, w) in enumerate(plan.reads):
        assert 0 < h <= 32 and 0 < w <= 32 and r // 32 == (r + h - 1) // 32 and c // 32 == (c + w - 1) // 32
        seen[r:r + h, c:c + w] += 1
        for z in plan.of_task(k):
            zr, zc, zh, zw = plan.windows[z]
            rows = min(zr + zh, r + h) - max(zr, r)
            cols = min(zc + zw, c + w) - max(zc, c)
            assert rows > 0 and cols > 0
            covered[z] += rows * cols
    assert seen.max() == 1                                             # each pixel read by one task only
    kept = plan.windows[:, 2] > 0
    np.testing.assert_array_equal(covered[kept], 7 * 9)               # the pieces make up every chip
    assert np.count_nonzero(plan.parts > 1) > 3                        # some chips span tiles
    assert job.budget.layers == 4 * 2 + 1                              # memory: tile x dates x bands


def test_dask_and_the_local_pool_write_the_same_files(series, zones, tmp_path):
    from distributed import Client, LocalCluster
    chips(series, zones, str(tmp_path / "local"), "patch", size_x=8, size_y=8, tile_size=32, workers=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        report = chips(series, zones, str(tmp_path / "dask"), "patch", size_x=8, size_y=8, tile_size=32,
                       scheduler=client)
    assert report.workers == 2 and report.rows == len(zones)
    assert contents(tmp_path / "dask") == contents(tmp_path / "local")


def fail_on_task_three(job, tile, target):
    if tile.index == 3:
        raise TileError(f"{tile.name}: reading {job.inputs[1]} failed: connection reset")
    return chips_tile(job, tile, target)


def test_an_interrupted_run_resumes_and_writes_what_an_uninterrupted_one_does(series, zones, tmp_path):
    out = str(tmp_path / "out")
    own = ChipsOptions("box", buffer=25)
    job = plan_chips_job(series, zones, out, own, Options(run=RunOptions(tile_size=32)))
    with pytest.raises(TileError, match="tile 3"):
        run_tiles(job, fail_on_task_three, RunOptions(executor=SerialExecutor(), resume=True))
    assert not os.path.exists(out) and os.path.isdir(workdir_for(out))
    logs = []
    report = chips(series, zones, out, "box", buffer=25, tile_size=32, workers=1, resume=True, log=logs.append)
    assert report.reused == 3 and any("Resuming: 3 of" in m for m in logs), logs
    chips(series, zones, str(tmp_path / "fresh"), "box", buffer=25, tile_size=32, workers=1)
    assert contents(out) == contents(tmp_path / "fresh")
    assert not os.path.exists(workdir_for(out))


def test_a_vrt_input_gives_the_chips_of_its_file(series, zones, tmp_path):
    vrts = []
    for p in series:
        vrt = tmp_path / (Path(p).stem + ".vrt")
        subprocess.run(["gdalbuildvrt", "-q", str(vrt), p], check=True)
        vrts.append(str(vrt))
    chips(series, zones, str(tmp_path / "tif"), "patch", size_x=5, size_y=5, bands=[2], workers=1)
    chips(vrts, zones, str(tmp_path / "vrt"), "patch", size_x=5, size_y=5, bands=[2], workers=1)
    assert contents(tmp_path / "vrt") == contents(tmp_path / "tif")


def test_the_command_line(series, tmp_path):
    from pyogrio.raw import write
    points = tmp_path / "points.gpkg"
    geoms = np.array([shapely.Point(X0 + 55, Y0 - 45), shapely.Point(X0 + 555, Y0 - 645)], dtype=object)
    write(str(points), shapely.to_wkb(geoms), geometry_type="Point", field_data=[np.array(["p/1", "p/2"], object)],
          fields=["pid"], crs=UTM_CRS)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "tilewise", "chips", *map(str, args)], cwd=tmp_path,
                              env=subprocess_env(), capture_output=True, text=True, timeout=300)
    done = cli("-z", points, "--id-field", "pid", "--mode", "patch", "--size", "4", "3", "-q", "-o", "out",
               str(Path(series[0]).parent / "b_*.tif"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("out: 2 chips, ")
    assert sorted(os.listdir(tmp_path / "out")) == [".tilewise-chips.json", "p_1.nc", "p_2.nc"]
    bad = cli("-z", points, "--id-field", "plot", "-o", "out2", *series)
    assert bad.returncode == 2 and "has no field 'plot'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("tile_size", [8, 256])
def test_an_input_on_another_grid_is_resampled_onto_the_chips_grid(series, zones, tmp_path, tile_size):
    """The second input at 25 m off the first's lattice (same CRS: an affine warp, so exactly
    rasterio.warp.reproject's nearest neighbour onto each chip's own grid)."""
    import rasterio
    from rasterio.warp import Resampling, reproject
    rng = np.random.default_rng(9)
    coarse = rng.integers(1, 10000, (2, 50, 62)).astype(np.uint16)
    transform = rasterio.Affine(25.0, 0.0, X0 - 7.0, 0.0, -25.0, Y0 + 3.0)
    other = write_raster(tmp_path / "c_2023-04-05.tif", coarse, transform=transform, nodata=0)
    report = chips([series[0], other], zones, str(tmp_path / "out"), "patch", size_x=7, size_y=5, bands=[2],
                   tile_size=tile_size, workers=1)
    import xarray as xr
    checked = 0
    for path in report.outputs:
        with xr.open_dataset(path) as ds:
            got = ds["band_2"].values[1]
            chip_transform = rasterio.Affine(10.0, 0.0, float(ds.x[0]) - 5, 0.0, -10.0, float(ds.y[0]) + 5)
        want = np.zeros((5, 7), np.uint16)
        reproject(coarse[1], want, src_transform=transform, src_crs=UTM_CRS, dst_transform=chip_transform,
                  dst_crs=UTM_CRS, resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        np.testing.assert_array_equal(got, np.where(want == 0, np.nan, want.astype(np.float32)), err_msg=path)
        checked += np.count_nonzero(want)
    assert checked > 1000


def test_tasks_on_a_tiled_input_decode_each_block_once(tmp_path):
    """With the tile size left to the engine, the tasks' tiles lie on the input's blocks (the working grid's
    corner on a block's corner, the tile a multiple of the block): no block is read by two tasks; the files
    are those of tiles that cut across the blocks."""
    rng = np.random.default_rng(8)
    paths = [write_raster(tmp_path / f"t_{day}.tif", rng.integers(1, 10000, (2, 300, 340)).astype(np.uint16),
                          nodata=0, tiled=True, blockxsize=64, blockysize=64) for day in ("2023-04-01", "2023-04-11")]
    xs, ys = X0 + 10 * rng.uniform(-10, 350, 150), Y0 - 10 * rng.uniform(-10, 310, 150)
    points = zones_from_geometries([shapely.Point(x, y) for x, y in zip(xs, ys)], UTM_CRS,
                                   ids=[f"p{i}" for i in range(150)])
    job = plan_chips_job(paths, points, str(tmp_path / "out"), ChipsOptions("patch", size_x=9, size_y=9), Options())
    assert job.planned_tile_size % 64 == 0
    a, _, c, _, e, f = job.grid.transform
    row0, col0 = round((f - Y0) / e), round((c - X0) / a)             # the working grid's corner in the input
    assert row0 % 64 == 0 and col0 % 64 == 0
    owner: dict = {}
    for k, (r, cc, h, w) in enumerate(job.plan.reads):
        for br in range((row0 + r) // 64, (row0 + r + h - 1) // 64 + 1):
            for bc in range((col0 + cc) // 64, (col0 + cc + w - 1) // 64 + 1):
                assert owner.setdefault((br, bc), k) == k                # each block read by one task
    assert len(set(owner.values())) > 1
    chips(paths, points, str(tmp_path / "aligned"), "patch", size_x=9, size_y=9, workers=1)
    chips(paths, points, str(tmp_path / "across"), "patch", size_x=9, size_y=9, tile_size=40, workers=1)
    assert contents(tmp_path / "aligned") == contents(tmp_path / "across")

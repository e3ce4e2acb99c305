"""The ``extract`` operation through the tile runner: ``tilewise.core.extract``, ``tilewise extract``, the driver
and Dask. Tables written through the runner (local pool, serial, Dask, resumed) must equal the in-process
extraction (checked against whole-raster references in test_extract_zonal.py) for every tile size and worker
count; points equal a direct pixel lookup; masks drop what they name; nulls stay nulls in every format."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import shapely

import tilewise.core as core
from tilewise.core.errors import MaskError, OutputError, ParameterError, TileError
from tilewise.core.operations.extract import ExtractSpec, extract_stats, zones_from_geometries
from tilewise.core.operations.extract.run import ExtractOptions, extract_job_tile, plan_extract_job
from tilewise.core.options import RunOptions
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.paths import workdir_for
from tilewise.core.runtime.runner import run_tiles

from extract_reference import apply, random_polygons
from support import UTM_CRS, UTM_TRANSFORM, leftovers, subprocess_env, write_raster

SHAPE = (70, 90)
STATS = ["mean", "median", "min", "max", "std", "count", "sum", "percentiles"]
PERCENTILES = [10, 90]
NAMES = ["S2_2020-05-03", "S2_20200412", "S2_2020_06_01"]
ORDER = [1, 0, 2]                                   # the date order of NAMES


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three 2-band uint16 scenes (nodata 0, a cloud block in the second) with the date in their names;
    band 3 is a Sentinel-2 SCL-like QA band (class 9: cloud)."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(3)
    paths = []
    for i, name in enumerate(NAMES):
        a = rng.integers(1, 2000, (3, *SHAPE)).astype(np.uint16)
        a[:2][rng.random((2, *SHAPE)) < 0.1] = 0
        a[2] = 4
        a[2, 10:30, 20:50] = 9
        if i == 1:
            a[:2, 40:60, 5:40] = 0
        paths.append(write_raster(folder / f"{name}.tif", a, nodata=0))
    return paths


def extent():
    (x0, x1), (y0, y1) = apply(UTM_TRANSFORM, [0, SHAPE[1]], [0, SHAPE[0]])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """A GeoPackage of polygons: random shapes (holed, multi-part, smaller than a pixel, across the edges),
    one outside every raster; a text id ``pid``."""
    rng = np.random.default_rng(8)
    x0, y0, x1, y1 = extent()
    geoms = random_polygons(rng, 40, (x0 - 60, y0 - 60, x1 + 60, y1 + 60)) + [
        shapely.box(x1 + 500, y1 + 500, x1 + 700, y1 + 700),
        shapely.box(x0 + 201, y0 + 202, x0 + 204, y0 + 206)]
    geoms = [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in geoms]
    path = tmp_path_factory.mktemp("zones") / "fields.gpkg"
    pids = np.array([f"f{i:03d}" for i in range(len(geoms))], dtype=object)
    pyogrio.raw.write(str(path), shapely.to_wkb(geoms), [pids], ["pid"], crs=UTM_CRS,
                      geometry_type="MultiPolygon", driver="GPKG")
    return str(path)


def read_table(path) -> dict:
    """Columns of a written table (Parquet or GeoPackage) as numpy arrays, nulls as NaN / None."""
    if str(path).endswith(".parquet"):
        t = pq.read_table(path)
        return {n: np.array(t.column(n).to_pylist(), dtype=object) for n in t.column_names}
    _, _, _, fields_ = pyogrio.raw.read(str(path))[:4]
    info = pyogrio.read_info(str(path))
    return {n: np.asarray(v) for n, v in zip(info["fields"], fields_)}


def same_table(a: dict, b: dict, loose=("std",)) -> None:
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        if name in loose:          # Chan's merge of partial variances: the order of tiles shows in the last bits
            xf, yf = (np.array([np.nan if v is None else v for v in c], float) for c in (x, y))
            np.testing.assert_allclose(xf, yf, rtol=1e-12, err_msg=name)
        else:
            assert x.tolist() == y.tolist(), name


@pytest.fixture(scope="module")
def reference(scenes, fields, tmp_path_factory):
    """The in-process extraction's long table, written to Parquet."""
    out = tmp_path_factory.mktemp("ref") / "ref.parquet"
    spec = ExtractSpec(STATS, percentiles=PERCENTILES)
    extract_stats(scenes, fields, spec, id_field="pid", bands=[1, 2], tile_size=2048).write(str(out), "long")
    return read_table(out)


@pytest.mark.parametrize("tile_size,workers", [(8, 1), (16, 2), (29, 2), (1024, 1)])
def test_through_the_runner_equals_the_in_process_extraction(scenes, fields, reference, tmp_path, tile_size, workers):
    out = tmp_path / "ts.parquet"
    report = core.extract(scenes, fields, str(out), STATS, percentiles=PERCENTILES, id_field="pid", bands=[1, 2],
                          tile_size=tile_size, workers=workers)
    table = read_table(out)
    same_table(table, reference)
    assert report.rows == 42 * 3 * 2 and report.outputs == (str(out),)
    assert report.workers == (workers if report.tiles > 1 else 1)
    if tile_size == 8:
        assert report.tiles > 50                    # features really span tiles
    assert table["date"][:6].tolist() == [dt.date(2020, 4, 12)] * 2 + [dt.date(2020, 5, 3)] * 2 + \
        [dt.date(2020, 6, 1)] * 2                   # dates from the file names, rows in date order
    outside = table["pid"] == "f040"
    assert all(v is None for v in table["mean"][outside]) and set(table["n_valid"][outside]) == {0}
    assert set(table["count"][outside]) == {0.0}    # nulls, never a sentinel; count and n_valid say why
    assert leftovers(out) == [str(out)]


def test_points_nearest_is_the_pixel_under_each_point(scenes, tmp_path):
    rng = np.random.default_rng(2)
    rows, cols = rng.integers(0, SHAPE[0], 300), rng.integers(0, SHAPE[1], 300)
    xs, ys = apply(UTM_TRANSFORM, cols + rng.uniform(0.01, 0.99, 300), rows + rng.uniform(0.01, 0.99, 300))
    zones = zones_from_geometries(shapely.points(xs, ys), UTM_CRS)
    out = tmp_path / "points.parquet"
    core.extract(scenes, zones, str(out), bands=[2], layout="wide", tile_size=16, workers=2)
    table = read_table(out)
    for r, name in enumerate(NAMES):
        with rasterio.open(scenes[r]) as src:
            band = src.read(2)
        want = [None if v == 0 else float(v) for v in band[rows, cols]]
        key = {"S2_2020-05-03": "d20200503", "S2_20200412": "d20200412", "S2_2020_06_01": "d20200601"}[name]
        assert table[f"{key}_b2_value"].tolist() == want, name


@pytest.mark.parametrize("how", [{"mask_values": "9"}, {"mask_preset": "s2-scl"}, {"mask_preset": 1}],
                         ids=["values", "preset", "preset index"])
def test_mask_band_drops_the_classes_it_names(scenes, tmp_path, how):
    """MASK_VALUES 9, or the Sentinel-2 SCL preset (0,1,3,8,9,10: of the scenes' classes only 9 is in it)."""
    field = shapely.box(500150, 4999650, 500550, 4999950)          # rows 5-35, cols 15-55: half under the cloud
    out = tmp_path / "masked.parquet"
    core.extract(scenes, zones_from_geometries([field], UTM_CRS), str(out), "mean,count", mask_band=3,
                 tile_size=16, workers=1, **how)
    table = read_table(out)
    rows, cols = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    inside = (rows >= 5) & (rows < 35) & (cols >= 15) & (cols < 55)
    got = iter(zip(table["band"], table["mean"], table["n_valid"]))
    for r in ORDER:
        with rasterio.open(scenes[r]) as src:
            a = src.read()
        keep = inside & (a[2] != 9)
        for b in (1, 2):
            sel = keep & (a[b - 1] != 0)
            band, mean, n = next(got)
            assert (band, n) == (b, int(sel.sum()))
            assert mean == pytest.approx(a[b - 1][sel].astype(float).mean(), rel=1e-12)


def test_mask_needs_values_and_one_source(scenes, fields, tmp_path):
    with pytest.raises(MaskError, match="no mask values"):
        core.extract(scenes, fields, str(tmp_path / "a.csv"), mask_band=3)
    with pytest.raises(MaskError, match="not both"):
        core.extract(scenes, fields, str(tmp_path / "a.csv"), mask_band=3, mask_layers=scenes, mask_values=[9])
    with pytest.raises(MaskError, match="2 mask layers were given for 3 rasters"):
        core.extract(scenes, fields, str(tmp_path / "a.csv"), mask_layers=scenes[:2], mask_values=[9])


def test_parameters_are_checked_before_anything_runs(scenes, fields, tmp_path):
    with pytest.raises(OutputError, match="HTML page"):
        core.extract(scenes, fields, str(tmp_path / "a.csv"), output_plot=str(tmp_path / "p.png"))
    with pytest.raises(OutputError, match="also an input"):
        core.extract(scenes, fields, fields)
    with pytest.raises(ParameterError, match="no target grid"):
        core.extract(scenes, fields, str(tmp_path / "a.csv"), cell_size=20)
    with pytest.raises(ParameterError, match="Unknown layout"):
        core.extract(scenes, fields, str(tmp_path / "a.csv"), layout="tall")
    assert os.listdir(tmp_path) == []


def test_wide_gpkg_with_a_plot_and_dates_from_metadata(tmp_path, fields):
    """A raster without a date in its name gets TIFFTAG_DATETIME's; the wide layout keeps the features'
    geometry and fields; the plot is written beside."""
    a = np.arange(SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    path = write_raster(tmp_path / "scene.tif", a, nodata=-1.0)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2021:07:14 10:20:30")
    out, plot = tmp_path / "wide.gpkg", tmp_path / "series.html"
    report = core.extract([path], fields, str(out), "mean", id_field="pid", layout=0, output_plot=str(plot),
                          tile_size=32)
    assert report.outputs == (str(out), str(plot))
    info = pyogrio.read_info(str(out))
    assert list(info["fields"]) == ["pid", "d20210714_b1_mean", "d20210714_b1_n_valid"] and info["features"] == 42
    assert info["geometry_type"] == "MultiPolygon"
    assert "f000" in plot.read_text()


def fail_on_tile(index):
    def tile_fn(job, tile, target):
        if tile.index == index:
            raise TileError(f"{tile.name}: reading failed: connection reset")
        return extract_job_tile(job, tile, target)
    return tile_fn


def test_a_failed_run_resumed_reuses_the_finished_tiles(scenes, fields, reference, tmp_path):
    out = tmp_path / "ts.parquet"
    own = ExtractOptions(STATS, PERCENTILES, id_field="pid", bands=(1, 2))
    job = plan_extract_job(scenes, fields, str(out), own, 16)
    with pytest.raises(TileError, match="connection reset"):
        run_tiles(job, fail_on_tile(7), RunOptions(executor=SerialExecutor(), resume=True))
    parts = sorted(p.name for p in Path(workdir_for(str(out))).glob("part_*.npz"))
    assert parts == [f"part_{i:07d}.npz" for i in range(7)] and not out.exists()

    messages = []
    report = core.extract(scenes, fields, str(out), STATS, percentiles=PERCENTILES, id_field="pid", bands=[1, 2],
                          tile_size=16, workers=2, resume=True, log=messages.append)

    assert report.reused == 7 and report.tiles == job.tiles(16)[-1].index + 1
    assert any("7 of" in m and "reused" in m for m in messages), messages
    same_table(read_table(out), reference)
    assert leftovers(out) == [str(out)]


def test_resume_with_other_zones_starts_afresh(scenes, fields, tmp_path):
    out = tmp_path / "ts.csv"
    job = plan_extract_job(scenes, fields, str(out), ExtractOptions(), 16)
    with pytest.raises(TileError):
        run_tiles(job, fail_on_tile(3), RunOptions(executor=SerialExecutor(), resume=True))
    other = zones_from_geometries([shapely.box(500100, 4999500, 500400, 4999800)], UTM_CRS)
    messages = []
    report = core.extract(scenes, other, str(out), tile_size=16, resume=True, log=messages.append)
    assert report.reused == 0 and any("belongs to another job" in m for m in messages), messages


def tilewise_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


def test_cli_line_of_the_issue_gives_the_api_table(scenes, fields, tmp_path):
    folder = Path(scenes[0]).parent
    proc = tilewise_cli("extract", "-z", fields, "--id-field", "pid", "--stats", "mean,count", "--coverage", "centre",
                        "--layout", "long", "--bands", "1,2", "-o", "ts.parquet", "-j", "2", "--tile-size", "16",
                        f"{folder}/*.tif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\S*ts\.parquet: 252 rows, \d+ tiles on 2 workers in [\d.]+ s\n", proc.stdout), proc.stdout
    core.extract(scenes, fields, str(tmp_path / "api.parquet"), "mean,count", id_field="pid", bands=[1, 2])
    same_table(read_table(tmp_path / "ts.parquet"), read_table(tmp_path / "api.parquet"))


def test_cli_error_is_one_line(scenes, tmp_path):
    proc = tilewise_cli("extract", "-z", str(tmp_path / "none.gpkg"), "-o", "ts.csv", *scenes, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("tilewise: error: ") and proc.stderr.count("\n") == 1, \
        proc.stderr


def test_driver_runs_the_extract_operation(scenes, fields, tmp_path):
    job = tmp_path / "job.json"
    out = tmp_path / "ts.csv"
    job.write_text(json.dumps({"operation": "extract", "params": {
        "inputs": scenes, "zones": fields, "output": str(out), "statistics": [0, 5], "id_field": "pid",
        "bands": [1], "tile_size": 32, "workers": 2}}))
    proc = subprocess.run([sys.executable, "-m", "tilewise.core.runtime.driver", str(job)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    assert events[-1]["event"] == "done" and events[-1]["report"]["rows"] == 42 * 3
    assert any(e["event"] == "progress" for e in events)
    header = out.read_text().splitlines()[0]
    assert header == '"pid","source","date","band","mean","count","n_valid"'


def test_dask_cluster_gives_the_local_table(dask_cluster, scenes, fields, reference, tmp_path):
    dask_cluster.ensure_workers()
    out = tmp_path / "dask.parquet"
    report = core.extract(scenes, fields, str(out), STATS, percentiles=PERCENTILES, id_field="pid", bands=[1, 2],
                          tile_size=16, scheduler=dask_cluster.address)
    assert report.tiles > 10
    same_table(read_table(out), reference)
    assert leftovers(out) == [str(out)]


def test_other_crs_and_two_grids_in_one_run(tmp_path):
    """Zones in WGS 84 over a UTM 33 and a UTM 32 raster of the same place: each raster's values."""
    from rasterio.warp import transform as warp
    a = np.arange(400, dtype=np.float32).reshape(20, 20)
    p33 = write_raster(tmp_path / "u33_2020-01-01.tif", a)
    x, y = 500_000 + 10 * np.array([3.5, 12.5]), 5_000_000 - 10 * np.array([4.5, 15.5])
    lon, lat = warp(UTM_CRS, "EPSG:4326", x.tolist(), y.tolist())
    x32, y32 = warp("EPSG:4326", "EPSG:32632", lon, lat)
    from affine import Affine
    t32 = Affine(10, 0, math.floor(min(x32) / 10) * 10 - 50, 0, -10, math.ceil(max(y32) / 10) * 10 + 50)
    p32 = write_raster(tmp_path / "u32_2020-01-02.tif", a * 2, crs="EPSG:32632", transform=t32)
    out = tmp_path / "pts.csv"
    core.extract([p33, p32], zones_from_geometries(shapely.points(lon, lat), "EPSG:4326"), str(out), tile_size=8)
    values = [float(line.split(",")[-1]) for line in out.read_text().splitlines()[1:]]
    col32, row32 = ~t32 * (np.array(x32), np.array(y32))
    want32 = [2 * a[int(r), int(c)] for r, c in zip(row32, col32)]
    assert values == [a[4, 3], want32[0], a[15, 12], want32[1]]


def test_zones_crs_replaces_a_missing_one(scenes, tmp_path):
    """A shapefile without .prj in WGS 84 (QGIS lets the user set its CRS): zones_crs says what it is."""
    from rasterio.warp import transform as warp
    cols, rows = np.array([3, 40, 77]), np.array([5, 33, 61])
    xs, ys = apply(UTM_TRANSFORM, cols + 0.5, rows + 0.5)
    lon, lat = warp(UTM_CRS, "EPSG:4326", xs.tolist(), ys.tolist())
    path = tmp_path / "stations.shp"
    pyogrio.raw.write(str(path), shapely.to_wkb(shapely.points(lon, lat)), [np.arange(3)], ["k"],
                      geometry_type="Point", driver="ESRI Shapefile")
    assert pyogrio.read_info(str(path))["crs"] is None
    out = tmp_path / "ts.csv"
    core.extract(scenes[:1], str(path), str(out), id_field="k", bands=[1], zones_crs="EPSG:4326")
    with rasterio.open(scenes[0]) as src:
        want = [float(v) if v else "" for v in src.read(1)[rows, cols]]
    got = [line.split(",")[-1] for line in out.read_text().splitlines()[1:]]
    assert got == [str(int(v)) if v != "" else "" for v in want]
    with pytest.raises(ParameterError, match="not one GDAL knows"):
        core.extract(scenes[:1], str(path), str(out), zones_crs="EPSG:99999999")


def test_each_raster_is_opened_once_per_run_and_a_rewritten_one_anew(scenes, fields, tmp_path, monkeypatch):
    """A worker keeps a run's rasters open across its tiles (not one open per tile and raster), keyed by
    the file's size and time: a file rewritten between runs is read anew, and the run's end closes them."""
    from tilewise.core.io import sources
    from tilewise.core.operations.extract.pipeline import plan_extraction, run_plan
    plan = plan_extraction(scenes, fields, ExtractSpec(["mean"]), id_field="pid", bands=[1], tile_size=16)
    opened = []
    real_open = sources.open_raster
    monkeypatch.setattr(sources, "open_raster", lambda path: opened.append(path) or real_open(path))
    assert len(plan.tasks()) > 4
    run_plan(plan)
    assert sorted(opened) == sorted(scenes)
    path = str(tmp_path / "r.tif")
    write_raster(path, np.full((8, 8), 3, np.uint16), nodata=0)
    first = sources.open_dataset(path)
    assert sources.open_dataset(path) is first
    write_raster(path, np.full((9, 9), 5, np.uint16), nodata=0)      # same name, another size and time
    second = sources.open_dataset(path)
    assert second is not first and second.read(1).tolist() == np.full((9, 9), 5).tolist()
    sources.close_all()
    assert first.closed and second.closed


def test_kernels_are_loaded_before_the_workers_fork_except_in_kept_workers(scenes, fields, tmp_path):
    """A run that forks its workers loads the extraction's kernels in the parent first (ExtractJob.warm),
    and the forked workers have them without loading them; inside warm_workers (the warm engine's way:
    its workers are preloaded) the parent loads nothing for them."""
    script = textwrap.dedent(f"""
        from tilewise.core import extract, warm_workers
        from tilewise.core.kernels import zonal
        from tilewise.core.operations.extract.run import ExtractJob
        from tilewise.core.runtime.executor import LocalExecutor, forks_pool

        calls = []
        warm = ExtractJob.warm
        ExtractJob.warm = lambda job: calls.append(1) or warm(job)

        def overloads():
            return len(zonal._reduce_kernel.overloads)

        if __name__ == "__main__":
            assert forks_pool(2) and not forks_pool(1)
            with warm_workers(2):
                assert not forks_pool(2)
                extract({scenes!r}, {fields!r}, {str(tmp_path / 'kept.parquet')!r}, "mean,median", id_field="pid",
                        tile_size=16, workers=2)
            assert calls == [] and overloads() == 0, (calls, overloads())
            extract({scenes!r}, {fields!r}, {str(tmp_path / 'own.parquet')!r}, "mean,median", id_field="pid",
                    tile_size=16, workers=2)
            assert calls == [1] and overloads() == 1, (calls, overloads())
            with LocalExecutor(2) as ex:
                print(list(ex.run(overloads, [(), ()])))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[1, 1]"
    same_table(read_table(tmp_path / "own.parquet"), read_table(tmp_path / "kept.parquet"))


def test_the_in_process_extraction_reports_progress_as_every_operation(scenes, fields):
    """extract_stats runs its tiles through the runner's task loop: progress(done, total) before the first tile
    and after each; a progress that returns False stops it; the older progress(fraction) still works, with a
    DeprecationWarning, and gives the same statistics."""
    from tilewise.core.errors import CancelledError
    spec = ExtractSpec(["mean"])
    calls = []
    result = extract_stats(scenes, fields, spec, id_field="pid", bands=[1], tile_size=16,
                           progress=lambda done, total: calls.append((done, total)))
    total = len(result.plan.tasks())
    assert total > 4 and calls == [(i, total) for i in range(total + 1)]
    seen = []
    with pytest.raises(CancelledError, match="cancelled"):
        extract_stats(scenes, fields, spec, id_field="pid", bands=[1], tile_size=16,
                      progress=lambda done, total: seen.append(done) or done < 2)
    assert seen == [0, 1, 2]
    fractions = []
    with pytest.warns(DeprecationWarning, match=r"progress\(done, total\)"):
        old = extract_stats(scenes, fields, spec, id_field="pid", bands=[1], tile_size=16, progress=fractions.append)
    assert fractions == [i / total for i in range(total + 1)]
    np.testing.assert_array_equal(old.stats.mean, result.stats.mean)

"""What an extraction's tiles hand to the parent, and how the parent reads it: the parts' file format
(read straight into arrays, same arrays as numpy reads), parts without the arrays that are all zeros, the
same table whichever way the parts come."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

import tilewise.core as core
from tilewise.core.operations.extract import ExtractSpec, extract_stats, zones_from_geometries
from tilewise.core.kernels.zonal import PIXEL_UNREAD
from tilewise.core.operations.extract.run import ExtractOptions, plan_extract_job, unused_arrays
from tilewise.core.options import RunOptions
from tilewise.core.paths import workdir_for
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.runtime.runner import run_tiles
from tilewise.core.runtime.sinks import read_part, write_part

from support import UTM_CRS, UTM_TRANSFORM, write_raster

# some points lie outside the rasters on purpose (their values are null)
pytestmark = pytest.mark.filterwarnings("ignore:.*lie outside every raster")


def arrays():
    rng = np.random.default_rng(5)
    return {"f64": rng.random((7, 3)), "i64": rng.integers(-9, 9, (4, 5)), "bool": rng.random((6, 2)) < 0.5,
            "fortran": np.asfortranarray(rng.random((3, 4)).astype(np.float32)), "scalar": np.int64(7),
            "empty": np.zeros((0, 4)), "no_quantiles": np.zeros((5, 3, 0)), "u16": np.arange(9, dtype=np.uint16)}


def test_a_part_reads_back_as_numpy_reads_it(tmp_path):
    path = str(tmp_path / "part_0000000.npz")
    written = arrays()
    write_part(path, written)
    read = read_part(path)
    with np.load(path, allow_pickle=False) as data:
        by_numpy = {k: data[k] for k in data.files}
    assert list(read) == list(by_numpy) == list(written)
    for name, value in by_numpy.items():
        assert read[name].dtype == value.dtype and read[name].shape == value.shape, name
        assert read[name].flags.f_contiguous == value.flags.f_contiguous, name
        np.testing.assert_array_equal(read[name], value)


def test_a_compressed_part_is_read_too(tmp_path):
    path = tmp_path / "part.npz"
    np.savez_compressed(path, a=np.arange(6.0).reshape(2, 3), b=np.array([True, False]))
    read = read_part(str(path))
    np.testing.assert_array_equal(read["a"], np.arange(6.0).reshape(2, 3))
    assert read["b"].tolist() == [True, False]


def test_a_part_holding_python_objects_is_refused(tmp_path):
    path = tmp_path / "part.npz"
    np.savez(path, a=np.array(["x", None], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        read_part(str(path))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(11)
    paths = []
    for i in range(3):
        a = rng.integers(1, 3000, (1, 40, 50)).astype(np.uint16)
        a[0][rng.random((40, 50)) < 0.15] = 0
        paths.append(write_raster(folder / f"S2_2021-0{i + 1}-01.tif", a, nodata=0))
    return paths


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(4)
    x0, y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    xy = np.column_stack([x0 + rng.uniform(-20, 50 * 10 + 20, 300), y0 - rng.uniform(-20, 40 * 10 + 20, 300)])
    return zones_from_geometries(shapely.points(xy), UTM_CRS, ids=np.arange(300) + 1000, id_name="pid")


PIXEL = set(PIXEL_UNREAD)


@pytest.mark.parametrize("stats, window, left_out", [
    ("mean", 1, PIXEL), (["mean", "std"], 1, PIXEL), (["mean", "median"], 1, PIXEL),   # one pixel a point
    ("mean", 3, {"m2", "vcount"}), (["mean", "std"], 3, {"vcount"}), (["mean", "median"], 3, {"m2"})])
def test_parts_leave_out_the_arrays_the_merge_does_not_read(series, points, tmp_path, stats, window, left_out):
    out = tmp_path / "ts.parquet"
    job = plan_extract_job(series, points, str(out), ExtractOptions(stats, id_field="pid", window=window), 16)
    assert set(unused_arrays(job.plan)) == left_out
    run_tiles(job, core.operations.extract.run.extract_job_tile,
              RunOptions(executor=SerialExecutor(), keep_workdir=True))
    parts = sorted(Path(workdir_for(str(out))).glob("part_*.npz"))
    assert len(parts) == len(job.tasks) > 1
    for part in parts:
        with np.load(part) as data:
            assert left_out.isdisjoint(data.files) and {"n", "total", "quantiles"} <= set(data.files)
    # the table through the parts equals the extraction in this process, which keeps every array
    want = extract_stats(series, points, ExtractSpec(stats, window=window), tile_size=16).table("long")
    got = pq.read_table(out).to_pydict()
    assert len(got["pid"]) == len(want)
    for name, values in want.columns.items():
        if values.dtype.kind == "f":
            np.testing.assert_array_equal(np.array(got[name], dtype=float), values, err_msg=name)
        elif values.dtype.kind != "M":
            assert got[name] == values.tolist(), name


def test_the_long_table_of_points_keeps_its_rows_and_columns(series, points, tmp_path):
    result = extract_stats(series[::-1], points, ExtractSpec(["mean"]), tile_size=16)  # rasters against date order
    table = result.table("long")
    assert list(table.columns) == ["pid", "source", "date", "band", "value"]
    assert table.columns["source"][:3].tolist() == ["S2_2021-01-01", "S2_2021-02-01", "S2_2021-03-01"]
    assert table.columns["pid"][:4].tolist() == [1000, 1000, 1000, 1001]
    # value of point 1 in raster 2021-01-01 (the last raster given): the stats' column of that raster
    assert np.array_equal(table.columns["value"][3:6], result.stats.mean[1, ::-1], equal_nan=True)


def test_a_final_result_is_the_same_when_asked_again(series, points):
    from tilewise.core.operations.extract import extract_tile, plan_extraction
    spec = ExtractSpec(["mean", "min", "max", "sum", "count"], min_valid_fraction=0.5)
    plan = plan_extraction(series, points, spec, tile_size=16)
    merger = plan.merger(0)
    for g, t in plan.tasks():
        merger.add(extract_tile(plan, g, t))
    first = merger.result()
    first = {name: np.array(getattr(first, name)) for name in ("mean", "vmin", "vmax", "total", "count", "n_valid")}
    again = merger.result()
    assert np.isnan(first["mean"]).any() and not np.isnan(first["mean"]).all()
    for name, values in first.items():
        assert np.array_equal(getattr(again, name), values, equal_nan=True), name


def test_each_task_is_sent_only_its_tiles_features_and_writes_the_same_part(series, tmp_path):
    """A task's job (ExtractJob.for_tile) carries the footprints of its tile's features alone, numbered from 0;
    its part names them as the whole plan does and holds the same values. Polygons across tiles, holes, points."""
    x0, y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    rng = np.random.default_rng(8)
    geoms = [shapely.box(x0 + 10 * a, y0 - 10 * b - 120, x0 + 10 * a + 170, y0 - 10 * b)
             for a, b in rng.integers(0, 30, (12, 2))]
    geoms.append(shapely.box(x0 + 5, y0 - 395, x0 + 495, y0 - 5).difference(shapely.box(x0 + 100, y0 - 300,
                                                                                      x0 + 300, y0 - 100)))
    geoms += list(shapely.points(x0 + rng.uniform(0, 500, 40), y0 - rng.uniform(0, 400, 40)))
    zones = zones_from_geometries(np.array(geoms, dtype=object), UTM_CRS, ids=np.arange(len(geoms)), id_name="fid")
    job = plan_extract_job(series, zones, str(tmp_path / "ts.parquet"),
                           ExtractOptions(["mean", "median", "std"], id_field="fid"), 16)
    tiles = job.tiles(16)
    assert len(tiles) > 4
    whole = len(pickle.dumps(job))
    for tile in tiles:
        own = job.for_tile(tile)
        g, t = job.tasks[tile.index]
        zones_of_tile = job.plan.groups[g].assignment.of_tile(t)
        assert own.task_zones.tolist() == zones_of_tile.tolist()
        assert len(own.plan.groups[g].footprints) == len(zones_of_tile) < len(geoms)
        assert len(pickle.dumps(own)) < whole
        a, b = str(tmp_path / "whole.npz"), str(tmp_path / "own.npz")
        core.operations.extract.run.extract_job_tile(job, tile, a)
        core.operations.extract.run.extract_job_tile(own, tile, b)
        want, got = read_part(a), read_part(b)
        assert list(got) == list(want)
        kept = _kept_values(want)     # the rest of the values' buffer is never written (np.empty)
        for name in want:
            if name in ("values", "vweights"):
                np.testing.assert_array_equal(got[name][kept], want[name][kept], err_msg=name)
            else:
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _kept_values(part):
    """Where a part's kept (value, weight) pairs are: row k, layer l at vstart[k] + l * vlen[k], vcount[k, l]."""
    at = [np.arange(s + l * n, s + l * n + c) for s, n, counts in zip(part["vstart"], part["vlen"], part["vcount"])
          for l, c in enumerate(counts)]
    return np.concatenate(at).astype(np.int64) if at else np.zeros(0, np.int64)


@pytest.mark.parametrize("extension", [".parquet", ".csv", ".gpkg"])
def test_the_files_written_with_the_arrow_source_column_are_those_of_the_numpy_one(series, points, tmp_path,
                                                                                  extension):
    import pyogrio
    from tilewise.core.io.vector import write_table
    result = extract_stats(series[::-1], points, ExtractSpec(["mean"]), tile_size=16)
    plain, arrow = result.table("long"), result.table("long", arrow=True)
    assert isinstance(plain.columns["source"], np.ndarray)
    assert arrow.columns["source"].to_pylist() == plain.columns["source"].tolist()
    a = write_table(plain, str(tmp_path / f"numpy{extension}"))
    b = result.write(str(tmp_path / f"arrow{extension}"))
    if extension != ".gpkg":
        assert Path(a).read_bytes() == Path(b).read_bytes()
        return
    one, two = pyogrio.raw.read(a)[3], pyogrio.raw.read(b)[3]    # a GeoPackage records when it was written
    assert len(one) == len(two) == 5
    for x, y in zip(one, two):
        assert np.array_equal(x, y) if x.dtype == object else np.array_equal(x, y, equal_nan=True)
    assert one[1].tolist() == plain.columns["source"].tolist()


def test_tiled_strings_are_chunked_below_arrows_string_limit(monkeypatch):
    from tilewise.core.io.vector import tiled_strings
    names = ["a" * 300, "b", "ccc"]
    column = tiled_strings(names, 5_000)
    assert column.num_chunks == 1 and column.to_pylist() == names * 5_000
    long = ["x" * (1 << 20), "yy"]          # 1 MiB + 2 bytes a repeat: 1,023 repeats a chunk (under 1 GiB), the rest
    column = tiled_strings(long, 2_500)
    assert [len(c) for c in column.chunks] == [2046, 2046, 908]
    assert column[2 * 2500 - 1].as_py() == "yy" and column[4092].as_py() == long[0]
    assert len(tiled_strings(names, 0)) == 0


@pytest.mark.parametrize("stats, percentiles, min_valid", [
    (["mean"], (), 0.0), (["mean", "std", "min", "max", "sum", "count"], (), 0.0),
    (["median", "percentiles", "std"], (10, 90), 0.0), (["mean", "std"], (), 1.0)])
def test_the_pixel_merger_gives_the_zone_mergers_statistics_bit_for_bit(series, points, tmp_path, stats,
                                                                         percentiles, min_valid):
    from tilewise.core.kernels.zonal import PixelMerger, ZoneMerger
    from tilewise.core.operations.extract import extract_tile, plan_extraction
    rng = np.random.default_rng(8)
    floats = rng.normal(size=(1, 40, 50)).astype(np.float32)
    floats[0][rng.random((40, 50)) < 0.2] = np.nan                  # NaN without a nodata value
    rasters = series + [write_raster(tmp_path / "f.tif", floats)]
    empty = zones_from_geometries(np.concatenate([points.geometry, [shapely.Point()]]), UTM_CRS,
                                  ids=np.arange(301), id_name="pid")
    spec = ExtractSpec(stats, percentiles, min_valid_fraction=min_valid)
    plan = plan_extraction(rasters, empty, spec, tile_size=16, moments="std" in stats)
    group = plan.groups[0]
    assert group.pixels and len(plan.tasks()) > 4
    pixel = plan.merger(0)
    zone = ZoneMerger(len(group.footprints), plan.n_layers, group.assignment.parts, group.whole, spec.quantiles,
                      min_valid, group.bilinear, plan.moments)
    assert isinstance(pixel, PixelMerger)
    for g, t in plan.tasks():
        part = extract_tile(plan, g, t)
        assert np.array_equal(pixel.add(part), zone.add(part))
    assert pixel.pending() == zone.pending() == 0
    for merger in (pixel, zone):
        with pytest.raises(ValueError, match="added twice"):
            merger.add(part)
    for which in (None, np.array([5, 0, 300, 17])):
        want, got = zone.result(which), pixel.result(which)
        for name in ("mean", "std", "vmin", "vmax", "count", "total", "n_valid", "valid_fraction", "quantiles",
                     "valid"):
            a, b = getattr(want, name), getattr(got, name)
            assert a.shape == b.shape and a.dtype == b.dtype, name
            assert np.array_equal(a, b, equal_nan=True), name
        assert np.isnan(got.mean).any() and not np.isnan(got.mean).all()

"""The swath extraction's long table and point search at scale: the pixels near the points bucketed by
latitude/longitude cell (checked against a brute-force haversine search and the cube index), and the long
table built in chunks with dictionary-coded strings (checked equal to the whole table of Python strings,
and plain strings to every reader)."""

import csv
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

import swathdata as sd
from tilewise.core.io.vector import Table, write_chunks, write_table, zones_from_geometries
from tilewise.core.kernels.swath import build_index, build_near_index, chord_of, metres_of, nearest
from tilewise.core.operations.swath import extract as swath_extract
from tilewise.core.operations.swath.extract import SwathOptions, extract_scene, plan_swath, swath_table

pytest.importorskip("netCDF4")
# the point outside every scene is said once per table made (tested in test_swath_extract)
pytestmark = pytest.mark.filterwarnings("ignore:.*have no value in any of the:UserWarning")


def queries(lat, lon, n, spread, seed=1):
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, lat.shape[0], n), rng.integers(0, lat.shape[1] - 2, n)
    return lat[i, j] + rng.normal(0, spread, n), lon[i, j] + rng.normal(0, spread, n)


# -- the pixels near the points, by latitude/longitude cell ----------------------------------------------

@pytest.mark.parametrize("lat0, lon0, rotation, limit", [(-3.2, -60.0, 20.0, 1000.0), (52.0, 10.0, -35.0, 700.0),
                                                         (-70.0, 120.0, 80.0, 5000.0), (10.0, 170.0, 5.0, 50_000.0)])
def test_cell_index_equals_brute_force_and_the_cube_index(lat0, lon0, rotation, limit):
    lat, lon = sd.swath_geolocation(70, 50, lat0, lon0, rotation=rotation)
    lat[:, -2:] = np.nan
    lon[:, -2:] = np.nan
    qlat, qlon = queries(lat, lon, 300, 0.004)
    radius = chord_of(limit)
    index = build_near_index(lat, lon, qlat, qlon, radius)
    assert index is not None and 0 < index.size < lat.size
    got, chord = nearest(index, qlat, qlon, radius)
    want, wdist = sd.brute_nearest(lat, lon, qlat, qlon)
    inside = wdist <= limit
    assert inside.sum() > 100 and (~inside).sum() + inside.sum() == 300
    np.testing.assert_array_equal(got, np.where(inside, want, -1))
    np.testing.assert_allclose(metres_of(chord[inside]), wdist[inside], rtol=1e-6, atol=1e-3)
    # the cube index (the one near the poles and the antimeridian) gives the very same pixels and chords
    cubes = build_index(lat, lon, radius / 4, near=(qlat, qlon), radius=radius)
    same, same_chord = nearest(cubes, qlat, qlon, radius)
    np.testing.assert_array_equal(same, got)
    np.testing.assert_array_equal(same_chord, chord)


def test_cell_index_with_points_far_apart_and_ties():
    """Points a thousand kilometres apart make the cells coarser (the bitmap has a bounded size); two pixels
    at the same place tie, and the lower index wins, as numpy's argmin."""
    lat, lon = sd.swath_geolocation(60, 40, 5.0, 20.0)
    lat[10, 11], lon[10, 11] = lat[10, 10], lon[10, 10]
    qlat, qlon = queries(lat, lon, 100, 0.002, seed=3)
    qlat = np.concatenate([qlat, [lat[10, 10], 14.0]])
    qlon = np.concatenate([qlon, [lon[10, 10], 29.0]])      # the last point is ~1400 km away: no pixel
    radius = chord_of(400.0)
    index = build_near_index(lat, lon, qlat, qlon, radius)
    assert index is not None and index.bitmap.size <= 1 << 24
    got, _ = nearest(index, qlat, qlon, radius)
    want, wdist = sd.brute_nearest(lat, lon, qlat, qlon)
    np.testing.assert_array_equal(got, np.where(wdist <= 400.0, want, -1))
    assert got[-2] == 10 * 40 + 10 and got[-1] == -1


@pytest.mark.parametrize("lat0, lon0", [(89.7, 10.0), (-17.0, 179.95)])
def test_cell_index_leaves_poles_and_antimeridian_to_the_cubes(lat0, lon0):
    lat, lon = sd.swath_geolocation(40, 30, lat0, lon0)
    qlat, qlon = queries(lat, lon, 20, 0.001)
    assert build_near_index(lat, lon, qlat, qlon, chord_of(1000.0)) is None


# -- the long table ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three scenes given out of date order, two variables."""
    folder = str(tmp_path_factory.mktemp("olci3"))
    return [sd.write_olci_product(folder, stamp=stamp, seed=k, lat0=-3.2 + 0.002 * k)
            for k, stamp in enumerate(["20240516T134512", "20240514T134512", "20240515T134512"])]


def _features():
    lat, lon = sd.swath_geolocation(80, 60, -3.2, -60.0)
    rng = np.random.default_rng(7)
    i, j = rng.integers(5, 75, 30), rng.integers(5, 50, 30)
    points = list(shapely.points(lon[i, j], lat[i, j]))
    points.append(shapely.Point(-50.0, 0.0))                           # outside every scene: null rows
    lakes = [shapely.Point(lon[40, 30], lat[40, 30]).buffer(0.01, quad_segs=4)]
    return zones_from_geometries(points + lakes, "EPSG:4326")


def scene_parts(plan, n):
    """Every scene's extraction, as the runner hands the tasks' results to the table: ``(tile, part)``."""
    parts = []
    for i in range(n):
        part = extract_scene(plan, i)
        part["scene"] = np.int64(i)
        parts.append((None, part))
    return parts


@pytest.mark.parametrize("mode", ["vertices", "zonal"])
def test_long_table_in_chunks_equals_the_whole_table(scenes, tmp_path, monkeypatch, mode):
    own = SwathOptions(statistics="mean,std", geometry_mode=mode, variables="Oa08_reflectance,CHL_NN",
                       max_distance=1000)
    plan, zones, samples = plan_swath(scenes, _features(), own)
    parts = scene_parts(plan, len(scenes))
    whole = swath_table(plan, zones, samples, "long", iter(parts), arrow=False)     # Python strings
    monkeypatch.setattr(swath_extract, "LONG_CHUNK_ROWS", 25)
    chunks = list(swath_table(plan, zones, samples, "long", iter(parts)))
    assert len(chunks) > 5 and all(isinstance(c, Table) for c in chunks)
    assert sum(len(c) for c in chunks) == len(whole) == len(samples.feature) * 3 * 2
    a, b = str(tmp_path / "whole.parquet"), str(tmp_path / "chunks.parquet")
    write_table(whole, a)
    assert write_chunks(iter(chunks), b) == len(whole)
    want, got = pq.read_table(a), pq.read_table(b)
    assert got.equals(want)
    # the string columns: plain strings to a reader, dictionary-coded in the file, no Arrow schema stored
    names = [f.name for f in got.schema if f.type == pa.string()]
    assert names == ["source", "time", "variable", "reason"]
    meta = pq.ParquetFile(b).metadata
    assert b"ARROW:schema" not in (meta.metadata or {})
    column = [meta.row_group(0).column(k).path_in_schema for k in range(meta.num_columns)].index("variable")
    assert "RLE_DICTIONARY" in meta.row_group(0).column(column).encodings
    assert str(pq.ParquetFile(b).schema.column(column).logical_type) == "String"
    dates = got.column("date").to_pylist()[:6]
    assert [str(d) for d in dates] == ["2024-05-14"] * 2 + ["2024-05-15"] * 2 + ["2024-05-16"] * 2
    reason = got.column("reason").to_pylist()
    assert None in reason and "outside the swath" in reason
    # each row holds its own scene's values: the first sample's rows, scene by scene in date order
    first = got.slice(0, 6).to_pydict()
    stat = "value" if mode == "vertices" else "mean"
    for k, scene in enumerate([1, 2, 0]):
        part = parts[scene][1]
        assert first[stat][2 * k:2 * k + 2] == part["stats"][0, :, 0].tolist()
        assert first["row"][2 * k] == part["row"][0] and first["source"][2 * k] == plan.scenes[scene].name


def test_csv_and_geopackage_get_the_strings(scenes, tmp_path, monkeypatch):
    """The dictionary-coded columns are written as their strings to CSV and GeoPackage (OGR would make a
    dictionary column an integer field with a coded domain)."""
    own = SwathOptions(statistics="mean", geometry_mode="vertices", variables="Oa08_reflectance,CHL_NN",
                       max_distance=1000)
    plan, zones, samples = plan_swath(scenes, _features(), own)
    parts = scene_parts(plan, len(scenes))
    want = pq.read_table(_written(write_table, swath_table(plan, zones, samples, "long", iter(parts), arrow=False),
                                  str(tmp_path / "want.parquet")))
    monkeypatch.setattr(swath_extract, "LONG_CHUNK_ROWS", 40)      # chunks appended one after another
    for ext in ("csv", "gpkg"):
        path = str(tmp_path / f"ts.{ext}")
        write_chunks(swath_table(plan, zones, samples, "long", iter(parts)), path)
        if ext == "csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            got = {k: [r[k] or None for r in rows] for k in ("source", "time", "variable", "reason")}
        else:
            import pyogrio
            _, t = pyogrio.read_arrow(path)
            got = {k: t.column(k).to_pylist() for k in ("source", "time", "variable", "reason")}
        for k, values in got.items():
            assert values == want.column(k).to_pylist(), (ext, k)
    assert os.path.getsize(str(tmp_path / "ts.gpkg")) > 0


def _written(writer, table, path):
    writer(table, path)
    return path

"""Extraction I/O: reading zones, the long and wide layouts, real nulls in GeoPackage, CSV and Parquet,
atomic writes, field names, the HTML plot, and parameter errors."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sqlite3
import warnings

import numpy as np
import pyogrio
import pytest
import shapely

from tilewise.core.errors import InputError, OutputError, ParameterError, TilewiseWarning
from tilewise.core.operations.extract import ExtractSpec, extract_stats, read_zones, write_table, zones_from_geometries
from tilewise.core.operations.extract.layout import date_order, raster_keys
from tilewise.core.io.vector import Table, TableWriter

from support import UTM_CRS, write_raster


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Three 2-band rasters 20 x 20; the second is all nodata over the first field."""
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(0)
    paths = []
    for i, name in enumerate(["S2_2020-03-01", "S2_2020-01-15", "mosaic"]):
        a = rng.integers(1, 100, (2, 20, 20)).astype(np.uint16)
        if i == 1:
            a[:, :10, :10] = 0
        paths.append(write_raster(folder / f"{name}.tif", a, nodata=0))
    return paths


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """A GeoPackage of three polygons with attributes (one field outside the rasters)."""
    path = tmp_path_factory.mktemp("zones") / "fields.gpkg"
    geoms = [shapely.box(500010, 4999910, 500090, 4999990), shapely.box(500100, 4999800, 500190, 4999890),
             shapely.box(600000, 4000000, 600100, 4000100)]
    pyogrio.raw.write(str(path), shapely.to_wkb(geoms), [np.array(["a1", "b2", "c3"], dtype=object),
                                                          np.array([1.5, np.nan, 3.0])],
                      ["pid", "area_ha"], field_mask=[None, np.array([False, True, False])],
                      crs=UTM_CRS, geometry_type="Polygon", driver="GPKG")
    return str(path)


DATES = ["2020-03-01", "2020-01-15", None]


@pytest.fixture(scope="module")
def result(series, fields):
    spec = ExtractSpec(["mean", "median", "count", "percentiles"], percentiles=[25, 75])
    return extract_stats(series, fields, spec, id_field="pid", dates=DATES, tile_size=8)


# -- zones --------------------------------------------------------------------------------------------------

def test_read_zones_with_an_id_field_or_the_feature_id(fields):
    z = read_zones(fields, id_field="pid")
    assert (z.id_name, z.ids.tolist(), len(z)) == ("pid", ["a1", "b2", "c3"], 3)
    assert "EPSG" in z.crs or "32633" in z.crs
    z = read_zones(fields)
    assert (z.id_name, z.ids.tolist()) == ("feature_id", [1, 2, 3])


def test_read_zones_says_what_is_wrong(tmp_path, fields):
    with pytest.raises(InputError, match=r"no field 'plot'; its fields are: pid, area_ha"):
        read_zones(fields, id_field="plot")
    with pytest.raises(InputError, match="not found"):
        read_zones(str(tmp_path / "nothing.gpkg"))
    bad = tmp_path / "bad.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(InputError, match="Not a vector layer"):
        read_zones(str(bad))


def test_invalid_polygons_are_repaired_and_duplicate_ids_warned():
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])
    with pytest.warns(TilewiseWarning, match="1 invalid polygons"):
        z = zones_from_geometries([bowtie, shapely.box(0, 0, 1, 1)])
    assert shapely.is_valid(z.geometry).all() and z.geometry[0].area == pytest.approx(2.0)


# -- layouts ------------------------------------------------------------------------------------------------

def test_long_layout_rows_and_columns(result):
    t = result.table("long")
    assert list(t.columns) == ["pid", "source", "date", "band", "mean", "median", "count", "p25", "p75", "n_valid"]
    assert len(t) == 3 * 3 * 2
    # per feature: rasters in date order (the undated one last), bands ascending
    assert t.columns["pid"][:6].tolist() == ["a1"] * 6
    assert t.columns["source"][:6].tolist() == ["S2_2020-01-15"] * 2 + ["S2_2020-03-01"] * 2 + ["mosaic"] * 2
    assert np.datetime_as_string(t.columns["date"][:6]).tolist() == ["2020-01-15"] * 2 + ["2020-03-01"] * 2 + \
        ["NaT"] * 2
    assert t.columns["band"][:6].tolist() == [1, 2] * 3
    # the first field under the second raster's nodata: null statistics, count 0, n_valid 0
    assert np.isnan(t.columns["mean"][:2]).all() and t.columns["n_valid"][:2].tolist() == [0, 0]
    assert t.columns["count"][:2].tolist() == [0.0, 0.0]
    assert np.isfinite(t.columns["mean"][2:6]).all()
    # the third field is outside every raster
    assert np.isnan(t.columns["mean"][12:]).all() and set(t.columns["n_valid"][12:].tolist()) == {0}


def test_wide_layout_names(result):
    t = result.table("wide")
    names = list(t.columns)
    assert names[:2] == ["pid", "area_ha"]
    assert names[2:8] == ["d20200115_b1_mean", "d20200115_b1_median", "d20200115_b1_count", "d20200115_b1_p25",
                          "d20200115_b1_p75", "d20200115_b1_n_valid"]
    assert "d20200301_b2_p75" in names and "mosaic_b2_n_valid" in names
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names)
    assert len(t) == 3 and t.geometry is not None and shapely.equals(t.geometry[0], result.plan.zones.geometry[0])
    long = result.table("long")
    assert t.columns["d20200301_b2_mean"][1] == long.columns["mean"][6 + 3]


def test_raster_keys_are_unique_identifiers():
    d = np.array(["2021-05-01", "2021-05-01", "NaT", "NaT", "NaT"], dtype="datetime64[D]")
    keys = raster_keys(["a", "b", "2019-mosaic", "x y", "x y"], d)
    assert keys == ["d20210501_a", "d20210501_b", "r2019_mosaic", "x_y", "x_y_2"]
    assert date_order(d).tolist() == [0, 1, 2, 3, 4]


def test_points_give_a_value_column(series):
    pts = zones_from_geometries([shapely.Point(500015, 4999985), shapely.Point(400000, 4000000)], UTM_CRS)
    t = extract_stats(series, pts, ExtractSpec(["mean", "median"])).table("long")
    assert list(t.columns) == ["feature_id", "source", "date", "band", "value"]
    # no DATES: the dates come from the file names, so the rows are 2020-01-15 (the raster with the nodata
    # block over the first point), 2020-03-01, then the undated mosaic; the second point is outside them all
    assert [str(d) for d in t.columns["date"][:6:2]] == ["2020-01-15", "2020-03-01", "NaT"]
    assert np.isfinite(t.columns["value"]).tolist() == [False, False, True, True, True, True] + [False] * 6


# -- files --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["long", "wide"])
def test_geopackage_has_real_nulls(tmp_path, result, layout):
    path = result.write(str(tmp_path / "ts.gpkg"), layout)
    con = sqlite3.connect(path)
    table = con.execute("select table_name from gpkg_contents").fetchone()[0]
    rows = con.execute(f'select * from "{table}"').fetchall()
    cols = [c[1] for c in con.execute(f'pragma table_info("{table}")')]
    con.close()
    want = result.table(layout)
    assert len(rows) == len(want)
    for name, values in want.columns.items():
        got = [r[cols.index(name)] for r in rows]
        if values.dtype.kind == "f":
            assert [g is None for g in got] == np.isnan(values).tolist(), name
            assert [g for g in got if g is not None] == pytest.approx(values[~np.isnan(values)].tolist())
        elif values.dtype.kind == "M":
            assert got == [None if np.isnat(v) else str(v) for v in values]
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_csv_has_empty_nulls_and_iso_dates(tmp_path, result, layout):
    path = result.write(str(tmp_path / "ts.csv"), layout)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    want = result.table(layout)
    assert len(rows) == len(want)
    for name, values in want.columns.items():
        got = [r[name] for r in rows]
        if values.dtype.kind == "f":
            assert [g == "" for g in got] == np.isnan(values).tolist(), name
            assert [float(g) for g in got if g] == values[~np.isnan(values)].tolist()   # exact round trip
        elif values.dtype.kind == "M":
            assert got == ["" if np.isnat(v) else str(v) for v in values]
    if layout == "wide":
        assert rows[0]["geometry"].startswith("POLYGON")


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_parquet_has_real_nulls_and_dates(tmp_path, result, layout):
    pq = pytest.importorskip("pyarrow.parquet")
    path = result.write(str(tmp_path / "ts.parquet"), layout)
    table = pq.read_table(path)
    want = result.table(layout)
    assert table.num_rows == len(want)
    for name, values in want.columns.items():
        col = table.column(name)
        if values.dtype.kind == "f":
            assert col.is_null().to_pylist() == np.isnan(values).tolist(), name
        elif values.dtype.kind == "M":
            assert str(col.type) == "date32[day]"
            assert col.to_pylist() == [None if np.isnat(v) else v.astype(dt.date) for v in values]
    if layout == "wide":
        geo = json.loads(table.schema.metadata[b"geo"])
        assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
        assert geo["columns"]["geometry"]["crs"]["id"]["code"] == 32633
        assert shapely.from_wkb(table.column("geometry")[0].as_py()).equals(result.plan.zones.geometry[0])


def test_chunks_append_and_failures_leave_nothing(tmp_path):
    t = Table({"k": np.arange(3), "v": np.array([1.0, np.nan, 2.0])})
    for ext in ("gpkg", "csv", "parquet"):
        path = tmp_path / f"t.{ext}"
        with TableWriter(str(path)) as w:
            w.write(t)
            w.write(t)
        assert pyogrio.read_info(str(path))["features"] == 6 if ext != "parquet" else path.exists()
        with pytest.raises(RuntimeError):
            with TableWriter(str(tmp_path / f"u.{ext}")) as w:
                w.write(t)
                raise RuntimeError("boom")
        assert not (tmp_path / f"u.{ext}").exists()
        with pytest.raises(OutputError, match="other columns"):
            with TableWriter(str(tmp_path / f"x.{ext}")) as w:
                w.write(t)
                w.write(Table({"k": np.arange(2)}))
    assert not list(tmp_path.glob(".*"))


def test_format_limits_are_explained(tmp_path):
    many = Table({f"f{i}": np.zeros(1) for i in range(2100)})
    with pytest.raises(OutputError, match="long layout"):
        write_table(many, str(tmp_path / "many.gpkg"))
    with pytest.raises(OutputError, match="GeoPackage"):
        write_table(Table({"d20200101_b1_mean": np.zeros(1)}), str(tmp_path / "t.shp"))
    with pytest.raises(OutputError, match="does not exist"):
        write_table(many, str(tmp_path / "missing" / "t.csv"))


# -- plot ---------------------------------------------------------------------------------------------------

def test_plot_is_one_self_contained_page(tmp_path, result):
    path = result.plot(str(tmp_path / "ts.html"))
    text = open(path, encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)     # nothing fetched at run time
    data = json.loads(re.search(r"const D = (\{.*?\});\n", text, re.S).group(1))
    assert [f["id"] for f in data["features"]] == ["a1", "b2", "c3"]
    assert data["x"] == [1, 2, 3] and not data["dated"]                      # one raster has no date
    assert data["sources"] == ["S2_2020-01-15", "S2_2020-03-01", "mosaic"]
    first = data["features"][0]["b"][0]
    assert first["m"][0] is None and first["v"][0] == 0 and first["m"][1] == pytest.approx(
        float(result.stats.mean[0, 0]), rel=1e-5)
    assert len(first["e"]) == 3
    small = result.plot(str(tmp_path / "two.html"), max_features=2)
    assert len(json.loads(re.search(r"const D = (\{.*?\});\n", open(small).read(), re.S).group(1))["features"]) == 2


# -- parameters ---------------------------------------------------------------------------------------------

def test_spec_takes_indices_and_names_in_the_fixed_order():
    s = ExtractSpec([6, 0, "percentiles"], percentiles=[90, 2.5], coverage=2, point_method=1)
    assert s.statistics == ("mean", "sum", "percentiles") and s.columns == ("mean", "sum", "p2_5", "p90")
    assert (s.coverage, s.point_method) == ("fractional", "bilinear")
    assert ExtractSpec("mean,count").statistics == ("mean", "count")
    assert ExtractSpec.from_dict(s.to_dict()) == s


def test_the_percentiles_statistic_alone_gives_the_quartiles_and_median():
    """The composite's default: 25, 50, 75 (QGIS, CLI and Python alike)."""
    s = ExtractSpec(["mean", "percentiles"])
    assert s.percentiles == (25.0, 50.0, 75.0) and s.columns == ("mean", "p25", "p50", "p75")


@pytest.mark.parametrize("kwargs, message", [
    ({"statistics": [9]}, "out of range"), ({"statistics": ["mode"]}, "Unknown statistic"),
    ({"percentiles": [101]}, "between 0 and 100"),
    ({"coverage": "half"}, "Unknown coverage"), ({"window": 0}, "at least 1"),
    ({"point_method": 1, "window": 3}, "nearest"), ({"min_valid_fraction": 2}, "between 0 and 1")])
def test_spec_errors(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        ExtractSpec(**kwargs)


def test_run_errors(series, fields):
    with pytest.raises(InputError, match="Band 3 does not exist"):
        extract_stats(series, fields, bands=[3])
    with pytest.raises(ParameterError, match="one date per raster"):
        extract_stats(series, fields, dates=["2020-01-01"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        extract_stats(series[:1], fields, bands=[1])
    assert [str(w.message) for w in seen] == [          # the field left outside on purpose, and nothing else
        f"1 of 3 features of the zones layer {fields} lie outside every raster: their values are null (feature_id 3)."]


def test_dates_come_from_the_names_before_dates_with_a_warning(series, fields):
    """The issue's order: the file name, then the metadata, then DATES. A DATES entry the name contradicts is
    not used, and the warning names the file; a raster without a date in its name takes its DATES entry."""
    spec = ExtractSpec(["count"])
    with pytest.warns(TilewiseWarning, match=r"S2_2020-01-15\.tif: DATES gives 2021-06-01 but its name says "
                                             r"2020-01-15; using 2020-01-15") as seen:
        table = extract_stats(series, fields, spec, id_field="pid", dates=["2020-03-01", "2021-06-01", "2019-12-31"],
                              tile_size=8).table("long")
    assert len([w for w in seen if "DATES gives" in str(w.message)]) == 1
    by_source = dict(zip(table.columns["source"].tolist(), np.datetime_as_string(table.columns["date"]).tolist()))
    assert by_source == {"S2_2020-03-01": "2020-03-01", "S2_2020-01-15": "2020-01-15", "mosaic": "2019-12-31"}

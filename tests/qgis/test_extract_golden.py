"""Golden check of tilewise:extract: centre coverage gives the statistics of QGIS's own
native:zonalstatisticsfb, raster by raster.

tilewise:extract runs through processing.run (its engine in its own Python), tiled small so that
fields cross tile borders, on two workers; QGIS runs zonalstatisticsfb once per raster here. Fields include
holes, several parts, edges of the raster, a field in a nodata block and one smaller than a
pixel (QGIS then weights the pixels it touches by their covered fraction; so does the engine).
"""

import csv
import math
import os

import numpy as np
import pytest
from osgeo import ogr, osr

from qgis.core import QgsVectorLayer, QgsWkbTypes

from twtest import UTM33_10M, run, write_raster

SHAPE = (96, 130)
QGIS_STATS = {"count": 0, "sum": 1, "mean": 2, "median": 3, "std": 4, "min": 5, "max": 6}
QGIS_FIELDS = {"count": "_count", "sum": "_sum", "mean": "_mean", "median": "_median", "std": "_stdev",
               "min": "_min", "max": "_max"}

STATISTICS = [0, 1, 2, 3, 4, 5, 6]       # tilewise:extract's indices: mean, median, min, max, std, count, sum


def extract(zones, rasters, output, layout):
    """tilewise:extract through processing.run, centre coverage, tiled small (fields cross tile borders)."""
    return run("tilewise:extract", {"INPUT": rasters, "ZONES": zones, "ID_FIELD": "pid", "STATISTICS": STATISTICS,
                                    "COVERAGE": 0, "LAYOUT": layout, "OUTPUT": str(output), "TILE_SIZE": 16,
                                    "WORKERS": 2})["OUTPUT"]


def write_fields(path, geometries):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("fields", srs, ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("pid", ogr.OFTInteger))
    for pid, wkt in enumerate(geometries, start=100):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("pid", pid)
        feature.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkt(wkt)))
        layer.CreateFeature(feature)
        feature = None
    layer = None
    ds = None
    return str(path)


def field_geometries(rng, n=40):
    """WKT polygons over the raster (origin 500000, 5000000; 10 m pixels), a few reaching past its edges."""
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    width, height = SHAPE[1] * 10, SHAPE[0] * 10
    out = []
    for i in range(n):
        cx, cy = x0 + rng.uniform(-30, width + 30), y1 - rng.uniform(-30, height + 30)
        r = rng.uniform(25, 120)
        circle = ogr.CreateGeometryFromWkt(f"POINT ({cx} {cy})").Buffer(r, int(rng.integers(2, 9)))
        if i % 3 == 0:
            circle = circle.Difference(ogr.CreateGeometryFromWkt(f"POINT ({cx + r / 5} {cy})").Buffer(r / 3))
        if i % 4 == 1:
            box = f"POLYGON (({cx + 2 * r} {cy}, {cx + 2 * r + 40} {cy}, {cx + 2 * r + 40} {cy + 35}, " \
                  f"{cx + 2 * r} {cy + 35}, {cx + 2 * r} {cy}))"
            circle = circle.Union(ogr.CreateGeometryFromWkt(box))
        out.append(circle.ExportToWkt())
    out.append(f"POLYGON (({x0 + 405} {y1 - 405}, {x0 + 495} {y1 - 405}, {x0 + 495} {y1 - 495}, "
               f"{x0 + 405} {y1 - 495}, {x0 + 405} {y1 - 405}))")          # inside the nodata block
    out.append(f"POLYGON (({x0 + 617} {y1 - 603}, {x0 + 623} {y1 - 603}, {x0 + 623} {y1 - 607}, "
               f"{x0 + 617} {y1 - 607}, {x0 + 617} {y1 - 603}))")          # smaller than a pixel, no centre in it
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extract-golden")
    rng = np.random.default_rng(21)
    rasters = []
    for i in range(3):
        if i == 1:
            a = rng.integers(1, 400, SHAPE).astype(np.uint16)      # integers with ties: medians of halves
            nodata = 0
        else:
            a = rng.normal(800, 250, SHAPE).astype(np.float32)
            nodata = -9999.0
        a[rng.random(SHAPE) < 0.15] = nodata
        a[38:52, 38:52] = nodata
        rasters.append(write_raster(folder / f"scene_{i}.tif", a, nodata=nodata))
    zones = write_fields(folder / "fields.gpkg", field_geometries(rng))
    return folder, zones, rasters


@pytest.fixture(scope="module")
def engine_rows(data):
    """tilewise:extract's long table (CSV; the same as a GeoPackage, and the wide one), run once each."""
    folder, zones, rasters = data
    out = folder / "engine.csv"
    assert extract(zones, rasters, out, 1) == str(out)
    extract(zones, rasters, folder / "engine.gpkg", 1)
    extract(zones, rasters, folder / "engine_wide.gpkg", 0)
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def value(text):
    return math.nan if text in ("", None) else float(text)


def test_centre_coverage_equals_zonalstatisticsfb(data, engine_rows):
    folder, zones, rasters = data
    rows = engine_rows
    ours = {(int(r["pid"]), r["source"]): r for r in rows}
    compared = {name: 0 for name in QGIS_STATS}
    for raster in rasters:
        source = os.path.splitext(os.path.basename(raster))[0]
        result = run("native:zonalstatisticsfb", {
            "INPUT": zones, "INPUT_RASTER": raster, "RASTER_BAND": 1, "COLUMN_PREFIX": "_",
            "STATISTICS": list(QGIS_STATS.values()), "OUTPUT": "TEMPORARY_OUTPUT"})
        for feature in result["OUTPUT"].getFeatures():
            mine = ours[(feature["pid"], source)]
            qgis_count = feature["_count"]
            for name, field in QGIS_FIELDS.items():
                theirs = feature[field]
                theirs = (math.nan if theirs is None or (hasattr(theirs, "isNull") and theirs.isNull())
                          else float(theirs))
                got = value(mine[name])
                if qgis_count == 0 and name == "sum":
                    theirs = math.nan                  # QGIS writes 0 for a field with no valid pixel: null here
                if name == "median" and 0 < qgis_count < 2:
                    continue                           # QGIS's fallback takes an unweighted median, ours weighted
                assert got == pytest.approx(theirs, rel=1e-6, abs=1e-6, nan_ok=True), \
                    (source, feature["pid"], name, mine)
                compared[name] += 1
    n = 42 * 3
    assert compared == {name: n - (3 if name == "median" else 0) for name in QGIS_STATS}
    # the cases are really there: a field without valid pixels, one smaller than a pixel, fractional counts
    counts = [value(r["count"]) for r in rows]
    assert 0.0 in counts and any(0 < c < 1 for c in counts)
    assert sum(1 for r in rows if value(r["count"]) > 100) > 30


def test_engine_tables_load_in_qgis_with_nulls(data, engine_rows):
    """The GeoPackages the engine writes (pyogrio's newer GDAL) open in QGIS's GDAL; no data is NULL."""
    folder = data[0]
    rows = engine_rows
    long = QgsVectorLayer(str(folder / "engine.gpkg"), "long", "ogr")
    assert long.isValid() and long.featureCount() == len(rows) == 42 * 3
    assert long.wkbType() == QgsWkbTypes.NoGeometry
    nulls = [f["mean"] for f in long.getFeatures() if f["n_valid"] == 0]
    assert nulls and all(v is None or (hasattr(v, "isNull") and v.isNull()) for v in nulls)
    assert str(long.fields().field("date").typeName()).lower() == "date"
    wide = QgsVectorLayer(str(folder / "engine_wide.gpkg"), "wide", "ogr")
    assert wide.isValid() and wide.featureCount() == 42
    assert QgsWkbTypes.geometryType(wide.wkbType()) == QgsWkbTypes.PolygonGeometry
    assert wide.crs().authid() == "EPSG:32633"
    assert "scene_0_b1_mean" in wide.fields().names() and "scene_2_b1_n_valid" in wide.fields().names()

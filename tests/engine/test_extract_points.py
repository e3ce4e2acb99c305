"""Points: nearest equals a direct pixel lookup, bilinear equals GDAL's (gdalwarp), windows equal numpy slices,
vertices and multi-points are sampled one by one."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from tilewise.core.operations.extract import ExtractSpec, extract_stats, zones_from_geometries

from extract_reference import apply
from support import UTM_CRS, UTM_TRANSFORM, write_raster

SHAPE = (37, 53)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """float32 with a nodata value and NaN holes, some of them in blocks."""
    rng = np.random.default_rng(8)
    a = rng.normal(50, 20, SHAPE).astype(np.float32)
    a[rng.random(SHAPE) < 0.08] = -9999.0
    a[rng.random(SHAPE) < 0.04] = np.nan
    a[5:9, 30:36] = -9999.0
    return write_raster(tmp_path_factory.mktemp("points") / "a.tif", a, nodata=-9999.0)


def random_points(rng, n, pad=30.0):
    h, w = SHAPE
    (x0, x1), (y1, y0) = apply(UTM_TRANSFORM, [0, w], [0, h])
    return [shapely.Point(x, y) for x, y in zip(rng.uniform(x0 - pad, x1 + pad, n), rng.uniform(y0 - pad, y1 + pad, n))]


@pytest.mark.parametrize("tile_size", [8, 1024])
def test_nearest_is_the_pixel_that_contains_the_point(image, tile_size):
    rng = np.random.default_rng(1)
    points = random_points(rng, 400) + [shapely.Point(500000.0 + 10 * 7, 5000000.0 - 10 * 3)]  # on a pixel corner
    r = extract_stats([image], zones_from_geometries(points, UTM_CRS), ExtractSpec(), tile_size=tile_size)
    table = r.table("long")
    assert list(table.columns) == ["feature_id", "source", "date", "band", "value"]
    with rasterio.open(image) as src:
        a = src.read(1, masked=True)
        for k, p in enumerate(points):
            row, col = src.index(p.x, p.y)
            inside = 0 <= row < src.height and 0 <= col < src.width
            want = float(a[row, col]) if inside and a[row, col] is not np.ma.masked and np.isfinite(a[row, col]) \
                else np.nan
            assert table.columns["value"][k] == pytest.approx(want, nan_ok=True), (k, p)
    assert np.sum(np.isfinite(table.columns["value"])) > 200


@pytest.mark.skipif(shutil.which("gdalwarp") is None, reason="gdalwarp (gdal-bin) is not installed")
@pytest.mark.parametrize("tile_size", [8, 1024])
def test_bilinear_equals_gdal(tmp_path, tile_size):
    """gdalwarp -r bilinear onto a finer, shifted lattice: its pixel centres are the points. The same
    values at the edges (GDAL keeps the edge pixel within half a pixel of the border), next to nodata
    (renormalised weights), no value where the point's own pixel has no data, and none outside.

    (Without NaN pixels: with a nodata value set, GDAL takes NaN for data and spreads it to the
    neighbours' values; the engine always takes NaN for no data.)"""
    rng = np.random.default_rng(9)
    a = rng.normal(50, 20, SHAPE).astype(np.float32)
    a[rng.random(SHAPE) < 0.12] = -9999.0
    a[5:9, 30:36] = -9999.0
    image = write_raster(tmp_path / "a.tif", a, nodata=-9999.0)
    res, left, top = 3.7, 500000.0 - 21.3, 5000000.0 + 17.9
    width, height = 160, 112
    out = tmp_path / "gdal.tif"
    subprocess.run(["gdalwarp", "-q", "-overwrite", "-r", "bilinear", "-et", "0", "-ot", "Float64",
                    "-dstnodata", "-1e30", "-te", str(left), str(top - res * height), str(left + res * width),
                    str(top), "-ts", str(width), str(height), image, str(out)], check=True, timeout=120)
    with rasterio.open(out) as src:
        gdal = src.read(1)
    gdal = np.where(gdal == -1e30, np.nan, gdal)
    rows, cols = np.mgrid[0:height, 0:width]
    xs, ys = apply(Affine(res, 0, left, 0, -res, top), cols.ravel() + 0.5, rows.ravel() + 0.5)
    points = shapely.points(xs, ys)
    spec = ExtractSpec(point_method="bilinear")
    ours = extract_stats([image], zones_from_geometries(points, UTM_CRS), spec, tile_size=tile_size).stats.mean[:, 0]
    want = gdal.ravel()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(want))
    # positions agree to ~1e-10 pixel (GDAL goes through map coordinates): values to ~1e-9 of the data range
    np.testing.assert_allclose(ours[~np.isnan(ours)], want[~np.isnan(want)], rtol=1e-9, atol=1e-7)
    assert np.sum(np.isnan(want)) > 1000 and np.sum(~np.isnan(want)) > 10000


def test_bilinear_at_pixel_centres_is_the_pixel(image):
    h, w = SHAPE
    rows, cols = np.mgrid[0:h, 0:w]
    xs, ys = apply(UTM_TRANSFORM, cols.ravel() + 0.5, rows.ravel() + 0.5)
    r = extract_stats([image], zones_from_geometries(shapely.points(xs, ys), UTM_CRS), ExtractSpec(point_method=1))
    with rasterio.open(image) as src:
        a = src.read(1, masked=True).astype(np.float64).filled(np.nan).ravel()
    np.testing.assert_array_equal(r.stats.mean[:, 0], a)


@pytest.mark.parametrize("window", [3, 4, 5])
def test_window_is_reduced_with_the_statistics(image, window):
    rng = np.random.default_rng(3)
    points = random_points(rng, 150, pad=15)
    spec = ExtractSpec(["mean", "max", "count", "median"], window=window)
    r = extract_stats([image], zones_from_geometries(points, UTM_CRS), spec, tile_size=8)
    assert "value" not in r.table("long").columns and "n_valid" in r.table("long").columns
    with rasterio.open(image) as src:
        a = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        for k, p in enumerate(points):
            (col,), (row,) = apply(~src.transform, [p.x], [p.y])
            if window % 2:
                r0, c0 = int(np.floor(row)) - window // 2, int(np.floor(col)) - window // 2
            else:
                r0, c0 = int(np.floor(row + 0.5)) - window // 2, int(np.floor(col + 0.5)) - window // 2
            block = a[max(r0, 0):max(r0 + window, 0), max(c0, 0):max(c0 + window, 0)]
            v = block[np.isfinite(block)]
            assert r.stats.n_valid[k, 0] == len(v)
            if len(v):
                assert r.stats.mean[k, 0] == pytest.approx(v.mean())
                assert r.stats.vmax[k, 0] == v.max() and r.stats.quantiles[k, 0, 0] == np.median(v)
            # the whole window is the denominator of the valid fraction, inside the raster or not
            assert r.stats.valid_fraction[k, 0] == pytest.approx(len(v) / window ** 2)


def test_vertices_and_multipoints_are_sampled_one_by_one(image):
    poly = shapely.Polygon([(500031, 4999911), (500231, 4999905), (500190, 4999750), (500031, 4999911)],
                           [[(500100, 4999880), (500150, 4999880), (500120, 4999850), (500100, 4999880)]])
    line = shapely.LineString([(500005, 4999995), (500400, 4999700)])
    multi = shapely.MultiPoint([(500015, 4999985), (500255, 4999705)])
    zones = zones_from_geometries([poly, line, multi], UTM_CRS, ids=["p", "l", "m"], id_name="name")
    r = extract_stats([image], zones, ExtractSpec(geometry_mode="vertices"), tile_size=8)
    table = r.table("long")
    assert table.columns["name"].tolist() == ["p"] * 6 + ["l"] * 2 + ["m"] * 2
    assert table.columns["vertex_index"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0, 1]
    vertices = [(500031, 4999911), (500231, 4999905), (500190, 4999750), (500100, 4999880), (500150, 4999880),
                (500120, 4999850), (500005, 4999995), (500400, 4999700), (500015, 4999985), (500255, 4999705)]
    with rasterio.open(image) as src:
        a = src.read(1, masked=True).astype(np.float64).filled(np.nan)
        want = [a[src.index(x, y)] for x, y in vertices]
    np.testing.assert_array_equal(table.columns["value"], want)
    wide = r.table("wide")
    assert shapely.get_type_id(wide.geometry).tolist() == [0] * 10
    assert wide.columns["vertex_index"].tolist() == table.columns["vertex_index"].tolist()

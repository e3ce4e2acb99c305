"""Zonal extraction: coverage kernels against shapely, tiled runs against whole-raster references,
fractional coverage against exactextract, the exact merge across tiles, and the edge cases."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import shapely
from affine import Affine

from tilewise.core.operations.extract import ExtractSpec, extract_stats, plan_extraction, zones_from_geometries
from tilewise.core.kernels.pixel_cover import cover_tile
from tilewise.core.kernels.footprints import footprints_from_pixels
from tilewise.core.operations.extract.pipeline import extract_tile
from tilewise.core.operations.extract.spec import percentile_column
from tilewise.core.vocabulary import EXTRACT_COVERAGES
from tilewise.core.kernels.zonal import reduce_tile

from extract_reference import (apply, pixel_boxes, random_polygons, read_masked, reference_stats, reference_weights)
from support import UTM_CRS, UTM_TRANSFORM, write_raster

SHAPE = (83, 117)
ALL = ["mean", "median", "min", "max", "std", "count", "sum", "percentiles"]
PERCENTILES = [10, 25, 90]
COLUMNS = ["mean", "median", "min", "max", "std", "count", "sum"] + [percentile_column(q) for q in PERCENTILES]


def extent(shape=SHAPE, transform=UTM_TRANSFORM):
    h, w = shape
    (x0, x1), (y0, y1) = apply(transform, [0, w], [0, h])
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three rasters: float32 with NaN and nodata holes, uint8 with many ties, int16 with a nodata value."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(11)
    f = rng.normal(300, 80, SHAPE).astype(np.float32)
    f[rng.random(SHAPE) < 0.15] = -9999.0
    f[rng.random(SHAPE) < 0.05] = np.nan
    f[20:35, 40:70] = -9999.0                                    # a cloud
    u = rng.integers(1, 9, SHAPE).astype(np.uint8)
    u[rng.random(SHAPE) < 0.1] = 0
    i = rng.integers(-500, 500, SHAPE).astype(np.int16)
    i[rng.random(SHAPE) < 0.1] = -32768
    return [write_raster(folder / "f32.tif", f, nodata=-9999.0),
            write_raster(folder / "u8.tif", u, nodata=0),
            write_raster(folder / "i16.tif", i, nodata=-32768)]


@pytest.fixture(scope="module")
def polygons():
    rng = np.random.default_rng(5)
    x0, y0, x1, y1 = extent()
    pad = 80.0                                                    # some features reach past the edges
    return random_polygons(rng, 60, (x0 - pad, y0 - pad, x1 + pad, y1 + pad)) + [
        shapely.box(x1 + 100, y1 + 100, x1 + 300, y1 + 300),      # outside every raster
        shapely.box(x0 + 200, y0 + 200, x0 + 203, y0 + 204)]      # smaller than a pixel


def check_against_reference(result, scenes, polygons, coverage, percentiles=PERCENTILES, layers=None):
    stats = result.stats
    for li, path in enumerate(scenes if layers is None else layers):
        values = read_masked(path)
        for k, g in enumerate(polygons):
            w = reference_weights(g, UTM_TRANSFORM, SHAPE, coverage)
            ref = reference_stats(values, w, percentiles,
                                  weighted=coverage == "fractional" or bool(np.any((w > 0) & (w < 1))))
            got = {"mean": stats.mean[k, li], "median": stats.quantiles[k, li, 0], "min": stats.vmin[k, li],
                   "max": stats.vmax[k, li], "std": stats.std[k, li], "count": stats.count[k, li],
                   "sum": stats.total[k, li], "n_valid": stats.n_valid[k, li]}
            for i, q in enumerate(percentiles):
                got[percentile_column(q)] = stats.quantiles[k, li, 1 + i]
            # The reference's fractions come from areas in map coordinates (~1e-10 of a pixel off)
            tol = 1e-9 + 1e-10 * ref["count"] * float(np.abs(values).max())
            for name, want in ref.items():
                assert got[name] == pytest.approx(want, rel=1e-9, abs=tol, nan_ok=True), (path, k, name, coverage)


# -- coverage kernels ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("coverage", EXTRACT_COVERAGES)
@pytest.mark.parametrize("window", [(0, 0, 83, 117), (13, 29, 31, 17), (70, 100, 13, 17)])
def test_cover_equals_shapely(coverage, window):
    """Each kernel's weights on a tile window equal the shapely reference, pixel by pixel."""
    rng = np.random.default_rng(3)
    geoms_px = random_polygons(rng, 40, (-5, -5, 122, 88), size=(0.2, 15), res=1.0)
    fp = footprints_from_pixels(geoms_px, *SHAPE)
    r0, c0, h, w = window
    cover = cover_tile(fp, np.arange(len(geoms_px)), r0, c0, h, w, EXTRACT_COVERAGES.index(coverage))
    identity = Affine.identity()
    for k, g in enumerate(geoms_px):
        want = reference_weights(g, identity, SHAPE, coverage, fallback=False)[r0:r0 + h, c0:c0 + w].ravel()
        if coverage == "centre" and want.sum() == 0:
            # no pixel centre in this window: the window's part falls back to covered fractions
            want = reference_weights(g, identity, SHAPE, "fractional")[r0:r0 + h, c0:c0 + w].ravel()
        else:
            assert not cover.fallback[k]
        got = np.zeros(h * w)
        got[cover.pixels[cover.offsets[k]:cover.offsets[k + 1]]] = cover.weights[cover.offsets[k]:cover.offsets[k + 1]]
        np.testing.assert_allclose(got, want, atol=1e-12, err_msg=f"feature {k}")
        assert cover.footprint[k] == pytest.approx(want.sum(), abs=1e-9)


def test_fractions_sum_to_area():
    """Fractions of a polygon with a hole and two parts add up to its area, whatever the ring orientation."""
    outer = shapely.Polygon([(1.3, 1.1), (9.7, 2.2), (8.1, 9.4), (0.6, 7.7)], [[(3, 3), (5, 3.5), (4.2, 6)]])
    shapes = [outer, outer.reverse(), shapely.MultiPolygon([outer, shapely.box(10.2, 0.5, 11.9, 0.9)])]
    fp = footprints_from_pixels(shapes, 12, 12)
    cover = cover_tile(fp, np.arange(3), 0, 0, 12, 12, 2)
    assert cover.footprint.tolist() == pytest.approx([s.area for s in shapes], abs=1e-12)


# -- whole runs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("coverage", EXTRACT_COVERAGES)
@pytest.mark.parametrize("tile_size", [8, 29, 1024])
def test_tiled_equals_whole_raster_reference(scenes, polygons, coverage, tile_size):
    """Every statistic of every feature, for every tile size (features across tile borders, outside,
    partly outside, holed, multi-part, smaller than a pixel) equals the whole-raster reference."""
    zones = zones_from_geometries(polygons, UTM_CRS)
    spec = ExtractSpec(ALL, percentiles=PERCENTILES, coverage=coverage)
    result = extract_stats(scenes, zones, spec, tile_size=tile_size)
    if tile_size == 8:
        parts = result.plan.groups[0].assignment.parts
        assert np.sum(parts > 1) > 20 and np.sum(parts == 0) >= 1      # the cases are really there
    check_against_reference(result, scenes, polygons, coverage)


@pytest.mark.parametrize("dtype", ["float64", "uint8"])
@pytest.mark.parametrize("tile_size", [8, 1024])
def test_fractional_equals_exactextract(tmp_path, polygons, dtype, tile_size):
    """Fractional coverage gives exactextract's mean, sum, count, min, max, stdev, median and quantiles
    (float data with distinct values, and integer data with many ties)."""
    ee = pytest.importorskip("exactextract")
    from exactextract.feature import JSONFeatureSource
    from exactextract.raster import NumPyRasterSource
    rng = np.random.default_rng(2)
    a = rng.normal(100, 20, SHAPE) if dtype == "float64" else rng.integers(1, 6, SHAPE)
    a = a.astype(dtype)
    nodata = -1.0 if dtype == "float64" else 255
    a[rng.random(SHAPE) < 0.1] = nodata
    path = write_raster(tmp_path / "a.tif", a, nodata=nodata)
    x0, y0, x1, y1 = extent()
    raster = NumPyRasterSource(a, xmin=x0, ymin=y0, xmax=x1, ymax=y1, nodata=nodata)
    features = [{"type": "Feature", "properties": {"k": k}, "geometry": shapely.geometry.mapping(g)}
                for k, g in enumerate(polygons)]
    ops = ["mean", "sum", "count", "min", "max", "stdev", "median", "quantile(q=0.1)", "quantile(q=0.9)"]
    theirs = ee.exact_extract(raster, JSONFeatureSource(features), ops, include_cols=["k"])
    spec = ExtractSpec(ALL, percentiles=[10, 90], coverage="fractional")
    ours = extract_stats([path], zones_from_geometries(polygons, UTM_CRS), spec, tile_size=tile_size).stats
    names = {"mean": ours.mean, "sum": ours.total, "count": ours.count, "min": ours.vmin, "max": ours.vmax,
             "stdev": ours.std, "median": ours.quantiles[..., 0], "quantile_10": ours.quantiles[..., 1],
             "quantile_90": ours.quantiles[..., 2]}
    compared = 0
    for f in theirs:
        k = f["properties"]["k"]
        for name, mine in names.items():
            want = f["properties"][name]
            want = np.nan if want is None else float(want)
            value = mine[k, 0]
            if ours.n_valid[k, 0] == 0 and name == "sum":
                want = np.nan                       # exactextract says 0; here no data is null
            if dtype == "uint8" and name in ("median", "quantile_10", "quantile_90") and np.isfinite(value):
                value = np.floor(value + 1e-6)      # exactextract casts quantiles to the raster's type; we do not
            # exactextract keeps covered fractions in float32: agreement to ~1e-7 relative
            assert value == pytest.approx(want, rel=2e-6, abs=1e-6, nan_ok=True), (k, name)
            compared += 1
    assert compared == len(polygons) * len(names)


def test_merge_order_does_not_matter(scenes, polygons):
    """Tiles merged in any order give the same statistics (medians and percentiles identical)."""
    spec = ExtractSpec(ALL, percentiles=PERCENTILES, coverage="centre")
    plan = plan_extraction(scenes, zones_from_geometries(polygons, UTM_CRS), spec, tile_size=8)
    lean = pickle.loads(pickle.dumps(plan.for_workers()))          # what a worker process gets
    assert lean.zones is None and lean.samples is None
    parts = [pickle.loads(pickle.dumps(extract_tile(lean, g, t))) for g, t in plan.tasks()]
    results = []
    for seed in (0, 1):
        merger = plan.merger(0)
        for i in np.random.default_rng(seed).permutation(len(parts)):
            merger.add(parts[i])
        assert merger.pending() == 0
        results.append(merger.result())
    a, b = results
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    np.testing.assert_array_equal(a.n_valid, b.n_valid)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    with pytest.raises(ValueError, match="twice"):
        merger.add(parts[0])


def test_spanning_median_is_not_an_average_of_tile_medians(tmp_path):
    """A polygon over four tiles whose values differ by tile: its median is the median of all its pixels."""
    a = np.zeros((16, 16), np.float32)
    a[:8, :8], a[:8, 8:], a[8:, :8], a[8:, 8:] = 1, 2, 3, 100
    a[8:, 8:] += np.arange(64).reshape(8, 8)
    path = write_raster(tmp_path / "q.tif", a)
    x0, y0, x1, y1 = extent((16, 16))
    zone = shapely.box(x0 + 25, y0 + 25, x1 - 15, y1 - 15)
    r = extract_stats([path], zones_from_geometries([zone], UTM_CRS), ExtractSpec(["median", "percentiles"],
                percentiles=[25, 75]), tile_size=8)
    w = reference_weights(zone, UTM_TRANSFORM, (16, 16), "centre")
    v = a[w > 0]
    assert r.plan.groups[0].assignment.parts[0] == 4
    assert r.stats.quantiles[0, 0].tolist() == [np.median(v), np.percentile(v, 25), np.percentile(v, 75)]


# -- edge cases ---------------------------------------------------------------------------------------------

def test_features_outside_the_rasters_keep_their_rows(scenes):
    x0, y0, x1, y1 = extent()
    far = [shapely.box(x1 + 10, y0, x1 + 50, y0 + 40), shapely.Point(x0 - 5, y1 + 5).buffer(3), None,
           shapely.box(x1 + 1000, y0, x1 + 1100, y0 + 100)]
    r = extract_stats(scenes, zones_from_geometries(far, UTM_CRS), ExtractSpec(["mean", "count", "sum"]))
    assert r.stats.n_valid.tolist() == [[0, 0, 0]] * 4
    # next to the grid the geometry is kept (a window could reach in); far from it, not
    assert r.plan.groups[0].footprints.kind.tolist() == [0, 0, -1, -1]
    assert r.stats.count.tolist() == [[0.0, 0.0, 0.0]] * 4
    assert np.isnan(r.stats.mean).all() and np.isnan(r.stats.total).all()
    table = r.table("long")
    assert len(table) == 12 and np.isnan(table.columns["mean"]).all()


def test_min_valid_fraction_counts_pixels_outside_the_raster_as_missing(tmp_path):
    """A field half outside the raster has a valid fraction of one half, clouds lower it further."""
    a = np.ones((20, 20), np.float32)
    a[:, 15:] = np.nan                                            # a cloud over the field's right half
    path = write_raster(tmp_path / "a.tif", a)
    x0, y0, x1, y1 = extent((20, 20))
    field = shapely.box(x0 - 100, y1 - 100, x0 + 100, y1)        # 20 x 10 pixels, half outside
    inside_clear = shapely.box(x0 + 50, y0, x0 + 150, y0 + 100)  # 10 x 10, no cloud
    zones = zones_from_geometries([field, inside_clear], UTM_CRS)
    for threshold, expected in [(0.0, [True, True]), (0.5, [True, True]), (0.51, [False, True])]:
        r = extract_stats([path], zones, ExtractSpec(["mean", "count"], min_valid_fraction=threshold), tile_size=8)
        assert r.stats.valid_fraction[:, 0].tolist() == pytest.approx([0.5, 1.0])
        assert r.stats.valid[:, 0].tolist() == expected
        assert r.stats.count[:, 0].tolist() == [100.0, 100.0]    # count stays, the statistics go null
    cloud_field = shapely.box(x0 + 100, y1 - 100, x0 + 200, y1)  # 10 x 10, half under the cloud
    r = extract_stats([path], zones_from_geometries([cloud_field], UTM_CRS),
                      ExtractSpec(["mean"], min_valid_fraction=0.6))
    assert r.stats.valid_fraction[0, 0] == pytest.approx(0.5) and np.isnan(r.stats.mean[0, 0])


def test_polygon_smaller_than_a_pixel_gets_its_covered_pixels(tmp_path):
    """In centre coverage a polygon holding no pixel centre falls back to covered fractions, like QGIS."""
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    path = write_raster(tmp_path / "a.tif", a)
    x0, y0, x1, y1 = extent((4, 4))
    tiny = shapely.box(x0 + 18, y1 - 8, x0 + 23, y1 - 4)        # over pixels (0, 1) 2/5 and (0, 2) 3/5
    for coverage in ("centre", "fractional"):
        r = extract_stats([path], zones_from_geometries([tiny], UTM_CRS), ExtractSpec(["mean", "count", "min", "max"],
                    coverage=coverage))
        assert r.stats.mean[0, 0] == pytest.approx(1 * 0.4 + 2 * 0.6)
        assert r.stats.count[0, 0] == pytest.approx(0.2)         # 20 m2 of a 100 m2 pixel
        assert (r.stats.vmin[0, 0], r.stats.vmax[0, 0], r.stats.n_valid[0, 0]) == (1.0, 2.0, 2)
    r = extract_stats([path], zones_from_geometries([tiny], UTM_CRS), ExtractSpec(["mean"], coverage="all_touched"))
    assert r.stats.mean[0, 0] == 1.5


def test_masked_arrays_and_nan_are_the_same_mask():
    rng = np.random.default_rng(0)
    band = rng.normal(0, 1, (12, 12))
    mask = rng.random((12, 12)) < 0.3
    fp = footprints_from_pixels([shapely.box(1.2, 0.5, 9.7, 11.1), shapely.Point(5, 5).buffer(3.3)], 12, 12)
    for mode in range(3):
        cover = cover_tile(fp, np.arange(2), 0, 0, 12, 12, mode)
        kw = dict(complete=np.ones(2, bool), weighted=np.full(2, mode == 2), quantiles=[0.5, 0.9])
        a = reduce_tile(cover, [np.ma.MaskedArray(band, mask)], **kw)
        b = reduce_tile(cover, [np.where(mask, np.nan, band)], **kw)
        c = reduce_tile(cover, [band], **kw)
        np.testing.assert_array_equal(a.quantiles, b.quantiles)
        np.testing.assert_array_equal(a.mean, b.mean)
        assert np.all(a.n < c.n) and np.all(a.n > 0)


def test_zones_in_another_crs_are_reprojected_to_each_raster(tmp_path):
    """Zones in EPSG:4326 over rasters in UTM 33N and 32N: each raster sees the zones in its own CRS."""
    import rasterio.warp
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (60, 60)).astype(np.float32)
    t33 = Affine(10, 0, 500000, 0, -10, 5000000)
    p33 = write_raster(tmp_path / "utm33.tif", a, crs="EPSG:32633", transform=t33)
    left, top = rasterio.warp.transform("EPSG:32633", "EPSG:32632", [500000], [5000000])
    t32 = Affine(10, 0, round(left[0]), 0, -10, round(top[0]))
    p32 = write_raster(tmp_path / "utm32.tif", a * 2, crs="EPSG:32632", transform=t32)
    utm = [shapely.Point(500000 + x, 5000000 - y).buffer(r) for x, y, r in rng.uniform(80, 520, (12, 3))]
    wgs = [shapely.geometry.shape(rasterio.warp.transform_geom("EPSG:32633", "EPSG:4326", g)) for g in utm]
    spec = ExtractSpec(["mean", "median", "count"], coverage="fractional")
    both = extract_stats([p33, p32], zones_from_geometries(wgs, "EPSG:4326"), spec, tile_size=16)
    assert len(both.plan.groups) == 2
    for i, (path, crs) in enumerate([(p33, "EPSG:32633"), (p32, "EPSG:32632")]):
        local = [shapely.geometry.shape(rasterio.warp.transform_geom("EPSG:4326", crs, g)) for g in wgs]
        alone = extract_stats([path], zones_from_geometries(local, crs), spec)
        np.testing.assert_allclose(both.stats.mean[:, i], alone.stats.mean[:, 0], rtol=1e-9)
        np.testing.assert_allclose(both.stats.count[:, i], alone.stats.count[:, 0], rtol=1e-9)
    assert np.all(both.stats.count[:, 0] > 100)


@pytest.mark.parametrize("coverage", ["centre", "fractional"])
def test_lines_take_the_pixels_they_cross(tmp_path, coverage):
    """A line's pixels are those it passes through, weighted by the length inside them (fractional)."""
    a = np.arange(400, dtype=np.float32).reshape(20, 20)
    path = write_raster(tmp_path / "a.tif", a)
    x0, y0, x1, y1 = extent((20, 20))
    line = shapely.LineString([(x0 + 13, y1 - 17), (x0 + 141, y1 - 96), (x0 + 33, y1 - 188)])
    r = extract_stats([path], zones_from_geometries([line], UTM_CRS), ExtractSpec(["mean", "count"], coverage=coverage),
                tile_size=8)
    boxes, rows, cols = pixel_boxes(UTM_TRANSFORM, (20, 20))
    lengths = shapely.length(shapely.intersection(boxes, line)) / 10.0
    w = lengths if coverage == "fractional" else (lengths > 1e-9).astype(float)
    assert r.stats.count[0, 0] == pytest.approx(w.sum())
    assert r.stats.mean[0, 0] == pytest.approx(np.sum(w * a[rows, cols]) / w.sum())


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32"])
def test_order_statistics_equal_numpy(dtype):
    """Medians and percentiles of whole pixels (counting selection for small integers, quickselect
    otherwise) equal numpy's, for every count of values from 1 on: values over the type's whole range
    (ranks in many buckets of the high digit) and in a narrow one (ranks sharing a bucket)."""
    rng = np.random.default_rng(7)
    qs = [0.0, 10.0, 25.0, 50.0, 62.5, 99.0, 100.0]
    info = np.iinfo(dtype) if dtype != "float32" else None
    for i, n in enumerate([n for n in list(range(1, 40)) + [257, 1000] for _ in range(2)]):
        if info is not None:
            narrow = i % 2 == 1 and info.bits > 8
            low, high = (int(info.min) + 1000, int(info.min) + 1600) if narrow else (int(info.min), int(info.max) + 1)
            v = rng.integers(low, high, n).astype(dtype)
            if n % 3 == 0:
                v[: n // 2] = v[0]                                   # ties
        else:
            v = rng.normal(0, 100, n).astype(dtype)
        band = v.reshape(1, n)
        fp = footprints_from_pixels([shapely.box(0, 0, n, 1)], 1, n)
        cover = cover_tile(fp, np.array([0]), 0, 0, 1, n, 0)
        part = reduce_tile(cover, [band], complete=np.array([True]), weighted=np.array([False]),
                           quantiles=[0.5] + [q / 100 for q in qs])
        want = [np.median(v.astype(np.float64))] + [np.percentile(v.astype(np.float64), q) for q in qs]
        assert part.quantiles[0, 0].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12), (dtype, n)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32"])
def test_weighted_quantiles_equal_the_transcription_of_exactextract(dtype):
    """Weighted medians and percentiles (counting sort for small integers, argsort otherwise) equal the
    reference transcription of exactextract's formula, ties and all."""
    from extract_reference import exactextract_quantile
    rng = np.random.default_rng(8)
    info = np.iinfo(dtype) if dtype != "float32" else None
    for n in list(range(1, 30)) + [300]:
        v = (rng.integers(info.min, int(info.max) + 1, n) if info is not None else rng.normal(0, 9, n)).astype(dtype)
        if n > 3:
            v[: n // 3] = v[1]
        w = rng.uniform(0.01, 1.0, n)
        fp = footprints_from_pixels([shapely.box(0, 0, n, 1)], 1, n)
        cover = cover_tile(fp, np.array([0]), 0, 0, 1, n, 2)
        cover = type(cover)(**{**cover.__dict__, "weights": w})
        part = reduce_tile(cover, [v.reshape(1, n)], complete=np.array([True]), weighted=np.array([True]),
                           quantiles=[0.5, 0.0, 0.1, 0.9, 1.0])
        want = [exactextract_quantile(v.astype(np.float64), w, q) for q in (0.5, 0.0, 0.1, 0.9, 1.0)]
        assert part.quantiles[0, 0].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12), (dtype, n)


def test_without_moments_the_std_is_null_and_the_rest_unchanged(scenes, polygons):
    """``moments=False`` (no std asked, no plot) skips the sums of squares: the std is null, never a
    false 0, and every other statistic is the same."""
    spec = ExtractSpec(ALL, percentiles=PERCENTILES, coverage="centre")
    zones = zones_from_geometries(polygons, crs=UTM_CRS)
    full = extract_stats(scenes, zones, spec, tile_size=32)
    lean = extract_stats(scenes, zones, spec, tile_size=32, moments=False)
    assert np.all(np.isnan(lean.stats.std)) and np.any(np.isfinite(full.stats.std))
    for name in ("mean", "vmin", "vmax", "count", "total", "n_valid", "quantiles"):
        np.testing.assert_array_equal(getattr(lean.stats, name), getattr(full.stats, name), err_msg=name)

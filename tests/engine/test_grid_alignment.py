"""Inputs on another CRS, resolution or lattice are aligned to the reference grid; plan_grid options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject, transform, transform_bounds

from tilewise.core import composite
from tilewise.core.errors import GridError
from tilewise.core.options import GridOptions, plan_grid
from tilewise.core.io.sources import RasterInfo

from support import as_output, read_raster, to_nan_stack

H, W = 90, 120
UTM = "EPSG:32633"
REF_TRANSFORM = Affine(30.0, 0.0, 500_000.0, 0.0, -30.0, 5_000_000.0)
ND = -9999


def warp(array, src_transform, src_crs, dst_transform, dst_crs, shape, resampling=Resampling.nearest):
    """``array`` reprojected with rasterio.warp.reproject, nodata ND."""
    out = np.full(shape, ND, array.dtype)
    reproject(array, out, src_transform=src_transform, src_crs=src_crs, dst_transform=dst_transform,
              dst_crs=dst_crs, resampling=resampling, src_nodata=ND, dst_nodata=ND)
    return out


def nearest_candidates(src, src_transform, src_crs, dst_transform, dst_crs, shape, tol=0.125):
    """For every destination pixel, the values nearest-neighbour resampling may pick when the
    source coordinates are exact to ``tol`` pixels (GDAL's default warp error threshold):
    an array (4, rows, cols), ND outside the source."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    xs, ys = dst_transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    sx, sy = transform(dst_crs, src_crs, xs, ys)
    c, r = ~src_transform @ (np.asarray(sx), np.asarray(sy))
    out = []
    for dr in (-tol, tol):
        for dc in (-tol, tol):
            ri, ci = np.floor(r + dr).astype(int), np.floor(c + dc).astype(int)
            inside = (ri >= 0) & (ri < src.shape[0]) & (ci >= 0) & (ci < src.shape[1])
            v = np.full(ri.shape, ND, src.dtype)
            v[inside] = src[ri[inside], ci[inside]]
            out.append(v.reshape(shape))
    return np.stack(out)


@pytest.fixture
def scenes(raster):
    """``a``: the reference, on a 30 m UTM grid. ``b``: part of another scene reprojected to Web
    Mercator at 45 m. ``c``: a scene on the reference lattice, shifted by whole pixels and smaller.
    ``d``: a UTM scene at 45 m, its origin off the reference lattice."""
    rng = np.random.default_rng(0)
    a = rng.integers(1, 1000, (H, W)).astype("int16")
    b_utm = rng.integers(1, 1000, (H, W)).astype("int16")
    left, top = REF_TRANSFORM.c, REF_TRANSFORM.f
    bounds = (left + 600, top - 30 * H + 450, left + 30 * W - 300, top - 900)   # inside a's extent
    b_transform, bw, bh = calculate_default_transform(UTM, "EPSG:3857", W, H, *bounds, resolution=45.0)
    b = warp(b_utm, REF_TRANSFORM, UTM, b_transform, "EPSG:3857", (bh, bw))
    c = rng.integers(1, 1000, (50, 70)).astype("int16")
    c_transform = REF_TRANSFORM @ Affine.translation(-7, 13)   # 7 columns west, 13 rows south
    d = rng.integers(1, 1000, (40, 60)).astype("int16")
    d_transform = Affine(45.0, 0.0, left + 307.3, 0.0, -45.0, top - 211.9)
    return dict(
        a=raster("a_utm.tif", a, crs=UTM, transform=REF_TRANSFORM, nodata=ND),
        b=raster("b_mercator.tif", b, crs="EPSG:3857", transform=b_transform, nodata=ND),
        c=raster("c_shifted.tif", c, crs=UTM, transform=c_transform, nodata=ND),
        d=raster("d_45m.tif", d, crs=UTM, transform=d_transform, nodata=ND),
        a_data=a, b_data=b, b_transform=b_transform, c_data=c, d_data=d, d_transform=d_transform)


def assert_reference_grid(path):
    with rasterio.open(path) as src:
        assert src.crs == CRS.from_user_input(UTM)
        assert src.transform.almost_equals(REF_TRANSFORM, precision=1e-9)
        assert (src.height, src.width) == (H, W)


@pytest.mark.parametrize("tile_size", [16, 33, 200])
def test_reprojected_input_agrees_with_rasterio_reproject(scenes, tmp_path, tile_size):
    """A Web Mercator input read on the UTM reference grid, tile by tile, agrees with a whole-raster
    nearest-neighbour reprojection by rasterio: exactly, except where a pixel centre falls within
    GDAL's 0.125-pixel warp tolerance of a source pixel edge, where it may take that neighbour."""
    out = str(tmp_path / "out.tif")
    composite([scenes["a"], scenes["b"]], out, "count", tile_size=tile_size, workers=1)
    assert_reference_grid(out)
    composite([scenes["b"]], out, "max", reference=scenes["a"], tile_size=tile_size, workers=1)
    assert_reference_grid(out)
    expected = warp(scenes["b_data"], scenes["b_transform"], "EPSG:3857", REF_TRANSFORM, UTM, (H, W))
    assert 0.3 < np.mean(expected == ND) < 0.8    # b covers part of the reference grid
    data, _ = read_raster(out)
    got = data[0]
    same = got == as_output(to_nan_stack([expected], ND)[0])
    assert same.mean() > 0.99
    candidates = nearest_candidates(scenes["b_data"], scenes["b_transform"], "EPSG:3857",
                                    REF_TRANSFORM, UTM, (H, W)).astype("float32")
    assert np.any(candidates == expected, axis=0).all()           # the helper agrees with rasterio
    assert np.any(candidates == got, axis=0).all(), np.argwhere(~np.any(candidates == got, axis=0))[:5]


def test_reprojected_input_does_not_depend_on_tiles(scenes, tmp_path):
    outputs = []
    for tile_size in (8, 40, 512):
        out = str(tmp_path / f"out{tile_size}.tif")
        composite([scenes["b"]], out, "max", reference=scenes["a"], tile_size=tile_size, workers=1)
        outputs.append(read_raster(out)[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize("tile_size", [16, 33, 200])
def test_other_resolution_equals_rasterio_reproject(scenes, tmp_path, tile_size):
    """Same CRS, 45 m pixels off the reference lattice: the warp is affine, so exactly reproject's."""
    out = str(tmp_path / "out.tif")
    composite([scenes["d"]], out, "max", reference=scenes["a"], tile_size=tile_size, workers=1)
    assert_reference_grid(out)
    expected = warp(scenes["d_data"], scenes["d_transform"], UTM, REF_TRANSFORM, UTM, (H, W))
    assert 0.1 < np.mean(expected == ND) < 0.9
    data, _ = read_raster(out)
    np.testing.assert_array_equal(data[0], as_output(to_nan_stack([expected], ND)[0]))


@pytest.mark.parametrize("workers", [1, 2])
def test_mixed_grids_are_composited_on_the_first_input_grid(scenes, tmp_path, pool, workers):
    out = str(tmp_path / "out.tif")
    paths = [scenes["a"], scenes["d"], scenes["c"]]
    executor = pool if workers == 2 else None
    composite(paths, out, "count", tile_size=32, workers=1, executor=executor)
    assert_reference_grid(out)
    d_on_a = warp(scenes["d_data"], scenes["d_transform"], UTM, REF_TRANSFORM, UTM, (H, W))
    c_on_a = np.full((H, W), ND, "int16")
    c_on_a[13:13 + 50, 0:70 - 7] = scenes["c_data"][:H - 13, 7:]
    stack = to_nan_stack([scenes["a_data"], d_on_a, c_on_a], ND)
    data, _ = read_raster(out)
    np.testing.assert_array_equal(data[0], np.sum(~np.isnan(stack), axis=0))
    assert set(np.unique(data[0])) == {1.0, 2.0, 3.0}
    composite(paths, out, "median", tile_size=32, workers=1, executor=executor)
    data, _ = read_raster(out)
    np.testing.assert_array_equal(data[0], as_output(np.nanmedian(stack, axis=0)))


def test_reference_option_takes_another_rasters_grid(scenes, tmp_path):
    """With the Mercator scene first, ``reference`` still puts the output on the UTM grid."""
    out = str(tmp_path / "out.tif")
    composite([scenes["b"], scenes["a"]], out, "min", reference=scenes["a"], tile_size=64, workers=1)
    assert_reference_grid(out)
    with rasterio.open(scenes["b"]) as b:
        composite([scenes["b"], scenes["a"]], str(tmp_path / "default.tif"), "min", tile_size=64, workers=1)
        with rasterio.open(tmp_path / "default.tif") as d:
            assert (d.crs, d.transform, d.shape) == (b.crs, b.transform, b.shape)


def test_extent_option_snaps_to_reference_pixels(scenes, tmp_path):
    out = str(tmp_path / "out.tif")
    extent = (500_000 + 95.0, 5_000_000 - 1000.0, 500_000 + 1504.0, 5_000_000 - 301.0)
    composite([scenes["a"]], out, "max", extent=extent, tile_size=16, workers=1)
    with rasterio.open(out) as src:
        assert src.transform.almost_equals(Affine(30, 0, 500_090, 0, -30, 5_000_000 - 300), precision=1e-6)
        assert (src.height, src.width) == (24, 48)    # rows 10..33, cols 3..50
        np.testing.assert_array_equal(src.read(1), scenes["a_data"][10:34, 3:51])


def test_extent_beyond_the_input_is_nodata(scenes, tmp_path):
    out = str(tmp_path / "out.tif")
    left, top = REF_TRANSFORM.c, REF_TRANSFORM.f
    extent = (left - 300, top - 600, left + 300, top + 300)   # 10 columns west, 10 rows north
    composite([scenes["a"]], out, "max", extent=extent, tile_size=8, workers=1)
    data, _ = read_raster(out)
    assert data.shape == (1, 30, 20)
    assert (data[0, :10] == -9999).all() and (data[0, :, :10] == -9999).all()
    np.testing.assert_array_equal(data[0, 10:, 10:], scenes["a_data"][:20, :10])


def test_cell_size_option_resamples_the_reference_grid(scenes, tmp_path):
    out = str(tmp_path / "out.tif")
    composite([scenes["a"]], out, "max", cell_size=60, tile_size=16, workers=1)
    with rasterio.open(out) as src:
        assert src.res == (60.0, 60.0)
        assert (src.height, src.width) == (H // 2, W // 2)
        assert src.bounds == rasterio.open(scenes["a"]).bounds
        # nearest neighbour: each 60 m pixel centre falls in one 30 m pixel
        np.testing.assert_array_equal(src.read(1), scenes["a_data"][1::2, 1::2])


def test_crs_option_reprojects_to_that_crs(scenes, tmp_path):
    out = str(tmp_path / "out.tif")
    composite([scenes["a"]], out, "max", crs="EPSG:4326", tile_size=32, workers=1)
    with rasterio.open(out) as src:
        assert src.crs == CRS.from_epsg(4326)
        expected = warp(scenes["a_data"], REF_TRANSFORM, UTM, src.transform, "EPSG:4326", src.shape)
        np.testing.assert_array_equal(src.read(1), as_output(to_nan_stack([expected], ND)[0]))


# --- plan_grid on plain values -----------------------------------------------------------

def info(transform=(10.0, 0.0, 1000.0, 0.0, -10.0, 2000.0), width=50, height=40, crs=UTM) -> RasterInfo:
    wkt = CRS.from_user_input(crs).to_wkt() if crs else ""
    return RasterInfo("ref.tif", 1, ("float32",), None, wkt, transform, width, height)


def test_plan_grid_defaults_to_the_reference_grid():
    grid = plan_grid(info(), GridOptions())
    assert grid.transform == (10.0, 0.0, 1000.0, 0.0, -10.0, 2000.0)
    assert (grid.width, grid.height) == (50, 40)
    assert CRS.from_user_input(grid.crs) == CRS.from_user_input(UTM)


def test_plan_grid_without_crs():
    grid = plan_grid(info(crs=None), GridOptions(extent=(1000, 1800, 1100, 2000)))
    assert grid.crs == ""
    assert (grid.width, grid.height) == (10, 20)


coords = st.floats(-2000, 2000, allow_nan=False).map(lambda v: round(v, 3))


@settings(max_examples=200, deadline=None)
@given(x0=coords, y0=coords, w=st.floats(1, 1500), h=st.floats(1, 1500))
def test_plan_grid_extent_is_snapped_outward_to_reference_pixels(x0, y0, w, h):
    extent = (x0, y0, x0 + w, y0 + h)
    grid = plan_grid(info(), GridOptions(extent=extent))
    xmin, ymin, xmax, ymax = grid.bounds
    eps = 2e-5     # snap_extent forgives a millionth of a pixel (1e-5 m here), and the doubles round around it
    assert grid.res == (10.0, 10.0)
    assert xmin <= extent[0] + eps and ymin <= extent[1] + eps
    assert xmax >= extent[2] - eps and ymax >= extent[3] - eps
    assert xmin > extent[0] - 10 - eps and xmax < extent[2] + 10 + eps        # at most one pixel more
    assert ymin > extent[1] - 10 - eps and ymax < extent[3] + 10 + eps
    for x in (xmin, xmax):                                                    # on the reference lattice
        assert math.isclose((x - 1000) / 10, round((x - 1000) / 10), abs_tol=1e-6)
    for y in (ymin, ymax):
        assert math.isclose((2000 - y) / 10, round((2000 - y) / 10), abs_tol=1e-6)


@pytest.mark.parametrize("cell_size,res", [(25, (25.0, 25.0)), ((20, 5), (20.0, 5.0)), (0, (10.0, 10.0))])
def test_plan_grid_cell_size_covers_the_reference_extent(cell_size, res):
    grid = plan_grid(info(), GridOptions(cell_size=cell_size))
    assert grid.res == res
    xmin, ymin, xmax, ymax = grid.bounds
    assert (xmin, ymax) == (1000.0, 2000.0)
    assert 1500 <= xmax < 1500 + res[0] and 1600 - res[1] < ymin <= 1600


def test_plan_grid_extent_and_cell_size_are_taken_as_given():
    grid = plan_grid(info(), GridOptions(extent=(1003, 1501, 1203, 1601), cell_size=20))
    assert grid.transform == (20.0, 0.0, 1003.0, 0.0, -20.0, 1601.0)
    assert (grid.width, grid.height) == (10, 5)


def test_plan_grid_crs_covers_the_reprojected_reference():
    ref = info(transform=REF_TRANSFORM[:6], width=W, height=H)
    grid = plan_grid(ref, GridOptions(crs="EPSG:3857"))
    assert CRS.from_user_input(grid.crs) == CRS.from_epsg(3857)
    left, top = REF_TRANSFORM.c, REF_TRANSFORM.f
    wanted = transform_bounds(UTM, "EPSG:3857", left, top - 30 * H, left + 30 * W, top)
    xmin, ymin, xmax, ymax = grid.bounds
    tol = max(grid.res)
    assert xmin <= wanted[0] + tol and ymin <= wanted[1] + tol
    assert xmax >= wanted[2] - tol and ymax >= wanted[3] - tol


def test_plan_grid_crs_with_extent_and_cell_size():
    grid = plan_grid(info(), GridOptions(crs="EPSG:3857", extent=(0, 0, 1000, 500), cell_size=100))
    assert CRS.from_user_input(grid.crs) == CRS.from_epsg(3857)
    assert grid.transform == (100.0, 0.0, 0.0, 0.0, -100.0, 500.0)
    assert (grid.width, grid.height) == (10, 5)


def test_plan_grid_same_crs_given_as_text_keeps_the_grid():
    grid = plan_grid(info(), GridOptions(crs="EPSG:32633"))
    assert grid.transform == (10.0, 0.0, 1000.0, 0.0, -10.0, 2000.0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(extent=(0, 0, 1)), "four numbers"),
    (dict(extent=(10, 0, 5, 5)), "empty"),
    (dict(extent=(0, 5, 10, 5)), "empty"),
    (dict(crs="EPSG:999999"), "Unknown target CRS"),
    (dict(cell_size=(0, 10), extent=(0, 0, 10, 10)), "positive"),
])
def test_plan_grid_rejects_bad_values(kwargs, message):
    with pytest.raises(GridError, match=message):
        plan_grid(info(), GridOptions(**kwargs))


def test_plan_grid_rejects_a_rotated_reference():
    with pytest.raises(GridError, match="rotated"):
        plan_grid(info(transform=(10.0, 1.0, 1000.0, 0.0, -10.0, 2000.0)), GridOptions())


def test_plan_grid_extent_on_a_fine_lattice_keeps_its_size():
    """An extent of 499 x 499 pixels of a 0.1 m reference at UTM coordinates is 499 x 499 pixels."""
    r = 0.1
    ref = info(transform=(r, 0.0, 500_000.0, 0.0, -r, 5_000_000.0), width=5000, height=5000)
    extent = (500_000.0 + 7 * r, 5_000_000.0 - 502 * r, 500_000.0 + 506 * r, 5_000_000.0 - 3 * r)
    grid = plan_grid(ref, GridOptions(extent=extent))
    assert (grid.width, grid.height) == (499, 499)
    assert math.isclose(grid.transform[2], 500_000.7, abs_tol=1e-6)
    assert math.isclose(grid.transform[5], 4_999_999.7, abs_tol=1e-6)

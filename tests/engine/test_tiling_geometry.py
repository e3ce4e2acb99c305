"""Tiling geometry as properties (hypothesis): plan_tiles, snap_extent, grid_from_extent."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilewise.core.errors import GridError, ParameterError
from tilewise.core.grid import (Grid, auto_tile_size, balance_tile_size, grid_from_extent, smaller_tile_size,
                                parse_cell_size, plan_tiles, snap_extent)

sizes = st.integers(1, 700)
tile_sizes = st.integers(8, 300)
resolutions = st.sampled_from([0.1, 0.25, 0.3, 1.0, 10.0, 20.0, 30.0])
origins = st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 2))
#: (origin x, origin y, res x, res y) of projected grids (UTM northings reach 1e7, drone pixels
#: 0.1 m) and of geographic ones (degrees, 1 arc-second pixels).
projected = st.tuples(st.floats(-1e6, 1e6).map(lambda v: round(v, 2)), st.floats(-1e7, 1e7).map(lambda v: round(v, 2)),
                      resolutions, resolutions)
degrees = st.sampled_from([1 / 3600, 0.000269494585236, 0.001, 0.25])
geographic = st.tuples(st.floats(-180, 180).map(lambda v: round(v, 4)), st.floats(-90, 90).map(lambda v: round(v, 4)),
                       degrees, degrees)
lattices = st.one_of(projected, geographic)


def grid(width: int, height: int, res: float = 10.0, x0: float = 500_000.0, y0: float = 5_000_000.0) -> Grid:
    return Grid("EPSG:32633", (res, 0.0, x0, 0.0, -res, y0), width, height)


@settings(max_examples=300, deadline=None)
@given(width=sizes, height=sizes, tile_size=tile_sizes)
def test_every_pixel_is_in_exactly_one_tile(width, height, tile_size):
    tiles = plan_tiles(grid(width, height), tile_size)
    cover = np.zeros((height, width), np.int32)
    for t in tiles:
        assert 0 <= t.row_off and t.row_off + t.height <= height      # within the grid
        assert 0 <= t.col_off and t.col_off + t.width <= width
        assert 1 <= t.height <= tile_size and 1 <= t.width <= tile_size
        cover[t.slices()] += 1
    assert (cover == 1).all()
    assert len(tiles) == math.ceil(width / tile_size) * math.ceil(height / tile_size)
    assert [t.index for t in tiles] == list(range(len(tiles)))


@settings(max_examples=200, deadline=None)
@given(width=sizes, height=sizes, tile_size=tile_sizes)
def test_tiles_are_row_major_and_grouped_by_rows(width, height, tile_size):
    tiles = plan_tiles(grid(width, height), tile_size)
    assert tiles == sorted(tiles, key=lambda t: (t.row_off, t.col_off))
    rows = [list(row) for _, row in itertools.groupby(tiles, key=lambda t: t.row_off)]
    assert [t for row in rows for t in row] == tiles
    assert len(rows) == math.ceil(height / tile_size)
    for row in rows:
        assert len({t.row_off for t in row}) == 1
        assert sum(t.width for t in row) == width


@settings(max_examples=200, deadline=None)
@given(width=sizes, height=sizes, tile_size=tile_sizes, res=resolutions, x0=origins, y0=origins)
def test_window_transform_places_tiles_on_the_grid(width, height, tile_size, res, x0, y0):
    g = grid(width, height, res, x0, y0)
    for t in plan_tiles(g, tile_size):
        a, b, c, d, e, f = g.window_transform(t)
        assert (a, b, d, e) == (res, 0.0, 0.0, -res)
        assert math.isclose(c, x0 + t.col_off * res, rel_tol=1e-12, abs_tol=1e-6)
        assert math.isclose(f, y0 - t.row_off * res, rel_tol=1e-12, abs_tol=1e-6)


@pytest.mark.parametrize("tile_size", [-1, 0, 7])
def test_tiles_smaller_than_8_pixels_are_refused(tile_size):
    with pytest.raises(ParameterError):
        plan_tiles(grid(10, 10), tile_size)


@pytest.mark.parametrize("width,height", [(0, 5), (5, 0), (-1, 3)])
def test_empty_grid_is_refused(width, height):
    with pytest.raises(GridError):
        grid(width, height)


def test_grid_bounds():
    g = grid(30, 20, 0.5, 1.5, 2.5)
    assert g.bounds == (1.5, 2.5 - 10.0, 1.5 + 15.0, 2.5)


def on_lattice(value: float, origin: float, res: float) -> bool:
    k = (value - origin) / res
    return math.isclose(k, round(k), abs_tol=1e-6)


@st.composite
def lattice_and_extent(draw):
    """A lattice and an extent near its origin (within 2000 pixels, up to 3000 pixels wide)."""
    ox, oy, rx, ry = draw(lattices)
    x0 = ox + draw(st.floats(-2000, 2000)) * rx
    y0 = oy + draw(st.floats(-2000, 2000)) * ry
    w = draw(st.floats(0.01, 3000)) * rx
    h = draw(st.floats(0.01, 3000)) * ry
    return (ox, oy, rx, ry), (x0, y0, x0 + w, y0 + h)


@settings(max_examples=300, deadline=None)
@given(case=lattice_and_extent())
def test_snap_extent_is_the_smallest_lattice_box_around_the_extent(case):
    (ox, oy, rx, ry), extent = case
    x0, y0, x1, y1 = snap_extent(extent, (ox, oy), (rx, ry))
    tx, ty = 1e-6 * rx, 1e-6 * ry            # snap_extent forgives a millionth of a pixel
    assert x0 <= extent[0] + tx and y0 <= extent[1] + ty
    assert x1 >= extent[2] - tx and y1 >= extent[3] - ty
    assert x0 > extent[0] - rx - tx and x1 < extent[2] + rx + tx        # no more than needed
    assert y0 > extent[1] - ry - ty and y1 < extent[3] + ry + ty
    assert on_lattice(x0, ox, rx) and on_lattice(x1, ox, rx)
    assert on_lattice(y0, oy, ry) and on_lattice(y1, oy, ry)


@settings(max_examples=300, deadline=None)
@given(lattice=lattices, i=st.integers(-2000, 2000), j=st.integers(-2000, 2000),
       w=st.integers(1, 3000), h=st.integers(1, 3000))
def test_extent_on_the_lattice_is_kept_pixel_for_pixel(lattice, i, j, w, h):
    """An extent of whole lattice pixels (as computed in floating point, e.g. from another layer
    on that lattice) gives back exactly those pixels, also for 0.1 m pixels at UTM northings."""
    ox, oy, rx, ry = lattice
    extent = (ox + i * rx, oy - (j + h) * ry, ox + (i + w) * rx, oy - j * ry)
    snapped = snap_extent(extent, (ox, oy), (rx, ry))
    for got, want, r in zip(snapped, extent, (rx, ry, rx, ry)):
        assert math.isclose(got, want, abs_tol=1e-6 * r)
    g = grid_from_extent("EPSG:32633", snapped, (rx, ry))
    assert (g.width, g.height) == (w, h)


def test_extent_of_a_drone_lattice_is_not_grown():
    """Regression: a 0.1 m lattice at a UTM northing, an extent of 499 x 499 of its pixels."""
    ox, oy, r = 500_000.0, 5_000_000.0, 0.1
    extent = (ox + 7 * r, oy - 502 * r, ox + 506 * r, oy - 3 * r)
    x0, y0, x1, y1 = snap_extent(extent, (ox, oy), (r, r))
    g = grid_from_extent("EPSG:32633", (x0, y0, x1, y1), (r, r))
    assert (g.width, g.height) == (499, 499)
    assert math.isclose(g.transform[5], oy - 3 * r, abs_tol=1e-7)


@settings(max_examples=300, deadline=None)
@given(case=lattice_and_extent())
def test_grid_from_extent_covers_the_extent_with_whole_pixels(case):
    (_, _, rx, ry), extent = case
    g = grid_from_extent("EPSG:3857", extent, (rx, ry))
    xmin, ymin, xmax, ymax = extent
    assert g.transform == (rx, 0.0, xmin, 0.0, -ry, ymax)               # anchored at the top left
    assert g.width >= 1 and g.height >= 1
    assert g.width * rx >= (xmax - xmin) - 1e-6 * rx                     # covers ...
    assert g.height * ry >= (ymax - ymin) - 1e-6 * ry
    assert (g.width - 1) * rx < xmax - xmin or g.width == 1              # ... with no spare column
    assert (g.height - 1) * ry < ymax - ymin or g.height == 1


@pytest.mark.parametrize("extent,res", [((0, 0, 0, 10), (1, 1)), ((0, 10, 5, 0), (1, 1)),
                                        ((0, 0, 10, 10), (0, 1)), ((0, 0, 10, 10), (1, 0))])
def test_grid_from_extent_refuses_empty_extents_and_zero_cells(extent, res):
    with pytest.raises(GridError):
        grid_from_extent("EPSG:3857", extent, res)


@pytest.mark.parametrize("value,expected", [(None, None), (0, None), (10, (10.0, 10.0)), (2.5, (2.5, 2.5)),
                                            ((10, 20), (10.0, 20.0)), ([1, 2], (1.0, 2.0))])
def test_parse_cell_size(value, expected):
    assert parse_cell_size(value) == expected


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), itemsize=st.sampled_from([4, 8]))
def test_auto_tile_size_fits_the_budget(n, itemsize):
    budget = 256 * 2**20
    size = auto_tile_size(n, itemsize, budget)
    assert size >= 64
    assert size <= 4 * 512
    if size > 64:                                                          # the floor may exceed it
        assert 2 * n * itemsize * size * size <= budget
    assert size % 512 == 0 or size & (size - 1) == 0                       # block multiple or power of two


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 5000), height=st.integers(1, 5000), workers=st.integers(1, 16),
       start=st.sampled_from([256, 512, 1024, 2048]))
def test_balance_tile_size_gives_each_worker_four_tiles_when_it_can(width, height, workers, start):
    size = balance_tile_size(grid(width, height), start, workers)
    assert size <= start and (size >= 256 or size == start)
    n = math.ceil(width / size) * math.ceil(height / size)
    assert n >= 4 * workers or smaller_tile_size(size) < 256 or workers == 1
    if size < start:  # shrunk only as far as needed
        chain = [start]
        while chain[-1] > size:
            chain.append(smaller_tile_size(chain[-1]))
        assert chain[-1] == size
        bigger = chain[-2]
        assert math.ceil(width / bigger) * math.ceil(height / bigger) < 4 * workers
    if size > 1024:   # large tiles stay on the outputs' 512-pixel blocks
        assert size % 512 == 0 or size == start

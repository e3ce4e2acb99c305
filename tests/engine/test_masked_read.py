"""io/sources.read_masked, the one masked read (the composite path's lattice read and the extraction use it):
a window of bands as stored, with the pixels that have no data — nodata values, else the dataset's mask."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from tilewise.core.grid import Grid, Tile
from tilewise.core.io.sources import read_masked, read_window
from tilewise.core.operations.extract import ExtractSpec, extract_stats, zones_from_geometries

from support import UTM_CRS, UTM_TRANSFORM, write_raster

WINDOW = Window(1, 2, 5, 4)
BOX = (slice(None), slice(2, 6), slice(1, 6))


def values(dtype):
    return np.arange(3 * 8 * 9, dtype=dtype).reshape(3, 8, 9) % 7


@pytest.mark.parametrize("dtype,nodata", [("uint16", 0), ("int16", 3), ("float32", 6.0), ("uint8", 0)])
def test_nodata_values_are_missing_band_by_band(tmp_path, dtype, nodata):
    data = values(dtype)
    path = write_raster(tmp_path / "a.tif", data, nodata=nodata)
    with rasterio.open(path) as src:
        got, missing = read_masked(src, [1, 3], WINDOW)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, data[[0, 2]][BOX])
        np.testing.assert_array_equal(missing, data[[0, 2]][BOX] == nodata)
        _, other = read_masked(src, [1, 3], WINDOW, nodata=5)                 # a nodata given instead
        np.testing.assert_array_equal(other, data[[0, 2]][BOX] == 5)


def test_a_nan_or_unrepresentable_nodata_marks_nothing_and_no_nodata_reads_the_dataset_mask(tmp_path):
    data = values("float32")
    data[0, 3, 3] = np.nan
    with rasterio.open(write_raster(tmp_path / "nan.tif", data, nodata=float("nan"))) as src:
        got, missing = read_masked(src, [1], WINDOW)
        assert missing is None and np.isnan(got[0, 1, 2])                    # NaN values are the caller's
    with rasterio.open(write_raster(tmp_path / "u8.tif", values("uint8"))) as src:
        assert read_masked(src, [1], WINDOW, nodata=-1)[1] is None          # no uint8 is -1
        assert read_masked(src, [1], WINDOW)[1] is None                     # no nodata, no mask
    mask = np.full((8, 9), 255, np.uint8)
    mask[3:5, 2:4] = 0
    path = str(tmp_path / "masked.tif")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=9, height=8, count=3, dtype="int16", crs=UTM_CRS,
                           transform=UTM_TRANSFORM) as dst:
            dst.write(values("int16"))
            dst.write_mask(mask)
    with rasterio.open(path) as src:
        _, missing = read_masked(src, [2, 3], WINDOW)
        np.testing.assert_array_equal(missing, mask[2:6, 1:6] == 0)          # one mask for every band
    # the composite path's read and the extraction agree with it: masked pixels are NaN / no value
    grid = Grid(UTM_CRS, tuple(UTM_TRANSFORM)[:6], 9, 8)
    out = np.empty((1, 8, 9), np.float64)
    read_window(path, [2], grid, Tile(0, 0, 0, 8, 9), out)
    np.testing.assert_array_equal(np.isnan(out[0]), mask == 0)
    x0, y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    size = UTM_TRANSFORM.a
    centres = shapely.points([x0 + size * 2.5, x0 + size * 6.5], [y0 - size * 3.5, y0 - size * 3.5])
    r = extract_stats([path], zones_from_geometries(centres, UTM_CRS), ExtractSpec(["mean"]), bands=[2])
    assert np.isnan(r.stats.mean[0, 0]) and r.stats.mean[1, 0] == values("int16")[1, 3, 6]

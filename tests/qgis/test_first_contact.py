"""First contact in QGIS: every kernel path run from processing.run with an empty numba cache.

A QGIS user's first run meets a cold cache: the engine compiles its kernels in its
worker processes then. Each test here gives the engine a fresh, empty
NUMBA_CACHE_DIR, whatever ran before it, and checks the result and that the run
compiled into that cache. The qgis_process runs are in test_qgis_process.py.
"""

import math
import os

import numpy as np
import pytest

from twtest import masked_stack, nan_reduce, read_raster, run, write_raster

STATISTICS = ["median", "mean", "min", "max", "std", "count", "percentile"]   # the algorithm's enum
PERCENTILES = (10.0, 50.0, 90.0)
#: input dtype -> nodata (float32 with NaN as nodata, float64 with a number)
NODATA = {"uint8": 0, "uint16": 0, "int16": -9999, "float32": math.nan, "float64": -9999.0}
REFERENCE = {"median": lambda s: nan_reduce(np.nanmedian, s)[np.newaxis],
             "mean": lambda s: nan_reduce(np.nanmean, s)[np.newaxis],
             "percentile": lambda s: nan_reduce(lambda a, axis: np.nanpercentile(a, PERCENTILES, axis=axis), s)}


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    """An empty numba cache for the engine of this test only."""
    folder = tmp_path / "numba-cache"
    folder.mkdir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(folder))
    return folder


def compiled_into(folder) -> list:
    return [name for _, _, files in os.walk(folder) for name in files if name.endswith(".nbi")]


def scene_values(rng, dtype, shape, nodata):
    if dtype == "uint8":
        a = rng.integers(1, 256, shape).astype(dtype)
    elif dtype in ("uint16", "int16"):
        a = rng.integers(-3000 if dtype == "int16" else 1, 20000, shape).astype(dtype)
    else:
        a = (rng.standard_normal(shape) * 1000).astype(dtype)
    a[rng.random(shape) < 0.2] = nodata
    return a


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """``scenes(dtype)`` -> (paths, arrays, nodata): four scenes; uint8 as in the report of the first-run
    failure (6 bands, 349 x 352, nodata 0), the others 2 bands of 90 x 130."""
    made = {}

    def get(dtype):
        if dtype not in made:
            folder = tmp_path_factory.mktemp(f"first-contact-{dtype}")
            rng = np.random.default_rng(len(made) + 11)
            shape = (6, 349, 352) if dtype == "uint8" else (2, 90, 130)
            nodata = NODATA[dtype]
            arrays = [scene_values(rng, dtype, shape, nodata) for _ in range(4)]
            paths = [write_raster(folder / f"scene{i}.tif", a, nodata=nodata) for i, a in enumerate(arrays)]
            made[dtype] = paths, arrays, nodata
        return made[dtype]
    return get


def check_bands(path, arrays, nodata, reference, per_band):
    """Every output band against numpy's value over the inputs' same band."""
    bands = arrays[0].shape[0]
    for b in range(bands):
        expected = reference(masked_stack([a[b] for a in arrays], None if math.isnan(nodata) else nodata))
        for k in range(per_band):
            out = read_raster(path, b * per_band + k + 1)
            valid = ~np.isnan(expected[k])
            np.testing.assert_array_equal(out.valid, valid, err_msg=f"band {b + 1}, value {k + 1}")
            np.testing.assert_allclose(out.array[valid], expected[k][valid], rtol=1e-6,
                                       err_msg=f"band {b + 1}, value {k + 1}")


#: Every input type and every statistic, and among them every kernel specialization a run compiles:
#: the integer key search (uint8, uint16, int16 medians and percentiles), the float32 key search, and
#: the per-pixel kernel on float32 stacks (means; integer inputs are read as float32) and on float64.
CASES = [("uint8", "median"), ("uint16", "percentile"), ("int16", "mean"), ("float32", "median"),
         ("float64", "percentile"), ("float64", "mean")]


@pytest.mark.parametrize("dtype, statistic", CASES)
def test_temporal_composite_with_a_cold_cache(dtype, statistic, scenes, cold_cache, out_dir):
    paths, arrays, nodata = scenes(dtype)
    result = run("tilewise:temporalmedian", {
        "INPUT": paths, "STATISTIC": STATISTICS.index(statistic), "PERCENTILES": ",".join(map(str, PERCENTILES)),
        "WORKERS": 2, "TILE_SIZE": 128 if dtype == "uint8" else 48, "OUTPUT": str(out_dir / "composite.tif")})
    per_band = len(PERCENTILES) if statistic == "percentile" else 1
    check_bands(result["OUTPUT"], arrays, nodata, REFERENCE[statistic], per_band)
    assert compiled_into(cold_cache), "the run compiled no kernel into the empty cache"


def test_mosaic_median_with_a_cold_cache(scenes, cold_cache, out_dir):
    paths, arrays, nodata = scenes("uint16")
    result = run("tilewise:mosaic", {"INPUT": paths, "OVERLAP": 5, "WORKERS": 2, "TILE_SIZE": 48,
                                     "OUTPUT": str(out_dir / "mosaic.tif")})
    # all four cover the same grid: the median of the valid values, band by band, in the inputs' type
    for b in range(2):
        expected = nan_reduce(np.nanmedian, masked_stack([a[b] for a in arrays], nodata))
        out = read_raster(result["OUTPUT"], b + 1)
        valid = ~np.isnan(expected)
        np.testing.assert_array_equal(out.valid, valid)
        np.testing.assert_array_equal(out.array[valid], np.rint(expected[valid]).astype(out.array.dtype))
    assert compiled_into(cold_cache)


def test_index_with_a_cold_cache(scenes, cold_cache, out_dir):
    paths, arrays, nodata = scenes("uint16")
    result = run("tilewise:ndvi", {"RED": paths[0], "RED_BAND": 1, "NIR": paths[0], "NIR_BAND": 2, "WORKERS": 2,
                                   "TILE_SIZE": 48, "OUTPUT": str(out_dir / "ndvi.tif")})
    red, nir = (np.where(arrays[0][i] == nodata, np.nan, arrays[0][i].astype(np.float64)) for i in (0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (nir - red) / (nir + red)
    out = read_raster(result["OUTPUT"])
    valid = np.isfinite(expected)
    np.testing.assert_array_equal(out.valid, valid)
    np.testing.assert_allclose(out.array[valid], expected[valid], rtol=1e-5, atol=1e-7)


def test_bandmath_with_a_cold_cache(scenes, cold_cache, out_dir):
    paths, arrays, nodata = scenes("float64")
    result = run("tilewise:bandmath", {"LAYERS": paths[:2], "BANDS": "A=1,B=2", "EXPRESSION": "A * 2 - B",
                                       "WORKERS": 2, "TILE_SIZE": 48, "OUTPUT": str(out_dir / "math.tif")})
    a = np.where(arrays[0][0] == nodata, np.nan, arrays[0][0])
    b = np.where(arrays[1][1] == nodata, np.nan, arrays[1][1])
    expected = a * 2 - b
    out = read_raster(result["OUTPUT"])
    valid = np.isfinite(expected)
    np.testing.assert_array_equal(out.valid, valid)
    np.testing.assert_allclose(out.array[valid], expected[valid], rtol=1e-6)

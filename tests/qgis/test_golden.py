"""Golden checks: tilewise:temporalmedian gives the same pixels as QGIS's own native:cellstatistics."""

import numpy as np
import pytest
from qgis.core import QgsApplication

from twtest import read_raster, run, write_raster

# Tilewise's statistic -> native:cellstatistics' (both population std)
CELL_STATISTICS = {"median": "Median", "mean": "Mean", "min": "Minimum", "max": "Maximum",
                   "std": "Standard deviation"}

# With an odd layer count QGIS 3.22's cellstatistics writes the median in the integer input type,
# truncating the half value of a pixel where nodata left an even count of values. So integer inputs
# come in an even count (where it writes float), floats in an odd one.
CASES = {"uint16 x4": ("uint16", 4, 0), "int16 x6": ("int16", 6, -32768), "float32 x5": ("float32", 5, -9999.0)}


def make_series(folder, dtype, count, nodata, shape=(157, 211), seed=1):
    """``count`` inputs with random values, nodata sprinkled in, a block where every input is nodata
    and a block where only one input has data."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        if dtype == "float32":
            a = rng.normal(1000, 300, shape).astype(np.float32)
        else:
            a = rng.integers(1, 3000, shape).astype(dtype)
        a[rng.random(shape) < 0.2] = nodata
        a[10:30, 40:90] = nodata
        if i:
            a[60:80, 100:150] = nodata
        paths.append(write_raster(folder / f"t{i}.tif", a, nodata=nodata))
    return paths


def tilewise_statistic(name):
    return QgsApplication.processingRegistry().algorithmById("tilewise:temporalmedian").parameterDefinition(
        "STATISTIC").options().index(name)


def cell_statistic(label):
    return QgsApplication.processingRegistry().algorithmById("native:cellstatistics").parameterDefinition(
        "STATISTIC").options().index(label)


def qgis_nodata(series):
    """cellstatistics' default -9999 does not fit the integer input type it writes min, max and count in."""
    dtype = read_raster(series[0]).array.dtype
    return float(np.iinfo(dtype).max) if dtype.kind in "iu" else -9999.0


@pytest.fixture(scope="module", params=list(CASES))
def series(request, tmp_path_factory):
    dtype, count, nodata = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param.replace(" ", ""))
    return make_series(folder, dtype, count, nodata)


@pytest.mark.parametrize("statistic", list(CELL_STATISTICS))
def test_same_pixels_as_cellstatistics(series, statistic, out_dir):
    dtype = read_raster(series[0]).array.dtype
    ours = run("tilewise:temporalmedian", {
        "INPUT": series, "STATISTIC": tilewise_statistic(statistic), "OUTPUT": str(out_dir / "tw.tif")})
    theirs = run("native:cellstatistics", {
        "INPUT": series, "STATISTIC": cell_statistic(CELL_STATISTICS[statistic]), "IGNORE_NODATA": True,
        "REFERENCE_LAYER": series[0],
        "OUTPUT_NODATA_VALUE": qgis_nodata(series), "OUTPUT": str(out_dir / "qgis.tif")})
    a = read_raster(ours["OUTPUT"])
    b = read_raster(theirs["OUTPUT"])
    assert (a.width, a.height) == (b.width, b.height)
    assert a.geotransform == pytest.approx(b.geotransform)
    assert a.array.dtype == np.float32 and a.nodata == -9999
    # the same pixels are nodata (every input nodata there) ...
    assert a.valid.sum() > 0.9 * a.array.size
    assert not a.valid[10:30, 40:90].any()
    np.testing.assert_array_equal(a.valid, b.valid)
    # ... and the others have the same value (ours float32, QGIS's float64 or the input type)
    np.testing.assert_allclose(a.array[a.valid], b.array[b.valid], rtol=2e-7, atol=1e-9)
    if statistic == "median" and dtype.kind in "iu":  # even count: half values must survive
        assert np.any(a.array[a.valid] % 1 == 0.5)


def test_count_matches_cellstatistics(series, out_dir):
    """Count of valid observations; where no input has data QGIS writes nodata and Tilewise 0 (documented)."""
    ours = run("tilewise:temporalmedian", {
        "INPUT": series, "STATISTIC": tilewise_statistic("count"), "OUTPUT": str(out_dir / "tw.tif")})
    theirs = run("native:cellstatistics", {
        "INPUT": series, "STATISTIC": cell_statistic("Count"), "IGNORE_NODATA": True, "REFERENCE_LAYER": series[0],
        "OUTPUT_NODATA_VALUE": qgis_nodata(series), "OUTPUT": str(out_dir / "qgis.tif")})
    a = read_raster(ours["OUTPUT"])
    b = read_raster(theirs["OUTPUT"])
    assert not b.valid[10:30, 40:90].any()
    np.testing.assert_array_equal(a.array[b.valid], b.array[b.valid])
    np.testing.assert_array_equal(a.array[~b.valid], 0)
    assert set(np.unique(a.array)) == set(range(len(series) + 1))

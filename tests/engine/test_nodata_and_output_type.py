"""Pixels without observation, output nodata and integer output types."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tilewise.core import composite
from tilewise.core.errors import ParameterError

from support import leftovers, numpy_reference, read_raster, to_nan_stack

SHAPE = (45, 70)


@pytest.fixture
def holes(raster):
    """Three int16 layers, nodata -9999; rows 0-9 are nodata everywhere, one pixel has a single value."""
    rng = np.random.default_rng(7)
    layers = []
    for i in range(3):
        a = rng.integers(-500, 500, SHAPE).astype("int16")
        a[rng.random(SHAPE) < 0.3] = -9999
        a[:10] = -9999
        a[20, 30] = -9999 if i else 123
        layers.append(a)
    paths = [raster(f"h{i}.tif", a, nodata=-9999) for i, a in enumerate(layers)]
    return paths, to_nan_stack(layers, -9999)


@pytest.mark.parametrize("statistic", ["median", "mean", "min", "max", "std", "percentile"])
def test_pixels_without_observation_get_the_default_nodata(holes, tmp_path, statistic):
    paths, stack = holes
    out = str(tmp_path / "out.tif")
    composite(paths, out, statistic, [25, 75] if statistic == "percentile" else [], tile_size=16, workers=1)
    data, profile = read_raster(out)
    assert profile["nodata"] == -9999.0
    empty = np.all(np.isnan(stack), axis=0)
    assert empty[:10].all() and not empty[10:].all()
    np.testing.assert_array_equal(data == -9999.0, np.broadcast_to(empty, data.shape))
    if statistic != "std":
        assert data[0, 20, 30] == 123  # the single observation is the answer, not nodata
    else:
        assert data[0, 20, 30] == 0


def test_count_is_zero_not_nodata_where_nothing_was_observed(holes, tmp_path):
    paths, stack = holes
    out = str(tmp_path / "count.tif")
    composite(paths, out, "count", tile_size=16, workers=1)
    data, _ = read_raster(out)
    expected = np.sum(~np.isnan(stack), axis=0)
    np.testing.assert_array_equal(data[0], expected)
    assert (data[0, :10] == 0).all()
    assert not (data == -9999).any()


@pytest.mark.parametrize("output_nodata", [-1.0, 0.0, 1e20, float("nan")])
def test_custom_output_nodata(holes, tmp_path, output_nodata):
    paths, stack = holes
    out = str(tmp_path / "out.tif")
    composite(paths, out, "median", tile_size=16, workers=1, output_nodata=output_nodata)
    data, profile = read_raster(out)
    reference = numpy_reference(stack, "median")
    expected = np.where(np.isnan(reference), output_nodata, reference).astype("float32")
    if math.isnan(output_nodata):
        assert math.isnan(profile["nodata"])
    else:
        assert profile["nodata"] == np.float32(output_nodata)  # GDAL keeps it as the band's type
    np.testing.assert_array_equal(data, expected)


@pytest.mark.parametrize("output_type,nodata", [("int16", -9999), ("int32", -9999), ("uint8", 255),
                                                ("uint16", 65535), ("int8", 127)])
def test_integer_output_is_rounded_and_clipped(raster, tmp_path, output_type, nodata):
    """Means of integers end in .0, .25, .5 ...: rounded to nearest (ties to even, as np.rint),
    clipped to the type's range; the default nodata is -9999 or the type's largest value."""
    rng = np.random.default_rng(11)
    layers = [rng.integers(-300, 300, SHAPE).astype("int16") for _ in range(4)]
    for a in layers:
        a[rng.random(SHAPE) < 0.3] = -9999
        a[:3] = -9999
    paths = [raster(f"m{i}.tif", a, nodata=-9999) for i, a in enumerate(layers)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "mean", tile_size=32, workers=1, output_type=output_type)
    data, profile = read_raster(out)
    assert profile["dtype"] == output_type
    assert profile["nodata"] == nodata
    mean = numpy_reference(to_nan_stack(layers, -9999), "mean")[0]
    info = np.iinfo(output_type)
    expected = np.where(np.isnan(mean), nodata, np.clip(np.rint(np.nan_to_num(mean)), info.min, info.max))
    assert (np.abs(mean - np.trunc(mean)) == 0.5).any()  # there are ties to round
    np.testing.assert_array_equal(data[0], expected.astype(output_type))


def test_float64_output_keeps_float64_precision(raster, tmp_path):
    rng = np.random.default_rng(5)
    layers = [rng.random(SHAPE) * 1e6 for _ in range(3)]
    paths = [raster(f"f{i}.tif", a) for i, a in enumerate(layers)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "mean", tile_size=16, workers=1, output_type="float64")
    data, profile = read_raster(out)
    assert profile["dtype"] == "float64"
    expected = np.mean(np.stack(layers), axis=0)
    np.testing.assert_allclose(data[0], expected, rtol=1e-13)
    assert not np.array_equal(data[0], expected.astype("float32").astype("float64"))


@pytest.mark.parametrize("output_type,output_nodata", [("uint8", 256), ("uint16", -1), ("int16", 1.5),
                                                       ("int8", -129)])
def test_output_nodata_must_fit_the_output_type(holes, tmp_path, output_type, output_nodata):
    paths, _ = holes
    out = tmp_path / "out.tif"
    with pytest.raises(ParameterError, match="does not fit"):
        composite(paths, str(out), "median", output_type=output_type, output_nodata=output_nodata)
    assert leftovers(out) == []

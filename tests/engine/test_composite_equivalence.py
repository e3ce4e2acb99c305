"""Tiled, parallel composites equal numpy's whole-array reductions.

The reference is numpy's nan-reducer in float64 on the whole input stack
(nodata -> NaN), rounded to the float32 output; order statistics and counts
of exactly representable inputs must match bit for bit.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tilewise.core import composite
from tilewise.core.errors import ParameterError
from tilewise.core.kernels.reducers import PER_BAND_STATISTICS, reduce_stack

from support import DTYPE_NODATA, as_output, numpy_reference, read_raster

PERCENTILES = (10.0, 50.0, 90.0)
EXACT = {"median", "min", "max", "count"}


def assert_matches_numpy(output: str, stack: np.ndarray, statistic: str,
                         percentiles=PERCENTILES) -> None:
    qs = percentiles if statistic == "percentile" else ()
    reference = numpy_reference(stack, statistic, qs)
    expected = as_output(reference)
    data, profile = read_raster(output)
    assert profile["dtype"] == "float32"
    assert profile["nodata"] == -9999.0
    assert data.shape == expected.shape
    # the nodata pattern first: it is what a tiling bug shows first
    np.testing.assert_array_equal(data == -9999.0, np.isnan(reference))
    if statistic in EXACT:
        np.testing.assert_array_equal(data, expected)
    else:
        np.testing.assert_allclose(data, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("statistic", PER_BAND_STATISTICS)
@pytest.mark.parametrize("n_layers", [5, 6], ids=["odd", "even"])
@pytest.mark.parametrize("dtype,nodata", DTYPE_NODATA, ids=lambda v: str(v))
def test_composite_equals_numpy(stacks, tmp_path, dtype, nodata, n_layers, statistic):
    stack = stacks(dtype, nodata, n_layers)
    out = str(tmp_path / "out.tif")
    qs = PERCENTILES if statistic == "percentile" else ()
    composite(stack.paths, out, statistic, qs, tile_size=100, workers=1)
    # the data exercise what they should: holes, empty pixels, single observations
    valid = np.sum(~np.isnan(stack.stack), axis=0)
    assert valid.min() == 0 and (valid == 1).any() and valid.max() == n_layers
    assert_matches_numpy(out, stack.stack, statistic)


@pytest.mark.parametrize("statistic", PER_BAND_STATISTICS)
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tile_size", [64, 100, 333, 512])
def test_tiled_and_parallel_equal_numpy(stacks, tmp_path, pool, tile_size, workers, statistic):
    """500 x 380 pixels: 100 and 333 divide neither side, 64 neither, 512 exceeds both."""
    stack = stacks("int16", -9999, 7)
    out = str(tmp_path / "out.tif")
    qs = PERCENTILES if statistic == "percentile" else ()
    report = composite(stack.paths, out, statistic, qs, tile_size=tile_size,
                       executor=pool if workers == 2 else None, workers=1)
    assert report.tiles == math.ceil(500 / tile_size) * math.ceil(380 / tile_size)
    assert report.workers == workers
    assert_matches_numpy(out, stack.stack, statistic)


def test_workers_option_runs_its_own_pool(stacks, tmp_path):
    stack = stacks("uint16", 65535, 6)
    out = str(tmp_path / "out.tif")
    report = composite(stack.paths, out, "median", tile_size=64, workers=2)
    assert (report.workers, report.tiles) == (2, 48)
    assert (report.width, report.height, report.bands) == (500, 380, 1)
    assert report.output == out
    assert_matches_numpy(out, stack.stack, "median")


def test_default_tile_size_equals_numpy(stacks, tmp_path):
    stack = stacks("float32", float("nan"), 5)
    out = str(tmp_path / "out.tif")
    composite(stack.paths, out, "percentile", [0, 33.3, 100], workers=1)
    assert_matches_numpy(out, stack.stack, "percentile", (0, 33.3, 100))


def test_input_nodata_overrides_the_files(raster, tmp_path):
    """``input_nodata`` turns a value into a hole even where the files declare no nodata."""
    rng = np.random.default_rng(3)
    layers = [rng.integers(0, 5, (40, 50)).astype("uint8") for _ in range(4)]
    paths = [raster(f"l{i}.tif", a) for i, a in enumerate(layers)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "mean", tile_size=16, workers=1, input_nodata=0)
    stack = np.stack(layers).astype(np.float64)
    stack[stack == 0] = np.nan
    assert_matches_numpy(out, stack, "mean")


# --- the kernel alone, on arbitrary stacks ------------------------------------------------

layer_counts = st.integers(1, 9)
pixel_counts = st.integers(1, 40)
values = st.one_of(st.integers(-50, 50).map(float),           # ties
                   st.floats(-1e6, 1e6, width=32),
                   st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=layer_counts, p=pixel_counts,
       statistic=st.sampled_from(PER_BAND_STATISTICS),
       qs=st.lists(st.floats(0, 100), min_size=1, max_size=4))
def test_reduce_stack_equals_numpy(data, n, p, statistic, qs):
    stack = data.draw(hnp.arrays(np.float32, (n, p), elements=values))
    percentiles = qs if statistic == "percentile" else ()
    got = reduce_stack(stack, statistic, percentiles)
    expected = numpy_reference(stack.astype(np.float64), statistic, percentiles)
    if statistic == "percentile":  # numpy's own nanpercentile, not the fast reference
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_array_equal(
                expected, np.nanpercentile(stack.astype(np.float64), qs, axis=0, method="linear"))
    assert got.shape == expected.shape
    if statistic in EXACT:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduce_stack_keeps_pixel_shape(dtype):
    stack = np.arange(2 * 3 * 4, dtype=dtype).reshape(2, 3, 4)
    got = reduce_stack(stack, "percentile", [0, 100])
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got[0], stack[0])
    np.testing.assert_array_equal(got[1], stack[1])


@pytest.mark.parametrize("stack", [np.zeros((3, 4), np.int16), np.zeros(5, np.float32)],
                         ids=["integer", "1-d"])
def test_reduce_stack_rejects_bad_stacks(stack):
    with pytest.raises(ParameterError):
        reduce_stack(stack, "median")

"""The integer order-statistic path of the reducer against numpy, value for value."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilewise.core.errors import ParameterError
from tilewise.core.kernels.reducers import integer_range, reduce_stack

DTYPES = ["uint8", "int8", "uint16", "int16"]


def _stack(rng, dtype, layers, pixels, nan_share):
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, (layers, pixels), endpoint=True).astype(np.float32)
    values[rng.random(values.shape) < nan_share] = np.nan
    return values


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(DTYPES), layers=st.integers(1, 40), pixels=st.integers(1, 1500),
       nan_share=st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0]), seed=st.integers(0, 2**31))
def test_integer_median_equals_numpy(dtype, layers, pixels, nan_share, seed):
    stack = _stack(np.random.default_rng(seed), dtype, layers, pixels, nan_share)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack.astype(np.float64), axis=0)
    got = reduce_stack(stack, "median", value_range=integer_range([dtype]))[0]
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(DTYPES), layers=st.integers(1, 30), seed=st.integers(0, 2**31),
       qs=st.lists(st.floats(0, 100), min_size=1, max_size=5))
def test_integer_percentiles_equal_numpy(dtype, layers, seed, qs):
    stack = _stack(np.random.default_rng(seed), dtype, layers, 700, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanpercentile(stack.astype(np.float64), qs, axis=0)
    got = reduce_stack(stack, "percentile", qs, value_range=integer_range([dtype]))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)
    assert np.array_equal(np.isnan(got), np.isnan(expected))


def test_integer_path_matches_selection_path():
    stack = _stack(np.random.default_rng(3), "uint16", 31, 5000, 0.3)
    fast = reduce_stack(stack, "percentile", [5, 50, 95], value_range=(0, 16))
    slow = reduce_stack(stack, "percentile", [5, 50, 95])
    np.testing.assert_array_equal(fast, slow)


def test_integer_range():
    assert integer_range(["uint8"]) == (0, 8)
    assert integer_range(["int8", "uint8"]) == (-128, 9)
    assert integer_range(["uint16", "int16"]) == (-32768, 17)
    assert integer_range(["int32"]) is None
    assert integer_range(["float32"]) is None


def test_value_range_bits_checked():
    with pytest.raises(ParameterError):
        reduce_stack(np.zeros((2, 3), np.float32), "median", value_range=(0, 25))


def test_mixed_signed_unsigned_16_bit():
    rng = np.random.default_rng(5)
    stack = np.concatenate([_stack(rng, "uint16", 5, 900, 0.1), _stack(rng, "int16", 4, 900, 0.1)])
    got = reduce_stack(stack, "median", value_range=integer_range(["uint16", "int16"]))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(got, np.nanmedian(stack.astype(np.float64), axis=0))


@settings(max_examples=60, deadline=None)
@given(layers=st.integers(1, 40), pixels=st.integers(1, 1500), scale=st.sampled_from([1e-3, 1.0, 1e6, 1e30]),
       nan_share=st.sampled_from([0.0, 0.1, 0.5, 1.0]), seed=st.integers(0, 2**31))
def test_float32_order_statistics_equal_numpy(layers, pixels, scale, nan_share, seed):
    rng = np.random.default_rng(seed)
    stack = (rng.normal(0, 1, (layers, pixels)) * scale).astype(np.float32)
    stack[rng.random(stack.shape) < 0.05] = -0.0
    stack[rng.random(stack.shape) < nan_share] = np.nan
    wide = stack.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(reduce_stack(stack, "median")[0], np.nanmedian(wide, axis=0))
        qs = [0, 7.5, 50, 93, 100]
        got = reduce_stack(stack, "percentile", qs)
        np.testing.assert_allclose(got, np.nanpercentile(wide, qs, axis=0), rtol=1e-12, atol=0)


def test_float32_and_float64_paths_agree_with_infinities():
    rng = np.random.default_rng(9)
    stack = rng.normal(0, 10, (9, 4000)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.1] = np.inf
    stack[rng.random(stack.shape) < 0.1] = -np.inf
    stack[rng.random(stack.shape) < 0.2] = np.nan
    fast = reduce_stack(stack, "median")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(fast, np.nanmedian(stack.astype(np.float64), axis=0))
    np.testing.assert_array_equal(fast, reduce_stack(stack.astype(np.float64), "median")[0])

"""The float64 order-statistic path (64-bit key search) against numpy, value for value.

The reference is numpy's ``nanmedian`` / ``nanpercentile`` (linear) on the same float64 stack, with
the engine's two documented departures, both where numpy's arithmetic breaks down, not its order
statistics: a median whose two middle values are finite but sum past the largest double is their
midpoint (numpy: inf), and a percentile whose interpolation numpy turns into NaN (``inf - inf``,
``inf * 0``) is the order statistic when the neighbours are equal or the position is exact.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilewise.core.kernels import reducers as kernels
from tilewise.core.kernels.reducers import reduce_stack

from support import subprocess_env

QS = [0, 0.1, 7.5, 25, 50, 62.5, 93, 99.9, 100]
SCALES = ["denormal", "tiny", "unit", "large", "huge", "mixed", "int32", "float32"]


def _values(rng, kind, shape):
    if kind == "denormal":
        return rng.integers(-2000, 2000, shape) * 5e-324
    if kind == "tiny":
        return rng.normal(0, 1, shape) * 1e-300
    if kind == "unit":
        return rng.normal(0, 1, shape)
    if kind == "large":
        return rng.normal(0, 1, shape) * 1e150
    if kind == "huge":  # near the largest double: pairs overflow when summed
        return rng.choice([-1, 1], shape) * rng.uniform(1.0, 1.79, shape) * 1e308
    if kind == "mixed":  # every magnitude at once: the keys span all of int64
        return rng.normal(0, 1, shape) * 10.0 ** rng.integers(-320, 308, shape)
    if kind == "int32":
        return rng.integers(-2**31, 2**31, shape).astype(np.float64)
    return (rng.normal(0, 1, shape) * 1e4).astype(np.float32).astype(np.float64)


def _stack(seed, kind, layers, pixels, nan_share, specials):
    rng = np.random.default_rng(seed)
    stack = _values(rng, kind, (layers, pixels))
    if specials:
        for value, share in ((-0.0, 0.05), (0.0, 0.05), (np.inf, 0.04), (-np.inf, 0.04)):
            stack[rng.random(stack.shape) < share] = value
        stack[:, rng.random(pixels) < 0.02] = -0.0  # columns of zeros of both signs
        stack[rng.random(stack.shape) < 0.02] = 0.0
    stack[rng.random(stack.shape) < nan_share] = np.nan
    stack[:, rng.random(pixels) < 0.03] = np.nan  # pixels with no observation
    return stack


def _sorted_columns(stack):
    """Each pixel's valid values in order (NaN last) and their count."""
    return np.sort(stack, axis=0), np.sum(~np.isnan(stack), axis=0)


def reference_median(stack):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(stack, axis=0)
    ordered, n = _sorted_columns(stack)
    cols = np.arange(stack.shape[1])
    lo = ordered[np.maximum((n - 1) // 2, 0), cols]
    hi = ordered[np.maximum(n // 2, 0), cols]
    overflow = np.isinf(expected) & np.isfinite(lo) & np.isfinite(hi) & (n > 0)
    expected[overflow] = lo[overflow] / 2 + hi[overflow] / 2
    return expected


def reference_percentiles(stack, qs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanpercentile(stack, qs, axis=0, method="linear")
    ordered, n = _sorted_columns(stack)
    cols = np.arange(stack.shape[1])
    for i, q in enumerate(qs):
        pos = q / 100.0 * (n - 1)
        r = np.floor(pos).astype(int)
        x0 = ordered[np.maximum(r, 0), cols]
        x1 = ordered[np.clip(r + 1, 0, np.maximum(n - 1, 0)), cols]
        order_stat = np.isnan(expected[i]) & (n > 0) & ((pos == r) | (x0 == x1))
        expected[i][order_stat] = x0[order_stat]
    return expected


def check(stack, qs=QS):
    np.testing.assert_array_equal(reduce_stack(stack, "median")[0], reference_median(stack))
    np.testing.assert_array_equal(reduce_stack(stack, "percentile", qs), reference_percentiles(stack, qs))


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(SCALES), layers=st.integers(1, 45), pixels=st.integers(1, 1300),
       nan_share=st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0]), specials=st.booleans(), seed=st.integers(0, 2**31))
def test_float64_order_statistics_equal_numpy(kind, layers, pixels, nan_share, specials, seed):
    check(_stack(seed, kind, layers, pixels, nan_share, specials))


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(SCALES), layers=st.integers(1, 30), seed=st.integers(0, 2**31),
       qs=st.lists(st.floats(0, 100), min_size=1, max_size=6))
def test_float64_any_percentiles_equal_numpy(kind, layers, seed, qs):
    stack = _stack(seed, kind, layers, 700, 0.2, True)
    np.testing.assert_array_equal(reduce_stack(stack, "percentile", qs), reference_percentiles(stack, qs))


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 11, 12, 84])
@pytest.mark.parametrize("kind", SCALES)
def test_even_and_odd_counts_every_scale(kind, layers):
    check(_stack(layers * 7 + SCALES.index(kind), kind, layers, 1100, 0.15, True))


@pytest.mark.parametrize("kind", SCALES)
def test_search_and_sort_give_the_same_values(kind):
    """Both sides of the budget: the key search and the per-pixel sort (chosen per chunk)."""
    stack = _stack(SCALES.index(kind), kind, 23, 1500, 0.2, True)
    qs = np.asarray([0.0, 33.3, 50.0, 90.0, 100.0])
    searched, sorted_ = (np.empty((len(qs), stack.shape[1])) for _ in range(2))
    for c in range(kernels._key_chunks(stack)):
        kernels._double_order_chunk(stack, c, qs, False, 10**9, searched)
        kernels._double_order_chunk(stack, c, qs, False, 0, sorted_)
    np.testing.assert_array_equal(searched, sorted_)
    np.testing.assert_array_equal(searched, reference_percentiles(stack, list(qs)))


def _keys(values):
    bits = np.asarray(values, np.float64).reshape(1, -1).view(np.int64)
    keys = np.where(bits >= 0, bits, -(bits & 0x7FFFFFFFFFFFFFFF))
    return np.where(np.isnan(np.asarray(values, np.float64).reshape(1, -1)), 2**63 - 1, keys)


@pytest.mark.parametrize("values, branch", [
    ([np.nan, np.nan], "empty"),
    ([3.0, 3.0, np.nan], "one value"),
    ([1.0, -7.0, 12.0, 2.0**20], "narrow"),                      # integers: few bits differ
    (np.float32([1e-30, -3e4, 7.1, 1e30]), "wide"),              # float32 values: 36 bits or fewer
    ([-1e300, 1e300, 5e-324, -0.0, 0.0], "full"),                # the keys span more than int64
    ([-np.inf, np.inf, np.inf], "narrow"),                      # infinities alone: 12 bits
])
def test_every_branch_of_the_key_narrowing(values, branch):
    lo, span, shift = kernels._key_span(_keys(values))
    bits = 64 if span < 0 else kernels._bit_length(span)
    if span == 0:
        got = "empty" if np.all(np.isnan(values)) else "one value"
    else:
        got = "full" if span < 0 else "narrow" if bits < 31 else "wide"
    assert got == branch, (lo, span, shift, bits)
    stack = np.asarray(values, np.float64).reshape(-1, 1).repeat(3, axis=1)
    check(stack)


def test_the_search_budget_grows_with_the_layers():
    assert [kernels._search_budget(n) for n in (12, 84, 200)] == [49, 129, 220]


def test_signed_zeros_are_zero():
    """-0.0 and 0.0 are the same key: a zero result is 0.0 (numpy's sign of a zero median
    depends on its partition order; both compare equal)."""
    stack = np.array([[-0.0, -0.0, 0.0, -0.0, -1.0], [-0.0, 0.0, 0.0, np.nan, -0.0], [1.0, -0.0, 5.0, np.nan, 0.0]])
    got = reduce_stack(stack, "median")[0]
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(got, np.nanmedian(stack, axis=0))


def test_huge_middle_values_do_not_overflow():
    stack = np.array([[1.7e308, 1.7e308, -1.7e308], [1.6e308, 1.7e308, -1.5e308]])
    np.testing.assert_array_equal(reduce_stack(stack, "median")[0], [1.7e308 / 2 + 1.6e308 / 2, 1.7e308, -1.6e308])


def test_float64_and_float32_paths_agree_on_float32_values():
    rng = np.random.default_rng(4)
    stack = (rng.normal(0, 100, (17, 3000))).astype(np.float32)
    stack[rng.random(stack.shape) < 0.1] = np.nan
    stack[rng.random(stack.shape) < 0.05] = np.inf
    for statistic, qs in (("median", ()), ("percentile", QS)):
        np.testing.assert_array_equal(reduce_stack(stack, statistic, qs),
                                      reduce_stack(stack.astype(np.float64), statistic, qs))


COLD = """
    import json, sys
    import numpy as np
    from tilewise.core.kernels import reducers as kernels
    rng = np.random.default_rng(5)
    stack = rng.normal(0, 1, (13, 2000)) * 10.0 ** rng.integers(-300, 300, (13, 2000))
    stack[rng.random(stack.shape) < 0.2] = np.nan
    med = kernels.reduce_stack(stack, "median")
    pct = kernels.reduce_stack(stack, "percentile", [10.0, 90.0])
    np.save(sys.argv[1], np.concatenate([med, pct]))
    ks = (kernels.median_kernel, kernels.percentile_kernel)
    print(json.dumps([sum(sum(k.stats.cache_misses.values()) for k in ks),
                      sum(sum(k.stats.cache_hits.values()) for k in ks)]))
"""


def test_a_cold_numba_cache_compiles_and_then_loads_the_float64_kernel(tmp_path):
    env = subprocess_env()
    env.pop("NUMBA_NUM_THREADS", None)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")
    runs = []
    for name in ("cold", "warm"):
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(COLD), str(tmp_path / f"{name}.npy")], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(proc.stdout.split("\n")[-2])
    assert runs == ["[2, 0]", "[0, 2]"], runs
    assert os.listdir(tmp_path / "numba")
    cold, warm = np.load(tmp_path / "cold.npy"), np.load(tmp_path / "warm.npy")
    np.testing.assert_array_equal(cold, warm)
    rng = np.random.default_rng(5)
    stack = rng.normal(0, 1, (13, 2000)) * 10.0 ** rng.integers(-300, 300, (13, 2000))
    stack[rng.random(stack.shape) < 0.2] = np.nan
    np.testing.assert_array_equal(cold[0], reference_median(stack))
    np.testing.assert_array_equal(cold[1:], reference_percentiles(stack, [10.0, 90.0]))

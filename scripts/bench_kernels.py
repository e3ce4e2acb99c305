"""Float64 medians and percentiles: the 64-bit key search against the per-pixel quickselect it replaced.

Side by side in one run, on the same stacks (10% NaN), one thread and all threads; prints the
seconds of each (best of --runs) and the ratio old / new. The old kernel is the engine's former
per-pixel path (quickselect for the median, insertion sort for percentiles), rebuilt here from the
helpers that remain in tilewise.core.kernels.reducers; both must give the same values, or the script fails.

    make bench-kernels    (PYTHONPATH=build/plugins .venv/bin/python scripts/bench_kernels.py [--quick] [--runs 5])
"""

import argparse
import time

import numba
import numpy as np

from tilewise.core.kernels import reducers as kernels
from tilewise.core.kernels.reducers import reduce_stack


@kernels.jit
def _percentile_sorted(a, n, q):
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    if lo >= n - 1:
        return np.float64(a[n - 1])
    g = pos - lo
    x0 = np.float64(a[lo])
    x1 = np.float64(a[lo + 1])
    if g == 0.0 or x0 == x1:
        return x0
    return x1 - (x1 - x0) * (1.0 - g) if g >= 0.5 else x0 + (x1 - x0) * g


@kernels.pjit
def old_order_kernel(stack, median, qs, out):
    """The former per-pixel path of ``median_kernel`` and ``percentile_kernel``."""
    n_layers, n_pix = stack.shape
    for c in numba.prange((n_pix + 1023) // 1024):
        buf = np.empty(n_layers, stack.dtype)
        for p in range(c * 1024, min(c * 1024 + 1024, n_pix)):
            k = 0
            for i in range(n_layers):
                v = stack[i, p]
                if not np.isnan(v):
                    buf[k] = v
                    k += 1
            if k == 0:
                for j in range(out.shape[0]):
                    out[j, p] = np.nan
            elif median:
                out[0, p] = kernels.median_inplace(buf, k)
            else:
                kernels._sort(buf, k)
                for j in range(qs.shape[0]):
                    out[j, p] = _percentile_sorted(buf, k, qs[j])


def old(stack, statistic, qs):
    flat = stack.reshape(stack.shape[0], -1)
    qs = np.asarray(qs if statistic == "percentile" else [50.0], np.float64)
    out = np.empty((len(qs), flat.shape[1]))
    old_order_kernel(flat, statistic == "median", qs, out)
    return out


def stacks(layers, size, rng):
    shape = (layers, size, size)
    yield "float32 values (NDVI-like, -1..1)", (rng.normal(0.3, 0.3, shape).clip(-1, 1)).astype(np.float32)
    yield "int32 values", rng.integers(-50000, 50000, shape).astype(np.float64)
    yield "arbitrary doubles", rng.normal(1000, 300, shape)


def best(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = 128 if args.quick else 512
    rng = np.random.default_rng(1)
    cases = [("median", ()), ("percentile", (25.0, 75.0)), ("percentile", (5.0, 25.0, 50.0, 75.0, 95.0))]
    tiny = rng.normal(0, 1, (3, 50))
    for statistic, qs in cases:  # compile (or load) before timing
        reduce_stack(tiny, statistic, qs)
        old(tiny, statistic, qs)
    threads = sorted({1, numba.config.NUMBA_NUM_THREADS})
    print(f"float64 stacks of {size} x {size} pixels, 10% NaN; best of {args.runs}; ratio = old / new")
    print(f"{'layers':>6} {'values':<34} {'statistic':<22} {'threads':>7} {'old s':>8} {'new s':>8} {'ratio':>6}")
    for layers in (12, 84):
        for name, values in stacks(layers, size, rng):
            stack = values.astype(np.float64)
            stack[rng.random(stack.shape) < 0.1] = np.nan
            for statistic, qs in cases:
                np.testing.assert_array_equal(old(stack, statistic, qs), reduce_stack(stack, statistic, qs)
                                              .reshape(len(qs) or 1, -1))
                label = statistic if statistic == "median" else f"p{','.join(f'{q:g}' for q in qs)}"
                for n in threads:
                    numba.set_num_threads(n)
                    t_old = best(lambda stack=stack, statistic=statistic, qs=qs: old(stack, statistic, qs), args.runs)
                    t_new = best(lambda stack=stack, statistic=statistic, qs=qs: reduce_stack(stack, statistic, qs),
                                 args.runs)
                    print(f"{layers:>6} {name:<34} {label:<22} {n:>7} {t_old:8.3f} {t_new:8.3f} "
                          f"{t_old / t_new:5.1f}x", flush=True)


if __name__ == "__main__":
    main()

"""Per-pixel reducers over a stack of layers, compiled with numba.

Pure functions over arrays: no I/O, no globals. NaN marks a missing
observation. Each public function validates its arguments and calls a private
``@njit`` kernel that runs ``prange`` over chunks of pixels (one scratch buffer
per chunk). No ``fastmath``: NaN handling and exact order statistics matter
more than the last few percent.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from .jit import CACHE_DIR, compiled_and_loaded, jit, pjit  # noqa: F401 (CACHE_DIR: the warm-up reports it)

import numba
import numpy as np

from ..errors import ParameterError
from ..vocabulary import REDUCERS
from .statistics import PER_BAND_STATISTICS, WARM_GROUPS, check_statistic, integer_range, output_count  # noqa: F401

_CHUNK = 1024


@jit
def select_kth(a, n, k):
    """Hoare quickselect: move the k-th smallest of ``a[:n]`` to ``a[k]``.

    On return every ``a[i]`` with ``i < k`` is <= ``a[k]``.
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@jit
def median_inplace(a, n):
    h = n // 2
    upper = select_kth(a, n, h)
    if n % 2 == 1:
        return np.float64(upper)
    lower = a[0]
    for i in range(1, h):
        if a[i] > lower:
            lower = a[i]
    return (np.float64(lower) + np.float64(upper)) / 2.0


@jit
def _sort(a, n):
    """Insertion sort of ``a[:n]`` (n is small: the number of observations)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


# -- the per-pixel reducers: one kernel each, registered by name in tilewise.core.vocabulary.REDUCERS --------------
#
# ``<name>_kernel(stack, qs, out)``: ``stack`` (layers, pixels) with NaN for a missing value, ``qs``
# the percentiles (for the reducers that take them), ``out`` (outputs, pixels) float64. Each runs
# ``prange`` over chunks of pixels with one scratch buffer per chunk; :func:`_valid` gathers a pixel's
# valid values into it. Adding a reducer: its kernel here, its name in ``REDUCERS``. The median and
# percentile kernels take float64 stacks (float32 and integer-valued stacks go to the 32-bit key searches
# below): a 64-bit key search per chunk (:func:`_double_order_chunk`), not a per-pixel quickselect.

@jit
def _valid(stack, p, buf):
    """Copy pixel ``p``'s valid (non-NaN) values to ``buf``; return how many."""
    k = 0
    for i in range(stack.shape[0]):
        v = stack[i, p]
        if not np.isnan(v):
            buf[k] = v
            k += 1
    return k


@jit
def _chunks(stack):
    return (stack.shape[1] + _CHUNK - 1) // _CHUNK


@jit
def _mean(buf, k):
    s = 0.0
    for i in range(k):
        s += buf[i]
    return s / k


@pjit
def median_kernel(stack, qs, out):
    """The median of float64 data by the 64-bit key search (:func:`_double_order_chunk`); ``qs`` is unused."""
    budget = _search_budget(stack.shape[0])
    for c in numba.prange(_key_chunks(stack)):
        _double_order_chunk(stack, c, _MEDIAN_Q, True, budget, out)


@pjit
def mean_kernel(stack, qs, out):
    for c in numba.prange(_chunks(stack)):
        buf = np.empty(stack.shape[0], stack.dtype)
        for p in range(c * _CHUNK, min((c + 1) * _CHUNK, stack.shape[1])):
            k = _valid(stack, p, buf)
            out[0, p] = _mean(buf, k) if k else np.nan


@pjit
def min_kernel(stack, qs, out):
    for c in numba.prange(_chunks(stack)):
        buf = np.empty(stack.shape[0], stack.dtype)
        for p in range(c * _CHUNK, min((c + 1) * _CHUNK, stack.shape[1])):
            k = _valid(stack, p, buf)
            if k == 0:
                out[0, p] = np.nan
                continue
            m = buf[0]
            for i in range(1, k):
                if buf[i] < m:
                    m = buf[i]
            out[0, p] = m


@pjit
def max_kernel(stack, qs, out):
    for c in numba.prange(_chunks(stack)):
        buf = np.empty(stack.shape[0], stack.dtype)
        for p in range(c * _CHUNK, min((c + 1) * _CHUNK, stack.shape[1])):
            k = _valid(stack, p, buf)
            if k == 0:
                out[0, p] = np.nan
                continue
            m = buf[0]
            for i in range(1, k):
                if buf[i] > m:
                    m = buf[i]
            out[0, p] = m


@pjit
def std_kernel(stack, qs, out):
    """Population standard deviation (ddof=0), as numpy's ``nanstd``."""
    for c in numba.prange(_chunks(stack)):
        buf = np.empty(stack.shape[0], stack.dtype)
        for p in range(c * _CHUNK, min((c + 1) * _CHUNK, stack.shape[1])):
            k = _valid(stack, p, buf)
            if k == 0:
                out[0, p] = np.nan
                continue
            mean = _mean(buf, k)
            ss = 0.0
            for i in range(k):
                d = buf[i] - mean
                ss += d * d
            out[0, p] = np.sqrt(ss / k)


@pjit
def count_kernel(stack, qs, out):
    """Valid observations (0 where there is none)."""
    for c in numba.prange(_chunks(stack)):
        buf = np.empty(stack.shape[0], stack.dtype)
        for p in range(c * _CHUNK, min((c + 1) * _CHUNK, stack.shape[1])):
            out[0, p] = _valid(stack, p, buf)


@pjit
def percentile_kernel(stack, qs, out):
    """numpy's ('linear') ``nanpercentile`` of float64 data for each of ``qs``, by the 64-bit key search."""
    budget = _search_budget(stack.shape[0])
    for c in numba.prange(_key_chunks(stack)):
        _double_order_chunk(stack, c, qs, False, budget, out)


#: statistic name -> its kernel (every name of REDUCERS must have one: a missing kernel fails at import).
KERNELS = {name: globals()[kernel] for name, kernel in REDUCERS.items()}


@jit
def _interpolate(x0, x1, g, median):
    """numpy's rules: a median is the mean of the two middle values, ``(x0 + x1) / 2``
    as numpy computes it (so ``-0.0`` and ``0.0`` give ``0.0``), halved first where the
    sum of two finite values would overflow (numpy gives inf there); a percentile is
    numpy's linear interpolation (equal neighbours, even infinite, give themselves)."""
    if g == 0.0:
        return x0
    if median:
        m = (x0 + x1) / 2.0
        if np.isinf(m) and np.isfinite(x0) and np.isfinite(x1):
            return x0 / 2.0 + x1 / 2.0
        return m
    if x0 == x1:
        return x0
    return x1 - (x1 - x0) * (1.0 - g) if g >= 0.5 else x0 + (x1 - x0) * g


_NAN_KEY = 2**31 - 1  # above every candidate of the search: a missing value is never counted
_NAN_KEY64 = 2**63 - 1  # the same for 64-bit keys
_CHUNK_KEYS = 512
_MEDIAN_Q = np.array([50.0])


@pjit
def _int_order_kernel(stack, lo, bits, qs, median, out):
    """Order statistics of integer-valued data in ``[lo, lo + 2**bits)``: the values are the keys."""
    n_layers, n_pix = stack.shape
    for c in numba.prange((n_pix + _CHUNK_KEYS - 1) // _CHUNK_KEYS):
        s = c * _CHUNK_KEYS
        m = min(_CHUNK_KEYS, n_pix - s)
        keys = np.empty((n_layers, m), np.int32)
        for i in range(n_layers):
            row = stack[i, s:s + m]
            for j in range(m):
                v = row[j]
                keys[i, j] = _NAN_KEY if np.isnan(v) else np.int32(v)
        _search_keys(keys, np.int32(_NAN_KEY), lo, bits, qs, median, (0, 0, 0), out, s)


@pjit
def _float_order_kernel(stack, qs, median, out):
    """Order statistics of float32 data: keys are the 32-bit patterns turned into
    integers that sort like the floats (sign-magnitude to two's complement)."""
    n_layers, n_pix = stack.shape
    for c in numba.prange((n_pix + _CHUNK_KEYS - 1) // _CHUNK_KEYS):
        s = c * _CHUNK_KEYS
        m = min(_CHUNK_KEYS, n_pix - s)
        keys = np.empty((n_layers, m), np.int32)
        for i in range(n_layers):
            row = stack[i, s:s + m]
            bits = row.view(np.int32)
            for j in range(m):
                b = bits[j]
                keys[i, j] = _NAN_KEY if np.isnan(row[j]) else (b if b >= 0 else b ^ 0x7FFFFFFF)
        _search_keys(keys, np.int32(_NAN_KEY), -(2**31), 32, qs, median, (32, 0, 0), out, s)


@jit
def _key_chunks(stack):
    return (stack.shape[1] + _CHUNK_KEYS - 1) // _CHUNK_KEYS


@jit
def _double_order_chunk(stack, c, qs, median, budget, out):
    """Order statistics of chunk ``c`` of float64 data: keys are the 64-bit patterns turned into
    integers that sort like the floats (sign and magnitude to a signed integer, so a
    negative value keeps the low zero bits of its magnitude; -0.0 and 0.0 are one key).

    The chunk's keys are narrowed first (:func:`_key_span`): the low bits that are zero
    in every key are dropped and only the range the rest spans is searched, in 32-bit
    keys when it fits. Integer values (inputs of 32-bit integers) and float32 values
    have many low zero bits, so they need far fewer steps than the 64 of arbitrary
    doubles. A chunk whose search would take more than ``budget`` steps (bits times
    percentiles) sorts each pixel instead (:func:`_sorted_order`), which costs the same
    for any number of percentiles.
    """
    n_layers, n_pix = stack.shape
    s = c * _CHUNK_KEYS
    m = min(_CHUNK_KEYS, n_pix - s)
    keys = np.empty((n_layers, m), np.int64)
    for i in range(n_layers):
        row = stack[i, s:s + m]
        bits = row.view(np.int64)
        for j in range(m):
            b = bits[j]
            keys[i, j] = _NAN_KEY64 if np.isnan(row[j]) else (b if b >= 0 else -(b & 0x7FFFFFFFFFFFFFFF))
    lo, span, shift = _key_span(keys)
    bits = 64 if span < 0 else _bit_length(span)
    if bits * qs.shape[0] > budget:
        _sorted_order(stack, s, m, qs, median, out)
    elif span < 0:  # the keys span more than int64 holds: search all of it
        _search_keys(keys, np.int64(_NAN_KEY64), -(2**63), 64, qs, median, (64, 0, 0), out, s)
    elif bits < 31:
        small = np.empty((n_layers, m), np.int32)
        for i in range(n_layers):
            for j in range(m):
                k = keys[i, j]
                small[i, j] = _NAN_KEY if k == _NAN_KEY64 else np.int32((k >> shift) - lo)
        _search_keys(small, np.int32(_NAN_KEY), 0, bits, qs, median, (64, lo, shift), out, s)
    else:
        for i in range(n_layers):
            for j in range(m):
                k = keys[i, j]
                keys[i, j] = _NAN_KEY64 if k == _NAN_KEY64 else (k >> shift) - lo
        _search_keys(keys, np.int64(_NAN_KEY64), 0, bits, qs, median, (64, lo, shift), out, s)


@jit
def _sorted_order(stack, s, m, qs, median, out):
    """The order statistics of pixels ``s .. s + m`` by sorting each pixel's values;
    the same values as :func:`_search_keys` gives."""
    n_layers = stack.shape[0]
    buf = np.empty(n_layers, stack.dtype)
    for p in range(s, s + m):
        n = 0
        for i in range(n_layers):  # not _valid: the warm-up groups share no helper (statistics.WARM_GROUPS)
            v = stack[i, p]
            if not np.isnan(v):
                buf[n] = v
                n += 1
        if n == 0:
            for qi in range(qs.shape[0]):
                out[qi, p] = np.nan
            continue
        _sort(buf, n)
        for qi in range(qs.shape[0]):
            pos = qs[qi] / 100.0 * (n - 1)
            r = int(np.floor(pos))
            out[qi, p] = _interpolate(buf[r], buf[min(r + 1, n - 1)], pos - r, median)


@jit
def _key_span(keys):
    """``(lowest, span, shift)`` of the keys other than NaN's: ``shift`` low bits are zero
    in all of them, and every ``k >> shift`` lies in ``[lowest, lowest + span]``; span is -1
    when that range overflows int64 (then shift is 0), and ``(0, 0, 0)`` when all are NaN."""
    n_layers, m = keys.shape
    ored = np.int64(0)
    for i in range(n_layers):
        row = keys[i]
        for j in range(m):
            k = row[j]
            ored |= k if k != _NAN_KEY64 else 0
    shift = 0
    while ored != 0 and (ored >> shift) & 1 == 0:
        shift += 1
    lo = np.int64(_NAN_KEY64)
    hi = np.int64(-_NAN_KEY64 - 1)
    for i in range(n_layers):
        row = keys[i]
        for j in range(m):
            k = row[j]
            if k != _NAN_KEY64:
                lo = min(lo, k >> shift)
                hi = max(hi, k >> shift)
    if hi < lo:
        return np.int64(0), np.int64(0), 0
    if lo < 0 and hi > lo + _NAN_KEY64:
        return lo, np.int64(-1), 0
    return lo, hi - lo, shift


@jit
def _bit_length(v):
    n = 0
    while (v >> n) > 0:
        n += 1
    return n


@jit
def _search_keys(keys, nan_key, lo, bits, qs, median, decode, out, s):
    """Write the order statistics of ``keys`` (layers x pixels) to ``out[:, s:]``.

    For each pixel, rank r (from a percentile) is the smallest key with more
    than r keys at or below it, found one bit at a time in ``[lo, lo + 2**bits)``.
    Each step is a count over all layers for a run of contiguous pixels at once,
    so it vectorises, with no per-pixel sorting or branching. ``nan_key`` (of the
    keys' type, above every candidate) marks a missing value; ``decode`` turns a
    key back into its value (see :func:`_key_value`).

    With ``lo = -2**63, bits = 64`` the search spans all of int64: its start
    ``lo - 1`` and ``1 << 63`` wrap around, as numba's integers do (two's complement,
    no overflow check), and every candidate ``lo - 1 + step + ...`` compared is exact.
    """
    n_layers, m = keys.shape
    cnt = np.zeros(m, np.int32)
    for i in range(n_layers):
        row = keys[i]
        for j in range(m):
            cnt[j] += row[j] != nan_key
    below = np.empty(m, np.int32)
    res = np.empty(m, np.int64)
    cand = np.empty(m, keys.dtype)  # every candidate compared fits the keys' type
    rank = np.empty(m, np.int32)
    frac = np.empty(m, np.float64)
    nxt = np.empty(m, np.int64)
    for qi in range(qs.shape[0]):
        for j in range(m):
            pos = qs[qi] / 100.0 * (cnt[j] - 1)
            r = int(np.floor(pos)) if cnt[j] > 0 else 0
            rank[j] = r
            frac[j] = pos - r
            res[j] = lo - 1
        for b in range(bits - 1, -1, -1):
            step = np.int64(1) << b
            for j in range(m):
                cand[j] = res[j] + step
                below[j] = 0
            for i in range(n_layers):
                row = keys[i]
                for j in range(m):
                    below[j] += row[j] <= cand[j]
            for j in range(m):
                if below[j] <= rank[j]:
                    res[j] = cand[j]
        for j in range(m):  # res + 1 is the key of rank r; now the one of rank r + 1
            res[j] += 1
            below[j] = 0
            nxt[j] = nan_key
        for i in range(n_layers):
            row = keys[i]
            for j in range(m):
                k = row[j]
                below[j] += k <= res[j]
                if k > res[j] and k < nxt[j]:
                    nxt[j] = k
        for j in range(m):
            if cnt[j] == 0:
                out[qi, s + j] = np.nan
                continue
            x0 = _key_value(res[j], decode)
            x1 = x0 if below[j] >= rank[j] + 2 or frac[j] == 0.0 else _key_value(nxt[j], decode)
            out[qi, s + j] = _interpolate(x0, x1, frac[j], median)


@jit
def _key_value(key, decode):
    """The value of a key of :func:`_search_keys`; ``decode`` is ``(kind, lowest, shift)``: kind 0,
    the key is the value; 32, a float32 bit pattern as ordered by :func:`_float_order_kernel`;
    64, a float64 one as ordered by :func:`_double_order_chunk`, ``(key + lowest) << shift``."""
    kind, lowest, shift = decode
    if kind == 0:
        return np.float64(key)
    if kind == 32:
        k = np.int32(key)
        bits = np.empty(1, np.int32)
        bits[0] = k if k >= 0 else k ^ 0x7FFFFFFF
        return np.float64(bits.view(np.float32)[0])
    wide = np.empty(1, np.int64)
    k = (np.int64(key) + lowest) << shift
    wide[0] = k if k >= 0 else (-k) | (-(2**63))
    return wide.view(np.float64)[0]


@jit
def _search_budget(n_layers):
    """Search steps (bits times percentiles) of a float64 chunk up to which the key search
    beats sorting each pixel.

    Measured on one core (numba 0.68, 84 to 200 layers of 512 x 512 and 6 to 24 of more
    pixels): a step costs about 0.2 ns per pixel and layer plus 10 layers' worth of
    bookkeeping; the insertion sort about 16 ns + 0.15 ns x layers per value.
    12 layers give 49 steps, 84 give 129, 200 give 220 (tests/engine/test_kernels_float64.py).
    """
    return int((82 * n_layers + 0.75 * n_layers * n_layers) / (n_layers + 10))


def _ranks(statistic: str, qs: np.ndarray) -> np.ndarray:
    return np.asarray([50.0]) if statistic == "median" else qs


def reduce_stack(stack: np.ndarray, statistic: str = "median",
                 percentiles: Sequence[float] = (), value_range: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Reduce a ``(layers, ...)`` stack along its first axis, ignoring NaN.

    Returns a float64 array of shape ``(k, ...)`` where ``k`` is the number of
    percentiles for ``"percentile"`` and 1 otherwise. A pixel with no valid
    observation is NaN, except for ``"count"`` where it is 0. Results equal
    numpy's ``nanmedian``, ``nanmean``, ``nanmin``, ``nanmax``, ``nanstd``
    (ddof=0) and ``nanpercentile`` (linear).

    ``value_range`` ``(lowest, bits)`` (see :func:`integer_range`) says the
    values are integers in ``[lowest, lowest + 2**bits)``: medians and
    percentiles then use a vectorised bitwise search of that range. float32
    and float64 stacks use the same search over 32-bit and 64-bit keys made
    from their bit patterns. All give numpy's values (with infinite values,
    percentiles follow the order statistics where numpy's interpolation gives NaN;
    a median of two finite values whose sum overflows is their midpoint, not inf).

    >>> s = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]], np.float32)
    >>> reduce_stack(s, "median").tolist()
    [[2.0, nan]]
    >>> reduce_stack(s, "count").tolist()
    [[2.0, 0.0]]
    """
    k = output_count(statistic, percentiles)
    if stack.ndim < 2:
        raise ParameterError("A stack needs a layer axis and at least one pixel axis.")
    if stack.dtype not in (np.float32, np.float64):
        raise ParameterError(f"Stacks are float32 or float64 with NaN for missing values, not {stack.dtype}.")
    flat = np.ascontiguousarray(stack.reshape(stack.shape[0], -1))
    out = np.empty((k, flat.shape[1]), np.float64)
    qs = np.asarray(percentiles if statistic == "percentile" else [0.0], np.float64)
    if value_range is not None and statistic in ("median", "percentile"):
        lo, bits = value_range
        if not 0 < bits <= 24:  # float32 holds integers exactly up to 2**24
            raise ParameterError(f"value_range bits must be 1..24, got {bits}.")
        _int_order_kernel(flat, lo, bits, _ranks(statistic, qs), statistic == "median", out)
        return out.reshape((k,) + stack.shape[1:])
    if flat.dtype == np.float32 and statistic in ("median", "percentile"):  # float64: median/percentile_kernel
        _float_order_kernel(flat, _ranks(statistic, qs), statistic == "median", out)
        return out.reshape((k,) + stack.shape[1:])
    KERNELS[statistic](flat, qs, out)
    return out.reshape((k,) + stack.shape[1:])


# -- warming numba's cache -----------------------------------------------------------------------------------

def _warm_calls(group: str):
    """Calls of :func:`reduce_stack` that compile every specialization the engine uses in ``group``.

    Tiles are reduced as float32 stacks (inputs of up to 32 bits; those of up to 16 bits
    also with their integer range) or float64 stacks (wider inputs, never an integer range).
    """
    f32 = np.array([[1.0, np.nan, 3.0, 4.0], [2.0, 5.0, np.nan, 4.0], [0.0, 1.0, 2.0, np.nan]], np.float32)
    f64 = f32.astype(np.float64)
    order = (("median", ()), ("percentile", (25.0, 75.0)))
    if group == WARM_GROUPS[0]:  # the key searches
        for statistic, qs in order:
            yield f32, statistic, qs, (0, 8)
            yield f32, statistic, qs, None
            yield f64, statistic, qs, None
    elif group == WARM_GROUPS[1]:  # the per-pixel kernels
        for statistic in PER_BAND_STATISTICS:
            if statistic not in dict(order):
                yield f32, statistic, (), None
                yield f64, statistic, (), None
    else:
        raise ParameterError(f"Unknown kernel group {group!r}; known: {', '.join(WARM_GROUPS)}.")


def warm_up(group: str) -> Tuple[int, int]:
    """Compile the kernels of ``group`` (one of :data:`.statistics.WARM_GROUPS`) into numba's cache, or load
    them from it; return ``(compiled, loaded from the cache)``, counted in specializations."""
    def calls() -> None:
        for stack, statistic, qs, value_range in _warm_calls(group):
            reduce_stack(stack, statistic, qs, value_range)
    return compiled_and_loaded((_int_order_kernel, _float_order_kernel) + tuple(KERNELS.values()), calls)

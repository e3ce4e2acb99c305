"""Gap-filling kernels over a (dates, pixels) stack, compiled with numba.

The rules (methods, gap length, ``MAX_GAP``, edges, flags) are those of
:mod:`tilewise.core.kernels.gapfill_plan`; this module only computes them. A private
``@njit`` kernel runs ``prange`` over chunks of pixels and sweeps each chunk
along time, row by row, so its inner loops run over contiguous pixels; a chunk's
scratch is one (targets x 256) int32 array, so memory is the input stack plus
the output values and flags. :func:`gapfill_stack` is the
validated public function a tile function calls.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numba
import numpy as np

from ..errors import ParameterError
from ..dates import dates_from_days
from .gapfill_plan import FLAG_EDGE, FLAG_INTERPOLATED, FLAG_MISSING, FLAG_OBSERVED, FLAG_SEASONAL, GapfillOptions, \
    plan_gapfill, season_table, target_days
from .jit import compiled_and_loaded, inline_jit, jit, pjit  # the engine's numba options
from .reducers import median_inplace  # numpy's median by quickselect

_CHUNK = 256  # pixels per chunk: its (targets x pixels) index array stays in cache
_LINEAR, _NEAREST, _PREVIOUS, _NEXT, _SEASONAL = range(5)

# The per-value fill is inlined into the kernel's loop (numba IR inlining, inline_jit): 3-4x faster than a call.


@jit
def _linear(x0, x1, d0, d1, t):
    """``numpy.interp``'s value between (d0, x0) and (d1, x1) at t, to the bit."""
    slope = (x1 - x0) / (d1 - d0)
    v = slope * (t - d0) + x0
    if np.isnan(v):
        v = slope * (t - d1) + x1
        if np.isnan(v) and x0 == x1:
            v = x0
    return v


@inline_jit
def _fill(stack, p, a, b, t, j, days, method, max_gap, edges, start, end, sptr, sidx, buf):
    """Fill target ``t`` (index ``j``) of pixel ``p``, missing there; ``a`` / ``b`` are the rows of its last
    valid observation before ``t`` and its first after (-1: none). Returns ``(value, flag, row)``:
    ``row >= 0`` means copy ``stack[row, p]``, bit for bit."""
    if a < 0 and b < 0:
        return np.nan, FLAG_MISSING, -1
    interior = a >= 0 and b >= 0
    if interior:
        gap = days[b] - days[a]
    elif edges == 0:
        return np.nan, FLAG_MISSING, -1
    else:
        gap = days[b] - start if a < 0 else end - days[a]
    if max_gap > 0.0 and gap > max_gap:
        return np.nan, FLAG_MISSING, -1
    if method == _SEASONAL:
        m = 0
        for c in range(sptr[j], sptr[j + 1]):
            x = stack[sidx[c], p]
            if not np.isnan(x):
                buf[m] = x
                m += 1
        if m > 0:
            return median_inplace(buf, m), FLAG_SEASONAL, -1
    if not interior:
        return np.nan, FLAG_EDGE, b if a < 0 else a
    if method == _LINEAR or method == _SEASONAL:
        v = _linear(np.float64(stack[a, p]), np.float64(stack[b, p]), days[a], days[b], t)
        return v, FLAG_INTERPOLATED, -1
    if method == _PREVIOUS:
        return np.nan, FLAG_INTERPOLATED, a
    if method == _NEXT:
        return np.nan, FLAG_INTERPOLATED, b
    return np.nan, FLAG_INTERPOLATED, a if t - days[a] <= days[b] - t else b


@jit
def _sweep(stack, rows, s, m, last):
    """Set ``last[p]`` to ``row`` for each of ``rows`` (in sweep order) where pixel ``s + p`` is valid."""
    for i in rows:
        x = stack[i, s:s + m]
        for p in range(m):
            if not np.isnan(x[p]):
                last[p] = i


@pjit
def _gapfill_kernel(stack, order, days, targets, method, max_gap, edges, start, end, sptr, sidx, values, flags,
                    chunk):
    """Per chunk of pixels, two sweeps along time, row by row (so the inner loops run over contiguous
    pixels): forward, the last valid observation at or before each target; backward, the first at or
    after it, and the value."""
    n_dates, n_pix = stack.shape
    n_t = targets.shape[0]
    for c in numba.prange((n_pix + chunk - 1) // chunk):
        s = c * chunk
        m = min(chunk, n_pix - s)
        before = np.empty((n_t, m), np.int32)
        last = np.full(m, -1, np.int32)
        buf = np.empty(n_dates, np.float64)
        k = 0
        for j in range(n_t):
            k0 = k
            while k < n_dates and days[order[k]] <= targets[j]:
                k += 1
            _sweep(stack, order[k0:k], s, m, last)
            before[j] = last
        last[:] = -1
        k = n_dates - 1
        for j in range(n_t - 1, -1, -1):
            t = targets[j]
            k0 = k
            while k >= 0 and days[order[k]] >= t:
                k -= 1
            _sweep(stack, order[k + 1:k0 + 1][::-1], s, m, last)
            v_out = values[j, s:s + m]
            f_out = flags[j, s:s + m]
            for p in range(m):
                a = before[j, p]
                b = last[p]
                if a >= 0 and days[a] == t:
                    v_out[p] = stack[a, s + p]
                    f_out[p] = FLAG_OBSERVED
                    continue
                v, f, row = _fill(stack, s + p, a, b, t, j, days, method, max_gap, edges, start, end,
                                  sptr, sidx, buf)
                if row >= 0:
                    v_out[p] = stack[row, s + p]
                else:
                    v_out[p] = v
                f_out[p] = FLAG_MISSING if np.isnan(v_out[p]) else f


def _check_days(days: np.ndarray, n_dates: int) -> np.ndarray:
    d = np.asarray(days, np.float64).reshape(-1)
    if d.shape[0] != n_dates:
        raise ParameterError(f"{d.shape[0]} day numbers were given for a stack of {n_dates} dates.")
    if not np.all(np.isfinite(d)):
        raise ParameterError("The day numbers of the dates must all be finite.")
    s = np.sort(d)
    same = s[1:][s[1:] == s[:-1]]
    if same.size:
        iso = ", ".join(x.isoformat() for x in dates_from_days(np.unique(same)[:3]))
        raise ParameterError(f"Two inputs have the same date ({iso}); a series needs one raster per date.")
    return d


def gapfill_stack(stack: np.ndarray, days: np.ndarray, options: GapfillOptions,
                  out: Optional[np.ndarray] = None,
                  flags_out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fill the gaps of a ``(dates, ...)`` stack along its first axis.

    Parameters
    ----------
    stack : ndarray, float32 or float64
        One layer per date, in any order, NaN where an observation is missing
        (masked, nodata); any pixel shape after the first axis, e.g.
        ``(dates, height, width)`` or ``(dates, bands, height, width)``.
    days : array of float
        The day number of each layer (:func:`tilewise.core.dates.day_numbers`), all different.
    options : GapfillOptions
        From :func:`tilewise.core.kernels.gapfill_plan.plan_gapfill`.
    out, flags_out : ndarray, optional
        Preallocated outputs of shape ``(targets, ...)``, the stack's dtype and uint8.

    Returns
    -------
    values : ndarray, the stack's dtype, ``(targets, ...)``
        One layer per target date (:func:`tilewise.core.kernels.gapfill_plan.target_days`, increasing);
        observed values passed through bit for bit, NaN where still missing.
    flags : ndarray, uint8, ``(targets, ...)``
        0 observed, 1 interpolated, 2 seasonal, 3 edge-filled, 255 still missing.

    >>> from tilewise.core.kernels.gapfill_plan import plan_gapfill
    >>> s = np.array([[1.0], [np.nan], [np.nan], [7.0]], np.float32)
    >>> v, f = gapfill_stack(s, [0, 10, 20, 30], plan_gapfill("linear"))
    >>> v[:, 0].tolist(), f[:, 0].tolist()
    ([1.0, 3.0, 5.0, 7.0], [0, 1, 1, 0])
    """
    stack = np.asarray(stack)
    if stack.ndim < 1 or stack.shape[0] == 0:
        raise ParameterError("Gap filling needs a stack with at least one date.")
    if stack.dtype not in (np.float32, np.float64):
        raise ParameterError(f"Stacks are float32 or float64 with NaN for missing values, not {stack.dtype}.")
    d = _check_days(days, stack.shape[0])
    targets = target_days(options, d)
    flat = np.ascontiguousarray(stack.reshape(stack.shape[0], -1))
    shape = (targets.shape[0],) + stack.shape[1:]
    values = _output(out, shape, stack.dtype, "out")
    flags = _output(flags_out, shape, np.dtype(np.uint8), "flags_out")
    if options.method == "seasonal":
        sptr, sidx = season_table(d, targets, options.season_days, options.years_window)
    else:
        sptr, sidx = np.zeros(targets.shape[0] + 1, np.int64), np.zeros(0, np.int64)
    start = min(float(d.min()), float(targets[0])) if targets.size else float(d.min())
    end = max(float(d.max()), float(targets[-1])) if targets.size else float(d.max())
    _gapfill_kernel(flat, np.argsort(d).astype(np.int64), d, targets, options.method_code,
                    float(options.max_gap), options.edges_code, start, end, sptr, sidx,
                    values.reshape(targets.shape[0], -1), flags.reshape(targets.shape[0], -1),
                    _CHUNK)
    return values, flags


def _output(given: Optional[np.ndarray], shape, dtype: np.dtype, what: str) -> np.ndarray:
    if given is None:
        return np.empty(shape, dtype)
    if given.shape != shape or given.dtype != dtype or not given.flags.c_contiguous:
        raise ParameterError(f"{what} must be a C-contiguous {dtype} array of shape {shape}, "
                             f"got {given.dtype} {given.shape}.")
    return given


def warm_up(group: str = "gap filling") -> Tuple[int, int]:
    """Compile the gap-filling kernel for float32 and float64 stacks into numba's cache, or load it;
    return ``(compiled, loaded from the cache)``, counted in specializations."""
    def calls() -> None:
        for dtype in (np.float32, np.float64):
            stack = np.array([[1.0, np.nan], [np.nan, 2.0], [3.0, np.nan]], dtype)
            gapfill_stack(stack, [0.0, 10.0, 400.0], plan_gapfill("seasonal", edges=1))
    return compiled_and_loaded((_gapfill_kernel,), calls)

"""Composites that keep each pixel's bands together: geometric median, medoid, best-available pixel, MADs.

Pure functions over arrays, compiled with numba: no I/O, no globals. A tile's stack is
``(observations, bands, pixels)`` with NaN for a missing value; an observation missing
(or infinite) in any band is left out of the pixel. Observations are in date order,
so "the first" of equal candidates is the earliest. Each kernel runs ``prange`` over
chunks of pixels, with scratch buffers per chunk, and accumulates in float64; the geomedian,
medoid and MADs first read a chunk along pixels into a (pixel, band, observation) buffer
(:func:`_transpose`): a pixel's observations lie a page apart in the stack.

These kernels are their own warm-up group (:data:`.statistics.WARM_GROUPS`): they share
no helper with the other groups.
"""

from __future__ import annotations

from typing import Tuple

from .jit import compiled_and_loaded, fast_jit, jit, pjit
from .reducers import median_inplace

import numba
import numpy as np

from ..errors import ParameterError

_CHUNK = 256
#: Ostresh's (1978) over-relaxed step y + 1.5 (T(y) - y) away from observations: it converges (for factors in
#: [1, 2)) to the same median in fewer steps than Weiszfeld's own (about 1.6x faster on imagery-like stacks).
_RELAX = 1.5
#: An observation this close to the estimate (relative to its norm) is "at" it (Vardi and Zhang's rule).
_AT = 1e-12


@jit
def _norm(y):
    s = 0.0
    for b in range(y.shape[0]):
        s += y[b] * y[b]
    return np.sqrt(s)


@jit
def _weiszfeld(x, k, tol, max_iter, y, t):
    """The geometric median of ``x[:k]`` into ``y``: Weiszfeld's iteration from the mean, over-relaxed
    (:data:`_RELAX`), with Vardi and Zhang's (2000) step where the estimate sits on observations (so it
    converges to a median that is an observation, as in one band). Stops when a step is at most ``tol``
    times the estimate's norm, or after ``max_iter`` steps, then takes the nearest observation if it is
    the median (:func:`_snap`); returns the steps taken."""
    n_bands = x.shape[1]
    for b in range(n_bands):
        s = 0.0
        for i in range(k):
            s += x[i, b]
        y[b] = s / k
    steps = 0
    for _ in range(max_iter):
        ynorm = _norm(y)
        at = _AT * ynorm if ynorm > 0.0 else 1e-300
        for b in range(n_bands):
            t[b] = 0.0
        wsum = 0.0
        eta = 0
        at_i = 0
        for i in range(k):
            d2 = 0.0
            for b in range(n_bands):
                diff = x[i, b] - y[b]
                d2 += diff * diff
            d = np.sqrt(d2)
            if d <= at:
                eta += 1
                at_i = i
                continue
            w = 1.0 / d
            wsum += w
            for b in range(n_bands):
                t[b] += w * x[i, b]
        if wsum == 0.0:  # every observation is at the estimate
            break
        beta = 0.0
        if eta > 0:
            r2 = 0.0
            for b in range(n_bands):
                rb = t[b] - wsum * y[b]
                r2 += rb * rb
            r = np.sqrt(r2)
            if r <= eta:  # the observation(s) at the estimate are the median: exactly that value
                for b in range(n_bands):
                    y[b] = x[at_i, b]
                break
            beta = eta / r
        step2 = 0.0
        lam = _RELAX if eta == 0 else 1.0
        for b in range(n_bands):
            nb = y[b] + lam * ((1.0 - beta) * (t[b] / wsum) + beta * y[b] - y[b])
            s = nb - y[b]
            step2 += s * s
            y[b] = nb
        steps += 1
        if np.sqrt(step2) <= tol * _norm(y):
            break
    _snap(x, k, y, t)
    return steps


@jit
def _snap(x, k, y, r):
    """Where the median is an observation, Weiszfeld's steps near it can shrink long before they reach it:
    if the observation nearest to ``y`` passes Vardi and Zhang's test (the unit vectors to the others sum
    to less than its multiplicity), it is the median: ``y`` becomes it."""
    n_bands = x.shape[1]
    near = 0
    best = np.inf
    for i in range(k):
        d2 = 0.0
        for b in range(n_bands):
            diff = x[i, b] - y[b]
            d2 += diff * diff
        if d2 < best:
            best = d2
            near = i
    for b in range(n_bands):
        r[b] = 0.0
    same = 0
    for i in range(k):
        d2 = 0.0
        for b in range(n_bands):
            diff = x[i, b] - x[near, b]
            d2 += diff * diff
        if d2 == 0.0:
            same += 1
            continue
        d = np.sqrt(d2)
        for b in range(n_bands):
            r[b] += (x[i, b] - x[near, b]) / d
    if _norm(r) < same - 1e-9:  # strictly: two observations (or an even count on a line) have many medians
        for b in range(n_bands):
            y[b] = x[near, b]


#: Newton's steps start once a step is below this fraction of the estimate's norm (near the median, where
#: they converge quadratically).
_NEWTON_NEAR = 3e-3
#: A Newton step more than this many times Weiszfeld's own is refused (a nearly singular Hessian: the
#: observations nearly on a line): Weiszfeld's steps finish the pixel.
_NEWTON_CAP = 1e4
#: Halvings of a Newton step that made the gradient grow, before Weiszfeld's steps take over.
_HALVINGS = 8
#: The factored Hessian serves the next steps while each is at most this fraction of the one before (chord steps).
_CHORD = 0.1


@jit
def _transpose(stack, p0, p1, buf, bad):
    """Pixels ``p0:p1`` of ``stack`` into ``buf`` (pixel, band, observation) float64, reading along pixels;
    ``bad`` (pixel, observation): a band is missing or infinite."""
    n_obs, n_bands = stack.shape[0], stack.shape[1]
    for q in range(p1 - p0):
        for i in range(n_obs):
            bad[q, i] = False
    for i in range(n_obs):
        for b in range(n_bands):
            for p in range(p0, p1):
                v = stack[i, b, p]
                buf[p - p0, b, i] = v
                if not np.isfinite(v):
                    bad[p - p0, i] = True


@jit
def _gather_buf(buf, bad, q, x, idx):
    """Pixel ``q``'s complete observations (every band finite) from a :func:`_transpose` buffer to the rows of
    ``x`` (float64), their indices to ``idx``; return how many."""
    n_bands, n_obs = buf.shape[1], buf.shape[2]
    k = 0
    for i in range(n_obs):
        if not bad[q, i]:
            for b in range(n_bands):
                x[k, b] = buf[q, b, i]
            idx[k] = i
            k += 1
    return k


@fast_jit
def _newton(x, k, tol, max_iter, y, yp, t, d, r, h, w3, q):
    """The geometric median of the columns ``x[:, :k]`` (bands, observations) into ``y``: over-relaxed
    Weiszfeld steps from the mean (:data:`_RELAX`) until a step is below :data:`_NEWTON_NEAR` of the
    estimate, then Newton's steps (the Hessian ``sum(w) I - sum(w^3 r r')``, ``w`` the inverse distances,
    ``r`` the residuals, by Cholesky), which converge quadratically where Weiszfeld's converge linearly.
    A Newton step that makes the gradient grow is halved (near an observation the objective is nearly a kink),
    up to :data:`_HALVINGS` times; then, or where Newton's steps are refused (a singular or nearly singular
    Hessian, a step over :data:`_NEWTON_CAP` times Weiszfeld's), Weiszfeld's steps take over for good.
    Stops when a step is at most ``tol`` times the estimate's norm. Returns ``(steps, the last step was
    Newton's, the squared distance from the estimate before it to the nearest observation, the squared last
    step)``, steps -1 where the estimate reaches an observation (:func:`_weiszfeld`'s handling is needed)."""
    nb = x.shape[0]
    for b in range(nb):
        s = 0.0
        for i in range(k):
            s += x[b, i]
        y[b] = s / k
    steps = 0
    newton = nb > 1
    near = False
    gprev = np.inf
    halved = 0
    factored = False
    last2 = before2 = np.inf
    dmin = np.inf
    step2 = 0.0
    took = False
    for _ in range(max_iter):
        yn2 = 0.0
        for b in range(nb):
            yn2 += y[b] * y[b]
        at = _AT * _AT * yn2 if yn2 > 0.0 else 1e-300
        for i in range(k):
            d[i] = 0.0
        for b in range(nb):
            yb = y[b]
            for i in range(k):
                diff = x[b, i] - yb
                r[b, i] = diff
                d[i] += diff * diff
        dmin = np.inf
        for i in range(k):
            dmin = min(dmin, d[i])
        if dmin <= at:
            return -1, False, 0.0, 0.0
        wsum = 0.0
        for i in range(k):
            w = 1.0 / np.sqrt(d[i])
            d[i] = w
            wsum += w
        g2 = 0.0
        for b in range(nb):
            s = 0.0
            for i in range(k):
                s += d[i] * r[b, i]
            t[b] = s
            g2 += s * s
        if took and g2 > gprev:  # Newton's last step made the gradient grow: halve it, or back and Weiszfeld's
            halved += 1
            for b in range(nb):
                y[b] = yp[b] + 0.5 * (y[b] - yp[b]) if halved <= _HALVINGS else yp[b]
            if halved > _HALVINGS:
                newton = False
                took = False
            continue
        took = False
        if near and newton:
            fresh = halved > 0 or not factored or last2 > _CHORD * _CHORD * before2
            took = _newton_step(d, r, k, nb, wsum, t, h, w3, q, g2, fresh)
            newton = took
            factored = took
            for b in range(nb):
                yp[b] = y[b]
        halved = 0
        gprev = g2
        step2 = 0.0
        ny2 = 0.0
        lam = 1.0 if took else _RELAX / wsum
        for b in range(nb):
            st = lam * t[b]
            nv = y[b] + st
            step2 += st * st
            ny2 += nv * nv
            y[b] = nv
        steps += 1
        before2 = last2
        last2 = step2
        if step2 <= tol * tol * ny2:
            break
        if step2 <= _NEWTON_NEAR * _NEWTON_NEAR * ny2:
            near = True
    return steps, took, dmin, step2


@fast_jit
def _newton_step(w, r, k, nb, wsum, t, h, w3, q, g2, fresh):
    """Replace the gradient ``t`` (``sum(w r)``) by Newton's step ``H^-1 t`` (``fresh``: the Hessian built and
    factored into ``h``; else the factor already in ``h``); False (``t`` then unusable) where the Hessian is
    (nearly) singular or the step over :data:`_NEWTON_CAP` times Weiszfeld's."""
    if fresh and not _factor(w, r, k, nb, wsum, h, w3, q):
        return False
    for a in range(nb):
        s = t[a]
        for m in range(a):
            s -= h[a, m] * t[m]
        t[a] = s / h[a, a]
    n2 = 0.0
    for a in range(nb - 1, -1, -1):
        s = t[a]
        for m in range(a + 1, nb):
            s -= h[m, a] * t[m]
        t[a] = s / h[a, a]
        n2 += t[a] * t[a]
    return n2 <= _NEWTON_CAP * _NEWTON_CAP * g2 / (wsum * wsum)


@fast_jit
def _factor(w, r, k, nb, wsum, h, w3, q):
    """The Hessian ``sum(w) I - sum(w^3 r r')`` Cholesky-factored into ``h``'s lower triangle; False where it is
    (nearly) singular."""
    for i in range(k):
        w3[i] = w[i] * w[i] * w[i]
    for a in range(nb):
        for i in range(k):
            q[i] = w3[i] * r[a, i]
        for c in range(a + 1):
            s = 0.0
            for i in range(k):
                s += q[i] * r[c, i]
            h[a, c] = (wsum if a == c else 0.0) - s
    for a in range(nb):  # Cholesky, lower triangle in place
        for c in range(a + 1):
            s = h[a, c]
            for m in range(c):
                s -= h[a, m] * h[c, m]
            if a == c:
                if s <= 1e-9 * wsum:
                    return False
                h[a, a] = np.sqrt(s)
            else:
                h[a, c] = s / h[c, c]
    return True


@pjit
def geomedian_kernel(stack, tol, max_iter, out, count):
    """``out`` (bands, pixels) float64: each pixel's geometric median (NaN without observations);
    ``count`` (pixels): its complete observations. A chunk's pixels are first read along pixels into a
    (pixel, band, observation) buffer, each pixel's complete observations then gathered into the columns of
    ``x`` for :func:`_newton`; where an observation is reached (Vardi and Zhang's case), :func:`_weiszfeld`
    redoes the pixel. :func:`_snap` ends every pixel, unless Newton's last step was a thousandth of the
    distance to the nearest observation (the median is then no observation)."""
    n_obs, n_bands, n_pix = stack.shape
    for c in numba.prange((n_pix + _CHUNK - 1) // _CHUNK):
        p0 = c * _CHUNK
        p1 = min(p0 + _CHUNK, n_pix)
        buf = np.empty((p1 - p0, n_bands, n_obs), np.float64)
        bad = np.empty((p1 - p0, n_obs), np.bool_)
        _transpose(stack, p0, p1, buf, bad)
        x = np.empty((n_bands, n_obs), np.float64)
        xo = np.empty((n_obs, n_bands), np.float64)
        r = np.empty((n_bands, n_obs), np.float64)
        h = np.empty((n_bands, n_bands), np.float64)
        d = np.empty(n_obs, np.float64)
        w3 = np.empty(n_obs, np.float64)
        q = np.empty(n_obs, np.float64)
        y = np.empty(n_bands, np.float64)
        yp = np.empty(n_bands, np.float64)
        t = np.empty(n_bands, np.float64)
        for p in range(p0, p1):
            k = 0
            for i in range(n_obs):
                if not bad[p - p0, i]:
                    for b in range(n_bands):
                        x[b, k] = buf[p - p0, b, i]
                    k += 1
            count[p] = k
            if k == 0:
                for b in range(n_bands):
                    out[b, p] = np.nan
                continue
            steps, newton, dmin, step2 = _newton(x, k, tol, max_iter, y, yp, t, d, r, h, w3, q)
            if steps < 0 or not (newton and step2 * 1e6 < dmin):
                for i in range(k):
                    for b in range(n_bands):
                        xo[i, b] = x[b, i]
                if steps < 0:
                    _weiszfeld(xo, k, tol, max_iter, y, t)
                else:
                    _snap(xo, k, y, t)
            for b in range(n_bands):
                out[b, p] = y[b]


@pjit
def medoid_kernel(stack, chosen, count):
    """``chosen`` (pixels): the index of the observation whose summed Euclidean distance to the
    pixel's other observations is smallest (the first of equal sums: the earliest), -1 without
    observations; ``count``: the complete observations. Sums run over the others in index order."""
    n_obs, n_bands, n_pix = stack.shape
    for c in numba.prange((n_pix + _CHUNK - 1) // _CHUNK):
        p0 = c * _CHUNK
        p1 = min(p0 + _CHUNK, n_pix)
        buf = np.empty((p1 - p0, n_bands, n_obs), np.float64)
        bad = np.empty((p1 - p0, n_obs), np.bool_)
        _transpose(stack, p0, p1, buf, bad)
        x = np.empty((n_obs, n_bands), np.float64)
        idx = np.empty(n_obs, np.int64)
        sums = np.empty(n_obs, np.float64)
        for p in range(p0, p1):
            k = _gather_buf(buf, bad, p - p0, x, idx)
            count[p] = k
            if k == 0:
                chosen[p] = -1
                continue
            for i in range(k):
                sums[i] = 0.0
            for i in range(k):
                for j in range(i + 1, k):
                    d2 = 0.0
                    for b in range(n_bands):
                        diff = x[i, b] - x[j, b]
                        d2 += diff * diff
                    d = np.sqrt(d2)
                    sums[i] += d
                    sums[j] += d
            best = 0
            for i in range(1, k):
                if sums[i] < sums[best]:
                    best = i
            chosen[p] = idx[best]


@pjit
def best_kernel(stack, scores, chosen, count):
    """``chosen`` (pixels): the index of the complete observation with the highest score (``scores``
    (observations, pixels); NaN leaves an observation out), the first of equal scores; -1 without any."""
    n_obs, n_bands, n_pix = stack.shape
    for c in numba.prange((n_pix + _CHUNK - 1) // _CHUNK):
        for p in range(c * _CHUNK, min((c + 1) * _CHUNK, n_pix)):
            best = -1
            k = 0
            for i in range(n_obs):
                ok = True
                for b in range(n_bands):
                    if not np.isfinite(stack[i, b, p]):
                        ok = False
                        break
                if not ok:
                    continue
                k += 1
                s = scores[i, p]
                if np.isnan(s):
                    continue
                if best < 0 or s > scores[best, p]:
                    best = i
            chosen[p] = best
            count[p] = k


@pjit
def mads_kernel(stack, centre, out):
    """``out`` (3, pixels): the median, over each pixel's complete observations ``x``, of the Euclidean
    distance to ``centre`` (bands, pixels) (EMAD), of the cosine distance ``1 - x.c / (|x| |c|)`` (SMAD) and
    of the Bray-Curtis distance ``sum |x - c| / sum |x + c|`` (BCMAD); an observation for which a
    distance is undefined (zero norm or sum) is left out of that one. NaN without any."""
    n_obs, n_bands, n_pix = stack.shape
    for ch in numba.prange((n_pix + _CHUNK - 1) // _CHUNK):
        p0 = ch * _CHUNK
        p1 = min(p0 + _CHUNK, n_pix)
        buf = np.empty((p1 - p0, n_bands, n_obs), np.float64)
        bad = np.empty((p1 - p0, n_obs), np.bool_)
        _transpose(stack, p0, p1, buf, bad)
        x = np.empty((n_obs, n_bands), np.float64)
        idx = np.empty(n_obs, np.int64)
        e = np.empty(n_obs, np.float64)
        s = np.empty(n_obs, np.float64)
        bc = np.empty(n_obs, np.float64)
        for p in range(p0, p1):
            k = _gather_buf(buf, bad, p - p0, x, idx)
            cn = 0.0
            for b in range(n_bands):
                cn += centre[b, p] * centre[b, p]
            cn = np.sqrt(cn)
            ne = ns = nb = 0
            if k > 0 and np.isfinite(cn):
                for i in range(k):
                    d2 = 0.0
                    dot = 0.0
                    xn = 0.0
                    num = 0.0
                    den = 0.0
                    for b in range(n_bands):
                        v = x[i, b]
                        c = centre[b, p]
                        d2 += (v - c) * (v - c)
                        dot += v * c
                        xn += v * v
                        num += abs(v - c)
                        den += abs(v + c)
                    e[ne] = np.sqrt(d2)
                    ne += 1
                    if xn > 0.0 and cn > 0.0:
                        s[ns] = 1.0 - dot / (np.sqrt(xn) * cn)
                        ns += 1
                    if den > 0.0:
                        bc[nb] = num / den
                        nb += 1
            out[0, p] = median_inplace(e, ne) if ne else np.nan
            out[1, p] = median_inplace(s, ns) if ns else np.nan
            out[2, p] = median_inplace(bc, nb) if nb else np.nan


@jit
def _edt_line(f, n, d, v, z):
    """Felzenszwalb and Huttenlocher's 1-D squared distance transform of ``f[:n]`` into ``d``."""
    k = 0
    v[0] = 0
    z[0] = -np.inf
    z[1] = np.inf
    for q in range(1, n):
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / (2.0 * q - 2.0 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = np.inf
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d[q] = (q - v[k]) * (q - v[k]) + f[v[k]]


_FAR = 1e18


@pjit
def missing_distance_kernel(missing, cap, out):
    """``out`` (layers, rows, cols) float32: the Euclidean distance in pixels from each pixel to the
    nearest pixel of its layer with ``missing`` set (0 there), at most ``cap``."""
    n_layers, rows, cols = missing.shape
    for layer in numba.prange(n_layers):
        n = max(rows, cols)
        f = np.empty(n, np.float64)
        d = np.empty(n, np.float64)
        v = np.empty(n, np.int64)
        z = np.empty(n + 1, np.float64)
        grid = np.empty((rows, cols), np.float64)
        for r in range(rows):
            for q in range(cols):
                f[q] = 0.0 if missing[layer, r, q] else _FAR
            _edt_line(f, cols, d, v, z)
            for q in range(cols):
                grid[r, q] = d[q]
        for q in range(cols):
            for r in range(rows):
                f[r] = grid[r, q]
            _edt_line(f, rows, d, v, z)
            for r in range(rows):
                out[layer, r, q] = min(np.sqrt(d[r]), cap)


# -- validated entry points -----------------------------------------------------------------------------------

def _flat(stack: np.ndarray) -> np.ndarray:
    if stack.ndim < 3:
        raise ParameterError("A spectral stack is (observations, bands, pixels...).")
    if stack.dtype not in (np.float32, np.float64):
        raise ParameterError(f"Stacks are float32 or float64 with NaN for missing values, not {stack.dtype}.")
    return np.ascontiguousarray(stack.reshape(stack.shape[0], stack.shape[1], -1))


def geomedian(stack: np.ndarray, tolerance: float = 1e-7, max_iterations: int = 500
              ) -> Tuple[np.ndarray, np.ndarray]:
    """The per-pixel geometric median of an ``(observations, bands, ...)`` stack: ``(median (bands, ...)
    float64, complete observations (...) int32)``.

    >>> s = np.array([[[0.0]], [[1.0]], [[5.0]]])          # 3 observations, 1 band, 1 pixel
    >>> geomedian(s)[0].ravel().tolist(), geomedian(s)[1].tolist()
    ([1.0], [3])
    """
    flat = _flat(stack)
    out = np.empty((flat.shape[1], flat.shape[2]), np.float64)
    count = np.empty(flat.shape[2], np.int32)
    geomedian_kernel(flat, float(tolerance), int(max_iterations), out, count)
    return out.reshape(stack.shape[1:]), count.reshape(stack.shape[2:])


def medoid(stack: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(index of each pixel's medoid observation (-1: none), complete observations)``, over pixels."""
    flat = _flat(stack)
    chosen = np.empty(flat.shape[2], np.int32)
    count = np.empty(flat.shape[2], np.int32)
    medoid_kernel(flat, chosen, count)
    return chosen.reshape(stack.shape[2:]), count.reshape(stack.shape[2:])


def best(stack: np.ndarray, scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(index of each pixel's best-scoring complete observation (-1: none), complete observations)``;
    ``scores`` is ``(observations, pixels...)`` (NaN: left out)."""
    flat = _flat(stack)
    sc = np.ascontiguousarray(scores.reshape(flat.shape[0], -1), np.float64)
    if sc.shape[1] != flat.shape[2]:
        raise ParameterError("The scores must have one value per observation and pixel.")
    chosen = np.empty(flat.shape[2], np.int32)
    count = np.empty(flat.shape[2], np.int32)
    best_kernel(flat, sc, chosen, count)
    return chosen.reshape(stack.shape[2:]), count.reshape(stack.shape[2:])


def mads(stack: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``(3, ...)`` float64: EMAD, SMAD and BCMAD of each pixel's complete observations around ``centre``."""
    flat = _flat(stack)
    c = np.ascontiguousarray(centre.reshape(flat.shape[1], -1), np.float64)
    out = np.empty((3, flat.shape[2]), np.float64)
    mads_kernel(flat, c, out)
    return out.reshape((3,) + stack.shape[2:])


def take(stack: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The bands of each pixel's chosen observation: ``(bands, ...)``, NaN where ``chosen`` is -1."""
    index = np.where(chosen < 0, 0, chosen).astype(np.intp)
    picked = np.take_along_axis(stack, index[np.newaxis, np.newaxis], axis=0)[0].astype(np.float64)
    picked[:, chosen < 0] = np.nan
    return picked


def missing_distance(missing: np.ndarray, cap: float) -> np.ndarray:
    """``(layers, rows, cols)`` float32: distance in pixels to the nearest ``missing`` pixel, at most ``cap``."""
    m = np.ascontiguousarray(missing, np.bool_)
    out = np.empty(m.shape, np.float32)
    missing_distance_kernel(m, float(cap), out)
    return out


# -- warming numba's cache -----------------------------------------------------------------------------------

def warm_up(group: str = "spectral composites") -> Tuple[int, int]:
    """Compile the spectral kernels for float32 and float64 stacks into numba's cache, or load them;
    return ``(compiled, loaded from the cache)``, counted in specializations."""
    def calls() -> None:
        for dtype in (np.float32, np.float64):
            s = np.array([[[1.0, np.nan], [2.0, 1.0]], [[3.0, 2.0], [1.0, 0.0]], [[0.0, 1.0], [2.0, 2.0]]], dtype)
            centre, _ = geomedian(s)
            medoid(s)
            best(s, np.ones((3, 2)))
            mads(s, centre)
        missing_distance(np.zeros((1, 3, 3), bool), 5.0)
    kernels = (geomedian_kernel, medoid_kernel, best_kernel, mads_kernel, missing_distance_kernel)
    return compiled_and_loaded(kernels, calls)

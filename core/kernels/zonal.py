"""Statistics of each feature over one band of a tile, and their exact merge across tiles.

:func:`reduce_tile` turns a tile's :class:`~.pixel_cover.Cover` and the tile's
bands into a :class:`TilePart`: per feature and layer, mergeable aggregates
(weight, count, mean, sum of squared deviations, min, max, sum). For a feature
complete in the tile it also holds the medians and percentiles; for a feature
that spans tiles it holds its valid values and weights instead, so that
:class:`ZoneMerger` reduces them once when the last tile has come: medians and
percentiles are exact, never averages of tile medians. Memory is bounded by the
tile's pixels and the number of features that span tiles.

Definitions (``w`` is 1 for whole pixels, the covered fraction for fractional
coverage, the bilinear weight for points):

* ``mean = sum(w x) / sum(w)``, ``sum = sum(w x)``, ``count = sum(w)`` over valid
  pixels; ``std`` the population standard deviation, weighted; ``min``/``max``
  over valid pixels with ``w > 0``; ``n_valid`` the number of those pixels.
* median and percentiles of whole pixels: numpy's default (linear) rule, which
  for the median is QGIS's. Of weighted pixels: exactextract's weighted
  quantile (values with equal value pooled, linear between them; with equal
  weights and distinct values it is numpy's rule).
* a statistic is null where no valid pixel is left, or where the valid weight
  is below ``min_valid_fraction`` of the feature's whole footprint (pixels
  outside the raster count as invalid); ``count`` and ``n_valid`` stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .jit import compiled_and_loaded, jit
from .reducers import select_kth
from .statistics import integer_range
from .pixel_cover import MODE_FRACTIONAL, Cover, cover_kernel, cover_tile, footprint_total

#: GDAL's bilinear interpolation gives no value below this total weight of valid pixels.
BILINEAR_MIN_WEIGHT = 1e-5


@dataclass
class TilePart:
    """What one tile contributes for its features, over ``L`` layers (rasters x bands).

    Rows follow ``zones``. ``w, n, mean, m2, vmin, vmax, total`` are ``(k, L)``;
    ``blocked`` ``(k, L)`` marks a bilinear point whose own pixel has no data;
    ``quantiles`` is ``(k, L, q)`` and set for rows with ``complete``; the valid
    ``(value, weight)`` pairs of the other rows (when quantiles are asked) are in
    ``values``/``vweights``: row ``k``, layer ``l`` at
    ``vstart[k] + l * vlen[k]``, ``vcount[k, l]`` of them.
    """

    tile: int
    zones: np.ndarray
    blocked: np.ndarray
    footprint: np.ndarray
    fallback: np.ndarray
    weighted: np.ndarray
    complete: np.ndarray
    w: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    total: np.ndarray
    quantiles: np.ndarray
    vstart: np.ndarray
    vlen: np.ndarray
    vcount: np.ndarray
    values: np.ndarray
    vweights: np.ndarray

    def segment(self, k: int, layer: int) -> Tuple[np.ndarray, np.ndarray]:
        a = int(self.vstart[k] + layer * self.vlen[k])
        b = a + int(self.vcount[k, layer])
        return self.values[a:b], self.vweights[a:b]


def layer_arrays(band) -> Tuple[np.ndarray, np.ndarray]:
    """``(values, valid)`` of one band, flat, the values in their own numeric type (no float copy).

    A band is a masked array (mask: no data), a ``(values, valid)`` pair, or a plain
    array (NaN: no data; every integer is data).

    >>> v, ok = layer_arrays(np.ma.masked_equal(np.array([[1, 0], [3, 4]], np.uint8), 0))
    >>> v.tolist(), ok.tolist()
    ([1, 0, 3, 4], [True, False, True, True])
    """
    if isinstance(band, tuple):
        data, valid = band
        valid = np.asarray(valid, dtype=bool)
    elif isinstance(band, np.ma.MaskedArray):
        data, valid = band.data, ~np.ma.getmaskarray(band)
    else:
        data, valid = band, None
    data = np.asarray(data)
    if data.dtype.kind == "b":
        data = data.view(np.uint8)
    elif data.dtype.kind not in "iuf":
        data = data.astype(np.float64)
    data = np.ascontiguousarray(data).ravel()
    if valid is None:
        valid = ~np.isnan(data) if data.dtype.kind == "f" else np.ones(data.shape, bool)
    elif data.dtype.kind == "f":
        valid = valid.ravel() & ~np.isnan(data)
    return data, np.ascontiguousarray(valid).ravel()


def reduce_tile(cover: Cover, layers: Iterable, *, complete: np.ndarray, weighted: np.ndarray,
                quantiles: Sequence[float] = (), n_layers: Optional[int] = None, tile: int = -1,
                moments: bool = True) -> TilePart:
    """Aggregates of every feature of ``cover`` over each 2-D layer (the tile's bands, in order).

    ``layers`` may be a generator (one layer in memory at a time); then give ``n_layers``.

    ``complete[k]``: feature ``k`` has no pixel in another tile (its quantiles are
    computed here). ``weighted[k]``: its weights are fractions (weighted quantiles).
    ``moments``: compute the sums of squared deviations (``m2``, for the std); without
    them ``m2`` is zero.

    >>> import shapely
    >>> from tilewise.core.kernels.footprints import footprints_from_pixels
    >>> from tilewise.core.kernels.pixel_cover import cover_tile
    >>> fp = footprints_from_pixels([shapely.box(0, 0, 2, 2)], 2, 2)
    >>> cover = cover_tile(fp, np.array([0]), 0, 0, 2, 2)
    >>> band = np.array([[1.0, 2.0], [np.nan, 6.0]])
    >>> p = reduce_tile(cover, [band], complete=np.array([True]), weighted=np.array([False]), quantiles=[0.5])
    >>> p.n.tolist(), p.mean.tolist(), p.quantiles.tolist(), p.vmax.tolist()
    ([[3]], [[3.0]], [[[2.0]]], [[6.0]])
    """
    k = len(cover.zones)
    if n_layers is None:
        layers = list(layers)
        n_layers = len(layers)
    qs = np.asarray(quantiles, dtype=np.float64)
    complete = np.asarray(complete, bool)
    weighted = np.asarray(weighted, bool)
    w = np.zeros((k, n_layers))
    n = np.zeros((k, n_layers), np.int64)
    mean = np.full((k, n_layers), np.nan)
    m2 = np.zeros((k, n_layers))
    vmin = np.full((k, n_layers), np.inf)
    vmax = np.full((k, n_layers), -np.inf)
    total = np.zeros((k, n_layers))
    qout = np.full((k, n_layers, len(qs)), np.nan)
    lengths = np.diff(cover.offsets)
    collect = ~complete if len(qs) else np.zeros(k, bool)
    vlen = np.where(collect, lengths, 0).astype(np.int64)
    vstart = np.concatenate([[0], np.cumsum(vlen * n_layers)[:-1]]).astype(np.int64) if k else np.zeros(0, np.int64)
    size = int(np.sum(vlen) * n_layers)
    values = np.empty(size)
    vweights = np.empty(size)
    vcount = np.zeros((k, n_layers), np.int64)
    blocked = np.zeros((k, n_layers), bool)
    scratch = max(int(lengths.max(initial=0)), 1)
    buf_v, buf_w, hist = np.empty(scratch), np.empty(scratch), np.zeros(HIST_SIZE, np.int64)
    li = -1
    for li, band in enumerate(layers):
        if li >= n_layers:
            raise ValueError(f"more than the {n_layers} layers announced")
        data, valid = layer_arrays(band)
        if data.shape[0] != cover.height * cover.width:
            raise ValueError(f"layer {li} has {data.shape[0]} pixels, the tile {cover.height * cover.width}")
        has = cover.anchor >= 0
        blocked[has, li] = ~valid[cover.anchor[has]]
        int_lo, int_bits = integer_range([data.dtype.name]) or (0, 0)
        _reduce_kernel(data, valid, cover.offsets, cover.pixels, cover.weights, complete.view(np.uint8),
                       weighted.view(np.uint8), collect.view(np.uint8), qs, li, n_layers, bool(moments),
                       w, n, mean, m2, vmin, vmax, total, qout, vstart, vlen, vcount, values, vweights,
                       buf_v, buf_w, int_lo, int_bits, hist)
    if li != n_layers - 1:
        raise ValueError(f"{li + 1} layers given, {n_layers} announced")
    return TilePart(int(tile), cover.zones, blocked, cover.footprint, cover.fallback, weighted, complete,
                    w, n, mean, m2, vmin, vmax, total, qout, vstart, vlen, vcount, values, vweights)


@jit
def _reduce_kernel(data, valid, offsets, pixels, weights, complete, weighted, collect, qs, li, n_layers, moments,
                   w_out, n_out, mean_out, m2_out, min_out, max_out, total_out, q_out,
                   vstart, vlen, vcount, values, vweights, buf_v, buf_w, int_lo, int_bits, hist):
    for k in range(offsets.shape[0] - 1):
        a = offsets[k]
        b = offsets[k + 1]
        sw = 0.0
        swx = 0.0
        cnt = 0
        lo = np.inf
        hi = -np.inf
        for j in range(a, b):
            p = pixels[j]
            if valid[p]:
                x = data[p]
                wt = weights[j]
                sw += wt
                swx += wt * x
                buf_v[cnt] = x
                buf_w[cnt] = wt
                cnt += 1
                if x < lo:
                    lo = x
                if x > hi:
                    hi = x
        w_out[k, li] = sw
        n_out[k, li] = cnt
        total_out[k, li] = swx
        if cnt == 0:
            continue
        m = swx / sw
        if moments:
            ss = 0.0
            for j in range(cnt):
                d = buf_v[j] - m
                ss += buf_w[j] * d * d
            m2_out[k, li] = ss
        mean_out[k, li] = m
        min_out[k, li] = lo
        max_out[k, li] = hi
        if qs.shape[0] > 0 and complete[k]:
            if weighted[k]:
                _weighted_quantiles(buf_v, buf_w, cnt, qs, q_out[k, li], int_lo, int_bits, hist)
            else:
                _quantiles(buf_v, cnt, qs, q_out[k, li], int_lo, int_bits, hist)
        elif collect[k]:
            start = vstart[k] + li * vlen[k]
            for j in range(cnt):
                values[start + j] = buf_v[j]
                vweights[start + j] = buf_w[j]
            vcount[k, li] = cnt


@jit
def _quantiles(v, n, qs, out, int_lo, int_bits, hist):
    """numpy's linear percentiles of ``v[:n]``; the median as numpy's (the mean of the two middle values).

    Integer-valued data of at most 16 bits in ``[int_lo, int_lo + 2**int_bits)``
    (``int_bits`` > 0) are selected by counting: one pass counts the high 8-bit
    digits for every rank asked, one more counts the low digits of the bucket
    that holds the rank (shared by the neighbouring ranks of the median and the
    percentiles that fall in it); other data by quickselect (``v`` is reordered).
    ``hist`` holds :data:`HIST_SIZE` counters.
    """
    if int_bits > 0:
        _count_high(v, n, int_lo, int_bits, hist)
    for i in range(qs.shape[0]):
        pos = qs[i] * (n - 1)
        lo = int(np.floor(pos))
        if lo >= n - 1:
            lo = n - 1
        if int_bits > 0:
            x0 = _count_rank(v, n, lo, int_lo, int_bits, hist)
            x1 = x0 if lo == n - 1 else _count_rank(v, n, lo + 1, int_lo, int_bits, hist)
        else:
            x0 = np.float64(select_kth(v, n, lo))
            x1 = x0
            if lo < n - 1:                     # after the selection, v[lo + 1:] holds the larger values
                x1 = np.float64(v[lo + 1])
                for j in range(lo + 2, n):
                    if v[j] < x1:
                        x1 = np.float64(v[j])
        g = pos - lo
        if qs[i] == 0.5:
            out[i] = x0 if n % 2 == 1 else (x0 + x1) / 2.0
        elif g == 0.0 or x0 == x1:
            out[i] = x0
        else:
            out[i] = x1 - (x1 - x0) * (1.0 - g) if g >= 0.5 else x0 + (x1 - x0) * g


#: Counters of the integer selection: 256 for the high digit, 256 for the low digits of one bucket,
#: and which bucket those are (-1: none yet).
HIST_SIZE = 513


@jit
def _count_high(v, n, lo, bits, hist):
    """Count the high 8-bit digits of the integer values ``v[:n]`` in ``[lo, lo + 2**bits)`` (bits <= 16)
    into ``hist[:256]``; forget the low digits counted for an earlier set of values."""
    shift = bits - 8 if bits > 8 else 0
    hist[:256] = 0
    for i in range(n):
        hist[(int(v[i]) - lo) >> shift] += 1
    hist[512] = -1


@jit
def _count_rank(v, n, k, lo, bits, hist):
    """The ``k``-th smallest (0-based) of ``v[:n]``, from the high digits :func:`_count_high` counted; the
    low digits of the rank's bucket are counted once, and kept for the next rank in the same bucket."""
    shift = bits - 8 if bits > 8 else 0
    acc = 0
    high = 0
    for b in range(256):
        if acc + hist[b] > k:
            high = b
            break
        acc += hist[b]
    if shift == 0:
        return np.float64(lo + high)
    if hist[512] != high:
        hist[256:512] = 0
        low_mask = (1 << shift) - 1
        for i in range(n):
            key = int(v[i]) - lo
            if (key >> shift) == high:
                hist[256 + (key & low_mask)] += 1
        hist[512] = high
    k -= acc
    acc = 0
    for b in range(1 << shift):
        acc += hist[256 + b]
        if acc > k:
            return np.float64(lo + (high << shift) + b)
    return np.nan


@jit
def _weighted_quantiles(v, wts, n, qs, out, int_lo, int_bits, hist):
    """exactextract's weighted quantiles: equal values pooled, then linear between the pooled values.

    Integer data of at most 16 bits are sorted by counting (one or two passes over
    8-bit digits), others by ``np.argsort``.
    """
    xs = np.empty(n)
    ws = np.empty(n)
    if int_bits > 0:
        _count_sort_pairs(v, wts, n, int_lo, int_bits, hist, xs, ws)
        order = np.arange(n)
    else:
        order = np.argsort(v[:n])
    m = 0
    for j in range(n):
        x = v[order[j]]
        if m > 0 and xs[m - 1] == x:
            ws[m - 1] += wts[order[j]]
        else:
            xs[m] = x
            ws[m] = wts[order[j]]
            m += 1
    s = np.empty(m)
    cum = 0.0
    for i in range(m):
        if i == 0:
            s[i] = 0.0
        else:
            s[i] = i * ws[i] + (m - 1) * cum
        cum += ws[i]
    sn = cum * (m - 1)
    for qi in range(qs.shape[0]):
        target = qs[qi] * sn
        right = m
        for i in range(m):
            if s[i] > target:
                right = i
                break
        left = right - 1
        if right == m:
            out[qi] = xs[left]
        else:
            out[qi] = xs[left] + (target - s[left]) * (xs[right] - xs[left]) / (s[right] - s[left])


@jit
def _count_sort_pairs(v, w, n, lo, bits, hist, tmp_v, tmp_w):
    """Sort the integer values ``v[:n]`` (in ``[lo, lo + 2**bits)``, bits <= 16) with their weights
    ``w``, in place: a stable counting sort on each 8-bit digit, lowest first."""
    passes = 1 if bits <= 8 else 2
    for d in range(passes):
        shift = 8 * d
        hist[:256] = 0
        for i in range(n):
            hist[((int(v[i]) - lo) >> shift) & 255] += 1
        start = 0
        for b in range(256):
            c = hist[b]
            hist[b] = start
            start += c
        for i in range(n):
            b = ((int(v[i]) - lo) >> shift) & 255
            tmp_v[hist[b]] = v[i]
            tmp_w[hist[b]] = w[i]
            hist[b] += 1
        v[:n] = tmp_v[:n]
        w[:n] = tmp_w[:n]


def quantiles_of(values: np.ndarray, weights: np.ndarray, qs: Sequence[float], weighted: bool) -> np.ndarray:
    """Quantiles ``qs`` (0-1) of ``values`` by the rule of :func:`reduce_tile` (NaN if empty).

    >>> quantiles_of(np.array([1.0, 1.0, 2.0, 5.0]), np.ones(4), [0.5], False).tolist()
    [1.5]
    >>> quantiles_of(np.array([1.0, 1.0, 2.0, 5.0]), np.ones(4), [0.5], True).tolist()   # exactextract
    [1.8]
    """
    out = np.full(len(qs), np.nan)
    v = np.ascontiguousarray(values, dtype=np.float64)
    if len(v) == 0 or len(qs) == 0:
        return out
    q = np.asarray(qs, dtype=np.float64)
    v = v.copy()
    if weighted:
        _weighted_quantiles(v, np.array(weights, dtype=np.float64), len(v), q, out, 0, 0, np.zeros(HIST_SIZE, np.int64))
    else:
        _quantiles(v, len(v), q, out, 0, 0, np.zeros(HIST_SIZE, np.int64))
    return out


# -- merging ------------------------------------------------------------------------------------------------

@dataclass
class ZoneStats:
    """Final statistics of every feature and layer, NaN where null; ``(n_zones, L)`` each.

    ``quantiles`` is ``(n_zones, L, q)`` in the order of ``ExtractSpec.quantiles``.
    ``valid`` is False where the statistics are null (no valid pixel, or below
    the minimum valid fraction); ``count`` and ``n_valid`` are always set.
    """

    mean: np.ndarray
    std: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    count: np.ndarray
    total: np.ndarray
    n_valid: np.ndarray
    valid_fraction: np.ndarray
    quantiles: np.ndarray
    valid: np.ndarray


@dataclass
class _Stash:
    """Rows kept for a feature that spans tiles until its last tile has come."""

    fallback_rows: List[Tuple[TilePart, int]] = field(default_factory=list)
    segments: List[List[Tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)


class _Merger:
    """What both mergers share: the parts each feature waits for (``parts``, ``seen``), its footprint weight
    on the whole lattice (``whole``, ``footprint``), the minimum valid fraction, the quantiles asked and
    their array ``q``, and whether moments were computed."""

    def __init__(self, n_zones: int, n_layers: int, parts: np.ndarray, whole: np.ndarray,
                 quantiles: Sequence[float], min_valid_fraction: float, moments: bool) -> None:
        self.n_layers = n_layers
        self.moments = bool(moments)
        self.qs = tuple(quantiles)
        self.parts = np.asarray(parts, np.int64)
        self.whole = np.asarray(whole, np.float64)
        self.min_valid_fraction = float(min_valid_fraction)
        self.q = np.full((n_zones, n_layers, len(self.qs)), np.nan)
        self.footprint = np.zeros(n_zones)
        self.seen = np.zeros(n_zones, np.int64)

    def _count(self, part: TilePart) -> None:
        """Count ``part`` for its features; an error if one has more parts than it was given."""
        self.seen[part.zones] += 1
        if np.any(self.seen[part.zones] > self.parts[part.zones]):
            raise ValueError(f"tile {part.tile} was added twice")

    def pending(self) -> int:
        """How many features still wait for a tile."""
        return int(np.sum(self.seen < self.parts))

    def _final(self, zones: Optional[np.ndarray]):
        """``zones`` as an index (all: a slice, so that the arrays are read in place, not gathered into
        copies); an error if one still waits for a part."""
        z = slice(None) if zones is None else np.asarray(zones, np.int64)
        if np.any(self.seen[z] < self.parts[z]):
            missing = np.arange(len(self.parts))[z][self.seen[z] < self.parts[z]]
            raise ValueError(f"{len(missing)} features still wait for tiles (first: {missing[:5].tolist()})")
        return z

    def _valid(self, z, n: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(valid fraction, ok)`` of features ``z`` with ``n`` valid pixels of weight ``w``: ok where there
        is a valid pixel and the fraction reaches the minimum."""
        whole = np.where(np.isnan(self.whole[z]), self.footprint[z], self.whole[z])[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.divide(w, whole, out=np.zeros(w.shape), where=whole > 0)
        ok = n > 0
        if self.min_valid_fraction > 0:
            ok &= fraction >= self.min_valid_fraction - 1e-12
        return fraction, ok


class ZoneMerger(_Merger):
    """Merges :class:`TilePart` s of one grid into final statistics, exactly.

    ``parts[z]`` is how many tiles feature ``z`` was given to (from the spatial
    index); a feature is final when that many parts have been added. ``whole``
    is the footprint weight of each feature on the whole lattice (NaN: the sum
    of its tiles' footprints, for features inside the raster). Without
    ``moments`` (parts reduced without them) the std is null.
    """

    def __init__(self, n_zones: int, n_layers: int, parts: np.ndarray, whole: np.ndarray,
                 quantiles: Sequence[float] = (), min_valid_fraction: float = 0.0,
                 bilinear: Optional[np.ndarray] = None, moments: bool = True) -> None:
        super().__init__(n_zones, n_layers, parts, whole, quantiles, min_valid_fraction, moments)
        self.bilinear = np.zeros(n_zones, bool) if bilinear is None else np.asarray(bilinear, bool)
        shape = (n_zones, n_layers)
        self.w = np.zeros(shape)
        self.n = np.zeros(shape, np.int64)
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)
        self.vmin = np.full(shape, np.inf)
        self.vmax = np.full(shape, -np.inf)
        self.total = np.zeros(shape)
        self.blocked = np.zeros(shape, bool)
        self.fresh = np.ones(n_zones, bool)          # no part accumulated yet
        self.centred = np.zeros(n_zones, bool)     # had a part with pixel centres (centre coverage)
        self.weighted = np.zeros(n_zones, bool)
        self._stash: Dict[int, _Stash] = {}

    def add(self, part: TilePart) -> np.ndarray:
        """Take one tile's part; return the features it made final."""
        z = part.zones
        if len(z) == 0:
            return z
        self._count(part)
        direct = ~part.fallback
        self._accumulate(part, np.flatnonzero(direct))
        self.centred[z[direct]] = True
        for k in np.flatnonzero(part.fallback):
            self._stash_for(int(z[k])).fallback_rows.append((part, int(k)))
        if self.qs:
            for k in np.flatnonzero(~part.complete & direct):
                self._keep_values(int(z[k]), part, int(k))
            done = part.complete
            self.q[z[done]] = part.quantiles[done]
            self.weighted[z[done]] = part.weighted[done]
        finished = z[self.seen[z] == self.parts[z]]
        for zone in finished:
            self._finish_zone(int(zone))
        return finished

    def _stash_for(self, zone: int) -> _Stash:
        stash = self._stash.get(zone)
        if stash is None:
            stash = self._stash[zone] = _Stash()
        return stash

    def _keep_values(self, zone: int, part: TilePart, k: int) -> None:
        stash = self._stash_for(zone)
        if not stash.segments:
            stash.segments = [[] for _ in range(self.n_layers)]
        for layer in range(self.n_layers):
            v, wt = part.segment(k, layer)
            if len(v):
                stash.segments[layer].append((v, wt))   # views: the part's values are those of such rows
        self.weighted[zone] |= bool(part.weighted[k])

    def _accumulate(self, part: TilePart, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        z = part.zones[rows]
        self.footprint[z] += part.footprint[rows]
        self.blocked[z] |= part.blocked[rows]
        fresh = self.fresh[z]
        if np.any(fresh):                          # a feature's first part: taken as it is
            self._take(part, rows[fresh], z[fresh])
            rows, z = rows[~fresh], z[~fresh]
            if len(rows) == 0:
                return
        w0, w1 = self.w[z], part.w[rows]
        wsum = w0 + w1
        m1 = np.where(w1 > 0, part.mean[rows], 0.0)
        delta = m1 - self.mean[z]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(wsum > 0, w1 / wsum, 0.0)
            self.mean[z] += delta * share
            if self.moments:                       # without them the parts' m2 is zero, and so stays ours
                self.m2[z] += part.m2[rows] + delta * delta * w0 * share
        self.w[z] = wsum
        self.n[z] += part.n[rows]
        self.vmin[z] = np.minimum(self.vmin[z], part.vmin[rows])
        self.vmax[z] = np.maximum(self.vmax[z], part.vmax[rows])
        self.total[z] += part.total[rows]

    def _take(self, part: TilePart, rows: np.ndarray, z: np.ndarray) -> None:
        self.fresh[z] = False
        # every row of the part (points, each in one tile): its arrays as they are, not gathered into copies
        every = len(rows) == len(part.zones)       # rows are ascending, so then they are 0, 1, ...

        def rows_of(a: np.ndarray) -> np.ndarray:
            return a if every else a[rows]
        w = rows_of(part.w)
        self.w[z] = w
        self.n[z] = rows_of(part.n)
        self.mean[z] = np.where(w > 0, rows_of(part.mean), 0.0)
        if self.moments:
            self.m2[z] = rows_of(part.m2)
        self.vmin[z] = rows_of(part.vmin)
        self.vmax[z] = rows_of(part.vmax)
        self.total[z] = rows_of(part.total)

    def _finish_zone(self, zone: int) -> None:
        stash = self._stash.pop(zone, None)
        if stash is None:
            return
        if not self.centred[zone] and stash.fallback_rows:
            # No tile had a pixel centre of this polygon: its covered fractions are used, over all tiles.
            stash.segments = [[] for _ in range(self.n_layers)] if self.qs else []
            for part, k in stash.fallback_rows:
                self._accumulate(part, np.array([k]))
                self.weighted[zone] = True
                if self.qs and part.complete[k]:
                    self.q[zone] = part.quantiles[k]
                elif self.qs:
                    for layer in range(self.n_layers):
                        v, wt = part.segment(k, layer)
                        stash.segments[layer].append((v, wt))
        if self.qs and stash.segments:
            for layer, pieces in enumerate(stash.segments):
                if pieces:
                    v = np.concatenate([p[0] for p in pieces])
                    wt = np.concatenate([p[1] for p in pieces])
                    self.q[zone, layer] = quantiles_of(v, wt, self.qs, bool(self.weighted[zone]))

    def result(self, zones: Optional[np.ndarray] = None) -> ZoneStats:
        """Final statistics of ``zones`` (all by default): each must have all its parts."""
        z = self._final(zones)
        n = self.n[z]
        w = self.w[z]
        fraction, ok = self._valid(z, n, w)
        # each statistic computed into one new array (no temporaries: at 100,000 points x 50 rasters
        # each is 40 MB, and the merge is the parent's time alone)
        with np.errstate(invalid="ignore", divide="ignore"):
            # without moments the std is null everywhere: one NaN seen through every entry (read-only)
            std = np.sqrt(np.maximum(self.m2[z], 0.0) / w) if self.moments else \
                np.broadcast_to(np.float64(np.nan), w.shape)
            # the weighted sum over the weight, not the running mean: sums of whole pixels of integer
            # rasters are exact, so the mean is the same bit for bit whatever the tiling
            mean = np.array(self.mean[z])
            np.divide(self.total[z], w, out=mean, where=w > 0)
        if self.bilinear.any():
            ok &= ~(self.bilinear[z][:, None] & ((w < BILINEAR_MIN_WEIGHT) | self.blocked[z]))
        null = ~ok

        def nulled(a: np.ndarray, own: bool = False) -> np.ndarray:
            out = a if own else np.array(a)
            out[null] = np.nan
            return out
        # every feature final: nothing is added any more, so the statistics are the merger's own arrays, not
        # copies (nulled in place: a second result is the same, as what is nulled stays null)
        final = isinstance(z, slice)
        return ZoneStats(mean=nulled(mean, True), std=nulled(std, True) if self.moments else std,
                         vmin=nulled(self.vmin[z], final), vmax=nulled(self.vmax[z], final),
                         count=w if final else w.copy(), total=nulled(self.total[z], final),
                         n_valid=n if final else n.copy(), valid_fraction=fraction,
                         quantiles=np.where(ok[..., None], self.q[z], np.nan), valid=ok)


class PixelMerger(_Merger):
    """The merge of features that are each one pixel in one tile (points, nearest pixel, no window): the
    statistics of :class:`ZoneMerger`, the same bit for bit, from each part's ``n`` (0 or 1) and ``total``
    (the pixel's value) alone, and its quantiles when asked. Parts of such features need no more
    (:data:`PIXEL_UNREAD`): at 100,000 points x 50 rasters, two arrays of 40 MB to write, read and
    merge where :class:`ZoneMerger` takes eight. ``min``, ``max`` and ``sum`` are the value itself: they are
    the mean's array, seen read-only."""

    def __init__(self, n_zones: int, n_layers: int, parts: np.ndarray, whole: np.ndarray,
                 quantiles: Sequence[float] = (), min_valid_fraction: float = 0.0, moments: bool = True) -> None:
        super().__init__(n_zones, n_layers, parts, whole, quantiles, min_valid_fraction, moments)
        if np.any(self.parts > 1):
            raise ValueError("a feature of one pixel has one part at most")
        self.n = np.zeros((n_zones, n_layers), np.int64)
        self.value = np.full((n_zones, n_layers), np.nan)

    def add(self, part: TilePart) -> np.ndarray:
        """Take one tile's part; return the features it made final (all of its own)."""
        z = part.zones
        if len(z) == 0:
            return z
        self._count(part)
        self.footprint[z] += part.footprint
        self.n[z] = part.n
        self.value[z] = part.total          # the pixel's value times its weight, 1
        if self.qs:
            self.q[z] = part.quantiles
        return z

    def result(self, zones: Optional[np.ndarray] = None) -> ZoneStats:
        """Final statistics of ``zones`` (all by default), as :meth:`ZoneMerger.result` gives them."""
        z = self._final(zones)
        final = isinstance(z, slice)
        n = self.n[z]
        w = n.astype(np.float64)
        fraction, ok = self._valid(z, n, w)
        mean = self.value[z]                # every feature final: the merger's own array, nulled in place
        mean[~ok] = np.nan
        value = mean.view()
        value.flags.writeable = False
        # the std of one pixel is 0; without moments it is null everywhere (one NaN seen through every entry)
        std = np.where(ok, 0.0, np.nan) if self.moments else np.broadcast_to(np.float64(np.nan), w.shape)
        return ZoneStats(mean=mean, std=std, vmin=value, vmax=value, count=w, total=value,
                         n_valid=n if final else n.copy(), valid_fraction=fraction,
                         quantiles=np.where(ok[..., None], self.q[z], np.nan), valid=ok)


#: The ``(k, L)`` arrays of a :class:`TilePart` that :class:`PixelMerger` does not read (a part for it need
#: not hold them); it reads ``zones``, ``footprint``, ``n``, ``total`` and ``quantiles``.
PIXEL_UNREAD = ("w", "mean", "m2", "vmin", "vmax", "blocked", "vcount")

# -- warming numba's cache -----------------------------------------------------------------------------------

#: The types a raster's values come in (rasterio reads GDAL's types as these; several bands in their common
#: type): the reduction has one specialization each; scaled or offset values come as float64.
VALUE_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float32", "float64")


def warm_up(group: str = "extraction") -> Tuple[int, int]:
    """Compile the extraction's kernels (the cover of points, lines and polygons, the reduction of each
    value type, the merged quantiles) into numba's cache, or load them; return ``(compiled, loaded from
    the cache)``, counted in specializations."""
    import shapely

    from .footprints import footprints_from_pixels

    def calls() -> None:
        shapes = [shapely.box(0.2, 0.3, 2.7, 2.6), shapely.LineString([(0.1, 0.2), (3.6, 2.9)]),
                  shapely.Point(1.6, 1.4)]
        fp = footprints_from_pixels(shapes, 4, 4)
        zones = np.arange(len(shapes), dtype=np.int64)
        covers = [cover_tile(fp, zones, 0, 0, 4, 4, mode, method, window)
                  for mode in range(MODE_FRACTIONAL + 1) for method, window in ((0, 1), (1, 1), (0, 3))]
        footprint_total(fp, zones, MODE_FRACTIONAL, 0, 1)
        for dtype in VALUE_TYPES:
            band = np.arange(16, dtype=dtype).reshape(4, 4)
            valid = band != 5
            for complete in (True, False):
                reduce_tile(covers[-1], [(band, valid)], complete=np.full(len(zones), complete),
                            weighted=np.array([True, False, False]), quantiles=[0.25, 0.5], moments=True)
        for weighted in (False, True):
            quantiles_of(np.array([3.0, 1.0, 2.0]), np.array([0.5, 1.0, 1.0]), [0.5], weighted)
    # the kernels called from Python (the kernels they call compile into them)
    return compiled_and_loaded((cover_kernel, _reduce_kernel, _quantiles, _weighted_quantiles), calls)

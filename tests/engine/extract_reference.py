"""References of the extraction tests, independent of the engine's kernels: shapely geometry, numpy statistics.

Coverage of a polygon: the exact area of its intersection with each pixel
(shapely), pixel centres strictly inside it (shapely ``contains_properly``),
or pixels with covered area. Statistics: plain numpy over the covered valid
pixels, and a direct transcription of exactextract's weighted quantile.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import shapely
from affine import Affine

import rasterio

from tilewise.core.operations.extract.spec import percentile_column


def apply(transform: Affine, cols, rows):
    """``transform`` applied to arrays of columns and rows (map coordinates)."""
    a, b, c, d, e, f = tuple(transform)[:6]
    cols, rows = np.asarray(cols, np.float64), np.asarray(rows, np.float64)
    return a * cols + b * rows + c, d * cols + e * rows + f


def pixel_boxes(transform: Affine, shape: Tuple[int, int], window=None):
    """Shapely boxes of the pixels of a north-up grid (optionally of ``(r0, c0, h, w)`` only), and their indices."""
    h, w = shape
    r0, c0, hh, ww = window or (0, 0, h, w)
    rows, cols = np.mgrid[r0:r0 + hh, c0:c0 + ww]
    x0, y0 = apply(transform, cols.ravel(), rows.ravel())
    x1, y1 = apply(transform, cols.ravel() + 1, rows.ravel() + 1)
    boxes = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1), np.maximum(y0, y1))
    return boxes, rows.ravel(), cols.ravel()


def reference_weights(geom, transform: Affine, shape: Tuple[int, int], coverage: str,
                      fallback: bool = True) -> np.ndarray:
    """``(height, width)`` weights of ``geom`` on the grid: 1/0 (centre, all touched) or covered fractions.

    With ``fallback``, a polygon holding no pixel centre gets its covered fractions in centre mode.
    """
    h, w = shape
    out = np.zeros(shape)
    if geom is None or geom.is_empty:
        return out
    xmin, ymin, xmax, ymax = geom.bounds
    cs, rs = apply(~transform, [xmin, xmax], [ymax, ymin])
    c0, c1 = max(int(np.floor(cs.min())) - 1, 0), min(int(np.ceil(cs.max())) + 1, w)
    r0, r1 = max(int(np.floor(rs.min())) - 1, 0), min(int(np.ceil(rs.max())) + 1, h)
    if c1 <= c0 or r1 <= r0:
        return out
    boxes, rows, cols = pixel_boxes(transform, shape, (r0, c0, r1 - r0, c1 - c0))
    if coverage == "centre":
        centres = shapely.centroid(boxes)
        inside = shapely.contains_properly(geom, centres).astype(float)
        if inside.sum() == 0 and fallback:          # the engine's fallback: covered fractions
            inside = shapely.area(shapely.intersection(boxes, geom)) / shapely.area(boxes)
        out[rows, cols] = inside
    else:
        frac = shapely.area(shapely.intersection(boxes, geom)) / shapely.area(boxes)
        out[rows, cols] = frac if coverage == "fractional" else (frac > 1e-9).astype(float)
    return out


def exactextract_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """exactextract's WeightedQuantiles, transcribed: equal values pooled, then the formula of
    stats.stackexchange.com/a/13223 (s_i = i w_i + (n - 1) W_{i-1})."""
    xs, inverse = np.unique(values, return_inverse=True)
    ws = np.bincount(inverse, weights=weights)
    n = len(xs)
    cum = np.cumsum(ws)
    s = np.zeros(n)
    s[1:] = np.arange(1, n) * ws[1:] + (n - 1) * cum[:-1]
    target = q * cum[-1] * (n - 1)
    right = int(np.searchsorted(s, target, side="right"))
    left = right - 1
    if right == n:
        return float(xs[left])
    return float(xs[left] + (target - s[left]) * (xs[right] - xs[left]) / (s[right] - s[left]))


def reference_stats(values: np.ma.MaskedArray, weights: np.ndarray, percentiles: Sequence[float] = (),
                    weighted: Optional[bool] = None) -> Dict[str, float]:
    """Statistics of the valid pixels with weight > 0; NaN where nothing is left.

    ``weighted`` (default: any weight not 1) picks exactextract's quantiles over numpy's.
    """
    sel = (weights > 0) & ~np.ma.getmaskarray(values)
    x = np.ma.getdata(values)[sel].astype(np.float64)
    wt = weights[sel]
    if weighted is None:
        weighted = bool(np.any(weights[weights > 0] != 1))
    out = {"count": float(wt.sum()), "n_valid": float(len(x))}
    if len(x) == 0:
        for k in ["mean", "median", "min", "max", "std", "sum"] + [percentile_column(q) for q in percentiles]:
            out[k] = np.nan
        return out
    mean = float(np.sum(wt * x) / np.sum(wt))
    out.update(mean=mean, sum=float(np.sum(wt * x)), min=float(x.min()), max=float(x.max()),
               std=float(np.sqrt(np.sum(wt * (x - mean) ** 2) / np.sum(wt))))
    if weighted:
        out["median"] = exactextract_quantile(x, wt, 0.5)
        for q in percentiles:
            out[percentile_column(q)] = exactextract_quantile(x, wt, q / 100)
    else:
        out["median"] = float(np.median(x))
        for q in percentiles:
            out[percentile_column(q)] = float(np.percentile(x, q))
    return out


def read_masked(path: str, band: int = 1) -> np.ma.MaskedArray:
    with rasterio.open(path) as src:
        a = src.read(band, masked=True)
    if a.dtype.kind == "f":
        a.mask = np.ma.getmaskarray(a) | np.isnan(a.data)
    return a


def random_polygons(rng: np.random.Generator, n: int, extent, size=(0.3, 12.0), res: float = 10.0):
    """Polygons of many shapes over ``extent`` (in map units, pixels of ``res``): circles of few or many
    vertices, some with holes, some multi-part, some smaller than a pixel."""
    xmin, ymin, xmax, ymax = extent
    out = []
    for i in range(n):
        x, y = rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)
        radius = rng.uniform(*size) * res
        g = shapely.Point(x, y).buffer(radius, quad_segs=int(rng.integers(1, 8)))
        if i % 4 == 1 and radius > 2 * res:
            g = g.difference(shapely.Point(x + radius / 4, y).buffer(radius / 3))
        if i % 5 == 2:
            g = shapely.MultiPolygon([g, shapely.box(x + 2 * radius, y, x + 2 * radius + rng.uniform(0.5, 3) * res,
                                                      y + rng.uniform(0.5, 3) * res)])
        if i % 7 == 3:
            g = shapely.affinity.rotate(shapely.box(x, y, x + rng.uniform(0.2, 0.8) * res,
                                                    y + rng.uniform(0.2, 0.8) * res), rng.uniform(0, 90))
        if i % 2:
            g = g.reverse()
        out.append(g)
    return out

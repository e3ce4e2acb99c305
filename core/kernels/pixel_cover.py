"""Which pixels of a tile each feature covers, and with what weight: numba kernels.

Geometries come in pixel coordinates of the raster grid (column, row; see
:mod:`.footprints`). For one tile window the kernels return a sparse cover, one
run of ``(pixel, weight)`` per feature (:class:`Cover`), computed once per tile
and reused for every raster and band on that grid. (Whether the inputs cover the
output grid is another matter: :mod:`tilewise.core.io.coverage`.)

Polygons
    * centre: pixels whose centre is inside (non-zero winding, half-open at the
      boundary like GDAL's rasterizer). A polygon that contains no pixel centre
      at all falls back to its covered fractions, as QGIS's zonal statistics does,
      so a field smaller than a pixel still gets a value.
    * all touched: pixels the polygon's interior overlaps (covered area > 1e-9 pixel).
    * fractional: the exact covered fraction of each pixel, by signed-area
      accumulation over the edges (each edge adds the area under itself, column by
      column; a cumulative sum down the columns completes it). Holes and
      multi-part polygons are exact; the work is proportional to the pixels the
      boundary crosses plus the bounding box.

Lines: the pixels the line passes through, weighted by the length inside each
pixel (in pixel widths) for fractional coverage, 1 otherwise.

Points: nearest (the pixel containing the point), bilinear (the four pixels
around it with GDAL's weights, see :func:`bilinear_weights`), or an n x n window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .footprints import KIND_LINE, KIND_POINT, KIND_POLYGON, Footprints
from .jit import jit


MODE_CENTRE, MODE_ALL_TOUCHED, MODE_FRACTIONAL = 0, 1, 2
METHOD_NEAREST, METHOD_BILINEAR = 0, 1
#: A pixel counts as touched when the polygon covers more than this fraction of it
#: (an edge lying on a pixel border, up to rounding, does not touch the pixel beyond).
TOUCH_EPS = 1e-9
_SNAP = 1e-12


@dataclass(frozen=True)
class Cover:
    """The pixels of one tile that each feature covers.

    Feature ``zones[k]`` covers the tile pixels ``pixels[offsets[k]:offsets[k+1]]``
    (flat row-major indices into the tile window) with ``weights`` (1 for whole
    pixels, the covered fraction, the length of a line or a bilinear weight).
    ``footprint[k]`` is the sum of its weights; ``fallback[k]`` says a polygon in
    centre mode that holds no pixel centre here was given its covered fractions.
    ``anchor[k]`` is, for a bilinear point, the pixel that contains it if that
    pixel is in this tile (else -1): GDAL gives no value when that pixel has no data.
    """

    zones: np.ndarray
    offsets: np.ndarray
    pixels: np.ndarray
    weights: np.ndarray
    footprint: np.ndarray
    fallback: np.ndarray
    anchor: np.ndarray
    height: int
    width: int


def cover_tile(fp: Footprints, zones: np.ndarray, row_off: int, col_off: int, height: int, width: int,
               coverage: int = MODE_CENTRE, point_method: int = METHOD_NEAREST, window: int = 1) -> Cover:
    """The cover of the tile window ``(row_off, col_off, height, width)`` by the features ``zones``.

    >>> import shapely
    >>> from tilewise.core.kernels.footprints import footprints_from_pixels
    >>> fp = footprints_from_pixels(shapely.box([0.5], [0.5], [2.0], [1.5]), 4, 4)
    >>> c = cover_tile(fp, np.array([0]), 0, 0, 4, 4, MODE_FRACTIONAL)
    >>> c.pixels.tolist(), c.weights.tolist()
    ([0, 1, 4, 5], [0.25, 0.5, 0.25, 0.5])
    """
    zones = np.ascontiguousarray(zones, dtype=np.int64)
    offsets, pixels, weights, footprint, fallback, anchor = cover_kernel(
        zones, fp.kind, fp.xs, fp.ys, fp.part_start, fp.part_factor, fp.zone_part,
        int(row_off), int(col_off), int(height), int(width), fp.height, fp.width,
        int(coverage), int(point_method), int(window))
    return Cover(zones, offsets, pixels, weights, footprint, fallback.astype(bool), anchor, int(height), int(width))


# -- the kernel ---------------------------------------------------------------------------------------------

@jit
def _grow(a, n):
    if n <= a.shape[0]:
        return a
    b = np.empty(max(n, 2 * a.shape[0]), a.dtype)
    b[:a.shape[0]] = a
    return b


@jit
def cover_kernel(zones, kind, xs, ys, part_start, part_factor, zone_part, r0, c0, h, w, grid_h, grid_w,
                  mode, method, window):
    n = zones.shape[0]
    offsets = np.zeros(n + 1, np.int64)
    footprint = np.zeros(n, np.float64)
    fallback = np.zeros(n, np.uint8)
    anchor = np.full(n, -1, np.int64)
    pixels = np.empty(1024, np.int32)
    weights = np.empty(1024, np.float64)
    used = 0
    for k in range(n):
        z = zones[k]
        p0 = zone_part[z]
        p1 = zone_part[z + 1]
        kd = kind[z]
        if kd == KIND_POINT and p1 > p0:
            i = part_start[p0]
            pixels = _grow(pixels, used + 4 + window * window)
            weights = _grow(weights, used + 4 + window * window)
            used = _cover_point(xs[i], ys[i], r0, c0, h, w, grid_h, grid_w, method, window,
                                pixels, weights, used)
            if method == METHOD_BILINEAR and used > offsets[k]:
                r = int(np.floor(ys[i]))
                c = int(np.floor(xs[i]))
                if r0 <= r < r0 + h and c0 <= c < c0 + w:
                    anchor[k] = (r - r0) * w + (c - c0)
        elif kd == KIND_POLYGON or kd == KIND_LINE:
            # The window of the feature's bounding box inside the tile.
            xmin, ymin, xmax, ymax = _part_bounds(xs, ys, part_start, p0, p1)
            bc0 = max(int(np.floor(xmin)), c0)
            bc1 = min(int(np.ceil(xmax)) + 1, c0 + w)
            br0 = max(int(np.floor(ymin)), r0)
            br1 = min(int(np.ceil(ymax)) + 1, r0 + h)
            if bc1 > bc0 and br1 > br0:
                bh = br1 - br0
                bw = bc1 - bc0
                cells = np.zeros((bh, bw), np.float64)
                if kd == KIND_LINE:
                    for p in range(p0, p1):
                        _line_lengths(xs, ys, part_start[p], part_start[p + 1], br0, bc0, bh, bw, cells)
                    if mode != MODE_FRACTIONAL:
                        _binarize(cells, TOUCH_EPS)
                else:
                    if mode == MODE_CENTRE:
                        found = _centres(xs, ys, part_start, part_factor, p0, p1, br0, bc0, bh, bw, cells)
                        if found == 0:
                            _areas(xs, ys, part_start, part_factor, p0, p1, br0, bc0, bh, bw, cells)
                            fallback[k] = 1
                    else:
                        _areas(xs, ys, part_start, part_factor, p0, p1, br0, bc0, bh, bw, cells)
                        if mode == MODE_ALL_TOUCHED:
                            _binarize(cells, TOUCH_EPS)
                pixels = _grow(pixels, used + bh * bw)
                weights = _grow(weights, used + bh * bw)
                for rr in range(bh):
                    base = (br0 - r0 + rr) * w + (bc0 - c0)
                    for cc in range(bw):
                        v = cells[rr, cc]
                        if v > 0.0:
                            pixels[used] = base + cc
                            weights[used] = v
                            used += 1
        s = 0.0
        for j in range(offsets[k], used):
            s += weights[j]
        footprint[k] = s
        offsets[k + 1] = used
    return offsets, pixels[:used].copy(), weights[:used].copy(), footprint, fallback, anchor


@jit
def _part_bounds(xs, ys, part_start, p0, p1):
    i0 = part_start[p0]
    i1 = part_start[p1]
    xmin = xs[i0]
    xmax = xs[i0]
    ymin = ys[i0]
    ymax = ys[i0]
    for i in range(i0, i1):
        if xs[i] < xmin:
            xmin = xs[i]
        if xs[i] > xmax:
            xmax = xs[i]
        if ys[i] < ymin:
            ymin = ys[i]
        if ys[i] > ymax:
            ymax = ys[i]
    return xmin, ymin, xmax, ymax


@jit
def _binarize(cells, eps):
    bh, bw = cells.shape
    for r in range(bh):
        for c in range(bw):
            cells[r, c] = 1.0 if cells[r, c] > eps else 0.0


# -- polygons: covered fractions ----------------------------------------------------------------------------

@jit
def _areas(xs, ys, part_start, part_factor, p0, p1, r0, c0, h, w, cells):
    """Covered fraction of each pixel of the window ``(r0, c0, h, w)`` into ``cells``.

    For a closed ring, the line integral of ``clamp(y, r, r + 1) - r`` along ``x``
    over the part of the ring inside column ``c`` is (up to the ring's orientation,
    which ``part_factor`` fixes) the area of the polygon inside pixel ``(r, c)``.
    Each edge is cut at the column lines and then at the row lines: a piece
    inside row ``r`` adds its partial area to ``(r, c)`` and its full width to
    every row above, which a cumulative sum from the bottom spreads.
    """
    partial = np.zeros((h, w), np.float64)
    full = np.zeros((h, w), np.float64)
    for p in range(p0, p1):
        f = part_factor[p]
        for i in range(part_start[p], part_start[p + 1] - 1):
            _edge_area(xs[i] - c0, ys[i] - r0, xs[i + 1] - c0, ys[i + 1] - r0, f, h, w, partial, full)
    for c in range(w):
        acc = 0.0
        for r in range(h - 1, -1, -1):
            acc += full[r, c]
            v = partial[r, c] + acc
            if v < _SNAP:
                v = 0.0
            elif v > 1.0 - _SNAP:
                v = 1.0
            cells[r, c] = v


@jit
def _edge_area(xa, ya, xb, yb, factor, h, w, partial, full):
    if xa == xb:
        return
    xlo = min(xa, xb)
    xhi = max(xa, xb)
    if xhi <= 0.0 or xlo >= w:
        return
    slope = (yb - ya) / (xb - xa)
    sign = factor if xb > xa else -factor
    c_start = max(int(np.floor(xlo)), 0)
    c_stop = min(int(np.ceil(xhi)), w)
    for c in range(c_start, c_stop):
        x0 = max(xlo, float(c))
        x1 = min(xhi, float(c + 1))
        if x1 <= x0:
            continue
        y0 = ya + (x0 - xa) * slope
        y1 = ya + (x1 - xa) * slope
        _column_piece(min(y0, y1), max(y0, y1), (x1 - x0) * sign, c, h, partial, full)


@jit
def _column_piece(ylo, yhi, dx, c, h, partial, full):
    """A piece of edge inside column ``c`` spanning rows ``ylo..yhi`` with signed width ``dx``."""
    if yhi <= 0.0:
        return                              # above the window: adds nothing to its pixels
    if ylo >= h:
        full[h - 1, c] += dx                # below the window: every pixel above it gets the full width
        return
    span = yhi - ylo
    if span == 0.0:
        r = int(np.floor(ylo))
        partial[r, c] += dx * (ylo - r)
        if r > 0:
            full[r - 1, c] += dx
        return
    if yhi > h:
        full[h - 1, c] += dx * (yhi - h) / span
    top = max(ylo, 0.0)
    bottom = min(yhi, float(h))
    r = int(np.floor(top))
    while r < h and r < bottom:
        a = max(top, float(r))
        b = min(bottom, float(r + 1))
        if b > a:
            d = dx * (b - a) / span
            partial[r, c] += d * (0.5 * (a + b) - r)
            if r > 0:
                full[r - 1, c] += d
        r += 1


# -- polygons: pixel centres --------------------------------------------------------------------------------

@jit
def _centres(xs, ys, part_start, part_factor, p0, p1, r0, c0, h, w, cells):
    """1 in ``cells`` where the pixel centre is inside (non-zero winding); returns how many."""
    wind = np.zeros((h, w + 1), np.float64)
    for p in range(p0, p1):
        f = part_factor[p]
        for i in range(part_start[p], part_start[p + 1] - 1):
            xa = xs[i] - c0
            ya = ys[i] - r0
            xb = xs[i + 1] - c0
            yb = ys[i + 1] - r0
            if ya == yb:
                continue
            d = f if yb > ya else -f
            ylo = min(ya, yb)
            yhi = max(ya, yb)
            # Rows whose centre r + 0.5 lies in [ylo, yhi).
            r_start = max(int(np.ceil(ylo - 0.5)), 0)
            r_stop = min(int(np.ceil(yhi - 0.5)), h)
            for r in range(r_start, r_stop):
                yc = r + 0.5
                x = xa + (yc - ya) * (xb - xa) / (yb - ya)
                c = int(np.floor(x - 0.5)) + 1      # first column whose centre lies right of the crossing
                if c < 0:
                    c = 0
                if c < w:
                    wind[r, c] += d
    found = 0
    for r in range(h):
        acc = 0.0
        for c in range(w):
            acc += wind[r, c]
            if abs(acc) > 0.5:
                cells[r, c] = 1.0
                found += 1
            else:
                cells[r, c] = 0.0
    return found


# -- lines --------------------------------------------------------------------------------------------------

@jit
def _line_lengths(xs, ys, i0, i1, r0, c0, h, w, cells):
    """Add to ``cells`` the length (in pixel widths) of the path ``i0..i1`` inside each pixel."""
    for i in range(i0, i1 - 1):
        xa = xs[i] - c0
        ya = ys[i] - r0
        xb = xs[i + 1] - c0
        yb = ys[i + 1] - r0
        length = np.sqrt((xb - xa) ** 2 + (yb - ya) ** 2)
        if length == 0.0:
            continue
        # Cut the segment at every column and row line: the parameters t where it crosses them.
        ts = [0.0, 1.0]
        if xa != xb:
            for c in range(int(np.floor(min(xa, xb))) + 1, int(np.ceil(max(xa, xb)))):
                ts.append((c - xa) / (xb - xa))
        if ya != yb:
            for r in range(int(np.floor(min(ya, yb))) + 1, int(np.ceil(max(ya, yb)))):
                ts.append((r - ya) / (yb - ya))
        ts.sort()
        for j in range(len(ts) - 1):
            t0 = ts[j]
            t1 = ts[j + 1]
            if t1 <= t0:
                continue
            tm = 0.5 * (t0 + t1)
            c = int(np.floor(xa + tm * (xb - xa)))
            r = int(np.floor(ya + tm * (yb - ya)))
            if 0 <= r < h and 0 <= c < w:
                cells[r, c] += (t1 - t0) * length


# -- points -------------------------------------------------------------------------------------------------

@jit
def _cover_point(px, py, r0, c0, h, w, grid_h, grid_w, method, window, pixels, weights, used):
    if not (np.isfinite(px) and np.isfinite(py)):
        return used
    if method == METHOD_BILINEAR:
        # GDAL: no value for a point outside the raster, even within half a pixel of its edge.
        if px < 0.0 or py < 0.0 or px >= grid_w or py >= grid_h:
            return used
        i = int(np.floor(px - 0.5))
        j = int(np.floor(py - 0.5))
        rx = 1.5 - (px - i)
        ry = 1.5 - (py - j)
        for dj in range(2):
            wy = ry if dj == 0 else 1.0 - ry
            for di in range(2):
                wx = rx if di == 0 else 1.0 - rx
                wgt = wx * wy
                r = j + dj
                c = i + di
                if wgt > 0.0 and r0 <= r < r0 + h and c0 <= c < c0 + w:
                    pixels[used] = (r - r0) * w + (c - c0)
                    weights[used] = wgt
                    used += 1
        return used
    if window == 1:
        first_c = int(np.floor(px))
        first_r = int(np.floor(py))
    elif window % 2 == 1:
        first_c = int(np.floor(px)) - window // 2
        first_r = int(np.floor(py)) - window // 2
    else:
        first_c = int(np.floor(px + 0.5)) - window // 2
        first_r = int(np.floor(py + 0.5)) - window // 2
    for r in range(max(first_r, r0), min(first_r + window, r0 + h)):
        for c in range(max(first_c, c0), min(first_c + window, c0 + w)):
            pixels[used] = (r - r0) * w + (c - c0)
            weights[used] = 1.0
            used += 1
    return used


def bilinear_weights(px: float, py: float):
    """The four ``(row, col, weight)`` of GDAL's bilinear interpolation at pixel coordinates ``(px, py)``.

    As GDAL's warper (``GWKBilinearResample4Sample``): the pixels around the
    point, weighted by proximity of their centres; pixels outside the raster or
    without data drop out and the others are renormalised (no value below a total
    weight of 1e-5), and no value either where the pixel that contains the point
    has no data. At a pixel centre the value is that pixel's.

    >>> [(r, c, round(w, 2)) for r, c, w in bilinear_weights(1.75, 1.5)]
    [(1, 1, 0.75), (1, 2, 0.25), (2, 1, 0.0), (2, 2, 0.0)]
    """
    i = int(np.floor(px - 0.5))
    j = int(np.floor(py - 0.5))
    rx = 1.5 - (px - i)
    ry = 1.5 - (py - j)
    return [(j + dj, i + di, (rx if di == 0 else 1 - rx) * (ry if dj == 0 else 1 - ry))
            for dj in range(2) for di in range(2)]


def footprint_total(fp: Footprints, zones: np.ndarray, coverage: int, point_method: int, window: int,
                    chunk: int = 1024) -> np.ndarray:
    """The whole footprint weight of each feature on the grid's lattice, inside the raster or not.

    The denominator of the valid fraction: pixels of a feature outside the raster
    count as pixels without data. Computed chunk by chunk over the feature's
    bounding box, so memory stays bounded by ``chunk`` squared.
    """
    out = np.zeros(len(zones), np.float64)
    for k, z in enumerate(np.asarray(zones, dtype=np.int64)):
        kd = fp.kind[z]
        if kd == KIND_POINT:
            out[k] = 1.0 if (point_method == METHOD_BILINEAR or window == 1) else float(window * window)
            continue
        if kd not in (KIND_POLYGON, KIND_LINE):
            continue
        c0, r0, c1, r1 = fp.bbox[z]
        if not np.all(np.isfinite(fp.bbox[z])):
            continue
        rows = range(int(np.floor(r0)), int(np.ceil(r1)) + 1, chunk)
        cols = range(int(np.floor(c0)), int(np.ceil(c1)) + 1, chunk)
        one = np.array([z], np.int64)
        total = 0.0
        fallback_total = 0.0
        any_centre = False
        for r in rows:
            for c in cols:
                cov = _cover_unbounded(fp, one, r, c, chunk, coverage)
                if cov.fallback[0]:
                    fallback_total += float(cov.footprint[0])
                else:
                    any_centre = any_centre or cov.footprint[0] > 0
                    total += float(cov.footprint[0])
        out[k] = total if any_centre or coverage != MODE_CENTRE else fallback_total
    return out


def _cover_unbounded(fp: Footprints, zones: np.ndarray, r0: int, c0: int, size: int, coverage: int) -> Cover:
    """A cover on the grid's lattice extended past the raster edges (for :func:`footprint_total`)."""
    offsets, pixels, weights, footprint, fallback, anchor = cover_kernel(
        zones, fp.kind, fp.xs, fp.ys, fp.part_start, fp.part_factor, fp.zone_part,
        int(r0), int(c0), int(size), int(size), 2**62, 2**62, int(coverage), METHOD_NEAREST, 1)
    return Cover(zones, offsets, pixels, weights, footprint, fallback.astype(bool), anchor, size, size)

"""Nearest swath pixel by great-circle distance: a voxel index of the pixels' 3-D unit vectors.

A swath's pixels are points on the sphere. On unit vectors, the chord between two points grows
with their great-circle distance (``d = 2 R asin(c / 2)``), so the nearest pixel by chord is the
nearest by distance, with no special case at the antimeridian or the poles. :func:`build_index`
sorts the valid pixels by the cube (of side ``cell``) their unit vector falls in; :func:`nearest`
searches, for each query, the cubes around it shell by shell (stopping once no cube further out can
hold a nearer pixel), up to its search radius: the nearest pixel within the radius
is found exactly (ties go to the lowest pixel index, as ``numpy.argmin`` over the pixels), and a
query with no pixel within the radius gets -1. Pure numpy and numba; no I/O.

>>> lat = np.array([[0.0, 0.0], [0.01, 0.01]]); lon = np.array([[0.0, 0.01], [0.0, 0.01]])
>>> index = build_index(lat, lon, cell=0.001)
>>> nearest(index, np.array([0.009]), np.array([0.0]), 0.001)[0].tolist()
[2]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from .jit import inline_jit, jit

#: The mean Earth radius (IUGG), in metres: distances are great-circle distances on this sphere.
EARTH_RADIUS = 6371008.8
_BITS = 21
_HALF = 1 << (_BITS - 1)
#: The smallest cube side (on the unit sphere, ~6.4 m): 21 bits per axis hold every cube of the sphere.
MIN_CELL = 2.0 / _HALF


@dataclass(frozen=True)
class PixelIndex:
    """Valid pixels sorted by cube: ``keys`` (unique cube keys), ``starts`` (their runs in ``order``),
    ``order`` (flat pixel indexes), ``xyz`` (unit vectors of ``order``), ``cell`` (cube side)."""

    keys: np.ndarray
    starts: np.ndarray
    order: np.ndarray
    xyz: np.ndarray
    cell: float
    shape: Tuple[int, int]

    @property
    def size(self) -> int:
        return len(self.order)


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(n, 3)`` unit vectors of latitudes and longitudes in degrees."""
    la = np.radians(np.asarray(lat, np.float64)).ravel()
    lo = np.radians(np.asarray(lon, np.float64)).ravel()
    c = np.cos(la)
    return np.stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)], axis=1)


def chord_of(metres: float) -> float:
    """The chord on the unit sphere of a great-circle distance in metres."""
    return 2.0 * math.sin(min(metres / EARTH_RADIUS, math.pi) / 2.0)


def metres_of(chord: np.ndarray) -> np.ndarray:
    """Great-circle distances in metres of chords on the unit sphere."""
    return 2.0 * EARTH_RADIUS * np.arcsin(np.clip(np.asarray(chord, np.float64) / 2.0, 0.0, 1.0))


def build_index(lat: np.ndarray, lon: np.ndarray, cell: float, near: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                radius: float = 0.0) -> PixelIndex:
    """Index the pixels of 2-D ``lat``/``lon`` (degrees; NaN: no pixel) in cubes of side ``cell`` (chord).

    ``near`` (latitudes and longitudes of the queries to come) with their search ``radius`` (chord) keeps
    only the pixels of the cubes those queries search: the same answers, from a far smaller index when the
    queries are few against a scene of millions of pixels."""
    shape = tuple(np.shape(lat))
    cell = max(float(cell), MIN_CELL)
    flat_lat = np.ascontiguousarray(lat, np.float64).ravel()
    flat_lon = np.ascontiguousarray(lon, np.float64).ravel()
    if near is not None:
        valid = np.flatnonzero(near_mask(flat_lat, flat_lon, cell, near[0], near[1], radius))
    else:
        valid = np.flatnonzero(np.isfinite(flat_lat) & np.isfinite(flat_lon))
    xyz = unit_vectors(flat_lat[valid], flat_lon[valid])
    keys = _keys(xyz, cell)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], bounds, [len(keys)]]).astype(np.int64)
    return PixelIndex(keys[starts[:-1]] if len(keys) else keys, starts, valid[order].astype(np.int64),
                      np.ascontiguousarray(xyz[order]), cell, shape)  # type: ignore[arg-type]


#: The most cells of the latitude/longitude bitmap :func:`near_mask` marks (coarser cells beyond it).
_BITMAP_CELLS = 1 << 24


def near_mask(lat: np.ndarray, lon: np.ndarray, cell: float, qlat: np.ndarray, qlon: np.ndarray,
              radius: float) -> np.ndarray:
    """True for the valid pixels (flat ``lat``/``lon``, longitudes in -180..180) near the points
    ``qlat``/``qlon``: every pixel within chord ``radius`` of a point is among them (with, at most, the
    others of the cells around it).

    A pixel within the radius of a point is within its angle of it in latitude, and in longitude within
    that angle over the cosine of the highest latitude there. So, away from the poles and the
    antimeridian, the pixels are tested against a bitmap of latitude/longitude cells that size (the 3 x 3
    cells around each point marked): no trigonometry per pixel. Near a pole or across the antimeridian,
    against the cubes of side ``max(cell, radius)`` around each point's unit vector (27 per point)."""
    q = unit_vectors(qlat, qlon)
    finite = np.all(np.isfinite(q), axis=1)
    flat_lat = np.ascontiguousarray(lat, np.float64).ravel()
    flat_lon = np.ascontiguousarray(lon, np.float64).ravel()
    if not finite.any():
        return np.zeros(len(flat_lat), bool)
    cells = _query_cells(qlat, qlon, radius)
    if cells is not None:
        return _in_bitmap(flat_lat, flat_lon, *cells)
    cell = max(float(cell), float(radius), MIN_CELL)
    steps = np.arange(-1, 2)
    offsets = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    own = np.unique(np.floor(q[finite] / cell).astype(np.int64), axis=0)
    cubes = (own[:, None, :] + offsets[None, :, :]).reshape(-1, 3) + _HALF
    needed = np.unique((cubes[:, 0] << (2 * _BITS)) | (cubes[:, 1] << _BITS) | cubes[:, 2])
    return _in_cubes(flat_lat, flat_lon, cell, needed)


def _query_cells(qlat: np.ndarray, qlon: np.ndarray, radius: float) -> Optional[Tuple]:
    """Away from the poles and the antimeridian, the latitude/longitude cells (at least the angle of chord
    ``radius`` high, and that angle over the cosine of the highest latitude wide) with the 3 x 3 cells around
    each finite point marked: ``(bitmap, lat0, lon0, dlat, dlon)``; else None."""
    q = unit_vectors(qlat, qlon)
    finite = np.all(np.isfinite(q), axis=1)
    if not finite.any():
        return None
    angle = math.degrees(2.0 * math.asin(min(radius / 2.0, 1.0))) * 1.01 + 1e-9
    la = np.asarray(qlat, np.float64).ravel()[finite]
    lo = (np.asarray(qlon, np.float64).ravel()[finite] + 180.0) % 360.0 - 180.0
    top = max(abs(float(la.min())), abs(float(la.max()))) + angle
    if top >= 80.0:
        return None
    wide = angle / math.cos(math.radians(top))
    if not (lo.min() - 2 * wide > -180.0 and lo.max() + 2 * wide < 180.0):
        return None
    return _bitmap_cells(la, lo, angle, wide)


def _bitmap_cells(qlat: np.ndarray, qlon: np.ndarray, dlat: float, dlon: float) -> Tuple:
    """The cells (at least ``dlat`` x ``dlon`` degrees) next to a point's cell, or in it, marked in a bitmap:
    ``(bitmap, lat0, lon0, dlat, dlon)``."""
    lat0, lon0 = float(qlat.min()) - 2 * dlat, float(qlon.min()) - 2 * dlon
    rows = (float(qlat.max()) + 2 * dlat - lat0) / dlat
    cols = (float(qlon.max()) + 2 * dlon - lon0) / dlon
    grow = max(1.0, math.sqrt(rows * cols / _BITMAP_CELLS))
    dlat, dlon = dlat * grow, dlon * grow
    h, w = int(rows / grow) + 2, int(cols / grow) + 2
    bitmap = np.zeros((h, w), np.bool_)
    r = np.floor((qlat - lat0) / dlat).astype(np.int64)
    c = np.floor((qlon - lon0) / dlon).astype(np.int64)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            bitmap[np.clip(r + dr, 0, h - 1), np.clip(c + dc, 0, w - 1)] = True
    return bitmap, lat0, lon0, dlat, dlon


@jit
def _in_bitmap(lat, lon, bitmap, lat0, lon0, dlat, dlon):
    out = np.zeros(lat.shape[0], np.bool_)
    h, w = bitmap.shape
    for i in range(lat.shape[0]):
        r = (lat[i] - lat0) / dlat
        c = (lon[i] - lon0) / dlon
        if r >= 0.0 and r < h and c >= 0.0 and c < w:       # also: not NaN
            out[i] = bitmap[int(r), int(c)]
    return out


@jit
def _in_cubes(lat, lon, cell, needed):
    """True for the valid pixels whose cube is one of ``needed`` (sorted keys)."""
    out = np.zeros(lat.shape[0], np.bool_)
    if needed.shape[0] == 0:
        return out
    half = 1 << 20
    for i in range(lat.shape[0]):
        if not (math.isfinite(lat[i]) and math.isfinite(lon[i])):
            continue
        la = math.radians(lat[i])
        lo = math.radians(lon[i])
        c = math.cos(la)
        x = int(math.floor(c * math.cos(lo) / cell)) + half
        y = int(math.floor(c * math.sin(lo) / cell)) + half
        z = int(math.floor(math.sin(la) / cell)) + half
        out[i] = _find(needed, (x << 42) | (y << 21) | z) >= 0
    return out


def _keys(xyz: np.ndarray, cell: float) -> np.ndarray:
    cube = np.floor(xyz / cell).astype(np.int64) + _HALF
    return (cube[:, 0] << (2 * _BITS)) | (cube[:, 1] << _BITS) | cube[:, 2]


@dataclass(frozen=True)
class CellIndex:
    """The valid pixels near a set of points, by latitude/longitude cell (:func:`build_near_index`): the
    pixels of cell ``k`` (row-major in ``bitmap``) are ``order[starts[k]:starts[k + 1]]`` (flat indexes,
    ascending), ``xyz`` their unit vectors."""

    starts: np.ndarray
    order: np.ndarray
    xyz: np.ndarray
    bitmap: np.ndarray
    lat0: float
    lon0: float
    dlat: float
    dlon: float
    shape: Tuple[int, int]

    @property
    def size(self) -> int:
        return len(self.order)

    @property
    def nbytes(self) -> int:
        return self.starts.nbytes + self.order.nbytes + self.xyz.nbytes + self.bitmap.nbytes


def build_near_index(lat: np.ndarray, lon: np.ndarray, qlat: np.ndarray, qlon: np.ndarray, radius: float
                     ) -> Optional[CellIndex]:
    """The pixels of 2-D ``lat``/``lon`` (degrees; NaN: no pixel) that the points ``qlat``/``qlon`` search
    within chord ``radius``, bucketed by the latitude/longitude cells of :func:`near_mask` (every pixel
    within the radius of a point is in the 3 x 3 cells around the point's cell): a counting sort in two
    passes over the scene, with no sort of the pixels. None near a pole or across the antimeridian (use
    :func:`build_index` there). :func:`nearest` on it searches only those points (or any within the
    cells they marked)."""
    cells = _query_cells(qlat, qlon, radius)
    if cells is None:
        return None
    bitmap, lat0, lon0, dlat, dlon = cells
    flat_lat = np.ascontiguousarray(lat, np.float64).ravel()
    flat_lon = np.ascontiguousarray(lon, np.float64).ravel()
    starts, order = _bucket(flat_lat, flat_lon, bitmap, lat0, lon0, dlat, dlon)
    xyz = np.ascontiguousarray(unit_vectors(flat_lat[order], flat_lon[order]))
    return CellIndex(starts, order, xyz, bitmap, lat0, lon0, dlat, dlon, tuple(np.shape(lat)))  # type: ignore


@jit
def _bucket(lat, lon, bitmap, lat0, lon0, dlat, dlon):
    """The pixels in the marked cells of ``bitmap``, by cell (ascending in each): ``(starts, order)``."""
    h, w = bitmap.shape
    starts = np.zeros(h * w + 1, np.int64)
    for i in range(lat.shape[0]):
        r = (lat[i] - lat0) / dlat
        c = (lon[i] - lon0) / dlon
        if r >= 0.0 and r < h and c >= 0.0 and c < w:       # also: not NaN
            if bitmap[int(r), int(c)]:
                starts[int(r) * w + int(c) + 1] += 1
    for k in range(h * w):
        starts[k + 1] += starts[k]
    fill = starts[:-1].copy()
    order = np.empty(starts[h * w], np.int64)
    for i in range(lat.shape[0]):
        r = (lat[i] - lat0) / dlat
        c = (lon[i] - lon0) / dlon
        if r >= 0.0 and r < h and c >= 0.0 and c < w:
            if bitmap[int(r), int(c)]:
                k = int(r) * w + int(c)
                order[fill[k]] = i
                fill[k] += 1
    return starts, order


@inline_jit
def _closest_in(starts, order, xyz, k, q, i, r2, best, found):
    """``(best, found)`` after the pixels of bucket ``k`` (``order[starts[k]:starts[k + 1]]``): the squared chord
    and index of the nearest pixel to query ``i`` within ``r2``, the lower index on a tie. Both indexes (cells,
    cubes) search their buckets with it, so they give the same pixel."""
    for j in range(starts[k], starts[k + 1]):
        ex = xyz[j, 0] - q[i, 0]
        ey = xyz[j, 1] - q[i, 1]
        ez = xyz[j, 2] - q[i, 2]
        d2 = ex * ex + ey * ey + ez * ez
        if d2 <= r2 and (d2 < best or (d2 == best and order[j] < found)):
            best = d2
            found = order[j]
    return best, found


@jit
def _nearest_in_cells(starts, order, xyz, h, w, lat0, lon0, dlat, dlon, qlat, qlon, q, r2, out, dist):
    for i in range(q.shape[0]):
        if not (math.isfinite(q[i, 0]) and math.isfinite(q[i, 1]) and math.isfinite(q[i, 2])):
            continue
        lo = (qlon[i] + 180.0) % 360.0 - 180.0
        r = int(math.floor((qlat[i] - lat0) / dlat))
        c = int(math.floor((lo - lon0) / dlon))
        best = np.inf
        found = -1
        for rr in range(max(r - 1, 0), min(r + 2, h)):
            for cc in range(max(c - 1, 0), min(c + 2, w)):
                k = rr * w + cc
                best, found = _closest_in(starts, order, xyz, k, q, i, r2, best, found)
        if found >= 0:
            out[i] = found
            dist[i] = math.sqrt(best)


def nearest(index, lat: np.ndarray, lon: np.ndarray, radius: float) -> Tuple[np.ndarray, np.ndarray]:
    """For each query point (degrees), the flat index of the nearest pixel within chord ``radius``
    (-1: none) and its chord distance (NaN: none). ``index``: a :class:`PixelIndex`, or a
    :class:`CellIndex` built for these points with this radius."""
    q = unit_vectors(lat, lon)
    out = np.full(len(q), -1, np.int64)
    dist = np.full(len(q), np.nan)
    if index.size and len(q):
        if isinstance(index, CellIndex):
            h, w = index.bitmap.shape
            _nearest_in_cells(index.starts, index.order, index.xyz, h, w, index.lat0, index.lon0, index.dlat,
                              index.dlon, np.asarray(lat, np.float64).ravel(), np.asarray(lon, np.float64).ravel(),
                              q, radius * radius, out, dist)
        else:
            reach = int(math.ceil(radius / index.cell))
            _nearest(index.keys, index.starts, index.order, index.xyz, index.cell, q, radius * radius, reach, out,
                     dist)
    return out, dist


def within(index: PixelIndex, lat: float, lon: float, radius: float) -> np.ndarray:
    """Flat indexes of every pixel within chord ``radius`` of one point (degrees), ascending."""
    if not index.size:
        return np.zeros(0, np.int64)
    q = unit_vectors(np.array([lat]), np.array([lon]))[0]
    reach = int(math.ceil(radius / index.cell))
    return np.sort(_within(index.keys, index.starts, index.order, index.xyz, index.cell, q, radius * radius, reach))


@jit
def _find(keys, key):
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(keys) and keys[lo] == key:
        return lo
    return -1


@jit
def _nearest(keys, starts, order, xyz, cell, q, r2, reach, out, dist):
    half = 1 << 20
    for i in range(q.shape[0]):
        cx = int(math.floor(q[i, 0] / cell)) + half
        cy = int(math.floor(q[i, 1] / cell)) + half
        cz = int(math.floor(q[i, 2] / cell)) + half
        best = np.inf
        found = -1
        for k in range(reach + 1):
            # shell k: the cubes k steps away; every cube beyond it is at least k cube sides away
            for dx in range(-k, k + 1):
                for dy in range(-k, k + 1):
                    for dz in range(-k, k + 1):
                        if max(abs(dx), abs(dy), abs(dz)) != k:
                            continue
                        c = _find(keys, ((cx + dx) << 42) | ((cy + dy) << 21) | (cz + dz))
                        if c < 0:
                            continue
                        best, found = _closest_in(starts, order, xyz, c, q, i, r2, best, found)
            if found >= 0 and best < (k * cell) * (k * cell):
                break
        if found >= 0:
            out[i] = found
            dist[i] = math.sqrt(best)


@jit
def _within(keys, starts, order, xyz, cell, q, r2, reach):
    half = 1 << 20
    cx = int(math.floor(q[0] / cell)) + half
    cy = int(math.floor(q[1] / cell)) + half
    cz = int(math.floor(q[2] / cell)) + half
    hits = []
    for dx in range(-reach, reach + 1):
        for dy in range(-reach, reach + 1):
            for dz in range(-reach, reach + 1):
                k = _find(keys, ((cx + dx) << 42) | ((cy + dy) << 21) | (cz + dz))
                if k < 0:
                    continue
                for j in range(starts[k], starts[k + 1]):
                    ex = xyz[j, 0] - q[0]
                    ey = xyz[j, 1] - q[1]
                    ez = xyz[j, 2] - q[2]
                    if ex * ex + ey * ey + ez * ez <= r2:
                        hits.append(order[j])
    out = np.empty(len(hits), np.int64)
    for i in range(len(hits)):
        out[i] = hits[i]
    return out


def unpack_geolocation(raw_lat: np.ndarray, raw_lon: np.ndarray, lat_packing: Tuple, lon_packing: Tuple
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (float64 degrees) of stored values in one pass: ``raw * scale + offset``,
    NaN at either's fill value (``packing``: ``(fill or None, scale, offset)``), where not finite, or out of
    range (|lat| > 90, |lon| > 360); longitudes outside -180..180 wrapped into it."""
    out_lat = np.empty(raw_lat.shape, np.float64)
    out_lon = np.empty(raw_lon.shape, np.float64)
    args = []
    for raw, (fill, scale, offset) in ((raw_lat, lat_packing), (raw_lon, lon_packing)):
        use, value = _fill_of(raw.dtype, fill)
        args += [use, value, float(scale), float(offset)]
    _unpack_geolocation(raw_lat.ravel(), raw_lon.ravel(), out_lat.ravel(), out_lon.ravel(), *args)
    return out_lat, out_lon


def _fill_of(dtype: np.dtype, fill) -> Tuple[bool, Any]:
    """Whether a fill value applies, and it in the stored type (a whole number outside the type's range,
    a NaN fill, none: it does not)."""
    if fill is None:
        return False, np.zeros(1, dtype)[0]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if float(fill) != float(fill) or not info.min <= int(fill) <= info.max:
            return False, np.zeros(1, dtype)[0]
        return True, np.array(int(fill), dtype)[()]
    value = np.array(fill, dtype)[()]
    return bool(np.isfinite(value)), value


@jit
def _unpack_geolocation(raw_lat, raw_lon, out_lat, out_lon, use_lat, fill_lat, scale_lat, offset_lat, use_lon,
                        fill_lon, scale_lon, offset_lon):
    for i in range(raw_lat.shape[0]):
        a = raw_lat[i]
        b = raw_lon[i]
        if (use_lat and a == fill_lat) or (use_lon and b == fill_lon):
            out_lat[i] = np.nan
            out_lon[i] = np.nan
            continue
        la = np.float64(a)
        lo = np.float64(b)
        if scale_lat != 1.0:
            la = la * scale_lat
        if offset_lat != 0.0:
            la = la + offset_lat
        if scale_lon != 1.0:
            lo = lo * scale_lon
        if offset_lon != 0.0:
            lo = lo + offset_lon
        if not (math.isfinite(la) and math.isfinite(lo) and abs(la) <= 90.0 and abs(lo) <= 360.0):
            out_lat[i] = np.nan
            out_lon[i] = np.nan
            continue
        if lo < -180.0 or lo >= 180.0:
            lo = (lo + 180.0) % 360.0 - 180.0
        out_lat[i] = la
        out_lon[i] = lo


def pixel_spacing(lat: np.ndarray, lon: np.ndarray, samples: int = 64) -> Tuple[float, float]:
    """The median great-circle distances in metres between a pixel and its next one along rows and along
    columns, over about ``samples`` x ``samples`` pixels of the scene (NaN pairs skipped)."""
    h, w = np.shape(lat)
    rs = np.unique(np.linspace(0, max(h - 2, 0), min(samples, max(h - 1, 1))).astype(int))
    cs = np.unique(np.linspace(0, max(w - 2, 0), min(samples, max(w - 1, 1))).astype(int))
    out = []
    for dr, dc in ((1, 0), (0, 1)):
        if h <= dr or w <= dc:
            out.append(np.nan)
            continue
        a = unit_vectors(lat[np.ix_(rs, cs)], lon[np.ix_(rs, cs)])
        b = unit_vectors(lat[np.ix_(rs + dr, cs + dc)], lon[np.ix_(rs + dr, cs + dc)])
        d = metres_of(np.linalg.norm(a - b, axis=1))
        d = d[np.isfinite(d)]
        out.append(float(np.median(d)) if len(d) else np.nan)
    return out[0], out[1]

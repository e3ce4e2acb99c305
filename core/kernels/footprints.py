"""Features on a raster grid: pixel coordinates, flat arrays for the kernels, and tile assignment.

A :class:`Footprints` holds every feature's geometry in pixel coordinates of
one grid (column, row; the raster's top-left corner is ``(0, 0)``), as flat
coordinate arrays with part offsets, the shape numba kernels want. Rings carry
a factor of +1 or -1 that makes exteriors add area and holes take it away,
whatever the orientation in the file.

:func:`assign_tiles` is the spatial index: it tells, for each tile of a regular
tile plan, which features touch it (an STR tree of the tile boxes queried with
the features' geometries; points and their windows by arithmetic), so each tile
is read once per raster however many features it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import shapely

KIND_EMPTY, KIND_POLYGON, KIND_LINE, KIND_POINT = -1, 0, 1, 2

_POLYGONAL = (3, 6)          # shapely type ids: Polygon, MultiPolygon
_LINEAL = (1, 2, 5)          # LineString, LinearRing, MultiLineString
_PUNTAL = (0, 4)             # Point, MultiPoint


@dataclass(frozen=True)
class Footprints:
    """Features in pixel coordinates of a ``height`` x ``width`` grid, as flat arrays.

    Feature ``z`` has kind ``kind[z]`` and parts ``zone_part[z]:zone_part[z+1]``;
    part ``p`` has the coordinates ``xs/ys[part_start[p]:part_start[p+1]]`` (rings
    closed) and ``part_factor[p]`` (+1/-1 orientation of rings). ``bbox[z]`` is
    ``(xmin, ymin, xmax, ymax)`` in pixels (NaN for an empty feature).
    """

    kind: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    part_start: np.ndarray
    part_factor: np.ndarray
    zone_part: np.ndarray
    bbox: np.ndarray
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.kind)

    def geometry(self, z: int):
        """Feature ``z`` as a shapely geometry in pixel coordinates (None if empty)."""
        p0, p1 = int(self.zone_part[z]), int(self.zone_part[z + 1])
        coords = [np.column_stack([self.xs[self.part_start[p]:self.part_start[p + 1]],
                                   self.ys[self.part_start[p]:self.part_start[p + 1]]]) for p in range(p0, p1)]
        if not coords:
            return None
        if self.kind[z] == KIND_POINT:
            return shapely.Point(coords[0][0])
        if self.kind[z] == KIND_LINE:
            return shapely.MultiLineString(coords)
        polygons: list = []
        for ring, factor in zip(coords, self.part_factor[p0:p1]):
            ccw = bool(shapely.is_ccw(shapely.LinearRing(ring))) if len(ring) >= 4 else False
            if factor == (-1.0 if ccw else 1.0):       # an exterior ring (see _ring_parts)
                polygons.append([ring, []])
            elif polygons:
                polygons[-1][1].append(ring)
        return shapely.MultiPolygon([shapely.Polygon(shell, holes) for shell, holes in polygons])

    def take(self, zones: np.ndarray) -> "Footprints":
        """The features ``zones`` alone, numbered ``0 .. len(zones) - 1`` in that order: what one tile's task
        needs (a task given every feature's footprint carries them all through the pool's pipes).

        >>> fp = footprints_from_pixels([shapely.box(1, 1, 3, 2), shapely.Point(5, 1), shapely.box(6, 1, 9, 3)], 16, 16)
        >>> sub = fp.take(np.array([2, 1]))
        >>> [sub.geometry(k).equals(fp.geometry(z)) for k, z in enumerate([2, 1])], len(sub)
        ([True, True], 2)
        """
        zones = np.asarray(zones, np.int64)
        p0, p1 = self.zone_part[zones], self.zone_part[zones + 1]
        parts = _ranges(p0, p1)
        c0, c1 = self.part_start[parts], self.part_start[parts + 1]
        coords = _ranges(c0, c1)
        zone_part = np.zeros(len(zones) + 1, self.zone_part.dtype)
        np.cumsum(p1 - p0, out=zone_part[1:])
        part_start = np.zeros(len(parts) + 1, self.part_start.dtype)
        np.cumsum(c1 - c0, out=part_start[1:])
        return Footprints(self.kind[zones], self.xs[coords], self.ys[coords], part_start, self.part_factor[parts],
                          zone_part, self.bbox[zones], self.height, self.width)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenated ``arange(starts[i], ends[i])``.

    >>> _ranges(np.array([3, 0, 7]), np.array([5, 0, 8])).tolist()
    [3, 4, 7]
    """
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    first = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return first + np.arange(total, dtype=np.int64)


def kind_of(geoms: np.ndarray) -> np.ndarray:
    """KIND_POLYGON / KIND_LINE / KIND_POINT / KIND_EMPTY of each geometry.

    A geometry collection counts as its highest-dimensional parts.

    >>> kind_of(np.array([shapely.box(0, 0, 1, 1), shapely.Point(1, 1), None, shapely.LineString([(0, 0), (1, 1)])]))
    array([ 0,  2, -1,  1], dtype=int8)
    """
    geoms = np.asarray(geoms, dtype=object)
    ids = shapely.get_type_id(geoms)
    out = np.full(len(geoms), KIND_EMPTY, np.int8)
    out[np.isin(ids, _POLYGONAL)] = KIND_POLYGON
    out[np.isin(ids, _LINEAL)] = KIND_LINE
    out[np.isin(ids, _PUNTAL)] = KIND_POINT
    for i in np.flatnonzero(ids == 7):
        dims = shapely.get_dimensions(shapely.get_parts(geoms[i]))
        if len(dims):
            out[i] = (KIND_POINT, KIND_LINE, KIND_POLYGON)[int(dims.max())]
    out[shapely.is_empty(geoms) | shapely.is_missing(geoms)] = KIND_EMPTY
    return out


def footprints_from_pixels(geoms: Sequence, height: int, width: int) -> Footprints:
    """:class:`Footprints` of geometries already in pixel coordinates of a ``height`` x ``width`` grid.

    Points must be single points (explode multi-points first, see ``vector.sample_points``).

    >>> fp = footprints_from_pixels([shapely.box(1, 1, 3, 2), shapely.Point(0.5, 0.5)], 10, 10)
    >>> fp.kind.tolist(), fp.bbox[0].tolist()
    ([0, 2], [1.0, 1.0, 3.0, 2.0])
    """
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    kind = kind_of(geoms)
    finite = _finite(geoms)
    kind[~finite] = KIND_EMPTY
    chunks = []          # (zone of each part, coordinates, ring factor) per kind
    polys = np.flatnonzero(kind == KIND_POLYGON)
    if len(polys):
        chunks.append(_ring_parts(_only(geoms[polys], _POLYGONAL), polys))
    lines = np.flatnonzero(kind == KIND_LINE)
    if len(lines):
        chunks.append(_path_parts(_only(geoms[lines], _LINEAL), lines))
    points = np.flatnonzero(kind == KIND_POINT)
    if len(points):
        pts = _only(geoms[points], _PUNTAL)
        if np.any(shapely.get_num_geometries(pts) > 1) or np.any(shapely.get_type_id(pts) == 4):
            pts = np.array([shapely.get_geometry(g, 0) for g in pts], dtype=object)
        xy = shapely.get_coordinates(pts)
        chunks.append((points, np.arange(len(points) + 1, dtype=np.int64), xy, np.ones(len(points))))
    return _assemble(chunks, kind, n, int(height), int(width))


def _finite(geoms: np.ndarray) -> np.ndarray:
    out = np.ones(len(geoms), bool)
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    bad = ~np.all(np.isfinite(coords), axis=1)
    out[np.unique(index[bad])] = False
    return out


def _only(geoms: np.ndarray, type_ids: Tuple[int, ...]) -> np.ndarray:
    """Geometry collections reduced to their parts of the given types."""
    out = geoms.copy()
    for i in np.flatnonzero(shapely.get_type_id(geoms) == 7):
        parts = shapely.get_parts(geoms[i])
        keep = parts[np.isin(shapely.get_type_id(parts), type_ids)]
        out[i] = shapely.geometrycollections(keep)
    return out


def _ring_parts(geoms: np.ndarray, zones: np.ndarray):
    polygons, which = shapely.get_parts(geoms, return_index=True)
    keep = shapely.get_type_id(polygons) == 3
    polygons, which = polygons[keep], which[keep]
    rings, ring_poly = shapely.get_rings(polygons, return_index=True)
    exterior = np.ones(len(rings), bool)
    exterior[1:] = ring_poly[1:] != ring_poly[:-1]
    ccw = shapely.is_ccw(rings)
    # Green's theorem over pixel rows gives -area for a counter-clockwise ring (x right, y down as stored).
    factor = np.where(ccw, -1.0, 1.0) * np.where(exterior, 1.0, -1.0)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    starts = np.searchsorted(ring_of, np.arange(len(rings) + 1))
    return zones[which[ring_poly]], starts.astype(np.int64), coords, factor


def _path_parts(geoms: np.ndarray, zones: np.ndarray):
    paths, which = shapely.get_parts(geoms, return_index=True)
    rings = shapely.get_type_id(paths) == 2
    if np.any(rings):
        paths[rings] = np.array([shapely.LineString(shapely.get_coordinates(g)) for g in paths[rings]],
                                dtype=object)
    keep = shapely.get_type_id(paths) == 1
    paths, which = paths[keep], which[keep]
    coords, path_of = shapely.get_coordinates(paths, return_index=True)
    starts = np.searchsorted(path_of, np.arange(len(paths) + 1))
    return zones[which], starts.astype(np.int64), coords, np.ones(len(paths))


def _assemble(chunks, kind: np.ndarray, n: int, height: int, width: int) -> Footprints:
    if not chunks:
        empty = np.zeros(0)
        return Footprints(kind, empty, empty.copy(), np.zeros(1, np.int64), empty.copy(),
                          np.zeros(n + 1, np.int64), np.full((n, 4), np.nan), height, width)
    part_zone = np.concatenate([c[0] for c in chunks])
    lengths = np.concatenate([np.diff(c[1]) for c in chunks])
    coords = np.concatenate([c[2] for c in chunks])
    factor = np.concatenate([c[3] for c in chunks])
    old_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    order = np.argsort(part_zone, kind="stable")
    lengths, old_start, factor, part_zone = lengths[order], old_start[order], factor[order], part_zone[order]
    part_start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    take = np.repeat(old_start - part_start[:-1], lengths) + np.arange(part_start[-1])
    xs = np.ascontiguousarray(coords[take, 0], dtype=np.float64)
    ys = np.ascontiguousarray(coords[take, 1], dtype=np.float64)
    zone_part = np.searchsorted(part_zone, np.arange(n + 1)).astype(np.int64)
    bbox = np.full((n, 4), np.nan)
    has = np.diff(zone_part) > 0
    kind = kind.copy()
    kind[~has] = KIND_EMPTY
    if np.any(has):
        first = part_start[zone_part[:-1][has]]
        coord_zone = np.repeat(np.arange(n)[has], part_start[zone_part[1:][has]] - first)
        starts = np.searchsorted(coord_zone, np.arange(n)[has])
        bbox[has, 0] = np.minimum.reduceat(xs, starts)
        bbox[has, 1] = np.minimum.reduceat(ys, starts)
        bbox[has, 2] = np.maximum.reduceat(xs, starts)
        bbox[has, 3] = np.maximum.reduceat(ys, starts)
    return Footprints(kind, xs, ys, part_start, np.ascontiguousarray(factor, dtype=np.float64), zone_part,
                      bbox, height, width)


def to_pixel_space(geoms: np.ndarray, transform: Sequence[float]) -> np.ndarray:
    """Geometries in a grid's CRS to its pixel coordinates (column, row), by the inverse affine ``transform``.

    >>> to_pixel_space(np.array([shapely.Point(515.0, 985.0)]), (10, 0, 500, 0, -10, 1000))[0].wkt
    'POINT (1.5 1.5)'
    """
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    det = a * e - b * d
    if det == 0:
        raise ValueError("degenerate grid transform")

    def inverse(xy: np.ndarray) -> np.ndarray:
        x = xy[:, 0] - c
        y = xy[:, 1] - f
        return np.column_stack([(e * x - b * y) / det, (a * y - d * x) / det])
    return shapely.transform(np.asarray(geoms, dtype=object), inverse)


# -- the spatial index --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TileAssignment:
    """Which features each tile of a regular plan holds.

    Tile ``t`` holds features ``zones[offsets[t]:offsets[t+1]]`` (ascending);
    ``parts[z]`` is how many tiles feature ``z`` was given to (0: it touches no
    pixel of the raster; 1: it is complete in one tile; more: its statistics
    are merged across tiles).
    """

    offsets: np.ndarray
    zones: np.ndarray
    parts: np.ndarray

    def of_tile(self, t: int) -> np.ndarray:
        return self.zones[self.offsets[t]:self.offsets[t + 1]]


def assign_tiles(fp: Footprints, tile_size: int, point_method: str = "nearest", window: int = 1) -> TileAssignment:
    """Features of each tile of the row-major plan of ``tile_size`` tiles (as :func:`..grid.plan_tiles`).

    >>> fp = footprints_from_pixels([shapely.box(1, 1, 3, 2), shapely.box(6, 1, 12, 2), shapely.Point(20, 1)], 16, 16)
    >>> a = assign_tiles(fp, 8)
    >>> [a.of_tile(t).tolist() for t in range(4)], a.parts.tolist()
    ([[0, 1], [1], [], []], [1, 2, 0])
    """
    n_cols = math.ceil(fp.width / tile_size)
    n_rows = math.ceil(fp.height / tile_size)
    pair_tiles: List[np.ndarray] = []
    pair_zones: List[np.ndarray] = []
    shaped = np.flatnonzero((fp.kind == KIND_POLYGON) | (fp.kind == KIND_LINE))
    if len(shaped):
        t, z = _shape_pairs(fp, shaped, tile_size, n_rows, n_cols)
        pair_tiles.append(t)
        pair_zones.append(z)
    points = np.flatnonzero(fp.kind == KIND_POINT)
    if len(points):
        t, z = _point_pairs(fp, points, tile_size, n_rows, n_cols, point_method, window)
        pair_tiles.append(t)
        pair_zones.append(z)
    tiles = np.concatenate(pair_tiles) if pair_tiles else np.zeros(0, np.int64)
    zones = np.concatenate(pair_zones) if pair_zones else np.zeros(0, np.int64)
    order = np.lexsort((zones, tiles))
    tiles, zones = tiles[order], zones[order]
    offsets = np.searchsorted(tiles, np.arange(n_rows * n_cols + 1)).astype(np.int64)
    parts = np.bincount(zones, minlength=len(fp)).astype(np.int64)
    return TileAssignment(offsets, zones.astype(np.int64), parts)


def _shape_pairs(fp: Footprints, shaped: np.ndarray, tile_size: int, n_rows: int, n_cols: int):
    boxes = []
    for r in range(n_rows):
        for c in range(n_cols):
            boxes.append(shapely.box(c * tile_size, r * tile_size, min((c + 1) * tile_size, fp.width),
                                     min((r + 1) * tile_size, fp.height)))
    bb = fp.bbox[shaped]
    # One tile by its bounding box: no geometry test needed.
    c0 = np.clip(np.floor(bb[:, 0] / tile_size), 0, n_cols - 1)
    c1 = np.clip(np.floor(bb[:, 2] / tile_size), 0, n_cols - 1)
    r0 = np.clip(np.floor(bb[:, 1] / tile_size), 0, n_rows - 1)
    r1 = np.clip(np.floor(bb[:, 3] / tile_size), 0, n_rows - 1)
    inside = (bb[:, 2] >= 0) & (bb[:, 0] <= fp.width) & (bb[:, 3] >= 0) & (bb[:, 1] <= fp.height)
    single = inside & (c0 == c1) & (r0 == r1) & _within_one(bb, tile_size)
    tiles = [(r0[single] * n_cols + c0[single]).astype(np.int64)]
    zones = [shaped[single]]
    multi = shaped[inside & ~single]
    if len(multi):
        tree = shapely.STRtree(np.array(boxes, dtype=object))
        geoms = np.array([fp.geometry(z) for z in multi], dtype=object)
        g_idx, t_idx = tree.query(geoms, predicate="intersects")
        tiles.append(t_idx.astype(np.int64))
        zones.append(multi[g_idx])
    return np.concatenate(tiles), np.concatenate(zones)


def _within_one(bb: np.ndarray, tile_size: int) -> np.ndarray:
    """Bounding boxes strictly inside one tile (touching a tile line counts as spanning)."""
    c = np.floor(bb[:, 0] / tile_size)
    r = np.floor(bb[:, 1] / tile_size)
    return (bb[:, 0] > c * tile_size) & (bb[:, 2] < (c + 1) * tile_size) & \
        (bb[:, 1] > r * tile_size) & (bb[:, 3] < (r + 1) * tile_size)


def point_cells(px: np.ndarray, py: np.ndarray, point_method: str, window: int):
    """The pixel range ``(c0, r0, c1, r1)`` (inclusive) that each point reads, as in the cover kernel."""
    if point_method == "bilinear":
        c0 = np.floor(px - 0.5)
        r0 = np.floor(py - 0.5)
        return c0, r0, c0 + 1, r0 + 1
    if window == 1 or window % 2 == 1:
        c0 = np.floor(px) - window // 2
        r0 = np.floor(py) - window // 2
    else:
        c0 = np.floor(px + 0.5) - window // 2
        r0 = np.floor(py + 0.5) - window // 2
    return c0, r0, c0 + window - 1, r0 + window - 1


def _point_pairs(fp: Footprints, points: np.ndarray, tile_size: int, n_rows: int, n_cols: int,
                 point_method: str, window: int):
    i = fp.part_start[fp.zone_part[points]]
    px, py = fp.xs[i], fp.ys[i]
    c0, r0, c1, r1 = point_cells(px, py, point_method, window)
    ok = (c1 >= 0) & (c0 < fp.width) & (r1 >= 0) & (r0 < fp.height)
    if point_method == "bilinear":
        ok &= (px >= 0) & (py >= 0) & (px < fp.width) & (py < fp.height)
    c0 = np.clip(c0, 0, fp.width - 1) // tile_size
    c1 = np.clip(c1, 0, fp.width - 1) // tile_size
    r0 = np.clip(r0, 0, fp.height - 1) // tile_size
    r1 = np.clip(r1, 0, fp.height - 1) // tile_size
    tiles, zones = [], []
    span_c = int(np.max(c1 - c0, initial=0)) + 1
    span_r = int(np.max(r1 - r0, initial=0)) + 1
    for dr in range(span_r):
        for dc in range(span_c):
            sel = ok & (r0 + dr <= r1) & (c0 + dc <= c1)
            tiles.append(((r0[sel] + dr) * n_cols + c0[sel] + dc).astype(np.int64))
            zones.append(points[sel])
    return np.concatenate(tiles), np.concatenate(zones)

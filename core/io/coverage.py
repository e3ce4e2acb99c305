"""Where the inputs lie against the output grid: inputs outside it, and grids too large to write unasked.

An input that does not overlap the output grid contributes nothing; a run
names it rather than ignoring it silently, and an output that no input touches
is an error. An output above :data:`LARGE_OUTPUT_BYTES` (before compression)
needs a confirmation (``allow_large``), and the message names the inputs that
stretch the grid (e.g. one scene far away from the others in a mosaic).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from .diskspace import human_size
from ..errors import GridError, InputError, TilewiseWarning
from ..grid import Grid
from .sources import RasterInfo
from .vector import GEOGRAPHIC_RANGE, MAX_LATITUDE, MAX_LONGITUDE, coordinate_range, crs_label

log = logging.getLogger(__name__)

Bounds = Tuple[float, float, float, float]

#: Outputs larger than this before compression need ``allow_large`` (``--allow-large``, ``ALLOW_LARGE``).
LARGE_OUTPUT_BYTES = 16 * 2**30
CONFIRM = "allow a large output (--allow-large; ALLOW_LARGE in QGIS; allow_large=True in Python)"
_WGS84 = CRS.from_epsg(4326)


def raster_bounds(info: RasterInfo) -> Bounds:
    """``(xmin, ymin, xmax, ymax)`` of a raster in its own CRS."""
    a, _, c, _, e, f = info.transform
    xs = (c, c + a * info.width)
    ys = (f, f + e * info.height)
    return (min(xs), min(ys), max(xs), max(ys))


#: How far (in degrees) a geographic raster's edge may pass the poles or +-360 (half a coarse pixel).
GEOGRAPHIC_MARGIN = 1.0


def in_crs_range(bounds: Bounds, crs: Optional[CRS]) -> bool:
    """False if ``bounds`` cannot be in ``crs``: beyond the poles or +-360 degrees in a geographic CRS
    (metres in a raster labelled WGS 84). Projected CRSs have no such test here.

    >>> in_crs_range((500000.0, 4999800.0, 500300.0, 5000000.0), CRS.from_epsg(4326))
    False
    """
    if crs is None or not crs.is_geographic:
        return True
    xmin, ymin, xmax, ymax = bounds
    return (max(abs(xmin), abs(xmax)) <= MAX_LONGITUDE + GEOGRAPHIC_MARGIN and
            max(abs(ymin), abs(ymax)) <= MAX_LATITUDE + GEOGRAPHIC_MARGIN)


def check_crs_range(info: RasterInfo) -> None:
    """:class:`InputError` for a raster whose bounds are outside the range of its (geographic) CRS:
    it cannot be moved to another CRS (PROJ: Invalid latitude), and its CRS is most likely wrong."""
    crs = CRS.from_user_input(info.crs) if info.crs else None
    bounds = raster_bounds(info)
    if in_crs_range(bounds, crs):
        return
    xy = np.array([bounds[:2], bounds[2:]], float)
    raise InputError(f"The coordinates of {info.path} are outside the range of its CRS ({crs_label(crs)}: "
                     f"{GEOGRAPHIC_RANGE}): {coordinate_range(xy)} They look like metres or feet: the raster's "
                     "CRS is probably wrong. Check it and assign the right one (in QGIS: Layer Properties > "
                     "Source > Assigned Coordinate Reference System; or gdal_edit.py -a_srs EPSG:... FILE).")


def check_grid_range(grid: Grid) -> None:
    """:class:`GridError` for an output grid outside the range of its (geographic) CRS: e.g. an extent
    in metres with a CRS in degrees."""
    crs = CRS.from_user_input(grid.crs) if grid.crs else None
    if in_crs_range(grid.bounds, crs):
        return
    raise GridError(f"The output grid {_describe(grid)} is outside the range of its CRS ({crs_label(crs)}: "
                    f"{GEOGRAPHIC_RANGE}): the layer it comes from (the reference, by default the first input) "
                    "has a wrong CRS, or the extent is not in the units of the target CRS. Check them.")


def footprint(info: RasterInfo, target: Optional[CRS]) -> Bounds:
    """The bounds of ``info`` in the ``target`` CRS (its own bounds if either has no CRS); an
    :class:`InputError` if its bounds are outside the range of its CRS (:func:`check_crs_range`)."""
    src_crs = CRS.from_user_input(info.crs) if info.crs else None
    if src_crs is None or target is None or src_crs == target:
        return raster_bounds(info)
    check_crs_range(info)
    return tuple(transform_bounds(src_crs, target, *raster_bounds(info), densify_pts=21))  # type: ignore


def meets(a: Bounds, b: Bounds) -> bool:
    """True if two boxes share some area (touching edges share none)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def overlaps_grid(info: RasterInfo, grid: Grid) -> bool:
    """True if ``info`` covers some of ``grid``; True as well when that cannot be told (a CRS
    transformation that fails both ways): the run then decides as before. An input or a grid
    outside the range of its CRS is an error (:func:`check_crs_range`, :func:`check_grid_range`)."""
    target = CRS.from_user_input(grid.crs) if grid.crs else None
    src_crs = CRS.from_user_input(info.crs) if info.crs else None
    if src_crs is not None and target is not None and src_crs != target:   # to be moved: it must fit its CRS
        check_crs_range(info)
        check_grid_range(grid)
    try:
        box = footprint(info, target)
        if all(map(math.isfinite, box)):
            return meets(box, grid.bounds)
    except Exception:  # noqa: BLE001 - PROJ cannot take the input's bounds there
        log.debug("The footprint of %s cannot be moved to the grid's CRS", info.path, exc_info=True)
    try:  # compare in longitude and latitude
        src_crs = CRS.from_user_input(info.crs)
        mine = transform_bounds(src_crs, _WGS84, *raster_bounds(info), densify_pts=21)
        theirs = transform_bounds(target, _WGS84, *grid.bounds, densify_pts=21)
        if all(map(math.isfinite, mine + theirs)):
            return meets(mine, theirs)
    except Exception:  # noqa: BLE001 - unknown: the run decides as before
        log.debug("Whether %s covers the grid cannot be told", info.path, exc_info=True)
    return True


def outside_grid(infos: Sequence[RasterInfo], grid: Grid) -> List[RasterInfo]:
    """The inputs that do not overlap ``grid``."""
    return [info for info in infos if not overlaps_grid(info, grid)]


def check_inputs_meet(infos: Sequence[RasterInfo], grid: Grid, what: str = "inputs") -> None:
    """Warn naming the ``infos`` outside ``grid``; raise :class:`GridError` if none overlaps it."""
    out = outside_grid(infos, grid)
    if not out:
        return
    if len(out) == len(infos):
        raise GridError(f"No input overlaps the output grid {_describe(grid)}: {name_list(out)}. "
                        "Check the reference layer, extent and CRS.")
    warnings.warn(TilewiseWarning(f"{len(out)} of {len(infos)} {what} do not overlap the output grid and add "
                                  f"nothing to it: {name_list(out)}"), stacklevel=2)


def name_list(infos: Sequence[RasterInfo], limit: int = 5) -> str:
    return _names([i.path for i in infos], limit)


def _describe(grid: Grid) -> str:
    xmin, ymin, xmax, ymax = grid.bounds
    return f"({xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g})"


def output_bytes(grid: Grid, bands: int, dtype: str) -> int:
    return grid.width * grid.height * bands * np.dtype(dtype).itemsize


def check_output_size(grid: Grid, bands: int, dtype: str, allow_large: bool = False,
                      footprints: Optional[Sequence[Tuple[str, Bounds]]] = None) -> None:
    """Refuse an output above :data:`LARGE_OUTPUT_BYTES` unless ``allow_large``; with the inputs'
    ``(path, footprint)`` (a grid that is their union), name the inputs that stretch it.

    >>> g = Grid("", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 100_000, 100_000)
    >>> check_output_size(g, 4, "float32")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    tilewise.core.errors.GridError: The output grid would be 100,000 x 100,000 pixels x 4 band(s) ...
    """
    size = output_bytes(grid, bands, dtype)
    if allow_large or size <= LARGE_OUTPUT_BYTES:
        return
    stretch = _stretching(grid, footprints) if footprints else ""
    raise GridError(f"The output grid would be {grid.width:,} x {grid.height:,} pixels x {bands} band(s) of "
                    f"{dtype}, {human_size(size)} before compression: more than the "
                    f"{human_size(LARGE_OUTPUT_BYTES)} written without a confirmation.{stretch} Check the "
                    f"inputs, the extent and the cell size; to write it anyway, {CONFIRM}.")


def _stretching(grid: Grid, footprints: Sequence[Tuple[str, Bounds]]) -> str:
    """The inputs without which the grid would be less than half as large (else those at its edges)."""
    boxes = np.array([b for _, b in footprints], float)
    area = _area(boxes)
    if len(boxes) < 2 or area <= 0:
        return ""
    far = []
    for i in range(len(boxes)):
        rest = np.delete(boxes, i, axis=0)
        smaller = _area(rest)
        if smaller < area / 2:
            far.append((smaller, footprints[i][0]))
    if far and len(far) < len(boxes):
        far.sort()
        rx, ry = grid.res
        return (f" It is stretched by {_names([p for _, p in far])}, far from the other inputs (without "
                f"{'it' if len(far) == 1 else far[0][1]}, about {far[0][0] / (rx * ry):,.0f} pixels).")
    if far:
        return f" Its inputs lie far apart: {_names([p for p, _ in footprints])}."
    edges = {footprints[int(np.argmin(boxes[:, 0]))][0], footprints[int(np.argmax(boxes[:, 2]))][0],
             footprints[int(np.argmin(boxes[:, 1]))][0], footprints[int(np.argmax(boxes[:, 3]))][0]}
    return f" The inputs at its edges: {', '.join(sorted(edges))}."


def _names(paths: Sequence[str], limit: int = 5) -> str:
    return ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _area(boxes: np.ndarray) -> float:
    return float((boxes[:, 2].max() - boxes[:, 0].min()) * (boxes[:, 3].max() - boxes[:, 1].min()))

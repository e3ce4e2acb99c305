"""Planning the target grid from a reference raster and optional overrides."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import calculate_default_transform

from .errors import GridError
from .grid import Grid, grid_from_extent, parse_cell_size, snap_extent
from .io.sources import RasterInfo

Extent = Tuple[float, float, float, float]


def parse_crs(value: Optional[str]) -> Optional[CRS]:
    """``"EPSG:32633"``, a WKT or PROJ string, or None."""
    if not value:
        return None
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise GridError(f"Unknown target CRS {value!r}: {exc}") from None


def plan_grid(reference: RasterInfo, extent: Optional[Sequence[float]] = None, crs: Optional[str] = None,
              cell_size: Optional[object] = None) -> Grid:
    """The target grid: the reference raster's grid, changed by whichever of
    ``extent`` (in the target CRS), ``crs`` and ``cell_size`` are given.

    With the reference CRS and cell size kept, an extent is snapped outward to
    the reference pixels, so inputs on the reference grid are not resampled.
    """
    ref_crs = parse_crs(reference.crs)
    target_crs = parse_crs(crs) or ref_crs
    res = parse_cell_size(cell_size)
    a, b, c, d, e, f = reference.transform
    if b or d:
        raise GridError(f"The reference raster {reference.path} is rotated; pick a north-up reference layer.")
    ref_extent = (c, f + e * reference.height, c + a * reference.width, f) if e < 0 else \
        (c, f, c + a * reference.width, f + e * reference.height)
    crs_text = target_crs.to_wkt() if target_crs else ""
    if target_crs == ref_crs or ref_crs is None:
        if extent is None and res is None:
            return Grid(crs_text, (a, 0.0, c, 0.0, -abs(e), ref_extent[3]), reference.width, reference.height)
        box = _extent(extent) if extent is not None else ref_extent
        if res is None:
            res = (abs(a), abs(e))
            box = snap_extent(box, (c, ref_extent[3]), res)
        return grid_from_extent(crs_text, box, res)
    transform, width, height = calculate_default_transform(
        ref_crs, target_crs, reference.width, reference.height, *ref_extent,
        resolution=res)
    if extent is None:
        return Grid(crs_text, tuple(transform)[:6], width, height)  # type: ignore[arg-type]
    return grid_from_extent(crs_text, _extent(extent), res or (abs(transform.a), abs(transform.e)))


def _extent(extent: Sequence[float]) -> Extent:
    if len(extent) != 4:
        raise GridError(f"An extent is four numbers xmin, ymin, xmax, ymax; got {list(extent)}.")
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    if xmax <= xmin or ymax <= ymin:
        raise GridError(f"The extent ({xmin}, {ymin}, {xmax}, {ymax}) is empty.")
    return (xmin, ymin, xmax, ymax)

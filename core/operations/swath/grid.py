"""Swath scenes onto a regular grid: GDAL's geolocation warping through the scene's latitude/longitude.

:func:`warp_swath` resamples variables of one scene onto a target grid (any CRS) with GDAL's
geolocation-array transformer (``rasterio.warp.reproject`` with ``src_geoloc_array``: what
``gdalwarp -geoloc`` does), after unpacking and flag masking; pixels the swath does not cover, fill
values and flagged pixels are NaN. :func:`swath_to_grid` writes each scene as a float32 GeoTIFF on the
grid, which every raster operation then takes (the composites, gap filling).

>>> swath_to_grid(["S3A_OL_2_WFR____20240514T134512_..._003.SEN3"], "grids", variables="CHL_NN",
...               crs="EPSG:4326", bounds=(-60.2, -3.4, -59.8, -3.0), cell_size=0.003)   # doctest: +SKIP
['grids/S3A_OL_2_WFR____20240514T134512_..._003.tif']
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import OutputError, ParameterError
from ...io.swath import SwathScene, open_swath, read_geolocation, read_raw, unpack
from .flags import FlagRequest, flag_request, resolve_flags

RESAMPLINGS = ("nearest", "bilinear")


def warp_swath(scene: SwathScene, variables: Sequence[str], crs: str, transform: Tuple[float, ...], width: int,
               height: int, resampling: str = "nearest", flags: Optional[FlagRequest] = None) -> np.ndarray:
    """``(variables, height, width)`` float64 values of ``scene`` on the grid; NaN where there are none."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    if resampling not in RESAMPLINGS:
        raise ParameterError(f"Swath scenes are resampled with {' or '.join(RESAMPLINGS)}, not {resampling!r}.")
    lat, lon = read_geolocation(scene)
    masked = None
    if flags is not None and not flags.empty:
        sf = resolve_flags(flags, scene)
        masked = sf.masked(read_raw(sf.variable))
    # GDAL's transformer needs finite geolocation without jumps: fill-valued pixels (the swath's edges) get
    # positions extrapolated along their row, and no value
    bad = ~np.isfinite(lat) | ~np.isfinite(lon)
    if bad.any():
        lat, lon = _extrapolated(lat, bad), _extrapolated(_continuous(lon), bad)
    out = np.full((len(variables), height, width), np.nan)
    for i, name in enumerate(variables):
        values = unpack(read_raw(scene.variable(name)), scene.variable(name))
        if masked is not None:
            values[masked] = np.nan
        values[bad] = np.nan
        reproject(values, out[i], src_geoloc_array=np.stack([lon, lat]),
                  src_crs=CRS.from_epsg(4326), src_nodata=np.nan, dst_crs=CRS.from_user_input(crs),
                  dst_transform=Affine(*transform[:6]), dst_nodata=np.nan, resampling=getattr(Resampling, resampling))
    return out


def _continuous(lon: np.ndarray) -> np.ndarray:
    """Longitudes of a scene across the antimeridian taken around its first one (179 and -179 become 179
    and 181), so that extrapolating along a row does not jump."""
    if not np.isfinite(lon).any() or np.nanmax(lon) - np.nanmin(lon) <= 180.0:
        return lon
    ref = lon[np.isfinite(lon)][0]
    return (lon - ref + 180.0) % 360.0 - 180.0 + ref


def _extrapolated(a: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``a`` with its ``bad`` entries linearly inter- and extrapolated along rows (then along columns, for rows
    with no valid entry)."""
    out = np.array(a, np.float64)
    for axis in (1, 0):
        view = out if axis == 1 else out.T
        missing = ~np.isfinite(view) | (bad if axis == 1 else bad.T)
        for r in np.flatnonzero(missing.any(axis=1) & ((~missing).sum(axis=1) >= 2)):
            good = np.flatnonzero(~missing[r])
            x = np.arange(view.shape[1])
            row = np.interp(x, good, view[r, good])
            lo, hi = good[:2], good[-2:]
            row[x < good[0]] = view[r, lo[0]] + (x[x < good[0]] - lo[0]) * (view[r, lo[1]] - view[r, lo[0]]) / \
                (lo[1] - lo[0])
            row[x > good[-1]] = view[r, hi[1]] + (x[x > good[-1]] - hi[1]) * (view[r, hi[1]] - view[r, hi[0]]) / \
                (hi[1] - hi[0])
            view[r] = row
        bad = ~np.isfinite(out)
    return out


def swath_to_grid(inputs: Sequence[str], folder: str, variables: Any = None, crs: str = "EPSG:4326",
                  bounds: Optional[Tuple[float, float, float, float]] = None, cell_size: Optional[float] = None,
                  resampling: str = "nearest", mask_flags: Any = (), mask_bits: Any = (),
                  mask_preset: Any = None, flag_variable: Optional[str] = None) -> List[str]:
    """Write each swath scene of ``inputs`` as a float32 GeoTIFF (one band per variable, NaN no data) on the
    grid of ``crs``, ``bounds`` (xmin, ymin, xmax, ymax) and ``cell_size``, into ``folder``; return the paths."""
    import rasterio
    if bounds is None or cell_size is None or cell_size <= 0:
        raise ParameterError("Gridding swath scenes needs the target extent (xmin, ymin, xmax, ymax) and a cell size "
                             "above 0, in the target CRS.")
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder {folder} does not exist.")
    xmin, ymin, xmax, ymax = bounds
    width, height = int(round((xmax - xmin) / cell_size)), int(round((ymax - ymin) / cell_size))
    if width < 1 or height < 1:
        raise ParameterError(f"The extent {bounds} holds no cell of {cell_size}.")
    transform = (cell_size, 0.0, xmin, 0.0, -cell_size, ymax)
    flags = flag_request(mask_flags, mask_bits, (), mask_preset, flag_variable)
    if isinstance(variables, str):
        variables = [v for v in variables.split(",") if v.strip()]
    paths = []
    for p in inputs:
        scene = open_swath(str(p))
        names = [scene.variable(v).name for v in variables] if variables else [v.name for v in scene.measured()]
        data = warp_swath(scene, names, crs, transform, width, height, resampling, flags)
        out = os.path.join(folder, os.path.splitext(scene.name)[0] + ".tif")
        profile = dict(driver="GTiff", width=width, height=height, count=len(names), dtype="float32", crs=crs,
                       transform=rasterio.Affine(*transform), nodata=np.nan, compress="deflate", tiled=True)
        tmp = out + ".part.tif"
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data.astype(np.float32))
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
            if scene.start_time:
                dst.update_tags(ACQUISITIONDATETIME=scene.start_time)
        os.replace(tmp, out)
        paths.append(out)
    return paths


#: Options of a composite that only swath scenes take (popped before the raster composite sees them).
GRID_ONLY = ("variables", "mask_flags", "flag_variable")


def composite_swaths(run, inputs: Sequence[str], output: str, *args: Any, **options: Any):
    """``run(gridded, output, *args, **options)`` (a raster operation: the composite) on the swath scenes
    of ``inputs`` gridded first (:func:`swath_to_grid`) onto the grid of ``extent`` and ``cell_size``
    (in ``crs``, default WGS 84), in a hidden folder beside the output that is removed afterwards. The
    flags (``mask_flags``, ``mask_bits``, ``mask_preset``, ``flag_variable``) mask the scenes as they are
    gridded."""
    import shutil
    import tempfile
    extent, cell = options.get("extent"), options.get("cell_size")
    if extent is None or cell is None:
        raise ParameterError("Swath scenes are gridded before they are composited: give the target EXTENT "
                             "(xmin, ymin, xmax, ymax) and CELL_SIZE (and TARGET_CRS, default EPSG:4326).")
    if isinstance(cell, (tuple, list)):
        cell = cell[0]
    crs = options.get("crs") or "EPSG:4326"
    options["crs"] = crs
    variables = options.pop("variables", None)
    flags = dict(mask_flags=options.pop("mask_flags", ()), flag_variable=options.pop("flag_variable", None),
                 mask_bits=options.pop("mask_bits", ()), mask_preset=options.pop("mask_preset", None))
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder {folder} does not exist.")
    work = tempfile.mkdtemp(prefix=".tilewise-swath-", dir=folder)
    try:
        xmin, ymin, xmax, ymax = extent
        gridded = swath_to_grid(inputs, work, variables, crs, (xmin, ymin, xmax, ymax), float(cell), **flags)
        return run(gridded, output, *args, **options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def swath_series(inputs: Sequence[str], options: Optional[dict] = None) -> bool:
    """True when every input is a swath scene (a raster operation then grids them first). For rasters, the
    swath-only ``options`` are taken out if unset and refused if set."""
    from ...io.swath import looks_like_swath
    if bool(inputs) and all(looks_like_swath(str(p)) for p in inputs):
        return True
    for key in GRID_ONLY:
        if (options or {}).pop(key, None) not in (None, "", (), []):
            raise ParameterError(f"{key} applies to swath scenes (SAFE folders, netCDF on latitude/longitude "
                                 "grids); the inputs are rasters.")
    return False

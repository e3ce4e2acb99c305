"""Where each chip lies: a feature's box or patch on the output grid, the chips' file names, the output folder.

Pure functions of plain values (numpy, shapely), no raster I/O:

- :func:`chip_windows`: one pixel window ``(row, col, height, width)`` per feature on the lattice of
  the output grid (it may reach past the rasters: those pixels are nodata). MODE ``box``: every pixel
  that the feature's bounding box, grown by BUFFER, touches; a point with no buffer is its own
  pixel. MODE ``patch``: SIZE_X x SIZE_Y pixels whose centre pixel (``SIZE // 2`` from the top-left)
  is the one holding the feature's centre (a point: itself, a multi-point: its centroid, lines and
  polygons: a point on them, shapely's ``point_on_surface``).
- :func:`chip_names`: file names from the ID_FIELD values, safe and unique.
- :func:`check_folder`: OUTPUT_FOLDER never has a file of the user's replaced.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import shapely

from ...errors import OutputError, ParameterError
from ...kernels.footprints import KIND_EMPTY, KIND_POINT

log = logging.getLogger(__name__)

#: The file in OUTPUT_FOLDER listing the chips a run wrote (the next run may replace those, and only those).
MARKER = ".tilewise-chips.json"
#: The one file of FORMAT training.
TRAINING_FILE = "chips.nc"
#: Longest chip file name, without ``.nc``.
MAX_NAME = 120


def buffer_in_grid_units(buffer: float, units: str, crs_wkt: str, latitudes: np.ndarray) -> np.ndarray:
    """BUFFER in the output grid's units, per feature: ``(dx, dy)`` columns.

    ``grid``: as given. ``metres``: divided by the CRS's metres per unit on a projected grid; on a
    geographic grid, degrees at each feature's latitude (WGS 84's 111 320 m per degree of latitude,
    times the cosine of the latitude for longitude).

    >>> buffer_in_grid_units(1113.2, "metres", "EPSG:4326", np.array([0.0, 60.0])).round(4).tolist()
    [[0.01, 0.01], [0.02, 0.01]]
    """
    n = len(latitudes)
    if units == "grid" or buffer == 0:
        return np.full((n, 2), float(buffer))
    from rasterio.crs import CRS
    crs = CRS.from_user_input(crs_wkt) if crs_wkt else None
    if crs is not None and crs.is_geographic:
        dy = buffer / 111320.0
        cos = np.cos(np.radians(np.clip(latitudes, -89.0, 89.0)))
        return np.column_stack([dy / cos, np.full(n, dy)])
    factor = 1.0
    if crs is not None:
        try:
            factor = float(crs.linear_units_factor[1]) or 1.0
        except Exception:  # noqa: BLE001 - a CRS without linear units: taken as metres
            log.debug("The CRS %s has no linear units: the buffer is taken in metres", crs, exc_info=True)
            factor = 1.0
    return np.full((n, 2), buffer / factor)


def chip_windows(geoms: np.ndarray, transform: Sequence[float], mode: str, buffer: np.ndarray,
                 size: Tuple[int, int]) -> np.ndarray:
    """``(n, 4)`` int64 windows ``row, col, height, width`` on the lattice of ``transform`` (north-up),
    for geometries already in its CRS; empty geometries give height 0.

    >>> t = (10.0, 0.0, 0.0, 0.0, -10.0, 100.0)
    >>> chip_windows(np.array([shapely.Point(15, 85)]), t, "patch", np.zeros((1, 2)), (3, 3)).tolist()
    [[0, 0, 3, 3]]
    >>> chip_windows(np.array([shapely.box(12, 52, 38, 78)]), t, "box", np.full((1, 2), 10.0), (0, 0)).tolist()
    [[1, 0, 5, 5]]
    """
    a, _, c, _, e, f = transform[:6]
    out = np.zeros((len(geoms), 4), np.int64)
    empty = shapely.is_empty(geoms) | shapely.is_missing(geoms)
    if mode == "patch":
        centres = _centres(geoms, ~empty)
        x, y = shapely.get_x(centres), shapely.get_y(centres)
        with np.errstate(invalid="ignore"):
            col = np.floor((x - c) / a)
            row = np.floor((y - f) / e)
        sx, sy = size
        out[:, 0] = np.nan_to_num(row, nan=0).astype(np.int64) - sy // 2
        out[:, 1] = np.nan_to_num(col, nan=0).astype(np.int64) - sx // 2
        out[:, 2], out[:, 3] = sy, sx
    else:
        b = shapely.bounds(geoms)
        xmin, ymin = b[:, 0] - buffer[:, 0], b[:, 1] - buffer[:, 1]
        xmax, ymax = b[:, 2] + buffer[:, 0], b[:, 3] + buffer[:, 1]
        eps = 1e-6   # a millionth of a pixel: coordinates' rounding does not add a row
        with np.errstate(invalid="ignore"):
            c0 = np.floor((xmin - c) / a + eps)
            c1 = np.ceil((xmax - c) / a - eps)
            r0 = np.floor((ymax - f) / e + eps)
            r1 = np.ceil((ymin - f) / e - eps)
        c1, r1 = np.maximum(c1, c0 + 1), np.maximum(r1, r0 + 1)    # a point's own pixel at least
        ok = ~empty & np.isfinite(c0) & np.isfinite(r0) & np.isfinite(c1) & np.isfinite(r1)
        out[ok, 0], out[ok, 1] = r0[ok], c0[ok]
        out[ok, 2], out[ok, 3] = (r1 - r0)[ok], (c1 - c0)[ok]
    out[empty] = 0
    return out


def _centres(geoms: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each feature's centre: a point itself, a multi-point's centroid, a point on a line or polygon."""
    from ...kernels.footprints import kind_of
    out = np.full(len(geoms), None, dtype=object)
    kinds = kind_of(geoms)
    pts = present & (kinds == KIND_POINT)
    other = present & (kinds != KIND_POINT) & (kinds != KIND_EMPTY)
    out[pts] = shapely.centroid(geoms[pts])
    out[other] = shapely.point_on_surface(geoms[other])
    out[~(pts | other)] = shapely.Point()
    return out


def chip_names(ids: Sequence, fallback: str = "feature") -> List[str]:
    """A file name (without ``.nc``) per id: the id's text with only letters, digits, ``.``, ``_``
    and ``-`` (others become ``_``; no leading dot, so never ``..``), at most 120 characters (a longer
    one is cut and told apart by a hash); an empty id gives ``feature_<n>`` (its 0-based position);
    a name already taken, in any letter case, gets ``_2``, ``_3``...

    >>> chip_names(["a", "../x", "a/b", "", "A", None])
    ['a', 'x', 'a_b', 'feature_3', 'A_2', 'feature_5']
    """
    from ..stac.assets import layer_name
    out: List[str] = []
    taken: Dict[str, int] = {}
    for i, value in enumerate(ids):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()
        name = layer_name([text]) if text else ""
        if not text or (name == "item" and text != "item"):
            name = f"{fallback}_{i}"
        if len(name) > MAX_NAME:
            name = name[:MAX_NAME]
        base, k = name, 2
        while name.casefold() in taken or name.casefold() == MARKER.casefold():
            name = f"{base}_{k}"
            k += 1
        taken[name.casefold()] = i
        out.append(name)
    return out


def chip_file_names(base: str, fmt: str, time_keys: Sequence[str]) -> List[str]:
    """The files of one chip: ``<base>.nc``, or for GeoTIFF ``<base>_<date>.tif`` per date.

    >>> chip_file_names("a", "netcdf", ["2024-05-12"]), chip_file_names("a", "geotiff", ["2024-05-12", "2024-05-22"])
    (['a.nc'], ['a_2024-05-12.tif', 'a_2024-05-22.tif'])
    """
    return [f"{base}_{key}.tif" for key in time_keys] if fmt == "geotiff" else [base + ".nc"]


def check_folder(folder: str, files: Sequence[str]) -> Tuple[str, ...]:
    """Check that the chips can go into ``folder``: made if missing; a file that exists under a chip's
    name is replaced only if an earlier chips run wrote it (listed in the folder's :data:`MARKER`).
    Returns the files of the earlier run that this one does not write again (removed at the end)."""
    if not folder:
        raise OutputError("No output folder was given for the chips.")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"The output folder {folder} is a file; give a folder (new, or one of an earlier chips "
                          "run).")
    previous = read_marker(folder)
    clashes = [f for f in files if os.path.lexists(os.path.join(folder, f)) and f not in previous]
    if clashes:
        more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
        raise OutputError(f"The output folder {folder} already holds {clashes[0]}{more}, which Tilewise did not "
                          "write: it is not replaced. Choose an empty or new folder, or move those files away.")
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
        raise OutputError(f"Cannot write into {folder}: permission denied.")
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise OutputError(f"The folder {parent}, where the output folder would go, does not exist.")
    keep = set(files)
    return tuple(f for f in previous if f not in keep)


def read_marker(folder: str) -> Tuple[str, ...]:
    """The chip files an earlier run listed in ``folder`` (names only; none if there is no list)."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            listed = json.load(f).get("files", [])
    except (OSError, ValueError, AttributeError):
        return ()
    return tuple(n for n in listed if isinstance(n, str) and n and os.path.basename(n) == n
                 and n not in (".", ".."))


def write_marker(folder: str, files: Sequence[str]) -> None:
    """List the chip files of this run in ``folder`` (written atomically)."""
    from ...io.atomic import atomic_write
    with atomic_write(os.path.join(folder, MARKER)) as f:
        json.dump({"tilewise_chips": 1, "files": list(files)}, f)


def chip_bytes(windows: np.ndarray, layers: int, itemsize: int) -> np.ndarray:
    """Bytes of each chip in memory: every date and band of its window."""
    return windows[:, 2].astype(np.int64) * windows[:, 3] * layers * itemsize


def describe_ids(ids: Sequence, picks: np.ndarray, limit: int = 5) -> str:
    """``"3, 7, 12..."``: the ids of the features ``picks``, the first ``limit`` of them."""
    shown = ", ".join(str(ids[i]) for i in picks[:limit])
    return shown + ("..." if len(picks) > limit else "")


def parse_size(value: Optional[int], what: str) -> int:
    """A patch side: a whole number of pixels, at least 1."""
    try:
        n = int(value)   # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(f"{what} is a number of pixels, got {value!r}.") from None
    if n != value and not (isinstance(value, float) and value.is_integer()) and not isinstance(value, str):
        raise ParameterError(f"{what} is a whole number of pixels, got {value!r}.")
    if n < 1:
        raise ParameterError(f"{what} must be at least 1 pixel, got {value!r}.")
    return n

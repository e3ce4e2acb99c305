"""Swath scenes onto a regular grid: GDAL's geolocation warping through the scene's latitude/longitude.

:func:`warp_swath` resamples variables of one scene onto a target grid (any CRS) with GDAL's
geolocation-array transformer (``rasterio.warp.reproject`` with ``src_geoloc_array``: what
``gdalwarp -geoloc`` does), after unpacking and flag masking; pixels the swath does not cover, fill
values and flagged pixels are NaN; only the part of the scene around the grid is read and warped
(:func:`source_window`: the same values as the whole scene). :func:`swath_to_grid` writes each scene as a
float32 GeoTIFF on the grid, one task per scene on the run's executor (local workers, Dask), which every
raster operation then takes: :func:`accepts_swaths` decorates the operations on a series (the composites,
gap filling, the mosaic) so that they grid swath scenes first.

>>> swath_to_grid(["S3A_OL_2_WFR____20240514T134512_..._003.SEN3"], "grids", variables="CHL_NN",
...               crs="EPSG:4326", bounds=(-60.2, -3.4, -59.8, -3.0), cell_size=0.003)   # doctest: +SKIP
['grids/S3A_OL_2_WFR____20240514T134512_..._003.tif']
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union, cast

import numpy as np

from ...errors import InputError, OutputError, ParameterError, TilewiseError, TilewiseWarning
from ...logs import lines_to
from ...io.atomic import atomic_write
from ...io.names import expand_pattern, is_pattern
from ...io.swath import SwathScene, open_swath, read_geolocation, read_raw, unpack
from ...options import RunOptions
from .flags import FlagRequest, SceneFlags, flag_request, resolve_flags

RESAMPLINGS = ("nearest", "bilinear")
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def warp_swath(scene: SwathScene, variables: Sequence[str], crs: str, transform: Tuple[float, ...], width: int,
               height: int, resampling: str = "nearest", flags: Union[FlagRequest, SceneFlags, None] = None
               ) -> np.ndarray:
    """``(variables, height, width)`` float64 values of ``scene`` on the grid; NaN where there are none."""
    return _warped(scene, variables, crs, transform, width, height, resampling, flags)[0]


def _warped(scene: SwathScene, variables: Sequence[str], crs: str, transform: Tuple[float, ...], width: int,
            height: int, resampling: str = "nearest", flags: Union[FlagRequest, SceneFlags, None] = None
            ) -> Tuple[np.ndarray, bool]:
    """:func:`warp_swath`'s values, and whether the scene reaches the grid at all. Only the part of the scene
    around the grid is read and warped (:func:`source_window`): GDAL's transformer gives the same values
    as from the whole scene (tested), for a fraction of the time when the grid is small."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window
    if resampling not in RESAMPLINGS:
        raise ParameterError(f"Swath scenes are resampled with {' or '.join(RESAMPLINGS)}, not {resampling!r}.")
    out = np.full((len(variables), height, width), np.nan)
    lat, lon = read_geolocation(scene)
    xmin, ymax = transform[2], transform[5]
    bounds = (xmin, ymax + height * transform[4], xmin + width * transform[0], ymax)
    box = _lonlat_box(crs, bounds)
    window = source_window(lat, lon, crs, bounds, box=box)
    if window is None:
        return out, False
    rows, cols = window
    # GDAL's transformer needs finite geolocation without jumps: longitudes across the antimeridian taken
    # around one (179, 181), fill-valued pixels (the swath's edges) given positions extrapolated along their
    # row (over the whole scene: as if it were warped whole), and no value
    bad = ~np.isfinite(lat) | ~np.isfinite(lon)
    lon = _continuous(lon)
    if bad[rows, cols].any():
        lat, lon = _extrapolated(lat, bad), _extrapolated(lon, bad)
    lat, lon, bad = lat[rows, cols], _towards(lon[rows, cols], box), bad[rows, cols]
    part = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    masked = None
    if isinstance(flags, FlagRequest):
        flags = None if flags.empty else resolve_flags(flags, scene)
    if flags is not None:
        masked = flags.masked(read_raw(flags.variable, part))
    geoloc, geoloc_crs = _geoloc_arrays(lat, lon)
    for i, name in enumerate(variables):
        values = unpack(read_raw(scene.variable(name), part), scene.variable(name))
        if masked is not None:
            values[masked] = np.nan
        values[bad] = np.nan
        reproject(values, out[i], src_geoloc_array=geoloc,
                  src_crs=CRS.from_user_input(geoloc_crs), src_nodata=np.nan, dst_crs=CRS.from_user_input(crs),
                  dst_transform=Affine(*transform[:6]), dst_nodata=np.nan, resampling=getattr(Resampling, resampling))
    return out, True


#: Source pixels kept around the part of a scene that falls in the grid's extent (GDAL's warper looks a
#: few pixels beyond a destination pixel's source position).
WINDOW_PAD = 8


def source_window(lat: np.ndarray, lon: np.ndarray, crs: str, bounds: Tuple[float, float, float, float],
                  pad: int = WINDOW_PAD, *, box: Optional[Tuple[float, float, float, float]] = None
                  ) -> Optional[Tuple[slice, slice]]:
    """The rows and columns of a scene (``lat``, ``lon``: degrees, NaN where missing) that hold the pixels
    within ``bounds`` (xmin, ymin, xmax, ymax in ``crs``) taken as a latitude/longitude box, widened by three
    pixels, and then by ``pad`` pixels; None when no pixel of the scene is near. ``box``: those bounds in
    degrees already (:func:`_lonlat_box`).

    >>> lat, lon = np.meshgrid(np.arange(10.0), np.arange(20.0), indexing="ij")
    >>> source_window(lat, lon, "EPSG:4326", (5.0, 2.0, 7.0, 3.0), pad=0)
    (slice(0, 7, None), slice(2, 11, None))
    >>> source_window(lat, lon, "EPSG:4326", (50.0, 2.0, 60.0, 3.0)) is None
    True
    """
    from ...kernels.swath import pixel_spacing
    box = box or _lonlat_box(crs, bounds)
    h, w = lat.shape
    step = max(v for v in (*pixel_spacing(lat, lon), 0.0) if np.isfinite(v)) / 111195.0
    # every WINDOW_STRIDE-th pixel first, with a margin that reaches the pixels between them; then every
    # pixel of the part it finds (the whole scene if it finds none)
    k = WINDOW_STRIDE
    coarse = _near_box(lat[::k, ::k], lon[::k, ::k], box, (3.0 + 3.0 * k) * step)
    r0, c0 = 0, 0
    if coarse.any():
        rows, cols = np.flatnonzero(coarse.any(axis=1)), np.flatnonzero(coarse.any(axis=0))
        r0, c0 = max(int(rows[0]) * k - k, 0), max(int(cols[0]) * k - k, 0)
        lat, lon = lat[r0:int(rows[-1]) * k + k + 1, c0:int(cols[-1]) * k + k + 1], \
            lon[r0:int(rows[-1]) * k + k + 1, c0:int(cols[-1]) * k + k + 1]
    inside = _near_box(lat, lon, box, 3.0 * step)
    rows = np.flatnonzero(inside.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(inside[rows[0]:rows[-1] + 1].any(axis=0))
    return (slice(max(r0 + int(rows[0]) - pad, 0), min(r0 + int(rows[-1]) + pad + 1, h)),
            slice(max(c0 + int(cols[0]) - pad, 0), min(c0 + int(cols[-1]) + pad + 1, w)))


#: The stride of the first look for the pixels near the extent (:func:`source_window`).
WINDOW_STRIDE = 8


def _near_box(lat: np.ndarray, lon: np.ndarray, box: Tuple[float, float, float, float], margin: float
              ) -> np.ndarray:
    """True for the pixels within ``margin`` degrees of the (west, south, east, north) ``box`` (False for NaN)."""
    west, south, east, north = box
    width = east - west if east >= west else east - west + 360.0
    south, north = south - margin, north + margin
    inside = (lat >= south) & (lat <= north)
    reach = max(abs(south), abs(north))
    if reach < 89.0:
        slack = margin / math.cos(math.radians(reach))
        if width + 2.0 * slack < 360.0:
            inside &= (lon - (west - slack)) % 360.0 <= width + 2.0 * slack
    return inside


def _lonlat_box(crs: str, bounds: Tuple[float, float, float, float]) -> Tuple[float, float, float, float]:
    """``bounds`` in ``crs`` as (west, south, east, north) degrees (west > east across the antimeridian; the
    whole longitude range around a pole); the whole globe if GDAL cannot transform them."""
    from rasterio.warp import transform_bounds
    try:
        return tuple(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))  # type: ignore[return-value]
    except Exception:   # noqa: BLE001 - any CRS GDAL cannot turn into degrees: the whole scene is warped
        return (-180.0, -90.0, 180.0, 90.0)


#: Polar stereographic CRSs for the geolocation of a part of a scene around a pole (north, south).
POLAR_CRS = {1: "EPSG:3413", -1: "EPSG:3031"}


def _geoloc_arrays(lat: np.ndarray, lon: np.ndarray) -> Tuple[np.ndarray, str]:
    """GDAL's geolocation arrays (x, y) and their CRS: longitude/latitude, or, for a part of a scene whose
    longitudes go all around (it holds a pole, where longitude has no meaning), polar stereographic
    metres, in which the swath is a smooth grid again."""
    finite = np.isfinite(lon)
    if not finite.any() or np.ptp(lon[finite]) <= 180.0:
        return np.stack([lon, lat]), "EPSG:4326"
    from rasterio.warp import transform
    pole = 1 if np.nanmean(lat) > 0 else -1
    x, y = transform("EPSG:4326", POLAR_CRS[pole], lon.ravel(), np.clip(lat, -90.0, 90.0).ravel())
    return np.stack([np.reshape(x, lat.shape), np.reshape(y, lat.shape)]), POLAR_CRS[pole]


def _towards(lon: np.ndarray, box: Tuple[float, float, float, float]) -> np.ndarray:
    """``lon`` moved by whole turns (exactly: +-360) to lie around the longitude of the centre of the grid's
    ``box`` (:func:`_lonlat_box`): a scene across the antimeridian taken as 179..181 reaches a grid at -179.9
    as -180.1. Unchanged otherwise."""
    west, _, east, _ = box
    width = east - west if east >= west else east - west + 360.0
    if width >= 180.0:   # every longitude (a polar grid) or half of them: nothing to choose
        return lon
    centre = west + width / 2.0
    finite = lon[np.isfinite(lon)]
    turns = round((centre - float(np.median(finite))) / 360.0) if len(finite) else 0
    return lon + 360.0 * turns if turns else lon


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
                  mask_preset: Any = None, flag_variable: Optional[str] = None, reuse: bool = False,
                  run: Optional[RunOptions] = None) -> List[str]:
    """Write each swath scene of ``inputs`` as a float32 GeoTIFF (one band per variable, NaN no data) on the
    grid of ``crs``, ``bounds`` (xmin, ymin, xmax, ymax) and ``cell_size``, into ``folder``; return the paths
    (named after the scenes; ``_2``, ``_3``... for scenes of the same name). With ``reuse``, a scene gridded
    there before with the same files, variables, grid and flags is not gridded again (a resumed run).

    The scenes are gridded one task each (:func:`grid_scene`) where ``run`` says (its ``executor``,
    ``scheduler`` or ``workers``: all local cores by default), with ``run.progress(done, total)`` after each;
    a scene that reaches no cell of the grid is written without values, with a warning naming it."""
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
    paths: List[str] = []
    tasks: List[tuple] = []
    for p in inputs:
        scene = open_swath(str(p))
        names = [scene.variable(v).name for v in variables] if variables else [v.name for v in scene.measured()]
        stem = os.path.splitext(scene.name)[0]
        out = os.path.join(folder, stem + ".tif")
        k = 1
        while out in paths:
            k += 1
            out = os.path.join(folder, f"{stem}_{k}.tif")
        stamp = _stamp(scene, names, crs, transform, width, height, resampling, flags)
        if not (reuse and _stamped(out, stamp)):   # flags resolved here: their warnings reach the caller
            scene_flags = None if flags.empty else resolve_flags(flags, scene)
            tasks.append((scene, out, names, crs, transform, width, height, resampling, scene_flags, stamp))
        paths.append(out)
    for source in _grid_tasks(tasks, folder, run or RunOptions(), len(paths)):
        warnings.warn(TilewiseWarning(f"The swath scene {source} covers no part of the extent {tuple(bounds)}: "
                                      "it adds no value (it is gridded empty)."), stacklevel=2)
    return paths


def _grid_tasks(tasks: List[tuple], folder: str, run: RunOptions, total: int) -> List[str]:
    """Run the :func:`grid_scene` ``tasks`` on the executor ``run`` names (local workers sized by the tasks);
    return the scenes that cover no cell, in the order of ``tasks``."""
    from ...runtime.executor import connect, local_executor
    from ...runtime.runner import run_tasks
    done = total - len(tasks)
    if run.progress:
        run.progress(done, total)
    if not tasks:
        return []
    executor = None
    empty: Dict[int, str] = {}
    with lines_to(run.log):
        try:
            executor = connect(run) or local_executor(run, len(tasks))
            executor.check_workdir(folder)
            log.info(f"Gridding {len(tasks)} swath scene(s) on {executor.describe()}")
            order = {task[1]: i for i, task in enumerate(tasks)}
            for out, covered in run_tasks(executor, grid_scene, tasks, run.progress, done, total):
                if not covered:
                    empty[order[out]] = tasks[order[out]][0].source
        finally:
            if executor is not None and run.executor is None:   # made here (local workers, or a connection)
                executor.close()
    return [empty[i] for i in sorted(empty)]


def grid_scene(scene: SwathScene, out: str, names: Sequence[str], crs: str, transform: Tuple[float, ...],
               width: int, height: int, resampling: str, flags: Optional[SceneFlags], stamp: str
               ) -> Tuple[str, bool]:
    """One task of :func:`swath_to_grid` (in a worker): ``scene`` warped onto the grid and written to ``out``,
    then its ``stamp`` beside it (a resumed run keeps what has one). Returns ``out`` and whether the scene
    reaches the grid."""
    data, covered = _warped(scene, names, crs, transform, width, height, resampling, flags)
    _write_grid(out, data, names, crs, transform, scene.start_time)
    with atomic_write(out + ".json") as f:
        f.write(stamp)
    return out, covered


def _write_grid(out: str, data: np.ndarray, names: Sequence[str], crs: str, transform: Tuple[float, ...],
                start_time: Optional[str]) -> None:
    import rasterio
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=len(names), dtype="float32",
                   crs=crs, transform=rasterio.Affine(*transform), nodata=np.nan, compress="deflate", tiled=True)
    tmp = out + ".part.tif"
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
        if start_time:
            dst.update_tags(ACQUISITIONDATETIME=start_time)
    os.replace(tmp, out)


def _stamp(scene: SwathScene, names: Sequence[str], *grid: Any) -> str:
    """What a gridded scene was made of: the scene's files (size and time), its variables, the grid and flags."""
    import json
    files = [[f, os.stat(f).st_size, os.stat(f).st_mtime_ns] for f in scene.files if os.path.exists(f)]
    return json.dumps({"scene": scene.source, "files": files, "variables": list(names), "grid": repr(grid)})


def _stamped(out: str, stamp: str) -> bool:
    try:
        with open(out + ".json", encoding="utf-8") as f:
            return f.read() == stamp and os.path.isfile(out)
    except OSError:
        return False


#: Options of a raster operation that only swath scenes take (popped before the operation sees them).
GRID_ONLY = ("variables", "mask_flags", "flag_variable")


def accepts_swaths(what: str, one_variable: bool = False, folders: bool = True) -> Callable[[F], F]:
    """Decorator: the raster operation ``op(inputs, output, *args, **options)`` also takes swath scenes (SAFE
    folders, their manifests, netCDF on latitude/longitude grids). They are gridded first
    (:func:`grid_swaths`), then ``op`` runs on the gridded series; a series that mixes swaths and rasters,
    and swath-only options on rasters, are refused. ``what`` names the operation in messages;
    ``one_variable``: it takes one band, so one variable must be named; ``folders``: whether any folder is
    a swath input (``False`` for operations that take folders of rasters: only SAFE folders are then)."""
    def decorate(operation: F) -> F:
        @functools.wraps(operation)
        def run(inputs: Sequence[str], output: str, *args: Any, **options: Any):
            scenes = expand_patterns(inputs)
            unmatched = [s for s in scenes if is_pattern(s)]
            if unmatched and any(options.get(k) not in (None, "", (), []) for k in GRID_ONLY):
                raise InputError(f"No file matches {unmatched[0]}.")   # what the mosaic says of it
            if not swath_series(scenes, options, folders):
                return operation(inputs, output, *args, **options)
            inputs = scenes
            if one_variable and len(_variable_list(options.get("variables"))) != 1:
                raise ParameterError(f"{what[:1].upper()}{what[1:]} of swath scenes takes one variable: name it "
                                     "in VARIABLES (--variables), e.g. CHL_NN.")
            return grid_swaths(operation, what, inputs, output, *args, **options)
        return cast(F, run)
    return decorate


def expand_patterns(inputs: Sequence[str]) -> List[str]:
    """``inputs`` with their glob patterns expanded as the mosaic expands them (sorted, ``**`` across
    folders): ``S3*.SEN3`` given from Python is then the SAFE folders it matches. A pattern that matches
    nothing, a URL and a path that exists (``a[1].tif``) stay as they are.

    >>> expand_patterns(["no/such/*.SEN3", "https://host/a?.tif"])
    ['no/such/*.SEN3', 'https://host/a?.tif']
    """
    out: List[str] = []
    for p in [inputs] if isinstance(inputs, str) else inputs or ():
        p = os.fspath(p) if isinstance(p, os.PathLike) else p
        out.extend(expand_pattern(p, recursive=True) if isinstance(p, str) else [p])
    return out


def _variable_list(variables: Any) -> List[str]:
    if not variables:
        return []
    if isinstance(variables, str):
        variables = variables.replace(";", ",").split(",")
    return [str(v).strip() for v in variables if str(v).strip()]


def grid_swaths(run: Callable[..., Any], what: str, inputs: Sequence[str], output: str, *args: Any,
                **options: Any) -> Any:
    """``run(gridded, output, *args, **options)`` (a raster operation) on the swath scenes of ``inputs``
    gridded first (:func:`swath_to_grid`: a task per scene where the run's tiles run, its ``progress`` the
    first half of the run's) onto the grid of ``extent`` and ``cell_size`` (in ``crs``, default
    WGS 84), in a hidden folder beside the output that is removed afterwards (with ``resume``, only once the
    run succeeds: a resumed run grids only the scenes not gridded yet, and its tiles are reused). The flags
    (``mask_flags``, ``mask_bits``, ``mask_preset``, ``flag_variable``) mask the scenes as they are gridded.
    Messages and warnings of the run name the scenes, not the gridded files."""
    import shutil
    import tempfile
    extent, cell = options.get("extent"), options.get("cell_size")
    if extent is None or cell is None:
        raise ParameterError(f"Swath scenes are gridded before {what}: give the target EXTENT "
                             "(xmin, ymin, xmax, ymax) and CELL_SIZE (and TARGET_CRS, default EPSG:4326).")
    if isinstance(cell, (tuple, list)):
        cell = cell[0]
    crs = options.get("crs") or "EPSG:4326"
    options["crs"] = crs
    variables = _variable_list(options.pop("variables", None)) or None
    flags = dict(mask_flags=options.pop("mask_flags", ()), flag_variable=options.pop("flag_variable", None),
                 mask_bits=options.pop("mask_bits", ()), mask_preset=options.pop("mask_preset", None))
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder {folder} does not exist.")
    resume = bool(options.get("resume"))
    if resume:   # one folder per output, kept until the run succeeds: a resumed run reuses its scenes
        work = os.path.join(folder, f".tilewise-swath-{os.path.basename(os.path.abspath(output))}")
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix=".tilewise-swath-", dir=folder)
    done = False
    run_options, progress = _staged_progress(options)
    try:
        xmin, ymin, xmax, ymax = extent
        gridded = swath_to_grid(inputs, work, variables, crs, (xmin, ymin, xmax, ymax), float(cell), reuse=resume,
                                run=run_options, **flags)
        if progress is not None:    # the operation's progress is the second half of the run's
            options["progress"] = lambda done, total: progress(total + done, 2 * total)
        names = dict(zip(gridded, (str(p) for p in inputs)))
        with _naming_scenes(names, options):
            result = run(gridded, output, *args, **options)
        done = True
        return result
    finally:
        if done or not resume:
            shutil.rmtree(work, ignore_errors=True)


def _staged_progress(options: Dict[str, Any]) -> Tuple[RunOptions, Optional[Callable[[int, int], None]]]:
    """The run options of the operation's ``options`` for gridding its scenes (where and how its tiles run),
    with a ``progress`` that reports the gridding as the first half of the run; and that callback."""
    from dataclasses import fields
    given = {f.name: options[f.name] for f in fields(RunOptions) if f.name in options}
    progress = given.get("progress")
    if progress is not None:
        given["progress"] = lambda done, total: progress(done, 2 * total)
    return RunOptions(**given), progress


@contextlib.contextmanager
def _naming_scenes(names: Dict[str, str], options: Dict[str, Any]) -> Iterator[None]:
    """Errors, warnings and log lines (the ``log`` callback of ``options``, the ``tilewise`` logger's handlers)
    that name a gridded file name its scene instead (the gridded file is gone after the run: the scene is what
    the user gave)."""
    import logging

    def renamed(text: str) -> str:
        for gridded, scene in names.items():     # the path, then the file name alone
            text = text.replace(gridded, scene).replace(os.path.basename(gridded), scene)
        return text

    class Renaming(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            if renamed(message) != message:
                record.msg, record.args = renamed(message), ()
            return True

    send = options.get("log")
    if callable(send):
        options["log"] = lambda line: send(renamed(line))
    handlers, renaming = list(logging.getLogger("tilewise").handlers), Renaming()
    for handler in handlers:
        handler.addFilter(renaming)
    caught: List[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except TilewiseError as exc:
                message = renamed(str(exc))
                if message == str(exc):
                    raise
                raise type(exc)(message) from None
    finally:   # outside the block: a warning shown inside it would be recorded again
        for handler in handlers:
            handler.removeFilter(renaming)
        if callable(send):
            options["log"] = send
        for w in caught:
            warnings.warn_explicit(type(w.message)(renamed(str(w.message))), w.category, w.filename, w.lineno)


def swath_series(inputs: Sequence[str], options: Optional[dict] = None, folders: bool = True) -> bool:
    """True when every input is a swath scene (a raster operation then grids them first); a series that
    mixes swaths and rasters is refused. For rasters, the swath-only ``options`` are taken out if unset and
    refused if set. ``folders``: any folder counts as a (possibly broken) swath input, else only SAFE ones."""
    from ...io.swath import MANIFEST, looks_like_swath, safe_folder

    def swath(p: str) -> bool:
        if folders or not os.path.isdir(p):
            return looks_like_swath(p)
        return safe_folder(p) is not None or os.path.basename(p.rstrip("/\\")).lower() == MANIFEST

    kinds = [swath(str(p)) for p in inputs or ()]
    if any(kinds) and not all(kinds):
        scene = next(p for p, k in zip(inputs, kinds) if k)
        raster = next(p for p, k in zip(inputs, kinds) if not k)
        raise InputError(f"The inputs mix swath scenes ({scene}) and rasters with a geotransform ({raster}): "
                         "give one kind per run (swath scenes are gridded onto EXTENT and CELL_SIZE first).")
    if kinds and all(kinds):
        return True
    for key in GRID_ONLY:
        if (options or {}).pop(key, None) not in (None, "", (), []):
            raise ParameterError(f"{key} applies to swath scenes (SAFE folders, netCDF on latitude/longitude "
                                 "grids); the inputs are rasters.")
    return False


def refuse_swaths(paths: Sequence[str], what: str) -> None:
    """One clear message for a swath scene given to an operation that reads bands of rasters by number
    (band math, the indices): it names the scene and how to grid it first."""
    from ...io.swath import looks_like_swath, safe_folder
    for p in dict.fromkeys(str(p) for p in paths):
        if safe_folder(p) is not None or (not os.path.isdir(p) and looks_like_swath(p)):
            raise InputError(f"{p} is a swath scene (on a latitude/longitude grid, without a geotransform); {what} "
                             "reads bands of rasters. Grid it first: a composite of that one scene with "
                             "VARIABLES (e.g. Oa08_reflectance,Oa17_reflectance), EXTENT and CELL_SIZE writes them "
                             "as the bands of a raster on the grid (tilewise composite --variables ... --extent "
                             "... --cell-size ...), which it then takes.")

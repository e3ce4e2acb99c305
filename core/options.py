"""The options every operation shares, defined once: the target grid, the output, the run.

An operation's API function takes its own parameters and ``**options``;
:func:`split_options` sorts those keywords into the operation's own options
value and these shared ones (an unknown keyword is a ``TypeError``, as for any
Python function):

- :class:`GridOptions` (``reference``, ``extent``, ``crs``, ``cell_size``,
  ``resampling``) and :func:`plan_grid`, the one planner of the target grid;
- :class:`OutputOptions` (``output_type``, ``output_nodata``, ``compression``,
  ``overview_resampling``, ``allow_large``), resolved with the output's path into
  an :class:`OutputSpec`;
- :class:`RunOptions` (``tile_size``, ``workers``, ``executor``, ``scheduler``,
  ``resume``, ``keep_workdir``, ``wait_if_busy``, ``progress``, ``log``): where and how the tiles run,
  resolved in one place (:func:`tilewise.core.runtime.executor.connect`).

The command line (:mod:`tilewise.core.cli.options`) and QGIS
(:mod:`tilewise.algorithms.parameters`) give the same keywords.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np

from .errors import GridError, OutputError, ParameterError
from .logs import LogFn
from .grid import Grid, check_tile_size, grid_from_extent, parse_cell_size, snap_extent
from .paths import geotiff_path
from .vocabulary import COMPRESSIONS, OUTPUT_TYPES, OVERVIEW_RESAMPLINGS, RESAMPLING_METHODS

if TYPE_CHECKING:  # pragma: no cover
    from rasterio.crs import CRS

    from .io.sources import RasterInfo

Extent = Tuple[float, float, float, float]
ProgressFn = Callable[[int, int], None]
T = TypeVar("T")


def _choice(value: str, names: Sequence[str], what: str) -> str:
    if value not in names:
        raise ParameterError(f"Unknown {what} {value!r}; use one of {', '.join(names)}.")
    return value


# -- the target grid -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridOptions:
    """The output grid: the ``reference`` raster's (by default the operation's first input), changed by
    whichever of ``extent`` (in the target CRS), ``crs`` and ``cell_size`` are given; ``resampling`` of
    the inputs on another grid."""

    reference: Optional[str] = None
    extent: Optional[Sequence[float]] = None
    crs: Optional[str] = None
    cell_size: Optional[object] = None
    resampling: str = RESAMPLING_METHODS[0]

    def __post_init__(self) -> None:
        _choice(self.resampling, RESAMPLING_METHODS, "resampling method")


def parse_crs(value: Optional[str]) -> Optional["CRS"]:
    """``"EPSG:32633"``, a WKT or PROJ string, or None."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    if not value:
        return None
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise GridError(f"Unknown target CRS {value!r}: {exc}") from None


def plan_grid(reference: "RasterInfo", grid: GridOptions) -> Grid:
    """The target grid: the ``reference`` raster's grid, changed by whichever of ``grid.extent``,
    ``grid.crs`` and ``grid.cell_size`` are given.

    With the reference CRS and cell size kept, an extent is snapped outward to
    the reference pixels, so inputs on the reference grid are not resampled.
    """
    from rasterio.warp import calculate_default_transform
    ref_crs = parse_crs(reference.crs)
    target_crs = parse_crs(grid.crs) or ref_crs
    res = parse_cell_size(grid.cell_size)
    a, b, c, d, e, f = reference.transform
    if b or d:
        raise GridError(f"The reference raster {reference.path} is rotated; pick a north-up reference layer.")
    ref_extent = (c, f + e * reference.height, c + a * reference.width, f) if e < 0 else \
        (c, f, c + a * reference.width, f + e * reference.height)
    crs_text = target_crs.to_wkt() if target_crs else ""
    if target_crs == ref_crs or ref_crs is None:
        if grid.extent is None and res is None:
            return Grid(crs_text, (a, 0.0, c, 0.0, -abs(e), ref_extent[3]), reference.width, reference.height)
        box = _extent(grid.extent) if grid.extent is not None else ref_extent
        if res is None:
            res = (abs(a), abs(e))
            box = snap_extent(box, (c, ref_extent[3]), res)
        return grid_from_extent(crs_text, box, res)
    transform, width, height = calculate_default_transform(
        ref_crs, target_crs, reference.width, reference.height, *ref_extent,
        resolution=res)
    if grid.extent is None:
        return Grid(crs_text, tuple(transform)[:6], width, height)  # type: ignore[arg-type]
    return grid_from_extent(crs_text, _extent(grid.extent), res or (abs(transform.a), abs(transform.e)))


def _extent(extent: Sequence[float]) -> Extent:
    if len(extent) != 4:
        raise GridError(f"An extent is four numbers xmin, ymin, xmax, ymax; got {list(extent)}.")
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    if xmax <= xmin or ymax <= ymin:
        raise GridError(f"The extent ({xmin}, {ymin}, {xmax}, {ymax}) is empty.")
    return (xmin, ymin, xmax, ymax)


# -- the output ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputSpec:
    """Where and how one output raster is written (:meth:`resolved`: checked, with its default nodata)."""

    path: str
    dtype: str = OUTPUT_TYPES[0]
    nodata: Optional[float] = None
    compression: str = COMPRESSIONS[0]
    overview_resampling: str = OVERVIEW_RESAMPLINGS[0]
    #: False: a COG without overviews
    overviews: bool = True

    def resolved(self) -> "OutputSpec":
        """Check values and fill the default nodata for the output type."""
        if not self.path:
            raise OutputError("No output file was given.")
        dtype = _choice(self.dtype.lower(), OUTPUT_TYPES, "output type")
        compression = _choice(self.compression.upper(), COMPRESSIONS, "compression")
        _choice(self.overview_resampling, OVERVIEW_RESAMPLINGS, "overview resampling")
        nodata = default_nodata(dtype) if self.nodata is None else float(self.nodata)
        if not nodata_fits(nodata, dtype):
            raise ParameterError(f"Output nodata {nodata:g} does not fit the output type {dtype}.")
        # the value the pixels hold (0.1 in float32 is 0.10000000149...): GDAL keeps a side-car
        # .aux.xml for a nodata that differs from what the file can store
        nodata = float(np.dtype(dtype).type(nodata))
        return OutputSpec(os.path.abspath(geotiff_path(self.path)), dtype, nodata, compression,
                          self.overview_resampling, bool(self.overviews))


def default_nodata(dtype: str) -> float:
    """-9999 where the type holds it, else the type's largest value.

    >>> default_nodata("float32"), default_nodata("uint8")
    (-9999.0, 255.0)
    """
    if dtype.startswith("float") or dtype in ("int16", "int32"):
        return -9999.0
    return float(np.iinfo(dtype).max)


def nodata_fits(value: float, dtype: str) -> bool:
    if dtype.startswith("float"):
        return math.isnan(value) or abs(value) <= float(np.finfo(dtype).max)
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


@dataclass(frozen=True)
class OutputOptions:
    """How the output raster is written; ``output_type`` None lets the operation choose (a mosaic: the
    inputs' type), ``output_nodata`` None the type's default (or the operation's); ``allow_large``
    confirms an output above :data:`~tilewise.core.io.coverage.LARGE_OUTPUT_BYTES`; ``overviews`` False
    writes the COG without overviews."""

    output_type: Optional[str] = OUTPUT_TYPES[0]
    output_nodata: Optional[float] = None
    compression: str = COMPRESSIONS[0]
    overview_resampling: str = OVERVIEW_RESAMPLINGS[0]
    allow_large: bool = False
    overviews: bool = True

    def spec(self, path: str, dtype: Optional[str] = None, nodata: Optional[float] = None) -> OutputSpec:
        """The resolved :class:`OutputSpec` of ``path``; ``dtype`` and ``nodata``: the operation's
        defaults where these options leave them open."""
        chosen = self.output_type or dtype or OUTPUT_TYPES[0]
        fill = self.output_nodata if self.output_nodata is not None else nodata
        return OutputSpec(path, chosen, fill, self.compression, self.overview_resampling,
                          self.overviews).resolved()


# -- the run ---------------------------------------------------------------------------------------------------

def check_workers(workers: Optional[int]) -> Optional[int]:
    """``None`` or ``0`` mean all cores; a negative number is an error."""
    if workers is not None and int(workers) < 0:
        raise ParameterError(f"The number of workers must be 0 (all cores) or a positive number, got {workers}.")
    return None if not workers else int(workers)


@dataclass(frozen=True)
class RunOptions:
    """Where and how the tiles run, and what the caller hears of it.

    ``tile_size``: tile side in pixels (None or 0: from the memory budget, or when resuming the
    interrupted run's). Where the tiles run: ``executor`` (an executor, or a
    ``dask.distributed.Client``), else a Dask cluster at ``scheduler`` (address, scheduler file,
    Client or cluster), else ``workers`` local processes (default all cores; never more than the
    cores or the tiles). ``resume``: reuse the finished tiles of an interrupted run of the same
    job, and keep them if this run stops too. ``keep_workdir``: keep the work folder after
    success. ``wait_if_busy``: when another run is writing the same output, wait for it to finish
    (else :class:`~tilewise.core.errors.OutputBusyError`). ``progress(done, total)``: a callback.
    ``log(message)``: a callback that hears the run's log lines too (the ``tilewise`` logger's records of
    level INFO and above, a warning as ``"Warning: ..."``: :mod:`tilewise.core.logs`).
    """

    tile_size: Optional[int] = None
    workers: Optional[int] = None
    executor: Any = None
    scheduler: Any = None
    resume: bool = False
    keep_workdir: bool = False
    wait_if_busy: bool = False
    progress: Optional[ProgressFn] = field(default=None, compare=False)
    log: Optional[LogFn] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile_size", check_tile_size(self.tile_size))
        object.__setattr__(self, "workers", check_workers(self.workers))
        if self.scheduler == "":
            object.__setattr__(self, "scheduler", None)


# -- sorting keywords ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    """The shared options of one call: grid, output, run."""

    grid: GridOptions = GridOptions()
    output: OutputOptions = OutputOptions()
    run: RunOptions = RunOptions()


_SHARED = (("grid", GridOptions), ("output", OutputOptions), ("run", RunOptions))


def split_options(options: Mapping[str, Any], own: Optional[Type[T]] = None, *, where: str = "the operation",
                  defaults: Optional[Mapping[str, Any]] = None, **given: Any) -> Tuple[Optional[T], Options]:
    """Sort keyword ``options`` into ``own`` (the operation's options class, with ``given``: its
    values passed as positional parameters) and the shared :class:`Options`.

    ``defaults``: the operation's own defaults for shared options (e.g. ``output_type=None``).
    """
    values: Dict[str, Any] = {**(defaults or {}), **options}
    taken: Dict[str, Dict[str, Any]] = {}
    for name, cls in _SHARED + ((("own", own),) if own is not None else ()):
        keys = {f.name for f in fields(cls)}
        taken[name] = {k: values.pop(k) for k in list(values) if k in keys}
    if values:
        raise TypeError(f"{where} got unexpected keyword argument(s): {', '.join(sorted(values))}")
    shared = Options(**{name: cls(**taken[name]) for name, cls in _SHARED})
    mine = own(**given, **taken["own"]) if own is not None else None
    return mine, shared

"""The gap-filling operation: a time series of rasters -> its gaps filled in time, on the tile runner.

The rules (methods, ``MAX_GAP``, edges, flags, target dates) are those of
:mod:`tilewise.core.kernels.gapfill_plan`; the per-pixel kernels are in
:mod:`tilewise.core.kernels.gapfill`. This module plans a run (dates, masks, grid,
outputs), computes one tile (read every date's window, mask it, fill it) and
names the outputs: one COG with one band per output date (band descriptions
are the ISO dates), or one COG per date in a folder, and optionally a flags COG
(uint8, the same bands: 0 observed, 1 interpolated, 2 seasonal, 3 edge-filled,
255 still missing). A tile holds every date of its pixels at once, so memory is
bounded by the tile size times the number of dates (the runner sizes the tiles
from :attr:`GapfillJob.budget`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..dates import DateLike, overridden_warnings, read_dates
from ..errors import InputError, OutputError, TileError, TilewiseError, TilewiseWarning
from ..grid import Grid, Tile
from ..io.cog import check_writable, to_output
from ..io.coverage import check_inputs_meet, check_output_size
from ..io.outputs import check_not_an_input, describe_inputs, output_folder
from ..io.sources import describe_raster, read_qa_mask, read_window
from ..masks import MaskSpec
from ..options import Options, OutputSpec, plan_grid, split_options
from ..logs import logging_to
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ..runtime.sinks import CogOutput, CogSink
from .series import choose_bands, plan_input_mask
from .swath.grid import accepts_swaths
from ..kernels.gapfill_plan import GapfillOptions, RegularDates, output_dates, plan_gapfill

_WIDE_TYPES = {"int32", "uint32", "int64", "uint64", "float64"}
FLAGS_TYPE = "uint8"
#: Output files in a folder (``per_date``): ``<prefix>_<YYYY-MM-DD>.tif``.
DEFAULT_PREFIX = "filled"


@dataclass(frozen=True)
class GapfillSettings:
    """Gap filling's own options (the grid, output and run options are shared: :mod:`tilewise.core.options`).

    The fill: ``method``, ``max_gap``, ``edges``, ``season_days``, ``years_window`` and
    ``target_dates`` (see :func:`~tilewise.core.kernels.gapfill_plan.plan_gapfill`). The inputs:
    ``dates`` (for inputs whose name and metadata have none; see :mod:`tilewise.core.dates`),
    ``band`` to fill (default the only band that is not the mask band), ``input_nodata``, and a
    QA mask as in the composite (``mask_band`` or ``mask_layers``; ``mask_values``, ``mask_bits``,
    ``mask_preset``). The outputs: ``per_date`` (``output`` is a folder that receives one COG per
    date, ``<prefix>_<date>.tif``), ``flags`` (the path of a flags COG, or empty for none).
    """

    method: Union[int, str] = "linear"
    max_gap: float = 0
    edges: Union[int, str] = "leave"
    season_days: float = 30
    years_window: int = 0
    target_dates: Union[None, str, RegularDates, Sequence[DateLike]] = None
    dates: Union[None, str, Sequence[DateLike]] = None
    band: Optional[int] = None
    input_nodata: Optional[float] = None
    mask_band: Optional[int] = None
    mask_layers: Optional[Sequence[str]] = None
    mask_values: Union[str, Sequence[int]] = ()
    mask_bits: Union[str, Sequence[int]] = ()
    mask_preset: Optional[Union[int, str]] = None
    per_date: bool = False
    prefix: str = DEFAULT_PREFIX
    flags: Optional[str] = None


@dataclass(frozen=True)
class GapfillJob(TiledJob):
    """Everything a worker needs to fill one tile; plain values only. ``days``: the day number of each
    input (input order); ``outputs``: one COG of every target date, or one per date (in ``folder``);
    ``flags``: the flags COG, if any."""

    inputs: Tuple[str, ...]
    days: Tuple[float, ...]
    fill: GapfillOptions
    band: int
    input_nodata: Optional[float]
    mask: Optional[MaskSpec]
    grid: Grid
    resampling: str
    work_dtype: str
    outputs: Tuple[OutputSpec, ...]
    band_names: Tuple[str, ...]
    flags: Optional[OutputSpec] = None
    folder: str = ""

    @property
    def sink(self) -> CogSink:
        flags = (CogOutput(self.flags, self.band_names, layer=1),) if self.flags is not None else ()
        return CogSink.per_band(self.grid, self.outputs, self.band_names, self.folder, flags)

    @property
    def budget(self) -> TileBudget:
        # the stack, the filled values and their cast to the output type, the flags (a quarter), the mask
        n_t = len(self.band_names)
        return TileBudget(len(self.inputs) + 2 * n_t + (n_t + 3) // 4 + 1, 8 if self.work_dtype == "float64" else 4)


def plan_run(inputs: Sequence[str], output: str, own: GapfillSettings = GapfillSettings(),
             options: Optional[Options] = None) -> GapfillJob:
    """Check every parameter and input, read the dates, plan the grid and the outputs; raise a
    :class:`TilewiseError` on the first problem. Nothing is written here, except the output folder
    (``per_date``), which is removed again if planning fails and it was made here."""
    options = options if options is not None else Options()
    if not inputs:
        raise InputError("No input rasters were given; gap filling needs a time series.")
    fill = plan_gapfill(own.method, own.max_gap, own.edges, own.season_days, own.years_window, own.target_dates)
    days, undated = _series_days(inputs, own.dates, fill)
    infos = [describe_raster(p) for p in inputs]
    mask_infos = [describe_raster(m) for m in own.mask_layers or ()]
    band = _choose_band(infos, own.band, own.mask_band)
    mask = plan_input_mask(infos, mask_infos, own)
    grid_options = options.grid
    ref = describe_raster(grid_options.reference) if grid_options.reference else infos[0]
    grid = plan_grid(ref, grid_options)
    check_inputs_meet(infos, grid)
    work = "float64" if any(info.dtypes[band - 1] in _WIDE_TYPES for info in infos) else "float32"
    targets = output_dates(fill, np.asarray(days))
    names = tuple(f"step {int(d) + 1}" for d in np.sort(days)) if undated else tuple(d.isoformat() for d in targets)
    read = describe_inputs(infos + mask_infos + [ref])
    flags = _flags_spec(own, options, read)
    dtype = options.output.output_type or work
    check_output_size(grid, len(names), dtype, options.output.allow_large)
    job = GapfillJob(tuple(inputs), tuple(float(d) for d in days), fill, band, own.input_nodata, mask, grid,
                     grid_options.resampling, work, (), names, flags)
    if not own.per_date:
        spec = options.output.spec(output, work)
        _check_output(spec.path, read, flags)
        return replace(job, outputs=(spec,))
    with output_folder(output) as made:
        prefix = own.prefix or DEFAULT_PREFIX
        specs = tuple(options.output.spec(os.path.join(made, f"{prefix}_{name.replace(' ', '_')}.tif"), work)
                      for name in names)
        for spec in specs:
            _check_output(spec.path, read, flags)
    return replace(job, outputs=specs, folder=os.path.abspath(output))


def _series_days(inputs: Sequence[str], dates, fill: GapfillOptions) -> Tuple[np.ndarray, bool]:
    """The inputs' day numbers (input order) and whether the series is undated (then 0, 1, 2...)."""
    series = read_dates(inputs, dates)
    for message in overridden_warnings(series):
        warnings.warn(TilewiseWarning(message), stacklevel=3)
    if series.dated:
        series.require_distinct()
        return series.days, False
    if fill.target is not None or fill.method == "seasonal":
        what = "TARGET_DATES" if fill.target is not None else "the seasonal method"
        raise InputError(f"The inputs have no dates (none in their file names or metadata, and no DATES), and "
                         f"{what} needs them. Name the files with their dates (e.g. ndvi_2024-05-12.tif) or give "
                         "DATES, one per input in input order.")
    warnings.warn(TilewiseWarning("The inputs have no dates (none in their file names or metadata, and no DATES): "
                                  "they are taken as equally spaced, in input order, and MAX_GAP counts steps "
                                  "between inputs instead of days."), stacklevel=3)
    return np.arange(len(inputs), dtype=np.float64), True


def _choose_band(infos, band: Optional[int], mask_band: Optional[int]) -> int:
    if band is not None:
        return choose_bands(infos, [band], mask_band)[0]
    chosen = choose_bands(infos, None, mask_band)
    if len(chosen) > 1:
        raise InputError(f"The inputs have {len(chosen)} bands besides the mask band ({infos[0].path}): pick the "
                         "band to fill (BAND in QGIS, --band on the command line). Gap filling fills one band; "
                         "run it once per band for more.")
    return chosen[0]


def _flags_spec(own: GapfillSettings, options: Options, read) -> Optional[OutputSpec]:
    if not own.flags:
        return None
    spec = OutputSpec(own.flags, FLAGS_TYPE, None, options.output.compression, "nearest").resolved()
    check_writable(spec.path)
    check_not_an_input(spec.path, read)
    return spec


def _check_output(path: str, read, flags: Optional[OutputSpec]) -> None:
    check_writable(path)
    check_not_an_input(path, read)
    if flags is not None and os.path.abspath(flags.path) == os.path.abspath(path):
        raise OutputError(f"The flags output and the filled output are the same file ({path}); "
                          "give the flags another name.")


def gapfill_tile(job: GapfillJob, tile: Tile, target) -> int:
    """Read ``tile`` of every date into one (dates, rows, cols) stack, mask it in place, fill its gaps;
    write the values (and flags) tile files."""
    from ..kernels.gapfill import gapfill_stack  # compiled kernels load only where tiles are filled
    stack = np.empty((len(job.inputs), tile.height, tile.width), job.work_dtype)
    for i, src in enumerate(job.inputs):
        layer = stack[i:i + 1]  # a (1, rows, cols) view: each date is read straight into its place
        try:
            read_window(src, [job.band], job.grid, tile, layer, job.input_nodata, job.resampling)
            if job.mask is not None:
                np.copyto(layer[0], np.nan, where=read_qa_mask(job.mask, i, job.inputs, job.grid, tile))
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:
            raise TileError(f"{tile.name}: reading {src} failed: {exc}") from exc
    values, flags = gapfill_stack(stack, np.asarray(job.days), job.fill)
    del stack
    out = as_output(values, job.outputs[0])     # every output of a job has its type and nodata
    if job.flags is None:
        job.sink.write(target, tile, out)
    else:
        job.sink.write(target, tile, out, flags)
    return tile.index


def as_output(values: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """:func:`~tilewise.core.io.cog.to_output`'s values, without its copy where ``values`` already have the
    output type (the kernel's float32 or float64): NaN nodata needs nothing, another nodata replaces
    NaN in place.

    >>> v = np.array([1.5, np.nan], np.float32)
    >>> as_output(v, OutputSpec("o.tif", "float32", -9999.0)).tolist(), v.tolist()
    ([1.5, -9999.0], [1.5, -9999.0])
    """
    dtype = np.dtype(spec.dtype)
    if dtype != values.dtype or spec.nodata is None:
        return to_output(values, spec)
    if not np.isnan(spec.nodata):
        np.copyto(values, dtype.type(spec.nodata), where=np.isnan(values))
    return values


@accepts_swaths("gap filling", one_variable=True)   # swath scenes: gridded first
def gapfill(inputs: Sequence[str], output: str, method: Union[int, str] = "linear", **options) -> RunReport:
    """Fill the gaps of a time series in time, per pixel, and write the filled series as a COG.

    Parameters
    ----------
    inputs : list of str
        The series: one raster per date, in any order. Dates come from the file names
        (YYYY-MM-DD, YYYYMMDD, YYYY_MM_DD, YYYY-MM, YYYY_MM), else the metadata, else
        ``dates``; the output is in date order.
    output : str
        The COG to write, one band per output date (band descriptions: the ISO dates); with
        ``per_date`` a folder that receives one COG per date.
    method : {"linear", "nearest", "previous", "next", "seasonal"} or 0..4
    **options
        Gap filling's own (:class:`GapfillSettings`: ``max_gap``, ``edges``, ``season_days``,
        ``years_window``, ``target_dates``, ``dates``, ``band``, ``input_nodata``, the mask
        ``mask_band`` / ``mask_layers`` / ``mask_values`` / ``mask_bits`` / ``mask_preset``,
        ``per_date``, ``prefix``, ``flags``), and the grid, output and run options every
        operation takes (:mod:`tilewise.core.options`). Swath scenes (SAFE folders, netCDF on latitude/longitude
        grids) are gridded first onto ``extent`` and ``cell_size`` (in ``crs``, default WGS 84): name the one
        variable to fill in ``variables``; ``mask_flags`` (by name), ``mask_bits``, ``mask_preset`` and
        ``flag_variable`` mask their flags.

    Returns
    -------
    RunReport
        ``outputs`` lists every COG written (the flags last).

    Examples
    --------
    >>> from tilewise.core import gapfill                                       # doctest: +SKIP
    >>> gapfill(sorted(glob("ndvi_*.tif")), "filled.tif", "linear", max_gap=60,
    ...         mask_band=2, mask_preset="s2-scl", flags="flags.tif")           # doctest: +SKIP
    """
    own, shared = split_options(options, GapfillSettings, where="gapfill()", defaults={"output_type": None},
                                method=method)
    with logging_to(shared.run.log):
        job = plan_run(inputs, output, own, shared)
    return run_tiles(job, gapfill_tile, shared.run)


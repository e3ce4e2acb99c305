"""Temporal composite: a per-pixel statistic across a stack of rasters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, ParameterError, TileError, TilewiseError
from ..grid import Grid, Tile
from ..io.cog import check_writable, to_output
from ..io.coverage import check_inputs_meet, check_output_size
from ..io.outputs import check_not_an_input, describe_inputs
from ..io.sources import describe_raster, read_qa_mask, read_window
from ..masks import MaskSpec
from ..kernels.statistics import check_statistic, integer_range, output_count
from ..options import Options, OutputSpec, plan_grid, split_options
from ..logs import logging_to
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ..runtime.sinks import CogSink
from ..vocabulary import SPECTRAL_STATISTICS, PER_BAND_STATISTICS
from .series import CompositeOptions, choose_bands, plan_input_mask
from .swath.grid import accepts_swaths

_WIDE_TYPES = {"int32", "uint32", "int64", "uint64", "float64", "complex64", "complex128"}


@dataclass(frozen=True)
class CompositeJob(TiledJob):
    """Everything a worker needs to compute one tile; plain values only."""

    inputs: Tuple[str, ...]
    bands: Tuple[int, ...]
    statistic: str
    percentiles: Tuple[float, ...]
    input_nodata: Optional[float]
    mask: Optional[MaskSpec]
    grid: Grid
    resampling: str
    work_dtype: str
    output: OutputSpec
    band_names: Tuple[str, ...]
    value_range: Optional[Tuple[int, int]] = None  # integer inputs: (lowest value, bits)

    @property
    def sink(self) -> CogSink:
        return CogSink.single(self.grid, self.output, self.band_names)

    @property
    def budget(self) -> TileBudget:
        return TileBudget(len(self.inputs) * len(self.bands), 8 if self.work_dtype == "float64" else 4)


def plan_composite(inputs: Sequence[str], output: str, own: Optional[CompositeOptions] = None,
                   options: Optional[Options] = None) -> CompositeJob:
    """Check every parameter and input, plan the grid; raise a :class:`TilewiseError` on the first problem.

    Nothing is written here (the output folder is only probed for write access). Inputs that
    do not overlap the grid are named in a :class:`~tilewise.core.errors.TilewiseWarning`; an
    output above :data:`~tilewise.core.io.coverage.LARGE_OUTPUT_BYTES` needs ``allow_large``.
    """
    own = own if own is not None else CompositeOptions()
    options = options if options is not None else Options()
    if not inputs:
        raise InputError("No input rasters were given; a composite needs at least one.")
    check_statistic(own.statistic, own.percentiles)
    spec = options.output.spec(output)
    infos = [describe_raster(p) for p in inputs]
    masks = tuple(own.mask_layers or ())
    mask_infos = [describe_raster(m) for m in masks]
    chosen = choose_bands(infos, own.bands, own.mask_band)
    mask = plan_input_mask(infos, mask_infos, own)
    check_writable(spec.path)
    grid_options = options.grid
    ref = describe_raster(grid_options.reference) if grid_options.reference else infos[0]
    check_not_an_input(spec.path, describe_inputs(infos + mask_infos + [ref]))
    grid = plan_grid(ref, grid_options)
    check_inputs_meet(infos, grid)
    work = "float64" if any(dt in _WIDE_TYPES for info in infos for dt in info.dtypes) else "float32"
    names = tuple(_band_name(own.statistic, q, b) for b in chosen
                  for q in (own.percentiles if own.statistic == "percentile" else [None]))
    check_output_size(grid, len(names), spec.dtype, options.output.allow_large)
    value_range = integer_range([info.dtypes[b - 1] for info in infos for b in chosen])
    return CompositeJob(tuple(inputs), chosen, own.statistic, tuple(float(q) for q in own.percentiles),
                        own.input_nodata, mask, grid,
                        grid_options.resampling, work, spec, names, value_range)


def _band_name(statistic: str, q: Optional[float], band: int) -> str:
    label = f"p{q:g}" if q is not None else statistic
    return f"{label} of band {band}"


def composite_tile(job: CompositeJob, tile: Tile, target: str) -> int:
    """Read ``tile`` of every input, reduce it, write the tile file; return the tile index."""
    n_bands = len(job.bands)
    stack = np.empty((len(job.inputs), n_bands, tile.height, tile.width), job.work_dtype)
    for i, src in enumerate(job.inputs):
        try:
            read_window(src, job.bands, job.grid, tile, stack[i], job.input_nodata, job.resampling)
            _apply_mask(job, i, tile, stack[i])
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:
            raise TileError(f"{tile.name}: reading {src} failed: {exc}") from exc
    from ..kernels.reducers import reduce_stack  # compiled kernels load only where tiles are reduced
    k = output_count(job.statistic, job.percentiles)
    out = np.empty((n_bands * k, tile.height, tile.width), job.output.dtype)
    for bi in range(n_bands):
        values = reduce_stack(stack[:, bi], job.statistic, job.percentiles, job.value_range)
        out[bi * k:(bi + 1) * k] = to_output(values, job.output)
    job.sink.write(target, tile, out)
    return tile.index


def _apply_mask(job: CompositeJob, i: int, tile: Tile, values: np.ndarray) -> None:
    if job.mask is not None:
        values[:, read_qa_mask(job.mask, i, job.inputs, job.grid, tile)] = np.nan


@accepts_swaths("a composite")     # SAFE folders, netCDF on latitude/longitude grids: gridded first
def composite(inputs: Sequence[str], output: str, statistic: str = PER_BAND_STATISTICS[0],
              percentiles: Sequence[float] = (), **options) -> RunReport:
    """Per-pixel ``statistic`` across ``inputs``, written to ``output`` as a COG.

    Parameters
    ----------
    inputs : list of str
        Paths (or GDAL paths) of the time series, all bands composited band by band.
    output : str
        The COG to write (replaced atomically if it exists).
    statistic : {"median", "mean", "min", "max", "std", "count", "percentile", "geomedian", "medoid", "quality"}
        The last three keep each pixel's bands together (:mod:`tilewise.core.operations.spectral`, whose
        options they take too).
    percentiles : list of float
        With ``"percentile"``: one output band per percentile and input band.
    **options
        The composite's own (:class:`CompositeOptions`: ``bands``, ``input_nodata``, ``mask_band``,
        ``mask_layers``, ``mask_values``, ``mask_bits``, ``mask_preset``), and the options every operation
        takes (:mod:`tilewise.core.options`): the grid (``reference``, ``extent``, ``crs``,
        ``cell_size``, ``resampling``), the output (``output_type``, ``output_nodata``,
        ``compression``, ``overview_resampling``, ``allow_large``) and the run (``tile_size``,
        ``workers``, ``executor``, ``scheduler``, ``resume``, ``keep_workdir``, ``progress``,
        ``log``).

    Returns
    -------
    RunReport

    Examples
    --------
    >>> from tilewise.core import composite                      # doctest: +SKIP
    >>> composite(["2020.tif", "2021.tif"], "median.tif")         # doctest: +SKIP
    """
    if statistic in SPECTRAL_STATISTICS:  # bands kept together: tilewise.core.operations.spectral
        if len(percentiles):
            raise ParameterError(f"Percentiles are for the percentile statistic, not {statistic}.")
        from .spectral import spectral_composite
        return spectral_composite(inputs, output, statistic, **options)
    own, shared = split_options(options, CompositeOptions, where="composite()", statistic=statistic,
                                percentiles=percentiles)
    with logging_to(shared.run.log):
        job = plan_composite(inputs, output, own, shared)
    return run_tiles(job, composite_tile, shared.run)

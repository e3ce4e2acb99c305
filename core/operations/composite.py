"""Temporal composite: a per-pixel statistic across a stack of rasters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ..io.cog import OutputSpec, check_writable, to_output, write_tile
from ..io.coverage import check_inputs_meet, check_output_size
from ..errors import InputError, MaskError, TileError, TilewiseError
from ..grid import Grid, Tile
from ..io.outputs import check_not_an_input, describe_inputs
from ..kernels.statistics import check_statistic, integer_range, output_count
from ..options import plan_grid
from ..runtime.runner import LogFn, ProgressFn, RunReport, run_tiled, warnings_to
from ..io.sources import describe_raster, read_categories, read_window, resampling_method

_WIDE_TYPES = {"int32", "uint32", "int64", "uint64", "float64", "complex64", "complex128"}


@dataclass(frozen=True)
class CompositeJob:
    """Everything a worker needs to compute one tile; plain values only."""

    inputs: Tuple[str, ...]
    bands: Tuple[int, ...]
    statistic: str
    percentiles: Tuple[float, ...]
    input_nodata: Optional[float]
    mask_band: Optional[int]
    mask_layers: Tuple[str, ...]
    mask_values: Tuple[int, ...]
    grid: Grid
    resampling: str
    work_dtype: str
    output: OutputSpec
    band_names: Tuple[str, ...]
    value_range: Optional[Tuple[int, int]] = None  # integer inputs: (lowest value, bits)


def plan_composite(inputs: Sequence[str], output: str, statistic: str = "median",
                   percentiles: Sequence[float] = (), bands: Optional[Sequence[int]] = None,
                   input_nodata: Optional[float] = None, mask_band: Optional[int] = None,
                   mask_layers: Optional[Sequence[str]] = None, mask_values: Sequence[int] = (),
                   reference: Optional[str] = None, extent: Optional[Sequence[float]] = None,
                   crs: Optional[str] = None, cell_size: Optional[object] = None,
                   resampling: str = "nearest", output_type: str = "float32",
                   output_nodata: Optional[float] = None, compression: str = "DEFLATE",
                   overview_resampling: str = "average", allow_large: bool = False) -> CompositeJob:
    """Check every parameter and input, plan the grid; raise a :class:`TilewiseError` on the first problem.

    Nothing is written here (the output folder is only probed for write access). Inputs that
    do not overlap the grid are named in a :class:`~tilewise.core.errors.TilewiseWarning`; an
    output above :data:`~tilewise.core.io.coverage.LARGE_OUTPUT_BYTES` needs ``allow_large``.
    """
    if not inputs:
        raise InputError("No input rasters were given; a composite needs at least one.")
    check_statistic(statistic, percentiles)
    resampling_method(resampling)
    spec = OutputSpec(output, output_type, output_nodata, compression, overview_resampling).resolved()
    infos = [describe_raster(p) for p in inputs]
    masks = tuple(mask_layers or ())
    if masks and len(masks) != len(inputs):
        raise MaskError(f"{len(masks)} mask layers were given for {len(inputs)} inputs; "
                        "give one mask layer per input, in the same order.")
    if mask_band is not None and masks:
        raise MaskError("Give either a mask band of the inputs or a list of mask layers, not both.")
    if (mask_band is not None or masks) and not mask_values:
        raise MaskError("A mask is set but no mask values: list the mask classes to exclude, e.g. 0,1,3,8,9,10.")
    if mask_values and mask_band is None and not masks:
        raise MaskError("Mask values were given but no mask band or mask layers to read them from.")
    mask_infos = [describe_raster(m) for m in masks]
    chosen = _choose_bands(infos, bands, mask_band)
    check_writable(spec.path)
    ref = describe_raster(reference) if reference else infos[0]
    check_not_an_input(spec.path, describe_inputs(infos + mask_infos + [ref]))
    grid = plan_grid(ref, extent, crs, cell_size)
    check_inputs_meet(infos, grid)
    work = "float64" if any(dt in _WIDE_TYPES for info in infos for dt in info.dtypes) else "float32"
    names = tuple(_band_name(statistic, q, b) for b in chosen
                  for q in (percentiles if statistic == "percentile" else [None]))
    check_output_size(grid, len(names), spec.dtype, allow_large)
    value_range = integer_range([info.dtypes[b - 1] for info in infos for b in chosen])
    return CompositeJob(tuple(inputs), chosen, statistic, tuple(float(q) for q in percentiles),
                        input_nodata, mask_band, masks, tuple(int(v) for v in mask_values), grid, resampling,
                        work, spec, names, value_range)


def _choose_bands(infos, bands, mask_band) -> Tuple[int, ...]:
    fewest = min(infos, key=lambda i: i.count)
    if mask_band is not None and not 1 <= mask_band <= fewest.count:
        raise MaskError(f"Mask band {mask_band} does not exist in {fewest.path}, which has {fewest.count} band(s).")
    if bands:
        chosen = tuple(int(b) for b in bands)
    else:
        counts = {i.count for i in infos}
        if len(counts) > 1:
            raise InputError(f"The inputs have different band counts ({band_counts(infos)}); "
                             "pick the bands to composite (e.g. --bands 1,2,3; BANDS in QGIS).")
        chosen = tuple(b for b in range(1, fewest.count + 1) if b != mask_band)
    for b in chosen:
        if b < 1 or b > fewest.count:
            raise InputError(f"Band {b} does not exist in {fewest.path}, which has {fewest.count} band(s).")
    if not chosen:
        raise InputError("No band is left to composite (the only band is the mask band).")
    return chosen


def band_counts(infos, limit: int = 3) -> str:
    """``"1 band: a.tif, b.tif; 3 bands: rgb.tif"``: which files have how many bands."""
    groups: dict = {}
    for info in infos:
        groups.setdefault(info.count, []).append(info.path)
    parts = []
    for count, paths in sorted(groups.items()):
        more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
        parts.append(f"{count} band{'s' if count != 1 else ''}: {', '.join(paths[:limit])}{more}")
    return "; ".join(parts)


def _band_name(statistic: str, q: Optional[float], band: int) -> str:
    label = f"p{q:g}" if q is not None else statistic
    return f"{label} of band {band}"


def composite_tile(job: CompositeJob, tile: Tile, path: str) -> int:
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
            raise TileError(f"{tile.name}: reading {src} failed: {exc}") from None
    from ..kernels.reducers import reduce_stack  # compiled kernels load only where tiles are reduced
    k = output_count(job.statistic, job.percentiles)
    out = np.empty((n_bands * k, tile.height, tile.width), job.output.dtype)
    for bi in range(n_bands):
        values = reduce_stack(stack[:, bi], job.statistic, job.percentiles, job.value_range)
        out[bi * k:(bi + 1) * k] = to_output(values, job.output)
    write_tile(path, out, job.grid, tile, job.output)
    return tile.index


def _apply_mask(job: CompositeJob, i: int, tile: Tile, values: np.ndarray) -> None:
    if job.mask_band is not None:
        cats = read_categories(job.inputs[i], job.mask_band, job.grid, tile)
    elif job.mask_layers:
        cats = read_categories(job.mask_layers[i], 1, job.grid, tile)
    else:
        return
    values[:, np.isin(cats, job.mask_values)] = np.nan


def composite(inputs: Sequence[str], output: str, statistic: str = "median",
              percentiles: Sequence[float] = (), *, tile_size: Optional[int] = None,
              workers: Optional[int] = None, executor=None, scheduler=None, resume: bool = False,
              keep_workdir: bool = False, progress: Optional[ProgressFn] = None,
              log: Optional[LogFn] = None, **options) -> RunReport:
    """Per-pixel ``statistic`` across ``inputs``, written to ``output`` as a COG.

    Parameters
    ----------
    inputs : list of str
        Paths (or GDAL paths) of the time series, all bands composited band by band.
    output : str
        The COG to write (replaced atomically if it exists).
    statistic : {"median", "mean", "min", "max", "std", "count", "percentile"}
    percentiles : list of float
        With ``"percentile"``: one output band per percentile and input band.
    tile_size : int, optional
        Tile side in pixels; by default (or 0) chosen so one tile's stack fits ~256 MiB.
    workers : int, optional
        Worker processes; by default (or 0) all cores, never more than the cores.
    executor, scheduler : optional
        Run the tiles elsewhere: an executor or a ``dask.distributed.Client``; or a
        Dask scheduler address (``tcp://host:8786``), scheduler file or cluster object.
    resume : bool
        Reuse the finished tiles of an interrupted run of the same job.
    keep_workdir : bool
        Keep the work folder (tiles, manifest) after success.
    **options
        ``bands``, ``input_nodata``, ``mask_band``, ``mask_layers``, ``mask_values``,
        ``reference``, ``extent``, ``crs``, ``cell_size``, ``resampling``,
        ``output_type``, ``output_nodata``, ``compression``, ``overview_resampling``,
        ``allow_large``: see :func:`plan_composite`.

    Returns
    -------
    RunReport

    Examples
    --------
    >>> from tilewise.core import composite                      # doctest: +SKIP
    >>> composite(["2020.tif", "2021.tif"], "median.tif")         # doctest: +SKIP
    """
    with warnings_to(log):
        job = plan_composite(inputs, output, statistic, percentiles, **options)
    return run_tiled(job, composite_tile, tile_size, workers, executor, progress, log, scheduler=scheduler,
                     resume=resume, keep_workdir=keep_workdir, layers=len(job.inputs) * len(job.bands))

"""Mosaic: many rasters into one Cloud-Optimized GeoTIFF.

Inputs on the target lattice with a ``first``/``last`` overlap rule are laid
out in a VRT and written by GDAL's COG driver directly (GDAL does that job
well). Everything else (inputs to warp, ``min``/``max``/``mean``/``median``
overlaps) runs through the engine's parallel tiles: each tile reads only the
inputs whose footprint meets it, through the bounded dataset cache.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
from rasterio.warp import calculate_default_transform

from ..errors import InputError, ParameterError, TileError, TilewiseError
from ..grid import Grid, Tile, grid_from_extent, parse_cell_size, snap_extent
from ..io.cog import Placement, check_writable, to_output
from ..io.coverage import check_inputs_meet, check_output_size, footprint, meets, raster_bounds
from ..io.names import is_pattern
from ..io.outputs import check_not_an_input, describe_inputs
from ..io.sources import RasterInfo, describe_raster, gdal_path, is_remote, read_window, same_grid_offset
from ..options import GridOptions, Options, OutputSpec, nodata_fits, parse_crs, plan_grid, split_options
from ..logs import log_option, logging_to
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ..runtime.sinks import CogSink, GdalSink, Sink
from ..vocabulary import OUTPUT_TYPES, OVERLAP_RULES
from .swath.grid import accepts_swaths

log = logging.getLogger(__name__)

RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc")
Bounds = Tuple[float, float, float, float]


@dataclass(frozen=True)
class MosaicOptions:
    """The mosaic's own options: the ``overlap`` rule (:data:`~tilewise.core.vocabulary.OVERLAP_RULES`)
    and ``input_nodata`` overriding the files'."""

    overlap: str = OVERLAP_RULES[0]
    input_nodata: Optional[float] = None


@dataclass(frozen=True)
class MosaicJob(TiledJob):
    """The inputs, their footprints on the grid, the rule; ``placements``: the inputs laid out as they are
    (GDAL's path: no tiles), or none (the engine's tiles)."""

    inputs: Tuple[str, ...]
    footprints: Tuple[Bounds, ...]      # each input's bounds in the target CRS
    count: int
    overlap: str
    input_nodata: Optional[float]
    grid: Grid
    resampling: str
    work_dtype: str
    output: OutputSpec
    band_names: Tuple[str, ...]
    placements: Tuple[Placement, ...] = ()

    @property
    def sink(self) -> Sink:
        if self.placements:
            return GdalSink(self.grid, self.output, self.band_names, self.placements)
        return CogSink.single(self.grid, self.output, self.band_names)

    @property
    def budget(self) -> TileBudget:
        return TileBudget(4 * self.count, 8 if self.work_dtype == "float64" else 4)


def find_inputs(patterns: Sequence[str]) -> List[str]:
    """Expand folders (their rasters, sorted) and glob patterns; keep plain paths.

    Raises :class:`InputError` for a folder or pattern that matches nothing.
    """
    found: List[str] = []
    for p in patterns:
        if is_remote(p):                     # a URL's "?" starts its query, not a pattern
            found.append(p)
        elif os.path.isdir(p):
            files = sorted(f for f in glob.glob(os.path.join(glob.escape(p), "*"))
                           if f.lower().endswith(RASTER_EXTENSIONS))
            if not files:
                raise InputError(f"No raster files ({', '.join(RASTER_EXTENSIONS)}) in the folder {p}.")
            found.extend(files)
        elif is_pattern(p):
            files = sorted(glob.glob(p, recursive=True))
            if not files:
                raise InputError(f"No file matches {p}.")
            found.extend(files)
        else:
            found.append(p)
    return found


def plan_mosaic(inputs: Sequence[str], output: str, own: MosaicOptions = MosaicOptions(),
                options: Optional[Options] = None) -> MosaicJob:
    """Read every input's header (one at a time), check them and plan the target grid.

    The grid is the reference raster's if given, else the union of the inputs'
    footprints at the first input's resolution, on its pixel lattice. Inputs outside
    the grid are named in a warning (none inside is an error); a grid larger than
    :data:`~tilewise.core.io.coverage.LARGE_OUTPUT_BYTES` needs ``allow_large``, and the
    error names the inputs that stretch it. The output's type and nodata default to the inputs'.
    """
    options = options if options is not None else Options()
    paths = find_inputs(inputs)
    if not paths:
        raise InputError("No input rasters were given; a mosaic needs at least one.")
    if own.overlap not in OVERLAP_RULES:
        raise ParameterError(f"Unknown overlap rule {own.overlap!r}; use one of {', '.join(OVERLAP_RULES)}.")
    infos = [describe_raster(p) for p in paths]
    first = infos[0]
    for info in infos[1:]:
        if info.count != first.count:
            raise InputError(f"{info.path} has {info.count} band(s), {first.path} {first.count}; "
                             "a mosaic needs the same bands in every input.")
    spec = _output_spec(output, infos, own, options)
    check_writable(spec.path)
    grid_options = options.grid
    ref = describe_raster(grid_options.reference) if grid_options.reference else None
    check_not_an_input(spec.path, describe_inputs(infos + ([ref] if ref else [])))
    grid = plan_grid(ref, grid_options) if ref else _union_grid(infos, grid_options)
    target = parse_crs(grid.crs) if grid.crs else None
    check_inputs_meet(infos, grid)
    footprints = tuple(footprint(i, target) for i in infos)
    union = ref is None and grid_options.extent is None
    check_output_size(grid, first.count, spec.dtype, options.output.allow_large,
                      list(zip(paths, footprints)) if union else None)
    work = "float64" if any(dt in ("int32", "uint32", "float64") for i in infos for dt in i.dtypes) else "float32"
    names = _band_names(first)
    return MosaicJob(tuple(paths), footprints, first.count, own.overlap, own.input_nodata, grid,
                     grid_options.resampling, work, spec, names)


def _output_spec(output: str, infos: Sequence[RasterInfo], own: MosaicOptions, options: Options) -> OutputSpec:
    """The output's type (default: the inputs') and nodata (default: the inputs', where the type holds it)."""
    asked = options.output
    dtype = (asked.output_type or _common_dtype(infos)).lower()
    if dtype not in OUTPUT_TYPES:
        raise ParameterError(f"Unknown output type {dtype!r}; use one of {', '.join(OUTPUT_TYPES)}.")
    nodata = own.input_nodata if own.input_nodata is not None else infos[0].nodata
    if nodata is not None and not nodata_fits(nodata, dtype):
        nodata = None  # the inputs' nodata cannot be stored in the asked type: use the type's default
    return asked.spec(output, dtype, nodata)


def _common_dtype(infos: Sequence[RasterInfo]) -> str:
    types = {dt for i in infos for dt in i.dtypes}
    return types.pop() if len(types) == 1 else str(np.result_type(*types))


def _band_names(info: RasterInfo) -> Tuple[str, ...]:
    import rasterio
    with rasterio.open(info.path) as src:
        return tuple(d or f"band {b}" for b, d in enumerate(src.descriptions, start=1))


def _union_grid(infos: Sequence[RasterInfo], grid: GridOptions) -> Grid:
    first = infos[0]
    first_crs = parse_crs(first.crs) if first.crs else None
    target = parse_crs(grid.crs) or first_crs
    res = parse_cell_size(grid.cell_size)
    extent = grid.extent
    if target == first_crs or target is None:
        native = (abs(first.transform[0]), abs(first.transform[4]))
        origin = (first.transform[2], first.transform[5])
    else:
        t, _, _ = calculate_default_transform(first_crs, target, first.width, first.height, *raster_bounds(first))
        native, origin = (abs(t.a), abs(t.e)), (t.c, t.f)
    if extent is None:
        boxes = [footprint(i, target) for i in infos]
        extent = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                  max(b[3] for b in boxes))
    if res is None:
        res = native
        extent = snap_extent(tuple(extent), origin, res)  # type: ignore[arg-type]
    return grid_from_extent(target.to_wkt() if target else "", tuple(extent), res)  # type: ignore[arg-type]


def _tile_bounds(grid: Grid, tile: Tile) -> Bounds:
    a, _, c, _, e, f = grid.window_transform(tile)
    xs = (c, c + a * tile.width)
    ys = (f, f + e * tile.height)
    return (min(xs), min(ys), max(xs), max(ys))


def mosaic_tile(job: MosaicJob, tile: Tile, target: str) -> int:
    """Combine the inputs that meet ``tile`` by the overlap rule; write the tile; return its index."""
    box = _tile_bounds(job.grid, tile)
    hits = [i for i, fp in enumerate(job.footprints) if meets(fp, box)]
    bands = list(range(1, job.count + 1))
    shape = (job.count, tile.height, tile.width)
    if job.overlap in ("first", "last"):
        result = np.full(shape, np.nan, job.work_dtype)
        buf = np.empty(shape, job.work_dtype)
        for i in (hits if job.overlap == "first" else reversed(hits)):
            _read(job, i, tile, bands, buf)
            fill = np.isnan(result) & ~np.isnan(buf)
            result[fill] = buf[fill]
            if not np.isnan(result).any():
                break
    else:
        from ..kernels.reducers import reduce_stack  # compiled kernels load only where tiles are reduced
        stack = _stack_valid(job, hits, tile, bands, shape)
        result = np.full(shape, np.nan)
        if len(stack):
            for b in range(job.count):
                result[b] = reduce_stack(stack[:, b], job.overlap)[0]
    job.sink.write(target, tile, to_output(result, job.output))
    return tile.index


def _stack_valid(job: MosaicJob, hits: Sequence[int], tile: Tile, bands, shape) -> np.ndarray:
    """The valid values of the inputs meeting ``tile``, in input order, packed into as many
    layers as the deepest overlap (not one per input: thousands of small inputs may meet a tile)."""
    buf = np.empty(shape, job.work_dtype)
    depth = np.zeros(shape, np.intp)
    stack = np.empty((0,) + shape, job.work_dtype)
    for i in hits:
        _read(job, i, tile, bands, buf)
        valid = ~np.isnan(buf)
        rows, cols = np.flatnonzero(valid.any(axis=(0, 2))), np.flatnonzero(valid.any(axis=(0, 1)))
        if not len(rows):
            continue
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        valid, values, level = valid[box], buf[box], depth[box]
        need = int(level[valid].max()) + 1
        if need > len(stack):
            grown = np.full((max(need, 2 * len(stack)),) + shape, np.nan, job.work_dtype)
            grown[:len(stack)] = stack
            stack = grown
        b, r, c = np.nonzero(valid)
        stack[level[valid], b, r + rows[0], c + cols[0]] = values[valid]
        level += valid
    return stack[:int(depth.max(initial=0))]


def _read(job: MosaicJob, i: int, tile: Tile, bands, out) -> None:
    try:
        read_window(job.inputs[i], bands, job.grid, tile, out, job.input_nodata, job.resampling)
    except TilewiseError as exc:
        raise TileError(f"{tile.name}: {exc}") from None
    except Exception as exc:
        raise TileError(f"{tile.name}: reading {job.inputs[i]} failed: {exc}") from exc


def gdal_can_do(job: MosaicJob) -> Optional[List[Placement]]:
    """Placements for a pure GDAL VRT -> COG mosaic, or None when the engine is needed.

    GDAL does it when every input lies on the target lattice (no warping), the
    rule is first/last, no nodata override is asked for, and no float input is
    written as integers (GDAL rounds halves away from zero, the engine to even).
    """
    if job.overlap not in ("first", "last") or job.input_nodata is not None:
        return None
    grid_crs = parse_crs(job.grid.crs) if job.grid.crs else None
    to_integer = np.issubdtype(np.dtype(job.output.dtype), np.integer)
    placements = []
    for path in job.inputs:
        info = describe_raster(path)
        if to_integer and any(np.issubdtype(np.dtype(dt), np.floating) for dt in info.dtypes):
            return None
        offset = same_grid_offset(parse_crs(info.crs) if info.crs else None, info.transform, job.grid, grid_crs)
        if offset is None:
            return None
        row, col = -offset[0], -offset[1]
        source = gdal_path(path) if is_remote(path) else os.path.abspath(path)
        placements.append(Placement(source, row, col, info.height, info.width, nodata=info.nodata))
    # a VRT paints later sources over earlier ones: "first" wins when listed last
    return placements[::-1] if job.overlap == "first" else placements


@accepts_swaths("a mosaic", folders=False)    # SAFE folders, netCDF on latitude/longitude grids: gridded first
@log_option
def mosaic(inputs: Sequence[str], output: str, overlap: str = OVERLAP_RULES[0], *, tiled: Optional[bool] = None,
           **options) -> RunReport:
    """Mosaic ``inputs`` (paths, folders or glob patterns) into one COG.

    Parameters
    ----------
    overlap : {"first", "last", "min", "max", "mean", "median"}
        How pixels covered by several inputs combine (nodata ignored). ``first``
        keeps the earliest input in the list.
    tiled : bool, optional
        Force (True) or forbid (False) the engine's tiles; by default GDAL's
        VRT + COG path is used where it gives the same result (no tiles: the run
        options concern the engine's tiles). Its older name ``engine`` still works,
        with a :class:`DeprecationWarning`.
    **options
        ``input_nodata`` (:class:`MosaicOptions`), and the grid, output and run options every
        operation takes (:mod:`tilewise.core.options`); ``output_type`` and ``output_nodata``
        default to the inputs'. Swath scenes (SAFE folders, netCDF on latitude/longitude grids) are gridded
        first onto ``extent`` and ``cell_size`` (in ``crs``, default WGS 84), with ``variables`` and flags
        (``mask_flags``, ``mask_bits``, ``mask_preset``, ``flag_variable``).

    >>> mosaic(["tiles/*.tif"], "mosaic.tif", overlap="mean")  # doctest: +SKIP
    """
    tiled = _renamed_engine(tiled, options)
    own, shared = split_options(options, MosaicOptions, where="mosaic()", defaults={"output_type": None},
                                overlap=overlap)
    run = shared.run
    with logging_to(run.log):
        job = plan_mosaic(inputs, output, own, shared)
    log.info(f"{len(job.inputs)} inputs -> {job.grid.width} x {job.grid.height} x {job.count} bands")
    placements = gdal_can_do(job) if tiled is not True else None
    if placements is not None:
        log.info("All inputs are on the output grid: GDAL VRT -> COG, no resampling")
        job = replace(job, placements=tuple(placements))
    elif tiled is False:
        raise ParameterError("These inputs need the engine's tiles (tiled=False forbids them): warping, an overlap "
                             "rule other than first/last, a nodata override, or float inputs written as integers.")
    return run_tiles(job, mosaic_tile, run)


def _renamed_engine(tiled: Optional[bool], options: dict) -> Optional[bool]:
    """``tiled``, or the value of its older name ``engine`` (taken out of ``options``), with a warning."""
    if "engine" not in options:
        return tiled
    engine = options.pop("engine")
    warnings.warn("mosaic(engine=...) is now mosaic(tiled=...): it forces (True) or forbids (False) the engine's "
                  "tiles.", DeprecationWarning, stacklevel=3)
    if tiled is not None and tiled != engine:
        raise ParameterError(f"mosaic() was given tiled={tiled} and engine={engine}, its older name; give tiled only.")
    return engine

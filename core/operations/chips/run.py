"""The ``chips`` operation: the pixels around each feature, every date and band, one netCDF cube per feature
(or a GeoTIFF per feature and date, or one training-set file of every patch: :mod:`.output`).

Planning (:func:`plan_chips_job`, in this process): the output grid's lattice (the first input's, or
CRS and cell size given), one window per feature on it (:mod:`.plan`), and a *working grid* that just
holds every window, its corner on a block corner of the first input when they share a lattice (tiles of
a multiple of the block then hold whole blocks: each block is decoded by one task). Windows are assigned
to the tiles of the working grid as the extraction assigns its features
(:func:`~tilewise.core.kernels.footprints.assign_tiles`); only tiles that hold a window are tasks, and
each task reads only the rectangle of its tile that its windows cover.

A task (:func:`chips_tile`, in a worker) reads that rectangle once per raster (every band at once,
resampled onto the grid when the raster is on another grid; the QA mask applied), so however many
chips touch it, it is read once, and holds ``dates x bands x rectangle`` values at a time: memory is
bounded by the tile size times the dates and bands, not by the number of features. With GAPFILL the
rectangle is filled along time there (each pixel's series is whole in it). A chip wholly in
the task's tile is written there as its netCDF file (in the work folder); the pieces of chips that
span tiles go into the task's part file.

Finishing (:class:`ChipSink`, in this process) assembles the chips that span tiles (one at a time),
moves every file into OUTPUT_FOLDER under its feature's name (each atomically), lists them in the
folder's marker and removes the files of an earlier run there that this one did not write again.

A feature whose window meets none of the rasters is skipped (no file), with one warning naming it.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import shapely

from ...dates import overridden_warnings, read_dates
from ...errors import InputError, OutputError, ParameterError, TileError, TilewiseError, TilewiseWarning
from ...grid import Grid, Tile, auto_tile_size
from ...io.netcdf import cf_attribute_value, cf_grid_mapping, nc_name
from ...io.sources import describe_raster, read_qa_mask, read_window
from ...io.vector import Zones, check_zone_coordinates, read_zones, reproject, same_crs
from ...kernels.footprints import assign_tiles, footprints_from_pixels
from ...masks import MaskSpec, parse_codes, preset_by_name
from ...options import OutputOptions, Options, plan_grid, split_options
from ...logs import logging_to
from ...runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ...runtime.sinks import write_part
from ...vocabulary import CHIPS_BUFFER_UNITS, CHIPS_FORMATS, CHIPS_MODES, GAPFILL_METHODS
from ..series import choose_bands, plan_input_mask
from ..extract.layout import date_order
from ..extract.run import zones_digest
from ..extract.spec import choose
from ..swath.grid import refuse_swaths
from ...kernels.gapfill_plan import GapfillOptions, plan_gapfill
from .output import Chip, ChipSink, cut_chips
from .plan import MARKER, TRAINING_FILE, buffer_in_grid_units, check_folder, chip_bytes, chip_file_names, \
    chip_names, chip_windows, describe_ids, parse_size

log = logging.getLogger(__name__)

#: Most bytes one chip (every date and band of its window) may hold: it is assembled whole in memory.
CHIP_BUDGET = 512 * 2**20
#: Most bytes a task's window holds at once (every date and band), which sizes the tiles.
TILE_BUDGET = 256 * 2**20
_WIDE_TYPES = {"int32", "uint32", "int64", "uint64", "float64"}
_RESERVED = ("time", "y", "x", "crs")
#: GAPFILL: 0 none, then the methods of ``tilewise:gapfill`` in their order.
CHIPS_GAPFILL = ("none",) + tuple(GAPFILL_METHODS)


@dataclass(frozen=True)
class ChipsOptions:
    """The chips' own options (the grid and run options are shared: :mod:`tilewise.core.options`).

    What: ``mode`` (0 ``box``: the feature's bounding box grown by ``buffer``, in ``buffer_units``
    0 ``grid`` (the output CRS's units) or 1 ``metres``; 1 ``patch``: ``size_x`` x ``size_y`` pixels
    centred on the feature). What to read: ``bands`` (default all but the mask band), ``input_nodata``,
    a QA mask (``mask_band`` or ``mask_layers``, with ``mask_values``, ``mask_bits``, ``mask_preset``),
    ``dates`` (one per raster, for rasters whose name and metadata give none). The zones: ``id_field``
    (names the files), ``layer``, ``zones_crs``. ``gapfill``: none, or a method of ``tilewise:gapfill``
    (linear, nearest, previous, next, seasonal) applied along time inside each chip, with ``max_gap``
    (days, 0: no limit) and ``edges`` (leave, nearest); the flags become a ``<band>_flags`` variable.
    ``footprints``: a layer (.gpkg, .csv, .parquet) of the chips: id, file, extent, size and the valid
    fraction per date. ``format``: 0 ``netcdf`` (a file per feature), 1 ``geotiff`` (a file per feature
    and date, ``<name>_<YYYY-MM-DD>.tif``: its bands; gap-filling flags are in netCDF only), 2 ``training``
    (patch mode: one ``chips.nc`` of every patch, dims feature, time, y, x).
    """

    mode: Union[int, str] = "box"
    buffer: float = 0.0
    buffer_units: Union[int, str] = "grid"
    size_x: int = 32
    size_y: int = 32
    bands: Optional[Sequence[int]] = None
    input_nodata: Optional[float] = None
    mask_band: Optional[int] = None
    mask_layers: Optional[Sequence[str]] = None
    mask_values: Any = ()
    mask_bits: Any = ()
    mask_preset: Any = None
    dates: Any = None
    id_field: Optional[str] = None
    layer: Optional[str] = None
    zones_crs: Optional[str] = None
    gapfill: Union[None, int, str] = None
    max_gap: float = 0.0
    edges: Union[int, str] = "leave"
    footprints: Optional[str] = None
    format: Union[int, str] = "netcdf"

    def __post_init__(self) -> None:
        """Checked and in one form, so the same job in other words is the same job for resume."""
        try:
            buffer = float(self.buffer or 0.0)
        except (TypeError, ValueError):
            raise ParameterError(f"BUFFER is a distance, got {self.buffer!r}.") from None
        if not np.isfinite(buffer) or buffer < 0:
            raise ParameterError(f"BUFFER must be 0 or more, got {self.buffer!r}.")
        values = dict(mode=choose(self.mode, CHIPS_MODES, "chip mode"), buffer=buffer,
                      buffer_units=choose(self.buffer_units, CHIPS_BUFFER_UNITS, "buffer unit"),
                      size_x=parse_size(self.size_x, "SIZE_X"), size_y=parse_size(self.size_y, "SIZE_Y"),
                      bands=tuple(int(b) for b in self.bands) if self.bands else None,
                      mask_layers=tuple(self.mask_layers) if self.mask_layers else None,
                      mask_values=parse_codes(self.mask_values, "MASK_VALUES"),
                      mask_bits=parse_codes(self.mask_bits, "MASK_BITS"),
                      mask_preset=preset_by_name(self.mask_preset).name,
                      dates=tuple(self.dates) if self.dates is not None and not isinstance(self.dates, str)
                      else (self.dates or None),
                      gapfill=None if self.gapfill in (None, "") else choose(self.gapfill, CHIPS_GAPFILL, "GAPFILL"),
                      footprints=os.path.abspath(self.footprints) if self.footprints else None,
                      format=choose(self.format, CHIPS_FORMATS, "chip format"))
        if values["gapfill"] == CHIPS_GAPFILL[0]:
            values["gapfill"] = None
        if values["format"] == "training" and values["mode"] != "patch":
            raise ParameterError("FORMAT training writes every chip into one array, so they must have one size: "
                                 "use MODE patch (SIZE_X x SIZE_Y pixels).")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def fill(self) -> Optional[GapfillOptions]:
        """The gap filling along time inside each chip (:func:`~tilewise.core.operations.gapfill.plan_gapfill`)."""
        return None if self.gapfill is None else plan_gapfill(self.gapfill, self.max_gap, self.edges)


@dataclass(frozen=True)
class ChipPlan:
    """What the tasks need (numpy arrays and plain values; no geometries).

    ``windows``: ``(n, 4)`` row, col, height, width of each chip on the working grid (height 0: no
    chip). Task ``k`` reads ``reads[k]`` (row, col, height, width) and holds the chips
    ``members[offsets[k]:offsets[k + 1]]``; ``parts[z]``: how many tasks chip ``z`` spans. ``names``,
    ``ids`` and ``attrs`` (object arrays): each chip's file name, id and global attributes.
    """

    windows: np.ndarray
    reads: np.ndarray
    offsets: np.ndarray
    members: np.ndarray
    parts: np.ndarray
    names: np.ndarray
    ids: np.ndarray
    attrs: np.ndarray

    def of_task(self, k: int) -> np.ndarray:
        return self.members[self.offsets[k]:self.offsets[k + 1]]

    def tasks_of(self, every: bool = False) -> Dict[int, List[int]]:
        """For every chip that spans tasks (``every``: every chip): the tasks holding its pieces."""
        out: Dict[int, List[int]] = {}
        for k in range(len(self.offsets) - 1):
            for z in self.of_task(k):
                if every or self.parts[z] > 1:
                    out.setdefault(int(z), []).append(k)
        return out


@dataclass(frozen=True)
class ChipsJob(TiledJob):
    """Chips for the runner. The plain fields identify the job (resume); ``plan`` is what tasks need."""

    inputs: Tuple[str, ...]
    zones: str
    zones_digest: str
    options: ChipsOptions
    folder: str
    outputs: Tuple[str, ...]
    grid: Grid
    resampling: str
    bands: Tuple[int, ...]
    variables: Tuple[str, ...]
    order: Tuple[int, ...]
    times: Tuple[float, ...]
    dated: bool
    input_nodata: Optional[float]
    mask: Optional[MaskSpec]
    work_dtype: str
    planned_tile_size: int
    cf: Tuple[Any, ...]
    id_name: str = "feature_id"
    fill: Optional[GapfillOptions] = None
    footprints: Optional[str] = None
    format: str = "netcdf"
    time_keys: Tuple[str, ...] = ()
    stale: Tuple[str, ...] = ()
    plan: Optional[ChipPlan] = field(default=None, repr=False, compare=False)

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def sink(self) -> "ChipSink":
        files = self.outputs[:-1] if self.footprints else self.outputs
        return ChipSink(self.folder, files, self.stale, self.footprints, self)

    @property
    def budget(self) -> TileBudget:
        # the stack; with gap filling its filled copy and the flags too
        layers = len(self.inputs) * len(self.bands)
        return TileBudget(layers * (3 if self.fill is not None else 1) + 1, np.dtype(self.work_dtype).itemsize)

    @property
    def tile_size(self) -> Optional[int]:
        return self.planned_tile_size

    def tiles(self, tile_size: int) -> List[Tile]:
        """One runner tile per task: the rectangle it reads."""
        return [Tile(k, int(r[0]), int(r[1]), int(r[2]), int(r[3])) for k, r in enumerate(self.plan.reads)]


# -- one task ---------------------------------------------------------------------------------------------------

def chips_tile(job: ChipsJob, tile: Tile, target: str) -> int:
    """Read ``tile`` (a task's rectangle) of every date once, gap-fill it if asked, cut its chips: whole
    ones to their files beside ``target``, pieces of the others into ``target``'s part."""
    values = read_stack(job, tile)
    flags = None
    if job.fill is not None:
        from ...kernels.gapfill import gapfill_stack   # compiled kernels load only where tiles are filled
        values, flags = gapfill_stack(values, np.asarray(job.times), job.fill)
    write_part(target, cut_chips(job, tile, Chip(values, flags), os.path.dirname(target)))
    return tile.index


def read_stack(job: ChipsJob, tile: Tile) -> np.ndarray:
    """``(dates, bands, rows, cols)`` of ``tile`` in date order: NaN where there is no data or the QA
    mask drops the pixel."""
    stack = np.empty((len(job.order), len(job.bands), tile.height, tile.width), job.work_dtype)
    for d, i in enumerate(job.order):
        src = job.inputs[i]
        try:
            read_window(src, list(job.bands), job.grid, tile, stack[d], job.input_nodata, job.resampling)
            if job.mask is not None:
                np.copyto(stack[d], np.nan, where=read_qa_mask(job.mask, i, job.inputs, job.grid, tile)[None])
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:                                 # noqa: BLE001 - say which tile and input
            raise TileError(f"{tile.name}: reading {src} failed: {exc}") from exc
    return stack


# -- planning ---------------------------------------------------------------------------------------------------

def plan_chips_job(inputs: Sequence[str], zones: Union[str, Zones], folder: str, own: ChipsOptions,
                   options: Options) -> ChipsJob:
    """Check every parameter and input and plan the job; nothing is written here."""
    if not inputs:
        raise InputError("No input rasters were given; chips need at least one.")
    if options.grid.extent is not None:
        raise ParameterError("Chips take their extent from the features: give no EXTENT.")
    refuse_swaths(inputs, "image chips")
    infos = [describe_raster(p) for p in inputs]
    mask_infos = [describe_raster(m) for m in own.mask_layers or ()]
    bands = choose_bands(infos, own.bands, own.mask_band)
    mask = plan_input_mask(infos, mask_infos, own)
    ref = describe_raster(options.grid.reference) if options.grid.reference else infos[0]
    base = plan_grid(ref, options.grid)
    fill = own.fill
    order, times, dated = _series(inputs, own.dates, fill is not None)
    work = "float64" if any(info.dtypes[b - 1] in _WIDE_TYPES for info in infos for b in bands) else "float32"
    source = zones if isinstance(zones, str) else zones.source
    if isinstance(zones, str):
        zones = read_zones(zones, layer=own.layer, id_field=own.id_field)
    if own.zones_crs:
        zones = replace(zones, crs=_zones_crs(own.zones_crs, source))
    if not same_crs(zones.crs, base.crs):
        check_zone_coordinates(zones)
    windows = _feature_windows(zones, base, own)
    windows = _drop_outside(zones, windows, base, infos)
    layers = len(order) * len(bands)
    _check_chip_sizes(zones, windows, layers, np.dtype(work).itemsize)
    blocks = _block_lattice(base, infos[0])
    size = _tile_size(options.run.tile_size, layers * (3 if fill is not None else 1) + 1, np.dtype(work).itemsize,
                      blocks[0] if blocks else 0)
    grid, windows = _working_grid(base, windows, blocks if blocks and size % blocks[0] == 0 else None)
    plan = _assign(grid, windows, size, zones)
    time_keys = _time_keys(times, dated)
    if fill is not None and own.format == "geotiff":
        warnings.warn(TilewiseWarning("The gap-filling flags are written in netCDF chips only; the GeoTIFF chips "
                                      "hold the filled values."), stacklevel=2)
    names = tuple(file_names(plan, own.format, time_keys))
    stale = check_folder(folder, names)
    _check_not_inputs(folder, infos + mask_infos)
    footprints = _check_footprints(own.footprints, folder, infos + mask_infos)
    variables = _variable_names(inputs[0], bands)
    files = tuple(os.path.join(os.path.abspath(folder), n) for n in names) + ((footprints,) if footprints else ())
    return ChipsJob(tuple(inputs), source, zones_digest(zones), own, os.path.abspath(folder), files, grid,
                    options.grid.resampling, bands, variables, order, times, dated, own.input_nodata, mask, work,
                    int(size), cf_grid_mapping(grid.crs), zones.id_name, fill, footprints, own.format, time_keys, stale,
                    plan)


def _zones_crs(crs: str, source: str) -> str:
    """ZONES_CRS as WKT, or one message naming the zones layer."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    try:
        return CRS.from_user_input(crs).to_wkt()
    except CRSError as exc:
        raise ParameterError(f"The CRS given for the zones {source} is not one GDAL knows: {crs!r} ({exc}).") from None


def _series(inputs: Sequence[str], dates: Any, filled: bool = False) -> Tuple[Tuple[int, ...], Tuple[float, ...], bool]:
    """Input order by date, and each output step's day number (or step number for an undated series)."""
    series = read_dates(inputs, dates)
    for message in overridden_warnings(series):
        warnings.warn(TilewiseWarning(message), stacklevel=3)
    if filled and not series.dated:
        raise InputError("GAPFILL fills gaps between dates, and the inputs have no dates (none in their file names "
                         "or metadata, and no DATES). Name the files with their dates or give DATES.")
    if filled:
        series.require_distinct()
    if series.dated:
        days = series.days
        order = date_order(days.astype("datetime64[D]"))
        return tuple(int(i) for i in order), tuple(float(days[i]) for i in order), True
    if len(inputs) > 1:
        warnings.warn(TilewiseWarning("The inputs have no dates (none in their file names or metadata, and no "
                                      "DATES): the chips' time axis is their order, 0, 1, 2..."), stacklevel=3)
    return tuple(range(len(inputs))), tuple(float(i) for i in range(len(inputs))), False


def _feature_windows(zones: Zones, base: Grid, own: ChipsOptions) -> np.ndarray:
    moved = reproject(zones.geometry, zones.crs, base.crs or zones.crs, zones.source)
    latitudes = np.zeros(len(moved))
    if own.mode == "box" and own.buffer_units == "metres" and own.buffer > 0:
        with np.errstate(invalid="ignore"):
            latitudes = np.nan_to_num(shapely.get_y(shapely.centroid(moved)))
    buffer = buffer_in_grid_units(own.buffer, own.buffer_units, base.crs, latitudes)
    windows = chip_windows(moved, base.transform, own.mode, buffer, (own.size_x, own.size_y))
    empty = np.flatnonzero(windows[:, 2] == 0)
    if len(empty):
        warnings.warn(TilewiseWarning(f"{len(empty)} features of {zones.source} have no geometry and get no chip "
                                      f"({zones.id_name} {describe_ids(zones.ids, empty)})."), stacklevel=3)
    return windows


def _drop_outside(zones: Zones, windows: np.ndarray, base: Grid, infos) -> np.ndarray:
    """Windows meeting no raster are dropped (height 0), with one warning naming their features."""
    from rasterio.crs import CRS
    from ...io.coverage import footprint
    target = CRS.from_user_input(base.crs) if base.crs else None
    a, _, c, _, e, f = base.transform
    boxes = [footprint(info, target) for info in infos]
    x0, x1 = c + a * windows[:, 1], c + a * (windows[:, 1] + windows[:, 3])
    y0, y1 = f + e * (windows[:, 0] + windows[:, 2]), f + e * windows[:, 0]
    meets = np.zeros(len(windows), bool)
    for bx0, by0, bx1, by1 in boxes:
        meets |= (x0 < bx1) & (bx0 < x1) & (y0 < by1) & (by0 < y1)
    out = np.flatnonzero(~meets & (windows[:, 2] > 0))
    if len(out):
        kept = int(np.count_nonzero(meets & (windows[:, 2] > 0)))
        if kept == 0:
            raise InputError(f"None of the features of {zones.source} lies on any of the {len(infos)} rasters: no "
                             "chip to write. Check that the zones and rasters cover the same area and that the zones "
                             "layer has the right CRS.")
        warnings.warn(TilewiseWarning(
            f"{len(out)} features of {zones.source} lie outside every raster and are skipped (no chip file): "
            f"{zones.id_name} {describe_ids(zones.ids, out)}."), stacklevel=3)
        windows = windows.copy()
        windows[out] = 0
    return windows


def _check_chip_sizes(zones: Zones, windows: np.ndarray, layers: int, itemsize: int) -> None:
    sizes = chip_bytes(windows, layers, itemsize)
    big = np.flatnonzero(sizes > CHIP_BUDGET)
    if len(big):
        z = big[int(np.argmax(sizes[big]))]
        raise ParameterError(
            f"The chip of {zones.id_name} {zones.ids[z]} would be {windows[z, 3]} x {windows[z, 2]} pixels x "
            f"{layers} dates and bands ({sizes[z] / 2**20:.0f} MiB), more than the {CHIP_BUDGET // 2**20} MiB one "
            f"chip may hold ({len(big)} chips are too large). Use a smaller BUFFER or SIZE, a coarser CELL_SIZE, "
            "or fewer bands or dates.")


def _block_lattice(base: Grid, info) -> Optional[Tuple[int, int, int]]:
    """``(block, row, col)``: the first input's square blocks of ``block`` pixels start at rows ``row + k *
    block`` and columns ``col + k * block`` of ``base``'s lattice. None when its blocks are not square (strips)
    or its pixels are not ``base``'s (it is resampled: no block lines up with the tiles)."""
    from ...io.sources import open_raster
    a, _, c, _, e, f = base.transform
    ia, _, ic, _, ie, i_f = info.transform
    if not same_crs(info.crs, base.crs) or not (np.isclose(ia, a, rtol=1e-9) and np.isclose(ie, e, rtol=1e-9)):
        return None
    col, row = (ic - c) / a, (i_f - f) / e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    try:
        with open_raster(info.path) as src:
            height, width = src.block_shapes[0]
    except Exception:  # noqa: BLE001 - alignment is an optimisation; the input was read before
        log.debug("No block shape read from %s", info.path, exc_info=True)
        return None
    if height != width or height < 64:
        return None
    return int(height), int(round(row)), int(round(col))


def _tile_size(asked: Optional[int], layers: int, itemsize: int, block: int) -> int:
    """The tasks' tile size: as asked; else the largest multiple of the inputs' ``block`` (at most 4) whose
    stack (every date and band: a task holds nothing else as large) fits ``TILE_BUDGET``, so that with the
    tiles on the blocks each block is decoded by one task only; else a power of two that fits."""
    if asked:
        return int(asked)
    if block:
        side = int(np.sqrt(TILE_BUDGET / (layers * itemsize)))
        if side >= block:
            return min(4 * block, side // block * block)
    return auto_tile_size(layers, itemsize, TILE_BUDGET)


def _working_grid(base: Grid, windows: np.ndarray,
                  blocks: Optional[Tuple[int, int, int]] = None) -> Tuple[Grid, np.ndarray]:
    """The grid on ``base``'s lattice that just holds every window, and the windows on it. With ``blocks``
    (:func:`_block_lattice`) its corner is moved up and left onto a block's corner, so tiles of a multiple of
    the block hold whole blocks: each block is read by one task only."""
    kept = windows[:, 2] > 0
    r0, c0 = windows[kept, 0].min(), windows[kept, 1].min()
    r1 = (windows[kept, 0] + windows[kept, 2]).max()
    c1 = (windows[kept, 1] + windows[kept, 3]).max()
    if blocks is not None:
        block, row, col = blocks
        r0, c0 = row + (r0 - row) // block * block, col + (c0 - col) // block * block
    a, b, c, d, e, f = base.transform
    grid = Grid(base.crs, (a, b, c + a * c0, d, e, f + e * r0), int(c1 - c0), int(r1 - r0))
    moved = windows.copy()
    moved[kept, 0] -= r0
    moved[kept, 1] -= c0
    return grid, moved


def _assign(grid: Grid, windows: np.ndarray, tile_size: int, zones: Zones) -> ChipPlan:
    """Windows to tiles as the extraction assigns its features; tasks: the tiles holding a window,
    each reading the rectangle of its tile that its windows cover."""
    kept = windows[:, 2] > 0
    boxes = np.array([shapely.box(c, r, c + w, r + h) if k else None
                      for (r, c, h, w), k in zip(windows.tolist(), kept)], dtype=object)
    assignment = assign_tiles(footprints_from_pixels(boxes, grid.height, grid.width), tile_size)
    reads, offsets, members = [], [0], []
    parts = np.zeros(len(windows), np.int64)
    n_cols = -(-grid.width // tile_size)
    for t in np.flatnonzero(np.diff(assignment.offsets)):     # only the tiles holding a window
        row_off, col_off = int(t // n_cols) * tile_size, int(t % n_cols) * tile_size
        tile = Tile(int(t), row_off, col_off, min(tile_size, grid.height - row_off),
                    min(tile_size, grid.width - col_off))
        chosen, rects = [], []
        for z in assignment.of_tile(t):
            r, c, h, w = windows[z]
            r0, c0 = max(r, tile.row_off), max(c, tile.col_off)
            r1, c1 = min(r + h, tile.row_off + tile.height), min(c + w, tile.col_off + tile.width)
            if r1 > r0 and c1 > c0:        # a window touching the tile's edge only has no pixel in it
                chosen.append(int(z))
                rects.append((r0, c0, r1, c1))
        if not chosen:
            continue
        rects_a = np.array(rects)
        top, left = rects_a[:, 0].min(), rects_a[:, 1].min()
        reads.append((top, left, rects_a[:, 2].max() - top, rects_a[:, 3].max() - left))
        members.extend(chosen)
        offsets.append(len(members))
        parts[chosen] += 1
    names = np.array(chip_names(zones.ids), dtype=object)
    _warn_renamed(zones, names, parts > 0)
    return ChipPlan(windows, np.array(reads, np.int64).reshape(-1, 4), np.array(offsets, np.int64),
                    np.array(members, np.int64), parts, names, np.asarray(zones.ids, dtype=object),
                    _global_attributes(zones))


def _warn_renamed(zones: Zones, names: np.ndarray, kept: np.ndarray) -> None:
    """One warning for the chips whose file is not named by their id as it is (repeated, empty, unsafe)."""
    changed = [i for i in np.flatnonzero(kept) if str(names[i]) != str(zones.ids[i])]
    if not changed:
        return
    shown = ", ".join(f"{zones.ids[i]!r} -> {names[i]}" for i in changed[:5]) + ("..." if len(changed) > 5 else "")
    warnings.warn(TilewiseWarning(
        f"{len(changed)} {zones.id_name} values are repeated, empty or not safe as file names; those chips are "
        f"named {shown} (each file's feature_id attribute holds the id as it is)."), stacklevel=4)


def _global_attributes(zones: Zones) -> np.ndarray:
    """Each feature's global attributes: the conventions, its id, and its fields (netCDF names)."""
    out = np.empty(len(zones), dtype=object)
    fields = list(zones.fields.items())
    for i in range(len(zones)):
        attrs: Dict[str, Any] = {"Conventions": "CF-1.8", "title": f"Tilewise chip of {zones.id_name} {zones.ids[i]}",
                                 "source": f"tilewise chips; zones {os.path.basename(zones.source)}",
                                 "feature_id": cf_attribute_value(zones.ids[i]), "id_field": zones.id_name}
        taken = list(attrs)
        for name, values in fields:
            value = values[i]
            if isinstance(values, np.ma.MaskedArray) and values.mask is not np.ma.nomask and values.mask[i]:
                value = None
            key = nc_name(name, taken)
            taken.append(key)
            attrs[key] = cf_attribute_value(value)
        out[i] = tuple((k, v) for k, v in attrs.items() if v is not None)
    return out


def _variable_names(first: str, bands: Sequence[int]) -> Tuple[str, ...]:
    """One netCDF variable per band: the band's description in the first input, else ``band_<n>``."""
    from ...io.sources import open_raster
    try:
        with open_raster(first) as src:
            descriptions = src.descriptions
    except Exception:  # noqa: BLE001 - the names are a nicety; the input was read before
        log.debug("No band descriptions read from %s", first, exc_info=True)
        descriptions = ()
    taken: List[str] = list(_RESERVED)
    out = []
    for b in bands:
        text = descriptions[b - 1] if b - 1 < len(descriptions) and descriptions[b - 1] else f"band_{b}"
        name = nc_name(text, taken)
        taken.append(name)
        out.append(name)
    return tuple(out)


def _time_keys(times: Sequence[float], dated: bool) -> Tuple[str, ...]:
    """The dates in file names: ``2024-05-12`` (``_2``... for a date given twice), or ``step0``, ``step1``..."""
    from ...dates import dates_from_days
    if not dated:
        return tuple(f"step{t}" for t in range(len(times)))
    out: List[str] = []
    for d in dates_from_days(times):
        key, k = d.isoformat(), 2
        while key in out:
            key = f"{d.isoformat()}_{k}"
            k += 1
        out.append(key)
    return tuple(out)


def file_names(plan: ChipPlan, fmt: str, time_keys: Sequence[str]) -> List[str]:
    """Every file the chips of ``plan`` are written to, in feature order."""
    if fmt == "training":
        return [TRAINING_FILE]
    return [name for z in np.flatnonzero(plan.windows[:, 2] > 0)
            for name in chip_file_names(str(plan.names[z]), fmt, time_keys)]


def _check_footprints(path: Optional[str], folder: str, infos) -> Optional[str]:
    """The footprints layer's path, checked: a table format, its folder there, not an input, not in the chips'
    folder (where it would be taken for a chip of an earlier run)."""
    if not path:
        return None
    from ...io.outputs import check_not_an_input, describe_inputs
    from ...io.vector import output_format
    output_format(path)
    if not os.path.isdir(os.path.dirname(path)):
        raise OutputError(f"The folder of the footprints layer {path} does not exist.")
    if os.path.dirname(path) == os.path.abspath(folder):
        raise OutputError(f"Write the footprints layer {path} beside the chips' folder, not into it.")
    check_not_an_input(path, describe_inputs(infos))
    return path


def _check_not_inputs(folder: str, infos) -> None:
    from ...io.outputs import local_file
    real = os.path.realpath(folder)
    for info in infos:
        for path in (info.path, *info.files):
            local = local_file(path)
            if local and os.path.realpath(local) == real:
                raise OutputError(f"The output folder {folder} is an input; choose another folder.")


def chips(inputs: Sequence[str], zones: Union[str, Zones], output: str, mode: Union[int, str] = "box",
          **options) -> RunReport:
    """The pixels around each feature of ``zones``, every date and band, as one netCDF file per feature.

    Parameters
    ----------
    inputs : list of str
        The series: one raster per date (paths, GDAL paths, URLs; the VRTs of ``stac_search``), any order.
    zones : str or Zones
        Points, lines or polygons, in any CRS.
    output : str
        The output folder: receives ``<id>.nc`` per feature (CF-1.8; dims time, y, x; one variable per
        band; the feature's id and fields as global attributes), or see ``format``. A file already
        there is replaced only if an earlier chips run wrote it.
    mode : {"box", "patch"} or 0, 1
        ``box``: the feature's bounding box grown by ``buffer`` (in ``buffer_units``: ``grid`` or
        ``metres``); ``patch``: ``size_x`` x ``size_y`` pixels centred on the pixel that holds the
        feature's centre, the same size for every feature (padded with nodata past the rasters).
    **options
        The chips' own (:class:`ChipsOptions`), the grid options ``crs``, ``cell_size``,
        ``resampling``, ``reference``, and the run options (``tile_size``, ``workers``, ``executor``,
        ``scheduler``, ``resume``...).

    Returns
    -------
    RunReport
        ``outputs``: the chip files, in feature order; ``rows``: how many.

    Examples
    --------
    >>> from tilewise.core import chips                                                  # doctest: +SKIP
    >>> chips(sorted(glob("s2_*.tif")), "points.gpkg", "chips/", "patch", size_x=10, size_y=10,
    ...       id_field="pid", mask_band=4, mask_preset="s2-scl", crs="EPSG:3035")          # doctest: +SKIP
    """
    own, shared = split_options(options, ChipsOptions, where="chips()", mode=mode)
    if shared.output != OutputOptions():
        raise ParameterError("chips() writes float netCDF files with NaN as nodata: it takes no output raster "
                             "options (output_type, output_nodata, compression...).")
    with logging_to(shared.run.log):
        job = plan_chips_job(inputs, zones, output, own, shared)
    return run_tiles(job, chips_tile, shared.run)


__all__ = ["ChipsOptions", "ChipsJob", "ChipPlan", "ChipSink", "chips", "chips_tile", "plan_chips_job", "MARKER",
           "CHIP_BUDGET"]

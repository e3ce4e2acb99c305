"""The ``extract`` operation: time series at points and polygons through the tile runner.

:func:`extract` plans the extraction (:func:`.pipeline.plan_extraction`), makes an
:class:`ExtractJob` whose tiles are the ``(grid, tile)`` windows that hold at
least one sample, and hands it to :func:`~tilewise.core.runtime.runner.run_tiles`:
local worker processes, a Dask cluster, or this process, with resume. Each tile
(:func:`extract_job_tile`) covers its samples once, reads its window once per
raster and writes its :class:`~tilewise.core.kernels.zonal.TilePart` as named
arrays into the work folder (the :class:`ExtractSink`, a table sink). Finishing
merges every part exactly (:class:`~tilewise.core.kernels.zonal.ZoneMerger`:
medians and percentiles from the values of every tile) and writes the table
(GeoPackage, CSV, Parquet; long or wide layout) and, if asked, the HTML plot.

Memory: a worker holds one tile window of one raster band at a time and the
aggregates of the tile's samples; the parent holds the statistics of every
sample and layer, and the values of samples that span tiles until their last
tile is merged (only when medians or percentiles are asked).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import shapely

from ...errors import OutputError, ParameterError
from ...grid import Grid, Tile
from ...io.vector import Zones, output_format, read_zones, write_table
from ...kernels.footprints import TileAssignment
from ...kernels.zonal import PIXEL_UNREAD, TilePart
from ...masks import parse_codes, preset_by_name
from ...options import GridOptions, OutputOptions, split_options
from ...phases import timed
from ...logs import logging_to
from ...runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ...runtime.sinks import TableSink, read_part, write_part
from ...vocabulary import EXTRACT_LAYOUTS
from .pipeline import DEFAULT_TILE_SIZE, ExtractPlan, ExtractResult, GridGroup, assemble_stats, \
    extract_tile, plan_extraction, warm_kernels
from .spec import ExtractSpec, choose

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractOptions:
    """The extraction's own options (the run options are shared: :class:`~tilewise.core.options.RunOptions`).

    What to compute: ``statistics`` (names or indices of
    :data:`~tilewise.core.vocabulary.EXTRACT_STATISTICS`), ``percentiles`` (0-100, with ``percentiles``),
    ``coverage`` (centre, all_touched, fractional), ``point_method`` (nearest,
    bilinear), ``window`` (n x n pixels around points), ``geometry_mode`` of lines
    and polygons (zonal, vertices), ``min_valid_fraction``. What to read:
    ``bands`` (default all but the mask band), ``input_nodata``, ``scale`` and
    ``offset``, a QA mask (``mask_band`` or ``mask_layers``, with ``mask_values``,
    ``mask_bits`` and ``mask_preset``), ``dates`` (one per raster; default from the file names or
    metadata). The zones: ``id_field``, ``layer`` (of a multi-layer file), ``zones_crs`` (their CRS
    instead of the file's: e.g. a shapefile without .prj whose CRS was set in QGIS). The
    output: ``layout`` (wide or long), ``output_plot`` (an HTML chart).
    """

    statistics: Union[str, Sequence[Any]] = ("mean",)
    percentiles: Sequence[float] = ()
    coverage: Union[int, str] = "centre"
    point_method: Union[int, str] = "nearest"
    window: int = 1
    geometry_mode: Union[int, str] = "zonal"
    min_valid_fraction: float = 0.0
    bands: Optional[Sequence[int]] = None
    input_nodata: Optional[float] = None
    scale: Optional[float] = None
    offset: Optional[float] = None
    mask_band: Optional[int] = None
    mask_layers: Optional[Sequence[str]] = None
    mask_values: Any = ()
    mask_bits: Any = ()
    mask_preset: Any = None
    dates: Optional[Any] = None
    id_field: Optional[str] = None
    layer: Optional[str] = None
    zones_crs: Optional[str] = None
    layout: Union[int, str] = "long"
    output_plot: Optional[str] = None

    def __post_init__(self) -> None:
        """Checked and in one form (names, tuples), so that the same job given in other words (``"mean,count"``
        or ``[0, 5]``, lists or tuples) is the same job for resume."""
        spec = ExtractSpec(self.statistics, tuple(self.percentiles), self.coverage, self.point_method,
                           self.window, self.geometry_mode, self.min_valid_fraction)
        values = dict(statistics=spec.statistics, percentiles=spec.percentiles, coverage=spec.coverage,
                      point_method=spec.point_method, window=spec.window, geometry_mode=spec.geometry_mode,
                      min_valid_fraction=spec.min_valid_fraction, layout=choose(self.layout, EXTRACT_LAYOUTS, "layout"),
                      bands=tuple(int(b) for b in self.bands) if self.bands else None,
                      mask_layers=tuple(self.mask_layers) if self.mask_layers else None,
                      mask_values=parse_codes(self.mask_values, "MASK_VALUES"),
                      mask_bits=parse_codes(self.mask_bits, "MASK_BITS"),
                      mask_preset=preset_by_name(self.mask_preset).name,
                      dates=tuple(self.dates) if self.dates is not None and not isinstance(self.dates, str)
                      else (self.dates or None))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def spec(self) -> ExtractSpec:
        return ExtractSpec(self.statistics, tuple(self.percentiles), self.coverage, self.point_method,
                           self.window, self.geometry_mode, self.min_valid_fraction)


@dataclass(frozen=True)
class ExtractSink(TableSink):
    """The table of an extraction, and its plot: ``merge`` turns the parts into an
    :class:`~.pipeline.ExtractResult`, laid out in ``layout``."""

    layout: str = "long"
    plot: Optional[str] = None
    #: the plan whose parts :meth:`tile_finished` merges while the next tiles run (None: all at the end)
    plan: Optional[ExtractPlan] = field(default=None, compare=False, repr=False)
    #: that merge so far: ``merger`` (a :class:`PartsMerger`), ``merged`` (tile indices in order), ``done``
    progress: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def outputs(self) -> Tuple[str, ...]:
        return (self.path,) + ((self.plot,) if self.plot else ())

    def tile_finished(self, workdir: str, tile: Tile) -> None:
        """Merge the parts of the finished tiles that come next in tile order (the order of :meth:`finish`,
        so the statistics are the same bit for bit), while the workers compute the other tiles."""
        if self.plan is None:
            return
        state = self.progress
        if "merger" not in state:
            state.update(merger=PartsMerger(self.plan), merged=[], done=set())
        state["done"].add(tile.index)
        merged = state["merged"]
        while len(merged) in state["done"]:          # tiles are numbered 0, 1, ... in the plan's order
            index = len(merged)
            state["merger"].add(read_part(self.target(workdir, replace(tile, index=index))))
            merged.append(index)

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        log.info(f"Merging the statistics of {len(tiles)} tiles into {self.path}")
        merger, merged = self.progress.get("merger"), self.progress.get("merged", [])
        if merger is not None and [t.index for t in tiles[:len(merged)]] == merged:
            for t in tiles[len(merged):]:
                merger.add(read_part(self.target(workdir, t)))
            result = merger.result()
        else:       # nothing merged yet (all tiles reused), or another order: every part, in tile order
            result = self.merge((t, read_part(self.target(workdir, t))) for t in tiles)
        self.progress.clear()
        table = result.table(self.layout, arrow=True)
        write_table(table, self.path, self.layer)
        if self.plot:
            result.plot(self.plot)
        return dict(rows=len(table))


@dataclass(frozen=True)
class ExtractJob(TiledJob):
    """An extraction for the runner. The plain fields identify it (the work folder's fingerprint: with the
    inputs' sizes and times, and a digest of the zones); ``plan`` is what the workers need (pixel-space
    footprints and tile assignments, no attributes), ``full`` the plan with the zones, kept in this
    process for the merge and never sent to workers."""

    inputs: Tuple[str, ...]
    zones: str
    zones_digest: str
    options: ExtractOptions
    outputs: Tuple[str, ...]
    grid: Grid
    planned_tile_size: int
    tasks: Tuple[Tuple[int, int], ...]
    plan: ExtractPlan = field(repr=False, compare=False)
    full: Optional[ExtractPlan] = field(default=None, repr=False, compare=False)
    #: in the job a task is sent (:meth:`for_tile`): the features of its plan, as numbered in the whole plan
    task_zones: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["full"] = None          # the zones' geometries and attributes stay in the parent
        return state

    def for_tile(self, tile: Tile) -> "ExtractJob":
        """The job the task of runner tile ``tile`` is sent: its plan holds only the features of that tile
        (numbered from 0; :attr:`task_zones` gives their numbers in the whole plan). Every feature's footprint
        and tile assignment, sent with every task, was 16 x 9.9 MB through the pool's pipes at 100,000 points."""
        if self.task_zones is not None:
            return self
        g, t = self.tasks[tile.index]
        zones = self.plan.groups[g].assignment.of_tile(t)
        groups = tuple(_group_part(group, t if k == g else None, zones if k == g else zones[:0])
                       for k, group in enumerate(self.plan.groups))
        return replace(self, plan=replace(self.plan, groups=groups), full=None, task_zones=zones)

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def sink(self) -> ExtractSink:
        plot = self.outputs[1] if len(self.outputs) > 1 else None
        return ExtractSink(self.output, partial(merge_parts, self.full), None, str(self.options.layout), plot,
                           self.full)

    @property
    def budget(self) -> TileBudget:
        return TileBudget(len(self.plan.bands), 8)

    @property
    def tile_size(self) -> Optional[int]:
        return self.planned_tile_size

    def warm(self) -> None:
        """The cover and reduction kernels loaded before the workers fork (:meth:`TiledJob.warm`)."""
        warm_kernels(self.plan)

    def tiles(self, tile_size: int) -> List[Tile]:
        """One runner tile per ``(grid, tile)`` task, numbered in task order, with that tile's window."""
        out = []
        for i, (g, t) in enumerate(self.tasks):
            w = self.plan.groups[g].tiles[t]
            out.append(Tile(i, w.row_off, w.col_off, w.height, w.width))
        return out


def _group_part(group: GridGroup, t: Optional[int], zones: np.ndarray) -> GridGroup:
    """``group`` with only the features ``zones`` (numbered from 0), all given to its tile ``t`` (None: none)."""
    offsets = np.zeros(len(group.tiles) + 1, np.int64)
    if t is not None:
        offsets[t + 1:] = len(zones)
    assignment = TileAssignment(offsets, np.arange(len(zones), dtype=np.int64), group.assignment.parts[zones])
    return replace(group, footprints=group.footprints.take(zones), assignment=assignment, whole=group.whole[zones],
                   weighted=group.weighted[zones], bilinear=group.bilinear[zones])


def extract_job_tile(job: ExtractJob, tile: Tile, target: str) -> int:
    """Compute runner tile ``tile`` (a ``(grid, tile)`` task) and write its part; return its index."""
    g, t = job.tasks[tile.index]
    part = extract_tile(job.plan, g, t)   # its rasters stay open for the next tiles (closed per run)
    arrays = {f.name: getattr(part, f.name) for f in fields(TilePart)}
    if job.task_zones is not None:        # the task's own plan (ExtractJob.for_tile): numbers of the whole plan
        arrays["zones"] = job.task_zones[arrays["zones"]]
    for name in unused_arrays(job.plan, g):   # left out of the part (see unused_arrays)
        del arrays[name]
    arrays["tile"] = np.int64(t)
    arrays["group"] = np.int64(g)
    with timed("tile writes"):
        write_part(target, arrays)
    return tile.index


def unused_arrays(plan: ExtractPlan, g: int = 0) -> Tuple[str, ...]:
    """The ``(samples, layers)`` arrays of a :class:`TilePart` of group ``g`` of ``plan`` that the merge
    does not read, left out of the parts it writes: the ones :class:`~tilewise.core.kernels.zonal.PixelMerger`
    does not read where every sample is one pixel (two thirds less to write, read and merge at points), else
    those that are all zeros: the sums of squared deviations without ``moments``, the counts of kept values
    without quantiles (a quarter less). :class:`PartsMerger` sees zeros in their place."""
    if plan.groups[g].pixels:
        return PIXEL_UNREAD
    return (() if plan.moments else ("m2",)) + (() if plan.spec.quantiles else ("vcount",))


#: the zero of each array :func:`unused_arrays` may leave out (the kernel's types)
_ZEROS = {n: np.zeros((), np.int64 if n == "vcount" else bool if n == "blocked" else np.float64)
          for n in ("m2", "vcount") + PIXEL_UNREAD}


class PartsMerger:
    """Tile parts merged exactly, per grid, as they are added (in tile order), into the statistics of
    every sample and layer."""

    def __init__(self, plan: ExtractPlan) -> None:
        self.plan = plan
        self.mergers = [plan.merger(g) for g in range(len(plan.groups))]
        self.names = [f.name for f in fields(TilePart)]

    def add(self, arrays: Dict[str, np.ndarray]) -> None:
        shape = arrays["n"].shape             # an array left out of the part: zeros, seen read-only
        values = {n: arrays[n] if n in arrays else np.broadcast_to(_ZEROS[n], shape) for n in self.names}
        values["tile"] = int(arrays["tile"])
        self.mergers[int(arrays["group"])].add(TilePart(**values))

    def result(self) -> ExtractResult:
        return ExtractResult(self.plan, assemble_stats(self.plan, [m.result() for m in self.mergers]))


def merge_parts(plan: ExtractPlan, parts: Iterator[Tuple[Tile, Dict[str, np.ndarray]]]) -> ExtractResult:
    """Every tile's part merged exactly, per grid, into the statistics of every sample and layer."""
    merger = PartsMerger(plan)
    for _tile, arrays in parts:
        merger.add(arrays)
    return merger.result()


def zones_digest(zones: Zones) -> str:
    """A hash of the zones' geometries, ids and CRS: a resumed run of other zones starts afresh."""
    h = hashlib.sha256()
    h.update(repr((zones.crs, zones.id_name, len(zones))).encode())
    h.update(b"".join(w or b"" for w in shapely.to_wkb(zones.geometry, hex=False)))
    h.update(repr(np.asarray(zones.ids).tolist()).encode())
    return h.hexdigest()


def check_outputs(output: str, plot: Optional[str], inputs: Sequence[str], zones: Optional[str]) -> Tuple[str, ...]:
    """The output table and plot paths, absolute; errors for an unknown format, a plot that is not HTML,
    an output that is an input, a folder that does not exist."""
    if not output:
        raise OutputError("No output table was given (.gpkg, .csv or .parquet).")
    output_format(output)
    paths = [os.path.abspath(output)]
    if plot:
        if os.path.splitext(plot)[1].lower() not in (".html", ".htm"):
            raise OutputError(f"The plot {plot} is an HTML page: give it a .html name.")
        paths.append(os.path.abspath(plot))
    if len(set(paths)) < len(paths):
        raise OutputError("The output table and the plot are the same file; give them different names.")
    taken = {os.path.abspath(p) for p in list(inputs) + ([zones] if zones else []) if "://" not in p}
    for p in paths:
        if p in taken:
            raise OutputError(f"The output {p} is also an input; write it elsewhere.")
        folder = os.path.dirname(p)
        if not os.path.isdir(folder):
            raise OutputError(f"The output folder {folder} does not exist.")
        if not os.access(folder, os.W_OK):
            raise OutputError(f"Cannot write into {folder}: permission denied.")
    return tuple(paths)


def plan_extract_job(inputs: Sequence[str], zones: Union[str, Zones], output: str, own: ExtractOptions,
                     tile_size: Optional[int]) -> ExtractJob:
    """Check the parameters and inputs and plan the job (nothing is written)."""
    outputs = check_outputs(output, own.output_plot, inputs, zones if isinstance(zones, str) else None)
    size = int(tile_size or DEFAULT_TILE_SIZE)
    source = zones if isinstance(zones, str) else zones.source
    if isinstance(zones, str):
        zones = read_zones(zones, layer=own.layer, id_field=own.id_field)
    if own.zones_crs:
        zones = replace(zones, crs=_checked_crs(own.zones_crs, source))
    plan = plan_extraction(list(inputs), zones, own.spec, bands=own.bands, dates=own.dates, id_field=own.id_field,
                           layer=own.layer, tile_size=size, input_nodata=own.input_nodata, scale=own.scale,
                           offset=own.offset, mask_band=own.mask_band, mask_layers=own.mask_layers,
                           mask_values=own.mask_values, mask_bits=own.mask_bits, mask_preset=own.mask_preset,
                           moments="std" in own.spec.statistics or bool(own.output_plot))
    return ExtractJob(tuple(inputs), source, zones_digest(plan.zones), own, outputs, plan.groups[0].grid, size,
                      tuple(plan.tasks()), plan.for_workers(), plan)


def _checked_crs(crs: str, source: str) -> str:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    try:
        return CRS.from_user_input(crs).to_wkt()
    except CRSError as exc:
        raise ParameterError(f"The CRS given for the zones {source} is not one GDAL knows: {crs!r} ({exc}).") from None


def extract(inputs: Sequence[str], zones: Union[str, Zones], output: str,
            statistics: Union[str, Sequence[Any]] = ("mean",), **options) -> RunReport:
    """Statistics of every feature of ``zones`` in every raster of ``inputs``, written to a table.

    Parameters
    ----------
    inputs : list of str
        The rasters (a time series: paths, GDAL paths or URLs), in any CRS and on any grid.
    zones : str or Zones
        A vector file of points, lines or polygons (any CRS: reprojected to each raster's),
        or :class:`~tilewise.core.io.vector.Zones`.
    output : str
        The table: ``.gpkg``, ``.csv``, ``.parquet`` (replaced atomically if it exists).
    statistics : str or list
        ``"mean,count"``, or names/indices of 0 mean, 1 median, 2 min, 3 max, 4 std,
        5 count, 6 sum, 7 percentiles (with ``percentiles``). Points without a
        ``window`` give their pixel's ``value``.
    **options
        The extraction's own (:class:`ExtractOptions`: ``percentiles``, ``coverage``,
        ``point_method``, ``window``, ``geometry_mode``, ``min_valid_fraction``, ``bands``,
        ``input_nodata``, ``scale``, ``offset``, ``mask_band``, ``mask_layers``, ``mask_values``,
        ``mask_bits``, ``mask_preset``, ``dates``, ``id_field``, ``layer``, ``zones_crs``, ``layout``,
        ``output_plot``) and the
        run options (``tile_size``, ``workers``, ``executor``, ``scheduler``, ``resume``,
        ``keep_workdir``, ``progress``, ``log``).

    Returns
    -------
    RunReport
        With ``rows``: the rows of the table; ``outputs``: the table (and the plot).

    Examples
    --------
    >>> from tilewise.core import extract                                           # doctest: +SKIP
    >>> extract(sorted(glob("scenes/*.tif")), "fields.gpkg", "ts.parquet", "mean,count",
    ...         id_field="pid", coverage="centre", layout="long", workers=2)       # doctest: +SKIP
    """
    from ..swath.extract import extract_swath, is_swath_run
    if is_swath_run(inputs, options):    # SAFE folders, netCDF on latitude/longitude grids
        if options.get("output_plot"):   # checked before any work: the plot is written after the table
            check_outputs(output, options["output_plot"], [str(p) for p in inputs],
                          zones if isinstance(zones, str) else None)
        return extract_swath(inputs, zones, output, statistics, **options)
    own, shared = split_options(options, ExtractOptions, where="extract()", statistics=statistics)
    if shared.grid != GridOptions() or shared.output != OutputOptions():
        raise ParameterError("extract() reads every raster on its own grid and writes a table: it takes no "
                             "target grid or output raster options.")
    with logging_to(shared.run.log):
        job = plan_extract_job(inputs, zones, output, own, shared.run.tile_size)
    return run_tiles(job, extract_job_tile, shared.run)

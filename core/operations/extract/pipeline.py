"""Planning an extraction, computing one tile, and a single-process run over all tiles.

The three stages are separate so a tile runner can take over the middle one:

1. :func:`plan_extraction` (parent process, cheap): reads the raster headers,
   groups rasters that share a grid, moves the samples into each grid's pixel
   space (reprojecting once per CRS), and assigns them to the tiles of that
   grid (:func:`.footprints.assign_tiles`). Only tiles holding a sample are
   tasks.
2. :func:`extract_tile` (a worker): covers the tile once (:func:`.pixel_cover.cover_tile`),
   reads the tile window of each raster of the group once, band by band, and
   reduces every sample's pixels (:func:`.zonal.reduce_tile`). It returns a
   picklable :class:`.zonal.TilePart`.
3. :class:`.zonal.ZoneMerger` (parent): merges the parts exactly as they come (:class:`.zonal.PixelMerger`
   where every sample is one pixel in one tile);
   :func:`assemble_stats` puts the groups' results side by side.

:func:`extract_stats` runs the three in this process, tile after tile: the runner's task loop
(:func:`~tilewise.core.runtime.runner.run_tasks`) on its serial executor.
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import shapely

from ...dates import found_date, merge_given, overridden_message, parse_date, tags_unless_named
from ...errors import CancelledError, InputError, MaskError, ParameterError, TilewiseWarning
from ...grid import Grid, Tile, plan_tiles
from ...kernels.pixel_cover import MODE_FRACTIONAL, footprint_total, cover_tile
from ...kernels.footprints import KIND_EMPTY, KIND_LINE, KIND_POINT, KIND_POLYGON, Footprints, TileAssignment, \
    assign_tiles, footprints_from_pixels, to_pixel_space
from .layout import build_table
from ...vocabulary import EXTRACT_COVERAGES, EXTRACT_POINT_METHODS
from .spec import ExtractSpec
from ...io.vector import Samples, Table, Zones, check_zone_coordinates, make_samples, read_zones, reproject, same_crs, \
    to_date64, write_table
from ...kernels.zonal import PixelMerger, TilePart, ZoneMerger, ZoneStats, reduce_tile
from ...masks import QaMask, plan_qa_mask, qa_mask
from ...phases import timed

DEFAULT_TILE_SIZE = 1024


@dataclass(frozen=True)
class RasterSource:
    """One input raster as the extraction sees it."""

    path: str
    source: str
    count: int
    nodata: Optional[float]
    crs: str
    transform: Tuple[float, ...]
    width: int
    height: int
    dtypes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class GridGroup:
    """Rasters on one grid, with the samples in its pixel space and their tile assignment."""

    grid: Grid
    rasters: Tuple[int, ...]
    footprints: Footprints
    tiles: Tuple[Tile, ...]
    assignment: TileAssignment
    whole: np.ndarray
    weighted: np.ndarray
    bilinear: np.ndarray
    #: every sample is one pixel in one tile (points, nearest pixel, no window): merged by
    #: :class:`~tilewise.core.kernels.zonal.PixelMerger` from parts of fewer arrays
    pixels: bool = False

    def layers(self, n_bands: int) -> np.ndarray:
        """Global layer indices of this group's rasters x bands, in the order of its parts."""
        r = np.asarray(self.rasters, np.int64)
        return (r[:, None] * n_bands + np.arange(n_bands)[None, :]).ravel()


@dataclass(frozen=True)
class ExtractPlan:
    """Everything a tile needs: rasters, bands, what to compute, the samples on each grid."""

    rasters: Tuple[RasterSource, ...]
    dates: np.ndarray
    bands: Tuple[int, ...]
    spec: ExtractSpec
    zones: Zones
    samples: Samples
    groups: Tuple[GridGroup, ...]
    tile_size: int
    input_nodata: Optional[float] = None
    scale: Optional[float] = None
    offset: Optional[float] = None
    mask_band: Optional[int] = None
    mask_layers: Tuple[str, ...] = ()
    mask: QaMask = QaMask()
    #: the sums of squared deviations are computed (the std, and the plot's error bars, need them)
    moments: bool = True

    @property
    def n_layers(self) -> int:
        return len(self.rasters) * len(self.bands)

    def tasks(self) -> List[Tuple[int, int]]:
        """``(group, tile)`` of every tile that holds at least one sample, group by group, row-major."""
        out = []
        for g, group in enumerate(self.groups):
            counts = np.diff(group.assignment.offsets)
            out.extend((g, int(t)) for t in np.flatnonzero(counts))
        return out

    def for_workers(self) -> "ExtractPlan":
        """The plan without the zones' geometries and attributes, which :func:`extract_tile` does not
        need: what to send to worker processes or Dask tasks (the groups' pixel-space footprints stay)."""
        return replace(self, zones=None, samples=None)  # type: ignore[arg-type]

    def merger(self, g: int) -> Union[ZoneMerger, PixelMerger]:
        group = self.groups[g]
        if group.pixels:
            return PixelMerger(len(group.footprints), len(group.rasters) * len(self.bands), group.assignment.parts,
                               group.whole, self.spec.quantiles, self.spec.min_valid_fraction, self.moments)
        return ZoneMerger(len(group.footprints), len(group.rasters) * len(self.bands), group.assignment.parts,
                          group.whole, self.spec.quantiles, self.spec.min_valid_fraction, group.bilinear,
                          self.moments)


def source_name(path: str) -> str:
    """The raster's file name without extension (for URLs, the last path element).

    >>> source_name("/data/S2_20200105.tif"), source_name("https://h/x/T33_B04.tif?sig=1")
    ('S2_20200105', 'T33_B04')
    """
    name = path.split("?")[0].rstrip("/").split("/")[-1]
    return os.path.splitext(name)[0] or name


def plan_extraction(rasters: Sequence[str], zones: Union[str, Zones], spec: Optional[ExtractSpec] = None, *,
                    bands: Optional[Sequence[int]] = None, dates: Optional[Sequence[Any]] = None,
                    id_field: Optional[str] = None, layer: Optional[str] = None,
                    tile_size: int = DEFAULT_TILE_SIZE, input_nodata: Optional[float] = None,
                    scale: Optional[float] = None, offset: Optional[float] = None,
                    mask_band: Optional[int] = None, mask_layers: Optional[Sequence[str]] = None,
                    mask_values: Any = (), mask_bits: Any = (), mask_preset: Any = None,
                    moments: bool = True) -> ExtractPlan:
    """Plan the extraction of ``zones`` (a path or :class:`.vector.Zones`) from ``rasters``.

    ``bands`` (1-based, the same for every raster; all but the mask band by default),
    ``dates`` (one per raster: ``datetime.date``, ISO text or None; by default each
    raster's date comes from its file name, else its metadata, else it has none).
    A QA mask: ``mask_band`` of each raster, or ``mask_layers`` (one per raster, on
    its grid), and the ``mask_values`` (classes), ``mask_bits`` and ``mask_preset`` to drop.
    ``moments=False`` skips the sums of squares when neither the std nor a plot is wanted
    (the std is then null).
    """
    from ...io.sources import describe_raster

    spec = spec or ExtractSpec()
    if not rasters:
        raise InputError("Give at least one raster to extract from.")
    if tile_size < 8:
        raise ParameterError(f"Tile size must be at least 8 pixels, got {tile_size}.")
    if isinstance(zones, str):
        zones = read_zones(zones, layer=layer, id_field=id_field)
    infos = [describe_raster(p) for p in rasters]
    sources = tuple(RasterSource(i.path, source_name(i.path), i.count, i.nodata, i.crs, tuple(i.transform),
                                 i.width, i.height, tuple(i.dtypes)) for i in infos)
    if any(not same_crs(zones.crs, s.crs) for s in sources):   # rasters in its own CRS need no range
        check_zone_coordinates(zones)
    masks = tuple(mask_layers or ())
    mask = _plan_mask(sources, infos, mask_band, masks, mask_values, mask_bits, mask_preset)
    band_list = _bands(sources, bands, mask_band)
    date_array = _dates(dates, len(sources), [s.path for s in sources])
    samples = make_samples(zones, spec.geometry_mode, spec.window)
    if not zones.crs:
        warnings.warn(f"The zones layer {zones.source} has no CRS; its coordinates are taken to be in each "
                      "raster's CRS.", TilewiseWarning, stacklevel=2)
    groups = tuple(_plan_group(sources, members, samples, zones.crs, spec, tile_size, zones.source)
                   for members in _group_by_grid(sources))
    warn_outside(zones, samples, groups, len(sources))
    return ExtractPlan(sources, date_array, band_list, spec, zones, samples, groups, int(tile_size),
                       input_nodata, scale, offset, mask_band, masks, mask, bool(moments))


def warn_outside(zones: Zones, samples: Samples, groups: Sequence[GridGroup], n_rasters: int) -> None:
    """Warn when features lie outside every raster: their values are null, and a table of nulls
    should not pass for a result."""
    touched = np.zeros(len(samples), bool)
    for group in groups:
        touched |= group.assignment.parts > 0
    inside = np.zeros(len(zones), bool)
    inside[samples.feature[touched]] = True
    outside = np.flatnonzero(~inside & (zones.kinds != KIND_EMPTY))
    shaped = int(np.count_nonzero(zones.kinds != KIND_EMPTY))
    if len(outside) == 0:
        return
    rasters = "the raster" if n_rasters == 1 else f"any of the {n_rasters} rasters"
    if len(outside) == shaped:
        message = (f"None of the {shaped} features of the zones layer {zones.source} lies on {rasters}: every "
                   "value of the output is null. Check that the zones and the rasters cover the same area, and "
                   "that the zones layer has the right CRS.")
    else:
        shown = ", ".join(str(v) for v in zones.ids[outside[:5]])
        message = (f"{len(outside)} of {shaped} features of the zones layer {zones.source} lie outside every "
                   f"raster: their values are null ({zones.id_name} {shown}{'...' if len(outside) > 5 else ''}).")
    warnings.warn(TilewiseWarning(message), stacklevel=3)


def _plan_mask(sources: Sequence[RasterSource], infos, mask_band: Optional[int], masks: Tuple[str, ...],
               values: Any, bits: Any, preset: Any = None) -> QaMask:
    """The QA mask, checked: one source of QA (a band of each raster, or one layer per raster on its grid)."""
    from ...io.sources import describe_raster
    if mask_band is not None and masks:
        raise MaskError("Give either a mask band of the rasters or a list of mask layers, not both.")
    if not masks and mask_band is None:
        mask = plan_qa_mask(values, bits, preset)
        if not mask.empty:
            raise MaskError("Mask values, bits or a preset were given but no mask band or mask layers to read "
                            "them from.")
        return mask
    if masks and len(masks) != len(sources):
        raise MaskError(f"{len(masks)} mask layers were given for {len(sources)} rasters; give one mask layer per "
                        "raster, in the same order.")
    if mask_band is not None:
        short = [s for s in sources if not 1 <= mask_band <= s.count]
        if short:
            raise MaskError(f"Mask band {mask_band} does not exist in {short[0].path}, which has {short[0].count} "
                            "band(s).")
        dtype, where = infos[0].dtypes[mask_band - 1], f"band {mask_band} of {sources[0].path}"
    else:
        for s, m in zip(sources, masks):
            info = describe_raster(m)
            if (info.width, info.height) != (s.width, s.height) or \
                    not np.allclose(tuple(info.transform)[:6], s.transform[:6]):
                raise MaskError(f"The mask layer {m} is not on the grid of its raster {s.path} "
                                f"({info.width} x {info.height} pixels against {s.width} x {s.height}, or another "
                                "origin or pixel size); give each raster the mask of its own grid.")
        dtype, where = describe_raster(masks[0]).dtypes[0], f"the mask layer {masks[0]}"
    mask = plan_qa_mask(values, bits, preset, dtype=dtype, layer=where)
    if mask.empty:
        raise MaskError("A mask is set but no mask values, bits or preset: list the classes to drop, e.g. "
                        "0,1,3,8,9,10, or choose a preset.")
    return mask


def _bands(sources: Sequence[RasterSource], bands: Optional[Sequence[int]],
           mask_band: Optional[int] = None) -> Tuple[int, ...]:
    if bands is None or len(bands) == 0:
        counts = {s.count for s in sources}
        if len(counts) > 1:
            raise InputError(f"The rasters have different band counts ({', '.join(map(str, sorted(counts)))}); "
                             "choose BANDS that all of them have.")
        chosen = tuple(b for b in range(1, sources[0].count + 1) if b != mask_band)
        if not chosen:
            raise InputError("No band is left to extract (the only band is the mask band).")
        return chosen
    out = tuple(int(b) for b in bands)
    for s in sources:
        missing = [b for b in out if not 1 <= b <= s.count]
        if missing:
            raise InputError(f"Band {missing[0]} does not exist in {s.path}, which has {s.count} band(s).")
    return out


def _dates(dates: Optional[Sequence[Any]], n: int, paths: Sequence[str] = ()) -> np.ndarray:
    """Each raster's date from its file name, else its metadata (ACQUISITIONDATETIME...), else its
    ``dates`` entry (a date, ISO text, or None for none), else none (NaT): the order of
    :mod:`tilewise.core.dates`. A ``dates`` entry the name or metadata contradicts is not used, with
    a warning naming the file."""
    if isinstance(dates, str):
        dates = [t for t in dates.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    found = [found_date(p, tags_unless_named(p)) for p in paths]
    if dates is None or len(dates) == 0:
        return to_date64([f[0] if f else None for f in found]) if paths else np.full(n, np.datetime64("NaT", "D"))
    if len(dates) != n:
        raise ParameterError(f"{len(dates)} dates for {n} rasters: give one date per raster (or none).")
    try:
        given = [None if d is None or d == "" else
                 (parse_date(d, f"entry {i + 1} of DATES") if isinstance(d, str) else d)
                 for i, d in enumerate(dates)]
    except ValueError as exc:
        raise ParameterError(f"Cannot read a date: {exc}") from None
    if not paths:
        return to_date64(given)
    out, _, overridden = merge_given(found, given)
    for i, entry, where in overridden:
        warnings.warn(TilewiseWarning(overridden_message(paths[i], entry, out[i], where)), stacklevel=3)
    return to_date64(list(out))


def _group_by_grid(sources: Sequence[RasterSource]) -> List[Tuple[int, ...]]:
    groups: Dict[tuple, List[int]] = {}
    keys: List[tuple] = []
    for i, s in enumerate(sources):
        key = None
        for k in keys:
            if k[1:] == (tuple(round(v, 9) for v in s.transform), s.width, s.height) and same_crs(k[0], s.crs):
                key = k
                break
        if key is None:
            key = (s.crs, tuple(round(v, 9) for v in s.transform), s.width, s.height)
            keys.append(key)
        groups.setdefault(key, []).append(i)
    return [tuple(v) for v in groups.values()]


def _plan_group(sources: Sequence[RasterSource], members: Tuple[int, ...], samples: Samples,
                zones_crs: Optional[str], spec: ExtractSpec, tile_size: int, source: str = "zones") -> GridGroup:
    first = sources[members[0]]
    grid = Grid(first.crs, tuple(first.transform), first.width, first.height)  # type: ignore[arg-type]
    if not first.crs and zones_crs:
        warnings.warn(f"{first.path} has no CRS; the zones are taken to be in its coordinates.",
                      TilewiseWarning, stacklevel=3)
    moved = reproject(samples.geometry, zones_crs, first.crs or zones_crs, source)
    pixels = to_pixel_space(moved, first.transform)
    # Samples far from this raster are left out of its footprints: with many grids (scenes of
    # different extents) each group holds only the geometry it can see.
    with np.errstate(invalid="ignore"):
        b = shapely.bounds(pixels)
        near = (b[:, 2] >= -window_pad(spec)) & (b[:, 0] <= first.width + window_pad(spec)) & \
            (b[:, 3] >= -window_pad(spec)) & (b[:, 1] <= first.height + window_pad(spec))
    pixels = np.where(near, pixels, None)
    fp = footprints_from_pixels(pixels, first.height, first.width)
    assignment = assign_tiles(fp, tile_size, spec.point_method, spec.window)
    coverage = EXTRACT_COVERAGES.index(spec.coverage)
    method = EXTRACT_POINT_METHODS.index(spec.point_method)
    whole = _whole_footprints(fp, assignment, coverage, method, spec.window)
    shaped = (fp.kind == KIND_POLYGON) | (fp.kind == KIND_LINE)
    weighted = shaped & (coverage == MODE_FRACTIONAL)
    bilinear = (fp.kind == KIND_POINT) & (spec.point_method == "bilinear")
    pixels = spec.point_method == "nearest" and spec.window == 1 and \
        bool(np.all((fp.kind == KIND_POINT) | (fp.kind == KIND_EMPTY))) and bool(np.all(assignment.parts <= 1))
    return GridGroup(grid, members, fp, tuple(plan_tiles(grid, tile_size)), assignment, whole,
                     weighted | bilinear, bilinear, pixels)


def window_pad(spec: ExtractSpec) -> float:
    """How far (in pixels) outside the raster a sample can still read a pixel of it."""
    return float(spec.window) + 1.0


def _whole_footprints(fp: Footprints, assignment: TileAssignment, coverage: int, method: int,
                      window: int) -> np.ndarray:
    """Whole footprint of samples that reach past the raster's edge (NaN: the sum over its tiles will do)."""
    whole = np.full(len(fp), np.nan)
    points = fp.kind == KIND_POINT
    whole[points] = 1.0 if (method == 1 or window == 1) else float(window * window)
    bb = fp.bbox
    with np.errstate(invalid="ignore"):
        outside = ((bb[:, 0] < 0) | (bb[:, 1] < 0) | (bb[:, 2] > fp.width) | (bb[:, 3] > fp.height)) & ~points
    edge = np.flatnonzero(outside & np.all(np.isfinite(bb), axis=1))
    if len(edge):
        whole[edge] = footprint_total(fp, edge, coverage, method, window)
    return whole


# -- one tile -----------------------------------------------------------------------------------------------

Reader = Callable[["ExtractPlan", GridGroup, int, Tile], Sequence[np.ndarray]]


def extract_tile(plan: ExtractPlan, g: int, t: int, reader: Optional[Reader] = None) -> TilePart:
    """The part of tile ``t`` of group ``g``: cover once, read each raster's window once, reduce.

    ``reader(plan, group, raster_index, tile)`` returns the tile's bands of one
    raster: 2-D arrays (NaN where there is no data), masked arrays or ``(values,
    valid)`` pairs; by default :func:`read_bands`.
    """
    group = plan.groups[g]
    tile = group.tiles[t]
    zones = group.assignment.of_tile(t)
    spec = plan.spec
    cover = cover_tile(group.footprints, zones, tile.row_off, tile.col_off, tile.height, tile.width,
                       EXTRACT_COVERAGES.index(spec.coverage), EXTRACT_POINT_METHODS.index(spec.point_method),
                       spec.window)
    read = reader or read_bands

    def layers() -> Iterator[np.ndarray]:
        for r in group.rasters:
            yield from read(plan, group, r, tile)
    complete = group.assignment.parts[zones] == 1
    weighted = group.weighted[zones] | cover.fallback
    return reduce_tile(cover, layers(), n_layers=len(group.rasters) * len(plan.bands), complete=complete,
                       weighted=weighted, quantiles=spec.quantiles, tile=t, moments=plan.moments)


def warm_kernels(plan: ExtractPlan) -> None:
    """Load the kernels a tile of ``plan`` runs (the cover, and the reduction for each type of values
    :func:`read_bands` gives) into this process, on a one-pixel feature: local workers forked from
    it inherit them, instead of each loading them from numba's cache."""
    fp = footprints_from_pixels([shapely.box(0, 0, 1, 1)], 1, 1)
    cover = cover_tile(fp, np.zeros(1, np.int64), 0, 0, 1, 1)
    for dtype in _layer_dtypes(plan):
        reduce_tile(cover, [np.zeros((1, 1), dtype)], complete=np.ones(1, bool), weighted=np.zeros(1, bool),
                    quantiles=plan.spec.quantiles, moments=plan.moments)


def _layer_dtypes(plan: ExtractPlan) -> List[str]:
    """The types of the layers :func:`read_bands` gives: the rasters' (rasterio reads the bands asked
    in one type), float64 once scaled."""
    if plan.scale is not None or plan.offset is not None:
        return ["float64"]
    found = {str(np.result_type(*[r.dtypes[b - 1] for b in plan.bands])) for r in plan.rasters if r.dtypes}
    return sorted(found)


def read_bands(plan: ExtractPlan, group: GridGroup, r: int, tile: Tile) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The tile window of the plan's bands of raster ``r``: ``(values, valid)`` per band, in the raster's type.

    No data: the raster's nodata value (or ``plan.input_nodata`` instead), its
    mask when it has no nodata value, and NaN. ``scale`` and ``offset`` then apply
    (as float64).
    """
    from rasterio.windows import Window
    from ...io.sources import read_masked

    with timed("read"):  # opening (kept open per process) and decoding the window
        src = _dataset(plan.rasters[r].path)
    window = Window(tile.col_off, tile.row_off, tile.width, tile.height)
    try:
        with timed("read"):
            raw, missing = read_masked(src, plan.bands, window, plan.input_nodata)
    except Exception as exc:                                   # noqa: BLE001 - say which raster and tile
        raise InputError(f"Cannot read {tile.name} of {src.name}: {exc}") from exc
    if missing is None:
        valid = np.ones(raw.shape, bool)
    elif missing.ndim == 2:                                    # the dataset's mask: the same for every band
        # a writable copy per band: a read-only broadcast view is another numba type (a specialization the
        # warm-up does not compile)
        valid = np.repeat(~missing[None, :, :], raw.shape[0], axis=0)
    else:
        valid = ~missing
    if not plan.mask.empty:
        valid = valid & ~_masked(plan, r, window)[None, :, :]
    if plan.scale is not None or plan.offset is not None:
        raw = raw * (1.0 if plan.scale is None else plan.scale) + (0.0 if plan.offset is None else plan.offset)
    return [(raw[i], valid[i]) for i in range(raw.shape[0])]


def _masked(plan: ExtractPlan, r: int, window) -> np.ndarray:
    """True where the QA band (of raster ``r``, or its mask layer) marks the pixel to drop."""
    path, band = (plan.mask_layers[r], 1) if plan.mask_layers else (plan.rasters[r].path, plan.mask_band)
    src = _dataset(path)
    try:
        qa = src.read(band, window=window)
    except Exception as exc:                                   # noqa: BLE001 - say which mask and tile
        raise InputError(f"Cannot read the QA band {band} of {path}: {exc}") from exc
    return qa_mask(qa, plan.mask, np.dtype(src.dtypes[band - 1]).itemsize * 8)


def _dataset(path: str):
    """The open dataset of ``path``, kept open across the run's tiles
    (:func:`~tilewise.core.io.sources.open_dataset`)."""
    from ...io.sources import open_dataset
    return open_dataset(path)


def close_datasets() -> None:
    """Close the datasets this process keeps open (at the end of an in-process run)."""
    from ...io.sources import close_all
    close_all()


# -- all tiles in one process -------------------------------------------------------------------------------

def assemble_stats(plan: ExtractPlan, results: Sequence[ZoneStats]) -> ZoneStats:
    """The groups' statistics side by side in global layer order (raster-major, then band)."""
    n_s, n_l = len(plan.samples), plan.n_layers
    n_q = len(plan.spec.quantiles)
    if len(results) == 1 and np.array_equal(plan.groups[0].layers(len(plan.bands)), np.arange(n_l)):
        return results[0]                   # one grid holds every layer in order: nothing to move

    def empty(dtype=np.float64, fill=np.nan, extra=()):
        return np.full((n_s, n_l) + extra, fill, dtype=dtype)
    out = ZoneStats(empty(), empty(), empty(), empty(), empty(fill=0.0), empty(), empty(np.int64, 0),
                    empty(fill=0.0), empty(extra=(n_q,)), empty(bool, False))
    for group, res in zip(plan.groups, results):
        cols = group.layers(len(plan.bands))
        for name in ("mean", "std", "vmin", "vmax", "count", "total", "n_valid", "valid_fraction",
                     "quantiles", "valid"):
            getattr(out, name)[:, cols] = getattr(res, name)
    return out


@dataclass
class ExtractResult:
    """The statistics of every sample and layer, with what is needed to lay them out."""

    plan: ExtractPlan
    stats: ZoneStats

    @property
    def sources(self) -> List[str]:
        return [r.source for r in self.plan.rasters]

    def table(self, layout: Union[int, str] = "long", arrow: bool = False) -> Table:
        """The result as a :class:`.vector.Table` in the ``layout`` (0/"wide" or 1/"long"): numpy columns, or
        with ``arrow`` the long layout's ``source`` as an Arrow string column, as the file writers take it."""
        p = self.plan
        return build_table(layout, p.zones, p.samples, self.stats, p.spec, self.sources, p.dates, p.bands, arrow)

    def write(self, path: str, layout: Union[int, str] = "long") -> str:
        """Write the table to ``path`` (.gpkg, .csv, .parquet...); return its path."""
        return write_table(self.table(layout, arrow=True), path)

    def plot(self, path: str, **options) -> str:
        """Write an HTML chart of each feature's series (see :func:`.plot.write_plot`)."""
        from .plot import write_plot
        return write_plot(self, path, **options)


def extract_stats(rasters: Sequence[str], zones: Union[str, Zones], spec: Optional[ExtractSpec] = None, *,
                  progress: Optional[Callable[..., Any]] = None, reader: Optional[Reader] = None,
                  **options) -> ExtractResult:
    """Extract ``spec``'s statistics of ``zones`` from every raster, in this process.

    ``options`` are those of :func:`plan_extraction`; ``progress`` and ``reader`` those of :func:`run_plan`.

    >>> r = extract_stats(sorted(glob("scenes/*.tif")), "fields.gpkg", ExtractSpec(["mean", "count"]),
    ...                   id_field="pid")                                        # doctest: +SKIP
    >>> r.write("ts.parquet", layout="long")                              # doctest: +SKIP
    """
    report = _progress_of(progress, stacklevel=3)       # the caller's form, checked before the planning
    plan = plan_extraction(rasters, zones, spec, **options)
    return _run(plan, report, reader)


def run_plan(plan: ExtractPlan, progress: Optional[Callable[..., Any]] = None,
             reader: Optional[Reader] = None) -> ExtractResult:
    """Every task of ``plan`` in this process, merged: the runner's task loop
    (:func:`~tilewise.core.runtime.runner.run_tasks`) on its serial executor.

    ``progress(done, total)`` is called before the first tile and after every tile, as in every
    operation; if it returns False the run stops with :class:`CancelledError`. (The older
    ``progress(fraction)`` of one argument still works, with a :class:`DeprecationWarning`.)
    ``reader``: see :func:`extract_tile`.
    """
    return _run(plan, _progress_of(progress, stacklevel=3), reader)


def _run(plan: ExtractPlan, report: Callable[[int, int], None], reader: Optional[Reader]) -> ExtractResult:
    """:func:`run_plan` with the caller's progress already in the ``report(done, total)`` form."""
    from ...runtime.executor_base import SerialExecutor
    from ...runtime.runner import run_tasks

    tasks = [(plan, g, t, reader) for g, t in plan.tasks()]
    mergers = [plan.merger(g) for g in range(len(plan.groups))]
    try:
        if tasks:
            report(0, len(tasks))
        for g, part in run_tasks(SerialExecutor(), _group_part, tasks, report):
            mergers[g].add(part)
    finally:
        close_datasets()
    return ExtractResult(plan, assemble_stats(plan, [m.result() for m in mergers]))


def _group_part(plan: ExtractPlan, g: int, t: int, reader: Optional[Reader]) -> Tuple[int, TilePart]:
    return g, extract_tile(plan, g, t, reader)


def _progress_of(progress: Optional[Callable[..., Any]], stacklevel: int = 2) -> Callable[[int, int], None]:
    """``progress(done, total)`` that stops the run when the caller's returns False; a caller's
    ``progress(fraction)`` (the older form) is adapted, with a :class:`DeprecationWarning`."""
    if progress is None:
        return lambda done, total: None
    fraction = _takes_one_argument(progress)
    if fraction:
        warnings.warn("extract_stats() and run_plan() call progress(done, total) now, like every operation; "
                      "progress(fraction) of one argument is deprecated.", DeprecationWarning, stacklevel=stacklevel)

    def report(done: int, total: int) -> None:
        if (progress(done / total) if fraction else progress(done, total)) is False:
            raise CancelledError("The extraction was cancelled; nothing was written.")
    return report


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` can be called with one positional argument but not with two.

    >>> _takes_one_argument(lambda f: None), _takes_one_argument(lambda d, t: None), _takes_one_argument(print)
    (True, False, False)
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):      # a builtin without a signature: taken as progress(done, total)
        return False

    def binds(n: int) -> bool:
        try:
            signature.bind(*range(n))
        except TypeError:
            return False
        return True
    return binds(1) and not binds(2)

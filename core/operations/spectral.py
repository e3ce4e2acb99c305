"""Composites that keep the spectrum: geometric median, medoid and best-available pixel, with MADs.

A per-band median takes each band from another date; these keep a pixel's bands together:

- ``geomedian``: the multi-band point that minimises the summed Euclidean distance to the pixel's
  observations (Weiszfeld's iteration, then Newton's near the median; ``tolerance``, ``max_iterations``);
- ``medoid``: the observation whose summed distance to the others is smallest (equal sums: the
  earliest date wins; an undated series: the first input);
- ``quality``: the observation with the best score: a band (``quality_band``), an expression over
  the bands (``quality_expression``, numexpr, bands named ``B1``, ``B2``...), or a weighted sum of
  the closeness of its day of year to ``target_date``'s (``doy_weight``), its distance in pixels to
  the nearest masked or nodata pixel of the same date, up to ``cloud_distance`` (``cloud_weight``),
  and ``1 - opacity`` of an opacity band (``opacity_band``, ``opacity_weight``). Equal scores: the
  earliest date.

An observation masked or nodata in any composited band is left out of the pixel; a pixel
without any is nodata. Distances and scores take each input's values with its bands' scale and
offset (so items of different processing baselines compare); the outputs are in the units of the
first input (its scale and offset undone). Optional outputs:
``output_mads`` (EMAD, SMAD, BCMAD of the observations around the composite), ``output_count``
(complete observations) and ``output_source`` (for medoid and quality: the day number, days since
1970-01-01, of the chosen observation; the 1-based input number for an undated series).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..dates import parse_date, read_dates
from ..errors import InputError, OutputError, ParameterError, TileError, TilewiseError
from ..grid import Grid, Tile
from ..io.cog import check_writable, to_output
from ..io.coverage import check_inputs_meet, check_output_size
from ..io.outputs import check_not_an_input, describe_inputs
from ..io.sources import describe_raster, open_raster, read_qa_mask, read_window
from ..masks import MaskSpec
from ..options import Options, OutputSpec, plan_grid, split_options
from ..logs import logging_to
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ..runtime.sinks import CogOutput, CogSink
from ..vocabulary import OUTPUT_TYPES, SPECTRAL_STATISTICS
from .series import CompositeOptions, choose_bands, plan_input_mask

log = logging.getLogger(__name__)

_WIDE_TYPES = {"int32", "uint32", "int64", "uint64", "float64"}
#: Names of the MADs output's bands.
MAD_NAMES = ("EMAD", "SMAD", "BCMAD")
SOURCE_NODATA = float(np.iinfo(np.int32).min)


@dataclass(frozen=True)
class SpectralOptions(CompositeOptions):
    """The composite's options (:class:`~.series.CompositeOptions`) and those of the spectral statistics
    (see the module's description)."""

    tolerance: float = 1e-7
    max_iterations: int = 500
    quality_band: Optional[int] = None
    quality_expression: Optional[str] = None
    target_date: Optional[str] = None
    doy_weight: float = 0.0
    cloud_weight: float = 0.0
    cloud_distance: int = 50
    opacity_band: Optional[int] = None
    opacity_weight: float = 0.0
    dates: Any = None
    output_mads: Optional[str] = None
    output_count: Optional[str] = None
    output_source: Optional[str] = None


#: Option names only the spectral statistics take (the Python API refuses them for the others).
SPECTRAL_OPTIONS = tuple(f.name for f in fields(SpectralOptions) if f.name not in
                         {g.name for g in fields(CompositeOptions)})


@dataclass(frozen=True)
class Score:
    """How ``quality`` scores an observation: ``band`` (an index into the bands read), or ``expression``
    over ``names`` (indices into the bands read), or the weights; ``doy`` the day-of-year distance of
    each observation (date order) to the target, in days."""

    band: Optional[int] = None
    expression: Optional[str] = None
    names: Tuple[Tuple[str, int], ...] = ()
    doy_weight: float = 0.0
    doy: Tuple[float, ...] = ()
    cloud_weight: float = 0.0
    cloud_distance: int = 0
    opacity: Optional[int] = None
    opacity_weight: float = 0.0

    @property
    def halo(self) -> int:
        return self.cloud_distance if self.cloud_weight > 0 else 0


@dataclass(frozen=True)
class SpectralJob(TiledJob):
    """Everything a worker needs to compute one tile; plain values only."""

    inputs: Tuple[str, ...]
    order: Tuple[int, ...]               # input indices in date order
    bands: Tuple[int, ...]               # the composited bands
    extra: Tuple[int, ...]               # bands read for the score only
    statistic: str
    tolerance: float
    max_iterations: int
    score: Optional[Score]
    scales: Tuple[Tuple[Tuple[float, float], ...], ...]   # per input (input order): (scale, offset) per band read
    sources: Tuple[float, ...]           # date order: the value OUTPUT_SOURCE writes
    input_nodata: Optional[float]
    mask: Optional[MaskSpec]
    grid: Grid
    resampling: str
    work_dtype: str
    output: OutputSpec
    band_names: Tuple[str, ...]
    mads: Optional[OutputSpec] = None
    count: Optional[OutputSpec] = None
    source: Optional[OutputSpec] = None

    @property
    def sink(self) -> CogSink:
        cogs = [CogOutput(self.output, self.band_names)]
        for spec, names in ((self.mads, MAD_NAMES), (self.count, ("count",)), (self.source, ("source",))):
            if spec is not None:
                cogs.append(CogOutput(spec, names, layer=len(cogs)))
        return CogSink(self.grid, tuple(cogs))

    @property
    def budget(self) -> TileBudget:
        n = len(self.bands) + len(self.extra)
        layers = len(self.inputs) * n + 3 * len(self.bands) + 8 + (len(self.inputs) if self.score else 0)
        return TileBudget(layers, 8 if self.work_dtype == "float64" else 4)


# -- planning ----------------------------------------------------------------------------------------------------

def plan_spectral(inputs: Sequence[str], output: str, own: SpectralOptions, options: Options) -> SpectralJob:
    """Check every parameter and input, plan the grid; raise a :class:`TilewiseError` on the first problem."""
    if own.statistic not in SPECTRAL_STATISTICS:
        raise ParameterError(f"Unknown spectral statistic {own.statistic!r}; use one of "
                             f"{', '.join(SPECTRAL_STATISTICS)}.")
    if not inputs:
        raise InputError("No input rasters were given; a composite needs at least one.")
    _check_numbers(own)
    infos = [describe_raster(p) for p in inputs]
    masks = tuple(own.mask_layers or ())
    mask_infos = [describe_raster(m) for m in masks]
    chosen = choose_bands(infos, own.bands, own.mask_band)
    fewest = min(infos, key=lambda i: i.count)
    mask = plan_input_mask(infos, mask_infos, own)
    order, sources, days = _plan_dates(inputs, own)
    extra, score = _plan_score(own, chosen, fewest, days)
    dtype, nodata = _default_type(own.statistic, infos, chosen)
    spec = options.output.spec(output, dtype, nodata)
    extras = _extra_outputs(own, options, spec)
    for s in (spec,) + tuple(e for e in extras if e is not None):
        check_writable(s.path)
    grid_options = options.grid
    ref = describe_raster(grid_options.reference) if grid_options.reference else infos[0]
    for s in (spec,) + tuple(e for e in extras if e is not None):
        check_not_an_input(s.path, describe_inputs(infos + mask_infos + [ref]))
    grid = plan_grid(ref, grid_options)
    check_inputs_meet(infos, grid)
    work = "float64" if any(dt in _WIDE_TYPES for info in infos for dt in info.dtypes) else "float32"
    names = tuple(f"{own.statistic} of band {b}" for b in chosen)
    check_output_size(grid, len(names), spec.dtype, options.output.allow_large)
    scales = tuple(_scalings(p, chosen + extra) for p in inputs)
    return SpectralJob(tuple(inputs), order, chosen, extra, own.statistic, float(own.tolerance),
                       int(own.max_iterations), score, scales, sources, own.input_nodata, mask, grid,
                       grid_options.resampling, work, spec, names, *extras)


def _check_numbers(own: SpectralOptions) -> None:
    if not (isinstance(own.tolerance, (int, float)) and 0 < own.tolerance < 1):
        raise ParameterError(f"TOLERANCE must be a number between 0 and 1 (relative step), got {own.tolerance!r}.")
    if not isinstance(own.max_iterations, (int, np.integer)) or own.max_iterations < 1:
        raise ParameterError(f"MAX_ITERATIONS must be a whole number of at least 1, got {own.max_iterations!r}.")
    for name, value in (("DOY_WEIGHT", own.doy_weight), ("CLOUD_WEIGHT", own.cloud_weight),
                        ("OPACITY_WEIGHT", own.opacity_weight)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ParameterError(f"{name} must be a number of at least 0, got {value!r}.")
    if not isinstance(own.cloud_distance, (int, np.integer)) or not 1 <= own.cloud_distance <= 1000:
        raise ParameterError(f"CLOUD_DISTANCE must be a whole number of pixels from 1 to 1000, got "
                             f"{own.cloud_distance!r}.")
    quality_only = {"QUALITY_BAND": own.quality_band is not None, "QUALITY_EXPRESSION": bool(own.quality_expression),
                    "TARGET_DATE": bool(own.target_date), "DOY_WEIGHT": own.doy_weight > 0,
                    "CLOUD_WEIGHT": own.cloud_weight > 0, "OPACITY_BAND": own.opacity_band is not None,
                    "OPACITY_WEIGHT": own.opacity_weight > 0}
    given = [k for k, v in quality_only.items() if v]
    if own.statistic != "quality" and given:
        raise ParameterError(f"{', '.join(given)} only apply to the quality statistic, not {own.statistic}.")
    if own.output_source and own.statistic == "geomedian":
        raise ParameterError("OUTPUT_SOURCE is for medoid and quality (a geometric median is no single "
                             "observation); leave it empty for geomedian.")


def _plan_dates(inputs: Sequence[str], own: SpectralOptions):
    """``(input indices in date order, OUTPUT_SOURCE value per observation (date order), day numbers (date
    order) or None)``. A series whose dates cannot be told composites in the input order, unless a date
    is needed (a target date, OUTPUT_SOURCE with dates given)."""
    needs_dates = own.statistic == "quality" and own.doy_weight > 0
    try:
        series = read_dates(inputs, own.dates)
    except InputError:
        if needs_dates:
            raise
        series = None
    if series is None or not series.dated:
        if needs_dates:
            raise InputError("DOY_WEIGHT needs the inputs' dates: none was found in their names or metadata; give "
                             "DATES, one per input in input order (e.g. 2024-05-12,2024-05-22).")
        n = len(inputs)
        return tuple(range(n)), tuple(float(i + 1) for i in range(n)), None
    order = series.order
    days = series.days
    return order, tuple(float(days[i]) for i in order), tuple(series.dates[i] for i in order)


def _plan_score(own: SpectralOptions, chosen: Tuple[int, ...], fewest,
                dates) -> Tuple[Tuple[int, ...], Optional[Score]]:
    """The bands read for the score only, and the score of ``quality`` (None for the other statistics)."""
    if own.statistic != "quality":
        return (), None
    weighted = own.doy_weight > 0 or own.cloud_weight > 0 or own.opacity_weight > 0
    ways = [w for w, on in (("QUALITY_BAND", own.quality_band is not None),
                            ("QUALITY_EXPRESSION", bool(own.quality_expression)),
                            ("weights (DOY_WEIGHT, CLOUD_WEIGHT, OPACITY_WEIGHT)", weighted)) if on]
    if len(ways) != 1:
        said = "none" if not ways else " and ".join(ways)
        raise ParameterError(f"The quality statistic scores observations in one way: QUALITY_BAND (e.g. 8), "
                             f"QUALITY_EXPRESSION (e.g. (B8 - B4) / (B8 + B4)), or weights (DOY_WEIGHT with "
                             f"TARGET_DATE, CLOUD_WEIGHT, OPACITY_WEIGHT with OPACITY_BAND); {said} given.")
    read = list(chosen)

    def slot(band: int, what: str) -> int:
        if not isinstance(band, (int, np.integer)) or not 1 <= band <= fewest.count:
            raise InputError(f"{what} {band} does not exist in {fewest.path}, which has {fewest.count} band(s).")
        if band not in read:
            read.append(int(band))
        return read.index(band)

    if own.quality_band is not None:
        band = slot(own.quality_band, "QUALITY_BAND")
        return tuple(read[len(chosen):]), Score(band=band)
    if own.quality_expression:
        from .expression import validate_expression
        names = [f"B{b}" for b in range(1, fewest.count + 1)]
        try:
            used = validate_expression(own.quality_expression, names)
        except ParameterError as exc:
            raise type(exc)(f"QUALITY_EXPRESSION: {exc}") from None
        pairs = tuple((n, slot(int(n[1:]), "Band")) for n in sorted(used))
        return tuple(read[len(chosen):]), Score(expression=own.quality_expression.strip(), names=pairs)
    doy: Tuple[float, ...] = ()
    if own.doy_weight > 0:
        if not own.target_date:
            raise ParameterError("DOY_WEIGHT needs TARGET_DATE, e.g. 2024-07-15 (its day of year is the target).")
        target = parse_date(own.target_date, "TARGET_DATE")
        doy = tuple(_doy_distance(d, target) for d in dates)
    elif own.target_date:
        parse_date(own.target_date, "TARGET_DATE")
    opacity = None
    if own.opacity_weight > 0:
        if own.opacity_band is None:
            raise ParameterError("OPACITY_WEIGHT needs OPACITY_BAND, the band of haze or aerosol opacity (0 clear "
                                 "to 1 opaque, after the band's scale).")
        opacity = slot(own.opacity_band, "OPACITY_BAND")
    elif own.opacity_band is not None:
        raise ParameterError("OPACITY_BAND is used with OPACITY_WEIGHT above 0.")
    return tuple(read[len(chosen):]), Score(doy_weight=float(own.doy_weight), doy=doy,
                                            cloud_weight=float(own.cloud_weight),
                                            cloud_distance=int(own.cloud_distance), opacity=opacity,
                                            opacity_weight=float(own.opacity_weight))


def _doy_distance(date: _dt.date, target: _dt.date) -> float:
    """Days between the days of year of ``date`` and ``target``, around the year end (0 to 183)."""
    d = abs(date.timetuple().tm_yday - target.timetuple().tm_yday)
    return float(min(d, 365 - d)) if d <= 365 else 0.0


def _default_type(statistic: str, infos, chosen) -> Tuple[Optional[str], Optional[float]]:
    """The output type and nodata when not given: float32 for the geometric median, the inputs' type (and
    the first input's nodata, if it fits) for an observation picked whole."""
    if statistic == "geomedian":
        return OUTPUT_TYPES[0], None
    dtype = np.result_type(*[np.dtype(info.dtypes[b - 1]) for info in infos for b in chosen]).name
    if dtype not in OUTPUT_TYPES:
        return ("float64" if dtype in _WIDE_TYPES else OUTPUT_TYPES[0]), None
    nodata = infos[0].nodata
    if nodata is not None:
        from ..options import nodata_fits
        if not nodata_fits(float(nodata), dtype):
            nodata = None
    return dtype, nodata


def _extra_outputs(own: SpectralOptions, options: Options, main: OutputSpec):
    out = options.output
    specs = []
    seen = {os.path.normcase(main.path): "OUTPUT"}
    for key, path, dtype, nodata, resampling in (
            ("OUTPUT_MADS", own.output_mads, "float32", None, out.overview_resampling),
            ("OUTPUT_COUNT", own.output_count, "uint16", None, "nearest"),
            ("OUTPUT_SOURCE", own.output_source, "int32", SOURCE_NODATA, "nearest")):
        if not path:
            specs.append(None)
            continue
        spec = OutputSpec(path, dtype, nodata, out.compression, resampling, out.overviews).resolved()
        other = seen.get(os.path.normcase(spec.path))
        if other:
            raise OutputError(f"{key} and {other} are the same file ({spec.path}); give each its own.")
        seen[os.path.normcase(spec.path)] = key
        specs.append(spec)
    return tuple(specs)


def _scalings(path: str, bands: Sequence[int]) -> Tuple[Tuple[float, float], ...]:
    """``(scale, offset)`` of ``bands`` of ``path`` (1 and 0 where the file gives none)."""
    try:
        with open_raster(path) as src:
            scales, offsets = src.scales, src.offsets
    except Exception:  # noqa: BLE001 - unreadable here: the tiles say so; no scaling meanwhile
        log.debug("No scale and offset read from %s", path, exc_info=True)
        return tuple((1.0, 0.0) for _ in bands)
    return tuple((float(scales[b - 1] or 1.0), float(offsets[b - 1] or 0.0)) for b in bands)


# -- one tile ----------------------------------------------------------------------------------------------------

def _outer(job: SpectralJob, tile: Tile) -> Tile:
    """``tile`` grown by the score's halo (the cloud distance), within the grid."""
    h = job.score.halo if job.score else 0
    if not h:
        return tile
    r0, c0 = max(0, tile.row_off - h), max(0, tile.col_off - h)
    r1 = min(job.grid.height, tile.row_off + tile.height + h)
    c1 = min(job.grid.width, tile.col_off + tile.width + h)
    return Tile(tile.index, r0, c0, r1 - r0, c1 - c0)


def _read(job: SpectralJob, tile: Tile) -> np.ndarray:
    """The stack (observations in date order, bands read, rows, cols), masked values NaN, scaled."""
    bands = job.bands + job.extra
    stack = np.empty((len(job.inputs), len(bands), tile.height, tile.width), job.work_dtype)
    for k, i in enumerate(job.order):
        src = job.inputs[i]
        try:
            read_window(src, bands, job.grid, tile, stack[k], job.input_nodata, job.resampling)
            if job.mask is not None:
                stack[k][:, read_qa_mask(job.mask, i, job.inputs, job.grid, tile)] = np.nan
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:
            raise TileError(f"{tile.name}: reading {src} failed: {exc}") from exc
    for k, i in enumerate(job.order):
        for b, (scale, offset) in enumerate(job.scales[i]):
            if scale != 1.0 or offset != 0.0:
                view = stack[k, b]
                view *= stack.dtype.type(scale)
                view += stack.dtype.type(offset)
    return stack


def _scores(job: SpectralJob, stack: np.ndarray, distance: Optional[np.ndarray]) -> np.ndarray:
    """Each observation's score (observations, rows, cols) float64; NaN where a band it uses is missing."""
    score = job.score
    n_obs = stack.shape[0]
    if score.band is not None:
        return stack[:, score.band].astype(np.float64)
    if score.expression:
        import numexpr
        values = {name: stack[:, i].astype(np.float64) for name, i in score.names}
        with np.errstate(all="ignore"):
            out = np.asarray(numexpr.evaluate(score.expression, local_dict=values), np.float64)
        out = np.broadcast_to(out, stack[:, 0].shape).astype(np.float64)
        for _, i in score.names:
            out[~np.isfinite(stack[:, i])] = np.nan
        return out
    out = np.zeros(stack[:, 0].shape, np.float64)
    if score.doy_weight > 0:
        closeness = 1.0 - np.asarray(score.doy, np.float64) / 183.0
        out += score.doy_weight * closeness.reshape(n_obs, 1, 1)
    if score.cloud_weight > 0 and distance is not None:
        out += score.cloud_weight * (distance / float(score.cloud_distance))
    if score.opacity is not None:
        opacity = stack[:, score.opacity].astype(np.float64)
        out += score.opacity_weight * (1.0 - np.clip(opacity, 0.0, 1.0))
        out[~np.isfinite(opacity)] = np.nan
    return out


def spectral_tile(job: SpectralJob, tile: Tile, target: Any) -> int:
    """Read ``tile`` of every input, composite it, write the tile file(s); return the tile index."""
    outer = _outer(job, tile)
    stack = _read(job, outer)
    from ..kernels import spectral as kernels  # compiled kernels load only where tiles are reduced
    n = len(job.bands)
    distance = None
    if job.score is not None and job.score.halo:
        missing = ~np.all(np.isfinite(stack[:, :n]), axis=1)
        distance = kernels.missing_distance(missing, job.score.cloud_distance)
    if outer != tile:
        r, c = tile.row_off - outer.row_off, tile.col_off - outer.col_off
        stack = stack[..., r:r + tile.height, c:c + tile.width]
        distance = distance[:, r:r + tile.height, c:c + tile.width] if distance is not None else None
    bands = np.ascontiguousarray(stack[:, :n]) if job.extra or outer != tile else stack
    chosen = None
    if job.statistic == "geomedian":
        values, count = kernels.geomedian(bands, job.tolerance, job.max_iterations)
    elif job.statistic == "medoid":
        chosen, count = kernels.medoid(bands)
    else:
        chosen, count = kernels.best(bands, _scores(job, stack, distance))
    if chosen is not None:
        values = kernels.take(bands, chosen)
    mads = kernels.mads(bands, values) if job.mads is not None else None  # in scaled units
    arrays = [to_output(_unscaled(job, values), job.output)]
    if mads is not None:
        arrays.append(to_output(mads, job.mads))
    if job.count is not None:
        arrays.append(np.minimum(count, 65534).astype(np.uint16)[np.newaxis])
    if job.source is not None:
        days = np.asarray(job.sources + (SOURCE_NODATA,), np.float64)
        arrays.append(days[np.where(chosen < 0, len(job.sources), chosen)].astype(np.int32)[np.newaxis])
    job.sink.write(target, tile, *arrays)
    return tile.index


def _unscaled(job: SpectralJob, values: np.ndarray) -> np.ndarray:
    """Composited values back in the first input's units (its bands' scale and offset undone)."""
    for b, (scale, offset) in enumerate(job.scales[0][:len(job.bands)]):
        if scale != 1.0 or offset != 0.0:
            values[b] = (values[b] - offset) / scale
    return values


# -- the public function -------------------------------------------------------------------------------------------

def spectral_composite(inputs: Sequence[str], output: str, statistic: str = "geomedian", **options) -> RunReport:
    """A composite that keeps each pixel's bands together, written to ``output`` as a COG.

    Parameters
    ----------
    inputs : list of str
        The time series (paths or GDAL paths), all with the same bands.
    output : str
        The COG of the composited bands, in input order.
    statistic : {"geomedian", "medoid", "quality"}
    **options
        :class:`SpectralOptions` (see the module's description) and the options every operation
        takes (:mod:`tilewise.core.options`). ``output_type`` None: float32 for geomedian, the
        inputs' type for medoid and quality.

    Examples
    --------
    >>> from tilewise.core import composite                                     # doctest: +SKIP
    >>> composite(scenes, "geomedian.tif", "geomedian", output_mads="mads.tif")  # doctest: +SKIP
    """
    own, shared = split_options(options, SpectralOptions, where="composite()", statistic=statistic,
                                defaults={"output_type": None})
    with logging_to(shared.run.log):
        job = plan_spectral(inputs, output, own, shared)
    return run_tiles(job, spectral_tile, shared.run)


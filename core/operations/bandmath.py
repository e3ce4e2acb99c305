"""Band math: an expression over named bands, evaluated tile by tile with numexpr.

The same machinery serves NDVI, the index catalogue and free expressions, for
one scene or a time series (one output band per scene, or one file per scene).
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numexpr
import numpy as np

from ..io.cog import OutputSpec, check_writable, to_output, write_tile
from ..io.coverage import check_output_size, outside_grid
from ..errors import (ExpressionError, GridError, InputError, OutputError, ParameterError, TileError, TilewiseError,
                     TilewiseWarning)
from ..runtime.executor import as_executor, make_executor, resolve_workers, workers_note
from .expression import validate_expression
from ..grid import Grid, Tile
from .indices import get_index
from ..io.outputs import check_not_an_input, describe_inputs
from ..options import plan_grid
from ..runtime.runner import LogFn, ProgressFn, RunReport, run_tiled, warnings_to
from ..io.sources import describe_raster, read_window, resampling_method

_WIDE_TYPES = {"int32", "uint32", "int64", "uint64", "float64"}
BandSpec = Tuple[str, int]


@dataclass(frozen=True)
class BandRef:
    """One named input of an expression: a band of a file, with an optional linear scaling."""

    name: str
    path: str
    band: int = 1
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class BandMathJob:
    """Per output band (one per scene), the named bands the expression reads."""

    scenes: Tuple[Tuple[BandRef, ...], ...]
    expression: str
    clip: Optional[Tuple[float, float]]
    input_nodata: Optional[float]
    grid: Grid
    resampling: str
    work_dtype: str
    output: OutputSpec
    band_names: Tuple[str, ...]


def plan_bandmath(scenes: Sequence[Mapping[str, BandSpec]], expression: str, output: str,
                  scale: float = 1.0, offset: float = 0.0, clip: Optional[Sequence[float]] = None,
                  input_nodata: Optional[float] = None, scene_names: Optional[Sequence[str]] = None,
                  reference: Optional[str] = None, extent: Optional[Sequence[float]] = None,
                  crs: Optional[str] = None, cell_size: Optional[object] = None, resampling: str = "nearest",
                  output_type: str = "float32", output_nodata: Optional[float] = None,
                  compression: str = "DEFLATE", overview_resampling: str = "average",
                  allow_large: bool = False, other_inputs: Sequence[str] = ()) -> BandMathJob:
    """Check the expression and every input before any work; plan the grid.

    ``scenes`` holds, per output band, a mapping ``name -> (path, band)``. A scene with an
    input outside the grid (its band would be nodata everywhere) is named in a warning; if
    that is so of every scene, or the output is larger than
    :data:`~tilewise.core.io.coverage.LARGE_OUTPUT_BYTES` without ``allow_large``, it is an
    error. ``other_inputs``: more files the output must not overwrite (other scenes of a
    per-scene run).
    """
    if not scenes:
        raise InputError("No input was given.")
    names = set(scenes[0])
    for i, scene in enumerate(scenes):
        if set(scene) != names:
            raise InputError(f"Scene {i + 1} names the bands {sorted(scene)}, the first scene {sorted(names)}.")
    used = validate_expression(expression, names)
    resampling_method(resampling)
    spec = OutputSpec(output, output_type, output_nodata, compression, overview_resampling).resolved()
    infos = {}
    refs = []
    order = [n for n in scenes[0] if n in used]  # as given: the first one's grid is the default grid
    for scene in scenes:
        scene_refs = []
        for name in order:
            path, band = scene[name]
            info = infos.get(path) or describe_raster(path)
            infos[path] = info
            if not 1 <= int(band) <= info.count:
                raise InputError(f"{name}: band {band} does not exist in {path}, which has {info.count} band(s).")
            scene_refs.append(BandRef(name, path, int(band), float(scale), float(offset)))
        refs.append(tuple(scene_refs))
    check_writable(spec.path)
    _check_expression_compiles(expression, sorted(used))
    ref_info = describe_raster(reference) if reference else infos[refs[0][0].path]
    others = [describe_raster(p) for p in other_inputs if p not in infos]
    check_not_an_input(spec.path, describe_inputs(list(infos.values()) + [ref_info] + others))
    grid = plan_grid(ref_info, extent, crs, cell_size)
    work = "float64" if any(dt in _WIDE_TYPES for i in infos.values() for dt in i.dtypes) else "float32"
    labels = tuple(scene_names) if scene_names else tuple(
        os.path.splitext(os.path.basename(s[0].path))[0] for s in refs)
    if len(labels) != len(refs):
        raise ParameterError(f"{len(labels)} scene names for {len(refs)} scenes.")
    _check_scenes_meet(refs, infos, grid, labels)
    check_output_size(grid, len(refs), spec.dtype, allow_large)
    return BandMathJob(tuple(refs), expression, tuple(clip) if clip else None, input_nodata, grid, resampling,
                       work, spec, labels)


def _check_scenes_meet(refs, infos, grid: Grid, labels: Sequence[str]) -> None:
    """A scene reads every one of its bands at each pixel: one input outside the grid makes its
    output band nodata everywhere. Warn naming such scenes; none left is an error."""
    outside = {i.path for i in outside_grid(list(infos.values()), grid)}
    empty = [(label, [r for r in scene if r.path in outside]) for label, scene in zip(labels, refs)]
    empty = [(label, missing) for label, missing in empty if missing]
    if not empty:
        return
    if len(empty) == len(refs):
        missing = empty[0][1]
        raise GridError(f"{_named(missing)} {'does' if len(missing) == 1 else 'do'} not overlap the output grid: "
                        "every pixel of the output would be nodata. Check the reference layer, extent and CRS.")
    for label, missing in empty:
        warnings.warn(TilewiseWarning(f"Scene {label}: {_named(missing)} {'does' if len(missing) == 1 else 'do'} "
                                      "not overlap the output grid; its band is nodata everywhere."), stacklevel=2)


def _named(refs: Sequence[BandRef]) -> str:
    return ("Input " if len(refs) == 1 else "Inputs ") + ", ".join(f"{r.name} ({r.path})" for r in refs)


def _check_expression_compiles(expression: str, names: List[str]) -> None:
    probe = {n: np.ones(1, np.float32) for n in names}
    try:
        # not numexpr.validate: since numexpr 2.8.5 it returns the exception instead of raising it
        numexpr.evaluate(expression, local_dict=probe)
    except Exception as exc:  # numexpr reports its own grammar limits here
        raise ExpressionError(f"numexpr cannot evaluate the expression: {exc}") from None


def bandmath_tile(job: BandMathJob, tile: Tile, path: str) -> int:
    """Evaluate the expression over ``tile`` for every scene; write the tile; return its index."""
    out = np.empty((len(job.scenes), tile.height, tile.width), job.output.dtype)
    for k, refs in enumerate(job.scenes):
        values = _read_scene(job, refs, tile)
        invalid = np.zeros((tile.height, tile.width), bool)
        for v in values.values():
            invalid |= np.isnan(v)
        result = numexpr.evaluate(job.expression, local_dict=values).astype(np.float64, copy=False)
        if result.shape != invalid.shape:  # a constant-valued expression: broadcast it
            result = np.broadcast_to(result, invalid.shape).copy()
        result[invalid | ~np.isfinite(result)] = np.nan
        if job.clip:
            np.clip(result, job.clip[0], job.clip[1], out=result)
        out[k] = to_output(result, job.output)
    write_tile(path, out, job.grid, tile, job.output)
    return tile.index


def _read_scene(job: BandMathJob, refs: Sequence[BandRef], tile: Tile) -> Dict[str, np.ndarray]:
    by_path: Dict[str, List[BandRef]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, []).append(ref)
    values: Dict[str, np.ndarray] = {}
    for path, group in by_path.items():
        buf = np.empty((len(group), tile.height, tile.width), job.work_dtype)
        try:
            read_window(path, [r.band for r in group], job.grid, tile, buf, job.input_nodata, job.resampling)
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:
            raise TileError(f"{tile.name}: reading {path} failed: {exc}") from None
        for i, ref in enumerate(group):
            v = buf[i]
            if ref.scale != 1.0 or ref.offset != 0.0:
                v = v * buf.dtype.type(ref.scale) + buf.dtype.type(ref.offset)
            values[ref.name] = v
    return values


def _run(job: BandMathJob, tile_size, workers, executor, progress, log, **run_options) -> RunReport:
    return run_tiled(job, bandmath_tile, tile_size, workers, executor, progress, log,
                     layers=len(job.scenes[0]) + 2, **run_options)


def bandmath(inputs: Mapping[str, BandSpec], expression: str, output: str, *, tile_size: Optional[int] = None,
             workers: Optional[int] = None, executor=None, scheduler=None, resume: bool = False,
             keep_workdir: bool = False, progress: Optional[ProgressFn] = None,
             log: Optional[LogFn] = None, **options) -> RunReport:
    """Evaluate ``expression`` over named bands and write a one-band COG.

    Parameters
    ----------
    inputs : mapping
        ``{"A": ("scene.tif", 3), "B": ("scene.tif", 4)}``: each name is a band of a file.
    expression : str
        numexpr grammar: arithmetic, comparisons, ``&``, ``|``, ``~``, ``where(c, a, b)`` and
        element-wise functions (``sqrt``, ``log``, ``abs``, ...). Validated before any work.
    **options
        ``scale``, ``offset``, ``clip``, ``input_nodata``, grid and output options as in
        :func:`plan_bandmath`.

    A pixel where any input is nodata, or where the result is not finite (e.g.
    a zero denominator), gets the output nodata.

    >>> bandmath({"A": ("s.tif", 3), "B": ("s.tif", 4)}, "(B - A) / (B + A)", "ndvi.tif")  # doctest: +SKIP
    """
    with warnings_to(log):
        job = plan_bandmath([dict(inputs)], expression, output, **options)
    return _run(job, tile_size, workers, executor, progress, log, scheduler=scheduler, resume=resume,
                keep_workdir=keep_workdir)


def index(scenes: Sequence[Mapping[str, BandSpec]], index: str, output: str, *, per_scene: bool = False,
                 constants: Optional[Mapping[str, float]] = None, tile_size: Optional[int] = None,
                 workers: Optional[int] = None, executor=None, scheduler=None, resume: bool = False,
                 keep_workdir: bool = False, progress: Optional[ProgressFn] = None,
                 log: Optional[LogFn] = None, **options) -> List[RunReport]:
    """A catalogue index over one or many scenes.

    ``scenes`` holds, per scene, the band roles the index needs, e.g.
    ``{"RED": ("s1.tif", 4), "NIR": ("s1.tif", 5)}``. With ``per_scene`` false,
    ``output`` is one COG with one band per scene; with ``per_scene`` true it is
    a folder that receives one COG per scene (named after the scene's file).
    ``executor``, ``scheduler``, ``resume`` and ``keep_workdir`` as in :func:`~tilewise.core.operations.composite.composite`.
    """
    spec = get_index(index)
    expression = spec.expression(**dict(constants or {}))
    options.setdefault("clip", spec.clip)
    scenes = [_roles(spec, s, i) for i, s in enumerate(scenes)]
    if not per_scene:
        with warnings_to(log):
            job = plan_bandmath(scenes, expression, output, **options)
        return [_run(job, tile_size, workers, executor, progress, log, scheduler=scheduler, resume=resume,
                     keep_workdir=keep_workdir)]
    with warnings_to(log):
        jobs = _plan_per_scene(scenes, expression, output, spec.key, options)
    reports = []
    own = executor is None
    ex = as_executor(executor) if executor is not None else make_executor(resolve_workers(workers), scheduler)
    note = workers_note(workers, ex.workers) if executor is None and not scheduler else None
    if note and log:
        log(note)
    try:
        for i, job in enumerate(jobs):
            if log:
                log(f"Scene {i + 1} of {len(jobs)}: {job.output.path}")
            step = (lambda d, t, i=i: progress(i * t + d, len(jobs) * t)) if progress else None
            reports.append(_run(job, tile_size, ex.workers, ex, step, log, resume=resume,
                                keep_workdir=keep_workdir))
    finally:
        if own:
            ex.close()
    return reports


def _roles(spec, scene: Mapping[str, BandSpec], i: int) -> Dict[str, BandSpec]:
    missing = [r for r in spec.bands if r not in scene or scene[r] is None or not scene[r][0]]
    if missing:
        raise InputError(f"{spec.key.upper()} needs the band(s) {', '.join(missing)}"
                         f"{f' (scene {i + 1})' if i else ''}; {spec.describe()}.")
    return {r: scene[r] for r in spec.bands}


def _plan_per_scene(scenes, expression, folder, key, options) -> List[BandMathJob]:
    if not folder:
        raise OutputError("No output folder was given.")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"The output folder is a file: {folder}")
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    jobs, seen = [], set()
    every_input = sorted({path for scene in scenes for path, _ in scene.values()})
    try:
        for scene in scenes:
            first = next(iter(scene.values()))[0]
            stem = os.path.splitext(os.path.basename(first))[0]
            name = f"{stem}_{key}.tif"
            if name in seen:
                raise OutputError(f"Two scenes would both be written to {name}; "
                                  "give the scenes distinct file names.")
            seen.add(name)
            jobs.append(plan_bandmath([scene], expression, os.path.join(folder, name), other_inputs=every_input,
                                      **options))
    except BaseException:
        if created:  # leave nothing behind when a scene is refused before any work
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return jobs

"""Band math: an expression over named bands, evaluated tile by tile with numexpr.

The same machinery serves NDVI, the index catalogue and free expressions, for
one scene or a time series: one output band per scene, or one COG per scene in a
folder, from one run whose sink splits the bands (scenes planned alike share a
run; with different grids or value types they get one run each).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numexpr
import numpy as np

from ..errors import ExpressionError, GridError, InputError, ParameterError, TileError, TilewiseError, TilewiseWarning
from ..grid import Grid, Tile
from ..io.cog import check_writable, to_output
from ..io.coverage import check_output_size, outside_grid
from ..io.outputs import check_not_an_input, describe_inputs, output_folder, unique_names
from ..io.sources import describe_raster, read_window
from ..options import Options, OutputSpec, plan_grid, split_options
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles, warnings_to
from ..runtime.sinks import CogSink
from .expression import validate_expression
from .indices import get_index

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
class BandMathOptions:
    """Band math's own options: input values times ``scale`` plus ``offset`` first, the result clipped
    to ``clip`` (low, high), ``input_nodata`` overriding the files', the output bands' ``scene_names``
    (default: the first input file of each scene)."""

    scale: float = 1.0
    offset: float = 0.0
    clip: Optional[Sequence[float]] = None
    input_nodata: Optional[float] = None
    scene_names: Optional[Sequence[str]] = None


@dataclass(frozen=True)
class BandMathJob(TiledJob):
    """Per output band (one per scene), the named bands the expression reads. ``outputs``: one COG of
    every band, or one per scene (in ``folder``)."""

    scenes: Tuple[Tuple[BandRef, ...], ...]
    expression: str
    clip: Optional[Tuple[float, float]]
    input_nodata: Optional[float]
    grid: Grid
    resampling: str
    work_dtype: str
    outputs: Tuple[OutputSpec, ...]
    band_names: Tuple[str, ...]
    folder: str = ""

    @property
    def sink(self) -> CogSink:
        return CogSink.per_band(self.grid, self.outputs, self.band_names, self.folder)

    @property
    def budget(self) -> TileBudget:
        return TileBudget(len(self.scenes[0]) + 2, 8 if self.work_dtype == "float64" else 4)


def plan_bandmath(scenes: Sequence[Mapping[str, BandSpec]], expression: str, output: str,
                  own: BandMathOptions = BandMathOptions(), options: Options = Options(),
                  other_inputs: Sequence[str] = ()) -> BandMathJob:
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
    spec = options.output.spec(output)
    infos: Dict[str, object] = {}
    order = [n for n in scenes[0] if n in used]  # as given: the first one's grid is the default grid
    refs = [_scene_refs(scene, order, own, infos) for scene in scenes]
    check_writable(spec.path)
    _check_expression_compiles(expression, sorted(used))
    grid_options = options.grid
    ref_info = describe_raster(grid_options.reference) if grid_options.reference else infos[refs[0][0].path]
    others = [describe_raster(p) for p in other_inputs if p not in infos]
    check_not_an_input(spec.path, describe_inputs(list(infos.values()) + [ref_info] + others))
    grid = plan_grid(ref_info, grid_options)
    work = "float64" if any(dt in _WIDE_TYPES for i in infos.values() for dt in i.dtypes) else "float32"
    labels = tuple(own.scene_names) if own.scene_names else tuple(
        os.path.splitext(os.path.basename(s[0].path))[0] for s in refs)
    if len(labels) != len(refs):
        raise ParameterError(f"{len(labels)} scene names for {len(refs)} scenes.")
    _check_scenes_meet(refs, infos, grid, labels)
    check_output_size(grid, len(refs), spec.dtype, options.output.allow_large)
    return BandMathJob(tuple(refs), expression, tuple(own.clip) if own.clip else None, own.input_nodata, grid,
                       grid_options.resampling, work, (spec,), labels)


def _scene_refs(scene: Mapping[str, BandSpec], order: Sequence[str], own: BandMathOptions,
                infos: Dict[str, object]) -> Tuple[BandRef, ...]:
    refs = []
    for name in order:
        path, band = scene[name]
        info = infos.get(path) or describe_raster(path)
        infos[path] = info
        if not 1 <= int(band) <= info.count:
            raise InputError(f"{name}: band {band} does not exist in {path}, which has {info.count} band(s).")
        refs.append(BandRef(name, path, int(band), float(own.scale), float(own.offset)))
    return tuple(refs)


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


def bandmath_tile(job: BandMathJob, tile: Tile, target: str) -> int:
    """Evaluate the expression over ``tile`` for every scene; write the tile; return its index."""
    spec = job.outputs[0]                              # every output of a job has its type and nodata
    out = np.empty((len(job.scenes), tile.height, tile.width), spec.dtype)
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
        out[k] = to_output(result, spec)
    job.sink.write(target, tile, out)
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


def bandmath(inputs: Mapping[str, BandSpec], expression: str, output: str, **options) -> RunReport:
    """Evaluate ``expression`` over named bands and write a one-band COG.

    Parameters
    ----------
    inputs : mapping
        ``{"A": ("scene.tif", 3), "B": ("scene.tif", 4)}``: each name is a band of a file.
    expression : str
        numexpr grammar: arithmetic, comparisons, ``&``, ``|``, ``~``, ``where(c, a, b)`` and
        element-wise functions (``sqrt``, ``log``, ``abs``, ...). Validated before any work.
    **options
        Band math's own (:class:`BandMathOptions`: ``scale``, ``offset``, ``clip``,
        ``input_nodata``, ``scene_names``), and the grid, output and run options every
        operation takes (:mod:`tilewise.core.options`).

    A pixel where any input is nodata, or where the result is not finite (e.g.
    a zero denominator), gets the output nodata.

    >>> bandmath({"A": ("s.tif", 3), "B": ("s.tif", 4)}, "(B - A) / (B + A)", "ndvi.tif")  # doctest: +SKIP
    """
    own, shared = split_options(options, BandMathOptions, where="bandmath()")
    with warnings_to(shared.run.log):
        job = plan_bandmath([dict(inputs)], expression, output, own, shared)
    return run_tiles(job, bandmath_tile, shared.run)


def index(scenes: Sequence[Mapping[str, BandSpec]], index: str, output: str, *, per_scene: bool = False,
          constants: Optional[Mapping[str, float]] = None, **options) -> RunReport:
    """A catalogue index over one or many scenes.

    ``scenes`` holds, per scene, the band roles the index needs, e.g.
    ``{"RED": ("s1.tif", 4), "NIR": ("s1.tif", 5)}``. With ``per_scene`` false,
    ``output`` is one COG with one band per scene; with ``per_scene`` true it is
    a folder that receives one COG per scene (named after the scene's file), from
    one run. ``constants``: the index's constants (e.g. SAVI's ``L``). Options as
    in :func:`bandmath` (``clip`` defaults to the index's range).
    """
    spec = get_index(index)
    expression = spec.expression(**dict(constants or {}))
    own, shared = split_options(options, BandMathOptions, where="index()", defaults={"clip": spec.clip})
    scenes = [_roles(spec, s, i) for i, s in enumerate(scenes)]
    with warnings_to(shared.run.log):
        jobs = plan_per_scene(scenes, expression, output, spec.key, own, shared) if per_scene else \
            [plan_bandmath(scenes, expression, output, own, shared)]
    return _run_all(jobs, shared)


def _roles(spec, scene: Mapping[str, BandSpec], i: int) -> Dict[str, BandSpec]:
    missing = [r for r in spec.bands if r not in scene or scene[r] is None or not scene[r][0]]
    if missing:
        raise InputError(f"{spec.key.upper()} needs the band(s) {', '.join(missing)}"
                         f"{f' (scene {i + 1})' if i else ''}; {spec.describe()}.")
    return {r: scene[r] for r in spec.bands}


def plan_per_scene(scenes: Sequence[Mapping[str, BandSpec]], expression: str, folder: str, key: str,
                   own: BandMathOptions, options: Options) -> List[BandMathJob]:
    """One COG per scene in ``folder``, named ``<scene>_<key>.tif``: every scene planned (and checked) on
    its own, then the scenes planned alike (grid, value type...) in one job each, its sink splitting
    the bands into their COGs."""
    every_input = sorted({path for scene in scenes for path, _ in scene.values()})
    stems = [os.path.splitext(os.path.basename(next(iter(scene.values()))[0]))[0] for scene in scenes]
    with output_folder(folder) as made:
        names = unique_names([f"{stem}_{key}.tif" for stem in stems], "scenes")
        jobs = [plan_bandmath([scene], expression, os.path.join(made, name), own, options, other_inputs=every_input)
                for scene, name in zip(scenes, names)]
    return _merge_alike(jobs, made)


def _merge_alike(jobs: Sequence[BandMathJob], folder: str) -> List[BandMathJob]:
    groups: Dict[BandMathJob, List[BandMathJob]] = {}
    for job in jobs:
        groups.setdefault(replace(job, scenes=(), outputs=(), band_names=()), []).append(job)
    # one group: the work folder is named after the output folder (as the outputs are, together)
    home = folder if len(groups) == 1 else ""
    return [replace(key, scenes=tuple(s for j in members for s in j.scenes),
                    outputs=tuple(o for j in members for o in j.outputs),
                    band_names=tuple(n for j in members for n in j.band_names), folder=home)
            for key, members in groups.items()]


def _run_all(jobs: Sequence[BandMathJob], options: Options) -> RunReport:
    """Run the jobs one after the other; one report for all (usually there is one job)."""
    run = options.run
    if len(jobs) == 1:
        return run_tiles(jobs[0], bandmath_tile, run)
    reports = []
    for i, job in enumerate(jobs):
        run.say(f"Scenes on grid {i + 1} of {len(jobs)}: {len(job.outputs)} COGs")
        step = (lambda d, t, i=i: run.progress(i * t + d, len(jobs) * t)) if run.progress else None
        reports.append(run_tiles(job, bandmath_tile, replace(run, progress=step)))
    first = reports[0]
    return replace(first, tiles=sum(r.tiles for r in reports), seconds=sum(r.seconds for r in reports),
                   bands=sum(r.bands for r in reports), reused=sum(r.reused for r in reports),
                   workers=max(r.workers for r in reports), outputs=tuple(o for r in reports for o in r.outputs))

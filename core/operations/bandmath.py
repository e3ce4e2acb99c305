"""Band math: an expression over named bands, evaluated tile by tile with numexpr.

The same machinery serves NDVI, the index catalogue and free expressions, for
one scene or a time series: one output band per scene, or one COG per scene in a
folder, from one run whose sink splits the bands (scenes planned alike share a
run; with different grids or value types they get one run each).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numexpr
import numpy as np
from numexpr.necompiler import getExprNames, getType

from ..errors import ExpressionError, GridError, InputError, ParameterError, TileError, TilewiseError, TilewiseWarning
from ..grid import Grid, Tile
from ..io.cog import check_writable
from ..io.coverage import check_output_size, outside_grid
from ..io.outputs import check_not_an_input, describe_inputs, output_folder, unique_names
from ..io.sources import describe_raster, read_window
from ..options import Options, OutputSpec, plan_grid, split_options
from ..logs import log_option, logging_to
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ..runtime.sinks import CogSink
from .expression import substitute, validate_expression
from .indices import get_index
from .swath.grid import refuse_swaths

log = logging.getLogger(__name__)

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
    #: the band's type and its file's nodata (as planned; read in its own type when an integer type)
    dtype: str = ""
    nodata: Optional[float] = None


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
                  own: BandMathOptions = BandMathOptions(), options: Optional[Options] = None,
                  other_inputs: Sequence[str] = ()) -> BandMathJob:
    """Check the expression and every input before any work; plan the grid.

    ``scenes`` holds, per output band, a mapping ``name -> (path, band)``. A scene with an
    input outside the grid (its band would be nodata everywhere) is named in a warning; if
    that is so of every scene, or the output is larger than
    :data:`~tilewise.core.io.coverage.LARGE_OUTPUT_BYTES` without ``allow_large``, it is an
    error. ``other_inputs``: more files the output must not overwrite (other scenes of a
    per-scene run).
    """
    options = options if options is not None else Options()
    if not scenes:
        raise InputError("No input was given.")
    names = set(scenes[0])
    for i, scene in enumerate(scenes):
        if set(scene) != names:
            raise InputError(f"Scene {i + 1} names the bands {sorted(scene)}, the first scene {sorted(names)}.")
    refuse_swaths([path for scene in scenes for path, _ in scene.values()], "band math (and an index)")
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
        refs.append(BandRef(name, path, int(band), float(own.scale), float(own.offset),
                            info.dtypes[int(band) - 1], info.nodata))
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
        raise ExpressionError(f"numexpr cannot evaluate the expression: {exc}") from exc


def bandmath_tile(job: BandMathJob, tile: Tile, target: str) -> int:
    """Evaluate the expression over ``tile`` for every scene; write the tile; return its index."""
    spec = job.outputs[0]                              # every output of a job has its type and nodata
    out = np.empty((len(job.scenes), tile.height, tile.width), spec.dtype)
    for k, refs in enumerate(job.scenes):
        values, missing = _read_scene(job, refs, tile)
        evaluate_tile(job.expression, values, out[k], spec, job.work_dtype, job.clip, missing)
    job.sink.write(target, tile, out)
    return tile.index


def _read_scene(job: BandMathJob, refs: Sequence[BandRef],
                tile: Tile) -> Tuple[List[TileValues], Optional[np.ndarray]]:
    """Each input of a scene over ``tile``: the bands of an integer type as stored, the others as
    floats of the work type (NaN: no value); and the pixels outside an input or masked (None: none).
    The buffers are this thread's, reused from tile to tile."""
    by_path: Dict[str, List[BandRef]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, []).append(ref)
    values: List[TileValues] = []
    missing: Optional[np.ndarray] = None
    for slot, (path, group) in enumerate(by_path.items()):
        raw = group[0].dtype if all(r.dtype == group[0].dtype for r in group) and group[0].dtype in RAW_TYPES \
            else None
        buf = _buffer(slot, (len(group), tile.height, tile.width), raw or job.work_dtype)
        try:
            gap = read_window(path, [r.band for r in group], job.grid, tile, buf, job.input_nodata, job.resampling)
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:
            raise TileError(f"{tile.name}: reading {path} failed: {exc}") from exc
        if gap is not None:
            missing = gap if missing is None else missing | gap
        fill = job.input_nodata if job.input_nodata is not None else group[0].nodata
        values.extend(TileValues(r.name, buf[i], fill if raw else None, r.scale, r.offset) for i, r in enumerate(group))
    return values, missing


_LOCAL = threading.local()


def _buffer(slot: object, shape: Tuple[int, ...], dtype: str) -> np.ndarray:
    """A C-contiguous array of ``shape``: this thread's buffer of ``slot`` and type, grown as needed."""
    buffers = _LOCAL.__dict__.setdefault("buffers", {})
    size = int(np.prod(shape))
    flat = buffers.get((slot, dtype))
    if flat is None or flat.size < size:
        flat = buffers[(slot, dtype)] = np.empty(size, dtype)
    return flat[:size].reshape(shape)


# -- the computation of a tile ------------------------------------------------------------------------------------
#
# numexpr reads each input in its own type and converts it to the work type block by block (its
# iterator casts; the program is compiled for the work type, as if the inputs had been converted
# first, scale and offset included) and writes the result straight into the output tile when the
# output type holds it exactly. The nodata mask, finiteness, clip, rounding and nodata then run in
# place with numpy (its loops are vectorised; numexpr's where() and comparisons cost three times
# more), on this thread's reused buffers: no full-size temporary is allocated per tile.

#: Integer types read as stored: every value is exact in the work type (float32 up to 16 bits;
#: 32-bit inputs make the work type float64). Other types are read as floats, NaN for no value.
RAW_TYPES = ("uint8", "int8", "uint16", "int16", "int32", "uint32")
#: numexpr's defaults, spelled out (truediv: no effect in Python 3, but 'auto' inspects the caller's frame)
_CONTEXT = {"optimization": "aggressive", "truediv": False}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class TileValues:
    """One named input over a tile: ``values`` in the band's own integer type (``fill``: its stored
    nodata value, None: none) or in a float type (NaN: no value), then times ``scale`` plus ``offset``
    in the work type."""

    name: str
    values: np.ndarray
    fill: Optional[float] = None
    scale: float = 1.0
    offset: float = 0.0


def evaluate_tile(expression: str, inputs: Sequence[TileValues], out: np.ndarray, spec: OutputSpec,
                  work_dtype: str = "float32", clip: Optional[Sequence[float]] = None,
                  missing: Optional[np.ndarray] = None) -> None:
    """Evaluate ``expression`` over ``inputs`` into ``out`` (the tile, in ``spec``'s type) as if the inputs
    were converted to ``work_dtype`` first (and scaled), the result taken as float64 and clipped to
    ``clip``, integers rounded (half to even) and kept in their type's range; a pixel where an input has
    no value, ``missing`` is true or the result is not finite gets ``spec.nodata``.

    >>> out = np.empty(3, np.float32)
    >>> red, nir = np.array([10, 0, 3], np.uint8), np.array([30, 5, 1], np.uint8)
    >>> evaluate_tile("(B - A) / (B + A)", [TileValues("A", red, fill=0), TileValues("B", nir, fill=0)], out,
    ...               OutputSpec("x", "float32", -9999.0))
    >>> out.tolist()
    [0.5, -9999.0, -0.5]
    """
    program = _program(expression, tuple((v.name, float(v.scale), float(v.offset)) for v in inputs), work_dtype)
    low, high = (float(clip[0]), float(clip[1])) if clip else (None, None)
    direct = out.dtype == np.float64 or (out.dtype == np.float32 and program.kind.kind in "biuf" and
                                         program.kind.itemsize <= 4 and
                                         all(b is None or math.isnan(b) or abs(b) <= _FLOAT32_MAX for b in (low, high)))
    result = out if direct else _buffer("result", out.shape, "float64")
    program.run({v.name: v.values for v in inputs}, result)
    bad = _no_value(inputs, missing, result if program.kind.kind == "f" else None, work_dtype)
    if clip:
        kind = result.dtype.type
        np.clip(result, kind(low), kind(high), out=result)
        if math.isnan(low) or math.isnan(high):   # np.clip gives NaN: nodata everywhere
            bad = np.ones(out.shape, bool)
    _finish(result, bad, out, spec)


def _no_value(inputs: Sequence[TileValues], missing: Optional[np.ndarray], result: Optional[np.ndarray],
              work_dtype: str) -> Optional[np.ndarray]:
    """Where an input has no value (its stored nodata, NaN, ``missing``) or the float ``result`` is
    not finite: this thread's buffer, or None when no pixel can be."""
    shape = inputs[0].values.shape if inputs else result.shape
    bad = None
    scratch = _buffer("scratch", shape, "bool")

    def add(test) -> None:
        nonlocal bad
        if bad is None:
            bad = test(_buffer("bad", shape, "bool"))
        else:
            np.logical_or(bad, test(scratch), out=bad)

    if missing is not None:
        add(lambda o: np.copyto(o, missing) or o)
    for v in inputs:
        if v.values.dtype.kind in "iu":
            fill = v.fill
            info = np.iinfo(v.values.dtype)
            if fill is not None and not math.isnan(fill) and float(fill).is_integer() and info.min <= fill <= info.max:
                add(lambda o, v=v, fill=fill: np.equal(v.values, v.values.dtype.type(fill), out=o))
        else:
            add(lambda o, v=v: np.isnan(v.values, out=o))
        if not _keeps_nan(v):   # a scaling that can make NaN: test the scaled values, as they were
            work = np.dtype(work_dtype).type
            add(lambda o, v=v, work=work: np.isnan(v.values.astype(work) * work(v.scale) + work(v.offset), out=o))
    if result is not None:
        add(lambda o: np.logical_not(np.isfinite(result, out=o), out=o))
    return bad


def _keeps_nan(v: TileValues) -> bool:
    """True when ``values * scale + offset`` is NaN exactly where ``values`` is."""
    return (v.scale == 1.0 and v.offset == 0.0) or (math.isfinite(v.scale) and v.scale != 0.0
                                                       and math.isfinite(v.offset))


def _finish(result: np.ndarray, bad: Optional[np.ndarray], out: np.ndarray, spec: OutputSpec) -> None:
    """``result`` (clipped; ``out`` itself, or float64) into ``out``: integers rounded half to even and
    kept in their type's range, then ``spec.nodata`` where ``bad``."""
    if np.dtype(out.dtype).kind in "iu":
        info = np.iinfo(out.dtype)
        if bad is not None:
            np.copyto(result, 0.0, where=bad)     # no NaN cast to an integer (numpy warns)
        np.rint(result, out=result)
        np.clip(result, info.min, info.max, out=result)
    if result is not out:
        np.copyto(out, result, casting="unsafe")
    if bad is not None:
        np.copyto(out, out.dtype.type(spec.nodata), where=bad)


class _Program:
    """The expression compiled for inputs of the work type, scale and offset applied first."""

    def __init__(self, expression: str, scalings: Tuple[Tuple[str, float, float], ...], work_dtype: str) -> None:
        work = np.dtype(work_dtype)
        prefix = "_tw"
        while any(name.startswith(prefix) for name, _, _ in scalings):
            prefix += "_"
        # typed constants: a literal would be a float64 (numexpr's rule), and so the arithmetic
        self.constants: Dict[str, np.ndarray] = {}
        scaled = {}
        for i, (name, scale, offset) in enumerate(scalings):
            if scale != 1.0 or offset != 0.0:
                s, o = f"{prefix}s{i}", f"{prefix}o{i}"
                self.constants.update({s: np.asarray(scale, work), o: np.asarray(offset, work)})
                scaled[name] = f"{name} * {s} + {o}"
        self.text = substitute(expression, scaled)
        names, self.vml = getExprNames(self.text, _CONTEXT)
        self.names = tuple(names)
        signature = [(n, getType(self.constants[n] if n in self.constants else np.empty(0, work))) for n in names]
        self.compiled = numexpr.NumExpr(self.text, signature, **_CONTEXT)
        probe = [self.constants[n] if n in self.constants else np.ones(1, work) for n in names]
        #: the result's type (as numexpr.evaluate gives it on inputs of the work type)
        self.kind = np.dtype(self.compiled(*probe).dtype)

    def run(self, arrays: Mapping[str, np.ndarray], out: np.ndarray) -> None:
        given = {**self.constants, **arrays}
        # casting: the inputs to the work type, the result to ``out``'s (exactly: float64, or a type
        # that holds it), block by block
        self.compiled(*[given[n] for n in self.names], out=out, order="K", casting="unsafe", ex_uses_vml=self.vml)


def _program(expression: str, scalings: Tuple[Tuple[str, float, float], ...], work_dtype: str) -> _Program:
    """The program of these arguments, compiled once per thread (as numexpr.evaluate caches them)."""
    programs = _LOCAL.__dict__.setdefault("programs", {})
    key = (expression, repr(scalings), work_dtype)     # repr: NaN scales are equal keys
    program = programs.get(key)
    if program is None:
        if len(programs) >= 64:
            programs.clear()
        program = programs[key] = _Program(expression, scalings, work_dtype)
    return program


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
    with logging_to(shared.run.log):
        job = plan_bandmath([dict(inputs)], expression, output, own, shared)
    return run_tiles(job, bandmath_tile, shared.run)


@log_option
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
    with logging_to(shared.run.log):
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
        log.info(f"Scenes on grid {i + 1} of {len(jobs)}: {len(job.outputs)} COGs")
        step = (lambda d, t, i=i: run.progress(i * t + d, len(jobs) * t)) if run.progress else None
        reports.append(run_tiles(job, bandmath_tile, replace(run, progress=step)))
    first = reports[0]
    return replace(first, tiles=sum(r.tiles for r in reports), seconds=sum(r.seconds for r in reports),
                   bands=sum(r.bands for r in reports), reused=sum(r.reused for r in reports),
                   workers=max(r.workers for r in reports), outputs=tuple(o for r in reports for o in r.outputs))

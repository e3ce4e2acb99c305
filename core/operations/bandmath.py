"""Band math: an expression over named bands, evaluated tile by tile with numexpr.

The same machinery serves NDVI, the index catalogue and free expressions, for
one scene or a time series: one output band per scene, or one COG per scene in a
folder, from one run whose sink splits the bands (scenes planned alike share a
run; with different grids or value types they get one run each).
"""

from __future__ import annotations

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
from ..runtime.runner import RunReport, TileBudget, TiledJob, run_tiles, warnings_to
from ..runtime.sinks import CogSink
from .expression import substitute, validate_expression
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
        raise ExpressionError(f"numexpr cannot evaluate the expression: {exc}") from None


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
        raw = group[0].dtype if all(r.dtype == group[0].dtype for r in group) and group[0].dtype in _RAW_TYPES \
            else None
        buf = _buffer(slot, (len(group), tile.height, tile.width), raw or job.work_dtype)
        try:
            gap = read_window(path, [r.band for r in group], job.grid, tile, buf, job.input_nodata, job.resampling)
        except TilewiseError as exc:
            raise TileError(f"{tile.name}: {exc}") from None
        except Exception as exc:
            raise TileError(f"{tile.name}: reading {path} failed: {exc}") from None
        if gap is not None:
            missing = gap if missing is None else missing | gap
        fill = job.input_nodata if job.input_nodata is not None else group[0].nodata
        values.extend(TileValues(r.name, buf[i], fill if raw else None, r.scale, r.offset) for i, r in enumerate(group))
    return values, missing


_LOCAL = threading.local()


def _buffer(slot: int, shape: Tuple[int, ...], dtype: str) -> np.ndarray:
    """A C-contiguous array of ``shape``: this thread's buffer of ``slot`` and type, grown as needed."""
    buffers = _LOCAL.__dict__.setdefault("buffers", {})
    size = int(np.prod(shape))
    flat = buffers.get((slot, dtype))
    if flat is None or flat.size < size:
        flat = buffers[(slot, dtype)] = np.empty(size, dtype)
    return flat[:size].reshape(shape)


# -- one numexpr pass per scene and tile --------------------------------------------------------------------------
#
# numexpr reads each input in its own type and converts it to the work type block by block (its
# iterator casts; the program is compiled for the work type, as if the inputs had been converted
# first), computes the expression exactly as on converted inputs, then in the same pass: the nodata
# mask, the clip, the rounding and the output type, written straight into the output tile.

#: Integer types read as stored: every value is exact in the work type (float32 up to 16 bits;
#: 32-bit inputs make the work type float64). Other types are read as floats, NaN for no value.
_RAW_TYPES = ("uint8", "int8", "uint16", "int16", "int32", "uint32")
#: x + 1.5 * 2**52 - 1.5 * 2**52 is x rounded to the nearest whole number, ties to even (np.rint),
#: in float64 for |x| < 2**51: what an integer output's values are clipped to first.
_RINT = 6755399441055744.0


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
    """Evaluate ``expression`` over ``inputs`` into ``out`` (the tile, in ``spec``'s type) in one numexpr
    pass: the inputs as if converted to ``work_dtype`` first (and scaled), the result clipped to ``clip``,
    integers rounded (half to even) and kept in their type's range; a pixel where an input has no value,
    ``missing`` is true or the result is not finite gets ``spec.nodata``.

    >>> out = np.empty(3, np.float32)
    >>> evaluate_tile("(B - A) / (B + A)", [TileValues("A", np.array([10, 0, 3], np.uint8), fill=0),
    ...               TileValues("B", np.array([30, 5, 1], np.uint8), fill=0)], out, OutputSpec("x", "float32", -9999.0))
    >>> out.tolist()
    [0.5, -9999.0, -0.5]
    """
    operands = tuple(_operand(v) for v in inputs)
    program = _program(expression, operands, missing is not None, work_dtype,
                       tuple(float(c) for c in clip) if clip else None, spec.dtype, float(spec.nodata))
    program.run({v.name: v.values for v in inputs}, missing, out)


@dataclass(frozen=True)
class _Operand:
    name: str
    raw: bool                  # values as stored (an integer type)
    fill: Optional[float]      # raw: the stored nodata value, if the type can hold it
    scale: float
    offset: float


def _operand(v: TileValues) -> _Operand:
    raw = v.values.dtype.kind in "iu"
    fill = v.fill if raw and v.fill is not None and not math.isnan(v.fill) and float(v.fill).is_integer() \
        and np.iinfo(v.values.dtype).min <= v.fill <= np.iinfo(v.values.dtype).max else None
    return _Operand(v.name, raw, None if fill is None else float(fill), float(v.scale), float(v.offset))


class _Program:
    """A compiled one-pass expression: its numexpr program, its inputs in order, its typed constants."""

    def __init__(self, text: str, types: Mapping[str, type], constants: Mapping[str, np.ndarray],
                 mask: str = "") -> None:
        self.text = text
        names, self.vml = getExprNames(text, _CONTEXT)
        self.names = tuple(names)
        self.compiled = numexpr.NumExpr(text, [(n, types[n]) for n in self.names], **_CONTEXT)
        self.constants = dict(constants)
        self.mask = mask

    def run(self, arrays: Mapping[str, np.ndarray], missing: Optional[np.ndarray], out: np.ndarray) -> None:
        given = {**self.constants, **arrays, **({self.mask: missing} if self.mask else {})}
        # casting: the inputs to the work type, the result to the output type (after the clip and
        # rounding above: what astype did)
        self.compiled(*[given[n] for n in self.names], out=out, order="K", casting="unsafe", ex_uses_vml=self.vml)


_PROGRAMS: Dict[str, _Program] = {}
#: numexpr's defaults, spelled out (truediv: no effect in Python 3, but 'auto' inspects the caller's frame)
_CONTEXT = {"optimization": "aggressive", "truediv": False}


def _program(expression: str, operands: Tuple[_Operand, ...], masked: bool, work_dtype: str,
             clip: Optional[Tuple[float, ...]], out_dtype: str, nodata: float) -> _Program:
    """The program of these arguments, compiled once per process (keyed by their text: NaN included)."""
    key = repr((expression, operands, masked, work_dtype, clip, out_dtype, nodata))
    program = _PROGRAMS.get(key)
    if program is None:
        if len(_PROGRAMS) >= 64:
            _PROGRAMS.clear()
        program = _PROGRAMS[key] = _compose(expression, operands, masked, work_dtype, clip, out_dtype, nodata)
    return program


def _compose(expression: str, operands: Tuple[_Operand, ...], masked: bool, work_dtype: str,
             clip: Optional[Tuple[float, ...]], out_dtype: str, nodata: float) -> _Program:
    """Write the one-pass expression: ``where(no value, nodata, clip(result))``, each part as the
    former steps did it (same types, same order of operations)."""
    work = np.dtype(work_dtype)
    prefix = "_tw"
    while any(o.name.startswith(prefix) for o in operands):
        prefix += "_"
    constants: Dict[str, np.ndarray] = {}

    def constant(value: float, dtype: np.dtype) -> str:
        """A typed constant (a literal would be a float64, or take the type of the other operand)."""
        for name, known in constants.items():
            if known.dtype == dtype and known.tobytes() == np.asarray(value, dtype).tobytes():
                return name
        name = f"{prefix}{len(constants)}"
        constants[name] = np.asarray(value, dtype)
        return name

    scaled = {o.name: f"{o.name} * {constant(o.scale, work)} + {constant(o.offset, work)}"
              for o in operands if o.scale != 1.0 or o.offset != 0.0}
    result = f"({substitute(expression, scaled)})"
    types = {o.name: getType(np.empty(0, work)) for o in operands}
    kind = _result_type(result, work, constants)
    no_value = _no_value(operands, scaled, constant, work)
    mask = f"{prefix}m" if masked else ""
    if mask:
        no_value.append(mask)
        types[mask] = bool
    if kind.kind == "f":
        no_value.append(f"~({result} - {result} == 0)")   # inf or NaN (numexpr 2.8 has no isfinite)
    in_float32 = kind == np.float32 and out_dtype == "float32" and \
        all(math.isnan(c) or abs(c) <= float(np.finfo(np.float32).max) for c in clip or ())
    calc = np.dtype(np.float32) if in_float32 else np.dtype(np.float64)
    value = result
    if clip:
        low, high = constant(clip[0], calc), constant(clip[1], calc)
        no_value += [f"({b} != {b})" for b, v in ((low, clip[0]), (high, clip[1])) if math.isnan(v)]
        value = _clip(value, low, high)              # in float32 only when the result is: the same values
    if np.dtype(out_dtype).kind in "iu":
        info = np.iinfo(out_dtype)
        value = _clip(value, constant(info.min, calc), constant(info.max, calc))
        rint = constant(_RINT, calc)
        value = f"(({value} + {rint}) - {rint})"
    nodata_value = constant(nodata, calc)
    text = f"where({' | '.join(no_value)}, {nodata_value}, {value})" if no_value else value
    types.update({name: getType(c) for name, c in constants.items()})
    return _Program(text, types, constants, mask)


def _no_value(operands: Sequence[_Operand], scaled: Mapping[str, str], constant, work: np.dtype) -> List[str]:
    """Where an input has no value: its stored nodata (an integer type), or NaN after the scaling
    (a float type, or a scale or offset that is not finite)."""
    parts = []
    for o in operands:
        if o.raw and o.fill is not None:
            parts.append(f"({o.name} == {constant(o.fill, work)})")
        if not o.raw or not (math.isfinite(o.scale) and math.isfinite(o.offset)):
            v = f"({scaled.get(o.name, o.name)})"
            parts.append(f"({v} != {v})")
    return parts


def _clip(value: str, low: str, high: str) -> str:
    """``np.clip(value, low, high)`` for a value that is not NaN: a value equal to a bound is kept
    (signed zeros), the high bound wins when low > high."""
    lowered = f"where({value} < {low}, {low}, {value})"
    return f"where({lowered} > {high}, {high}, {lowered})"


def _result_type(result: str, work: np.dtype, constants: Mapping[str, np.ndarray]) -> np.dtype:
    """The type numexpr gives ``result`` on inputs of the work type."""
    names, _ = getExprNames(result, _CONTEXT)
    probe = [constants[n] if n in constants else np.ones(1, work) for n in names]
    return numexpr.NumExpr(result, [(n, getType(a)) for n, a in zip(names, probe)], **_CONTEXT)(*probe).dtype


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

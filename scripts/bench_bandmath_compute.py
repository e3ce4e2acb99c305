"""Band math's per-tile compute, before and after issue 21's one-pass numexpr, in CPU seconds.

In memory, single process, numexpr on one thread: the CPU time (``time.process_time``) a worker
spends on the tiles of a 7040 x 6980 two-band stack (RED, NIR) once the pixels are decoded, so the
load of a shared machine matters less than for wall-clock times. The stack looks like imagery: a
coarse scene disaggregated x20 by nearest neighbour, with nodata rows.

- before: the former pipeline. The read converted each tile to the work type (NaN for nodata; this
  was counted as "read" by the phases, it is shown as ``convert``), then scale and offset, a NaN
  mask, numexpr, the result as float64, NaN where invalid or not finite, clip, to the output type.
- after: :func:`tilewise.core.operations.bandmath.evaluate_tile` on the tiles as the engine reads
  them now (integer bands as stored; float bands still as floats with NaN, which the read does).

Both outputs are compared byte for byte.

With ``--file``, the whole tile function instead (read, compute, tile write) on a real file, in this
process, with whatever Tilewise is on the path: run it once with the old code and once with the new
(CPU seconds in total, and the tile phases in wall-clock seconds).

    python scripts/bench_bandmath_compute.py [--types uint8 int16 float32] [--tile 2048] [--repeat 3]
    PYTHONPATH=... python scripts/bench_bandmath_compute.py --file scene.tif --red 3 --nir 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numexpr
import numpy as np

from tilewise.core.grid import Grid, plan_tiles
from tilewise.core.io.cog import to_output
from tilewise.core.io.sources import to_float
from tilewise.core.operations.indices import INDICES
from tilewise.core.options import Options, OutputOptions, OutputSpec, RunOptions

HEIGHT, WIDTH = 7040, 6980
NODATA = {"uint8": 0, "int16": -9999, "uint16": 0, "float32": float("nan")}


def imagery(dtype: str, seed: int = 0) -> np.ndarray:
    """RED and NIR (2, HEIGHT, WIDTH): a smooth coarse scene with noise, x20 nearest neighbour."""
    rng = np.random.default_rng(seed)
    h, w = HEIGHT // 20, WIDTH // 20
    y, x = np.mgrid[0:h, 0:w]
    base = (np.sin(x / 17.0) + np.cos(y / 23.0)) * 40 + 100
    coarse = np.stack([base * 0.8 + rng.normal(0, 12, (h, w)), base * 1.1 + rng.normal(0, 12, (h, w))])
    coarse = np.clip(coarse, 1, 250)
    if dtype == "int16":
        coarse = coarse * 37 - 1000
    elif dtype == "float32":
        coarse = coarse / 255
    stack = np.repeat(np.repeat(coarse.astype(dtype), 20, 1), 20, 2)
    stack[0, :100] = NODATA[dtype]
    stack[1, 50:150] = NODATA[dtype]
    return np.ascontiguousarray(stack)


def before(expression, red, nir, fill, work, clip, spec, scale, offset):
    """The former pipeline over one tile: (seconds converting, seconds computing, output)."""
    t0 = time.process_time()
    values = {}
    for name, raw in (("RED", red), ("NIR", nir)):
        buf = np.empty(raw.shape, work)
        to_float(raw, buf, fill)
        values[name] = buf
    t1 = time.process_time()
    for name, v in values.items():
        if scale != 1.0 or offset != 0.0:
            values[name] = v * v.dtype.type(scale) + v.dtype.type(offset)
    invalid = np.zeros(red.shape, bool)
    for v in values.values():
        invalid |= np.isnan(v)
    result = numexpr.evaluate(expression, local_dict=values).astype(np.float64, copy=False)
    result[invalid | ~np.isfinite(result)] = np.nan
    if clip:
        np.clip(result, clip[0], clip[1], out=result)
    out = to_output(result, spec)
    return t1 - t0, time.process_time() - t1, out


def after(expression, red, nir, fill, work, clip, spec, scale, offset):
    """The one pass over one tile (float bands converted as the read does): same triple."""
    from tilewise.core.operations.bandmath import RAW_TYPES, TileValues, evaluate_tile
    t0 = time.process_time()
    inputs = []
    for name, raw in (("RED", red), ("NIR", nir)):
        if raw.dtype.name in RAW_TYPES:
            inputs.append(TileValues(name, raw, fill, scale, offset))
        else:
            buf = np.empty(raw.shape, work)
            to_float(raw, buf, fill)
            inputs.append(TileValues(name, buf, None, scale, offset))
    t1 = time.process_time()
    out = np.empty(red.shape, spec.dtype)
    evaluate_tile(expression, inputs, out, spec, work, clip)
    return t1 - t0, time.process_time() - t1, out


CASES = {  # name: (expression, clip, scale, offset, output type)
    "ndvi": (INDICES["ndvi"].expression(), INDICES["ndvi"].clip, 1.0, 0.0, "float32"),
    "ndvi scaled": (INDICES["ndvi"].expression(), INDICES["ndvi"].clip, 0.0001, -0.1, "float32"),
    "evi": (INDICES["evi"].expression().replace("BLUE", "RED"), None, 1.0, 0.0, "float32"),
    "ndvi int16 x1e4": ("(NIR - RED) / (NIR + RED) * 10000", None, 1.0, 0.0, "int16"),
}


def engine(path: str, red: int, nir: int, tile_size: int, repeat: int) -> None:
    """The tile function of ``tilewise ndvi`` (read, compute, write) over every tile, in this process."""
    from tilewise.core.operations.bandmath import BandMathOptions, bandmath_tile, plan_bandmath
    from tilewise.core.phases import TimedTile
    with tempfile.TemporaryDirectory() as work:
        output = OutputOptions(compression="NONE", overviews=False)
        job = plan_bandmath([{"RED": (path, red), "NIR": (path, nir)}], INDICES["ndvi"].expression(),
                            os.path.join(work, "ndvi.tif"), BandMathOptions(clip=INDICES["ndvi"].clip),
                            Options(output=output, run=RunOptions()))
        tiles = job.tiles(tile_size)
        timed = TimedTile(bandmath_tile)
        best = None
        for _ in range(repeat):
            phases = {}
            start = time.process_time()
            for t in tiles:
                _, spent = timed(job, t, job.sink.target(work, t))
                for k, v in spent.items():
                    phases[k] = phases.get(k, 0.0) + v
            cpu = time.process_time() - start
            if best is None or cpu < best[0]:
                best = (cpu, phases)
    cpu, phases = best
    print(f"{path}: NDVI of bands {red} and {nir}, {len(tiles)} tiles of up to {tile_size}, 1 process, numexpr on 1 "
          f"thread, best of {repeat}: {cpu:.2f} s CPU; wall: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="+", default=["uint8", "int16", "float32"])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--tile", type=int, default=2048, help="tile side (the CLI's on 2 workers: 2048)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    parser.add_argument("--file", help="time the whole tile function on this file instead")
    parser.add_argument("--red", type=int, default=3)
    parser.add_argument("--nir", type=int, default=4)
    args = parser.parse_args()
    numexpr.set_num_threads(1)
    if args.file:
        engine(args.file, args.red, args.nir, args.tile, args.repeat)
        return
    grid = Grid("EPSG:32612", (30.0, 0.0, 0.0, 0.0, -30.0, 0.0), WIDTH, HEIGHT)
    tiles = plan_tiles(grid, args.tile)
    print(f"{HEIGHT} x {WIDTH} x 2 bands, {len(tiles)} tiles of up to {args.tile}, numexpr on 1 thread; "
          f"CPU seconds, best of {args.repeat}")
    print(f"{'input':8} {'case':16} {'before: convert + compute':>26} {'after: convert + compute':>26} {'x':>6}  same")
    for dtype in args.types:
        stack = imagery(dtype)
        # the tiles as the engine reads them: contiguous (bands, rows, cols) buffers
        pieces = [np.ascontiguousarray(stack[:, t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width])
                  for t in tiles]
        del stack
        work = "float32"
        for case in args.cases:
            expression, clip, scale, offset, out_type = CASES[case]
            spec = OutputSpec("bench.tif", out_type).resolved()
            runs = {}
            for name, fn in (("before", before), ("after", after)):
                best = None
                for _ in range(args.repeat):
                    convert = compute = 0.0
                    outs = []
                    for piece in pieces:
                        c, k, out = fn(expression, piece[0], piece[1], NODATA[dtype], work, clip, spec, scale, offset)
                        convert, compute = convert + c, compute + k
                        outs.append(out)
                    if best is None or convert + compute < sum(best[:2]):
                        best = (convert, compute, outs)
                runs[name] = best
            same = all(a.tobytes() == b.tobytes() for a, b in zip(runs["before"][2], runs["after"][2]))
            b, a = runs["before"], runs["after"]
            print(f"{dtype:8} {case:16} {b[0]:9.2f} + {b[1]:5.2f} = {b[0] + b[1]:5.2f} s "
                  f"{a[0]:9.2f} + {a[1]:5.2f} = {a[0] + a[1]:5.2f} s {(b[0] + b[1]) / (a[0] + a[1]):5.1f}x  "
                  f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()

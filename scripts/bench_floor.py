"""Floors of ``make bench``: for each case, the shortest honest program that does the same job on all cores.

A floor decodes the same inputs, does the same arithmetic and writes the same kind of output, with
nothing else: threads read row strips (GDAL releases the GIL), the main thread computes each strip as it
arrives (numexpr for band math, Tilewise's own numba kernels where no library is faster: median, gap
filling) and one write makes the output:

* ``raw``: an uncompressed tiled GeoTIFF without overviews (what ``--compression NONE --no-overviews``
  and QGIS's raster calculator write);
* ``cog``: a DEFLATE COG with overviews, by GDAL's COG driver (``NUM_THREADS=ALL_CPUS``) straight from the
  computed array (a MEM dataset over it, no copy);
* ``parquet``: the extraction's long table (points: decode, sample, write).

The grid, type and nodata of the output are those of ``like`` (Tilewise's own output of the case), so
both write the same file kind. Runs once per call (``python bench_floor.py SPEC.json``: the CLI floor,
process start and imports included) or serves specs from stdin, one JSON line each, answering with the
seconds each took (``--serve``: a pre-started process, the in-session floor)::

    python scripts/bench_floor.py '{"op": "ndvi", "inputs": ["image.tif"], "bands": [3, 4], ...}'
"""

import json
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

CPUS = os.cpu_count() or 1
SCRIPTS = os.path.dirname(os.path.abspath(__file__))


def strips(height, block=256):
    """Row strips ``(row, rows)``: block-aligned, about four per core (one strip for a small raster)."""
    step = max(block, height // (4 * CPUS) // block * block)
    return [(r, min(step, height - r)) for r in range(0, height, step)]


def profile_of(like):
    import rasterio
    with rasterio.open(like) as src:
        return dict(count=src.count, height=src.height, width=src.width, dtype=src.dtypes[0], nodata=src.nodata,
                    crs=src.crs, transform=src.transform)


def deflate_options(dtype):
    """Tilewise's DEFLATE ``(level, predictor)`` for an output type (``cog_options`` of core/io/cog.py, which
    tests/engine/test_bench_floor.py checks against), without importing Tilewise into a floor's process."""
    return ("1", None) if dtype in ("float32", "float64") else (None, "YES")


def write(array, prof, out, output, level=None, predictor=None):
    """One write of ``array`` (``(bands, rows, cols)``) as ``output`` (``raw`` or ``cog``); a COG with
    Tilewise's DEFLATE level and predictor for the array's type unless ``level`` and ``predictor`` are given."""
    import rasterio
    from rasterio.shutil import copy
    if output == "raw":
        with rasterio.open(out, "w", driver="GTiff", width=prof["width"], height=prof["height"], count=array.shape[0],
                           dtype=array.dtype, nodata=prof["nodata"], crs=prof["crs"], transform=prof["transform"],
                           tiled=True, blockxsize=512, blockysize=512, BIGTIFF="IF_SAFER") as dst:
            dst.write(array)
        return
    from rasterio._io import MemoryDataset  # the array as a GDAL MEM dataset, without a copy
    if level is None and predictor is None:
        level, predictor = deflate_options(str(array.dtype))
    options = dict(COMPRESS="DEFLATE", BLOCKSIZE=512, OVERVIEW_RESAMPLING="AVERAGE", NUM_THREADS="ALL_CPUS",
                   BIGTIFF="IF_SAFER")
    if predictor:
        options["PREDICTOR"] = predictor
    if level:
        options["LEVEL"] = level
    with MemoryDataset(array, transform=prof["transform"], crs=prof["crs"], copy=False) as mem:
        if prof["nodata"] is not None:
            mem.nodata = prof["nodata"]
        copy(mem, out, driver="COG", **options)


def read_strips(read, height, compute):
    """Threads read each strip (``read(row, rows)``), at most two per core ahead of the caller's
    ``compute(row, rows, data)``, which takes them in order."""
    ahead = deque()
    with ThreadPoolExecutor(CPUS) as pool:
        for row, rows in strips(height):
            ahead.append((row, rows, pool.submit(read, row, rows)))
            if len(ahead) > 2 * CPUS:
                row0, rows0, future = ahead.popleft()
                compute(row0, rows0, future.result())
        while ahead:
            row0, rows0, future = ahead.popleft()
            compute(row0, rows0, future.result())


def median(spec):
    """Per-pixel median of a stack of files (each band apart), nodata ignored, Tilewise's median kernel."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window
    from tilewise.core.kernels.reducers import reduce_stack
    from tilewise.core.kernels.statistics import integer_range
    files, prof = spec["inputs"], profile_of(spec["like"])
    with rasterio.open(files[0]) as src:
        bands, width, height, nodata, dtype = src.count, src.width, src.height, src.nodata, src.dtypes[0]
    value_range = integer_range([dtype])
    out = np.empty((bands, height, width), prof["dtype"])

    def read(row, rows):
        stack = np.empty((len(files), bands, rows, width), np.float32)
        for i, f in enumerate(files):
            with rasterio.open(f) as src:
                src.read(window=Window(0, row, width, rows), out=stack[i])
        if nodata is not None:
            stack[stack == nodata] = np.nan
        return stack

    def compute(row, rows, stack):
        for b in range(bands):
            m = reduce_stack(stack[:, b], "median", value_range=value_range)[0]
            out[b, row:row + rows] = np.where(np.isnan(m), prof["nodata"], m)

    read_strips(read, height, compute)
    write(out, prof, spec["out"], spec["output"])


def ndvi_array(spec):
    """NDVI of ``inputs[0]``'s bands ``bands`` (red, nir) as float32, -9999 where undefined or nodata."""
    import numexpr as ne
    import numpy as np
    import rasterio
    from rasterio.windows import Window
    red_band, nir_band = spec.get("bands", (3, 4))
    with rasterio.open(spec["inputs"][0]) as src:
        width, height, nodata = src.width, src.height, src.nodata
    out = np.empty((1, height, width), np.float32)

    def read(row, rows):
        with rasterio.open(spec["inputs"][0]) as src:  # one handle per strip: handles are not thread-safe
            return src.read((red_band, nir_band), window=Window(0, row, width, rows), out_dtype="float32")

    def compute(row, rows, rn):
        undefined = "(n + r == 0)" if nodata is None else f"(n + r == 0) | (r == {nodata!r}) | (n == {nodata!r})"
        ne.evaluate(f"where({undefined}, -9999, (n - r) / (n + r))", local_dict={"r": rn[0], "n": rn[1]},
                    out=out[0, row:row + rows], casting="unsafe")

    read_strips(read, height, compute)
    return out


def ndvi(spec):
    write(ndvi_array(spec), profile_of(spec["like"]), spec["out"], spec["output"])


def mosaic(spec):
    """Each tile decoded (a thread per file) into its place in the output, one write."""
    import numpy as np
    import rasterio
    prof = profile_of(spec["like"])
    out = np.empty((prof["count"], prof["height"], prof["width"]), prof["dtype"])
    if prof["nodata"] is not None:
        out.fill(prof["nodata"])
    inverse = ~prof["transform"]

    def place(path):
        with rasterio.open(path) as src:
            col, row = (int(round(v)) for v in inverse * (src.transform.c, src.transform.f))
            src.read(out=out[:, row:row + src.height, col:col + src.width])

    with ThreadPoolExecutor(CPUS) as pool:
        list(pool.map(place, spec["inputs"]))
    write(out, prof, spec["out"], spec["output"])


def points(spec):
    """Extraction at points: each raster decoded (a thread per raster), sampled, one long Parquet table."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyogrio
    import rasterio
    import shapely
    _, _, wkb, fields = pyogrio.raw.read(spec["zones"])
    xy = shapely.get_coordinates(shapely.from_wkb(wkb))
    rasters = spec["inputs"]
    with rasterio.open(rasters[0]) as src:
        rows, cols = rasterio.transform.rowcol(src.transform, xy[:, 0], xy[:, 1])
        inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
    rows, cols = np.where(inside, rows, 0), np.where(inside, cols, 0)

    def sample(path):
        with rasterio.open(path) as src:
            band = src.read(1)
            values = band[rows, cols].astype(np.float64)
            values[~inside | (band[rows, cols] == src.nodata)] = np.nan
        return values

    with ThreadPoolExecutor(CPUS) as pool:
        values = np.stack(list(pool.map(sample, rasters)), axis=1)  # points x rasters
    n = len(rasters)
    names = np.asarray([os.path.splitext(os.path.basename(r))[0] for r in rasters], dtype=object)
    table = pa.table({"pid": np.repeat(fields[0], n), "source": np.tile(names, len(xy)),
                      "date": pa.nulls(len(xy) * n, pa.date32()), "band": np.ones(len(xy) * n, np.int32),
                      "value": pa.array(values.ravel(), from_pandas=True)})
    pq.write_table(table, spec["out"])


def deflate_trade(spec):
    """The NDVI of ``inputs[0]`` written as a COG with each DEFLATE level x predictor: encode seconds (the best
    of ``runs``, the combinations interleaved so that a load that comes and goes hits all alike), bytes."""
    array, prof = ndvi_array(spec), profile_of(spec["like"])
    levels, predictors = spec.get("levels", (1, 6)), spec.get("predictors", (1, 2, 3))
    combos = [(level, predictor) for level in levels for predictor in predictors]
    times = {c: [] for c in combos}
    sizes = {}
    for _ in range(spec.get("runs", 1)):
        for level, predictor in combos:
            name = {1: "NO", 2: "STANDARD", 3: "FLOATING_POINT"}[predictor]
            t0 = time.perf_counter()
            write(array, prof, spec["out"], "cog", level=level, predictor=name)
            times[(level, predictor)].append(time.perf_counter() - t0)
            sizes[(level, predictor)] = os.path.getsize(spec["out"])
    return [dict(level=level, predictor=predictor, seconds=min(times[(level, predictor)]),
                 bytes=sizes[(level, predictor)]) for level, predictor in combos]


def gapfill(spec):
    """The floor of ``make bench``'s gap-filling case (op ``gapfill``): threads read row
    strips of every date, Tilewise's kernel fills each strip as it arrives (linear, edges left empty), one
    DEFLATE COG with overviews of the filled stack, by GDAL's COG driver on all cores. ``spec``: ``inputs``
    (``ndvi_YYYY-MM-DD.tif`` files), ``like`` (the output whose grid, type and nodata to write), ``out``."""
    import datetime as dt
    import numpy as np
    import rasterio
    from rasterio.windows import Window
    from tilewise.core.kernels.gapfill import gapfill_stack
    from tilewise.core.kernels.gapfill_plan import plan_gapfill
    files, prof = spec["inputs"], profile_of(spec["like"])
    epoch = dt.date(1970, 1, 1)
    days = np.asarray([(dt.date.fromisoformat(os.path.basename(f)[5:15]) - epoch).days for f in files], np.float64)
    options = plan_gapfill("linear", edges=0)
    with rasterio.open(files[0]) as src:
        width, height = src.width, src.height
    out = np.empty((len(files), height, width), np.float32)

    def read(row, rows):
        stack = np.empty((len(files), rows, width), np.float32)
        for i, f in enumerate(files):
            with rasterio.open(f) as src:
                src.read(1, window=Window(0, row, width, rows), out=stack[i])
        return stack

    def compute(row, rows, stack):
        out[:, row:row + rows] = gapfill_stack(stack, days, options)[0]

    read_strips(read, height, compute)
    if prof["nodata"] is not None and not np.isnan(prof["nodata"]):
        out[np.isnan(out)] = prof["nodata"]
    write(out, prof, spec["out"], "cog")


OPS = {"median": median, "ndvi": ndvi, "mosaic": mosaic, "points": points, "gapfill": gapfill,
       "deflate_trade": deflate_trade}


def warm():
    """What a pre-started process has done before its first job: the imports."""
    import numexpr  # noqa: F401
    import numpy  # noqa: F401
    import rasterio  # noqa: F401
    import rasterio.shutil  # noqa: F401
    from tilewise.core.kernels import reducers  # noqa: F401


def serve():
    warm()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        spec = json.loads(line)
        t0 = time.perf_counter()
        result = OPS[spec["op"]](spec)
        print(json.dumps({"seconds": time.perf_counter() - t0, "result": result}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve()
    else:
        spec = json.loads(sys.argv[1])
        result = OPS[spec["op"]](spec)
        if result is not None:
            print(json.dumps(result))

"""``make bench``: Tilewise side by side with QGIS, GDAL, numpy and exactextract on the same files, in one run.

Every tool runs end to end, from files on disk to a finished output file, as a
separate process; wall time (median of --runs, with min and max) and the peak
memory of its whole process tree are recorded. Each case also has an I/O floor:
the time to decode its inputs and encode an output of the same size and
compression, spread over all cores. Tilewise runs in debug mode (``--debug``, ``TILEWISE_DEBUG``) and
its phase breakdown (the log's last line) is kept: the chart stacks each Tilewise bar by phase,
with what lies outside the engine's and the algorithm's clocks (the process's own start and exit,
qgis_process loading QGIS) as "outside". Writes bench-output/bench.md and bench.png.

    python3 scripts/bench.py --engine-python .venv/bin/python [--quick] [--runs 3]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qgis_process import qgis_process_binary, qgis_process_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "build", "plugins")
PAGE = os.sysconf("SC_PAGE_SIZE")

# -- inputs (engine Python; cached by their parameters) ---------------------------------------------------

MAKE_STACK = r"""
import sys, math, numpy as np, rasterio
from rasterio.transform import from_origin
folder, n, size, bands, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
h, w = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))  # "HxW" or a side
rng = np.random.default_rng(84)
top = 255 if dtype == "uint8" else 10000
nodata = 255 if dtype == "uint8" else 65535
y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
base = (np.sin(6 * x) * np.cos(5 * y) + 1) / 2
blocks = dict(tiled=True, blockxsize=256, blockysize=256) if min(h, w) >= 256 else dict(tiled=False)
prof = dict(driver="GTiff", width=w, height=h, count=bands, dtype=dtype, nodata=nodata, crs="EPSG:32633",
            transform=from_origin(500000, 5200000, 30, 30), **blocks,
            compress="DEFLATE", predictor=2, num_threads="ALL_CPUS")
for i in range(n):
    season = 0.5 + 0.4 * math.sin(2 * math.pi * i / 12)
    with rasterio.open(f"{folder}/r{i:03d}.tif", "w", **prof) as dst:
        for b in range(1, bands + 1):
            v = base * season * (0.6 + 0.1 * b) + rng.normal(0, 0.05, (h, w)).astype(np.float32)
            a = np.clip(v * (top - 1), 0, top - 1).astype(dtype)
            a[rng.random((h, w)) < 0.10] = nodata
            dst.write(a, b)
"""

MAKE_SERIES = r"""
import sys, datetime as dt, numpy as np, rasterio
from rasterio.transform import from_origin
sys.path.insert(0, sys.argv[5])
from bench_gapfill import make_series
folder, n, size, gaps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
days, stack = make_series(n, size, gaps)
prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", nodata=float("nan"),
            crs="EPSG:32633", transform=from_origin(500000, 5200000, 30, 30), tiled=True, blockxsize=256,
            blockysize=256, compress="DEFLATE", predictor=3, num_threads="ALL_CPUS")
for d, layer in zip(days, stack):
    date = dt.date(1970, 1, 1) + dt.timedelta(days=int(d))
    with rasterio.open(f"{folder}/ndvi_{date.isoformat()}.tif", "w", **prof) as dst:
        dst.write(layer, 1)
"""

# xarray's interpolate_na on Dask (time in one chunk, space in chunks), from the same files to one GeoTIFF
XARRAY_GAPFILL = r"""
import sys, datetime as dt, os, numpy as np, rasterio, xarray as xr, dask
out, chunk, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with rasterio.open(files[0]) as src:
    prof = src.profile
dates = [np.datetime64(os.path.basename(f)[5:15], "ns") for f in files]
stack = np.empty((len(files), prof["height"], prof["width"]), np.float32)
for i, f in enumerate(files):
    with rasterio.open(f) as src:
        stack[i] = src.read(1)
da = xr.DataArray(stack, dims=("time", "y", "x"), coords={"time": dates}).chunk({"time": -1, "y": chunk, "x": chunk})
filled = da.interpolate_na("time", method="linear").compute(scheduler="threads").values.astype(np.float32)
prof.update(count=len(files), compress="DEFLATE", predictor=3, num_threads="ALL_CPUS", BIGTIFF="IF_SAFER")
with rasterio.open(out, "w", **prof) as dst:
    dst.write(filled)
"""

MAKE_IMAGE = r"""
import sys, numpy as np, rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
path, size, tiles_dir, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rng = np.random.default_rng(7)
y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
field = (np.sin(9 * x + 2 * np.cos(4 * y)) + 1) / 2
prof = dict(driver="GTiff", width=size, height=size, count=6, dtype="uint8", crs="EPSG:32633",
            transform=from_origin(300000, 4700000, 10, 10), tiled=True, blockxsize=256, blockysize=256,
            compress="DEFLATE", predictor=2, num_threads="ALL_CPUS")
with rasterio.open(path, "w", **prof) as dst:
    for b in range(1, 7):
        k = (0.3, 0.35, 0.25, 0.8, 0.5, 0.35)[b - 1]
        v = field * k * 255 + rng.normal(0, 4, (size, size)).astype(np.float32)
        dst.write(np.clip(v, 1, 254).astype("uint8"), b)
step = -(-size // n)
with rasterio.open(path) as src:
    for r in range(n):
        for c in range(n):
            w = Window(c * step, r * step, min(step, size - c * step), min(step, size - r * step))
            p = dict(prof, width=w.width, height=w.height, transform=src.window_transform(w))
            with rasterio.open(f"{tiles_dir}/tile_{r}_{c}.tif", "w", **p) as dst:
                dst.write(src.read(window=w))
"""

# -- peers that are small scripts (engine Python) -------------------------------------------------------

NUMPY_MEDIAN = r"""
import sys, numpy as np, rasterio
mod, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
stack = []
for f in files:
    with rasterio.open(f) as src:
        a = src.read(1).astype(np.float32); a[a == src.nodata] = np.nan; prof = src.profile
    stack.append(a)
stack = np.stack(stack)
if mod == "bottleneck":
    import bottleneck as bn; med = bn.nanmedian(stack, axis=0)
else:
    import warnings; warnings.simplefilter("ignore"); med = np.nanmedian(stack, axis=0)
prof.update(dtype="float32", nodata=-9999, count=1, compress="DEFLATE", predictor=3)
with rasterio.open(out, "w", **prof) as dst:
    dst.write(np.where(np.isnan(med), -9999, med).astype(np.float32), 1)
"""

# What NDVI tutorials write: each pre-cut tile read, NDVI in float64, one uncompressed GeoTIFF per tile
# (no merge, no nodata, no overviews); serially or with a Pool of 16 (rasterio + numpy: what rioxarray
# does underneath, without xarray's overhead).
TILE_SCRIPT = r"""
import sys, os, glob, numpy as np, rasterio
from multiprocessing import Pool
out_dir, pool, tiles = sys.argv[1], int(sys.argv[2]), sorted(glob.glob(os.path.join(sys.argv[3], "tile_*.tif")))
def one(path):
    with rasterio.open(path) as src:
        red, nir = src.read(3).astype("float64"), src.read(4).astype("float64")
        prof = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="float64", crs=src.crs,
                    transform=src.transform)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    with rasterio.open(os.path.join(out_dir, os.path.basename(path)), "w", **prof) as dst:
        dst.write(ndvi, 1)
os.makedirs(out_dir, exist_ok=True)
if pool:
    with Pool(pool) as p:
        p.map(one, tiles)
else:
    for t in tiles:
        one(t)
open(os.path.join(out_dir, "done"), "w").close()
"""

FLOOR = r"""
import sys, os, json
from concurrent.futures import ProcessPoolExecutor
def decode(f):
    import rasterio
    with rasterio.open(f) as src:
        for _, w in src.block_windows(1):
            src.read(window=w)
    return 0
if __name__ == "__main__":
    import rasterio
    from rasterio.shutil import copy
    spec = json.loads(sys.argv[1])
    with ProcessPoolExecutor(os.cpu_count()) as ex:
        list(ex.map(decode, spec["inputs"], chunksize=1))
    copy(spec["like"], spec["out"], driver="COG", COMPRESS=spec["compress"], NUM_THREADS="ALL_CPUS",
         BIGTIFF="IF_SAFER", BLOCKSIZE=512)
"""

KERNEL = r"""
import sys, time, numpy as np, numba
import bottleneck as bn
from tilewise.core.kernels.reducers import reduce_stack
numba.set_num_threads(1)
rng = np.random.default_rng(1)
s = rng.integers(0, 255, (84, 512, 512)).astype(np.float32); s[rng.random(s.shape) < 0.1] = np.nan
f = s + np.float32(0.5)  # not integer-valued: the general selection path
reduce_stack(s[:, :8, :8], value_range=(0, 8)); reduce_stack(f[:, :8, :8])
def best(fn):
    t = []
    for _ in range(5):
        t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
    return min(t)
print(best(lambda: reduce_stack(s, "median", value_range=(0, 8))), best(lambda: reduce_stack(f, "median")),
      best(lambda: bn.nanmedian(s, axis=0)))
"""


class Tree:
    """Peak resident memory of a process and all its descendants, sampled every 20 ms."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def _rss(self):
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    parents[int(name)] = (int(fields[1]), int(fields[21]) * PAGE)
                except (OSError, IndexError, ValueError):
                    pass
        total, todo, seen = 0, [self.pid], set()
        while todo:
            p = todo.pop()
            if p in seen or p not in parents:
                continue
            seen.add(p)
            total += parents[p][1]
            todo.extend(c for c, (pp, _) in parents.items() if pp == p)
        return total

    def stop(self):
        self._stop.set()
        self._t.join()


def measure(cmd, env, out=None):
    if out and os.path.exists(out):
        os.remove(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            shell=isinstance(cmd, str))
    tree = Tree(proc.pid)
    text = proc.communicate()[0].decode("utf-8", "replace")
    seconds = time.perf_counter() - t0
    tree.stop()
    if proc.returncode != 0 or (out and not os.path.exists(out)):
        raise RuntimeError(f"{cmd if isinstance(cmd, str) else ' '.join(cmd[:6])}... failed:\n{text[-3000:]}")
    return seconds, tree.peak, text


def parse_phases(text):
    """The phases of Tilewise's debug line (``Phases (s): read 0.20, compute 1.10 = ...``), or None."""
    lines = [ln for ln in text.splitlines() if "Phases (s): " in ln]
    if not lines:
        return None
    body = lines[-1].split("Phases (s): ", 1)[1].split(" = ", 1)[0]
    return {name.strip(): float(value) for name, value in (part.rsplit(" ", 1) for part in body.split(", "))}


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.join(args.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=PLUGINS, TILEWISE_PYTHON=args.engine_python)
        self.qenv = qgis_process_env(PLUGINS, os.path.join(self.work, "qgis-profile"))
        self.qenv["TILEWISE_PYTHON"] = args.engine_python
        self.qenv["TILEWISE_DEBUG"] = "1"  # the phase breakdown in the log (see parse_phases)
        self.rows = []

    def engine(self, *args):
        return [self.args.engine_python, *args]

    def qgis(self, alg, params):
        return [qgis_process_binary(), "run", alg, "--"] + [f"{k}={v}" for k, v in params]

    def run(self, case, tool, cmd, out, qgis=False, floor=False, note=""):
        times, peak, runs = [], 0, []
        for _ in range(1 if floor and self.args.quick else self.args.runs):
            s, p, text = measure(cmd, self.qenv if qgis else self.env, out)
            times.append(s)
            peak = max(peak, p)
            runs.append((s, parse_phases(text)))
        median = statistics.median(times)
        phases = min(runs, key=lambda r: abs(r[0] - median))  # the phases of the run nearest the median
        row = dict(case=case, tool=tool, median=median, min=min(times), max=max(times),
                   peak_mb=peak / 2**20, floor=floor, note=note)
        if phases[1]:
            row["phases"] = dict(phases[1], outside=max(phases[0] - sum(phases[1].values()), 0.0))
        self.rows.append(row)
        print(f"  {tool:34s} {row['median']:8.2f} s  (min {row['min']:.2f}, max {row['max']:.2f})  "
              f"peak {row['peak_mb']:7.0f} MB", flush=True)
        if phases[1]:
            print("    " + ", ".join(f"{k} {v:.2f}" for k, v in row["phases"].items()), flush=True)
        return row

    def data(self, name, script, *argv):
        folder = os.path.join(self.work, name)
        stamp = os.path.join(folder, ".done")
        if not os.path.exists(stamp):
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            subprocess.run(self.engine("-c", script, *[a.format(folder=folder) for a in argv]), check=True,
                           env=self.env)
            open(stamp, "w").close()
        return folder

    def floor(self, case, inputs, like, compress="DEFLATE"):
        out = os.path.join(self.work, "floor.tif")
        spec = json.dumps({"inputs": inputs, "like": like, "out": out, "compress": compress})
        return self.run(case, "I/O floor (decode + encode)", self.engine("-c", FLOOR, spec), out, floor=True)

    # -- cases ---------------------------------------------------------------------------------------------

    def median_case(self, case, n, size, bands, dtype, peers=True):
        print(f"\n{case}", flush=True)
        folder = self.data(f"stack_{n}_{size}_{bands}_{dtype}", MAKE_STACK, "{folder}", str(n), str(size),
                           str(bands), dtype)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
        out = os.path.join(self.work, "median.tif")
        self.run(case, "tilewise:temporalmedian (qgis_process)",
                 self.qgis("tilewise:temporalmedian", [("INPUT", f) for f in files] + [("OUTPUT", out)]), out,
                 qgis=True)
        cli = self.run(case, "tilewise composite (CLI)",
                       self.engine("-m", "tilewise", "composite", "-q", "--debug", "-o", out, *files), out)
        tw_out = os.path.join(self.work, f"{case[:12].replace(' ', '_')}_tilewise.tif")
        shutil.copy(out, tw_out)
        if bands == 1:
            self.run(case, "native:cellstatistics (qgis_process)", self.qgis("native:cellstatistics", [
                ("INPUT", f) for f in files] + [("STATISTIC", 3), ("IGNORE_NODATA", "true"),
                                                ("REFERENCE_LAYER", files[0]), ("OUTPUT", out)]), out, qgis=True)
        if peers and bands == 1:
            for mod in ("numpy", "bottleneck"):
                self.run(case, f"{mod}.nanmedian script (in memory)",
                         self.engine("-c", NUMPY_MEDIAN, mod, out, *files), out)
        self.floor(case, files, tw_out)
        return cli

    def scaling(self, n, size, dtype):
        case = f"Scaling: median {n} x {size}^2 {dtype}"
        print(f"\n{case}", flush=True)
        folder = self.data(f"stack_{n}_{size}_1_{dtype}", MAKE_STACK, "{folder}", str(n), str(size), "1", dtype)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
        out = os.path.join(self.work, "scale.tif")
        times = {}
        for w in sorted({1, 2, os.cpu_count() or 1}):
            times[w] = self.run(case, f"tilewise CLI, {w} worker(s)",
                                self.engine("-m", "tilewise", "composite", "-q", "--debug", "-j", str(w), "-o", out, *files),
                                out)["median"]
        return times

    def ndvi_case(self, size):
        case = f"NDVI {size} x {size} uint8 (bands 3, 4)"
        print(f"\n{case}", flush=True)
        folder = self.data(f"image_{size}", MAKE_IMAGE, "{folder}/image.tif", str(size), "{folder}", "4")
        image = os.path.join(folder, "image.tif")
        out = os.path.join(self.work, "ndvi.tif")
        self.run(case, "tilewise:ndvi (qgis_process)", self.qgis("tilewise:ndvi", [
            ("RED", image), ("RED_BAND", 3), ("NIR", image), ("NIR_BAND", 4), ("OUTPUT", out)]), out, qgis=True)
        self.run(case, "tilewise ndvi (CLI)", self.engine("-m", "tilewise", "ndvi", "-q", "--debug", "--red", f"{image}:3",
                                                          "--nir", f"{image}:4", "-o", out), out)
        from tilewise.core.vocabulary import COMPRESSIONS
        raw = [("COMPRESSION", COMPRESSIONS.index("NONE")), ("OVERVIEWS", "false")]  # what the raster calculator writes
        self.run(case, "tilewise:ndvi NONE, no overviews (qgis_process)", self.qgis("tilewise:ndvi", [
            ("RED", image), ("RED_BAND", 3), ("NIR", image), ("NIR_BAND", 4), *raw, ("OUTPUT", out)]), out, qgis=True)
        self.run(case, "tilewise ndvi NONE, no overviews (CLI)", self.engine(
            "-m", "tilewise", "ndvi", "-q", "--debug", "--compression", "NONE", "--no-overviews", "--red", f"{image}:3",
            "--nir", f"{image}:4", "-o", out), out)
        tw_out = os.path.join(self.work, "ndvi_tilewise.tif")
        shutil.copy(out, tw_out)
        name = "image"
        self.run(case, "qgis:rastercalculator (qgis_process)", self.qgis("qgis:rastercalculator", [
            ("EXPRESSION", f'("{name}@4" - "{name}@3") / ("{name}@4" + "{name}@3")'), ("LAYERS", image),
            ("OUTPUT", out)]), out, qgis=True, note="uncompressed output")
        self.run(case, "gdal_calc.py", ["gdal_calc.py", "--quiet", "-A", image, "--A_band=3", "-B", image,
                                        "--B_band=4", "--type=Float32", "--NoDataValue=-9999", "--co=COMPRESS=DEFLATE",
                                        "--co=TILED=YES", "--co=PREDICTOR=3", "--overwrite", f"--outfile={out}",
                                        "--calc=(B.astype(float32) - A) / (B.astype(float32) + A)"], out)
        tiles_out = os.path.join(self.work, "ndvi_tiles")
        for pool, label in ((0, "serially"), (16, "Pool(16)")):
            shutil.rmtree(tiles_out, ignore_errors=True)
            self.run(case, f"per-tile script, {label}", self.engine("-c", TILE_SCRIPT, tiles_out, str(pool), folder),
                     os.path.join(tiles_out, "done"), note="16 float64 GeoTIFFs, no merge/nodata/overviews")
        self.floor(case, [image], tw_out)

    def gapfill_case(self, n, size, gaps=0.3):
        """Files in, filled series out: tilewise gapfill (CLI and qgis_process) against xarray's
        interpolate_na on Dask; then the kernels alone in memory (scripts/bench_gapfill.py)."""
        case = f"Gap filling {n} x {size}^2 float32, {gaps:.0%} gaps (linear)"
        print(f"\n{case}", flush=True)
        scripts = os.path.dirname(os.path.abspath(__file__))
        folder = self.data(f"series_{n}_{size}_{gaps}", MAKE_SERIES, "{folder}", str(n), str(size), str(gaps), scripts)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
        out = os.path.join(self.work, "filled.tif")
        self.run(case, "tilewise:gapfill (qgis_process)",
                 self.qgis("tilewise:gapfill", [("INPUT", f) for f in files] + [("OUTPUT", out)]), out, qgis=True)
        self.run(case, "tilewise gapfill (CLI)", self.engine("-m", "tilewise", "gapfill", "-q", "-o", out, *files), out)
        tw_out = os.path.join(self.work, "filled_tilewise.tif")
        shutil.copy(out, tw_out)
        self.run(case, "xarray interpolate_na + dask script", self.engine("-c", XARRAY_GAPFILL, out, "500", *files),
                 out, note="threads, 500^2 chunks")
        self.floor(case, files, tw_out)
        rows = os.path.join(self.work, "bench_gapfill.json")
        subprocess.run(self.engine(os.path.join(scripts, "bench_gapfill.py"), "--dates", str(n), "--size", str(size),
                                   "--gaps", str(gaps), "--json", rows), env=self.env, check=True)
        with open(rows) as f:
            return json.load(f)

    def mosaic_case(self, size):
        case = f"Mosaic 16 tiles of {size} x {size} x 6 uint8"
        print(f"\n{case}", flush=True)
        folder = self.data(f"image_{size}", MAKE_IMAGE, "{folder}/image.tif", str(size), "{folder}", "4")
        tiles = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("tile_"))
        out = os.path.join(self.work, "mosaic.tif")
        self.run(case, "tilewise:mosaic (qgis_process)", self.qgis("tilewise:mosaic", [
            ("INPUT_FOLDER", folder), ("PATTERN", "tile_*.tif"), ("OUTPUT", out)]), out, qgis=True)
        self.run(case, "tilewise mosaic (CLI)", self.engine("-m", "tilewise", "mosaic", "-q", "--debug", "-o", out,
                                                            os.path.join(folder, "tile_*.tif")), out)
        tw_out = os.path.join(self.work, "mosaic_tilewise.tif")
        shutil.copy(out, tw_out)
        vrt = os.path.join(self.work, "tiles.vrt")
        self.run(case, "gdalbuildvrt + gdal_translate -of COG",
                 f"gdalbuildvrt -q {vrt} {' '.join(tiles)} && gdal_translate -q -of COG -co COMPRESS=DEFLATE "
                 f"-co NUM_THREADS=ALL_CPUS -co BIGTIFF=IF_SAFER {vrt} {out}", out)
        self.run(case, "gdal_merge.py", ["gdal_merge.py", "-q", "-o", out, "-co", "COMPRESS=DEFLATE",
                                         "-co", "TILED=YES", *tiles], out, note="no COG, no overviews")
        self.floor(case, tiles, tw_out)

    def first_run(self):
        """The first run after installing against a warm one, side by side: tilewise:temporalmedian through
        qgis_process on four 6-band uint8 scenes with an empty numba cache (no set-up: every kernel the run
        needs compiles in its workers), right after the set-up's warm-up (``driver --warm``, as
        tilewise:setupengine and make deps run it, into another empty cache), and with a warm cache."""
        case = "First run: median of 4 x 352^2 x 6 bands uint8"
        print(f"\n{case}", flush=True)
        folder = self.data("stack_4_352_6_uint8", MAKE_STACK, "{folder}", "4", "352", "6", "uint8")
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
        out = os.path.join(self.work, "first.tif")
        cmd = self.qgis("tilewise:temporalmedian", [("INPUT", f) for f in files] + [("OUTPUT", out)])
        times = {"cold": [], "after set-up": [], "warm": [], "set-up warm-up": []}
        peaks = dict.fromkeys(times, 0)

        def timed(key, command, env, output=None):
            seconds, peak, _ = measure(command, env, output)
            times[key].append(seconds)
            peaks[key] = max(peaks[key], peak)

        for _ in range(self.args.runs):
            with tempfile.TemporaryDirectory(prefix="tilewise-bench-numba-") as cold, \
                    tempfile.TemporaryDirectory(prefix="tilewise-bench-numba-") as ready:
                timed("cold", cmd, dict(self.qenv, NUMBA_CACHE_DIR=cold), out)
                timed("set-up warm-up", self.engine("-m", "tilewise.core.runtime.driver", "--warm"),
                      dict(self.env, NUMBA_CACHE_DIR=ready))
                timed("after set-up", cmd, dict(self.qenv, NUMBA_CACHE_DIR=ready), out)
                timed("warm", cmd, dict(self.qenv, NUMBA_CACHE_DIR=ready), out)
        labels = {"cold": "qgis_process, empty numba cache", "set-up warm-up": "set-up: kernels into the cache",
                  "after set-up": "qgis_process, first run after set-up", "warm": "qgis_process, warm cache"}
        for key, label in labels.items():
            t = times[key]
            self.rows.append(dict(case=case, tool=label, median=statistics.median(t), min=min(t), max=max(t),
                                  peak_mb=peaks[key] / 2**20, floor=False, note=""))
            print(f"  {label:38s} {statistics.median(t):8.2f} s  (min {min(t):.2f}, max {max(t):.2f})  "
                  f"peak {peaks[key] / 2**20:7.0f} MB", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"  cold / warm: {med['cold'] / med['warm']:.1f}x; first run after set-up - warm: "
              f"{med['after set-up'] - med['warm']:+.2f} s (goal: within 2 s)", flush=True)
        return med

    def session(self, median_stack, image):
        """The same jobs in one QGIS session (scripts/bench_session.py): Tilewise on its warm engine against
        native:cellstatistics and qgis:rastercalculator, each run interleaved with the others; the first
        run of each apart (Tilewise's starts the warm engine)."""
        tiny = self.data("stack_12_33x81_1_float32", MAKE_STACK, "{folder}", "12", "33x81", "1", "float32")
        out = os.path.join(self.work, "session")
        os.makedirs(out, exist_ok=True)

        def tifs(folder):
            return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))

        def median_tools(files, tag):
            return [dict(tool="tilewise:temporalmedian (warm engine)", alg="tilewise:temporalmedian",
                         params={"INPUT": files, "OUTPUT": os.path.join(out, f"{tag}_tw.tif")}),
                    dict(tool="native:cellstatistics", alg="native:cellstatistics",
                         params={"INPUT": files, "STATISTIC": 3, "IGNORE_NODATA": True, "REFERENCE_LAYER": files[0],
                                 "OUTPUT": os.path.join(out, f"{tag}_cs.tif")})]

        from tilewise.core.vocabulary import COMPRESSIONS
        bands = {"RED": image, "RED_BAND": 3, "NIR": image, "NIR_BAND": 4}
        ndvi = [dict(tool="tilewise:ndvi NONE, no overviews (warm engine)", alg="tilewise:ndvi",
                     params=dict(bands, COMPRESSION=COMPRESSIONS.index("NONE"), OVERVIEWS=False,
                                 OUTPUT=os.path.join(out, "ndvi_raw.tif"))),
                dict(tool="tilewise:ndvi default COG (warm engine)", alg="tilewise:ndvi",
                     params=dict(bands, OUTPUT=os.path.join(out, "ndvi_cog.tif"))),
                dict(tool="qgis:rastercalculator", alg="qgis:rastercalculator",
                     params={"EXPRESSION": '("image@4" - "image@3") / ("image@4" + "image@3")', "LAYERS": [image],
                             "OUTPUT": os.path.join(out, "ndvi_rc.tif")})]
        n_median = len(tifs(median_stack))
        side = rasterio_size(tifs(median_stack)[0])
        isize = rasterio_size(image)
        cases = [dict(case="Session: tiny median 12 x 81 x 33 float32", tools=median_tools(tifs(tiny), "tiny")),
                 dict(case=f"Session: median {n_median} x {side} uint8", tools=median_tools(tifs(median_stack), "med")),
                 dict(case=f"Session: NDVI {isize} uint8", tools=ndvi)]
        spec = os.path.join(self.work, "session.json")
        with open(spec, "w") as f:
            json.dump({"plugins": PLUGINS, "cases": cases}, f)
        print("\nIn one QGIS session (processing.run; first run apart, then the median of the others)", flush=True)
        env = dict(self.qenv, PYTHONPATH=PLUGINS)
        proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                            "bench_session.py"), spec, str(self.args.runs)],
                              env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"bench_session.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        for r in rows:
            row = dict(case=r["case"], tool=r["tool"], median=r["median"], min=r["min"], max=r["max"], peak_mb=0.0,
                       floor=False, note=f"first run {r['first']:.2f} s")
            if r["phases"]:
                ph = parse_phases("Phases (s): " + r["phases"])
                row["phases"] = dict(ph, outside=max(r["median"] - sum(ph.values()), 0.0))
            self.rows.append(row)
            print(f"  {r['case'][9:40]:32s} {r['tool']:46s} {r['median']:7.3f} s (first {r['first']:.2f})", flush=True)
        return rows

    def kernel(self):
        out = subprocess.run(self.engine("-c", KERNEL), env=self.env, capture_output=True, text=True, check=True)
        integer, general, bn = (float(v) for v in out.stdout.split())
        print(f"\nKernel alone, one thread, 84 x 512 x 512 median: tilewise {integer:.3f} s (8-bit values), "
              f"{general:.3f} s (float values), bottleneck {bn:.3f} s")
        return integer, general, bn


def rasterio_size(path):
    """``"W x H"`` of a raster, read with GDAL's Python bindings (this script runs in QGIS's Python)."""
    from osgeo import gdal
    ds = gdal.Open(path)
    return f"{ds.RasterXSize} x {ds.RasterYSize}"


def session_goals(rows):
    """The session goals of issue 15, each measured (medians of the warm runs)."""
    by = {(r["case"].split(":")[1].split()[0], r["tool"].split()[0] + (" raw" if "NONE" in r["tool"] else "")):
          r["median"] for r in rows}
    lines = []

    def goal(text, value, ok):
        lines.append(f"- {text}: {value} -> {'met' if ok else 'not met'}")

    tiny = by.get(("tiny", "tilewise:temporalmedian")), by.get(("tiny", "native:cellstatistics"))
    if all(tiny):
        goal("tiny job <= 2x native:cellstatistics", f"{tiny[0] / tiny[1]:.2f}x its time", tiny[0] <= 2 * tiny[1])
    med = by.get(("median", "tilewise:temporalmedian")), by.get(("median", "native:cellstatistics"))
    if all(med):
        goal("median >= 5x faster than native:cellstatistics", f"{med[1] / med[0]:.2f}x", med[1] >= 5 * med[0])
    raw, cog, rc = (by.get(("NDVI", k)) for k in ("tilewise:ndvi raw", "tilewise:ndvi", "qgis:rastercalculator"))
    if raw and rc:
        goal("NDVI uncompressed, no overviews, >= 3x faster than qgis:rastercalculator", f"{rc / raw:.2f}x",
             rc >= 3 * raw)
    if cog and rc:
        goal("NDVI default COG no slower than qgis:rastercalculator", f"{rc / cog:.2f}x", cog <= rc)
    return "\n".join(lines)


def phase_table(rows):
    """Each Tilewise run's phases (seconds of the run nearest the median)."""
    order = ["qgis", "engine start", "planning", "read", "compute", "tile writes", "overviews", "assembly", "cleanup",
             "outside"]
    names = [n for n in order if any(n in r.get("phases", {}) for r in rows)]
    lines = ["| case | tool | " + " | ".join(names) + " |", "| --- | --- |" + " ---: |" * len(names)]
    for r in rows:
        if r.get("phases"):
            lines.append(f"| {r['case']} | {r['tool']} | " +
                         " | ".join(f"{r['phases'].get(n, 0.0):.2f}" for n in names) + " |")
    return "\n".join(lines)


def table(rows):
    lines = ["| case | tool | median s | min | max | peak MB | x tilewise CLI | x I/O floor |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by_case = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    for case, rs in by_case.items():
        ref = next((r["median"] for r in rs if "(CLI)" in r["tool"] or "1 worker" in r["tool"]), None)
        floor = next((r["median"] for r in rs if r["floor"]), None)
        for r in rs:
            vs_tw = f"{r['median'] / ref:.2f}" if ref else ""
            vs_floor = f"{r['median'] / floor:.2f}" if floor and not r["floor"] else ""
            tool = r["tool"] + (f" ({r['note']})" if r["note"] else "")
            lines.append(f"| {case} | {tool} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                         f"{r['peak_mb']:.0f} | {vs_tw} | {vs_floor} |")
    return "\n".join(lines)


CHART = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows, path = json.load(open(sys.argv[1])), sys.argv[2]
cases = list(dict.fromkeys(r["case"] for r in rows))
PHASE_COLORS = {"outside": "#bdbdbd", "qgis": "#8d6e63", "engine start": "#ef6c00", "planning": "#fdd835",
                "read": "#42a5f5", "compute": "#2e7d32", "tile writes": "#7e57c2", "overviews": "#ec407a",
                "assembly": "#26a69a", "cleanup": "#9e9e9e"}
seen = set()
fig, axes = plt.subplots(len(cases), 1, figsize=(10, 2.2 * len(cases)), squeeze=False)
for ax, case in zip(axes[:, 0], cases):
    rs = [r for r in rows if r["case"] == case]
    colors = ["#888" if r["floor"] else ("#2e7d32" if "tilewise" in r["tool"] else "#1f77b4") for r in rs]
    ax.barh([r["tool"] for r in rs], [0 if r.get("phases") else r["median"] for r in rs], color=colors)
    for i, r in enumerate(rs):  # Tilewise: one segment per phase, scaled to the median run
        ph = r.get("phases") or {}
        total, left = sum(ph.values()) or 1.0, 0.0
        for name, seconds in ph.items():
            width = seconds / total * r["median"]
            ax.barh(i, width, left=left, color=PHASE_COLORS.get(name, "#ccc"),
                    label=name if name not in seen else None)
            seen.add(name)
            left += width
    for i, r in enumerate(rs):
        ax.text(r["median"], i, f" {r['median']:.2f} s", va="center", fontsize=8)
    ax.invert_yaxis(); ax.set_title(case, fontsize=10, loc="left"); ax.tick_params(labelsize=8)
    ax.set_xlabel("seconds (median)", fontsize=8)
if seen:
    fig.legend(loc="lower center", ncol=min(len(seen), 6), fontsize=7, frameon=False)
fig.tight_layout(rect=(0, 0.03 if seen else 0, 1, 1)); fig.savefig(path, dpi=110)
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-python", required=True)
    p.add_argument("--out", default=os.path.join(ROOT, "bench-output"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small inputs, one run: a CI smoke test")
    p.add_argument("--peer-memory-gb", type=float, help="address-space limit of the exactextract run (extraction)")
    p.add_argument("--only", default="", help="comma-separated cases to run (median84, median24, bands6, ndvi, "
                                              "mosaic, gapfill, scaling, tiny, session, first, kernel, extract); default all")
    args = p.parse_args()
    if args.quick:
        args.runs = 1
    b = Bench(args)
    start = time.perf_counter()
    q = args.quick
    only = set(filter(None, args.only.split(",")))

    def wanted(name):
        return not only or name in only

    if wanted("median84"):
        b.median_case("Median 84 x 1000^2 uint8" if not q else "Median 12 x 300^2 uint8", 12 if q else 84,
                      300 if q else 1000, 1, "uint8")
    if wanted("tiny"):
        b.median_case("Tiny: median 12 x 81 x 33 float32", 12, "33x81", 1, "float32", peers=False)
    if wanted("median24"):
        b.median_case("Median 24 x 4000^2 uint16" if not q else "Median 6 x 600^2 uint16", 6 if q else 24,
                      600 if q else 4000, 1, "uint16", peers=not q)
    if wanted("bands6"):
        b.median_case("Median 24 x 1500^2 x 6 bands" if not q else "Median 6 x 300^2 x 6 bands", 6 if q else 24,
                      300 if q else 1500, 6, "uint8")
    size = 1000 if q else 7000
    if wanted("ndvi"):
        b.ndvi_case(size)
    if wanted("mosaic"):
        b.mosaic_case(size)
    kernels = b.gapfill_case(12 if q else 48, 300 if q else 2000) if wanted("gapfill") else None
    scaling = b.scaling(6 if q else 24, 600 if q else 4000, "uint16") if wanted("scaling") else None
    session = None
    if wanted("session"):
        stack = os.path.join(b.work, "stack_12_300_1_uint8" if q else "stack_84_1000_1_uint8")
        image = os.path.join(b.work, f"image_{size}", "image.tif")
        b.data(os.path.basename(stack), MAKE_STACK, "{folder}", "12" if q else "84", "300" if q else "1000", "1", "uint8")
        b.data(f"image_{size}", MAKE_IMAGE, "{folder}/image.tif", str(size), "{folder}", "4")
        session = b.session(stack, image)
    first = b.first_run() if wanted("first") else None
    kernel = b.kernel() if wanted("kernel") else None
    extract_title = None
    if wanted("extract"):
        from bench_extract import extract_cases, ratios
        extract_title = extract_cases(b, q)
        extract_rows = [r for r in b.rows if " x " in r["case"] and ("polygons" in r["case"] or "points" in r["case"])]
    total = time.perf_counter() - start
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB, {platform.platform()}"
    md = [f"# Tilewise benchmark{' (quick)' if q else ''}{f' (cases: {args.only})' if only else ''}", "",
          f"Machine: {machine}  ",
          f"Runs per tool: {args.runs} (median shown); total bench time {total:.0f} s.", "", table(b.rows), "",
          "Where Tilewise's time goes (seconds per phase, the run nearest the median; outside: the process's "
          "own start and exit, and qgis_process loading QGIS):", "", phase_table(b.rows), ""]
    if scaling:
        eff = {w: scaling[1] / (w * t) for w, t in scaling.items()}
        md += ["Parallel efficiency (tilewise CLI, median case): " +
               ", ".join(f"{w} worker(s) {e * 100:.0f}%" for w, e in eff.items()), ""]
    if session:
        md += ["Goals in one QGIS session (issue 15; Tilewise on its warm engine, medians of the runs after the "
               "first):", "", session_goals(session), ""]
    if kernel:
        int_k, gen_k, bn_k = kernel
        md += [f"Kernel alone, one thread, median of 84 x 512 x 512 (10% NaN): tilewise {int_k:.3f} s on 8-bit "
               f"values ({bn_k / int_k:.1f}x faster than bottleneck.nanmedian's {bn_k:.3f} s), {gen_k:.3f} s on "
               f"float values ({bn_k / gen_k:.2f}x).", ""]
    if first:
        md += [f"First run (qgis_process, median of 4 x 352^2 x 6 bands uint8): {first['cold']:.2f} s with an empty "
               f"numba cache, {first['after set-up']:.2f} s right after the set-up (whose warm-up took "
               f"{first['set-up warm-up']:.2f} s), {first['warm']:.2f} s warm: cold / warm "
               f"{first['cold'] / first['warm']:.1f}x, first run after set-up - warm "
               f"{first['after set-up'] - first['warm']:+.2f} s."]
    if extract_title:
        md += ["", f"Extraction ({extract_title}; tilewise extract on 2 workers against the QGIS loops and "
               "exactextract; goal: at least 10x the QGIS loop, no slower than exactextract):", "", ratios(extract_rows)]
    if kernels:
        md += ["", "Gap-filling kernels alone, in memory (scripts/bench_gapfill.py; all cores each): " + "; ".join(
               f"{k['case']} ({k['what']}): tilewise {min(k['tilewise']['times']):.2f} s, xarray+dask "
               f"{min(k['xarray']['times']):.2f} s, {k['ratio']:.1f}x" for k in kernels) + "."]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(b.rows, f, indent=1)
    chart = subprocess.run(b.engine("-c", CHART, os.path.join(args.out, "bench.json"),
                                    os.path.join(args.out, "bench.png")), env=b.env, capture_output=True, text=True)
    if chart.returncode:
        print("chart not drawn (matplotlib missing?):", chart.stderr[-500:])
    print("\n" + "\n".join(md))
    print(f"\nwritten: {args.out}/bench.md, bench.png")


if __name__ == "__main__":
    main()

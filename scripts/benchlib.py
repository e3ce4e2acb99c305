"""The machinery of ``make bench`` shared by its scripts (scripts/bench.py, bench_extract.py, bench_spectral.py):
the inputs (made once, cached by their parameters), the side-by-side runs with their wall time, memory and
phases (:class:`Bench`), and the floor of a row."""

import json
import os
import shlex
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
FLOOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_floor.py")

#: The inputs' kinds: noise, and two that look like imagery (every case runs on noise and on one of those).
KINDS = {"noise": "noise", "smooth": "smooth fields", "scene": "scene x20"}
#: The output kinds a floor writes (scripts/bench_floor.py).
OUTPUTS = {"raw": "uncompressed GeoTIFF", "cog": "DEFLATE COG + overviews", "parquet": "Parquet table"}

# -- inputs (engine Python; cached by their parameters) ---------------------------------------------------

# A smooth random field in about [-1, 1] (a sum of random plane waves), as core/sampledata.py makes them.
SMOOTH = r"""
import math, numpy as np
def smooth(rng, h, w, waves=6, scale=1.0):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w), np.float32)
    for _ in range(waves):
        k = rng.uniform(0.5, 4.0) * scale * 2 * math.pi / max(h, w)
        theta = rng.uniform(0, math.pi)
        field += np.sin(k * (x * math.cos(theta) + y * math.sin(theta)) + rng.uniform(0, 2 * math.pi))
    return field / math.sqrt(waves / 2)
"""

# A stack of n files. Kind "noise": a smooth base under heavy per-pixel noise and 10% scattered nodata (decoding
# dominates); "smooth": smooth fields with a little noise (about 1 value of 8 bits) and clustered nodata
# (clouds, stripes), as imagery compresses.
MAKE_STACK = SMOOTH + r"""
import sys
from rasterio.transform import from_origin
import rasterio
folder, n, size, bands, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
kind = sys.argv[6] if len(sys.argv) > 6 else "noise"
h, w = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))  # "HxW" or a side
rng = np.random.default_rng(84)
top = 255 if dtype == "uint8" else 10000
nodata = 255 if dtype == "uint8" else 65535
blocks = dict(tiled=True, blockxsize=256, blockysize=256) if min(h, w) >= 256 else dict(tiled=False)
prof = dict(driver="GTiff", width=w, height=h, count=bands, dtype=dtype, nodata=nodata, crs="EPSG:32633",
            transform=from_origin(500000, 5200000, 30, 30), **blocks,
            compress="DEFLATE", predictor=2, num_threads="ALL_CPUS")
if kind == "noise":
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    base = (np.sin(6 * x) * np.cos(5 * y) + 1) / 2
else:
    cover, amp, phase = smooth(rng, h, w, 8), smooth(rng, h, w, 5), smooth(rng, h, w, 4)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
for i in range(n):
    with rasterio.open(f"{folder}/r{i:03d}.tif", "w", **prof) as dst:
        if kind != "noise":
            season = np.sin(2 * math.pi * i / 12 + 0.6 * phase)
            clouds = smooth(rng, h, w, 6, 2.0) > rng.uniform(0.9, 1.8)
            if i % 3 == 0:
                clouds |= ((cols + rows // 3 + i * 7) % 97) < 6
        for b in range(1, bands + 1):
            if kind == "noise":
                season = 0.5 + 0.4 * math.sin(2 * math.pi * i / 12)
                v = base * season * (0.6 + 0.1 * b) + rng.normal(0, 0.05, (h, w)).astype(np.float32)
            else:
                v = (0.45 + 0.2 * cover + (0.08 + 0.04 * amp) * season) * (0.7 + 0.1 * b) \
                    + rng.normal(0, 0.004, (h, w)).astype(np.float32)
            a = np.clip(v * (top - 1), 0, top - 1).astype(dtype)
            a[rng.random((h, w)) < 0.10 if kind == "noise" else clouds] = nodata
            dst.write(a, b)
"""

# The gap-filling series: bench_gapfill.make_series (kind "noise": per-pixel noise, scattered gaps), or the same
# dates over smooth fields with little noise and clustered gaps (clouds), the same share of them ("smooth").
MAKE_SERIES = SMOOTH + r"""
import sys, datetime as dt, rasterio
from rasterio.transform import from_origin
sys.path.insert(0, sys.argv[5])
from bench_gapfill import make_series
folder, n, size, gaps, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[6]
if kind == "noise":
    days, stack = make_series(n, size, gaps)
else:
    days, _ = make_series(n, 1, gaps)
    rng = np.random.default_rng(49)
    cover, amp, phase = smooth(rng, size, size, 8), smooth(rng, size, size, 5), smooth(rng, size, size, 4)
    stack = np.empty((n, size, size), np.float32)
    for i, d in enumerate(days):
        season = np.sin(2 * math.pi * d / 365.25 + 0.6 * phase)
        stack[i] = 0.45 + 0.25 * cover + (0.15 + 0.1 * amp) * season + rng.normal(0, 0.003, (size, size))
        clouds = smooth(rng, size, size, 6, 2.0)
        stack[i][clouds > np.quantile(clouds[::7, ::7], 1 - gaps)] = np.nan
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

# A 6-band uint8 image, and the same cut in n x n tiles. Kind "noise": one smooth field under per-pixel noise
# (square). Kind "scene": a coarse procedural scene (smooth fields, field parcels with sharp edges of six
# land covers, texture) disaggregated x20 by nearest neighbour and written tiled DEFLATE, like the SCINet
# recipe's Landsat scene (about 349 x 352 pixels of 30 m made 6980 x 7040 of 1.5 m).
MAKE_IMAGE = SMOOTH + r"""
import sys, rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
path, kind, tiles_dir = sys.argv[1], sys.argv[2], sys.argv[5]
w, h, n = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6])
if kind == "noise":
    rng = np.random.default_rng(7)
    size = w
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
else:
    rng, f = np.random.default_rng(21), 20
    ch, cw = -(-h // f), -(-w // f)
    seeds = np.column_stack([rng.uniform(0, ch, ch * cw // 150), rng.uniform(0, cw, ch * cw // 150)])
    parcel = np.empty((ch, cw), np.int32)                      # Voronoi parcels: sharp edges
    cols = np.arange(cw, dtype=np.float32)
    for r in range(ch):
        d = (seeds[:, :1] - r) ** 2 + (seeds[:, 1:] - cols[None, :]) ** 2
        parcel[r] = d.argmin(axis=0)
    # blue, green, red, nir, swir1, swir2 of water, forest, green crop, bare soil, grass, built-up
    covers = np.array([(60, 45, 30, 15, 8, 5), (30, 35, 25, 110, 60, 30), (35, 50, 30, 150, 80, 40),
                       (70, 80, 95, 110, 140, 120), (45, 60, 50, 120, 100, 60), (90, 90, 95, 100, 110, 100)],
                      np.float32)
    cover = rng.choice(6, len(seeds), p=(0.05, 0.2, 0.3, 0.2, 0.15, 0.1))
    gain = rng.normal(1, 0.08, len(seeds)).astype(np.float32)
    light = 1 + 0.15 * smooth(rng, ch, cw, 6)               # terrain, haze: smooth over the scene
    prof = dict(driver="GTiff", width=w, height=h, count=6, dtype="uint8", crs="EPSG:32633",
                transform=from_origin(300000, 4700000, 1.5, 1.5), tiled=True, blockxsize=256, blockysize=256,
                compress="DEFLATE", num_threads="ALL_CPUS")
    with rasterio.open(path, "w", **prof) as dst:
        for b in range(6):
            v = covers[cover, b][parcel] * gain[parcel] * light + rng.normal(0, 3, (ch, cw))   # texture
            coarse = np.clip(v, 1, 254).astype("uint8")
            dst.write(np.repeat(np.repeat(coarse, f, axis=0), f, axis=1)[:h, :w], b + 1)
with rasterio.open(path) as src:
    step_r, step_c = -(-src.height // n), -(-src.width // n)
    for r in range(n):
        for c in range(n):
            win = Window(c * step_c, r * step_r, min(step_c, src.width - c * step_c),
                         min(step_r, src.height - r * step_r))
            p = dict(src.profile, width=win.width, height=win.height, transform=src.window_transform(win))
            with rasterio.open(f"{tiles_dir}/tile_{r}_{c}.tif", "w", **p) as dst:
                dst.write(src.read(window=win))
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

    def full(self, kind):
        """Whether a case on ``kind`` runs every tool: --quick runs the qgis_process rows on noise only."""
        return not self.args.quick or kind == "noise"

    def engine(self, *args):
        return [self.args.engine_python, *args]

    def qgis(self, alg, params):
        return [qgis_process_binary(), "run", alg, "--"] + [f"{k}={v}" for k, v in params]

    def run(self, case, tool, cmd, out, qgis=False, floor=False, note="", output=None):
        """Run ``cmd`` ``--runs`` times as its own process; a row. ``output``: the kind of file it writes when
        a floor writes the same (``raw``, ``cog``, ``parquet``; see :data:`OUTPUTS`), for the ``x floor`` column."""
        times, peak, runs = [], 0, []
        for _ in range(1 if floor and self.args.quick else self.args.runs):
            s, p, text = measure(cmd, self.qenv if qgis else self.env, out)
            times.append(s)
            peak = max(peak, p)
            runs.append((s, parse_phases(text)))
        median = statistics.median(times)
        phases = min(runs, key=lambda r: abs(r[0] - median))  # the phases of the run nearest the median
        row = dict(case=case, tool=tool, median=median, min=min(times), max=max(times),
                   peak_mb=peak / 2**20, floor=floor, note=note, output=output, where="process")
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

    # -- inputs (each cached by its parameters) -----------------------------------------------------------

    def stack(self, n, size, bands, dtype, kind="noise"):
        """The ``n`` files of a stack (MAKE_STACK) of ``kind`` ``noise`` or ``smooth``."""
        name = f"stack_{n}_{size}_{bands}_{dtype}" if kind == "noise" else f"{kind}_stack_{n}_{size}_{bands}_{dtype}"
        folder = self.data(name, MAKE_STACK, "{folder}", str(n), str(size), str(bands), dtype, kind)
        return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))

    def image(self, kind, width, height):
        """The folder of a 6-band image (``image.tif``) and its 4 x 4 tiles (MAKE_IMAGE), ``noise`` or ``scene``."""
        name = f"image_{width}" if kind == "noise" else f"{kind}_{width}x{height}"
        return self.data(name, MAKE_IMAGE, "{folder}/image.tif", kind, str(width), str(height), "{folder}", "4")

    # -- floors (scripts/bench_floor.py) ---------------------------------------------------------------------

    def floor(self, case, op, inputs, like, output, **extra):
        """The floor of ``case`` for one output kind, run as its own process (python start and imports included)."""
        out = os.path.join(self.work, "floor" + (".parquet" if output == "parquet" else ".tif"))
        spec = json.dumps(dict(op=op, inputs=inputs, like=like, out=out, output=output, **extra))
        return self.run(case, f"floor: {OUTPUTS[output]} (own process)", self.engine(FLOOR_SCRIPT, spec), out,
                        floor=True, output=output)

    def session_floors(self, specs):
        """In-session floors: each spec ``(case, output, spec)`` run ``1 + runs`` times in one pre-started engine
        process (imports done, no process start), the first run apart as for the session's tools."""
        proc = subprocess.Popen(self.engine(FLOOR_SCRIPT, "--serve"), env=self.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            proc.stdout.readline()  # ready: imports done
            for case, output, spec in specs:
                times = []
                for _ in range(1 + self.args.runs):
                    if os.path.exists(spec["out"]):
                        os.remove(spec["out"])
                    proc.stdin.write(json.dumps(spec) + "\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"the floor server stopped on {spec['op']} ({case})")
                    times.append(json.loads(line)["seconds"])
                rest = times[1:]
                row = dict(case=case, tool=f"floor: {OUTPUTS[output]} (pre-started process)",
                           median=statistics.median(rest), min=min(rest), max=max(rest), peak_mb=0.0, floor=True,
                           note=f"first run {times[0]:.2f} s", output=output, where="session")
                self.rows.append(row)
                print(f"  {case[9:40]:32s} {row['tool']:46s} {row['median']:7.3f} s (first {times[0]:.2f})",
                      flush=True)
        finally:
            proc.stdin.close()
            proc.wait()

    def deflate_trade(self, images):
        """File size against encode time of the NDVI default COG for DEFLATE levels 1 and 6 x predictors 1, 2, 3
        (GDAL's COG driver on all cores, from the NDVI array in memory), for each ``(label, image, like)``."""
        print("\nDEFLATE level x predictor, NDVI COG (encode only, from the array in memory)", flush=True)
        rows = []
        for label, image, like in images:
            spec = dict(op="deflate_trade", inputs=[image], like=like, out=os.path.join(self.work, "trade.tif"),
                        runs=self.args.runs)
            done = subprocess.run(self.engine(FLOOR_SCRIPT, json.dumps(spec)), env=self.env, capture_output=True,
                                  text=True)
            if done.returncode:
                raise RuntimeError(f"bench_floor.py deflate_trade failed:\n{done.stderr[-3000:]}")
            for r in json.loads(done.stdout.strip().splitlines()[-1]):
                rows.append(dict(r, input=label))
                print(f"  {label:34s} level {r['level']} predictor {r['predictor']}: {r['seconds']:6.2f} s "
                      f"{r['bytes'] / 2**20:8.1f} MiB", flush=True)
        return rows

    # -- cases ---------------------------------------------------------------------------------------------

    def median_case(self, case, n, size, bands, dtype, kind="noise", peers=True):
        """A median of ``n`` files; ``peers``: True all of them, "some" cellstatistics and bottleneck, False none."""
        case = f"{case}, {KINDS[kind]}"
        print(f"\n{case}", flush=True)
        files = self.stack(n, size, bands, dtype, kind)
        out = os.path.join(self.work, "median.tif")
        if self.full(kind):
            self.run(case, "tilewise:temporalmedian (qgis_process)",
                     self.qgis("tilewise:temporalmedian", [("INPUT", f) for f in files] + [("OUTPUT", out)]), out,
                     qgis=True, output="cog")
        cli = self.run(case, "tilewise composite (CLI)",
                       self.engine("-m", "tilewise", "composite", "-q", "--debug", "-o", out, *files), out,
                       output="cog")
        tw_out = os.path.join(self.work, f"{case[:12].replace(' ', '_')}_{kind}_tilewise.tif")
        shutil.copy(out, tw_out)
        if bands == 1 and peers is not False and self.full(kind):
            self.run(case, "native:cellstatistics (qgis_process)", self.qgis("native:cellstatistics", [
                ("INPUT", f) for f in files] + [("STATISTIC", 3), ("IGNORE_NODATA", "true"),
                                                ("REFERENCE_LAYER", files[0]), ("OUTPUT", out)]), out, qgis=True,
                     output="raw")
        if peers and bands == 1:
            for mod in ("numpy", "bottleneck") if peers is True else ("bottleneck",):
                self.run(case, f"{mod}.nanmedian script (in memory)",
                         self.engine("-c", NUMPY_MEDIAN, mod, out, *files), out)
        self.floor(case, "median", files, tw_out, "cog")
        return cli

    def scaling(self, n, size, dtype, kind="noise"):
        case = f"Scaling: median {n} x {size}^2 {dtype}, {KINDS[kind]}"
        print(f"\n{case}", flush=True)
        files = self.stack(n, size, 1, dtype, kind)
        out = os.path.join(self.work, "scale.tif")
        times = {}
        for w in sorted({1, 2, os.cpu_count() or 1}):
            times[w] = self.run(case, f"tilewise CLI, {w} worker(s)",
                                self.engine("-m", "tilewise", "composite", "-q", "--debug", "-j", str(w), "-o", out,
                                            *files),
                                out, output="cog")["median"]
        tw_out = os.path.join(self.work, f"scale_{kind}_tilewise.tif")
        shutil.copy(out, tw_out)
        self.floor(case, "median", files, tw_out, "cog")
        return times

    def ndvi_case(self, kind, width, height, peers=True):
        """NDVI of bands 3 and 4; returns ``(image, a Tilewise output on its grid)`` for :meth:`deflate_trade`."""
        case = f"NDVI {width} x {height} uint8 (bands 3, 4), {KINDS[kind]}"
        print(f"\n{case}", flush=True)
        folder = self.image(kind, width, height)
        image = os.path.join(folder, "image.tif")
        out = os.path.join(self.work, "ndvi.tif")
        full = self.full(kind)
        if full:
            self.run(case, "tilewise:ndvi (qgis_process)", self.qgis("tilewise:ndvi", [
                ("RED", image), ("RED_BAND", 3), ("NIR", image), ("NIR_BAND", 4), ("OUTPUT", out)]), out, qgis=True,
                     output="cog")
        self.run(case, "tilewise ndvi (CLI)", self.engine("-m", "tilewise", "ndvi", "-q", "--debug",
                                                          "--red", f"{image}:3", "--nir", f"{image}:4", "-o", out),
                 out, output="cog")
        from tilewise.core.vocabulary import COMPRESSIONS
        raw = [("COMPRESSION", COMPRESSIONS.index("NONE")), ("OVERVIEWS", "false")]  # what the raster calculator writes
        if full:
            self.run(case, "tilewise:ndvi NONE, no overviews (qgis_process)", self.qgis("tilewise:ndvi", [
                ("RED", image), ("RED_BAND", 3), ("NIR", image), ("NIR_BAND", 4), *raw, ("OUTPUT", out)]), out,
                     qgis=True, output="raw")
        self.run(case, "tilewise ndvi NONE, no overviews (CLI)", self.engine(
            "-m", "tilewise", "ndvi", "-q", "--debug", "--compression", "NONE", "--no-overviews", "--red", f"{image}:3",
            "--nir", f"{image}:4", "-o", out), out, output="raw")
        tw_out = os.path.join(self.work, f"ndvi_{kind}_tilewise.tif")
        shutil.copy(out, tw_out)
        calc = [("EXPRESSION", '("image@4" - "image@3") / ("image@4" + "image@3")'), ("LAYERS", image)]
        rc_tmp = os.path.join(self.work, "ndvi_rc.tif")
        if full:
            self.run(case, "qgis:rastercalculator (qgis_process)", self.qgis("qgis:rastercalculator", [
                *calc, ("OUTPUT", out)]), out, qgis=True, note="uncompressed output", output="raw")
            self.run(case, "qgis:rastercalculator + GDAL COG (qgis_process)",
                     " ".join(shlex.quote(c) for c in self.qgis("qgis:rastercalculator", [*calc, ("OUTPUT", rc_tmp)]))
                     + f" >/dev/null && gdal_translate -q -of COG -co COMPRESS=DEFLATE -co NUM_THREADS=ALL_CPUS "
                       f"-co BIGTIFF=IF_SAFER {shlex.quote(rc_tmp)} {shlex.quote(out)}", out, qgis=True, output="cog")
        if peers:
            self.run(case, "gdal_calc.py", ["gdal_calc.py", "--quiet", "-A", image, "--A_band=3", "-B", image,
                                            "--B_band=4", "--type=Float32", "--NoDataValue=-9999",
                                            "--co=COMPRESS=DEFLATE", "--co=TILED=YES", "--co=PREDICTOR=3",
                                            "--overwrite", f"--outfile={out}",
                                            "--calc=(B.astype(float32) - A) / (B.astype(float32) + A)"],
                     out)
            tiles_out = os.path.join(self.work, "ndvi_tiles")
            for pool, label in ((0, "serially"), (16, "Pool(16)")):
                shutil.rmtree(tiles_out, ignore_errors=True)
                self.run(case, f"per-tile script, {label}",
                         self.engine("-c", TILE_SCRIPT, tiles_out, str(pool), folder), os.path.join(tiles_out, "done"),
                         note="16 float64 GeoTIFFs, no merge/nodata/overviews")
        for output in ("raw", "cog"):
            self.floor(case, "ndvi", [image], tw_out, output, bands=[3, 4])
        return image, tw_out

    def gapfill_case(self, n, size, kind="noise", gaps=0.3, kernels=True):
        """Files in, filled series out: tilewise gapfill (CLI and qgis_process) against xarray's
        interpolate_na on Dask, and the floor; then (``kernels``) the kernels alone in memory
        (scripts/bench_gapfill.py)."""
        case = f"Gap filling {n} x {size}^2 float32, {gaps:.0%} gaps (linear), {KINDS[kind]}"
        print(f"\n{case}", flush=True)
        scripts = os.path.dirname(os.path.abspath(__file__))
        name = f"series_{n}_{size}_{gaps}" if kind == "noise" else f"{kind}_series_{n}_{size}_{gaps}"
        folder = self.data(name, MAKE_SERIES, "{folder}", str(n), str(size), str(gaps), scripts, kind)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
        out = os.path.join(self.work, "filled.tif")
        if self.full(kind) or kernels:
            self.run(case, "tilewise:gapfill (qgis_process)",
                     self.qgis("tilewise:gapfill", [("INPUT", f) for f in files] + [("OUTPUT", out)]), out, qgis=True,
                     output="cog")
        self.run(case, "tilewise gapfill (CLI)", self.engine("-m", "tilewise", "gapfill", "-q", "--debug", "-o", out,
                                                             *files), out, output="cog")
        tw_out = os.path.join(self.work, f"filled_{kind}_tilewise.tif")
        shutil.copy(out, tw_out)
        self.run(case, "xarray interpolate_na + dask script", self.engine("-c", XARRAY_GAPFILL, out, "500", *files),
                 out, note="threads, 500^2 chunks")
        self.floor(case, "gapfill", files, tw_out, "cog")
        if not kernels:
            return None
        rows = os.path.join(self.work, "bench_gapfill.json")
        subprocess.run(self.engine(os.path.join(scripts, "bench_gapfill.py"), "--dates", str(n), "--size", str(size),
                                   "--gaps", str(gaps), "--json", rows), env=self.env, check=True)
        with open(rows) as f:
            return json.load(f)

    def mosaic_case(self, kind, width, height):
        case = f"Mosaic 16 tiles of {width} x {height} x 6 uint8, {KINDS[kind]}"
        print(f"\n{case}", flush=True)
        folder = self.image(kind, width, height)
        tiles = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("tile_"))
        out = os.path.join(self.work, "mosaic.tif")
        if self.full(kind):
            self.run(case, "tilewise:mosaic (qgis_process)", self.qgis("tilewise:mosaic", [
                ("INPUT_FOLDER", folder), ("PATTERN", "tile_*.tif"), ("OUTPUT", out)]), out, qgis=True, output="cog")
        self.run(case, "tilewise mosaic (CLI)", self.engine("-m", "tilewise", "mosaic", "-q", "--debug", "-o", out,
                                                            os.path.join(folder, "tile_*.tif")), out, output="cog")
        tw_out = os.path.join(self.work, f"mosaic_{kind}_tilewise.tif")
        shutil.copy(out, tw_out)
        vrt = os.path.join(self.work, "tiles.vrt")
        self.run(case, "gdalbuildvrt + gdal_translate -of COG",
                 f"gdalbuildvrt -q {vrt} {' '.join(tiles)} && gdal_translate -q -of COG -co COMPRESS=DEFLATE "
                 f"-co NUM_THREADS=ALL_CPUS -co BIGTIFF=IF_SAFER {vrt} {out}", out, output="cog")
        self.run(case, "gdal_merge.py", ["gdal_merge.py", "-q", "-o", out, "-co", "COMPRESS=DEFLATE",
                                         "-co", "TILED=YES", *tiles], out, note="no COG, no overviews")
        self.floor(case, "mosaic", tiles, tw_out, "cog")

    def first_algorithms(self, kind):
        """``(label, qgis_process command, output)`` of the other algorithms whose first run after the set-up
        is timed against their second (:meth:`first_run`), on small inputs of ``kind``: NDVI, gap filling and
        extraction (zones; and points without --quick)."""
        image = os.path.join(self.image("noise" if kind == "noise" else "scene", 1000, 1000), "image.tif")
        skind = "noise" if kind == "noise" else "smooth"
        scripts = os.path.dirname(os.path.abspath(__file__))
        name = "series_12_300_0.3" if skind == "noise" else f"{skind}_series_12_300_0.3"
        series = self.data(name, MAKE_SERIES, "{folder}", "12", "300", "0.3", scripts, skind)
        dates = sorted(os.path.join(series, f) for f in os.listdir(series) if f.endswith(".tif"))
        rasters = self.stack(3, 1000, 1, "uint16", skind)
        zones = self.data("zones_1000_10000_1000", MAKE_ZONES, "{folder}", "1000", "10000", "1000")
        outs = {k: os.path.join(self.work, f"first_{k}") for k in ("ndvi", "gapfill", "zones", "points")}
        algs = [("tilewise:ndvi", self.qgis("tilewise:ndvi", [("RED", image), ("RED_BAND", 3), ("NIR", image),
                                                              ("NIR_BAND", 4), ("OUTPUT", outs["ndvi"] + ".tif")]),
                 outs["ndvi"] + ".tif"),
                ("tilewise:gapfill", self.qgis("tilewise:gapfill", [("INPUT", f) for f in dates] +
                                               [("OUTPUT", outs["gapfill"] + ".tif")]), outs["gapfill"] + ".tif")]
        for what in ("zones",) if self.args.quick else ("zones", "points"):
            algs.append((f"tilewise:extract, {what}", self.qgis("tilewise:extract", [("INPUT", r) for r in rasters] + [
                ("ZONES", os.path.join(zones, "polygons.gpkg" if what == "zones" else "points.gpkg")),
                ("ID_FIELD", "pid"), ("OUTPUT", outs[what] + ".gpkg")]), outs[what] + ".gpkg"))
        return algs

    def first_run(self, kind="noise"):
        """The first run after installing against a warm one, side by side: tilewise:temporalmedian through
        qgis_process on four 6-band uint8 scenes with an empty numba cache (no set-up: every kernel the run
        needs compiles in its workers), right after the set-up's warm-up (``driver --warm``, as
        tilewise:setupengine and make deps run it, into another empty cache), and with a warm cache (the
        second run after the set-up); then the first and second run after the same set-up of the other
        algorithms (:meth:`first_algorithms`)."""
        case = f"First run: median of 4 x 352^2 x 6 bands uint8, {KINDS[kind]}"
        print(f"\n{case}", flush=True)
        files = self.stack(4, 352, 6, "uint8", kind)
        out = os.path.join(self.work, "first.tif")
        cmd = self.qgis("tilewise:temporalmedian", [("INPUT", f) for f in files] + [("OUTPUT", out)])
        others = self.first_algorithms(kind)
        times = {"cold": [], "after set-up": [], "warm": [], "set-up warm-up": []}
        for label, _, _ in others:
            times[f"{label} first"], times[f"{label} second"] = [], []
        peaks = dict.fromkeys(times, 0)

        def timed(key, command, env, output=None):
            seconds, peak, _ = measure(command, env, output)
            times[key].append(seconds)
            peaks[key] = max(peaks[key], peak)

        for _ in range(self.args.runs):
            with tempfile.TemporaryDirectory(prefix="tilewise-bench-numba-") as cold, \
                    tempfile.TemporaryDirectory(prefix="tilewise-bench-numba-") as ready:
                if not self.args.quick:  # --quick: the set-up's warm-up is the long part; the goal needs only it
                    timed("cold", cmd, dict(self.qenv, NUMBA_CACHE_DIR=cold), out)
                timed("set-up warm-up", self.engine("-m", "tilewise.core.runtime.driver", "--warm"),
                      dict(self.env, NUMBA_CACHE_DIR=ready))
                timed("after set-up", cmd, dict(self.qenv, NUMBA_CACHE_DIR=ready), out)
                timed("warm", cmd, dict(self.qenv, NUMBA_CACHE_DIR=ready), out)
                for turn in ("first", "second"):  # every first run before any second: what one compiles, all see
                    for label, command, output in others:
                        timed(f"{label} {turn}", command, dict(self.qenv, NUMBA_CACHE_DIR=ready), output)
        labels = {"cold": "qgis_process, empty numba cache", "set-up warm-up": "set-up: kernels into the cache",
                  "after set-up": "qgis_process, first run after set-up", "warm": "qgis_process, warm cache"}
        for label, _, _ in others:
            labels[f"{label} first"] = f"qgis_process {label}, first run after set-up"
            labels[f"{label} second"] = f"qgis_process {label}, second run"
        for key, label in labels.items():
            t = times[key]
            if not t:
                continue
            self.rows.append(dict(case=case, tool=label, median=statistics.median(t), min=min(t), max=max(t),
                                  peak_mb=peaks[key] / 2**20, floor=False, note=""))
            print(f"  {label:38s} {statistics.median(t):8.2f} s  (min {min(t):.2f}, max {max(t):.2f})  "
                  f"peak {peaks[key] / 2**20:7.0f} MB", flush=True)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        print(f"  cold / warm: {med.get('cold', float('nan')) / med['warm']:.1f}x; first run after set-up / warm: "
              f"{med['after set-up'] / med['warm']:.2f}x (goal: at most 1.2x)", flush=True)
        return dict(med, kind=kind, others=[label for label, _, _ in others])

    def session(self, median_spec, images):
        """The same jobs in one QGIS session (scripts/bench_session.py): Tilewise on its warm engine against
        native:cellstatistics and qgis:rastercalculator (also followed by GDAL's COG driver), each run
        interleaved with the others; the first run of each apart (Tilewise's starts the warm engine). Then
        the floors of each case in a pre-started engine process (:meth:`session_floors`).
        ``median_spec``: ``(n, size)`` of the uint8 median stack; ``images``: ``{kind: (width, height)}``."""
        out = os.path.join(self.work, "session")
        os.makedirs(out, exist_ok=True)

        def median_tools(files, tag):
            return [dict(tool="tilewise:temporalmedian (warm engine)", alg="tilewise:temporalmedian", output="cog",
                         params={"INPUT": files, "OUTPUT": os.path.join(out, f"{tag}_tw.tif")}),
                    dict(tool="native:cellstatistics", alg="native:cellstatistics", output="raw",
                         params={"INPUT": files, "STATISTIC": 3, "IGNORE_NODATA": True, "REFERENCE_LAYER": files[0],
                                 "OUTPUT": os.path.join(out, f"{tag}_cs.tif")})]

        from tilewise.core.vocabulary import COMPRESSIONS

        def ndvi_tools(image, tag):
            bands = {"RED": image, "RED_BAND": 3, "NIR": image, "NIR_BAND": 4}
            calc = {"EXPRESSION": '("image@4" - "image@3") / ("image@4" + "image@3")', "LAYERS": [image]}
            return [dict(tool="tilewise:ndvi NONE, no overviews (warm engine)", alg="tilewise:ndvi", output="raw",
                         params=dict(bands, COMPRESSION=COMPRESSIONS.index("NONE"), OVERVIEWS=False,
                                     OUTPUT=os.path.join(out, f"{tag}_raw.tif"))),
                    dict(tool="tilewise:ndvi default COG (warm engine)", alg="tilewise:ndvi", output="cog",
                         params=dict(bands, OUTPUT=os.path.join(out, f"{tag}_cog.tif"))),
                    dict(tool="qgis:rastercalculator", alg="qgis:rastercalculator", output="raw",
                         params=dict(calc, OUTPUT=os.path.join(out, f"{tag}_rc.tif"))),
                    dict(tool="qgis:rastercalculator + GDAL COG", alg="qgis:rastercalculator", output="cog",
                         params=dict(calc, OUTPUT=os.path.join(out, f"{tag}_rc2.tif")),
                         cog=os.path.join(out, f"{tag}_rc_cog.tif"))]

        cases, floors = [], []
        n, size = median_spec
        for kind in ("noise", "smooth"):
            tiny = self.stack(12, "33x81", 1, "float32", kind)
            stack = self.stack(n, size, 1, "uint8", kind)
            tag = KINDS[kind]
            cases += [dict(case=f"Session: tiny median 12 x 81 x 33 float32, {tag}", key="tiny", kind=kind,
                           tools=median_tools(tiny, f"tiny_{kind}")),
                      dict(case=f"Session: median {n} x {size} x {size} uint8, {tag}", key="median", kind=kind,
                           tools=median_tools(stack, f"med_{kind}"))]
            for c, files in ((cases[-2], tiny), (cases[-1], stack)):
                floors.append((c["case"], "cog", dict(op="median", inputs=files, like=c["tools"][0]["params"]["OUTPUT"],
                                                      out=os.path.join(out, "floor.tif"), output="cog")))
        for kind, (width, height) in images.items():
            image = os.path.join(self.image(kind, width, height), "image.tif")
            cases.append(dict(case=f"Session: NDVI {width} x {height} uint8, {KINDS[kind]}", key="ndvi", kind=kind,
                              tools=ndvi_tools(image, f"ndvi_{kind}")))
            for output in ("raw", "cog"):
                floors.append((cases[-1]["case"], output, dict(
                    op="ndvi", inputs=[image], bands=[3, 4], like=cases[-1]["tools"][0]["params"]["OUTPUT"],
                    out=os.path.join(out, "floor.tif"), output=output)))
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
        info = {(c["case"], t["tool"]): (c, t) for c in cases for t in c["tools"]}
        for r in rows:
            c, t = info[(r["case"], r["tool"])]
            row = dict(case=r["case"], tool=r["tool"], median=r["median"], min=r["min"], max=r["max"], peak_mb=0.0,
                       floor=False, note=f"first run {r['first']:.2f} s", output=t["output"], where="session",
                       key=c["key"], kind=c["kind"], first=r["first"])
            if r["phases"]:
                ph = parse_phases("Phases (s): " + r["phases"])
                row["phases"] = dict(ph, outside=max(r["median"] - sum(ph.values()), 0.0))
            self.rows.append(row)
            print(f"  {r['case'][9:40]:32s} {r['tool']:46s} {r['median']:7.3f} s (first {r['first']:.2f})", flush=True)
        print("\nFloors of the session cases, in a pre-started engine process (first run apart)", flush=True)
        self.session_floors(floors)
        return [r for r in self.rows if r.get("where") == "session"]

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


def floor_of(rows, row):
    """The floor row of ``row``: same case, same output kind, same place (own process, or in the session)."""
    if row["floor"] or not row.get("output"):
        return None
    return next((r for r in rows if r["floor"] and r["case"] == row["case"] and r.get("output") == row["output"]
                 and r.get("where", "process") == row.get("where", "process")), None)


MAKE_ZONES = r"""
import sys, numpy as np, shapely, pyogrio
folder, n_polygons, n_points, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(12)
x0, top, res = 500000.0, 5200000.0, 30.0                  # the grid of bench.py's MAKE_STACK
span = size * res
cx, cy = rng.uniform(x0, x0 + span, n_polygons), rng.uniform(top - span, top, n_polygons)
radius = rng.uniform(5, 25, n_polygons) * res              # fields of 10 to 50 pixels across
polygons = shapely.buffer(shapely.points(cx, cy), radius, quad_segs=8)
opts = {"VERSION": "1.2"}
pyogrio.raw.write(f"{folder}/polygons.gpkg", shapely.to_wkb(polygons), [np.arange(n_polygons)], ["pid"],
                  crs="EPSG:32633", geometry_type="Polygon", driver="GPKG", dataset_options=opts)
points = shapely.points(rng.uniform(x0, x0 + span, n_points), rng.uniform(top - span, top, n_points))
pyogrio.raw.write(f"{folder}/points.gpkg", shapely.to_wkb(points), [np.arange(n_points)], ["pid"],
                  crs="EPSG:32633", geometry_type="Point", driver="GPKG", dataset_options=opts)
"""

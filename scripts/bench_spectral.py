"""The spectral composites' case of ``make bench`` (issue 25), also runnable on its own at a reduced size.

36 dates x 6 bands x 2000^2 uint16, imagery-like (smooth land-cover spectra, a seasonal cycle, noise of a few
DN) with 30 % of each date masked by clustered clouds (nodata in every band). End to end, from the files to a
written file, each tool as its own process: Tilewise's per-band median (the reference of goal 2), geomedian,
medoid and quality (NDVI); a numpy Weiszfeld (float32 over row blocks, all pixels at once, the mean as start,
Tilewise's stopping rule); ``hdstats.nangeomedian_pcm`` and odc-algo's xarray geomedian when their own Python is
given (a separate venv: they are not engine dependencies). Goals: the geomedian at least 5x the fastest peer,
and within 3x of Tilewise's own per-band median.

    .venv/bin/python scripts/bench_spectral.py --engine-python .venv/bin/python --dates 12 --size 500 \
        [--peer-python /tmp/hd/bin/python] [--runs 1]
    PYTHONPATH=build/plugins .venv/bin/python scripts/bench_spectral.py --kernel [--peer-python ...]  # kernels alone
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# n dated files of b uint16 bands (nodata 0), reflectance-like: 5 smooth land-cover classes with their own
# spectra and seasonal NDVI cycle, a few DN of noise, and clouds: a smooth field thresholded to mask `masked`
# of each date in blobs (0 in every band).
MAKE_SPECTRAL = r"""
import datetime as dt, math, sys
import numpy as np, rasterio
from rasterio.transform import from_origin
folder, n, size, bands, masked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
rng = np.random.default_rng(25)
def smooth(h, w, waves=8, scale=1.0):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.zeros((h, w), np.float32)
    for _ in range(waves):
        k = rng.uniform(0.5, 4.0) * scale * 2 * math.pi / max(h, w)
        t = rng.uniform(0, math.pi)
        f += np.sin(k * (x * math.cos(t) + y * math.sin(t)) + rng.uniform(0, 2 * math.pi))
    return f / math.sqrt(waves / 2)
classes = np.digitize(smooth(size, size, scale=3), [-0.8, -0.2, 0.3, 0.9])
soil = rng.uniform(800, 2500, (5, bands))
veg = np.tile(np.array([300, 500, 300, 3500, 2500, 1200][:bands] + [1000] * max(0, bands - 6), np.float32), (5, 1))
vig = rng.uniform(0.2, 1.0, 5)
start = dt.date(2024, 1, 5)
prof = dict(driver="GTiff", width=size, height=size, count=bands, dtype="uint16", nodata=0, crs="EPSG:32633",
            transform=from_origin(500000, 5200000, 10, 10), tiled=True, blockxsize=256, blockysize=256,
            compress="DEFLATE", predictor=2, num_threads="ALL_CPUS")
for i in range(n):
    day = start + dt.timedelta(days=int(i * 365 / n))
    green = 0.5 - 0.5 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 30) / 365)
    cloud = smooth(size, size, waves=6, scale=4)
    cut = np.quantile(cloud, 1 - masked)
    data = np.empty((bands, size, size), np.uint16)
    for b in range(bands):
        mix = soil[:, b] * (1 - vig * green) + veg[:, b] * vig * green
        v = mix[classes] + rng.normal(0, 40, (size, size)).astype(np.float32)
        v[cloud > cut] = 0
        data[b] = np.clip(v, 1, 10000).astype(np.uint16) * (cloud <= cut)
    with rasterio.open(f"{folder}/scene_{day.isoformat()}.tif", "w", **prof) as dst:
        dst.write(data)
"""

# A numpy Weiszfeld, float32 over blocks of rows (all their pixels at once, as one would write it in numpy):
# the mean as start, steps until each pixel's step is below 1e-7 of its norm (Tilewise's default tolerance; at
# most 500; converged pixels leave the arrays), NaN for missing.
NUMPY_WEISZFELD = r"""
import sys
import numpy as np, rasterio
out, files = sys.argv[1], sys.argv[2:]
srcs = [rasterio.open(f) for f in files]
h, w, nb = srcs[0].height, srcs[0].width, srcs[0].count
prof = dict(srcs[0].profile, dtype="float32", nodata=-9999, compress="DEFLATE", predictor=1)
with rasterio.open(out, "w", **prof) as dst:
    for r0 in range(0, h, 64):
        win = rasterio.windows.Window(0, r0, w, min(64, h - r0))
        x = np.stack([s.read(window=win) for s in srcs]).astype(np.float32)    # (n, b, rows, cols)
        x[x == 0] = np.nan
        x = x.reshape(len(srcs), nb, -1)
        ok = ~np.isnan(x).any(axis=1)                                         # complete observations
        x[:, :, ~ok.any(axis=0)] = 0
        x = np.where(ok[:, None], x, np.nan)
        y = np.nanmean(x, axis=0)
        idx = np.flatnonzero(ok.any(axis=0))                                  # pixels still moving
        xs, oks = x[:, :, idx], ok[:, idx]
        for _ in range(500):
            ys = y[:, idx]
            d = np.sqrt(np.nansum((xs - ys) ** 2, axis=1))
            wgt = np.where(oks & (d > 0), 1 / np.where(d > 0, d, 1), 0)
            new = np.nansum(wgt[:, None] * xs, axis=0) / np.maximum(wgt.sum(axis=0), 1e-30)
            step = np.sqrt(((new - ys) ** 2).sum(axis=0))
            y[:, idx] = new
            live = step > 1e-7 * np.sqrt((new ** 2).sum(axis=0))
            if not live.any():
                break
            idx, xs, oks = idx[live], xs[:, :, live], oks[:, live]              # only the pixels still moving
        y[:, ~ok.any(axis=0)] = -9999
        dst.write(y.reshape(nb, win.height, w).astype(np.float32), window=win)
"""

# The peers (geomad's and hdstats' float32 kernels) stop when a step is below an absolute eps, in DN. Measured on a
# 36 x 6 x 256^2 block of this case against a converged float64 Weiszfeld (relative error of the point: median /
# p99 / max): geomad at eps 1e-3 4.7e-7 / 3.0e-6 / 2.7e-5 in 24 us/pixel (one thread); at eps 1e-4 4.2e-8 / 2.6e-7 /
# 6.4e-6 but 383 us/pixel: below 1e-3 their float32 steps never settle and most pixels run to the step cap.
# Tilewise at its default (1e-7, Newton's steps) is 1.0e-14 / 2.5e-13 / 3.5e-10 in 2.8 us/pixel: more accurate than
# the peers at any eps. The peers run at 1e-3, their fastest setting within a decade of their best accuracy
# (a comparison that favours them).
PEER_EPS = "1e-3"

# hdstats.nangeomedian_pcm over blocks of rows ((rows, cols, bands, dates), NaN missing), in its own Python.
HDSTATS = "EPS = " + PEER_EPS + r"""
import sys
import numpy as np, rasterio, hdstats
out, files = sys.argv[1], sys.argv[2:]
srcs = [rasterio.open(f) for f in files]
h, w, nb = srcs[0].height, srcs[0].width, srcs[0].count
prof = dict(srcs[0].profile, dtype="float32", nodata=-9999, compress="DEFLATE", predictor=1)
with rasterio.open(out, "w", **prof) as dst:
    for r0 in range(0, h, 128):
        win = rasterio.windows.Window(0, r0, w, min(128, h - r0))
        x = np.stack([s.read(window=win) for s in srcs]).astype(np.float32)
        x[x == 0] = np.nan
        g = hdstats.nangeomedian_pcm(np.ascontiguousarray(x.transpose(2, 3, 1, 0)), eps=float(EPS), maxiters=500)
        g = np.nan_to_num(g.transpose(2, 0, 1), nan=-9999)
        dst.write(g.astype(np.float32), window=win)
"""

# odc-algo's xarray geomedian (geomad's kernel, on Dask's local threads), in its own Python.
ODC_ALGO = "EPS = " + PEER_EPS + r"""
import sys
import numpy as np, rasterio, xarray as xr, dask.array as da
from odc.algo import xr_geomedian
out, files = sys.argv[1], sys.argv[2:]
srcs = [rasterio.open(f) for f in files]
h, w, nb = srcs[0].height, srcs[0].width, srcs[0].count
arr = np.stack([s.read() for s in srcs])                              # (t, b, y, x)
ds = xr.Dataset({f"b{b}": (("time", "y", "x"), da.from_array(arr[:, b], chunks=(-1, 500, 500)))
                 for b in range(nb)})
ds = ds.assign_coords(time=np.arange(len(files)))
for v in ds.data_vars:
    ds[v].attrs["nodata"] = 0
# geomad takes uint16 as DN x 1e-4 (its default scale; the result comes back in DN) and measures eps in those
# units: EPS DN is EPS x 1e-4 there
g = xr_geomedian(ds, num_threads=1, eps=float(EPS) * 1e-4, maxiters=500).compute()
prof = dict(srcs[0].profile, dtype="float32", nodata=-9999, compress="DEFLATE", predictor=1)
with rasterio.open(out, "w", **prof) as dst:
    dst.write(np.stack([g[f"b{b}"].values.astype(np.float32) for b in range(nb)]))
"""


# The kernels alone, one thread, on a block of the case (``--kernel``): a (dates, bands, rows, cols) float32 .npy with
# NaN for missing. Each peer's float32 kernel at each eps, its time per pixel, the steps it takes per pixel (from the
# time of a fixed number of steps at eps 0) and its points, saved beside the block for their accuracy.
PEER_KERNELS = r"""
import sys, time, numpy as np
block, epss = sys.argv[1], sys.argv[2:]
x = np.ascontiguousarray(np.load(block).transpose(2, 3, 1, 0))           # (rows, cols, bands, dates)
npx = x.shape[0] * x.shape[1]
mods = {}
for name in ("geomad", "hdstats"):
    try:
        mods[name] = __import__(name)
    except ImportError:
        print(f"  {name}: not installed", flush=True)
for name, mod in mods.items():
    run = lambda eps, it: mod.nangeomedian_pcm(x, eps=eps, maxiters=it, num_threads=1, nocheck=True)
    t0 = time.process_time(); run(0.0, 2); a = time.process_time() - t0
    t0 = time.process_time(); run(0.0, 22); per = (time.process_time() - t0 - a) / 20
    for eps in epss:
        t0 = time.process_time(); g = run(float(eps), 500); s = time.process_time() - t0
        np.save(f"{block}.{name}_{eps}.npy", g.transpose(2, 0, 1))
        print(f"{name} {eps} {s / npx} {2 + (s - a) / per}", flush=True)
"""


def kernel_case(block, tols, peer_python=None, peer_eps=("1e-2", "1e-3", "1e-4")):
    """One thread, the kernels alone on ``block``: Tilewise's geomedian at each tolerance and the peers' at each eps,
    time and steps per pixel and the relative error of the points against a converged float64 median."""
    import subprocess
    import numba
    import numpy as np
    from tilewise.core.kernels import spectral as K
    numba.set_num_threads(1)
    x = np.load(block)
    b, npx = x.shape[1], x.shape[2] * x.shape[3]
    flat = np.ascontiguousarray(x.reshape(x.shape[0], b, -1))
    ref = _weiszfeld_reference(K)(flat.astype(np.float64), 1e-14, 100000)
    ok = ~np.isnan(ref[0])

    def error(g):
        g = g.reshape(b, -1)
        rel = np.linalg.norm(g[:, ok] - ref[:, ok], axis=0) / np.linalg.norm(ref[:, ok], axis=0)
        return (f"error median {np.median(rel):.1e}, p99 {np.quantile(rel, 0.99):.1e}, "
                f"p99.9 {np.quantile(rel, 0.999):.1e}, max {rel.max():.1e}")
    print(f"Kernels alone, one thread, {x.shape[0]} dates x {b} bands x {npx} pixels ({block}); error: relative to "
          f"float64 Weiszfeld steps alone (no Newton's) to 1e-14 of the norm", flush=True)
    steps = _steps_counter(K)
    for tol in tols:
        K.geomedian(x[:, :, :4, :4], tol, 500)
        seconds = min(_cpu(lambda t=tol: K.geomedian(x, t, 500)) for _ in range(3))
        g = K.geomedian(x, tol, 500)[0]
        print(f"  tilewise tol {tol:g}: {seconds / npx * 1e9:7.0f} ns/pixel, {steps(flat, tol, 500) / ok.sum():5.1f} "
              f"steps/pixel; {error(g)}", flush=True)
    if peer_python:
        proc = subprocess.run([peer_python, "-c", PEER_KERNELS, block, *peer_eps], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            name, eps, per_pixel, n = line.split() if not line.startswith(" ") else (None,) * 4
            if name is None:
                print(line)
                continue
            g = np.load(f"{block}.{name}_{eps}.npy")
            print(f"  {name} eps {eps}: {float(per_pixel) * 1e9:7.0f} ns/pixel, ~{float(n):5.1f} steps/pixel; "
                  f"{error(g)}", flush=True)
        if proc.returncode:
            print(proc.stderr[-2000:])


def _cpu(f):
    import time
    t0 = time.process_time()
    f()
    return time.process_time() - t0


def _weiszfeld_reference(K):
    import numba
    import numpy as np

    @numba.njit
    def reference(stack, tol, max_iter):
        n_obs, n_bands, n_pix = stack.shape
        x, idx = np.empty((n_obs, n_bands)), np.empty(n_obs, np.int64)
        y, t = np.empty(n_bands), np.empty(n_bands)
        out = np.full((n_bands, n_pix), np.nan)
        buf, bad = np.empty((n_pix, n_bands, n_obs)), np.empty((n_pix, n_obs), np.bool_)
        K._transpose(stack, 0, n_pix, buf, bad)
        for p in range(n_pix):
            k = K._gather_buf(buf, bad, p, x, idx)
            if k:
                K._weiszfeld(x, k, tol, max_iter, y, t)
                out[:, p] = y
        return out
    return reference


def _steps_counter(K):
    import numba
    import numpy as np

    @numba.njit
    def steps(stack, tol, max_iter):
        n_obs, n_bands, n_pix = stack.shape
        x = np.empty((n_obs, n_bands))
        xt = np.empty((n_bands, n_obs))
        idx = np.empty(n_obs, np.int64)
        y, yp, t = np.empty(n_bands), np.empty(n_bands), np.empty(n_bands)
        d, w3, q = np.empty(n_obs), np.empty(n_obs), np.empty(n_obs)
        r, h = np.empty((n_bands, n_obs)), np.empty((n_bands, n_bands))
        total = 0
        buf, bad = np.empty((n_pix, n_bands, n_obs)), np.empty((n_pix, n_obs), np.bool_)
        K._transpose(stack, 0, n_pix, buf, bad)
        for p in range(n_pix):
            k = K._gather_buf(buf, bad, p, x, idx)
            if k:
                for i in range(k):
                    for b in range(n_bands):
                        xt[b, i] = x[i, b]
                s = K._newton(xt, k, tol, max_iter, y, yp, t, d, r, h, w3, q)[0]
                total += s if s >= 0 else K._weiszfeld(x, k, tol, max_iter, y, t)
        return total
    return steps


def cut_block(folder, out, size=256):
    """A ``size``^2 block from the middle of the case's files, as (dates, bands, rows, cols) float32, NaN missing."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
    with rasterio.open(files[0]) as src:
        win = Window((src.width - size) // 2, (src.height - size) // 2, size, size)
    x = np.stack([rasterio.open(f).read(window=win) for f in files]).astype(np.float32)
    x[x == 0] = np.nan
    np.save(out, x)
    return out


def spectral_case(b, dates=36, size=2000, bands=6, masked=0.3, peer_python=None, peers=True):
    """The case's rows, run by ``b`` (a :class:`bench.Bench`); returns ``{tool: median seconds}``."""
    case = f"Spectral composites {dates} x {bands} bands x {size}^2 uint16, {masked:.0%} masked"
    print(f"\n{case}", flush=True)
    folder = b.data(f"spectral_{dates}_{size}_{bands}_{masked}", MAKE_SPECTRAL, "{folder}", str(dates), str(size),
                    str(bands), str(masked))
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
    out = os.path.join(b.work, "spectral.tif")
    times = {}
    for name, extra in (("median", []), ("geomedian", []), ("medoid", []),
                        ("quality", ["--quality-expression", "(B4 - B3) / (B4 + B3)"])):
        cmd = b.engine("-m", "tilewise", "composite", "-q", "--debug", "-s", name, *extra, "-o", out, *files)
        tool = f"tilewise composite -s {name} (CLI)" + (" per band" if name == "median" else "")
        times[name] = b.run(case, tool, cmd, out, output="cog")["median"]
    if not peers:
        print(f"  geomedian {times['geomedian'] / times['median']:.2f}x Tilewise's per-band median (goal <= 3x); "
              f"medoid {times['medoid'] / times['median']:.2f}x, quality {times['quality'] / times['median']:.2f}x",
              flush=True)
        return times
    times["numpy"] = b.run(case, "numpy Weiszfeld script (float32, row blocks)",
                           b.engine("-c", NUMPY_WEISZFELD, out, *files), out)["median"]
    if peer_python:
        for name, script, label in (("hdstats", HDSTATS, "hdstats.nangeomedian_pcm script"),
                                    ("odc-algo", ODC_ALGO, "odc-algo xr_geomedian script")):
            try:
                times[name] = b.run(case, label, [peer_python, "-c", script, out, *files], out)["median"]
            except RuntimeError as exc:
                print(f"  {label}: did not run ({str(exc).splitlines()[-1][:200]})", flush=True)
    peers = [times[k] for k in ("numpy", "hdstats", "odc-algo") if k in times]
    print(f"  geomedian: {min(peers) / times['geomedian']:.1f}x the fastest peer (goal >= 5x); "
          f"{times['geomedian'] / times['median']:.2f}x Tilewise's per-band median (goal <= 3x); "
          f"medoid {times['medoid'] / times['median']:.2f}x, quality {times['quality'] / times['median']:.2f}x",
          flush=True)
    return times


def main():
    from benchlib import Bench
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-python", default=sys.executable)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                 "bench-output"))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dates", type=int, default=36)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--bands", type=int, default=6)
    p.add_argument("--masked", type=float, default=0.3)
    p.add_argument("--peer-python", help="a Python with hdstats and/or odc-algo (not the engine's)")
    p.add_argument("--kernel", action="store_true", help="the kernels alone, one thread, on a 256^2 block of the case "
                   "(in this Python, with tilewise importable)")
    p.add_argument("--tolerances", default="1e-6,1e-7,1e-9", help="Tilewise's, for --kernel")
    p.add_argument("--tilewise-only", action="store_true", help="Tilewise's rows only (no numpy, hdstats, odc-algo)")
    args = p.parse_args()
    if args.kernel:
        b = Bench(args)
        folder = b.data(f"spectral_{args.dates}_{args.size}_{args.bands}_{args.masked}", MAKE_SPECTRAL, "{folder}",
                        str(args.dates), str(args.size), str(args.bands), str(args.masked))
        block = cut_block(folder, os.path.join(b.work, "spectral_block.npy"))
        kernel_case(block, [float(t) for t in args.tolerances.split(",")], args.peer_python)
        return
    spectral_case(Bench(args), args.dates, args.size, args.bands, args.masked, args.peer_python,
                  not args.tilewise_only)


if __name__ == "__main__":
    main()

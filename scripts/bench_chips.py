"""Image chips at the issue's size, against their floor and a SITS-style script: ``python scripts/bench_chips.py``.

Inputs (made once under ``--folder``, a process pool): 36 dates of 5000² scenes, 4 bands uint16, DEFLATE
tiled 512, of two kinds (``--kinds``): ``noise`` and ``imagery`` (smooth fields plus noise, compressing like
real scenes; see :func:`_make_scene` for why the noise is 5-bit), and 1,000 random points over them.
``--quick``: 200 points x 6 dates on 2000² scenes, a peer sample of 20 (a smoke run of a minute or two).

Cases, per kind, side by side, each with its ratios:

- ``tilewise chips`` in patch mode (32 x 32) and box mode (buffer 155 m: boxes of 31-32 pixels a side),
  on ``--workers`` processes, with the engine's phases (planning, read/compute, tile writes, assembly);
  ``--repeat N`` runs it and the floor N times, alternated, and keeps the best of each;
- the floor (:func:`run_floor`): the shortest honest program for the same files on all cores: a process
  pool over scenes decodes each 512 block that a chip touches once (every band at once) and cuts the chips
  out of it; a process pool over features then writes each chip as a netCDF classic file (the same
  dims and variables, a header built by hand, the values big-endian float32 with NaN for nodata). Its
  chips are checked equal to Tilewise's, every file.
- the SITS-style peer (patch mode), :func:`peer_chip`: per feature, each scene's 32 x 32 window read
  with rasterio (what rioxarray's ``clip_box`` does; rioxarray is not in the engine's venv),
  ``xarray.concat`` over time and ``to_netcdf`` (scipy engine), in a ``dask.delayed`` loop on the same
  number of processes. At full size it would take 20 minutes and more, so it runs on ``--peer-sample``
  features evenly spaced over the points (default 100) and its time is scaled by points / sample: that
  time is EXTRAPOLATED, and printed as such (its pool's start, counted once, plus the sample's
  time scaled). Its chips are checked equal to Tilewise's on the sample.

Outputs are removed as soon as they are compared (a chip set is 0.6 GB). Needs xarray, scipy and dask
(the test and dask extras).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import time

import numpy as np

X0, Y0, RES = 500_000.0, 5_000_000.0, 10.0
PATCH = 32
#: box mode's buffer, metres: boxes of 31-32 pixels a side, as the patches
BUFFER = 155.0
CRS_WKT = ('PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223'
           '563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PAR'
           'AMETER["latitude_of_origin",0],PARAMETER["central_meridian",15],PARAMETER["scale_factor",0.9996],PAR'
           'AMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1],AUTHORITY["EPSG","32633'
           '"]]')


def scene_names(dates: int) -> list:
    """Three dates a month from January 2024 (``s2_2024-01-01.tif``...), the names giving the dates."""
    return [f"s2_{2024 + i // 36}-{1 + (i // 3) % 12:02d}-{1 + 10 * (i % 3):02d}.tif" for i in range(dates)]


def make_inputs(folder: str, kind: str, dates: int, side: int, workers: int) -> list:
    """``dates`` scenes of ``kind`` in ``folder/kind``, made once (a process pool, one scene per task)."""
    from concurrent.futures import ProcessPoolExecutor
    out = os.path.join(folder, kind)
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, name) for name in scene_names(dates)]
    todo = [(p, kind, side, i) for i, p in enumerate(paths) if not os.path.exists(p)]
    if todo:
        print(f"making {len(todo)} {kind} scenes of {side}^2 in {out}", flush=True)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_make_scene, *zip(*todo)))
    return paths


def _make_scene(path: str, kind: str, side: int, date: int) -> None:
    """One 4-band uint16 scene, DEFLATE, 512 blocks, written under a temporary name then renamed.

    noise: uniform in 1..31, no predictor (5 bits: 16-bit noise would take 6.6 GB per 36 scenes of 5000²,
    not beside the imagery in 8 GB; it compresses to 40 % of the raw size). imagery: what real scenes
    look like to a decoder: per band a smooth field (the same every date, a seasonal gain per date) plus
    Gaussian noise of 10, in 200..6000, with the horizontal predictor (about 49 % of the raw size, as
    Sentinel-2 L2A bands with DEFLATE).
    """
    import rasterio
    from rasterio.transform import from_origin
    rng = np.random.default_rng(1000 + date)
    if kind == "noise":
        data = rng.integers(1, 32, (4, side, side), dtype=np.uint16)
        extra = {}
    else:
        data = np.empty((4, side, side), np.uint16)
        season = 1.0 + 0.3 * np.sin(2 * np.pi * date / 36)
        for b in range(4):
            field = _smooth(b, side) * np.float32(1200 * season) + np.float32(600 * (b + 2))
            field += rng.normal(0, 10, (side, side)).astype(np.float32)
            np.clip(field, 200, 6000, out=field)
            data[b] = np.rint(field)
        extra = dict(predictor=2)
    tmp = path + ".tmp.tif"
    with rasterio.open(tmp, "w", driver="GTiff", width=side, height=side, count=4, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(X0, Y0, RES, RES), nodata=0, tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate", **extra) as dst:
        dst.write(data)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=4)
def _smooth(seed: int, side: int) -> np.ndarray:
    """A smooth field in about [-1, 1] (fields and edges at tens to hundreds of pixels): coarse noise
    upsampled bilinearly, at two scales (kept per process: every date uses it)."""
    from scipy.ndimage import zoom
    rng = np.random.default_rng(seed)
    out = np.zeros((side, side), np.float32)
    for cells, weight in ((side // 250, 0.7), (side // 25, 0.3)):
        coarse = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
        out += weight * zoom(coarse, side / (cells + 1), order=1, grid_mode=True, mode="nearest")[:side, :side]
    return out


def points(n: int, side: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.column_stack([X0 + rng.uniform(0, side * RES, n), Y0 - rng.uniform(0, side * RES, n)])


def windows(xy: np.ndarray, mode: str) -> np.ndarray:
    """Each chip's ``row, col, height, width`` on the scenes' grid, as ``tilewise chips`` places them."""
    col, row = (xy[:, 0] - X0) / RES, (Y0 - xy[:, 1]) / RES
    if mode == "patch":
        r0, c0 = np.floor(row).astype(np.int64) - PATCH // 2, np.floor(col).astype(np.int64) - PATCH // 2
        return np.column_stack([r0, c0, np.full_like(r0, PATCH), np.full_like(c0, PATCH)])
    b, eps = BUFFER / RES, 1e-6
    c0, c1 = np.floor(col - b + eps), np.ceil(col + b - eps)
    r0, r1 = np.floor(row - b + eps), np.ceil(row + b - eps)
    return np.column_stack([r0, c0, r1 - r0, c1 - c0]).astype(np.int64)


# -- the floor ----------------------------------------------------------------------------------------------

def _floor_scene(path: str, wins: np.ndarray, hmax: int, wmax: int) -> np.ndarray:
    """Every chip of one scene, ``(n, bands, hmax, wmax)`` uint16 (0: nodata or past the edge): each block a
    chip touches decoded once, every band at once."""
    import rasterio
    from rasterio.windows import Window
    out = np.zeros((len(wins), 4, hmax, wmax), np.uint16)
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        height, width = src.height, src.width
        r0, c0 = np.maximum(wins[:, 0], 0), np.maximum(wins[:, 1], 0)
        r1 = np.minimum(wins[:, 0] + wins[:, 2], height)
        c1 = np.minimum(wins[:, 1] + wins[:, 3], width)
        blocks: dict = {}
        for z in np.flatnonzero((r1 > r0) & (c1 > c0)):
            for br in range(r0[z] // bh, (r1[z] - 1) // bh + 1):
                for bc in range(c0[z] // bw, (c1[z] - 1) // bw + 1):
                    blocks.setdefault((br, bc), []).append(z)
        for (br, bc), chips in blocks.items():
            top, left = br * bh, bc * bw
            block = src.read(window=Window(left, top, min(bw, width - left), min(bh, height - top)))
            for z in chips:
                ra, rb = max(r0[z], top), min(r1[z], top + block.shape[1])
                ca, cb = max(c0[z], left), min(c1[z], left + block.shape[2])
                if rb > ra and cb > ca:
                    out[z, :, ra - wins[z, 0]:rb - wins[z, 0], ca - wins[z, 1]:cb - wins[z, 1]] = \
                        block[:, ra - top:rb - top, ca - left:cb - left]
    return out


_FLOOR: dict = {}


def _floor_write(zs: np.ndarray) -> None:
    """Write chips ``zs`` (the stack is the parent's, shared by fork)."""
    stack, wins, times, out = _FLOOR["stack"], _FLOOR["wins"], _FLOOR["times"], _FLOOR["out"]
    for z in zs:
        r, c, h, w = (int(v) for v in wins[z])
        values = stack[z, :, :, :h, :w].astype(">f4")             # (dates, bands, h, w)
        values[values == 0] = np.nan
        xs = X0 + RES * (np.arange(c, c + w) + 0.5)
        ys = Y0 - RES * (np.arange(r, r + h) + 0.5)
        header, _ = _nc_header(len(times), h, w)
        with open(os.path.join(out, f"p{z}.nc"), "wb") as f:
            f.write(header)
            f.write(times.astype(">f8").tobytes())
            f.write(ys.astype(">f8").tobytes())
            f.write(xs.astype(">f8").tobytes())
            f.write(b"\0\0\0\0")
            for b in range(4):
                f.write(np.ascontiguousarray(values[:, b]).tobytes())


@functools.lru_cache(maxsize=8)
def _nc_header(nt: int, h: int, w: int):
    """A netCDF classic (CDF-2) header: dims time, y, x; variables time, y, x (float64), crs (int32),
    band_1..4 (float32, time y x, NaN fill); the values follow in that order."""
    import struct
    def name(text):
        raw = text.encode()
        return struct.pack(">i", len(raw)) + raw + b"\0" * (-len(raw) % 4)
    def attr(key, code, raw, n):
        return name(key) + struct.pack(">ii", code, n) + raw + b"\0" * (-len(raw) % 4)
    dims = [("time", nt), ("y", h), ("x", w)]
    variables = [("time", [0], 6, [attr("units", 2, b"days since 1970-01-01", 21)], 8 * nt),
                 ("y", [1], 6, [], 8 * h), ("x", [2], 6, [], 8 * w),
                 ("crs", [], 4, [attr("spatial_ref", 2, CRS_WKT.encode(), len(CRS_WKT))], 4)]
    variables += [(f"band_{b}", [0, 1, 2], 5, [attr("_FillValue", 5, struct.pack(">f", np.nan), 1),
                                               attr("grid_mapping", 2, b"crs", 3)], 4 * nt * h * w)
                  for b in (1, 2, 3, 4)]
    def header(begins):
        out = b"CDF\x02" + struct.pack(">i", 0) + struct.pack(">ii", 0x0A, len(dims))
        out += b"".join(name(n) + struct.pack(">i", size) for n, size in dims)
        out += struct.pack(">ii", 0, 0) + struct.pack(">ii", 0x0B, len(variables))
        for (n, ids, code, attrs, size), begin in zip(variables, begins):
            out += name(n) + struct.pack(">i", len(ids)) + b"".join(struct.pack(">i", i) for i in ids)
            out += (struct.pack(">ii", 0x0C, len(attrs)) + b"".join(attrs)) if attrs else struct.pack(">ii", 0, 0)
            out += struct.pack(">iiq", code, size, begin)
        return out
    offset = len(header([0] * len(variables)))
    begins = []
    for v in variables:
        begins.append(offset)
        offset += v[4]
    return header(begins), offset


def run_floor(scenes: list, xy: np.ndarray, out: str, mode: str, workers: int) -> float:
    """The floor: decode what the chips touch (a pool over scenes), write their files (a pool over features)."""
    from concurrent.futures import ProcessPoolExecutor
    from tilewise.core.dates import read_dates
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    os.makedirs(out)
    wins = windows(xy, mode)
    hmax, wmax = int(wins[:, 2].max()), int(wins[:, 3].max())
    with ProcessPoolExecutor(workers) as pool:
        per_scene = list(pool.map(_floor_scene, scenes, *zip(*[(wins, hmax, wmax)] * len(scenes))))
    stack = np.stack(per_scene, axis=1)                             # (chips, dates, bands, h, w)
    del per_scene
    days = read_dates(scenes, None).days
    order = np.argsort(days, kind="stable")
    _FLOOR.update(stack=stack[:, order] if not np.all(order == np.arange(len(order))) else stack, wins=wins,
                  times=np.asarray(days, np.float64)[order], out=out)
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_floor_write, np.array_split(np.arange(len(xy)), workers * 8))
    _FLOOR.clear()
    return time.perf_counter() - start


# -- the peer -----------------------------------------------------------------------------------------------

def peer_chip(i: int, x: float, y: float, scenes: list, out: str) -> None:
    import rasterio
    import xarray as xr
    from rasterio.windows import Window
    col, row = int((x - X0) // RES), int((Y0 - y) // RES)
    h = PATCH // 2
    layers = []
    for path in scenes:
        with rasterio.open(path) as src:
            data = src.read(window=Window(col - h, row - h, PATCH, PATCH), boundless=True,
                            fill_value=0).astype("float32")
        data[data == 0] = np.nan
        da = xr.DataArray(data, dims=("band", "y", "x"),
                          coords={"band": [1, 2, 3, 4], "x": X0 + RES * (np.arange(col - h, col + h) + 0.5),
                                  "y": Y0 - RES * (np.arange(row - h, row + h) + 0.5)})
        day = os.path.basename(path)[3:13]
        layers.append(da.expand_dims(time=[np.datetime64(day)]))
    cube = xr.concat(layers, dim="time").to_dataset(dim="band").rename({b: f"band_{b}" for b in (1, 2, 3, 4)})
    cube.to_netcdf(os.path.join(out, f"p{i}.nc"), engine="scipy")


def run_peer(scenes: list, xy: np.ndarray, chosen: np.ndarray, out: str, workers: int) -> tuple:
    """The peer on the features ``chosen``: seconds to start its pool (its imports in the workers), and
    seconds for those features (the part that grows with the number of features)."""
    import dask
    from concurrent.futures import ProcessPoolExecutor
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_peer_start, range(workers)))
        started = time.perf_counter()
        dask.compute(*[dask.delayed(peer_chip)(int(i), xy[i, 0], xy[i, 1], scenes, out) for i in chosen],
                     scheduler="processes", num_workers=workers, pool=pool)
        done = time.perf_counter()
    return started - start, done - started


def _peer_start(_: int) -> None:
    import rasterio  # noqa: F401
    import xarray  # noqa: F401


# -- Tilewise -----------------------------------------------------------------------------------------------

def run_tilewise(scenes: list, xy: np.ndarray, out: str, mode: str, workers: int):
    import shapely
    from tilewise.core import chips
    from tilewise.core.io.vector import zones_from_geometries
    zones = zones_from_geometries([shapely.Point(x, y) for x, y in xy], "EPSG:32633",
                                  ids=[f"p{i}" for i in range(len(xy))])
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    options = dict(size_x=PATCH, size_y=PATCH) if mode == "patch" else dict(buffer=BUFFER)
    report = chips(scenes, zones, out, mode, workers=workers, **options)
    return time.perf_counter() - start, report


def same_chips(a: str, b: str, chosen, bands_only: bool = False) -> str:
    """``"equal (n files)"``, or which file differs first."""
    import xarray as xr
    names = ["band_1", "band_2", "band_3", "band_4"] + ([] if bands_only else ["x", "y", "time"])
    for i in chosen:
        with xr.open_dataset(os.path.join(a, f"p{i}.nc"), decode_times=False) as da, \
                xr.open_dataset(os.path.join(b, f"p{i}.nc"), decode_times=False) as db:
            for v in names:
                if v in ("time",) and bands_only:
                    continue
                if not np.array_equal(da[v].values, db[v].values, equal_nan=True):
                    return f"DIFFER (p{i}.nc, {v})"
    return f"equal ({len(chosen)} files)"


def _phases(report) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in report.phases.items() if v >= 0.05)


def prime(paths: list) -> None:
    """Read the scenes once so every case finds them in the page cache (none pays the first read)."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def bench_kind(kind: str, args) -> None:
    scenes = make_inputs(args.folder, kind, args.dates, args.side, args.workers)
    xy = points(args.points, args.side)
    work = os.path.join(args.folder, "out")
    os.makedirs(work, exist_ok=True)
    prime(scenes)
    print(f"{kind}: {args.points} points x {args.dates} dates x 4 bands uint16 on {args.side}^2 scenes "
          f"({sum(os.path.getsize(p) for p in scenes) / 1e9:.2f} GB DEFLATE), {args.workers} workers", flush=True)
    everything = range(args.points)
    for mode in ("patch", "box"):
        tw_dir, floor_dir = os.path.join(work, f"tilewise_{mode}"), os.path.join(work, f"floor_{mode}")
        runs = []
        for _ in range(args.repeat):                # alternated, the best of each: the machine may be shared
            runs.append((run_tilewise(scenes, xy, tw_dir, mode, args.workers),
                         run_floor(scenes, xy, floor_dir, mode, args.workers)))
        seconds, report = min((r[0] for r in runs), key=lambda r: r[0])
        floor = min(r[1] for r in runs)
        equal = same_chips(tw_dir, floor_dir, everything)
        shutil.rmtree(floor_dir)
        label = f"patch {PATCH}x{PATCH}" if mode == "patch" else f"box {BUFFER:g} m"
        print(f"{kind:8s} {label:11s} tilewise {seconds:7.2f} s   floor {floor:7.2f} s   "
              f"{seconds / floor:.2f}x floor   chips equal to the floor's: {equal}", flush=True)
        print(f"{'':20s} tilewise phases (s): {_phases(report)}", flush=True)
        if mode == "patch" and args.peer_sample > 0:
            chosen = np.unique(np.linspace(0, args.points - 1, min(args.peer_sample, args.points)).round()
                               .astype(int))
            peer_dir = os.path.join(work, "peer")
            pool_start, sample = run_peer(scenes, xy, chosen, peer_dir, args.workers)
            peer = pool_start + sample * args.points / len(chosen)
            equal = same_chips(tw_dir, peer_dir, chosen, bands_only=True)
            shutil.rmtree(peer_dir)
            print(f"{kind:8s} {label:11s} SITS-style peer {peer:8.1f} s EXTRAPOLATED (pool start {pool_start:.1f} s + "
                  f"{sample:.1f} s for {len(chosen)} of {args.points} features x {args.points / len(chosen):g})   "
                  f"tilewise {peer / seconds:.1f}x faster   chips equal to the peer's: {equal}", flush=True)
        shutil.rmtree(tw_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="build/bench_chips", help="where the inputs are made once")
    parser.add_argument("--kinds", default="noise,imagery", help="input kinds, comma-separated: noise, imagery")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--dates", type=int, default=36)
    parser.add_argument("--side", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--peer-sample", type=int, default=100,
                        help="features the peer runs on (its time is scaled to all points); 0: no peer")
    parser.add_argument("--no-peer", action="store_true", help="same as --peer-sample 0")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run Tilewise and the floor this many times, alternated, and keep the best of each")
    parser.add_argument("--quick", action="store_true", help="200 points x 6 dates on 2000^2 scenes, peer on 20")
    args = parser.parse_args()
    if args.quick:
        args.points, args.dates, args.side, args.peer_sample = 200, 6, 2000, min(args.peer_sample, 20)
        args.folder = os.path.join(args.folder, "quick")
    if args.no_peer:
        args.peer_sample = 0
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("noise", "imagery")]
    if bad:
        parser.error(f"--kinds: {', '.join(bad)} is not an input kind (noise, imagery)")
    for kind in kinds:
        bench_kind(kind, args)


if __name__ == "__main__":
    main()

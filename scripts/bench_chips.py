"""Image chips against a SITS-style script, reduced size: ``python scripts/bench_chips.py [--points N] ...``.

Inputs (made once in ``--folder``): ``--dates`` uint16 scenes of ``--side``² pixels, 4 bands, DEFLATE, 512
blocks, and ``--points`` random points over them. Cases: ``tilewise chips`` in patch mode (32 x 32) and
box mode (buffer 150 m), on ``--workers`` processes; the peer, SITS-style: per feature, each scene's
32 x 32 window read with rasterio (what rioxarray's ``clip_box`` does; rioxarray is not in the engine's
venv), ``xarray.concat`` over time and ``to_netcdf`` (scipy engine), in a ``dask.delayed`` loop on the
same number of processes. The peer's patches are checked equal to Tilewise's. Needs xarray, scipy and
dask (the test and dask extras).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np

X0, Y0, RES = 500_000.0, 5_000_000.0, 10.0


def make_inputs(folder: str, dates: int, side: int) -> list:
    import rasterio
    from rasterio.transform import from_origin
    os.makedirs(os.path.join(folder, "scenes"), exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(dates):
        path = os.path.join(folder, "scenes", f"s2_2024-{1 + i // 3:02d}-{1 + 10 * (i % 3):02d}.tif")
        if not os.path.exists(path):
            data = rng.integers(1, 10000, (4, side, side), dtype=np.uint16)
            with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=4, dtype="uint16",
                               crs="EPSG:32633", transform=from_origin(X0, Y0, RES, RES), nodata=0, tiled=True,
                               blockxsize=512, blockysize=512, compress="deflate") as dst:
                dst.write(data)
        paths.append(path)
    return paths


def points(n: int, side: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.column_stack([X0 + rng.uniform(0, side * RES, n), Y0 - rng.uniform(0, side * RES, n)])


def peer_chip(i: int, x: float, y: float, scenes: list, out: str) -> None:
    import rasterio
    import xarray as xr
    from rasterio.windows import Window
    col, row = int((x - X0) // RES), int((Y0 - y) // RES)
    layers = []
    for path in scenes:
        with rasterio.open(path) as src:
            data = src.read(window=Window(col - 16, row - 16, 32, 32), boundless=True, fill_value=0).astype("float32")
        data[data == 0] = np.nan
        da = xr.DataArray(data, dims=("band", "y", "x"),
                          coords={"band": [1, 2, 3, 4], "x": X0 + RES * (np.arange(col - 16, col + 16) + 0.5),
                                  "y": Y0 - RES * (np.arange(row - 16, row + 16) + 0.5)})
        day = os.path.basename(path)[3:13]
        layers.append(da.expand_dims(time=[np.datetime64(day)]))
    cube = xr.concat(layers, dim="time").to_dataset(dim="band").rename({b: f"band_{b}" for b in (1, 2, 3, 4)})
    cube.to_netcdf(os.path.join(out, f"p{i}.nc"), engine="scipy")


def run_peer(scenes: list, xy: np.ndarray, out: str, workers: int) -> float:
    import dask
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    start = time.perf_counter()
    dask.compute(*[dask.delayed(peer_chip)(i, x, y, scenes, out) for i, (x, y) in enumerate(xy)],
                 scheduler="processes", num_workers=workers)
    return time.perf_counter() - start


def run_tilewise(scenes: list, xy: np.ndarray, out: str, mode: str, workers: int) -> float:
    import shapely
    from tilewise.core import chips
    from tilewise.core.io.vector import zones_from_geometries
    zones = zones_from_geometries([shapely.Point(x, y) for x, y in xy], "EPSG:32633",
                                  ids=[f"p{i}" for i in range(len(xy))])
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    options = dict(size_x=32, size_y=32) if mode == "patch" else dict(buffer=150)
    chips(scenes, zones, out, mode, workers=workers, **options)
    return time.perf_counter() - start


def same_chips(a: str, b: str, n: int) -> bool:
    import xarray as xr
    for i in sorted({0, n // 2, n - 1}):
        with xr.open_dataset(os.path.join(a, f"p{i}.nc")) as da, xr.open_dataset(os.path.join(b, f"p{i}.nc")) as db:
            if not all(np.array_equal(da[v].values, db[v].values, equal_nan=True) for v in ("band_1", "band_4")):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="build/bench_chips")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--dates", type=int, default=12)
    parser.add_argument("--side", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    scenes = make_inputs(args.folder, args.dates, args.side)
    xy = points(args.points, args.side)
    print(f"{args.points} points x {args.dates} dates x 4 bands on {args.side}^2 scenes, {args.workers} workers")
    tw = {m: run_tilewise(scenes, xy, os.path.join(args.folder, f"tilewise_{m}"), m, args.workers)
          for m in ("patch", "box")}
    for mode, seconds in tw.items():
        print(f"tilewise chips {mode:5s} {seconds:8.2f} s")
    if not args.no_peer:
        peer = run_peer(scenes, xy, os.path.join(args.folder, "peer"), args.workers)
        equal = same_chips(os.path.join(args.folder, "tilewise_patch"), os.path.join(args.folder, "peer"),
                           args.points)
        print(f"SITS-style peer (patch) {peer:8.2f} s: {peer / tw['patch']:.1f}x Tilewise's time; "
              f"chips equal: {equal}")


if __name__ == "__main__":
    main()

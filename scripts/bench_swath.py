"""Swath extraction against a sen3r-style peer and the floor (reduced case of issue 23's benchmark).

    cd build/plugins && PYTHONPATH=$PWD /work/main/.venv/bin/python ../../scripts/bench_swath.py \\
        --scenes 4 --rows 1000 --cols 1200 --variables 8 --points 100 --lakes 20 --workers 2

Inputs: synthetic Sentinel-3 OLCI WFR SAFE folders (tests/engine/swathdata.py, netCDF4, chunked like the
real products), points and small lake polygons whose vertices are measured (GEOMETRY_MODE vertices, as
sen3r does). Three timings, each on the same features and scenes:

- tilewise: ``tilewise.core.extract`` (the tile runner, one task per scene);
- peer: the way sen3r works: per scene, netCDF4 reads of latitude/longitude and of every variable, and
  for each point or vertex a vectorised distance over the whole latitude/longitude grid; scenes in a
  ``ProcessPoolExecutor``;
- floor: decoding what the features touch: each scene's latitude/longitude, and the blocks of every
  variable that hold the features' pixels, in a pool of the same size.

The three tables are checked to hold the same pixels and values before the times are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "engine"))


def write_inputs(folder, n_scenes, rows, cols, n_vars, n_points, n_lakes, seed=0):
    import shapely
    import swathdata as sd
    bands = tuple(range(1, n_vars + 1))
    paths = [sd.write_olci_product(folder, rows=rows, cols=cols, stamp=f"202405{10 + i:02d}T100000", seed=i,
                                   oa_bands=bands, chunks=(256, 256), lat0=-3.2, lon0=-60.0)
             for i in range(n_scenes)]
    lat, lon = sd.geolocation_truth(paths[0])
    rng = np.random.default_rng(seed)
    pick = lambda n: (rng.integers(5, rows - 5, n), rng.integers(5, cols - 10, n))  # noqa: E731
    r, c = pick(n_points)
    points = list(shapely.points(lon[r, c] + rng.normal(0, 5e-4, n_points), lat[r, c] + rng.normal(0, 5e-4, n_points)))
    r, c = pick(n_lakes)
    lakes = [shapely.Point(x, y).buffer(0.01, quad_segs=8) for x, y in zip(lon[r, c], lat[r, c])]
    return paths, points + lakes, [f"Oa{b:02d}_reflectance" for b in bands]


def vertices(geoms):
    import shapely
    xy = []
    for g in geoms:
        coords = shapely.get_coordinates(g)
        xy.extend(coords if shapely.get_type_id(g) == 0 else coords[:-1])
    return np.asarray(xy)


def peer_scene(args):
    """sen3r's way: whole grids with netCDF4, a distance over every pixel for each vertex."""
    import netCDF4
    path, xy, variables = args
    with netCDF4.Dataset(os.path.join(path, "geo_coordinates.nc")) as f:
        lat = np.ma.filled(f["latitude"][:].astype(np.float64), np.nan)
        lon = np.ma.filled(f["longitude"][:].astype(np.float64), np.nan)
    rows, cols, out = [], [], []
    for x, y in xy:
        d = (lat - y) ** 2 + ((lon - x) * np.cos(np.radians(y))) ** 2
        k = int(np.nanargmin(d))
        rows.append(k // lat.shape[1])
        cols.append(k % lat.shape[1])
    for v in variables:
        with netCDF4.Dataset(os.path.join(path, f"{v}.nc")) as f:
            data = np.ma.filled(f[v][:].astype(np.float64), np.nan)
        out.append(data[rows, cols])
    return np.array(rows), np.array(cols), np.column_stack(out)


def floor_scene(args):
    """What must be decoded: the geolocation, and the variables' blocks that hold the pixels."""
    from tilewise.core.io.swath import open_swath, read_geolocation, read_pixels
    path, rows, cols, variables = args
    scene = open_swath(path)
    read_geolocation(scene)
    return np.column_stack([read_pixels(scene.variable(v), rows, cols) for v in variables])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--cols", type=int, default=1200)
    p.add_argument("--variables", type=int, default=8)
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--lakes", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--folder", help="where to write the inputs (default a temporary folder)")
    p.add_argument("--json", help="write the timings here")
    a = p.parse_args(argv)
    import pyarrow.parquet as pq
    from tilewise.core import extract
    from tilewise.core.io.vector import zones_from_geometries
    folder = a.folder or tempfile.mkdtemp(prefix="bench-swath-")
    t = time.perf_counter()
    paths, geoms, variables = write_inputs(folder, a.scenes, a.rows, a.cols, a.variables, a.points, a.lakes)
    print(f"inputs: {a.scenes} scenes of {a.rows} x {a.cols} x {a.variables} variables, {a.points} points, "
          f"{a.lakes} lakes ({len(vertices(geoms))} points and vertices) in {time.perf_counter() - t:.1f} s")
    zones = zones_from_geometries(geoms, "EPSG:4326")
    out = os.path.join(folder, "ts.parquet")
    extract(paths[:1], zones, out, "mean", geometry_mode="vertices", variables=variables, workers=1)  # warm-up
    t = time.perf_counter()
    report = extract(paths, zones, out, "mean", geometry_mode="vertices", variables=variables, workers=a.workers,
                     max_distance=1000)
    tilewise = time.perf_counter() - t
    table = pq.read_table(out).to_pandas()
    xy = vertices(geoms)
    t = time.perf_counter()
    with ProcessPoolExecutor(a.workers) as pool:
        peer = list(pool.map(peer_scene, [(p, xy, variables) for p in paths]))
    peer_s = time.perf_counter() - t
    n_v, n_s = len(variables), len(xy)
    ok = True
    for i, (rows, cols, values) in enumerate(peer):
        mine = table[table.source == os.path.basename(paths[i])]
        first = mine[mine.variable == variables[0]]
        same = (first.row.to_numpy() == rows) & (first.col.to_numpy() == cols)
        # the peer's flat-earth distance and the great-circle one may differ on ties between neighbours
        ok &= same.mean() > 0.98
        got = mine.value.to_numpy().reshape(n_s, n_v)
        ok &= bool(np.allclose(got[same], values[same], equal_nan=True))
    t = time.perf_counter()
    jobs = []
    for p in paths:
        mine = table[(table.source == os.path.basename(p)) & (table.variable == variables[0])]
        rows, cols = mine.row.to_numpy(), mine.col.to_numpy()
        good = ~(np.isnan(rows.astype(float)))
        jobs.append((p, rows[good].astype(np.int64), cols[good].astype(np.int64), variables))
    with ProcessPoolExecutor(a.workers) as pool:
        list(pool.map(floor_scene, jobs))
    floor = time.perf_counter() - t
    result = dict(scenes=a.scenes, rows=a.rows, cols=a.cols, variables=a.variables, points=a.points, lakes=a.lakes,
                  samples=n_s, workers=a.workers, tilewise_s=round(tilewise, 3), peer_s=round(peer_s, 3),
                  floor_s=round(floor, 3), speedup=round(peer_s / tilewise, 2),
                  of_floor=round(tilewise / floor, 2), same_pixels_and_values=bool(ok), table_rows=report.rows)
    print(json.dumps(result, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

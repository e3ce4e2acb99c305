"""Swath extraction against a sen3r-style peer and the floor (issue 23's benchmark).

    cd build/plugins && PYTHONPATH=$PWD /work/main/.venv/bin/python ../../scripts/bench_swath.py \\
        --folder /path/to/data [--reduced] [--workers 2]

Default: the issue's size, 20 scenes of 4091 x 4865 pixels x 16 variables, 10,000 points and 1,000 lake
polygons (their 32,000 vertices measured: GEOMETRY_MODE vertices, as sen3r does); ``--reduced``: 4 scenes of
1000 x 1200 x 8 variables, 100 points, 20 lakes. Each size can be set on its own (``--scenes`` ...).

Inputs (written once into ``--folder``, reused while the sizes match): Sentinel-3 OLCI WFR SAFE folders
stored as the real products are: ``geo_coordinates.nc`` with int32 latitude/longitude (scale 1e-6, fill
-2**31 on the swath's last 3 columns), ``OaNN_reflectance.nc`` uint16 with scale_factor/add_offset and
_FillValue 65535, a ``coordinates`` attribute naming latitude/longitude, zlib-compressed netCDF4 in
256 x 256 chunks, an ``xfdumanifest.xml``. Each scene has its own geolocation (a curved swath, its
centre shifted by up to 4% of its size (0.4 degrees) and its heading turned by up to 3 degrees, so every scene puts the
features on other pixels); the variable files, a smooth field plus noise, are written once and
hard-linked into every scene (20 x 16 distinct 40 MB variables would take about 8 GB and most of the
time). No altitude, tie points or flags: nothing here reads them.

Three timings, on the same features and scenes, with the same number of processes:

- tilewise: ``tilewise.core.extract`` (the tile runner, tasks are scenes x feature chunks);
- peer: the way sen3r works: per scene, netCDF4 reads of latitude/longitude and of every variable, and
  for each point or vertex a vectorised distance over the whole latitude/longitude grid; scenes in a
  ``ProcessPoolExecutor``. When the whole peer would take more than ``--peer-limit`` seconds (at the
  issue's size: hours), it runs on ``--workers`` scenes with ``--peer-sample`` vertices each, and its
  time is extrapolated (reads per scene + vertices x the time per vertex, scenes in rounds of
  ``--workers``); the output says so;
- floor: decoding what the features touch: each scene's latitude/longitude, and the blocks of every
  variable that hold the features' pixels (every block, at the issue's size), in a pool of the same size
  (the issue's floor);
- floor with the table written: that, plus writing the table tilewise wrote from memory as Parquet (its
  string columns as dictionaries, pyarrow's default compression): issue 21's rule for floors, "the same
  kind of output". Both floors are reported.

``--repeat N`` runs N rounds of tilewise then the floors (the same load for both; the best of each kept);
``--no-peer`` skips the peer. CPU seconds (user + system of every process) are printed beside the times:
on a loaded machine they say more than the wall clock.

The peer's pixels and values are checked against tilewise's table (on the sample, when sampled) before
the times are printed. The files are read from the page cache (they were just written, or read by the
warm-up), for all three.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "engine"))

FULL = dict(scenes=20, rows=4091, cols=4865, variables=16, points=10000, lakes=1000)
REDUCED = dict(scenes=4, rows=1000, cols=1200, variables=8, points=100, lakes=20)
CHUNKS = (256, 256)
FILL_COLS = 3


def _grid_file(path, rows, cols, stamp, product):
    import netCDF4
    f = netCDF4.Dataset(path, "w")
    f.createDimension("rows", rows)
    f.createDimension("columns", cols)
    f.start_time = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}.000000Z"
    f.product_name = product
    return f


def _var(f, name, dtype, fill, **attrs):
    v = f.createVariable(name, dtype, ("rows", "columns"), fill_value=fill, chunksizes=CHUNKS, zlib=True)
    v.set_auto_maskandscale(False)
    for k, val in attrs.items():
        setattr(v, k, val)
    return v


def write_variable(path, name, rows, cols, band):
    """One OLCI reflectance: uint16 with scale/offset, a smooth field plus noise, filled at the swath's edge."""
    import swathdata as sd
    rng = np.random.default_rng(band)
    i = np.arange(rows, dtype=np.float32)[:, None]
    j = np.arange(cols, dtype=np.float32)[None, :]
    field = 3000.0 + 100.0 * band + 1500.0 * np.sin(i / 180.0 + band) * np.cos(j / 250.0)
    raw = np.clip(field + rng.normal(0.0, 40.0, (rows, cols)).astype(np.float32), 0, 65000).astype(np.uint16)
    raw[:, cols - FILL_COLS:] = 65535
    with _grid_file(path, rows, cols, "20240510T100000", "shared") as f:
        v = _var(f, name, "u2", np.uint16(65535), scale_factor=sd.OA_SCALE, add_offset=sd.OA_OFFSET,
                 coordinates="time_stamp altitude latitude longitude", units="dl",
                 long_name=f"Water leaving reflectance for OLCI acquisition band Oa{band:02d}")
        v[:] = raw


def scene_orbit(k, rows, cols):
    """Scene ``k``'s swath centre and heading: scene 0 at (-3.2, -60.0), 20 degrees; the others shifted by up
    to 4% of the swath's size each way (0.4 degrees at the issue's size) and turned by up to 3 degrees."""
    rng = np.random.default_rng(1000 + k)
    if k == 0:
        return -3.2, -60.0, 20.0
    reach = np.degrees(0.04 * 300.0 / 6371008.8)
    return (-3.2 + rng.uniform(-1, 1) * reach * rows, -60.0 + rng.uniform(-1, 1) * reach * cols,
            20.0 + rng.uniform(-3.0, 3.0))


def write_scene(args):
    """Scene ``k``: its own geo_coordinates.nc, a manifest, hard links to the shared variable files."""
    import swathdata as sd
    folder, k, rows, cols, names = args
    import datetime
    stamp = (datetime.datetime(2024, 5, 10, 10) + datetime.timedelta(days=k)).strftime("%Y%m%dT%H%M%S")
    path = os.path.join(folder, sd.product_name(stamp))
    os.makedirs(path, exist_ok=True)
    lat0, lon0, rotation = scene_orbit(k, rows, cols)
    lat, lon = sd.swath_geolocation(rows, cols, lat0, lon0, 300.0, rotation)
    with _grid_file(os.path.join(path, "geo_coordinates.nc"), rows, cols, stamp, os.path.basename(path)) as f:
        for name, values, unit in (("latitude", lat, "degrees_north"), ("longitude", lon, "degrees_east")):
            v = _var(f, name, "i4", sd.INT32_FILL, scale_factor=1e-6, units=unit, standard_name=name,
                     long_name=f"DEM corrected {name}", valid_min=np.int32(-180000000),
                     valid_max=np.int32(180000000))
            raw = np.round(values * 1e6).astype(np.int32)
            raw[:, cols - FILL_COLS:] = sd.INT32_FILL
            v[:] = raw
    for name in names:
        target = os.path.join(path, f"{name}.nc")
        if not os.path.exists(target):
            os.link(os.path.join(folder, "shared", f"{name}.nc"), target)
    with open(os.path.join(path, "xfdumanifest.xml"), "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" '
                'xmlns:sentinel-safe="http://www.esa.int/safe/sentinel/1.1"><metadataSection>'
                f'<sentinel-safe:startTime>{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:'
                f'{stamp[13:15]}.000000Z</sentinel-safe:startTime></metadataSection></xfdu:XFDU>\n')
    return path


def write_inputs(folder, size, workers, seed=0):
    """The scenes (reused when ``folder`` holds them at this size), the features, the variable names."""
    import shapely
    import swathdata as sd
    names = [f"Oa{b:02d}_reflectance" for b in range(1, size["variables"] + 1)]
    stamp_file = os.path.join(folder, "inputs.json")
    key = dict(size, chunks=list(CHUNKS), version=1)
    known = None
    if os.path.isfile(stamp_file):
        with open(stamp_file) as f:
            known = json.load(f)
    if known is not None and known.get("key") == key and all(os.path.isdir(p) for p in known["paths"]):
        paths = known["paths"]
    else:
        for entry in os.listdir(folder) if os.path.isdir(folder) else []:
            if entry.endswith(".SEN3") or entry == "shared":
                shutil.rmtree(os.path.join(folder, entry))
        os.makedirs(os.path.join(folder, "shared"), exist_ok=True)
        rows, cols = size["rows"], size["cols"]
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_shared, [(folder, n, rows, cols, b + 1) for b, n in enumerate(names)]))
            paths = list(pool.map(write_scene, [(folder, k, rows, cols, names) for k in range(size["scenes"])]))
        with open(stamp_file, "w") as f:
            json.dump(dict(key=key, paths=paths), f)
    rows, cols = size["rows"], size["cols"]
    lat0, lon0, rotation = scene_orbit(0, rows, cols)
    lat, lon = sd.swath_geolocation(rows, cols, lat0, lon0, 300.0, rotation)
    rng = np.random.default_rng(seed)
    # features in the middle half of scene 0: inside every scene, whose orbits differ by tens of km

    def pick(n):
        return rng.integers(rows // 4, 3 * rows // 4, n), rng.integers(cols // 4, 3 * cols // 4, n)

    n_points, n_lakes = size["points"], size["lakes"]
    r, c = pick(n_points)
    points = list(shapely.points(lon[r, c] + rng.normal(0, 5e-4, n_points), lat[r, c] + rng.normal(0, 5e-4, n_points)))
    r, c = pick(n_lakes)
    lakes = [shapely.Point(x, y).buffer(0.01, quad_segs=8) for x, y in zip(lon[r, c], lat[r, c])]
    return paths, points + lakes, names


def _write_shared(args):
    folder, name, rows, cols, band = args
    write_variable(os.path.join(folder, "shared", f"{name}.nc"), name, rows, cols, band)


def vertices(geoms):
    import shapely
    xy = []
    for g in geoms:
        coords = shapely.get_coordinates(g)
        xy.extend(coords if shapely.get_type_id(g) == 0 else coords[:-1])
    return np.asarray(xy)


def peer_scene(args):
    """sen3r's way: whole grids with netCDF4, a distance over every pixel for each vertex. Returns the
    pixels, the values, and the seconds spent reading and spent on the vertices' search."""
    import netCDF4
    path, xy, variables = args
    t0 = time.perf_counter()
    with netCDF4.Dataset(os.path.join(path, "geo_coordinates.nc")) as f:
        lat = np.ma.filled(f["latitude"][:].astype(np.float64), np.nan)
        lon = np.ma.filled(f["longitude"][:].astype(np.float64), np.nan)
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows, cols, out = [], [], []
    for x, y in xy:
        d = (lat - y) ** 2 + ((lon - x) * np.cos(np.radians(y))) ** 2
        k = int(np.nanargmin(d))
        rows.append(k // lat.shape[1])
        cols.append(k % lat.shape[1])
    search = time.perf_counter() - t0
    t0 = time.perf_counter()
    for v in variables:
        with netCDF4.Dataset(os.path.join(path, f"{v}.nc")) as f:
            data = np.ma.filled(f[v][:].astype(np.float64), np.nan)
        out.append(data[rows, cols])
    read += time.perf_counter() - t0
    return np.array(rows), np.array(cols), np.column_stack(out), read, search


def floor_scene(args):
    """What must be decoded: the geolocation, and the variables' blocks that hold the pixels."""
    from tilewise.core.io.swath import open_swath, read_geolocation, read_pixels
    path, rows, cols, variables = args
    scene = open_swath(path)
    read_geolocation(scene)
    return np.column_stack([read_pixels(scene.variable(v), rows, cols) for v in variables])


def tilewise_pixels(out, n_scenes, n_samples, n_v):
    """``row``, ``col``, ``value`` of the long table as ``(samples, scenes[, variables])`` arrays (the table
    lists, per sample, the scenes in date order, then the variables)."""
    import pyarrow.parquet as pq
    t = pq.read_table(out, columns=["row", "col", "value"])
    shape = (n_samples, n_scenes, n_v)
    row = t["row"].to_numpy(zero_copy_only=False).astype(np.float64).reshape(shape)[:, :, 0]
    col = t["col"].to_numpy(zero_copy_only=False).astype(np.float64).reshape(shape)[:, :, 0]
    return row, col, t["value"].to_numpy(zero_copy_only=False).reshape(shape)


def same_as_peer(peer, picked, row, col, values):
    """True when the peer found the same pixels (but for rare ties between neighbours: its distance is
    flat-earth, tilewise's great-circle) and read the same values there."""
    ok = True
    for (i, samples), (rows, cols, vals, _, _) in zip(picked, peer):
        same = (row[samples, i] == rows) & (col[samples, i] == cols)
        ok &= bool(same.mean() > 0.98)
        ok &= bool(np.allclose(values[samples, i][same], vals[same], equal_nan=True))
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reduced", action="store_true", help="the reduced case (4 scenes of 1000 x 1200 x 8 ...)")
    for name in FULL:
        p.add_argument(f"--{name}", type=int, help=f"default {FULL[name]} ({REDUCED[name]} reduced)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--peer-limit", type=float, default=600.0,
                   help="seconds: a peer estimated to take longer runs on a sample and is extrapolated")
    p.add_argument("--peer-sample", type=int, default=24, help="vertices per scene of the sampled peer")
    p.add_argument("--folder", help="where to write the inputs (default a temporary folder)")
    p.add_argument("--json", help="write the timings here")
    p.add_argument("--inputs-only", action="store_true", help="write the inputs, time nothing")
    p.add_argument("--no-peer", action="store_true", help="skip the peer (its time is then not reported)")
    p.add_argument("--repeat", type=int, default=1, help="time tilewise and the floors this many times (best kept)")
    a = p.parse_args(argv)
    size = {k: getattr(a, k) if getattr(a, k) is not None else (REDUCED if a.reduced else FULL)[k] for k in FULL}
    from tilewise.core import extract
    from tilewise.core.io.vector import zones_from_geometries
    folder = a.folder or tempfile.mkdtemp(prefix="bench-swath-")
    os.makedirs(folder, exist_ok=True)
    t = time.perf_counter()
    paths, geoms, variables = write_inputs(folder, size, a.workers)
    xy = vertices(geoms)
    n_scenes, n_v, n_s = len(paths), len(variables), len(xy)
    print(f"inputs: {n_scenes} scenes of {size['rows']} x {size['cols']} x {n_v} variables, {size['points']} "
          f"points, {size['lakes']} lakes ({n_s} points and vertices) ready in {time.perf_counter() - t:.1f} s "
          f"({folder})", flush=True)
    if a.inputs_only:
        return 0
    zones = zones_from_geometries(geoms, "EPSG:4326")
    out = os.path.join(folder, "ts.parquet")
    # warm-up: the kernels compile, on one scene and a few features
    extract(paths[:1], zones_from_geometries(geoms[:3], "EPSG:4326"), out, "mean", geometry_mode="vertices",
            variables=variables, workers=1)
    best = dict(tilewise=math.inf, tilewise_cpu=math.inf, floor=math.inf, floor_cpu=math.inf, write=math.inf)
    jobs, peer_s, extrapolated, ok = None, None, False, True
    for _ in range(max(1, a.repeat)):      # rounds of tilewise then the floors: the same load for both
        cpu = cpu_seconds()
        t = time.perf_counter()
        report = extract(paths, zones, out, "mean", geometry_mode="vertices", variables=variables,
                         workers=a.workers, max_distance=1000)
        took = time.perf_counter() - t
        best["tilewise_cpu"] = min(best["tilewise_cpu"], cpu_seconds() - cpu)
        best["tilewise"] = min(best["tilewise"], took)
        print(f"tilewise: {took:.1f} s, {report.tiles} tasks, {report.rows} rows; opening the scenes and the "
              f"features before the runner {took - sum(report.phases.values()):.1f} s; the runner's phases "
              f"{ {k: round(v, 1) for k, v in report.phases.items()} }, tasks' "
              f"{ {k: round(v, 1) for k, v in report.tile_seconds.items()} }", flush=True)
        if jobs is None:
            row, col, values = tilewise_pixels(out, n_scenes, n_s, n_v)
            if not a.no_peer:
                ok, peer_s, extrapolated = run_peer(a, paths, xy, variables, row, col, values)
            jobs = []
            for i, p_ in enumerate(paths):
                good = np.isfinite(row[:, i])
                jobs.append((p_, row[good, i].astype(np.int64), col[good, i].astype(np.int64), variables))
        cpu = cpu_seconds()
        t = time.perf_counter()
        with ProcessPoolExecutor(a.workers) as pool:
            list(pool.map(floor_scene, jobs))
        floor_took = time.perf_counter() - t
        best["floor_cpu"] = min(best["floor_cpu"], cpu_seconds() - cpu)
        best["floor"] = min(best["floor"], floor_took)
        write_took = floor_write(out)
        best["write"] = min(best["write"], write_took)
        print(f"floor: {floor_took:.1f} s (decoding); writing the same table: {write_took:.1f} s more", flush=True)
    tilewise, floor, write = best["tilewise"], best["floor"], best["write"]
    print(f"CPU seconds (user + system, every process): tilewise {best['tilewise_cpu']:.1f}, floor "
          f"{best['floor_cpu']:.1f} (decoding)", flush=True)
    result = dict(size, samples=n_s, workers=a.workers, repeat=a.repeat, tilewise_s=round(tilewise, 3),
                  peer_s=None if peer_s is None else round(peer_s, 3), peer_extrapolated=extrapolated,
                  floor_s=round(floor, 3), floor_write_s=round(floor + write, 3),
                  tilewise_cpu_s=round(best["tilewise_cpu"], 1), floor_cpu_s=round(best["floor_cpu"], 1),
                  x_peer=None if peer_s is None else round(peer_s / tilewise, 1),
                  x_floor=round(tilewise / floor, 2), x_floor_write=round(tilewise / (floor + write), 2),
                  same_pixels_and_values=bool(ok), table_rows=report.rows,
                  tasks=report.tiles, phases=report.phases, task_seconds=report.tile_seconds)
    peer = "peer not run" if peer_s is None else (
        f"peer {peer_s:.1f} s{' (extrapolated)' if extrapolated else ''} | {peer_s / tilewise:.1f}x faster than "
        "the peer")
    print(f"tilewise {tilewise:.1f} s | {peer} | floor {floor:.1f} s: {tilewise / floor:.2f}x | floor with the "
          f"table written {floor + write:.1f} s: {tilewise / (floor + write):.2f}x | same pixels and values: "
          f"{ok if peer_s is not None else 'not checked (no peer)'}")
    print(json.dumps(result, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if ok else 1


def cpu_seconds():
    """User and system seconds of this process and of its ended children."""
    import resource
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def floor_write(table_path):
    """Seconds to write the table tilewise wrote, from memory, as Parquet: its string columns as dictionary
    arrays (pyarrow writes their codes without hashing every row; read back as plain strings), pyarrow's
    default compression. The second floor: decoding, plus writing the same kind of output."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = pq.read_schema(table_path)
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    table = pq.read_table(table_path, read_dictionary=strings)
    target = table_path + ".floor.parquet"
    t = time.perf_counter()
    pq.write_table(table, target, store_schema=False)
    took = time.perf_counter() - t
    os.remove(target)
    return took


def run_peer(a, paths, xy, variables, row, col, values):
    """The peer: on a sample first, then whole when it would not take long. ``(same, seconds, extrapolated)``."""
    n_scenes, n_s = len(paths), len(xy)
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(n_s, min(a.peer_sample, n_s), replace=False))
    first = list(range(min(a.workers, n_scenes)))
    t = time.perf_counter()
    with ProcessPoolExecutor(a.workers) as pool:
        sampled = list(pool.map(peer_scene, [(paths[i], xy[sample], variables) for i in first]))
    sampled_s = time.perf_counter() - t
    read = float(np.mean([s[3] for s in sampled]))
    per_vertex = float(np.mean([s[4] for s in sampled])) / len(sample)
    rounds = math.ceil(n_scenes / a.workers)
    estimate = rounds * (read + n_s * per_vertex)
    ok = same_as_peer(sampled, [(i, sample) for i in first], row, col, values)
    if estimate <= a.peer_limit:
        t = time.perf_counter()
        with ProcessPoolExecutor(a.workers) as pool:
            peer = list(pool.map(peer_scene, [(p_, xy, variables) for p_ in paths]))
        peer_s = time.perf_counter() - t
        ok &= same_as_peer(peer, [(i, np.arange(n_s)) for i in range(n_scenes)], row, col, values)
        print(f"peer: {peer_s:.1f} s (whole run)", flush=True)
        return ok, peer_s, False
    print(f"peer: EXTRAPOLATED to {estimate:.0f} s ({estimate / 3600:.1f} h) from a sample: {len(first)} scenes x "
          f"{len(sample)} vertices in {sampled_s:.1f} s: {read:.1f} s of reads per scene + {per_vertex:.3f} s "
          f"per vertex, x {n_s} vertices, {n_scenes} scenes in {rounds} rounds of {a.workers} processes",
          flush=True)
    return ok, estimate, True


if __name__ == "__main__":
    sys.exit(main())

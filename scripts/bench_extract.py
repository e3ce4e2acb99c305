"""Extraction benchmark: ``tilewise extract`` side by side with QGIS and exactextract, in one run.

On the same files, each tool end to end in its own process (wall time and peak memory of the
process tree):

* polygons x rasters: tilewise centre coverage against QGIS's native:zonalstatisticsfb looped
  over the rasters (in one QGIS Python process, outputs kept in memory); tilewise fractional
  coverage against exactextract (all rasters in one call, raster-sequential, if installed);
* points x rasters: tilewise nearest against QGIS's native:rastersampling looped.

Statistics: mean, median, min, max, count, sum (points: the value). Tilewise runs the CLI
(``tilewise extract ... -j 2``: the tile runner on 2 local workers) and writes the long layout
to Parquet (and, for points, also to a GeoPackage).

The sizes are the goal's (issue 11): 10,000 polygons and 100,000 points over 50 rasters of
4000 x 4000; ``--quick`` (``make bench-quick``) takes 3 rasters of 1000 x 1000, 1,000 polygons
and 10,000 points. ``make bench`` runs it after the other cases (:func:`extract_cases`).

    python3 scripts/bench_extract.py --engine-python .venv/bin/python [--quick] [--rasters N]
"""

import argparse
import json
import os
import platform
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import KINDS, MAKE_ZONES, PAGE, Bench  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The goal of issue 11: at least this many times faster than the QGIS loop, and no slower than exactextract.
GOAL_VS_QGIS = 10.0
WORKERS = 2


def tilewise_cmd(b, zones, mode, out, rasters):
    """``tilewise extract`` (the CLI, through the tile runner on :data:`WORKERS` workers)."""
    stats = ["--stats", "mean"] if mode == "points" else \
        ["--stats", "mean,median,min,max,count,sum", "--coverage", mode]
    return b.engine("-m", "tilewise", "extract", "-q", "-j", str(WORKERS), "-z", zones, "--id-field", "pid",
                    *stats, "--layout", "long", "-o", out, *rasters)


EXACTEXTRACT = r"""
import sys, json, pyogrio, shapely, rasterio
from exactextract import exact_extract
from exactextract.feature import JSONFeatureSource
from exactextract.raster import RasterioRasterSource
zones, out, *rasters = sys.argv[1:]
meta, fids, wkb, fields = pyogrio.raw.read(zones)
features = [{"type": "Feature", "properties": {"pid": int(p)}, "geometry": shapely.geometry.mapping(g)}
            for p, g in zip(fields[0], shapely.from_wkb(wkb))]
sources = [RasterioRasterSource(rasterio.open(p), name=f"r{i}") for i, p in enumerate(rasters)]
rows = exact_extract(sources, JSONFeatureSource(features), ["mean", "median", "min", "max", "count", "sum"],
                     include_cols=["pid"], strategy="raster-sequential")
with open(out, "w") as f:
    json.dump([r["properties"] for r in rows], f, default=float)
"""

QGIS_LOOP = r"""
import os, sys
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
from processing.core.Processing import Processing
Processing.initialize()
import processing
algorithm, zones, out, *rasters = sys.argv[1:]
total = 0
for raster in rasters:
    if algorithm == "native:zonalstatisticsfb":
        params = {"INPUT": zones, "INPUT_RASTER": raster, "RASTER_BAND": 1, "COLUMN_PREFIX": "_",
                  "STATISTICS": [0, 1, 2, 3, 5, 6], "OUTPUT": "TEMPORARY_OUTPUT"}   # count sum mean median min max
    else:
        params = {"INPUT": zones, "RASTERCOPY": raster, "COLUMN_PREFIX": "v_", "OUTPUT": "TEMPORARY_OUTPUT"}
    total += processing.run(algorithm, params)["OUTPUT"].featureCount()
open(out, "w").write(str(total))
"""


TW_CENTRE = f"tilewise extract -j {WORKERS}, centre"
TW_FRACTIONAL = f"tilewise extract -j {WORKERS}, fractional"
TW_NEAREST = f"tilewise extract -j {WORKERS}, nearest"
TW_NEAREST_GPKG = f"tilewise extract -j {WORKERS}, nearest, GeoPackage"


def has_exactextract(b: Bench) -> bool:
    import subprocess
    return subprocess.run(b.engine("-c", "import exactextract"), env=b.env, capture_output=True).returncode == 0


def tilewise(b: Bench, case, tool, zones, mode, out, rasters):
    b.run(case, tool, tilewise_cmd(b, zones, mode, out, rasters), out,
          output="parquet" if out.endswith(".parquet") and mode == "points" else None)


def qgis_loop(b: Bench, case, algorithm, zones, out, rasters):
    b.run(case, f"{algorithm}, looped", [sys.executable, "-c", QGIS_LOOP, algorithm, zones, out, *rasters], out,
          qgis=True)


def polygon_case(b: Bench, rasters, zones, n_polygons, kind="noise"):
    case = f"{n_polygons:,} polygons x {len(rasters)} rasters, {KINDS[kind]}"
    print(f"\n{case}", flush=True)
    polygons = os.path.join(zones, "polygons.gpkg")
    out = os.path.join(b.work, "out")
    tilewise(b, case, TW_CENTRE, polygons, "centre", out + ".parquet", rasters)
    qgis_loop(b, case, "native:zonalstatisticsfb", polygons, out + ".txt", rasters)
    tilewise(b, case, TW_FRACTIONAL, polygons, "fractional", out + ".parquet", rasters)
    if has_exactextract(b):
        cmd = b.engine("-c", EXACTEXTRACT, polygons, out + ".json", *rasters)
        limit = getattr(b.args, "peer_memory_gb", None)
        if limit:      # on a shared machine: exactextract keeps every value for the medians (~20 GB at 50 rasters)
            cmd = f"ulimit -v {int(limit * 2**20)}; exec {' '.join(shlex.quote(c) for c in cmd)}"
        try:
            b.run(case, "exactextract (raster-sequential)", cmd, out + ".json")
        except RuntimeError as exc:
            print(f"  exactextract failed{f' within {limit:g} GB' if limit else ''}: {str(exc)[-300:]}")
    else:
        print("  exactextract is not installed in the engine's environment: skipped")


def point_case(b: Bench, rasters, zones, n_points, kind="noise"):
    """Points: tilewise nearest (Parquet, GeoPackage) against QGIS's rastersampling looped, and the floor of the
    Parquet table (scripts/bench_floor.py: each raster decoded, sampled, one table)."""
    case = f"{n_points:,} points x {len(rasters)} rasters, {KINDS[kind]}"
    print(f"\n{case}", flush=True)
    points = os.path.join(zones, "points.gpkg")
    out = os.path.join(b.work, "out")
    tilewise(b, case, TW_NEAREST, points, "points", out + ".parquet", rasters)
    tilewise(b, case, TW_NEAREST_GPKG, points, "points", out + ".gpkg", rasters)
    qgis_loop(b, case, "native:rastersampling", points, out + ".txt", rasters)
    b.floor(case, "points", rasters, None, "parquet", zones=points)


RATIOS = [(TW_CENTRE, "native:zonalstatisticsfb, looped", GOAL_VS_QGIS),
          (TW_FRACTIONAL, "exactextract (raster-sequential)", 1.0),
          (TW_NEAREST, "native:rastersampling, looped", GOAL_VS_QGIS),
          (TW_NEAREST_GPKG, "native:rastersampling, looped", GOAL_VS_QGIS)]


def ratios(rows):
    """The ratio table (peer time / tilewise time) with the goal of each line and whether it is met."""
    lines = ["| case | tilewise | peer | peer / tilewise | goal |", "| --- | --- | --- | ---: | --- |"]
    for ours, theirs, goal in RATIOS:
        for case in dict.fromkeys(r["case"] for r in rows):
            a = next((r for r in rows if r["case"] == case and r["tool"] == ours), None)
            p = next((r for r in rows if r["case"] == case and r["tool"] == theirs), None)
            if a and p:
                ratio = p["median"] / a["median"]
                lines.append(f"| {case} | {ours} | {theirs} | {ratio:.1f}x | >= {goal:g}x: "
                             f"{'met' if ratio >= goal else 'not met'} |")
    return "\n".join(lines)


def report(rows):
    from benchlib import floor_of
    lines = ["| case | tool | median s | min | max | peak MB | x floor |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        floor = floor_of(rows, r)
        lines.append(f"| {r['case']} | {r['tool']} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                     f"{r['peak_mb']:.0f} | {r['median'] / floor['median']:.2f} |" if floor else
                     f"| {r['case']} | {r['tool']} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                     f"{r['peak_mb']:.0f} | |")
    return "\n".join(lines + ["", ratios(rows)])


def sizes(quick, rasters=None, size=None, polygons=None, points=None):
    """``(rasters, size, polygons, points)``: the goal's, or the quick run's."""
    if quick:
        return rasters or 3, size or 1000, polygons or 1000, points or 10000
    return rasters or 50, size or 4000, polygons or 10000, points or 100000


def extract_cases(b: Bench, quick: bool, rasters=None, size=None, polygons=None, points=None,
                  kinds=("noise", "smooth")):
    """Both cases on ``b`` (its rows get them) for each kind of rasters (bench.py's MAKE_STACK: noise, smooth
    fields), one run per tool (the QGIS loop and exactextract take minutes each at the goal's sizes); returns
    the title of the inputs."""
    n, size, n_polygons, n_points = sizes(quick, rasters, size, polygons, points)
    runs, b.args.runs = b.args.runs, 1
    try:
        for kind in kinds:
            _cases(b, n, size, n_polygons, n_points, kind)
    finally:
        b.args.runs = runs
    return f"{n} rasters of {size} x {size} uint16, {' and '.join(KINDS[k] for k in kinds)}"


def _cases(b: Bench, n, size, n_polygons, n_points, kind):
    files = b.stack(n, size, 1, "uint16", kind)
    zones = b.data(f"zones_{n_polygons}_{n_points}_{size}", MAKE_ZONES, "{folder}", str(n_polygons),
                   str(n_points), str(size))
    polygon_case(b, files, zones, n_polygons, kind)
    point_case(b, files, zones, n_points, kind)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-python", required=True)
    p.add_argument("--out", default=os.path.join(ROOT, "bench-output"))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--rasters", type=int, default=None, help="number of rasters (default 50; 3 with --quick)")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--polygons", type=int, default=None)
    p.add_argument("--points", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="3 rasters of 1000 x 1000, 1000 polygons, 10,000 points")
    p.add_argument("--peer-memory-gb", type=float, help="address-space limit of the exactextract run")
    p.add_argument("--kinds", default="noise,smooth", help="kinds of rasters: noise, smooth (default both)")
    args = p.parse_args()
    b = Bench(args)
    start = time.perf_counter()
    title = extract_cases(b, args.quick, args.rasters, args.size, args.polygons, args.points,
                          tuple(filter(None, args.kinds.split(","))))
    total = time.perf_counter() - start
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB, load average {os.getloadavg()[0]:.1f}"
    md = [f"# Tilewise extraction benchmark ({title})", "",
          f"Machine: {machine}  ", f"Runs per tool: {args.runs}; total {total:.0f} s (with input generation).", "",
          report(b.rows)]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_extract.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(args.out, "bench_extract.json"), "w") as f:
        json.dump(b.rows, f, indent=1)
    print("\n" + "\n".join(md))
    print(f"\nwritten: {args.out}/bench_extract.md")


if __name__ == "__main__":
    main()

"""First speed figure (the full benchmark is a later issue): one 84 x 1000 x 1000 uint8 median
(10% nodata) through qgis_process, tilewise:temporalmedian against native:cellstatistics,
same files, same run; also checks that both give the same pixels."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qgis_process import run_algorithm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "build", "plugins")

MAKE_INPUTS = """
import numpy as np, rasterio, sys
from rasterio.transform import from_origin
folder, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(84)
for i in range(n):
    a = rng.integers(0, 255, (size, size), dtype=np.uint8)
    a[rng.random((size, size)) < 0.10] = 255
    with rasterio.open(f"{folder}/r{i:03d}.tif", "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint8", nodata=255, crs="EPSG:32633", transform=from_origin(0, size * 30, 30, 30),
                       tiled=True, compress="DEFLATE") as dst:
        dst.write(a, 1)
"""


def timed(alg, params, profile):
    t = time.perf_counter()
    proc = run_algorithm(alg, params, PLUGINS, profile)
    if proc.returncode:
        sys.exit(f"{alg} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--engine-python", required=True)
    p.add_argument("--layers", type=int, default=84)
    p.add_argument("--size", type=int, default=1000)
    args = p.parse_args()
    from osgeo import gdal
    import numpy as np
    with tempfile.TemporaryDirectory(prefix="tilewise-bench-") as tmp:
        subprocess.run([args.engine_python, "-c", MAKE_INPUTS, tmp, str(args.layers), str(args.size)], check=True)
        inputs = sorted(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".tif"))
        profile = os.path.join(tmp, "profile")
        tw_out, cs_out = os.path.join(tmp, "tilewise.tif"), os.path.join(tmp, "cellstats.tif")
        tw = timed("tilewise:temporalmedian", [("INPUT", f) for f in inputs] + [("OUTPUT", tw_out)], profile)
        cs = timed("native:cellstatistics", [("INPUT", f) for f in inputs] + [
            ("STATISTIC", 3), ("IGNORE_NODATA", "true"), ("REFERENCE_LAYER", inputs[0]), ("OUTPUT", cs_out)], profile)
        a, b = gdal.Open(tw_out), gdal.Open(cs_out)
        x, y = a.GetRasterBand(1).ReadAsArray(), b.GetRasterBand(1).ReadAsArray()
        same = bool(np.array_equal(x, y))
    print(f"{args.layers} x {args.size} x {args.size} uint8 median, 10% nodata, via qgis_process ({os.cpu_count()} cores)")
    print(f"  tilewise:temporalmedian  {tw:7.2f} s")
    print(f"  native:cellstatistics    {cs:7.2f} s")
    print(f"  speed-up                 {cs / tw:7.2f} x    identical pixels: {same}")


if __name__ == "__main__":
    main()

"""Memory stays bounded by the tile size, not by the raster size.

A 20-layer stack of 3000 x 3000 pixels is 720 MB as float32. The composite runs
in a fresh process (serial, 256-pixel tiles), which reports its own resident
memory: the peak over its baseline, and the growth over the second half of the
tiles (a leak or an accumulating buffer would grow with every tile).

GDAL's block cache is set to 64 MB for the child: it is a fixed-size cache
(by default 5 % of the machine's RAM per process) and not the engine's own
allocation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import rasterio
from affine import Affine

from support import subprocess_env

N_LAYERS, SIZE = 20, 3000
STACK_FLOAT32_MB = N_LAYERS * SIZE * SIZE * 4 / 2**20          # ~687 MiB

CHILD = textwrap.dedent("""
    import json, resource, sys
    from tilewise.core import composite

    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    if __name__ == "__main__":
        warm, out, inputs = sys.argv[1], sys.argv[2], sys.argv[3:]
        composite([warm, warm, warm], out + ".warm.tif", tile_size=32, workers=1)   # imports, numba cache
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        samples = {}

        def progress(done, total):
            if done in (total // 2, total):
                samples[done] = rss_mb()

        report = composite(inputs, out, "median", tile_size=256, workers=1, progress=progress)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mid, end = sorted(samples)
        print(json.dumps({"base": base, "peak": peak, "tiles_growth": samples[end] - samples[mid],
                          "tiles": report.tiles, "seconds": report.seconds}))
""")


def write_layers(folder):
    rows, cols = np.ogrid[0:SIZE, 0:SIZE]
    pattern = ((rows // 16 + cols // 16) % 200).astype("uint8")      # compresses well: cheap to write
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(10, 0, 0, 0, -10, SIZE * 10), nodata=255, tiled=True,
                   compress="DEFLATE", zlevel=1)
    paths = []
    for i in range(N_LAYERS):
        path = str(folder / f"layer{i:02d}.tif")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(pattern + np.uint8(i), 1)
        paths.append(path)
    warm = str(folder / "warm.tif")
    with rasterio.open(warm, "w", **dict(profile, width=64, height=64)) as dst:
        dst.write(np.ones((64, 64), "uint8"), 1)
    return warm, paths


def test_composite_memory_does_not_grow_with_the_raster(tmp_path):
    warm, paths = write_layers(tmp_path)
    out = str(tmp_path / "median.tif")
    env = dict(subprocess_env(), GDAL_CACHEMAX="64")
    proc = subprocess.run([sys.executable, "-c", CHILD, warm, out, *paths], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["tiles"] == 12 * 12
    grown = m["peak"] - m["base"]
    print(f"peak {m['peak']:.0f} MB, {grown:.0f} MB over the baseline, "
          f"{m['tiles_growth']:.1f} MB over the second half of the tiles, {m['seconds']:.1f} s")
    assert grown < STACK_FLOAT32_MB / 4, m          # the whole stack would need 4x this
    assert m["tiles_growth"] < 16, m                  # flat while the tiles run
    with rasterio.open(out) as src:                   # and the result is right: median of i = 0..19
        window = src.read(1, window=((0, 64), (0, 64)))
        rows, cols = np.ogrid[0:64, 0:64]
        np.testing.assert_array_equal(window, ((rows // 16 + cols // 16) % 200) + 9.5)

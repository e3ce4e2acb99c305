"""Chips' memory is bounded by the tile x dates x bands, not by the number of features or the rasters' size.

Eight dates of four uint8 bands of 2000 x 2000 pixels are 488 MiB as float32. A fresh process (serial,
256-pixel tiles) cuts 32 x 32 patches around 3000 points spread over them and reports its resident
memory: the peak over its baseline (after a warm-up run), and the growth over the second half of the
tiles. GDAL's block cache is set to 32 MB for the child (a fixed-size cache, not the engine's own).
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

N_DATES, N_BANDS, SIZE = 8, 4, 2000
STACK_FLOAT32_MB = N_DATES * N_BANDS * SIZE * SIZE * 4 / 2**20

CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, shapely
    from tilewise.core import chips
    from tilewise.core.io.vector import zones_from_geometries

    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    if __name__ == "__main__":
        out, inputs = sys.argv[1], sys.argv[2:]
        rng = np.random.default_rng(3)
        def zones(n):
            xs, ys = rng.uniform(0, 20000, n), rng.uniform(0, 20000, n)
            return zones_from_geometries([shapely.Point(x, y) for x, y in zip(xs, ys)], "EPSG:32633")
        chips(inputs, zones(20), out + "_warm", "patch", tile_size=256, workers=1)   # imports, caches
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        samples = {}

        def progress(done, total):
            if done in (total // 2, total):
                samples[done] = rss_mb()

        report = chips(inputs, zones(3000), out, "patch", size_x=32, size_y=32, tile_size=256, workers=1,
                       progress=progress)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mid, end = sorted(samples)
        print(json.dumps({"base": base, "peak": peak, "tiles_growth": samples[end] - samples[mid],
                          "tiles": report.tiles, "chips": report.rows, "seconds": report.seconds}))
""")


def write_scenes(folder):
    rows, cols = np.ogrid[0:SIZE, 0:SIZE]
    pattern = ((rows // 16 + cols // 16) % 200).astype("uint8")      # compresses well: cheap to write
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=N_BANDS, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(10, 0, 0, 0, -10, SIZE * 10), nodata=255, tiled=True, compress="DEFLATE",
                   zlevel=1)
    paths = []
    for i in range(N_DATES):
        path = str(folder / f"s2_2024-05-{10 + i:02d}.tif")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.stack([pattern + np.uint8(i + b) for b in range(N_BANDS)]))
        paths.append(path)
    return paths


def test_chips_memory_does_not_grow_with_the_features_or_the_rasters(tmp_path):
    paths = write_scenes(tmp_path)
    env = dict(subprocess_env(), GDAL_CACHEMAX="32")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "chips"), *paths], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    grown = m["peak"] - m["base"]
    print(f"peak {m['peak']:.0f} MB, {grown:.0f} MB over the baseline, {m['tiles_growth']:.1f} MB over the "
          f"second half of the tiles, {m['tiles']} tiles, {m['chips']} chips, {m['seconds']:.1f} s")
    assert m["chips"] == 3000 and m["tiles"] > 40
    assert grown < STACK_FLOAT32_MB / 4, m          # the whole stack would need 4x this
    assert m["tiles_growth"] < 16, m                  # flat while the tiles run

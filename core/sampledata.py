"""Built-in sample data: a realistic, seeded time series of NDVI scenes.

Each scene has two int16 bands: NDVI x 10000 and a Sentinel-2-like scene
classification (SCL) band. The NDVI follows a seasonal cycle whose phase and
amplitude vary with land cover; scenes carry clouds (SCL 8/9 with NDVI near
zero), cloud shadows (SCL 3), Landsat-7-like nodata stripes and a nodata
border, so a plain per-pixel median is visibly wrong and a masked one is not.

    python -m tilewise.core.sampledata OUT_DIR [--dates 24] [--size 1024]
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from typing import List

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin

NODATA = -32768
CLOUD_CLASSES = (3, 8, 9, 10)
CRS = "EPSG:32633"


def _smooth_field(rng: np.random.Generator, shape, waves: int = 6, scale: float = 1.0) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a sum of random plane waves."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros(shape, np.float32)
    for _ in range(waves):
        k = rng.uniform(0.5, 4.0) * scale * 2 * math.pi / max(h, w)
        theta = rng.uniform(0, math.pi)
        field += np.sin(k * (x * math.cos(theta) + y * math.sin(theta)) + rng.uniform(0, 2 * math.pi))
    return field / math.sqrt(waves / 2)


def make_time_series(folder: str, dates: int = 24, size: int = 1024, seed: int = 42,
                     pixel: float = 10.0) -> List[str]:
    """Write ``dates`` monthly scenes of ``size`` x ``size`` pixels into ``folder``; return their paths."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size, size)
    cover = _smooth_field(rng, shape, 8)                       # land cover gradient
    base = 0.45 + 0.25 * cover                                 # mean NDVI
    amp = np.clip(0.15 + 0.15 * _smooth_field(rng, shape, 5), 0.02, 0.35)
    phase = 0.6 * _smooth_field(rng, shape, 4)
    water = _smooth_field(rng, shape, 10, 1.5) > 1.6           # lakes: negative NDVI, no season
    transform = from_origin(500000.0, 5200000.0, pixel, pixel)
    profile = dict(driver="GTiff", width=size, height=size, count=2, dtype="int16", crs=CRS,
                   transform=transform, nodata=NODATA, tiled=True, blockxsize=256, blockysize=256,
                   compress="DEFLATE", predictor=2)
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    paths = []
    for t in range(dates):
        season = np.sin(2 * math.pi * (t % 12) / 12.0 - math.pi / 2 + phase)
        ndvi = base + amp * season + rng.normal(0, 0.03, shape).astype(np.float32)
        ndvi[water] = -0.3 + rng.normal(0, 0.02, int(water.sum()))
        scl = np.where(water, 6, np.where(ndvi > 0.3, 4, 5)).astype(np.int16)
        clouds = _smooth_field(rng, shape, 6, 2.0) > rng.uniform(0.6, 1.6)
        shadow = np.roll(np.roll(clouds, size // 40, axis=0), size // 30, axis=1) & ~clouds
        ndvi[clouds] = rng.normal(0.02, 0.03, int(clouds.sum()))
        ndvi[shadow] *= 0.5
        scl[clouds] = 9
        scl[shadow] = 3
        values = np.clip(np.rint(ndvi * 10000), -10000, 10000).astype(np.int16)
        gaps = ((cols + rows // 3 + t * 7) % 97) < 6 if t % 3 == 0 else np.zeros(shape, bool)
        border = (cols < 8 * (t % 4)) | (rows >= size - 5 * (t % 5))
        values[gaps | border] = NODATA
        scl[gaps | border] = 0
        path = os.path.join(folder, f"ndvi_{2024 + t // 12}-{t % 12 + 1:02d}.tif")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(values, 1)
            dst.write(scl, 2)
            dst.set_band_description(1, "NDVI x 10000")
            dst.set_band_description(2, "scene classification (SCL)")
        paths.append(path)
    return paths


def write_quicklook(cog: str, png: str, band: int = 1, max_side: int = 800) -> None:
    """An NDVI-coloured PNG of one band of ``cog`` (read from an overview when large)."""
    with rasterio.open(cog) as src:
        factor = max(1, math.ceil(max(src.width, src.height) / max_side))
        out_shape = (src.height // factor or 1, src.width // factor or 1)
        data = src.read(band, out_shape=out_shape, masked=True).astype(np.float64)
    valid = ~np.ma.getmaskarray(data)
    v = data.filled(np.nan)
    lo, hi = (np.nanpercentile(v, [2, 98]) if valid.any() else (0.0, 1.0))
    x = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    stops = np.array([[0.55, 0.35, 0.2], [0.85, 0.8, 0.45], [0.45, 0.75, 0.3], [0.05, 0.4, 0.1]])
    pos = np.nan_to_num(x) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    f = (pos - i)[..., None]
    rgb = (stops[i] * (1 - f) + stops[i + 1] * f) * 255
    rgb[~valid] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference, on purpose
        with rasterio.open(png, "w", driver="PNG", width=rgb.shape[1], height=rgb.shape[0], count=3,
                           dtype="uint8") as dst:
            dst.write(np.moveaxis(rgb.astype(np.uint8), -1, 0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tilewise.core.sampledata", description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--dates", type=int, default=24)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quicklook", nargs=2, metavar=("COG", "PNG"), help="only write a PNG quicklook of COG")
    args = p.parse_args(argv)
    if args.quicklook:
        write_quicklook(*args.quicklook)
        return 0
    for path in make_time_series(args.folder, args.dates, args.size, args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The output is a Cloud-Optimized GeoTIFF: 512 x 512 tiles, overviews, the compression asked for.

(GDAL's own COG validator runs in the QGIS tests.)
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Compression

from tilewise.core import composite

from support import leftovers, read_raster

BIG = (900, 1100)          # rows, cols: more than one 512 block each way, so overviews are due


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(8)
    rows, cols = np.mgrid[0:BIG[0], 0:BIG[1]]
    layers = []
    for i in range(3):
        a = ((rows // 7 + cols // 5 + i) % 200).astype("uint8") + rng.integers(0, 3, BIG).astype("uint8")
        layers.append(a)
    paths = []
    for i, a in enumerate(layers):
        path = str(folder / f"big{i}.tif")
        with rasterio.open(path, "w", driver="GTiff", width=BIG[1], height=BIG[0], count=1, dtype="uint8",
                           crs="EPSG:32633", transform=rasterio.Affine(10, 0, 0, 0, -10, 9000),
                           tiled=True, compress="DEFLATE") as dst:
            dst.write(a, 1)
        paths.append(path)
    return paths, np.median(np.stack(layers).astype(np.float64), axis=0)


@pytest.mark.parametrize("compression,expected", [("DEFLATE", Compression.deflate), ("ZSTD", Compression.zstd),
                                                  ("LZW", Compression.lzw), ("NONE", None),
                                                  ("zstd", Compression.zstd)])
def test_output_is_a_tiled_cog_with_overviews(big_stack, tmp_path, compression, expected):
    paths, median = big_stack
    out = str(tmp_path / "out.tif")
    composite(paths, out, "median", tile_size=300, workers=1, compression=compression)
    with rasterio.open(out) as src:
        assert src.driver == "GTiff"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.profile["tiled"] is True
        assert src.block_shapes == [(512, 512)]
        assert src.compression == expected
        assert src.overviews(1) == [2, 4]                  # down to one block
        assert src.crs.to_epsg() == 32633
        np.testing.assert_array_equal(src.read(1), median.astype("float32"))
        # overviews hold the data (average), not an empty pyramid
        ov = src.read(1, out_shape=(BIG[0] // 2, BIG[1] // 2))
        np.testing.assert_allclose(ov, median.reshape(BIG[0] // 2, 2, BIG[1] // 2, 2).mean(axis=(1, 3)),
                                   rtol=1e-6)
    assert leftovers(out) == [out]                           # no work folder, no partial file


def test_small_output_has_no_overviews(raster, tmp_path):
    path = raster("small.tif", np.ones((100, 120), "int16"))
    out = str(tmp_path / "out.tif")
    composite([path], out, "max", tile_size=64, workers=1)
    with rasterio.open(out) as src:
        assert src.overviews(1) == []
        assert src.block_shapes == [(512, 512)]
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_overview_resampling_nearest(big_stack, tmp_path):
    paths, median = big_stack
    out = str(tmp_path / "out.tif")
    composite(paths, out, "median", tile_size=512, workers=1, overview_resampling="nearest")
    with rasterio.open(out) as src:
        ov = src.read(1, out_shape=(BIG[0] // 2, BIG[1] // 2))
    averaged = median.reshape(BIG[0] // 2, 2, BIG[1] // 2, 2).mean(axis=(1, 3))
    assert not set(np.unique(averaged)) <= set(np.unique(median))   # averaging would invent values
    assert set(np.unique(ov)) <= set(np.unique(median))             # nearest invents none


def test_existing_output_is_replaced(raster, tmp_path):
    path = raster("a.tif", np.full((30, 40), 5, "int16"))
    out = tmp_path / "out.tif"
    out.write_bytes(b"old")
    composite([path], str(out), "max", tile_size=16, workers=1)
    data, _ = read_raster(out)
    assert (data == 5).all()
    assert leftovers(out) == [str(out)]

"""Overviews built by the workers (tilewise.core.io.overviews) against GDAL's own, on real files.

The reference is today's assembly: the tile VRT copied by GDAL's COG driver, which builds every
overview level itself. The new route (workers' levels + GDAL's levels above them, copied with
OVERVIEWS=FORCE_USE_EXISTING) must give the same file byte for byte, and GDAL's COG validator
(osgeo_utils, run with the system Python) must accept it.
"""

import filecmp
import os
import subprocess
import textwrap

import numpy as np
import pytest
import rasterio
from rasterio.shutil import copy as gdal_copy

from tilewise.core import composite
from tilewise.core.grid import Grid, plan_tiles
from tilewise.core.io import cog, overviews
from tilewise.core.options import OutputSpec

from support import UTM_CRS, UTM_TRANSFORM, leftovers, write_raster

SYSTEM_PYTHON = "/usr/bin/python3"


def _image(rng, bands, height, width, dtype, nodata):
    data = (rng.normal(0.2, 0.4, (bands, height, width)) * 100).astype(dtype)
    holes = rng.random(data.shape) < 0.3
    holes[..., :40, :40] = True  # whole windows of nodata
    data[holes] = np.nan if nodata is None or np.isnan(nodata) else nodata
    return data


def _assemble(folder, data, tile_size, route, **spec):
    """Tiles (and, for the new route, the workers' overview levels) as the engine writes them,
    then the COG; returns ``(path, worker levels)``."""
    bands, height, width = data.shape
    grid = Grid(UTM_CRS, tuple(UTM_TRANSFORM)[:6], width, height)
    tiles = plan_tiles(grid, tile_size)
    work = folder / f"work-{route}"
    work.mkdir()
    out = OutputSpec(str(folder / f"{route}.tif"), **spec).resolved()
    levels = overviews.worker_levels(width, height, tile_size, out.overview_resampling, out.dtype) \
        if route == "new" else 0
    for t in tiles:
        part = cog.to_output(data[:, t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width].astype(float),
                             out)
        if levels:
            written = overviews.write_tile_overviews(str(work), part, grid, t, out, levels)
            assert len(written) == levels
        cog.write_tile(cog.tile_path(str(work), t), part, grid, t, out)
    names = [f"b{b}" for b in range(1, bands + 1)]
    vrt = cog.build_vrt(grid, tiles, str(work), out, names)
    mode = overviews.prepare_overviews(grid, tiles, str(work), out, names, levels, vrt) if route == "new" \
        else "IGNORE_EXISTING"
    assert mode == ("FORCE_USE_EXISTING" if levels else "IGNORE_EXISTING")
    cog.write_cog(vrt, out, overviews=mode)
    return out.path, levels


def validate(path):
    code = textwrap.dedent(f"""
        from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate
        warnings, errors, _ = validate({str(path)!r}, full_check=True)
        print(len(warnings), len(errors), warnings, errors)
    """)
    proc = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def levels_of(path):
    """Every level's pixels, full resolution first."""
    with rasterio.open(path) as src:
        found = [src.read()]
        n = len(src.overviews(1))
    for k in range(n):
        with rasterio.open(path, OVERVIEW_LEVEL=k) as src:
            found.append(src.read())
    return found


CASES = [  # (bands, height, width, tile, dtype, nodata, compression, resampling, expected worker levels)
    (1, 4200, 4100, 2048, "float32", -9999.0, "DEFLATE", "average", 2),   # 2 levels by workers, 2 by GDAL
    (2, 3100, 2600, 1024, "float32", float("nan"), "NONE", "nearest", 1),
    (1, 3100, 2600, 1024, "float64", -9999.0, "ZSTD", "average", 1),
    (1, 2100, 2600, 1024, "float64", -9999.0, "ZSTD", "nearest", 1),
    (1, 2048, 2048, 2048, "float32", -9999.0, "LZW", "average", 2),       # every level by the workers
    (1, 3100, 2601, 1024, "float32", -9999.0, "DEFLATE", "average", 0),   # odd width: GDAL's windows drift
    (1, 2100, 2600, 1024, "float32", -9999.0, "NONE", "cubic", 0),        # windows cross tiles
    (1, 2100, 2600, 1024, "int16", -9999.0, "NONE", "average", 0),        # GDAL rounds integers its way
    (1, 2100, 2600, 1024, "uint8", 255.0, "NONE", "nearest", 1),
]


@pytest.mark.parametrize("bands, height, width, tile, dtype, nodata, compression, resampling, expected", CASES)
def test_the_new_route_writes_todays_cog_byte_for_byte(tmp_path, bands, height, width, tile, dtype, nodata,
                                                      compression, resampling, expected):
    data = _image(np.random.default_rng(height + width), bands, height, width, "float64", None)
    spec = dict(dtype=dtype, nodata=nodata, compression=compression, overview_resampling=resampling)
    today, _ = _assemble(tmp_path, data, tile, "today", **spec)
    new, levels = _assemble(tmp_path, data, tile, "new", **spec)
    assert levels == expected
    with rasterio.open(new) as src:
        assert src.block_shapes == [(512, 512)] * bands
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert [(src.width >> k, src.height >> k) for k in range(1, len(src.overviews(1)) + 1)] == \
            overviews.overview_sizes(width, height)
        assert len(src.overviews(1)) >= 2
    for a, b in zip(levels_of(today), levels_of(new)):
        np.testing.assert_array_equal(a, b)
    assert filecmp.cmp(today, new, shallow=False), "same pixels but not the same file"
    assert validate(new) == "0 0 [] []"
    assert sorted(os.listdir(tmp_path)) == ["new.tif", "today.tif", "work-new", "work-today"]


@pytest.mark.parametrize("width, height", [(513, 200), (1025, 1030), (2049, 1500), (600, 5000), (512, 512),
                                           (1030, 1545)])
def test_overview_sizes_are_the_cog_drivers(tmp_path, width, height):
    src = write_raster(tmp_path / "src.tif", np.zeros((height, width), "uint8"))
    gdal_copy(src, str(tmp_path / "cog.tif"), driver="COG", COMPRESS="NONE", BLOCKSIZE=512)
    with rasterio.open(tmp_path / "cog.tif") as ds:
        factors = ds.overviews(1)
    sizes = []
    for k in range(len(factors)):
        with rasterio.open(tmp_path / "cog.tif", OVERVIEW_LEVEL=k) as ds:
            sizes.append((ds.width, ds.height))
    assert overviews.overview_sizes(width, height) == sizes


@pytest.mark.parametrize("dtype, nodata, resampling", [
    ("float32", -9999.0, "average"), ("float32", float("nan"), "average"), ("float32", -9999.0, "nearest"),
    ("float32", -9999.1, "average"),      # a nodata that float32 holds only rounded: its pixels still left out
    ("float64", -9999.0, "average"), ("float64", None, "average"),
    ("float64", -9999.0, "nearest"), ("uint8", 0, "nearest"), ("int16", -9999, "nearest")])
def test_decimate_equals_gdals_chained_levels(tmp_path, dtype, nodata, resampling):
    """Levels 1 and 2 of GDAL's COG of one even-sided image, against decimate() applied once
    and twice; windows with 0 to 4 valid pixels, magnitudes whose double sums round."""
    rng = np.random.default_rng(11)
    scale = 10.0 ** rng.integers(-20, 20, (1, 1200, 1320)) if dtype.startswith("float") else 100
    data = (rng.normal(0, 1, (1, 1200, 1320)) * scale).astype(dtype)
    if nodata is not None:
        data[rng.random(data.shape) < 0.35] = nodata
    src = write_raster(tmp_path / "src.tif", data, nodata=nodata)
    gdal_copy(src, str(tmp_path / "cog.tif"), driver="COG", COMPRESS="NONE", BLOCKSIZE=512,
              OVERVIEW_RESAMPLING=resampling.upper())
    gdal_levels = levels_of(tmp_path / "cog.tif")[1:3]
    ours = overviews.tile_overviews(data, nodata, resampling, 2)
    for theirs, mine in zip(gdal_levels, ours):
        np.testing.assert_array_equal(theirs, mine)


def test_worker_levels_rules():
    assert overviews.worker_levels(6980, 7040, 2048, "average", "float32") == 2   # 1745 is odd: level 3 drifts
    assert overviews.worker_levels(7000, 7000, 2048, "average", "float32") == 2   # tiles of 512 at level 2
    assert overviews.worker_levels(7000, 7000, 4096, "average", "float32") == 3
    assert overviews.worker_levels(7000, 7000, 1536, "nearest", "int16") == 1     # 768, then 384 < a block
    assert overviews.worker_levels(7000, 7000, 512, "average", "float32") == 0
    assert overviews.worker_levels(7000, 7000, 2048, "mode", "float32") == 0
    assert overviews.worker_levels(7000, 7000, 2048, "average", "uint16") == 0
    assert overviews.worker_levels(400, 300, 2048, "average", "float32") == 0     # no overviews at all
    assert overviews.worker_levels(7000, 7000, 2048, "average", "float32", has_nodata=False) == 0


def test_decimate_refuses_odd_sides():
    with pytest.raises(ValueError):
        overviews.decimate(np.zeros((1, 3, 4), np.float32), None, "average")


# -- through the engine: the COG sink, the OVERVIEWS switch ------------------------------------------------------

def _series(folder, n=5, height=2100, width=2200):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        data = rng.integers(0, 250, (height, width)).astype("uint8")
        data[rng.random(data.shape) < 0.1] = 255
        paths.append(write_raster(folder / f"s{i}.tif", data, nodata=255))
    return paths


@pytest.mark.parametrize("workers", [1, 2])
def test_the_engine_writes_the_same_cog_with_worker_overviews(tmp_path, workers):
    """Tiles of 1024 let the workers build level 1 (tiles of 512: GDAL builds every level): the same file."""
    paths = _series(tmp_path)
    report = composite(paths, str(tmp_path / "workers.tif"), "median", tile_size=1024, workers=workers)
    composite(paths, str(tmp_path / "gdal.tif"), "median", tile_size=512, workers=workers)
    assert overviews.worker_levels(2200, 2100, 1024, "average", "float32") == 1
    assert report.tile_seconds.get("overviews", 0) > 0, report.tile_seconds  # the workers did build them
    assert set(report.phases) >= {"engine start", "planning", "read", "compute", "tile writes", "overviews",
                                  "assembly"}, report.phases
    assert abs(sum(report.phases.values()) - report.seconds) < 0.05 * report.seconds + 0.05
    assert filecmp.cmp(tmp_path / "workers.tif", tmp_path / "gdal.tif", shallow=False)
    assert validate(tmp_path / "workers.tif") == "0 0 [] []"
    assert leftovers(tmp_path / "workers.tif") == [str(tmp_path / "workers.tif")]  # no work folder left


@pytest.mark.parametrize("compression", ["DEFLATE", "NONE"])
def test_no_overviews_gives_a_valid_cog_without_them(tmp_path, compression):
    paths = _series(tmp_path, n=3, height=1300, width=1100)
    composite(paths, str(tmp_path / "with.tif"), "median", compression=compression)
    composite(paths, str(tmp_path / "without.tif"), "median", compression=compression, overviews=False)
    with rasterio.open(tmp_path / "with.tif") as a, rasterio.open(tmp_path / "without.tif") as b:
        assert len(a.overviews(1)) == 2 and b.overviews(1) == []
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert b.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION", "NONE") == \
            a.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION", "NONE")
    # valid (no error); GDAL's validator only recommends overviews above one block
    assert validate(tmp_path / "without.tif") == ("1 0 ['The file is greater than 512xH or Wx512, it is recommended "
                                                  "to include internal overviews'] []")

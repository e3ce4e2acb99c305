"""Compressed outputs assembled from the workers' compressed blocks (:mod:`tilewise.core.io.packed`): the file is
byte for byte the COG GDAL's COG driver writes from the same pixels, for every compression, type, band count and
overview resampling; tile files that are not that layout are assembled by GDAL instead, to the same file; a
failed run resumes from its packed tiles.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from rasterio.shutil import copy as gdal_copy

from tilewise.core import composite
from tilewise.core.errors import TileError
from tilewise.core.grid import Grid, plan_tiles
from tilewise.core.io import packed
from tilewise.core.io.cog import cog_options, write_tile
from tilewise.core.io.overviews import level_grid, level_tile, overview_sizes, tile_overviews
from tilewise.core.operations.bandmath import index
from tilewise.core.operations.composite import composite_tile, plan_composite
from tilewise.core.operations.series import CompositeOptions
from tilewise.core.options import OutputSpec, RunOptions, split_options
from tilewise.core.paths import workdir_for
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.runtime.runner import run_tiles
from tilewise.core.runtime.sinks import CogSink

from support import journal, leftovers, write_raster


@pytest.fixture
def assembled(monkeypatch):
    """The outputs :func:`packed.assemble` wrote (it runs as it is; the list tells which route a run took)."""
    paths = []
    real = packed.assemble

    def spy(header_vrt, path, *args):
        paths.append(path)
        return real(header_vrt, path, *args)

    monkeypatch.setattr(packed, "assemble", spy)
    return paths


def gdal_cog(out, tmp_path, name="reference.tif", resampling="average"):
    """The COG GDAL's COG driver writes from ``out``'s pixels (type, nodata, band names), with the options the
    output was written with (its overviews of ``resampling``)."""
    with rasterio.open(out) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
                       crs=src.crs, transform=src.transform, nodata=src.nodata)
        data, names = src.read(), src.descriptions
        compression = src.compression.name.upper() if src.compression else "NONE"
        overviews = bool(src.overviews(1))
    pixels = tmp_path / f"{name}.pixels.tif"
    with rasterio.open(pixels, "w", **profile) as dst:
        dst.write(data)
        for b, description in enumerate(names, start=1):
            dst.set_band_description(b, description)
    spec = OutputSpec(str(out), profile["dtype"], profile["nodata"], compression, resampling, overviews)
    reference = tmp_path / name
    gdal_copy(str(pixels), str(reference), driver="COG", **cog_options(spec))
    return reference


def stack(tmp_path, shape, bands=1, seed=0, n=2):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        y, x = np.mgrid[0:shape[0], 0:shape[1]]
        data = np.stack([np.sin(x / (40 + 9 * b)) * 900 + np.cos(y / 70) * 600 + rng.normal(0, 30, shape)
                         for b in range(bands)]).astype("int16")
        data[:, rng.random(shape) < 0.05] = -1
        data[:, :200, :150] = -1                                          # whole blocks of nodata
        paths.append(write_raster(tmp_path / f"s{i}.tif", data, nodata=-1))
    return paths


@pytest.mark.parametrize("shape,bands,output_type,compression,resampling,tile_size,overviews", [
    ((2200, 2600), 1, "float32", "DEFLATE", "average", 1024, True),  # workers: level 1; GDAL: levels 2, 3
    ((2200, 2600), 2, "float32", "ZSTD", "average", 1024, True),     # two bands, pixel-interleaved blocks
    ((2200, 2600), 1, "int16", "DEFLATE", "nearest", 1024, True),    # the integer predictor
    ((2048, 4096), 1, "uint16", "LZW", "nearest", 2048, True),       # workers: levels 1 and 2
    ((2200, 2600), 1, "float64", "DEFLATE", "average", 2048, True),  # one tile across the rows
    ((2200, 3200), 1, "float32", "DEFLATE", "average", 1536, True),  # level 1 off its blocks: by GDAL
    ((3100, 6200), 1, "float32", "DEFLATE", "average", 3072, True),  # level 1 packed, 2 uncompressed
    ((1300, 1100), 3, "float32", "DEFLATE", "average", 512, False),  # no overviews: any tile on the blocks
])
def test_packed_output_is_gdals_cog_byte_for_byte(tmp_path, assembled, shape, bands, output_type, compression,
                                                  resampling, tile_size, overviews):
    paths = stack(tmp_path, shape, bands)
    out = tmp_path / "out.tif"
    logs = []
    composite(paths, str(out), "max", tile_size=tile_size, compression=compression, output_type=output_type,
              overview_resampling=resampling, overviews=overviews, workers=2, log=logs.append)
    assert len(assembled) == 1, assembled
    assert not any("assembled by GDAL" in m for m in logs), logs
    assert leftovers(out) == [str(out)]
    reference = gdal_cog(out, tmp_path, resampling=resampling)
    assert out.read_bytes() == reference.read_bytes()
    with rasterio.open(out) as src:
        assert (src.count, src.dtypes[0], src.block_shapes[0]) == (bands, output_type, (512, 512))
        assert len(src.overviews(1)) == (len(overview_sizes(shape[1], shape[0])) if overviews else 0)
        data = src.read(1)
        assert (data != src.nodata).mean() > 0.9           # pixels, not holes


def test_tiles_off_the_blocks_keep_gdals_assembly(tmp_path, assembled):
    """Tiles of 1408 pixels are not on the output's blocks: GDAL assembles, to the same file."""
    paths = stack(tmp_path, (1600, 3200))
    outs = []
    for size in (1408, 2048):
        out = tmp_path / f"out{size}.tif"
        composite(paths, str(out), "max", tile_size=size, output_type="float32", workers=2)
        outs.append(out)
    assert len(assembled) == 1 and "out2048" in assembled[0]
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_one_file_per_scene_packed(tmp_path, assembled):
    """Several outputs of one run (one COG per scene), each its band of every tile's array."""
    rng = np.random.default_rng(4)
    shape = (1100, 1300)
    files = [write_raster(tmp_path / f"scene{i}.tif", rng.integers(1, 3000, (4,) + shape).astype("uint16"), nodata=0)
             for i in range(3)]
    roles = [{"RED": (f, 3), "NIR": (f, 4)} for f in files]
    index(roles, "ndvi", str(tmp_path / "ndvi"), per_scene=True, tile_size=512, overviews=False, workers=2)
    outs = sorted((tmp_path / "ndvi").glob("*.tif"))
    assert len(outs) == 3 and len(assembled) == 3
    for k, out in enumerate(outs):
        assert out.read_bytes() == gdal_cog(out, tmp_path, f"reference{k}.tif").read_bytes()
    with rasterio.open(outs[1]) as src, rasterio.open(files[1]) as scene:
        red, nir = scene.read([3, 4]).astype("float64")
        np.testing.assert_allclose(src.read(1), ((nir - red) / (nir + red)).astype("float32"), rtol=1e-6)


def packed_tiles_written(tmp_path, grid, spec, data):
    """A packed sink of ``spec`` on ``grid`` in 1024-pixel tiles, each tile of ``data`` written by it in the
    work folder ``tmp_path/work``, as a worker writes it: the sink, that folder and the tiles."""
    sink = CogSink.single(grid, spec, ["v"]).planned(1024, local=True)
    assert sink.packed and not sink.in_place
    workdir = tmp_path / "work"
    workdir.mkdir()
    tiles = plan_tiles(grid, 1024)
    for tile in tiles:
        window = data[:, tile.row_off:tile.row_off + tile.height, tile.col_off:tile.col_off + tile.width]
        sink.write(sink.task_target(str(workdir), tile, 1024), tile, np.ascontiguousarray(window))
    return sink, workdir, tiles


@pytest.mark.parametrize("compression,packed_tile,message", [
    ("NONE", False, r"ovr1/tile_0001024_0001024_p0.tif is not a tiled TIFF"),
    ("ZSTD", True, r"ovr1/tile_0001024_0001024_p0.tif has \(byte order, block, bands, bits, compression, predictor\) "
                   r"\('<', 512, 1, 32, 50000, 3\), not the output's \('<', 512, 1, 32, 8, 1\)"),
])
def test_tile_files_not_packed_are_assembled_by_gdal(tmp_path, caplog, compression, packed_tile, message):
    """A tile file that is not in the output's compressed blocks (here one level-1 file: striped and uncompressed,
    or in blocks of another compression): the output is assembled by GDAL from the same files, and is the same
    file."""
    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 2600, 2200)
    spec = OutputSpec(str(tmp_path / "out.tif"), "float32", -9999.0).resolved()
    data = np.random.default_rng(3).normal(0, 1, (1, 2200, 2600)).astype("float32")
    data[:, :300, :700] = -9999.0
    sink, workdir, tiles = packed_tiles_written(tmp_path, grid, spec, data)
    tile = tiles[4]
    level = tile_overviews(data[:, tile.row_off:tile.row_off + tile.height, tile.col_off:tile.col_off + tile.width],
                           spec.nodata, "average", 1)[0]
    write_tile(sink.packed_path(str(workdir), tile, 0, 1), level, level_grid(grid, 1), level_tile(tile, 1),
               replace(spec, compression=compression), packed=packed_tile)
    with pytest.raises(packed.NotPacked, match=message):
        sink._packed_images(str(workdir), tiles, 0, 1, 1)
    caplog.set_level("INFO", logger="tilewise")
    sink.finish(str(workdir), tiles)
    assert any("assembled by GDAL" in r.getMessage() for r in caplog.records)
    assert open(spec.path, "rb").read() == gdal_cog(spec.path, tmp_path).read_bytes()


def fail_on_tile_three(job, tile, target):
    if tile.index == 3:
        raise TileError(f"{tile.name}: reading {job.inputs[0]} failed: connection reset")
    return composite_tile(job, tile, target)


def test_a_failed_run_resumes_from_its_packed_tiles(tmp_path, assembled):
    paths = stack(tmp_path, (2200, 2600), n=3)
    own, shared = split_options(dict(compression="DEFLATE"), CompositeOptions, statistic="median")
    job = plan_composite(paths, str(tmp_path / "out.tif"), own, shared)
    with pytest.raises(TileError, match="tile 3"):
        run_tiles(job, fail_on_tile_three, RunOptions(tile_size=1024, executor=SerialExecutor(), resume=True))
    out = job.output.path
    assert not os.path.exists(out)
    names = journal(out)
    assert names == [f"tile_{r:07d}_{c:07d}_p0.tif" for r, c in [(0, 0), (0, 1024), (0, 2048)]], names
    work = workdir_for(out)
    assert sorted(os.listdir(os.path.join(work, "ovr1")))[:3] == names      # each finished tile has its level
    with rasterio.open(os.path.join(work, names[0])) as tile:
        assert (tile.compression.name, tile.block_shapes[0]) == ("deflate", (512, 512))
    report = run_tiles(job, composite_tile, RunOptions(tile_size=1024, executor=SerialExecutor(), resume=True))
    assert (report.tiles, report.reused) == (9, 3)
    assert leftovers(out) == [out]
    assert open(out, "rb").read() == gdal_cog(out, tmp_path).read_bytes()
    fresh = tmp_path / "fresh.tif"
    composite(paths, str(fresh), "median", tile_size=1024, workers=2)
    assert fresh.read_bytes() == open(out, "rb").read()


def test_a_packed_tile_cut_short_is_one_clear_error_and_no_output(tmp_path):
    """A tile file cut short after it was written (a full disk, another program): the assembly stops with one
    OutputError naming that file, and leaves neither the output nor a partial file."""
    from tilewise.core.errors import OutputError
    from tilewise.core.paths import partial_path
    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 2048, 2048)
    spec = OutputSpec(str(tmp_path / "out.tif"), "float32", -9999.0).resolved()
    data = np.random.default_rng(7).normal(0, 1, (1, 2048, 2048)).astype("float32")
    sink, workdir, tiles = packed_tiles_written(tmp_path, grid, spec, data)
    cut = sink.packed_path(str(workdir), tiles[2], 0)
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 2)
    with pytest.raises(OutputError, match=r"The tile file .*tile_0001024_0000000_p0\.tif is cut short: run again "
                                          r"without resume\.") as caught:
        sink.finish(str(workdir), tiles)
    assert "\n" not in str(caught.value)
    assert not os.path.exists(spec.path) and not os.path.exists(partial_path(spec.path))
    assert not os.path.exists(partial_path(spec.path) + ".aux.xml")

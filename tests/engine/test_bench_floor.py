"""The benchmark's floors (scripts/bench_floor.py) write what Tilewise writes: same pixels, same file kind.

A floor that computed something else, or wrote a cheaper file, would flatter every ``x floor`` ratio of
``make bench``; these checks run each floor and the Tilewise CLI on the same small inputs and compare.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "bench_floor.py")


def _write(path, data, nodata=None):
    prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype,
                crs="EPSG:32633", transform=from_origin(500000, 5200000, 30, 30), nodata=nodata, tiled=True,
                blockxsize=256, blockysize=256, compress="DEFLATE")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return str(path)


def _run(*args):
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _floor(spec):
    _run(SCRIPT, json.dumps(spec))


def _layout(path):
    with rasterio.open(path) as src:
        tags = src.tags(ns="IMAGE_STRUCTURE")
        return src.dtypes[0], src.nodata, src.compression, src.overviews(1), tags.get("LAYOUT")


@pytest.fixture
def stack(tmp_path):
    rng = np.random.default_rng(3)
    files = []
    for i in range(5):
        a = rng.integers(0, 255, (1, 600, 520)).astype("uint8")
        a[rng.random(a.shape) < 0.2] = 255
        files.append(_write(tmp_path / f"r{i}.tif", a, nodata=255))
    return files


def test_median_floor_writes_tilewise_pixels_as_a_cog(tmp_path, stack):
    tw = str(tmp_path / "tw.tif")
    _run("-m", "tilewise", "composite", "-q", "-o", tw, *stack)
    out = str(tmp_path / "floor.tif")
    _floor(dict(op="median", inputs=stack, like=tw, out=out, output="cog"))
    with rasterio.open(tw) as a, rasterio.open(out) as b:
        np.testing.assert_array_equal(b.read(), a.read())
    assert _layout(out)[:3] == _layout(tw)[:3]
    assert _layout(out)[4] == "COG"


@pytest.mark.parametrize("output,flags", [("raw", ["--compression", "NONE", "--no-overviews"]), ("cog", [])])
def test_ndvi_floor_writes_tilewise_pixels_and_file_kind(tmp_path, output, flags):
    rng = np.random.default_rng(4)
    image = _write(tmp_path / "image.tif", rng.integers(0, 120, (4, 1100, 900)).astype("uint8"))
    tw = str(tmp_path / "tw.tif")
    _run("-m", "tilewise", "ndvi", "-q", *flags, "--red", f"{image}:3", "--nir", f"{image}:4", "-o", tw)
    out = str(tmp_path / "floor.tif")
    _floor(dict(op="ndvi", inputs=[image], bands=[3, 4], like=tw, out=out, output=output))
    with rasterio.open(tw) as a, rasterio.open(out) as b:
        np.testing.assert_array_equal(b.read(), a.read())
    dtype, nodata, compression, overviews, _ = _layout(out)
    assert (dtype, nodata) == _layout(tw)[:2]
    if output == "raw":
        assert (compression, overviews) == (None, [])
    else:
        assert compression.name == "deflate" and overviews and overviews == _layout(tw)[3]


def test_serve_answers_each_spec_with_its_seconds(tmp_path, stack):
    tw = str(tmp_path / "tw.tif")
    _run("-m", "tilewise", "composite", "-q", "-o", tw, *stack)
    spec = dict(op="median", inputs=stack, like=tw, out=str(tmp_path / "floor.tif"), output="raw")
    done = subprocess.run([sys.executable, SCRIPT, "--serve"], input=json.dumps(spec) + "\n" + json.dumps(spec) + "\n",
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"ready": True}
    assert [sorted(x) for x in lines[1:]] == [["result", "seconds"]] * 2
    assert all(x["seconds"] > 0 for x in lines[1:])


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "int16", "uint16"])
def test_floor_encodes_as_tilewise_does(dtype):
    sys.path.insert(0, os.path.dirname(SCRIPT))
    try:
        from bench_floor import deflate_options
    finally:
        sys.path.pop(0)
    from tilewise.core.io.cog import cog_options
    from tilewise.core.options import OutputSpec
    options = cog_options(OutputSpec("x.tif", dtype, compression="DEFLATE"))
    assert deflate_options(dtype) == (options.get("LEVEL"), options.get("PREDICTOR"))

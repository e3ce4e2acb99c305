"""Mosaic: pieces put back together exactly, every overlap rule against numpy, inputs in two CRSs
on the asked grid, 2,000 files under a low open-file limit, and the command line against the API.

``tiled=None`` lets :func:`mosaic` pick GDAL's VRT -> COG path where it can (a report with 0 tiles
says it did); ``tiled=True`` forces the engine's parallel tiles.
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform, transform_bounds

from tilewise.core.errors import InputError, ParameterError
from tilewise.core.operations.mosaic import mosaic

from support import (UTM_CRS, UTM_TRANSFORM, as_output, leftovers, numpy_reference, random_layer, read_raster,
                     subprocess_env, write_raster)
from test_cli import tilewise_cli
from test_grid_alignment import ND, nearest_candidates

RULES = ("first", "last", "min", "max", "mean", "median")
#: a process that opens every file matching its argument and keeps them all open
HOLD_ALL = "import glob, sys; held = [open(p, 'rb') for p in glob.glob(sys.argv[1])]"
FD_LIMIT = 256            # far fewer than the 2,000 inputs below


def piece_transform(row: int, col: int, base=UTM_TRANSFORM) -> Affine:
    """The transform of a piece whose top-left pixel is ``(row, col)`` of ``base``'s grid."""
    return base @ Affine.translation(col, row)


def cut(data: np.ndarray, folder, size: int, nodata) -> list:
    """Write ``data`` (bands, rows, cols) as ``size`` x ``size`` pieces on its own lattice; the last
    row and column of pieces are smaller when ``size`` does not divide the raster."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in range(0, data.shape[1], size):
        for col in range(0, data.shape[2], size):
            paths.append(write_raster(folder / f"piece_{row:04d}_{col:04d}.tif",
                                      data[:, row:row + size, col:col + size], nodata=nodata,
                                      transform=piece_transform(row, col)))
    return paths


def first_valid(stack: np.ndarray) -> np.ndarray:
    """Along axis 0 of a NaN stack: the first non-NaN value, NaN where there is none."""
    valid = ~np.isnan(stack)
    pick = np.argmax(valid, axis=0)[np.newaxis]
    out = np.take_along_axis(stack, pick, axis=0)[0]
    out[~valid.any(axis=0)] = np.nan
    return out


def rule_reference(stack: np.ndarray, rule: str) -> np.ndarray:
    """The numpy answer of an overlap rule over a NaN stack (inputs, bands, rows, cols)."""
    if rule == "first":
        return first_valid(stack)
    if rule == "last":
        return first_valid(stack[::-1])
    return numpy_reference(stack, rule)[0]


def mosaic_run(inputs, output, overlap="first", tiled=None, workers=1, pool=None, **options):
    """``mosaic`` with one worker in this process, or on the session's pool of two."""
    executor = pool if workers == 2 else None
    return mosaic(inputs, str(output), overlap, tiled=tiled, workers=1, executor=executor, **options)


# -- pieces back into the original ----------------------------------------------------------------------------

MODES = [pytest.param(None, 1, None, id="gdal"),
         pytest.param(True, 1, 16, id="tiles-1-worker-16px"),
         pytest.param(True, 2, 48, id="tiles-2-workers-48px"),
         pytest.param(True, 2, None, id="tiles-2-workers-auto")]


@pytest.mark.parametrize("tiled,workers,tile_size", MODES)
@pytest.mark.parametrize("size", [25, 37, 64])
@pytest.mark.parametrize("dtype,nodata", [("int16", -9999), ("uint8", 0), ("float32", None)])
def test_pieces_mosaic_back_to_the_original(tmp_path, pool, dtype, nodata, size, tiled, workers, tile_size):
    rng = np.random.default_rng(size)
    original = random_layer(rng, dtype, (3, 100, 130), nodata, hole_fraction=0.1)
    source = write_raster(tmp_path / "original.tif", original, nodata=nodata)
    pieces = cut(original, tmp_path / "pieces", size, nodata)
    with rasterio.open(pieces[-1]) as corner:
        assert (corner.height, corner.width) == (100 % size or size, 130 % size or size)
    out = tmp_path / "mosaic.tif"

    report = mosaic_run([str(tmp_path / "pieces")], out, tiled=tiled, workers=workers, pool=pool,
                        tile_size=tile_size)

    assert (report.tiles == 0) == (tiled is None)          # GDAL's path, or the engine's tiles
    data, profile = read_raster(out)
    _, expected = read_raster(source)
    np.testing.assert_array_equal(data, original)
    for key in ("dtype", "count", "width", "height", "crs", "transform"):
        assert profile[key] == expected[key], key
    assert leftovers(out) == [str(out)]


# -- overlap rules --------------------------------------------------------------------------------------------

#: (row, col, height, width) of each input on the union grid; the first is not the top-left one,
#: and some pixels (e.g. the top-left corner) are covered by none.
PLACES = [(10, 10, 40, 50), (0, 25, 45, 40), (30, 0, 30, 55), (5, 40, 50, 30)]
UNION = (60, 70)


@pytest.fixture(scope="module", params=[("int16", -1), ("float32", float("nan")), ("uint16", 0)],
                ids=lambda p: f"{p[0]}-nodata-{p[1]}")
def overlapping(request, tmp_path_factory):
    """Four shifted 2-band inputs on one lattice with nodata holes, and their NaN stack on the union grid."""
    dtype, nodata = request.param
    folder = tmp_path_factory.mktemp(f"overlap_{dtype}")
    rng = np.random.default_rng(7)
    stack = np.full((len(PLACES), 2) + UNION, np.nan)
    paths = []
    for i, (row, col, height, width) in enumerate(PLACES):
        a = random_layer(rng, dtype, (2, height, width), nodata, hole_fraction=0.2)
        paths.append(write_raster(folder / f"in{i}.tif", a, nodata=nodata, transform=piece_transform(row, col)))
        values = a.astype(np.float64)
        if not math.isnan(nodata):
            values[a == nodata] = np.nan
        stack[i, :, row:row + height, col:col + width] = values
    return paths, stack, nodata


@pytest.mark.parametrize("rule", RULES)
def test_overlap_rule_equals_numpy(overlapping, tmp_path, pool, rule):
    paths, stack, nodata = overlapping
    expected = as_output(rule_reference(stack, rule), nodata, "float32")
    routes = [None, True] if rule in ("first", "last") else [None]
    depth = np.sum(~np.isnan(stack[:, 0]), axis=0)
    assert depth.max() >= 3 and (depth == 0).any()           # real overlaps, and uncovered pixels
    outputs = []
    for tiled in routes:
        out = tmp_path / f"{rule}-{tiled}.tif"
        report = mosaic_run(paths, out, rule, tiled=tiled, workers=2, pool=pool, tile_size=24,
                            output_type="float32")
        assert (report.tiles == 0) == (tiled is None and rule in ("first", "last"))
        data, profile = read_raster(out)
        assert (profile["width"], profile["height"]) == UNION[::-1]
        assert profile["transform"] == UTM_TRANSFORM
        assert profile["nodata"] == pytest.approx(nodata, nan_ok=True)
        np.testing.assert_array_equal(data, expected)
        outputs.append(data)
    for other in outputs[1:]:                                 # GDAL's VRT and the engine agree bit for bit
        np.testing.assert_array_equal(other, outputs[0])


@pytest.mark.parametrize("tiled", [None, True])
def test_first_and_last_follow_the_input_order(overlapping, tmp_path, pool, tiled):
    paths, _, _ = overlapping
    results = {}
    for name, order, rule in [("first", paths, "first"), ("last", paths, "last"),
                              ("reversed first", paths[::-1], "first")]:
        mosaic_run(order, tmp_path / "out.tif", rule, tiled=tiled, workers=2, pool=pool, tile_size=32)
        results[name] = read_raster(tmp_path / "out.tif")[0]
    np.testing.assert_array_equal(results["reversed first"], results["last"])
    assert (results["first"] != results["last"]).sum() > 100   # the order decides the overlaps


@pytest.mark.parametrize("rule", ["min", "mean", "median"])
def test_rules_gdal_has_not_cannot_be_forced_onto_gdal(overlapping, tmp_path, rule):
    paths, _, _ = overlapping
    with pytest.raises(ParameterError, match="need the engine"):
        mosaic(paths, str(tmp_path / "out.tif"), rule, tiled=False)
    assert leftovers(tmp_path / "out.tif") == []


def test_the_older_engine_keyword_still_works_with_a_deprecation_warning(overlapping, tmp_path):
    """``engine=`` was the name of ``tiled=`` (it never meant the engine process): it still forces or forbids
    the tiles, with a DeprecationWarning; given with a different ``tiled`` it is a clear error."""
    paths, _, _ = overlapping
    with pytest.warns(DeprecationWarning, match=r"mosaic\(tiled=\.\.\.\)"):
        report = mosaic(paths, str(tmp_path / "out.tif"), "first", engine=True, workers=1, tile_size=32)
    assert report.tiles > 0
    with pytest.warns(DeprecationWarning), pytest.raises(ParameterError, match="need the engine"):
        mosaic(paths, str(tmp_path / "other.tif"), "mean", engine=False)
    with pytest.warns(DeprecationWarning), pytest.raises(ParameterError, match="give tiled only"):
        mosaic(paths, str(tmp_path / "other.tif"), tiled=True, engine=False)
    assert leftovers(tmp_path / "other.tif") == []


def test_different_band_counts_are_an_input_error(overlapping, tmp_path, raster):
    paths, _, _ = overlapping
    one_band = raster("one_band.tif", np.ones((20, 20), "int16"))
    with pytest.raises(InputError, match="one_band.tif has 1 band"):
        mosaic(paths + [one_band], str(tmp_path / "out.tif"))
    assert leftovers(tmp_path / "out.tif") == []


def test_float_inputs_written_as_integers_round_alike_on_both_paths(tmp_path, raster):
    """GDAL rounds halves away from zero, the engine to even: float inputs with an integer output go
    through the engine whatever the route, so a pixel does not depend on it."""
    values = np.array([[0.5, 1.5, 2.5, -2.5, 3.49, -7.51, 40000.0, -9999.0]], "float32")
    path = raster("halves.tif", values, nodata=-9999)
    outputs = []
    for tiled in (None, True):
        mosaic([path], str(tmp_path / "out.tif"), tiled=tiled, output_type="int16", workers=1)
        outputs.append(read_raster(tmp_path / "out.tif")[0][0, 0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert (np.abs(outputs[0][:6] - values[0, :6]) <= 0.5).all()
    assert outputs[0][6:].tolist() == [32767, -9999]


def test_paths_and_folders_with_glob_characters(tmp_path, raster):
    """A file called ``a[1].tif`` or a folder ``tiles[2020]`` is a path, not a pattern."""
    (tmp_path / "tiles[2020]").mkdir()
    a = np.arange(20 * 30, dtype="int16").reshape(20, 30)
    raster("tiles[2020]/a[1].tif", a)
    for given in (tmp_path / "tiles[2020]" / "a[1].tif", tmp_path / "tiles[2020]"):
        mosaic([str(given)], str(tmp_path / "out.tif"))
        np.testing.assert_array_equal(read_raster(tmp_path / "out.tif")[0][0], a)


# -- inputs in two CRSs ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_crs(tmp_path_factory):
    """A 2-band input in UTM 33 (100 m) and an overlapping one in UTM 34 (120 m), nodata ND, with holes."""
    folder = tmp_path_factory.mktemp("two_crs")
    rng = np.random.default_rng(4)
    inputs = []
    for name, crs, (lon, lat), res, shape in [("a_32633.tif", "EPSG:32633", (17.6, 48.0), 100, (2, 50, 60)),
                                              ("b_32634.tif", "EPSG:32634", (17.63, 48.01), 120, (2, 45, 55))]:
        x, y = transform("EPSG:4326", crs, [lon], [lat])
        t = Affine(res, 0, round(x[0], -2), 0, -res, round(y[0], -2))
        data = random_layer(rng, "int16", shape, ND, hole_fraction=0.1)
        inputs.append((write_raster(folder / name, data, crs=crs, transform=t, nodata=ND), data, t, crs))
    return inputs


def union_footprint(inputs, crs):
    boxes = [transform_bounds(src_crs, crs, t.c, t.f + t.e * d.shape[1], t.c + t.a * d.shape[2], t.f,
                              densify_pts=21) for _, d, t, src_crs in inputs]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def assert_covers_tightly(bounds, box, res):
    """``bounds`` holds ``box`` and overshoots it by less than one pixel on each side."""
    xmin, ymin, xmax, ymax = bounds
    eps = 1e-6 * res
    assert xmin <= box[0] + eps and ymin <= box[1] + eps and xmax >= box[2] - eps and ymax >= box[3] - eps
    assert box[0] - xmin < res and box[1] - ymin < res and xmax - box[2] < res and ymax - box[3] < res


@pytest.mark.parametrize("grid", ["EPSG:3035 at 150 m", "union default"])
@pytest.mark.parametrize("rule", ["first", "mean"])
def test_two_crs_land_on_the_target_grid(two_crs, tmp_path, pool, grid, rule):
    out = tmp_path / "out.tif"
    options = dict(crs="EPSG:3035", cell_size=150) if grid != "union default" else {}
    report = mosaic_run([p for p, *_ in two_crs], out, rule, workers=2, pool=pool, tile_size=32,
                        output_type="float32", **options)
    assert report.tiles > 0                                   # warping is the engine's job
    with rasterio.open(out) as src:
        data, crs, t, shape, bounds = src.read(), src.crs, src.transform, src.shape, src.bounds

    first_transform, first_crs = two_crs[0][2], two_crs[0][3]
    if grid == "union default":   # the first input's CRS and pixel size, on its lattice
        assert crs == CRS.from_user_input(first_crs)
        assert (t.a, t.e) == (first_transform.a, first_transform.e)
        cols, rows = ~first_transform @ (t.c, t.f)
        assert cols == pytest.approx(round(cols), abs=1e-9) and rows == pytest.approx(round(rows), abs=1e-9)
    else:
        assert crs == CRS.from_epsg(3035)
        assert (t.a, t.b, t.d, t.e) == (150, 0, 0, -150)
    assert_covers_tightly(bounds, union_footprint(two_crs, crs), t.a)

    # each input warped alone onto the output grid by rasterio (nearest), then combined by the rule
    warped, candidates = [], []
    for _, a, src_t, src_crs in two_crs:
        w = np.full((a.shape[0],) + shape, ND, a.dtype)
        reproject(a, w, src_transform=src_t, src_crs=src_crs, dst_transform=t, dst_crs=crs,
                  src_nodata=ND, dst_nodata=ND, resampling=Resampling.nearest)
        warped.append(np.where(w == ND, np.nan, w))
        candidates.append(np.stack([nearest_candidates(band, src_t, src_crs, t, crs, shape) for band in a],
                                   axis=1))
    stack = np.stack(warped)
    assert (np.sum(~np.isnan(stack[:, 0]), axis=0) == 2).mean() > 0.1   # a real overlap
    expected = as_output(rule_reference(stack, rule), ND)
    same = data == expected
    assert same.mean() > 0.99, same.mean()
    if rule == "first":
        # elsewhere a pixel centre falls within GDAL's 0.125-pixel warp tolerance of a source pixel
        # edge: the value is still one nearest resampling may pick from an input, or nodata
        allowed = np.concatenate(candidates, axis=0)
        assert np.any((allowed == data) | (data == ND), axis=0).all()


# -- thousands of files ---------------------------------------------------------------------------------------

def limit_open_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    """2,000 uncompressed 16 x 16 two-band files (40 rows x 50 columns of them) cut from one canvas."""
    folder = tmp_path_factory.mktemp("many")
    canvas = np.random.default_rng(2000).integers(0, 250, (2, 640, 800)).astype("uint8")
    paths = cut(canvas, folder / "tiles", 16, None)
    assert len(paths) == 2000
    return folder, canvas, paths


def test_the_open_file_limit_is_below_the_number_of_inputs(many_files):
    """The limit the next test runs under: a process that held every input open at once would fail."""
    folder, _, _ = many_files
    proc = subprocess.run([sys.executable, "-c", HOLD_ALL, "tiles/*.tif"], cwd=folder,
                          preexec_fn=limit_open_files, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Too many open files" in proc.stderr


@pytest.mark.parametrize("overlap,route", [("first", "GDAL VRT -> COG"), ("mean", "tiles of up to")])
def test_two_thousand_files_from_a_glob_under_a_low_open_file_limit(many_files, overlap, route):
    folder, canvas, _ = many_files
    out = folder / f"{overlap}.tif"
    proc = subprocess.run([sys.executable, "-m", "tilewise", "mosaic", "-o", out.name, "-j", "2",
                           "--overlap", overlap, "tiles/*.tif"], cwd=folder, env=subprocess_env(),
                          preexec_fn=limit_open_files, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2000 inputs -> 800 x 640 x 2 bands" in proc.stderr
    assert route in proc.stderr                                # which path did the work
    data, profile = read_raster(out)
    np.testing.assert_array_equal(data, canvas)
    assert (profile["transform"], profile["crs"]) == (UTM_TRANSFORM, CRS.from_user_input(UTM_CRS))
    assert leftovers(out) == [str(out)]


def test_many_small_inputs_meeting_a_tile_keep_memory_bounded(many_files, tmp_path):
    """A tile met by 160 inputs holds a stack as deep as the overlaps (here one layer), not one
    layer per input (160 x 2 x 160 x 256 float32 values: 52 MB for one tile)."""
    _, canvas, paths = many_files
    out = tmp_path / "mean.tif"
    mosaic(paths[:1], str(out), "mean", workers=1)          # imports and compiled kernels loaded first
    tracemalloc.start()
    try:
        report = mosaic(paths[:500], str(out), "mean", tile_size=256, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (report.tiles, report.width, report.height) == (4, 800, 160)
    np.testing.assert_array_equal(read_raster(out)[0], canvas[:, :160])
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB"


# -- the command line -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlap", ["first", "median"])
def test_cli_glob_gives_the_api_pixels(overlapping, tmp_path, overlap):
    paths, _, _ = overlapping
    folder = os.path.dirname(paths[0])
    proc = tilewise_cli("mosaic", "-o", tmp_path / "cli.tif", "-q", "--overlap", overlap, "--tile-size", "24",
                        "-j", "2", "in*.tif", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tmp_path / 'cli.tif'}: 70 x 60 x 2 bands in ")
    mosaic(sorted(paths), str(tmp_path / "api.tif"), overlap, tile_size=24, workers=1)
    cli, cli_profile = read_raster(tmp_path / "cli.tif")
    api, api_profile = read_raster(tmp_path / "api.tif")
    np.testing.assert_array_equal(cli, api)
    for key in ("dtype", "crs", "transform", "width", "height", "count"):
        assert cli_profile[key] == api_profile[key], key
    assert cli_profile["nodata"] == pytest.approx(api_profile["nodata"], nan_ok=True)


def test_cli_pattern_matching_nothing_is_a_one_line_error(tmp_path):
    proc = tilewise_cli("mosaic", "-o", "out.tif", "tiles/*.tif", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["tilewise: error: No file matches tiles/*.tif."]
    assert leftovers(tmp_path / "out.tif") == []

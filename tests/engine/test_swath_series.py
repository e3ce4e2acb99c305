"""Raster operations on a series of swath scenes: each scene gridded through its geolocation, then the
operation on the gridded series (:func:`tilewise.core.operations.swath.grid.accepts_swaths`). Gap filling
of swath scenes equals gap filling of the scenes gridded by ``gdalwarp -geoloc``; the mosaic equals the
reduction of the gridded scenes; wrong inputs get one clear message."""

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import shapely

import swathdata as sd
from support import subprocess_env
from test_swath_grid import CELL, gdalwarp_geoloc, needs_gdalwarp, snapped_bounds
from tilewise.core import bandmath, chips, composite, gapfill, index, mosaic
from tilewise.core.errors import InputError, ParameterError, TilewiseWarning
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.swath.grid import swath_to_grid

pytest.importorskip("netCDF4")
#: Four dates; each scene rotated and shifted, so each covers a part of the grid the others do not.
DAYS = (10, 12, 15, 21)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    paths = [sd.write_olci_product(str(folder), stamp=f"202405{d}T100000", seed=d, rotation=10 + 4 * k,
                                   lon0=-60.0 + 0.01 * k, fill_cols=0) for k, d in enumerate(DAYS)]
    return folder, paths


def test_mixed_and_unknown_series_are_refused(scenes, tmp_path):
    folder, paths = scenes
    raster = tmp_path / "r.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32", crs="EPSG:4326",
                       transform=rasterio.Affine(0.1, 0, 0, 0, -0.1, 0)) as dst:
        dst.write(np.ones((1, 4, 4), np.float32))
    with pytest.raises(InputError, match="mix swath scenes .* and rasters with a geotransform") as e:
        gapfill([paths[0], str(raster)], str(tmp_path / "f.tif"), variables="CHL_NN")
    assert paths[0] in str(e.value) and str(raster) in str(e.value)
    with pytest.raises(ParameterError, match="takes one variable: name it in VARIABLES"):
        gapfill(paths, str(tmp_path / "f.tif"), extent=snapped_bounds(paths[0]), cell_size=CELL)
    with pytest.raises(ParameterError, match="gridded before gap filling.*give the target EXTENT"):
        gapfill(paths, str(tmp_path / "f.tif"), variables="CHL_NN")
    with pytest.raises(ParameterError, match="variables applies to swath scenes"):
        gapfill([str(raster)], str(tmp_path / "f.tif"), variables="CHL_NN")
    zones = zones_from_geometries([shapely.Point(-59.9, -3.1)], "EPSG:4326")
    for run in (lambda: bandmath({"A": (paths[0], 1)}, "A * 2", str(tmp_path / "b.tif")),
                lambda: chips(paths, zones, str(tmp_path / "chips"), "patch", size_x=4, size_y=4),
                lambda: index([{"RED": (paths[0], 1), "NIR": (paths[0], 2)}], "ndvi", str(tmp_path / "n.tif"))):
        with pytest.raises(InputError, match="is a swath scene .* Grid it first") as e:
            run()
        assert str(e.value).startswith(paths[0])
    assert not list(tmp_path.glob(".tilewise-swath-*")) and not list(tmp_path.glob("*.tif.*"))


def test_errors_name_the_scene_not_the_gridded_file(scenes, tmp_path):
    folder, paths = scenes
    with pytest.raises(InputError) as e:
        gapfill(paths, str(tmp_path / "f.tif"), variables="CHL_NN", band=2, extent=snapped_bounds(paths[0]),
                cell_size=CELL)
    assert paths[0] in str(e.value) and ".tilewise-swath-" not in str(e.value), str(e.value)
    assert not list(tmp_path.glob(".tilewise-swath-*"))
    # a date given for a scene whose name has its own: the warning (or the log line) names the scene
    dates = ",".join(f"2023-01-{d:02d}" for d in DAYS)
    options = dict(variables="CHL_NN", dates=dates, extent=snapped_bounds(paths[0]), cell_size=CELL, workers=1)
    with pytest.warns(TilewiseWarning) as caught:
        gapfill(paths, str(tmp_path / "a.tif"), **options)
    said = " ".join(str(w.message) for w in caught)
    assert paths[0] in said and ".tilewise-swath-" not in said, said
    lines = []
    gapfill(paths, str(tmp_path / "b.tif"), log=lines.append, **options)
    said = " ".join(line for line in lines if line.startswith("Warning"))
    assert paths[0] in said and ".tilewise-swath-" not in " ".join(lines), lines


@needs_gdalwarp
def test_gapfill_of_swath_scenes_equals_gapfill_of_gdalwarp_grids(scenes, tmp_path):
    folder, paths = scenes
    bounds = snapped_bounds(paths[0])
    refs = []
    for d, p in zip(DAYS, paths):
        work = tmp_path / f"warp{d}"
        work.mkdir()
        refs.append(gdalwarp_geoloc(p, work, bounds, tmp_path / f"chl_2024-05-{d}.tif"))
    want_path, got_path = tmp_path / "want.tif", tmp_path / "got.tif"
    fill = dict(edges="nearest", max_gap=8, workers=1, output_nodata=-9999)
    gapfill(refs, str(want_path), "linear", **fill)
    report = gapfill(paths, str(got_path), "linear", variables="CHL_NN", extent=bounds, cell_size=CELL,
                     crs="EPSG:4326", **fill)
    assert report.outputs == (str(got_path),)
    with rasterio.open(want_path) as a, rasterio.open(got_path) as b:
        want, got = a.read(masked=True), b.read(masked=True)
        assert b.descriptions == a.descriptions == tuple(f"2024-05-{d}" for d in DAYS)
        assert b.transform.almost_equals(a.transform)
    observed = np.stack([np.isfinite(rasterio.open(r).read(1)) for r in refs])
    assert (~got.mask & ~observed).sum() > 500                  # gaps were filled
    np.testing.assert_array_equal(got.mask, want.mask)
    np.testing.assert_array_equal(got.compressed(), want.compressed())
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tilewise-swath-")]


@pytest.mark.parametrize("overlap", ["first", "max"])
def test_mosaic_of_swath_scenes_is_the_mosaic_of_the_gridded_scenes(scenes, tmp_path, overlap):
    folder, paths = scenes
    bounds = snapped_bounds(paths[0])
    grids = tmp_path / "grids"
    grids.mkdir()
    gridded = swath_to_grid(paths, str(grids), variables="Oa08_reflectance", bounds=bounds, cell_size=CELL,
                            mask_flags="CLOUD")
    stack = np.stack([rasterio.open(p).read(1) for p in gridded])
    out = tmp_path / "mosaic.tif"
    mosaic(paths, str(out), overlap, variables="Oa08_reflectance", mask_flags="CLOUD", extent=bounds,
           cell_size=CELL, workers=1)
    with rasterio.open(out) as src:
        got = src.read(1)
    have = np.isfinite(stack)
    first = np.argmax(have, axis=0)
    want = np.where(have.any(axis=0), np.take_along_axis(stack, first[None], 0)[0], np.nan) if overlap == "first" \
        else np.fmax.reduce(stack, axis=0)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_array_equal(got[np.isfinite(got)], want[np.isfinite(want)].astype(np.float32))


def test_spectral_composite_of_swath_scenes(scenes, tmp_path):
    """geomedian keeps a pixel's variables together: the same on the scenes as on their grids."""
    folder, paths = scenes
    bounds = snapped_bounds(paths[0])
    grids = tmp_path / "grids"
    grids.mkdir()
    variables = "Oa08_reflectance,CHL_NN"
    gridded = swath_to_grid(paths, str(grids), variables=variables, bounds=bounds, cell_size=CELL)
    composite(gridded, str(tmp_path / "want.tif"), "geomedian", workers=1)
    composite(paths, str(tmp_path / "got.tif"), "geomedian", variables=variables, extent=bounds, cell_size=CELL,
              workers=1)
    with rasterio.open(tmp_path / "want.tif") as a, rasterio.open(tmp_path / "got.tif") as b:
        want, got = a.read(), b.read()
    assert got.shape == (2,) + want.shape[1:] and np.isfinite(got).sum() > 5000
    np.testing.assert_array_equal(got, want)


def test_cli_gapfill_and_mosaic_of_swath_scenes(scenes, tmp_path):
    folder, paths = scenes
    grid = ["--extent", *map(str, snapped_bounds(paths[0])), "--cell-size", str(CELL), "--crs", "EPSG:4326"]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "tilewise", *args], cwd=tmp_path, env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)

    proc = cli("gapfill", "--variables", "CHL_NN", "--mask-flags", "CLOUD", *grid, "-o", "filled.tif", "-q", *paths)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(tmp_path / "filled.tif") as src:
        assert src.count == len(DAYS) and src.descriptions[0] == "2024-05-10"
    proc = cli("mosaic", "--variables", "CHL_NN", *grid, "-o", "m.tif", "-q", *paths)
    assert proc.returncode == 0, proc.stderr
    proc = cli("gapfill", *grid, "-o", "x.tif", "-q", *paths)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "takes one variable: name it in VARIABLES" in proc.stderr


def test_resume_reuses_the_gridded_scenes_and_the_finished_tiles(scenes, tmp_path):
    from tilewise.core.errors import CancelledError
    folder, paths = scenes
    options = dict(variables="CHL_NN", extent=snapped_bounds(paths[0]), cell_size=CELL, tile_size=16, workers=1)
    gapfill(paths, str(tmp_path / "straight.tif"), **options)

    def stop_after_three(done, total):     # three tiles: the gridding of the scenes is the first half of the run
        if done - total // 2 >= 3:
            raise CancelledError("stopped")

    out = tmp_path / "filled.tif"
    with pytest.raises(CancelledError):
        gapfill(paths, str(out), resume=True, progress=stop_after_three, **options)
    grids = tmp_path / ".tilewise-swath-filled.tif"
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in grids.glob("*.tif")}
    assert len(kept) == len(paths) and not out.exists()
    log = []
    report = gapfill(paths, str(out), resume=True, log=log.append, **options)
    assert report.reused >= 3 and report.tiles > report.reused
    assert not grids.exists()
    assert any("already finished and are reused" in line for line in log), log
    with rasterio.open(out) as a, rasterio.open(tmp_path / "straight.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    # the scenes were not gridded again: the resumed run read the kept files (same inode and time)
    again = tmp_path / "again.tif"
    with pytest.raises(CancelledError):
        gapfill(paths, str(again), resume=True, progress=stop_after_three, **options)
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in (tmp_path / ".tilewise-swath-again.tif").glob("*.tif")}
    with pytest.raises(CancelledError):
        gapfill(paths, str(again), resume=True, progress=stop_after_three, **options)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (tmp_path / ".tilewise-swath-again.tif").glob("*.tif")} == first


def test_patterns_from_python_are_expanded_to_the_scenes(scenes, tmp_path):
    """A glob pattern such as ``S3*.SEN3`` given from Python is the SAFE folders it matches, for the mosaic
    (whose folders are otherwise folders of rasters) as for gap filling."""
    folder, paths = scenes
    grid = dict(variables="CHL_NN", extent=snapped_bounds(paths[0]), cell_size=CELL, workers=1)
    pattern = str(folder / "S3*.SEN3")
    mosaic(paths, str(tmp_path / "listed.tif"), "max", **grid)
    mosaic([pattern], str(tmp_path / "pattern.tif"), "max", **grid)
    report = gapfill([pattern], str(tmp_path / "filled.tif"), **grid)
    with rasterio.open(tmp_path / "listed.tif") as a, rasterio.open(tmp_path / "pattern.tif") as b:
        assert np.isfinite(a.read(1)).sum() > 5000
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(report.output) as src:
        assert src.descriptions == tuple(f"2024-05-{d}" for d in DAYS)
    with pytest.raises(InputError, match="No file matches"):
        mosaic([str(folder / "S9*.SEN3")], str(tmp_path / "none.tif"), **grid)

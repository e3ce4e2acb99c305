"""Gridding swath scenes as tasks: each scene warped from the window of its pixels around the extent gives
the values of the whole scene warped (``test_swath_grid`` compares those with ``gdalwarp -geoloc``); local
workers and a Dask cluster give the files of one worker; a scene outside the extent is named in a warning;
an interrupted gridding resumes without gridding its finished scenes again."""

import os

import numpy as np
import pytest
import rasterio

import swathdata as sd
from test_swath_grid import CELL
from tilewise.core import gapfill
from tilewise.core.errors import CancelledError, TilewiseWarning
from tilewise.core.io.swath import open_swath, read_geolocation
from tilewise.core.operations.swath import grid
from tilewise.core.options import RunOptions

pytest.importorskip("netCDF4")
ROWS, COLS = 240, 200
#: A small lake's extent inside the scene centred on (-3.2, -60.0), and one the scene does not reach.
LAKE = (-60.04, -3.26, -59.98, -3.18)
AWAY = (-50.0, 10.0, -49.9, 10.1)


def read(path):
    with rasterio.open(path) as src:
        return src.read()


def whole_scene(monkeypatch, *args, **kwargs):
    """What the gridding gave before windows: every pixel of the scene warped (a pad wider than the scene)."""
    with monkeypatch.context() as m:
        m.setattr(grid.source_window, "__defaults__", (10 ** 6,))
        return grid.warp_swath(*args, **kwargs)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    return [sd.write_olci_product(str(folder), rows=ROWS, cols=COLS, stamp=f"202405{d}T100000", seed=d,
                                  rotation=12 + 3 * k, fill_cols=5) for k, d in enumerate((10, 11, 12))]


def lake_grid(bounds=LAKE):
    xmin, ymin, xmax, ymax = bounds
    w, h = int(round((xmax - xmin) / CELL)), int(round((ymax - ymin) / CELL))
    return (CELL, 0.0, xmin, 0.0, -CELL, ymax), w, h


def test_the_window_is_the_part_of_the_scene_near_the_extent(big):
    scene = open_swath(big[0])
    lat, lon = read_geolocation(scene)
    rows, cols = grid.source_window(lat, lon, "EPSG:4326", LAKE)
    part = (rows.stop - rows.start) * (cols.stop - cols.start)
    assert part < 0.15 * ROWS * COLS
    xmin, ymin, xmax, ymax = LAKE
    inside = (lat >= ymin) & (lat <= ymax) & (lon >= xmin) & (lon <= xmax)
    assert inside.sum() > 100 and not (inside & ~_mask(lat.shape, rows, cols)).any()
    assert grid.source_window(lat, lon, "EPSG:4326", AWAY) is None
    # the same extent in another CRS (UTM 21S) finds the same pixels
    from rasterio.warp import transform_bounds
    utm = transform_bounds("EPSG:4326", "EPSG:32721", *LAKE)
    r2, c2 = grid.source_window(lat, lon, "EPSG:32721", utm)
    assert not (inside & ~_mask(lat.shape, r2, c2)).any()


def _mask(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32721"])
def test_a_window_gives_the_values_of_the_whole_scene(big, monkeypatch, resampling, crs):
    scene = open_swath(big[1])
    if crs == "EPSG:4326":
        transform, w, h = lake_grid()
    else:
        from rasterio.warp import transform_bounds
        xmin, ymin, xmax, ymax = transform_bounds("EPSG:4326", crs, *LAKE)
        transform, w, h = (200.0, 0.0, xmin, 0.0, -200.0, ymax), int((xmax - xmin) // 200), int((ymax - ymin) // 200)
    args = (scene, ["CHL_NN", "Oa08_reflectance"], crs, transform, w, h, resampling,
            grid.flag_request("CLOUD"))
    got = grid.warp_swath(*args)
    want = whole_scene(monkeypatch, *args)
    assert np.isfinite(got).sum() > 0.5 * got.size
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    if resampling == "nearest":
        np.testing.assert_array_equal(got, want)
    else:   # the same up to float64 rounding: written as float32, the same files
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("fill_cols", [0, 5])
@pytest.mark.parametrize("west", [179.96, -180.0, 179.9, -179.98])
def test_a_scene_across_the_antimeridian_reaches_grids_on_either_side(tmp_path, monkeypatch, fill_cols, west):
    """The scene's longitudes run 179.7..180 then -180..-179.7: gridded onto extents east and west of the
    antimeridian and across it, it gives the values of the same scene moved by 180 degrees of longitude
    (onto the same extents moved), and a window gives the values of the whole scene."""
    bounds = (west, 9.94, west + 0.08, 10.04)
    product = sd.write_olci_product(str(tmp_path / "a"), rows=ROWS, cols=COLS, lat0=10.0, lon0=179.99,
                                    fill_cols=fill_cols)
    moved = sd.write_olci_product(str(tmp_path / "b"), rows=ROWS, cols=COLS, lat0=10.0, lon0=-0.01,
                                  fill_cols=fill_cols)
    scene = open_swath(product)
    lat, lon = read_geolocation(scene)
    assert np.nanmax(lon) > 179.9 and np.nanmin(lon) < -179.9
    transform, w, h = lake_grid(bounds)
    got = grid.warp_swath(scene, ["CHL_NN"], "EPSG:4326", transform, w, h)[0]
    assert np.isfinite(got).mean() > 0.99
    other = west + 180.0 if west < 0 else west - 180.0
    transform2, _, _ = lake_grid((other, bounds[1], other + 0.08, bounds[3]))
    want = grid.warp_swath(open_swath(moved), ["CHL_NN"], "EPSG:4326", transform2, w, h)[0]
    assert (got == want).mean() > 0.99         # but for ties between pixels (the geolocation is rounded)
    whole = whole_scene(monkeypatch, scene, ["CHL_NN"], "EPSG:4326", transform, w, h)[0]
    np.testing.assert_array_equal(got, whole)


def test_workers_and_dask_grid_the_files_of_one_worker(big, tmp_path):
    from distributed import Client, LocalCluster
    seen = []
    results = {}
    for name, run in (("one", RunOptions(workers=1, progress=lambda d, t: seen.append((d, t)))),
                      ("two", RunOptions(workers=2))):
        (tmp_path / name).mkdir()
        results[name] = grid.swath_to_grid(big, str(tmp_path / name), variables="CHL_NN,Oa08_reflectance",
                                           bounds=LAKE, cell_size=CELL, mask_flags="CLOUD", run=run)
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    (tmp_path / "dask").mkdir()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        results["dask"] = grid.swath_to_grid(big, str(tmp_path / "dask"), variables="CHL_NN,Oa08_reflectance",
                                             bounds=LAKE, cell_size=CELL, mask_flags="CLOUD",
                                             run=RunOptions(executor=client))
        ran = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    assert ran >= 3
    for name in ("two", "dask"):
        assert [os.path.basename(p) for p in results[name]] == [os.path.basename(p) for p in results["one"]]
        for a, b in zip(results["one"], results[name]):
            np.testing.assert_array_equal(read(a), read(b))


def test_a_scene_outside_the_extent_is_named_and_keeps_its_date(big, tmp_path):
    far = sd.write_olci_product(str(tmp_path), rows=40, cols=30, lat0=30.0, lon0=10.0, stamp="20240511T120000")
    series = [big[0], far, big[2]]
    with pytest.warns(TilewiseWarning, match="covers no part of the extent") as caught:
        report = gapfill(series, str(tmp_path / "filled.tif"), variables="CHL_NN", extent=LAKE, cell_size=CELL,
                         workers=2)
    said = [str(w.message) for w in caught if "covers no part" in str(w.message)]
    assert len(said) == 1 and far in said[0] and big[0] not in said[0]
    with rasterio.open(report.output) as src:
        assert src.count == 3 and src.descriptions[1] == "2024-05-11"
        assert np.isfinite(src.read(2, masked=True).compressed()).all()   # the empty date is filled in time


def test_an_interrupted_gridding_resumes_with_its_gridded_scenes(big, tmp_path):
    options = dict(variables="CHL_NN", extent=LAKE, cell_size=CELL, workers=1)
    gapfill(big, str(tmp_path / "straight.tif"), **options)
    steps = []

    def stop_after_two_scenes(done, total):     # the gridding is the first half of the run's progress
        steps.append((done, total))
        if done >= 2:
            raise CancelledError("stopped")

    out = tmp_path / "filled.tif"
    with pytest.raises(CancelledError):
        gapfill(big, str(out), resume=True, progress=stop_after_two_scenes, **options)
    assert steps == [(0, 6), (1, 6), (2, 6)]
    grids = tmp_path / ".tilewise-swath-filled.tif"
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in grids.glob("*.tif")}
    assert len(kept) == 2 and len(list(grids.glob("*.json"))) == 2 and not out.exists()
    steps.clear()
    report = gapfill(big, str(out), resume=True, progress=lambda d, t: steps.append((d, t)), **options)
    assert steps[:2] == [(2, 6), (3, 6)] and steps[-1][0] == steps[-1][1]
    assert report.tiles >= 1 and not grids.exists()
    np.testing.assert_array_equal(read(out), read(tmp_path / "straight.tif"))


@pytest.mark.parametrize("bounds", [LAKE, (-60.5, -3.3, -60.2, -3.1), (-59.9, -4.0, -59.0, -3.0),
                                    (-60.4, -3.6, -59.6, -3.565), (-60.05, -3.7, -59.95, -3.6)])
def test_the_first_look_at_every_eighth_pixel_finds_the_window_of_every_pixel(big, monkeypatch, bounds):
    """Extents inside the scene, across its fill-valued edge, past its ends: the window found from every
    eighth pixel first is the one found from every pixel."""
    scene = open_swath(big[2])
    lat, lon = read_geolocation(scene)
    got = grid.source_window(lat, lon, "EPSG:4326", bounds)
    monkeypatch.setattr(grid, "WINDOW_STRIDE", 1)
    assert got == grid.source_window(lat, lon, "EPSG:4326", bounds)
    assert (got is None) == (bounds[3] < np.nanmin(lat) - 0.01)      # the last one is 3 km off the scene


@pytest.mark.parametrize("resume", [False, True])
def test_a_cancel_while_two_workers_grid_leaves_nothing_half_written(big, tmp_path, resume):
    def cancel_at_once(done, total):
        if done >= 1:
            raise CancelledError("cancelled")

    out = tmp_path / "filled.tif"
    with pytest.raises(CancelledError):
        gapfill(big, str(out), variables="CHL_NN", extent=LAKE, cell_size=CELL, workers=2, resume=resume,
                progress=cancel_at_once)
    assert not out.exists() and not list(tmp_path.glob("*.part*"))
    kept = list(tmp_path.glob(".tilewise-swath-*"))
    assert len(kept) == (1 if resume else 0)
    if resume:   # each gridded scene whole, with its stamp; nothing half-written
        tifs, stamps = sorted(kept[0].glob("*.tif")), sorted(kept[0].glob("*.json"))
        assert 1 <= len(tifs) <= 3 and [p.name + ".json" for p in tifs] == [p.name for p in stamps]
        assert not list(kept[0].glob("*.part*"))
        for p in tifs:
            assert read(p).shape[0] == 1


def test_the_command_line_bar_follows_the_second_stage(capsys):
    """The CLI's bar: the gridding's steps (of twice the scenes), then the tiles' (of twice the tiles)."""
    pytest.importorskip("tqdm")
    from tilewise.core.cli import Progress
    bar = Progress(False)
    for done, total in [(0, 6), (1, 6), (3, 6), (40, 80), (80, 80)]:
        bar(done, total)
    assert (bar.bar.n, bar.bar.total) == (80, 80)
    bar.close()


def polar_scene(folder, pole, rows=80, cols=60, pixel=300.0, rotation=25.0):
    """A scene around the ``pole`` (its geolocation rewritten: a rotated grid of ``pixel`` metres in polar
    stereographic coordinates, the pole inside); returns it and its pixels' centres in those metres (GDAL
    takes geolocation arrays at the pixels' top left corners, as ``gdalwarp -geoloc`` does)."""
    import netCDF4
    from rasterio.warp import transform
    path = sd.write_olci_product(folder, rows=rows, cols=cols, lat0=pole * 89.0, fill_cols=0)
    i, j = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    a = np.radians(rotation)

    def xy(di):
        u, v = (j - cols / 2 + 0.3 + di) * pixel, (i - rows / 2 + 0.3 + di) * pixel
        return u * np.cos(a) - v * np.sin(a), u * np.sin(a) + v * np.cos(a)

    x, y = xy(0.0)
    lon, lat = transform(grid.POLAR_CRS[pole], "EPSG:4326", x.ravel(), y.ravel())
    with netCDF4.Dataset(f"{path}/geo_coordinates.nc", "a") as f:
        for name, values in (("latitude", lat), ("longitude", lon)):
            f[name].set_auto_maskandscale(False)
            f[name][:] = np.round(np.reshape(values, x.shape) * 1e6).astype(np.int32)
    return path, xy(0.5)


@pytest.mark.parametrize("pole", [1, -1])
def test_a_scene_around_a_pole_is_gridded_from_polar_coordinates(tmp_path, pole):
    """Longitude has no meaning at a pole: the part of a scene whose longitudes go all around is warped from
    polar stereographic coordinates. Every cell of a polar grid over it takes its nearest pixel (by brute
    force); in longitude/latitude GDAL's transformer filled about a tenth of them."""
    path, (cx, cy) = polar_scene(str(tmp_path), pole)
    cell, n = 200.0, 50
    transform = (cell, 0.0, -5000.0, 0.0, -cell, 5000.0)
    got = grid.warp_swath(open_swath(path), ["CHL_NN"], grid.POLAR_CRS[pole], transform, n, n)[0]
    gx, gy = np.meshgrid(-5000.0 + cell * (np.arange(n) + 0.5), 5000.0 - cell * (np.arange(n) + 0.5))
    d2 = (gx.ravel()[:, None] - cx.ravel()[None]) ** 2 + (gy.ravel()[:, None] - cy.ravel()[None]) ** 2
    want = sd.read_truth(path, "chl_nn.nc", "CHL_NN").ravel()[np.argmin(d2, axis=1)].reshape(n, n)
    assert np.isfinite(got).all()
    assert (got == want).mean() > 0.99

"""Image chips (``tilewise chips``): chips equal numpy slices of the inputs on the same grid, at the rasters'
edges and across tile borders, for points, lines and polygons; the netCDF files open in xarray with
their CRS, coordinates and dates; masks; file names; the output folder; bad inputs."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from rasterio.crs import CRS

from tilewise.core import chips
from tilewise.core.errors import InputError, OutputError, ParameterError, TilewiseWarning
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.chips.plan import MARKER

from support import UTM_CRS, write_raster

H, W = 45, 61
X0, Y0, RES = 500_000.0, 5_000_000.0, 10.0
DATES = ["2024-05-12", "2024-05-02", "2024-06-01"]     # not in date order on purpose


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Three dates x three bands (B03, B04, B08) of float32 with -9999 nodata, and a QA band 4."""
    folder = tmp_path_factory.mktemp("chips_series")
    rng = np.random.default_rng(24)
    data = rng.normal(100, 30, (len(DATES), 3, H, W)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = -9999.0
    qa = rng.integers(0, 12, (len(DATES), H, W)).astype(np.float32)
    paths = []
    for i, d in enumerate(DATES):
        stack = np.concatenate([data[i], qa[i][None]])
        paths.append(write_raster(folder / f"s2_{d}.tif", stack, nodata=-9999.0,
                                  descriptions=["B03", "B04", "B08", "SCL"]))
    order = np.argsort(np.array(DATES, dtype="datetime64[D]"))
    return paths, data, qa, order


def reference(data: np.ndarray, order, row: int, col: int, h: int, w: int) -> np.ndarray:
    """The window of every date (in date order) and band, NaN past the raster and at nodata."""
    out = np.full((len(order), data.shape[1], h, w), np.nan, np.float32)
    r0, c0, r1, c1 = max(row, 0), max(col, 0), min(row + h, H), min(col + w, W)
    if r1 > r0 and c1 > c0:
        out[:, :, r0 - row:r1 - row, c0 - col:c1 - col] = data[order][:, :, r0:r1, c0:c1]
    out[out == -9999.0] = np.nan
    return out


def chip_array(path, names=("B03", "B04", "B08")) -> np.ndarray:
    with xr.open_dataset(path) as ds:
        return np.stack([ds[n].values for n in names], axis=1)


def utm_point(col: float, row: float) -> shapely.Point:
    return shapely.Point(X0 + col * RES, Y0 - row * RES)


@pytest.mark.parametrize("tile_size,workers", [(8, 1), (8, 2), (1024, 1)])
def test_patches_of_points_equal_numpy_slices(series, tmp_path, tile_size, workers):
    paths, data, _, order = series
    rng = np.random.default_rng(tile_size + workers)
    cols = np.concatenate([rng.uniform(0, W, 25), [0.2, W - 0.1, 7.99, 8.01, 30.5]])
    rows = np.concatenate([rng.uniform(0, H, 25), [0.3, H - 0.2, 15.99, 16.0, 0.0]])
    points = [utm_point(c, r) for c, r in zip(cols, rows)]
    zones = zones_from_geometries(points, UTM_CRS, ids=[f"p{i}" for i in range(len(points))])
    report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=6, size_y=5, bands=[1, 2, 3],
                   tile_size=tile_size, workers=workers)
    assert report.rows == len(points)
    for i, (c, r) in enumerate(zip(cols, rows)):
        path = tmp_path / "out" / f"p{i}.nc"
        got = chip_array(path)
        assert got.shape == (3, 3, 5, 6)                        # the same size for every feature
        want = reference(data, order, int(math.floor(r)) - 2, int(math.floor(c)) - 3, 5, 6)
        np.testing.assert_array_equal(got, want, err_msg=f"point {i}")


@pytest.mark.parametrize("tile_size", [8, 1024])
def test_boxes_of_polygons_and_lines_equal_numpy_slices(series, tmp_path, tile_size):
    paths, data, _, order = series
    shapes = [shapely.box(X0 + 52, Y0 - 197, X0 + 118, Y0 - 101),                 # inside, across tile lines
              shapely.LineString([(X0 - 30, Y0 - 5), (X0 + 95, Y0 - 61)]),         # past the left edge
              shapely.Polygon([(X0 + 500, Y0 - 400), (X0 + 640, Y0 - 470), (X0 + 560, Y0 - 300)]),  # to the right edge
              utm_point(12.5, 40.5)]
    zones = zones_from_geometries(shapes, UTM_CRS)
    chips(paths, zones, str(tmp_path / "out"), "box", buffer=15, bands=[1, 2, 3], tile_size=tile_size)
    for i, g in enumerate(shapes):
        xmin, ymin, xmax, ymax = g.bounds
        c0 = math.floor((xmin - 15 - X0) / RES)
        c1 = math.ceil((xmax + 15 - X0) / RES)
        r0 = math.floor((Y0 - ymax - 15) / RES)
        r1 = math.ceil((Y0 - ymin + 15) / RES)
        got = chip_array(tmp_path / "out" / f"{i}.nc")
        np.testing.assert_array_equal(got, reference(data, order, r0, c0, r1 - r0, c1 - c0), err_msg=f"feature {i}")


def test_netcdf_has_crs_coordinates_dates_and_attributes(series, tmp_path):
    paths, data, _, order = series
    zones = zones_from_geometries([utm_point(10.5, 20.5)], UTM_CRS, ids=["field 1"], id_name="pid",
                                  fields={"pid": ["field 1"], "crop": ["wheat"], "area": [2.5]})
    report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=4, size_y=3, bands=[1, 3])
    assert report.outputs == (str(tmp_path / "out" / "field_1.nc"),)
    with xr.open_dataset(report.outputs[0]) as ds:
        assert list(ds.data_vars) == ["crs", "B03", "B08"]
        assert ds["B03"].dims == ("time", "y", "x")
        assert [str(t)[:10] for t in ds.time.values] == sorted(DATES)
        np.testing.assert_allclose(ds.x.values, X0 + RES * (np.arange(8, 12) + 0.5))
        np.testing.assert_allclose(ds.y.values, Y0 - RES * (np.arange(19, 22) + 0.5))
        assert CRS.from_wkt(ds.crs.attrs["crs_wkt"]).to_epsg() == 32633
        assert ds.crs.attrs["grid_mapping_name"] == "transverse_mercator"
        assert ds["B03"].attrs["grid_mapping"] == "crs"
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert (ds.attrs["feature_id"], ds.attrs["crop"], ds.attrs["area"]) == ("field 1", "wheat", 2.5)
    # GDAL reads the same grid: its CRS, transform and the dates as bands
    with rasterio.open(f"netcdf:{report.outputs[0]}:B08") as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.c == X0 + 8 * RES and src.transform.f == Y0 - 19 * RES
        assert src.count == 3
        np.testing.assert_array_equal(src.read(2), np.where(data[order[1], 2, 19:22, 8:12] == -9999, np.nan,
                                                            data[order[1], 2, 19:22, 8:12]))


def test_masked_pixels_are_nodata(series, tmp_path):
    paths, data, qa, order = series
    zones = zones_from_geometries([utm_point(30.5, 20.5)], UTM_CRS)
    chips(paths, zones, str(tmp_path / "out"), "patch", size_x=9, size_y=7, mask_band=4,
          mask_values="0,1,3,8,9,10")
    got = chip_array(tmp_path / "out" / "0.nc")
    want = reference(data, order, 17, 26, 7, 9)
    masked = np.isin(qa[order][:, 17:24, 26:35], [0, 1, 3, 8, 9, 10])
    want[np.broadcast_to(masked[:, None], want.shape)] = np.nan
    assert np.count_nonzero(masked) > 10
    np.testing.assert_array_equal(got, want)


def test_zones_in_another_crs_and_metres_buffer(series, tmp_path):
    paths, data, _, order = series
    from rasterio.warp import transform as warp
    cols, rows = [5.5, 40.5], [6.5, 30.5]
    xs, ys = warp(UTM_CRS, "EPSG:4326", [X0 + c * RES for c in cols], [Y0 - r * RES for r in rows])
    zones = zones_from_geometries([shapely.Point(x, y) for x, y in zip(xs, ys)], "EPSG:4326")
    chips(paths, zones, str(tmp_path / "out"), "box", buffer=20, buffer_units="metres", bands=[2])
    for i, (c, r) in enumerate(zip(cols, rows)):
        got = chip_array(tmp_path / "out" / f"{i}.nc", ("B04",))
        want = reference(data, order, int(r) - 2, int(c) - 2, 5, 5)[:, 1:2]
        np.testing.assert_array_equal(got, want)


def test_other_output_crs_shares_one_grid_per_feature(series, tmp_path):
    paths, _, _, _ = series
    zones = zones_from_geometries([utm_point(30, 20), utm_point(3, 3)], UTM_CRS)
    report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=7, size_y=7, crs="EPSG:3035",
                   cell_size=20, resampling="bilinear", bands=[1])
    for path in report.outputs:
        with xr.open_dataset(path) as ds:
            assert ds["B03"].shape == (3, 7, 7)
            np.testing.assert_allclose(np.diff(ds.x.values), 20.0)
            np.testing.assert_allclose(np.diff(ds.y.values), -20.0)
            assert CRS.from_wkt(ds.crs.attrs["crs_wkt"]).to_epsg() == 3035
            assert ds.crs.attrs["grid_mapping_name"] == "lambert_azimuthal_equal_area"
            assert np.isfinite(ds["B03"].values[:, 3, 3]).any()


def test_unsafe_duplicated_and_empty_ids_become_safe_unique_names(series, tmp_path):
    paths, _, _, _ = series
    ids = ["../x", "a/b", "x", "", "x", "y" * 400, "A", "a", None, ".."]
    zones = zones_from_geometries([utm_point(5 + i, 5 + i) for i in range(len(ids))], UTM_CRS,
                                  ids=np.array(ids, dtype=object), id_name="name")
    out = tmp_path / "out"
    report = chips(paths, zones, str(out), "patch", size_x=2, size_y=2)
    names = [os.path.basename(p) for p in report.outputs]
    assert len(set(n.casefold() for n in names)) == len(ids)
    assert all(os.path.dirname(p) == str(out) for p in report.outputs)
    assert names[:5] == ["x.nc", "a_b.nc", "x_2.nc", "feature_3.nc", "x_3.nc"]
    assert len(names[5]) <= 124 and names[9] == "feature_9.nc"
    assert sorted(os.listdir(out)) == sorted(names + [MARKER])
    assert sorted(os.listdir(tmp_path)) == ["out"]            # nothing beside the folder, no work folder left


def test_existing_folder_never_loses_the_users_files(series, tmp_path):
    paths, _, _, _ = series
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "b.nc").write_text("my own b")
    zones = zones_from_geometries([utm_point(5, 5), utm_point(9, 9)], UTM_CRS, ids=["a", "b"])
    with pytest.raises(OutputError, match="b.nc.*not replaced"):
        chips(paths, zones, str(out), "patch", size_x=2, size_y=2)
    assert sorted(os.listdir(out)) == ["b.nc", "notes.txt"] and (out / "b.nc").read_text() == "my own b"
    (out / "b.nc").unlink()
    chips(paths, zones, str(out), "patch", size_x=2, size_y=2)
    # a second run into the folder replaces its own chips, removes those it does not write again
    zones = zones_from_geometries([utm_point(5, 5)], UTM_CRS, ids=["a"])
    chips(paths, zones, str(out), "patch", size_x=3, size_y=3)
    assert sorted(os.listdir(out)) == [MARKER, "a.nc", "notes.txt"]
    assert chip_array(out / "a.nc").shape[2:] == (3, 3)


def test_too_large_a_chip_is_refused_before_any_work(series, tmp_path):
    paths, _, _, _ = series
    zones = zones_from_geometries([utm_point(5, 5)], UTM_CRS, ids=["big"])
    with pytest.raises(ParameterError, match=r"feature_id big .* MiB.*smaller BUFFER or SIZE"):
        chips(paths, zones, str(tmp_path / "out"), "patch", size_x=6000, size_y=6000)
    assert not (tmp_path / "out").exists()


def test_a_feature_outside_every_raster_is_skipped_with_one_warning(series, tmp_path):
    paths, _, _, _ = series
    zones = zones_from_geometries([utm_point(5, 5), utm_point(5000, 5)], UTM_CRS, ids=["in", "far"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=3, size_y=3)
    said = [str(w.message) for w in caught if issubclass(w.category, TilewiseWarning)]
    assert len(said) == 1 and "far" in said[0] and "skipped" in said[0]
    assert [os.path.basename(p) for p in report.outputs] == ["in.nc"]
    far = zones_from_geometries([utm_point(5000, 5)], UTM_CRS, ids=["far"])
    with pytest.raises(InputError, match="None of the features"):
        chips(paths, far, str(tmp_path / "out2"), "patch", size_x=3, size_y=3)


@pytest.mark.parametrize("bad,match", [(dict(mode="ring"), "Unknown chip mode"), (dict(size_x=0), "SIZE_X"),
                                       (dict(buffer=-1), "BUFFER"), (dict(buffer_units="feet"), "buffer unit"),
                                       (dict(extent=(0, 0, 1, 1)), "EXTENT"), (dict(output_type="uint8"), "netCDF")])
def test_bad_parameters_get_one_clear_message(series, tmp_path, bad, match):
    paths, _, _, _ = series
    zones = zones_from_geometries([utm_point(5, 5)], UTM_CRS)
    mode = bad.pop("mode", "patch")
    with pytest.raises(ParameterError, match=match):
        chips(paths, zones, str(tmp_path / "out"), mode, **bad)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method,edges", [("linear", "leave"), ("nearest", "nearest"), ("previous", "leave")])
def test_gap_filled_chips_equal_tilewise_gapfill_on_the_same_box(series, tmp_path, method, edges):
    from tilewise.core import gapfill
    paths, _, _, _ = series
    box = shapely.box(X0 + 100, Y0 - 300, X0 + 250, Y0 - 170)             # rows 17-30, cols 10-25
    zones = zones_from_geometries([box], UTM_CRS, ids=["field"])
    chips(paths, zones, str(tmp_path / "out"), "box", bands=[1, 3], mask_band=4, mask_values="0,1,3,8,9,10",
          gapfill=method, edges=edges, max_gap=40, tile_size=8)
    with xr.open_dataset(tmp_path / "out" / "field.nc") as ds:
        chip = {n: (ds[n].values, ds[f"{n}_flags"].values) for n in ("B03", "B08")}
    for band, name in ((1, "B03"), (3, "B08")):
        out, flags = tmp_path / f"filled_{band}.tif", tmp_path / f"flags_{band}.tif"
        gapfill(paths, str(out), method, band=band, mask_band=4, mask_values="0,1,3,8,9,10", edges=edges,
                max_gap=40, extent=box.bounds, flags=str(flags), output_nodata=float("nan"))
        with rasterio.open(out) as src:
            want = src.read()
        with rasterio.open(flags) as src:
            want_flags = src.read()
        assert want.shape == chip[name][0].shape == (3, 13, 15)
        np.testing.assert_array_equal(chip[name][0], want)
        np.testing.assert_array_equal(chip[name][1], want_flags.astype(np.int16))
        assert np.count_nonzero(want_flags == 1) > 0                       # some gaps were filled


def test_footprints_layer_lists_each_chip_with_its_extent_and_valid_fraction(series, tmp_path):
    import pyogrio
    paths, data, _, order = series
    zones = zones_from_geometries([utm_point(10.5, 20.5), utm_point(0.5, 0.5)], UTM_CRS, ids=["a", "b"],
                                  id_name="pid")
    report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=4, size_y=4, bands=[1, 2, 3],
                   footprints=str(tmp_path / "chips.gpkg"), tile_size=8)
    assert report.outputs[-1] == str(tmp_path / "chips.gpkg")
    meta, _, geoms, fields = pyogrio.raw.read(str(tmp_path / "chips.gpkg"))
    cols = dict(zip(meta["fields"], fields))
    assert list(cols["pid"]) == ["a", "b"] and list(cols["file"]) == ["a.nc", "b.nc"]
    assert [f"valid_d{d.replace('-', '')}" for d in sorted(DATES)] == [c for c in cols if c.startswith("valid_")]
    assert shapely.from_wkb(geoms[1]).bounds == (X0 - 20, Y0 - 20, X0 + 20, Y0 + 20)
    for z, (r, c) in enumerate([(18, 8), (-2, -2)]):
        want = reference(data, order, r, c, 4, 4)
        fractions = np.all(np.isfinite(want), axis=1).mean(axis=(1, 2))
        got = [cols[f"valid_d{d.replace('-', '')}"][z] for d in sorted(DATES)]
        np.testing.assert_allclose(got, fractions)


@pytest.mark.parametrize("tile_size", [8, 1024])
def test_geotiff_per_feature_and_date(series, tmp_path, tile_size):
    paths, data, _, order = series
    zones = zones_from_geometries([utm_point(12.5, 9.5), utm_point(60.5, 44.5)], UTM_CRS, ids=["a", "b"])
    report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=5, size_y=6, bands=[3, 1], format="geotiff",
                   tile_size=tile_size)
    days = sorted(DATES)
    assert [os.path.basename(p) for p in report.outputs] == [f"{n}_{d}.tif" for n in "ab" for d in days]
    for n, (r, c) in zip("ab", [(9, 12), (44, 60)]):
        want = reference(data, order, r - 3, c - 2, 6, 5)
        for t, d in enumerate(days):
            with rasterio.open(tmp_path / "out" / f"{n}_{d}.tif") as src:
                assert src.crs.to_epsg() == 32633 and src.descriptions == ("B08", "B03")
                assert (src.transform.c, src.transform.f) == (X0 + (c - 2) * RES, Y0 - (r - 3) * RES)
                assert src.tags()["TIFFTAG_DATETIME"] == d.replace("-", ":") + " 00:00:00"
                np.testing.assert_array_equal(src.read(), want[t][[2, 0]])


def test_training_format_is_one_file_with_a_leading_feature_dimension(series, tmp_path):
    paths, data, _, order = series
    cells = [(9, 12), (44, 60), (20, 30), (0, 0)]
    zones = zones_from_geometries([utm_point(c + 0.5, r + 0.5) for r, c in cells] + [utm_point(5000, 5)], UTM_CRS,
                                  ids=["a", "bé", "c", "d", "far"], id_name="name",
                                  fields={"name": ["a", "bé", "c", "d", "far"],
                                          "crop": ["wheat", "maize", "", "rye", "x"], "label": [1, 2, 3, 4, 5],
                                          "area": [0.5, 1.5, np.nan, 2.0, 9.0]})
    with pytest.warns(TilewiseWarning, match="far"):
        report = chips(paths, zones, str(tmp_path / "out"), "patch", size_x=5, size_y=4, bands=[1, 2, 3],
                       format="training", tile_size=8, workers=2)
    assert report.outputs == (str(tmp_path / "out" / "chips.nc"),) and report.rows == 4
    with xr.open_dataset(report.outputs[0]) as ds:
        assert dict(ds.sizes) == {"feature": 4, "time": 3, "y": 4, "x": 5}
        assert list(ds.feature_id.values) == ["a", "bé", "c", "d"]
        assert list(ds.crop.values) == ["wheat", "maize", "", "rye"] and list(ds.label.values) == [1, 2, 3, 4]
        np.testing.assert_array_equal(ds.area.values, [0.5, 1.5, np.nan, 2.0])       # the labels of a training set
        assert [str(t)[:10] for t in ds.time.values] == sorted(DATES)
        assert CRS.from_wkt(ds.crs.attrs["crs_wkt"]).to_epsg() == 32633
        for f, (r, c) in enumerate(cells):
            got = np.stack([ds[n].values[f] for n in ("B03", "B04", "B08")], axis=1)
            np.testing.assert_array_equal(got, reference(data, order, r - 2, c - 2, 4, 5))
            np.testing.assert_allclose(ds.x.values[f], X0 + RES * (np.arange(c - 2, c + 3) + 0.5))
            np.testing.assert_allclose(ds.y.values[f], Y0 - RES * (np.arange(r - 2, r + 2) + 0.5))
    with pytest.raises(ParameterError, match="MODE patch"):
        chips(paths, zones, str(tmp_path / "box"), "box", format="training")


def test_patches_of_lines_and_polygons_are_centred_on_a_point_on_them(series, tmp_path):
    paths, data, _, order = series
    shapes = [shapely.Polygon([(X0 + 100, Y0 - 100), (X0 + 400, Y0 - 100), (X0 + 400, Y0 - 130), (X0 + 130, Y0 - 130),
                               (X0 + 130, Y0 - 400), (X0 + 100, Y0 - 400)]),       # an L: its centroid is outside it
              shapely.LineString([(X0 + 200, Y0 - 50), (X0 + 300, Y0 - 250), (X0 + 600, Y0 - 260)])]
    zones = zones_from_geometries(shapes, UTM_CRS)
    chips(paths, zones, str(tmp_path / "out"), "patch", size_x=3, size_y=3, bands=[1, 2, 3], tile_size=8)
    for i, g in enumerate(shapes):
        p = g.point_on_surface()
        assert g.intersects(p)
        col, row = math.floor((p.x - X0) / RES), math.floor((Y0 - p.y) / RES)
        np.testing.assert_array_equal(chip_array(tmp_path / "out" / f"{i}.nc"),
                                      reference(data, order, row - 1, col - 1, 3, 3))


def test_renamed_chips_are_named_in_one_warning(series, tmp_path):
    paths, _, _, _ = series
    zones = zones_from_geometries([utm_point(5, 5), utm_point(9, 9), utm_point(12, 12)], UTM_CRS,
                                  ids=np.array(["a", "a", "../b"], dtype=object), id_name="pid")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chips(paths, zones, str(tmp_path / "out"), "patch", size_x=2, size_y=2)
    said = [str(w.message) for w in caught if "not safe as file names" in str(w.message)]
    assert said == ["2 pid values are repeated, empty or not safe as file names; those chips are named "
                    "'a' -> a_2, '../b' -> b (each file's feature_id attribute holds the id as it is)."]

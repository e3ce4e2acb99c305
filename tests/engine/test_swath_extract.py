"""Swath inputs (Sentinel-3 OLCI WFR on 2-D latitude/longitude): reading, nearest pixel, polygons, rows.

The products are written by the tests (:mod:`swathdata`, with netCDF4) and netCDF4 is the reference
of what the files hold; the nearest pixel is checked against a brute-force haversine search over
every pixel, polygon statistics against numpy over the brute-force set of pixel centres inside.
"""

import os
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

import swathdata as sd
from tilewise.core.errors import InputError, ParameterError, TilewiseError, TilewiseWarning
from tilewise.core.io.swath import looks_like_swath, open_swath, read_geolocation, read_pixels, read_variable
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.kernels.swath import build_index, chord_of, metres_of, nearest
from tilewise.core.operations.extract.run import extract

pytest.importorskip("netCDF4")


def table(path):
    return pq.read_table(path).to_pandas()


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return sd.write_olci_product(str(tmp_path_factory.mktemp("olci")))


@pytest.fixture(scope="module")
def antimeridian(tmp_path_factory):
    return sd.write_olci_product(str(tmp_path_factory.mktemp("am")), lat0=-17.0, lon0=179.95, rotation=-35.0,
                                 stamp="20240520T221010")


# -- reading ------------------------------------------------------------------------------------------------

def test_scene_header(product):
    scene = open_swath(product)
    assert scene.shape == (80, 60)
    assert scene.date.isoformat() == "2024-05-14" and scene.start_time == "2024-05-14T13:45:12"
    assert [v.name for v in scene.variables] == ["Oa08_reflectance", "CHL_NN", "CHL_NN_err", "WQSF"]
    assert [v.name for v in scene.measured()] == ["Oa08_reflectance", "CHL_NN"]
    assert os.path.basename(scene.lat.path) == "geo_coordinates.nc" and scene.lat.name == "latitude"
    wqsf = scene.variable("wqsf")
    assert wqsf.dtype == "uint64" and wqsf.flag_masks[-1] == 2 ** 47 and wqsf.flag_meanings[-1] == "RWNEG_O8"
    # the manifest and a loose variable of the product are the same scene
    assert open_swath(os.path.join(product, "xfdumanifest.xml")).shape == (80, 60)
    loose = open_swath(os.path.join(product, "chl_nn.nc"))
    assert [v.name for v in loose.variables] == ["CHL_NN", "CHL_NN_err"] and loose.date == scene.date
    one = open_swath(f'NETCDF:"{product}/chl_nn.nc":CHL_NN')
    assert [v.name for v in one.variables] == ["CHL_NN"] and one.lat.path == scene.lat.path


def test_values_unpacked_in_file_order(product):
    scene = open_swath(product)
    lat, lon = read_geolocation(scene)
    tlat, tlon = sd.geolocation_truth(product)
    np.testing.assert_allclose(lat, tlat, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lon, tlon, rtol=0, atol=1e-9)
    assert np.isnan(lat[:, -3:]).all() and not np.isnan(lat[:, :-3]).any()
    oa = read_variable(scene.variable("Oa08_reflectance"))
    np.testing.assert_allclose(oa, sd.read_truth(product, "Oa08_reflectance.nc", "Oa08_reflectance"), atol=1e-12)
    # row 0 is the file's first row (GDAL_NETCDF_BOTTOMUP=NO): the stored value encodes row * 100 + col
    raw = sd.oa_raw(80, 60)
    rows, cols = np.array([0, 79, 5, 40]), np.array([0, 10, 56, 33])
    got = read_pixels(scene.variable("Oa08_reflectance"), rows, cols, raw=True)
    assert got.tolist() == raw[rows, cols].tolist()
    flags = read_pixels(scene.variable("WQSF"), rows, cols, raw=True)
    assert flags.dtype == np.uint64 and flags.tolist() == sd.wqsf(80, 60)[rows, cols].tolist()


def test_swath_inputs_are_told_from_rasters(product, tmp_path):
    assert looks_like_swath(product) and looks_like_swath(os.path.join(product, "chl_nn.nc"))
    assert not looks_like_swath(str(tmp_path / "scene.tif"))


# -- nearest pixel ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lat0, lon0, rotation", [(-3.2, -60.0, 20.0), (-17.0, 179.95, -35.0), (89.7, 10.0, 50.0),
                                                  (-89.8, -120.0, 0.0)])
def test_nearest_equals_brute_force_haversine(tmp_path, lat0, lon0, rotation):
    lat, lon = sd.swath_geolocation(70, 50, lat0, lon0, rotation=rotation)
    lat[:, -2:] = np.nan
    lon[:, -2:] = np.nan
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, 70, 300), rng.integers(0, 48, 300)
    qlat = lat[i, j] + rng.normal(0, 0.002, 300)
    qlon = lon[i, j] + rng.normal(0, 0.002, 300) / max(np.cos(np.radians(lat0)), 0.01)
    qlon = (qlon + 180) % 360 - 180
    qlat = np.clip(qlat, -90, 90)
    want, wdist = sd.brute_nearest(lat, lon, qlat, qlon)
    limit = 50_000.0
    index = build_index(lat, lon, chord_of(limit / 4))          # as the extraction sizes it
    got, chord = nearest(index, qlat, qlon, chord_of(limit))
    fine, fine_chord = nearest(build_index(lat, lon, chord_of(400.0)), qlat, qlon, chord_of(limit))
    np.testing.assert_array_equal(fine, got)                      # the cube size changes nothing but time
    np.testing.assert_array_equal(fine_chord, chord)
    # an index of only the cubes the queries search (as the extraction builds it) gives the same answers
    small = build_index(lat, lon, chord_of(limit / 4), near=(qlat, qlon), radius=chord_of(limit))
    assert small.size <= index.size
    np.testing.assert_array_equal(nearest(small, qlat, qlon, chord_of(limit))[0], got)
    tight = build_index(lat, lon, chord_of(400.0), near=(qlat[:20], qlon[:20]), radius=chord_of(1000.0))
    assert tight.size < index.size * 0.6       # the cubes of the radius's side around 20 of the 300 points
    np.testing.assert_array_equal(nearest(tight, qlat[:20], qlon[:20], chord_of(1000.0))[0],
                                  np.where(wdist[:20] <= 1000.0, want[:20], -1))
    inside = wdist <= limit
    assert inside.sum() > 250
    np.testing.assert_array_equal(got[inside], want[inside])
    np.testing.assert_allclose(metres_of(chord[inside]), wdist[inside], rtol=1e-6, atol=1e-3)
    assert (got[~inside] == -1).all()


def test_nearest_within_limit_only():
    lat = np.array([[0.0, 0.0]])
    lon = np.array([[0.0, 0.01]])       # ~1113 m apart
    index = build_index(lat, lon, chord_of(300.0))
    got, _ = nearest(index, np.array([0.0, 0.0]), np.array([0.004, 0.02]), chord_of(600.0))
    assert got.tolist() == [0, -1]


# -- extraction ---------------------------------------------------------------------------------------------

def test_points_take_the_nearest_pixel(product, tmp_path):
    tlat, tlon = sd.geolocation_truth(product)
    rng = np.random.default_rng(5)
    i, j = rng.integers(0, 80, 40), rng.integers(0, 57, 40)
    qlat, qlon = tlat[i, j] + rng.normal(0, 0.0008, 40), tlon[i, j] + rng.normal(0, 0.0008, 40)
    zones = zones_from_geometries(shapely.points(qlon, qlat), "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    report = extract([product], zones, out, "mean", variables="Oa08_reflectance,CHL_NN", max_distance=5000,
                     workers=1)
    t = table(out)
    assert report.rows == 80 and len(t) == 80
    want, wdist = sd.brute_nearest(tlat, tlon, qlat, qlon)
    oa = t[t.variable == "Oa08_reflectance"].reset_index(drop=True)
    assert (oa.row * 60 + oa.col).tolist() == want.tolist()
    np.testing.assert_allclose(oa.distance_m, wdist, rtol=1e-6)
    truth = sd.read_truth(product, "Oa08_reflectance.nc", "Oa08_reflectance").ravel()
    np.testing.assert_allclose(oa.value, truth[want], atol=1e-12)
    np.testing.assert_allclose(oa.pixel_lat, tlat.ravel()[want], atol=1e-9)
    np.testing.assert_allclose(oa.pixel_lon, tlon.ravel()[want], atol=1e-9)
    chl = t[t.variable == "CHL_NN"].reset_index(drop=True)
    np.testing.assert_allclose(chl.value, sd.read_truth(product, "chl_nn.nc", "CHL_NN").ravel()[want], rtol=1e-6)
    assert t.reason.isna().all() and set(t.columns) >= {"source", "date", "time", "variable", "row", "col"}


def test_max_distance_and_the_swath_edge(product, tmp_path):
    tlat, tlon = sd.geolocation_truth(product)
    inside = shapely.Point(tlon[20, 20], tlat[20, 20])
    far = shapely.Point(tlon[20, 20] + 0.5, tlat[20, 20])               # ~55 km east
    # beyond the fill-valued edge columns: about 1.5 pixels from the last valid column
    a, b = (tlon[30, 56], tlat[30, 56]), (tlon[30, 55], tlat[30, 55])
    edge = shapely.Point(a[0] + 1.6 * (a[0] - b[0]), a[1] + 1.6 * (a[1] - b[1]))
    zones = zones_from_geometries([inside, far, edge], "EPSG:4326", ids=[10, 11, 12], id_name="pid")
    out = str(tmp_path / "ts.parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extract([product], zones, out, "mean", variables="CHL_NN", workers=1)
    t = table(out).set_index("pid")
    assert t.loc[10, "row"] == 20 and t.loc[10, "col"] == 20 and np.isfinite(t.loc[10, "value"])
    for pid in (11, 12):        # default limit: one pixel diagonal (~424 m here)
        assert np.isnan(t.loc[pid, "value"]) and t.loc[pid, "reason"] == "outside the swath"
        assert np.isnan(t.loc[pid, "row"]) and np.isnan(t.loc[pid, "distance_m"])
    assert any("2 of 3 features" in str(w.message) for w in caught)
    with pytest.warns(TilewiseWarning, match="1 of 3 features"):
        extract([product], zones, out, "mean", variables="CHL_NN", max_distance=1000, workers=1)
    t = table(out).set_index("pid")
    assert t.loc[12, "col"] == 56 and 400 < t.loc[12, "distance_m"] < 1000 and np.isnan(t.loc[11, "value"])


def polygon_truth(product, polygon, variable_file, variable):
    """numpy over the brute-force set: every pixel centre inside (longitudes around the polygon's)."""
    tlat, tlon = sd.geolocation_truth(product)
    x0, _, x1, _ = polygon.bounds
    c = (x0 + x1) / 2
    wrapped = (tlon - c + 180) % 360 - 180 + c
    ok = np.isfinite(tlat)
    inside = np.zeros(tlat.shape, bool)
    inside[ok] = shapely.contains_xy(polygon, wrapped[ok], tlat[ok])
    values = sd.read_truth(product, variable_file, variable)[inside]
    return values[np.isfinite(values)], int(inside.sum())


@pytest.mark.parametrize("which", ["product", "antimeridian"])
def test_polygon_statistics_equal_numpy(which, request, tmp_path):
    product = request.getfixturevalue(which)
    tlat, tlon = sd.geolocation_truth(product)
    centre = (tlon[40, 40], tlat[40, 40])
    ring = shapely.Point(*centre).buffer(0.03)
    poly = shapely.Polygon(np.column_stack([shapely.get_coordinates(ring)[:, 0] * 1.0,
                                            shapely.get_coordinates(ring)[:, 1]]))
    if which == "antimeridian":             # written as GIS users draw it: -180..180, split by nothing
        assert poly.bounds[2] > 180 or poly.bounds[0] < -180 or True
    edge = shapely.box(tlon[10, 50] - 0.02, tlat[10, 50] - 0.02, tlon[10, 50] + 0.02, tlat[10, 50] + 0.02)
    zones = zones_from_geometries([poly, edge], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([product], zones, out, "mean,median,min,max,std,count,sum,percentiles", percentiles=[10, 90],
            variables="Oa08_reflectance", workers=1)
    t = table(out)
    for fid, g in ((0, poly), (1, edge)):
        values, _ = polygon_truth(product, g, "Oa08_reflectance.nc", "Oa08_reflectance")
        row = t[t.feature_id == fid].iloc[0]
        assert row.n_valid == len(values) > 10
        for name, want in (("mean", values.mean()), ("median", np.median(values)), ("min", values.min()),
                           ("max", values.max()), ("std", values.std()), ("count", len(values)),
                           ("sum", values.sum()), ("p10", np.percentile(values, 10)),
                           ("p90", np.percentile(values, 90))):
            assert row[name] == pytest.approx(want, rel=1e-9, abs=1e-12), name


def test_antimeridian_points_and_polygon(antimeridian, tmp_path):
    tlat, tlon = sd.geolocation_truth(antimeridian)
    assert np.nanmax(tlon) > 179.9 and np.nanmin(tlon) < -179.9       # the scene crosses it
    east = np.flatnonzero((tlon.ravel() < -179.97))[0]
    west = np.flatnonzero((tlon.ravel() > 179.97))[0]
    pts = [shapely.Point(tlon.ravel()[k], tlat.ravel()[k]) for k in (east, west)]
    pts.append(shapely.Point(tlon.ravel()[east] + 360.0, tlat.ravel()[east]))     # the same, as 180+
    # a polygon drawn across the antimeridian with longitudes past 180
    box = shapely.box(179.97, tlat[40, 30] - 0.03, 180.03, tlat[40, 30] + 0.03)
    zones = zones_from_geometries(pts + [box], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([antimeridian], zones, out, "mean,count", variables="CHL_NN", workers=1)
    t = table(out)
    flat = t.row * 60 + t.col
    assert flat[:3].tolist() == [east, west, east]
    values, n = polygon_truth(antimeridian, box, "chl_nn.nc", "CHL_NN")
    both_sides = tlon.ravel()[np.isfinite(tlon.ravel())]
    assert n > 10 and (both_sides > 179.97).any()
    assert t.n_valid[3] == len(values) and t["mean"][3] == pytest.approx(values.mean(), rel=1e-9)


def test_vertices_mode_as_sen3r(product, tmp_path):
    tlat, tlon = sd.geolocation_truth(product)
    ring = [(tlon[r, c], tlat[r, c]) for r, c in ((10, 10), (10, 30), (50, 30), (50, 10))]
    zones = zones_from_geometries([shapely.Polygon(ring)], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([product], zones, out, "mean", geometry_mode="vertices", variables="Oa08_reflectance", workers=1)
    t = table(out)
    assert t.vertex_index.tolist() == [0, 1, 2, 3]
    assert list(zip(t.row, t.col)) == [(10, 10), (10, 30), (50, 30), (50, 10)]
    assert t.value.tolist() == pytest.approx([sd.oa_raw(80, 60)[r, c] * sd.OA_SCALE + sd.OA_OFFSET for r, c in
                                              ((10, 10), (10, 30), (50, 30), (50, 10))])


def test_many_scenes_in_date_order_on_workers_and_resume(tmp_path):
    scenes = [sd.write_olci_product(str(tmp_path), stamp=s, platform=p, seed=k) for k, (s, p) in
              enumerate([("20240601T100000", "S3B"), ("20240514T134512", "S3A"), ("20240520T090000", "S3A")])]
    tlat, tlon = sd.geolocation_truth(scenes[0])
    zones = zones_from_geometries([shapely.Point(tlon[7, 9], tlat[7, 9]),
                                   shapely.Point(tlon[60, 20], tlat[60, 20]).buffer(0.01)], "EPSG:4326")
    one, two = str(tmp_path / "one.parquet"), str(tmp_path / "two.parquet")
    extract(scenes, zones, one, "mean", variables="CHL_NN", workers=1)
    report = extract(scenes, zones, two, "mean", variables="CHL_NN", workers=2, resume=True)
    assert report.tiles == 3
    a, b = table(one), table(two)
    assert a.equals(b)
    assert a.date.astype(str).tolist()[:3] == ["2024-05-14", "2024-05-20", "2024-06-01"]


def test_wide_layout(product, tmp_path):
    tlat, tlon = sd.geolocation_truth(product)
    zones = zones_from_geometries([shapely.Point(tlon[7, 9], tlat[7, 9])], "EPSG:4326", fields={"name": ["a"]})
    out = str(tmp_path / "ts.gpkg")
    extract([product], zones, out, "mean", variables="CHL_NN", layout="wide", workers=1)
    import pyogrio
    _, arrow = pyogrio.read_arrow(out)
    df = arrow.to_pandas()
    assert list(df.columns) == ["feature_id", "name", "d20240514_CHL_NN_value", "d20240514_row", "d20240514_col",
                                "d20240514_distance_m", "geom"]
    assert df.d20240514_row[0] == 7 and df.d20240514_col[0] == 9


# -- bad inputs: one clear message, nothing written ----------------------------------------------------------

def _points(product):
    tlat, tlon = sd.geolocation_truth(product)
    return zones_from_geometries([shapely.Point(tlon[7, 9], tlat[7, 9])], "EPSG:4326")


def test_folder_that_is_not_safe(product, tmp_path):
    folder = tmp_path / "not_a_product"
    folder.mkdir()
    out = tmp_path / "ts.parquet"
    with pytest.raises(InputError, match=r"not_a_product is not a SAFE product: it has no xfdumanifest.xml"):
        extract([str(folder)], _points(product), str(out))
    assert not out.exists()


def test_variable_without_geolocation(tmp_path, product):
    import netCDF4
    path = str(tmp_path / "lonely.nc")
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("rows", 5)
        f.createDimension("columns", 4)
        f.createVariable("CHL", "f4", ("rows", "columns"))[:] = np.ones((5, 4), np.float32)
    out = tmp_path / "ts.parquet"
    with pytest.raises(InputError, match=r"lonely.nc has no geolocation: its variables \(CHL\) name no 2-D "
                                         r"latitude/longitude"):
        extract([path], _points(product), str(out))
    assert not out.exists()


def test_unknown_variable_and_mixed_inputs(product, tmp_path):
    out = tmp_path / "ts.parquet"
    with pytest.raises(InputError, match=r"has no variable 'CHL_OC5'; its variables are: Oa08_reflectance, CHL_NN"):
        extract([product], _points(product), str(out), variables="CHL_OC5")
    with pytest.raises(InputError, match="mix swath scenes"):
        extract([product, str(tmp_path / "a.tif")], _points(product), str(out))
    with pytest.raises(ParameterError, match="variables, not bands"):
        extract([product], _points(product), str(out), bands=[1])
    with pytest.raises(ParameterError, match="max_distance applies to swath inputs"):
        extract([str(tmp_path / "a.tif")], _points(product), str(out), max_distance=300)
    with pytest.raises(ParameterError, match="MAX_DISTANCE is a distance in metres"):
        extract([product], _points(product), str(out), max_distance=-3)
    from tilewise.core.errors import OutputError
    with pytest.raises(OutputError, match="is an input, or inside one"):
        extract([product], _points(product), os.path.join(product, "ts.csv"))
    assert not out.exists() and not os.path.exists(os.path.join(product, "ts.csv"))


def test_scene_covering_no_feature_is_a_null_row(product, tmp_path):
    zones = zones_from_geometries([shapely.Point(10.0, 45.0), shapely.box(10, 45, 10.1, 45.1)], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = extract([product], zones, out, "mean", variables="CHL_NN")
    t = table(out)
    assert report.rows == 2 and t["mean"].isna().all()
    assert t.reason.tolist() == ["outside the swath", "no pixel centre inside"]
    assert any("2 of 2 features" in str(w.message) and "no value in the scene" in str(w.message) for w in caught)


def test_errors_are_tilewise_errors(product, tmp_path):
    """Every refusal above is a TilewiseError: the CLI and QGIS show its message, never a traceback."""
    with pytest.raises(TilewiseError):
        extract([str(tmp_path / "missing.SEN3" / "xfdumanifest.xml")], _points(product), str(tmp_path / "x.csv"))


@pytest.mark.parametrize("coordinates", ["lat lon", None])
def test_one_netcdf_with_its_own_latitude_longitude(tmp_path, coordinates):
    """A swath file of another mission (VIIRS, MODIS-like): lat/lon in the same file, found through the
    coordinates attribute or GDAL's GEOLOCATION metadata, else by their names; the date from start_time."""
    import netCDF4
    lat, lon = sd.swath_geolocation(50, 40, 45.0, 7.0, rotation=-10.0)
    path = str(tmp_path / "VNP_L2_swath.nc")
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("y", 50)
        f.createDimension("x", 40)
        f.time_coverage_start = "2023-07-01T10:20:30Z"
        for name, values in (("lat", lat), ("lon", lon)):
            v = f.createVariable(name, "f8", ("y", "x"))
            v.units = "degrees_north" if name == "lat" else "degrees_east"
            v[:] = values
        v = f.createVariable("sst", "i2", ("y", "x"), fill_value=np.int16(-32767))
        v.set_auto_maskandscale(False)
        v.scale_factor, v.add_offset = 0.01, 20.0
        if coordinates:
            v.coordinates = coordinates
        v[:] = (np.arange(2000).reshape(50, 40) % 1000).astype(np.int16)
    scene = open_swath(path)
    assert scene.date.isoformat() == "2023-07-01" and [v.name for v in scene.measured()] == ["sst"]
    zones = zones_from_geometries([shapely.Point(lon[33, 17], lat[33, 17])], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([path], zones, out, "mean", workers=1)
    t = table(out)
    assert (t.row[0], t.col[0]) == (33, 17)
    assert t.value[0] == pytest.approx(((33 * 40 + 17) % 1000) * 0.01 + 20.0)


def test_angles_from_the_tie_points(product, tmp_path):
    tlat, tlon = sd.geolocation_truth(product)
    pix = [(0, 0), (13, 17), (40, 33), (79, 56), (22, 48)]      # on tie columns, between them, at the edges
    zones = zones_from_geometries([shapely.Point(tlon[r, c], tlat[r, c]) for r, c in pix] + [shapely.Point(5, 5)],
                                  "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    with pytest.warns(TilewiseWarning, match="1 of 6 features"):
        extract([product], zones, out, "mean", variables="CHL_NN", angles=True, workers=1)
    t = table(out)
    truth = sd.angles_truth(80, 60)
    for name in ("sza", "oza"):                 # linear across the tie points: bilinear is exact
        np.testing.assert_allclose(t[name][:5], [truth[name.upper()][r, c] for r, c in pix], atol=1e-5)
    for name in ("saa", "oaa"):                 # azimuths by their sine and cosine: across 360, not through 180
        got = t[name][:5].to_numpy()
        want = np.array([truth[name.upper()][r, c] for r, c in pix])
        assert np.all(np.abs((got - want + 180) % 360 - 180) < 0.01), (got, want)
    assert t[["sza", "oza", "saa", "oaa"]].iloc[5].isna().all()       # outside the swath

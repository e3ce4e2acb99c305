"""Swath inputs in HDF5 files read by GDAL's HDF5 driver (issue 23, part 1): datasets in groups with a
2-D latitude/longitude pair (the way VIIRS and MODIS level-2 files hold them), scale_factor, add_offset and
_FillValue, flags by name; extraction from Python and the command line, gridding, and one message for an
HDF5 file without latitude/longitude.

h5py is not among the engine's packages, so the files are written with netCDF4 (netCDF-4 files are HDF5
files) under a ``.h5`` name: GDAL then opens them with its HDF5 driver, not its netCDF one (checked)."""

import subprocess
import sys
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

import swathdata as sd
from support import subprocess_env
from tilewise.core.errors import InputError
from tilewise.core.io.swath import looks_like_swath, open_swath
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.extract.run import extract
from tilewise.core.operations.swath.grid import swath_to_grid
from tilewise.core.options import RunOptions

netCDF4 = pytest.importorskip("netCDF4")
ROWS, COLS = 50, 40
FLAGS = (("LAND", 1), ("CLOUD", 2), ("GLINT", 4))


def write_h5(path, geolocation=True):
    """A level-2 swath file: /navigation_data/latitude, longitude; /geophysical_data/sst (int16, scaled,
    filled) and l2_flags; the acquisition time as a global attribute."""
    lat, lon = sd.swath_geolocation(ROWS, COLS, 45.0, 7.0, rotation=-10.0)
    with netCDF4.Dataset(path, "w") as f:
        f.time_coverage_start = "2023-07-01T10:20:30Z"
        f.createDimension("number_of_lines", ROWS)
        f.createDimension("pixels_per_line", COLS)
        dims = ("number_of_lines", "pixels_per_line")
        if geolocation:
            nav = f.createGroup("navigation_data")
            for name, values in (("latitude", lat), ("longitude", lon)):
                v = nav.createVariable(name, "f4", dims, fill_value=np.float32(-999.0))
                v.units = "degrees_north" if name == "latitude" else "degrees_east"
                v[:] = values
        geo = f.createGroup("geophysical_data")
        v = geo.createVariable("sst", "i2", dims, fill_value=np.int16(-32767))
        v.set_auto_maskandscale(False)
        v.scale_factor, v.add_offset = 0.005, 10.0
        raw = (np.arange(ROWS * COLS).reshape(ROWS, COLS) % 3000).astype(np.int16)
        raw[0, :5] = -32767
        v[:] = raw
        v = geo.createVariable("l2_flags", "i4", dims)
        v.flag_masks = np.array([m for _, m in FLAGS], np.int32)
        v.flag_meanings = " ".join(n for n, _ in FLAGS)
        v[:] = np.where(np.arange(COLS)[None, :] % 7 == 0, 2, 0) * np.ones((ROWS, 1), np.int32)
    return lat, lon, raw


def sst(raw):
    return np.where(raw == -32767, np.nan, raw * 0.005 + 10.0)


@pytest.fixture(scope="module")
def h5(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("h5") / "V2023182102030.L2_SNPP_SST.h5")
    lat, lon, raw = write_h5(path)
    return path, lat, lon, raw


def test_gdal_reads_it_as_hdf5_and_tilewise_as_a_swath(h5):
    path, lat, lon, raw = h5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)   # a swath has no geotransform
        with rasterio.open(path) as src:
            assert src.driver == "HDF5" and any(s.endswith("//geophysical_data/sst") for s in src.subdatasets)
    assert looks_like_swath(path)
    scene = open_swath(path)
    assert (scene.lat.name, scene.lon.name) == ("latitude", "longitude") and scene.lat.driver == "HDF5"
    assert [v.name for v in scene.measured()] == ["sst"] and scene.date.isoformat() == "2023-07-01"
    assert scene.variable("sst").gdal_path == f'HDF5:"{path}"://geophysical_data/sst'
    one = open_swath(f'HDF5:"{path}"://geophysical_data/sst')        # one dataset, by its path
    assert [v.name for v in one.variables] == ["sst"]


def test_extract_points_and_a_polygon_from_hdf5(h5, tmp_path):
    path, lat, lon, raw = h5
    values = sst(raw)
    polygon = shapely.Point(lon[30, 20], lat[30, 20]).buffer(0.01)
    inside = shapely.contains_xy(polygon, lon, lat)
    zones = zones_from_geometries([shapely.Point(lon[12, 9], lat[12, 9]), shapely.Point(lon[0, 2], lat[0, 2]),
                                   polygon], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([path], zones, out, "mean,count", variables="sst", workers=1)
    t = pq.read_table(out).to_pandas()
    assert (t.row[0], t.col[0]) == (12, 9) and t["mean"][0] == pytest.approx(values[12, 9], rel=1e-12)
    assert np.isnan(t["mean"][1])                                   # a filled pixel
    assert t["count"][2] == np.isfinite(values[inside]).sum() > 10
    assert t["mean"][2] == pytest.approx(np.nanmean(values[inside]), rel=1e-9)
    # flags by name from the HDF5 flag_masks/flag_meanings
    flagged = str(tmp_path / "flagged.parquet")
    extract([path], zones, flagged, "mean,count", variables="sst", mask_flags="CLOUD", workers=1)
    f = pq.read_table(flagged).to_pandas()
    cols = np.argwhere(inside)[:, 1]
    assert f["count"][2] == np.isfinite(values[inside][cols % 7 != 0]).sum() < t["count"][2]


def test_cli_extract_and_gridding_from_hdf5(h5, tmp_path):
    path, lat, lon, raw = h5
    zones = tmp_path / "points.geojson"
    zones.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "a"}, '
                     f'"geometry": {{"type": "Point", "coordinates": [{lon[40, 30]}, {lat[40, 30]}]}}}}]}}')
    proc = subprocess.run([sys.executable, "-m", "tilewise", "extract", "-z", str(zones), "--variables", "sst",
                           "-o", "ts.csv", "-q", path], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import pandas as pd
    t = pd.read_csv(tmp_path / "ts.csv")
    assert (t.row[0], t.col[0]) == (40, 30) and t.value[0] == pytest.approx(sst(raw)[40, 30], abs=1e-9)
    bounds = (6.9, 44.9, 7.1, 45.1)
    (tmp_path / "grids").mkdir()
    gridded, = swath_to_grid([path], str(tmp_path / "grids"), variables="sst", bounds=bounds, cell_size=0.002,
                             run=RunOptions(workers=1))
    with rasterio.open(gridded) as src:
        got = src.read(1)
    assert np.isfinite(got).sum() > 1000
    assert np.isin(got[np.isfinite(got)], sst(raw).astype(np.float32)).all()    # nearest: the file's values


def test_hdf5_without_latitude_longitude_is_one_message(tmp_path):
    path = str(tmp_path / "no_geo.h5")
    write_h5(path, geolocation=False)
    with pytest.raises(InputError, match="has no geolocation") as e:
        open_swath(path)
    assert path in str(e.value) and "sst" in str(e.value) and "//" not in str(e.value)

"""Swath scenes onto a grid: GDAL's geolocation warping equals ``gdalwarp -geoloc``; a median of swath
scenes is the median of the gridded scenes."""

import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import rasterio

import swathdata as sd
from tilewise.core import composite
from tilewise.core.errors import ParameterError
from tilewise.core.operations.swath.grid import swath_to_grid

pytest.importorskip("netCDF4")
CELL = 0.002


def snapped_bounds(path):
    lat, lon = sd.geolocation_truth(path)
    b = (np.nanmin(lon), np.nanmin(lat), np.nanmax(lon), np.nanmax(lat))
    return tuple(round(float(v) / CELL) * CELL for v in b)


def band_vrt(path, variable, scale, rows, cols):
    return (f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}"><VRTRasterBand dataType="Float64" band="1">'
            f'<ComplexSource><SourceFilename relativeToVRT="0">NETCDF:"{path}":{variable}</SourceFilename>'
            f'<SourceBand>1</SourceBand><ScaleRatio>{scale}</ScaleRatio></ComplexSource></VRTRasterBand></VRTDataset>')


def gdalwarp_geoloc(product, folder, bounds, out, rows=80, cols=60, variable="CHL_NN", netcdf="chl_nn.nc"):
    """``variable`` of ``product`` gridded onto ``bounds`` by ``gdalwarp -geoloc`` (through VRTs carrying the
    scaled geolocation arrays) into ``out``: the reference of the gridding."""
    geo = os.path.join(product, "geo_coordinates.nc")
    for axis, name in (("lon", "longitude"), ("lat", "latitude")):
        (folder / f"{axis}.vrt").write_text(band_vrt(geo, name, 1e-6, rows, cols))
    source = os.path.join(product, netcdf)
    (folder / "var.vrt").write_text(
        f'<VRTDataset rasterXSize="{cols}" rasterYSize="{rows}"><Metadata domain="GEOLOCATION">'
        f'<MDI key="X_DATASET">{folder}/lon.vrt</MDI><MDI key="X_BAND">1</MDI>'
        f'<MDI key="Y_DATASET">{folder}/lat.vrt</MDI><MDI key="Y_BAND">1</MDI>'
        '<MDI key="PIXEL_OFFSET">0</MDI><MDI key="LINE_OFFSET">0</MDI><MDI key="PIXEL_STEP">1</MDI>'
        '<MDI key="LINE_STEP">1</MDI><MDI key="SRS">EPSG:4326</MDI></Metadata>'
        '<VRTRasterBand dataType="Float32" band="1"><NoDataValue>-999</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">NETCDF:"{source}":{variable}</SourceFilename><SourceBand>1</SourceBand>'
        '</SimpleSource></VRTRasterBand></VRTDataset>')
    proc = subprocess.run(["gdalwarp", "-q", "-overwrite", "--config", "GDAL_NETCDF_BOTTOMUP", "NO", "-geoloc",
                           "-t_srs", "EPSG:4326", "-te", *map(str, bounds), "-tr", str(CELL), str(CELL), "-r", "near",
                           "-dstnodata", "nan", "-ot", "Float32", str(folder / "var.vrt"), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return str(out)


needs_gdalwarp = pytest.mark.skipif(shutil.which("gdalwarp") is None,
                                    reason="gdalwarp (GDAL's utilities) is not installed")


@needs_gdalwarp
def test_gridding_equals_gdalwarp_geoloc(tmp_path):
    product = sd.write_olci_product(str(tmp_path), rows=80, cols=60, fill_cols=0)
    bounds = snapped_bounds(product)
    ref = gdalwarp_geoloc(product, tmp_path, bounds, tmp_path / "ref.tif")
    out = tmp_path / "grids"
    out.mkdir()
    path, = swath_to_grid([product], str(out), variables="CHL_NN", bounds=bounds, cell_size=CELL)
    with rasterio.open(path) as a, rasterio.open(ref) as b:
        mine, theirs = a.read(1), b.read(1)
        assert a.transform.almost_equals(b.transform) and a.descriptions == ("CHL_NN",)
        assert a.tags()["ACQUISITIONDATETIME"] == "2024-05-14T13:45:12"
    assert np.isfinite(theirs).sum() > 5000
    np.testing.assert_array_equal(np.isfinite(mine), np.isfinite(theirs))
    np.testing.assert_array_equal(mine[np.isfinite(mine)], theirs[np.isfinite(theirs)])


def test_fill_valued_edge_and_flags_are_no_data(tmp_path):
    clean = sd.write_olci_product(str(tmp_path / "a"), fill_cols=0)
    edged = sd.write_olci_product(str(tmp_path / "b"), fill_cols=6)
    bounds = snapped_bounds(clean)
    out = tmp_path / "grids"
    out.mkdir()
    (a,) = swath_to_grid([clean], str(out), variables="CHL_NN", bounds=bounds, cell_size=CELL)
    os.rename(a, out / "clean.tif")
    (b,) = swath_to_grid([edged], str(out), variables="CHL_NN", bounds=bounds, cell_size=CELL)
    (c,) = swath_to_grid([edged], str(tmp_path), variables="CHL_NN", bounds=bounds, cell_size=CELL,
                         mask_flags="CLOUD")
    with rasterio.open(out / "clean.tif") as s1, rasterio.open(b) as s2, rasterio.open(c) as s3:
        full, cut, flagged = s1.read(1), s2.read(1), s3.read(1)
    have = np.isfinite(cut)
    assert 0.8 * np.isfinite(full).sum() < have.sum() < np.isfinite(full).sum()
    np.testing.assert_array_equal(cut[have], full[have])       # no value from a fill-valued position
    assert np.isfinite(flagged).sum() < have.sum()


def test_median_of_swath_scenes(tmp_path):
    paths = [sd.write_olci_product(str(tmp_path), stamp=f"202405{d}T100000", seed=d, rotation=15 + d)
             for d in (10, 11, 12)]
    bounds = snapped_bounds(paths[0])
    grids = tmp_path / "grids"
    grids.mkdir()
    gridded = swath_to_grid(paths, str(grids), variables="CHL_NN", bounds=bounds, cell_size=CELL)
    stack = np.stack([rasterio.open(p).read(1) for p in gridded])
    out = tmp_path / "median.tif"
    composite(paths, str(out), "median", variables="CHL_NN", extent=bounds, cell_size=CELL, crs="EPSG:4326",
              output_nodata=-9999, workers=1)
    with rasterio.open(out) as src:
        got = src.read(1, masked=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN cells: no scene covers them
        want = np.nanmedian(stack, axis=0)
    np.testing.assert_array_equal(got.mask, np.isnan(want))
    np.testing.assert_allclose(got.compressed(), want[~np.isnan(want)].astype(np.float32), rtol=1e-6)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tilewise-swath-")]
    with pytest.raises(ParameterError, match="give the target EXTENT"):
        composite(paths, str(tmp_path / "x.tif"), "median", variables="CHL_NN")



def test_cli_composite_of_swath_scenes(tmp_path):
    import sys
    from support import subprocess_env
    paths = [sd.write_olci_product(str(tmp_path), stamp=f"202405{d}T100000", seed=d) for d in (10, 11)]
    xmin, ymin, xmax, ymax = snapped_bounds(paths[0])
    proc = subprocess.run([sys.executable, "-m", "tilewise", "composite", "-s", "max", "--variables", "CHL_NN",
                           "--mask-flags", "CLOUD", "--extent", *map(str, (xmin, ymin, xmax, ymax)), "--cell-size",
                           str(CELL), "--crs", "EPSG:4326", "-o", "max.tif", "-q", *paths], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(tmp_path / "max.tif") as src:
        assert src.count == 1 and np.isfinite(src.read(1, masked=True).compressed()).sum() > 5000
    proc = subprocess.run([sys.executable, "-m", "tilewise", "composite", "--variables", "CHL_NN", "-o", "y.tif",
                           "-q", str(tmp_path / "max.tif")], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "variables applies to swath scenes" in proc.stderr

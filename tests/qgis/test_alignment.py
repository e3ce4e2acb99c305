"""Inputs on other CRSs and resolutions are warped onto the reference grid (the first input's)."""

import numpy as np
import pytest

from twtest import masked_stack, nan_reduce, read_raster, run, srs_wkt, warp, write_raster

REF_GEOTRANSFORM = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
REF_SHAPE = (240, 320)


def blocky(rng, shape, block, low, high):
    """Constant blocks of ``block`` pixels, so nearest resampling is only ambiguous at block edges."""
    small = rng.integers(low, high, (shape[0] // block + 1, shape[1] // block + 1))
    return np.kron(small, np.ones((block, block), np.int64))[:shape[0], :shape[1]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align")
    rng = np.random.default_rng(11)
    ref = rng.integers(1, 1000, REF_SHAPE).astype(np.uint16)
    ref[:20, :30] = 0
    reference = write_raster(folder / "ref_32633_10m.tif", ref, nodata=0)
    # the second input covers only part of the reference, on EPSG:3857 at about 7 m
    utm = blocky(rng, (150, 200), 6, 1000, 2000).astype(np.uint16)
    utm_path = write_raster(folder / "part_32633_10m.tif", utm, nodata=0,
                            geotransform=(500600.0, 10.0, 0.0, 4998800.0, 0.0, -10.0))
    mercator = warp(folder / "part_3857.tif", utm_path, dstSRS="EPSG:3857", xRes=7.0, yRes=7.0,
                    resampleAlg="near", srcNodata=0, dstNodata=0, creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    # the third: EPSG:4326 in degrees, covering the whole reference and more
    wide = blocky(rng, (300, 400), 8, 2000, 3000).astype(np.uint16)
    wide_utm = write_raster(folder / "wide_32633_10m.tif", wide, nodata=0,
                            geotransform=(499700.0, 10.0, 0.0, 5000300.0, 0.0, -10.0))
    geographic = warp(folder / "all_4326.tif", wide_utm, dstSRS="EPSG:4326", xRes=0.00015, yRes=0.0001,
                      resampleAlg="near", srcNodata=0, dstNodata=0)
    return reference, mercator, geographic


def on_reference_grid(path, folder, name):
    """The input warped onto the reference grid by GDAL (nearest), as the expected values."""
    out = warp(folder / name, path, dstSRS=srs_wkt(32633), outputBounds=(
        REF_GEOTRANSFORM[0], REF_GEOTRANSFORM[3] - 10.0 * REF_SHAPE[0],
        REF_GEOTRANSFORM[0] + 10.0 * REF_SHAPE[1], REF_GEOTRANSFORM[3]),
        width=REF_SHAPE[1], height=REF_SHAPE[0], resampleAlg="near", srcNodata=0, dstNodata=0)
    return read_raster(out).array


def test_inputs_are_on_other_grids(inputs):
    reference, mercator, geographic = (read_raster(p) for p in inputs)
    assert reference.same_crs(32633) and mercator.same_crs(3857) and geographic.same_crs(4326)
    assert mercator.geotransform[1] == pytest.approx(7.0)
    assert (mercator.width, mercator.height) != (reference.width, reference.height)


def test_output_is_on_the_reference_grid(inputs, tmp_path, out_dir):
    reference, mercator, geographic = inputs
    result = run("tilewise:temporalmedian", {"INPUT": [reference, mercator, geographic], "STATISTIC": 0,
                                            "TILE_SIZE": 64, "OUTPUT": str(out_dir / "aligned.tif")})
    out = read_raster(result["OUTPUT"])
    assert (out.height, out.width) == REF_SHAPE
    assert out.geotransform == REF_GEOTRANSFORM
    assert out.same_crs(32633)

    second = on_reference_grid(mercator, tmp_path, "mercator_on_ref.tif")
    third = on_reference_grid(geographic, tmp_path, "geographic_on_ref.tif")
    assert 0.2 < (second != 0).mean() < 0.8  # covers a part of the reference
    assert (third != 0).all()  # covers all of it
    expected = nan_reduce(np.nanmedian, masked_stack([read_raster(reference).array, second, third], 0))
    np.testing.assert_array_equal(out.valid, ~np.isnan(expected))
    np.testing.assert_array_equal(out.array[out.valid], expected[out.valid].astype(np.float32))

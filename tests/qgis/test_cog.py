"""Every output is a valid Cloud-Optimized GeoTIFF, checked by GDAL's own validator."""

import numpy as np
from osgeo import gdal
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate

from twtest import masked_stack, nan_reduce, read_raster, run, write_raster


def test_output_is_a_valid_cog_with_overviews(tmp_path, out_dir):
    rng = np.random.default_rng(5)
    shape = (700, 1300)  # several 512-px blocks, so GDAL must build overviews
    arrays = []
    for i in range(3):
        a = rng.integers(1, 5000, shape).astype(np.uint16)
        a[rng.random(shape) < 0.1] = 0
        arrays.append(a)
    # inputs striped (not tiled) and uncompressed: the COG layout must come from Tilewise
    inputs = [write_raster(tmp_path / f"in{i}.tif", a, nodata=0, options=()) for i, a in enumerate(arrays)]
    output = str(out_dir / "composite.tif")

    result = run("tilewise:temporalmedian", {"INPUT": inputs, "TILE_SIZE": 300, "WORKERS": 2, "OUTPUT": output})

    assert result["OUTPUT"] == output
    warnings, errors, details = validate(output, full_check=True)
    assert errors == []
    assert warnings == []
    assert "overview_0" in details["ifd_offsets"]
    ds = gdal.Open(output)
    assert ds is not None
    band = ds.GetRasterBand(1)
    assert band.GetOverviewCount() >= 1
    assert band.GetBlockSize() == [512, 512]
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"
    band = None
    ds = None
    out = read_raster(output)
    expected = nan_reduce(np.nanmedian, masked_stack(arrays, 0))
    np.testing.assert_array_equal(out.valid, ~np.isnan(expected))
    np.testing.assert_array_equal(out.array[out.valid], expected[out.valid].astype(np.float32))
    assert sorted(p.name for p in out_dir.iterdir()) == ["composite.tif"]

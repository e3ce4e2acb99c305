"""Every output is a valid Cloud-Optimized GeoTIFF, checked by GDAL's own validator."""

import numpy as np
from osgeo import gdal
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate

from twtest import masked_stack, nan_reduce, read_raster, run, write_raster


def test_output_is_a_valid_cog_with_overviews(tmp_path, out_dir):
    rng = np.random.default_rng(5)
    shape = (700, 1300)  # several 512-px blocks, so GDAL must build overviews
    arrays = []
    for _ in range(3):
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


class _Log:
    """A feedback that keeps every line, with its kind (info or debug)."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Log(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines = []

            def pushInfo(self, info):  # noqa: N802 (QGIS's name)
                self.lines.append(("info", info))

            def pushDebugInfo(self, info):  # noqa: N802 (QGIS's name)
                self.lines.append(("debug", info))

        return Log()


def test_overviews_off_gives_a_valid_cog_without_overviews_and_the_phases_end_the_log(tmp_path, out_dir,
                                                                                      monkeypatch):
    rng = np.random.default_rng(6)
    arrays = [rng.integers(1, 5000, (700, 1300)).astype(np.uint16) for _ in range(3)]
    inputs = [write_raster(tmp_path / f"in{i}.tif", a, nodata=0) for i, a in enumerate(arrays)]
    with_ovr, without = str(out_dir / "with.tif"), str(out_dir / "without.tif")
    quiet = _Log()
    run("tilewise:temporalmedian", {"INPUT": inputs, "OUTPUT": with_ovr}, feedback=quiet)
    monkeypatch.setenv("TILEWISE_DEBUG", "1")
    debug = _Log()
    run("tilewise:temporalmedian", {"INPUT": inputs, "OVERVIEWS": False, "OUTPUT": without}, feedback=debug)
    warnings, errors, details = validate(without, full_check=True)
    assert errors == []
    assert "overview_0" not in details["ifd_offsets"]
    ds = gdal.Open(without)
    assert ds.GetRasterBand(1).GetOverviewCount() == 0
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    ds = None
    np.testing.assert_array_equal(read_raster(with_ovr).array, read_raster(without).array)
    # the phase breakdown: the algorithm's last line (processing.run adds its "Results: ..." after it), as
    # information in debug mode, as debug information otherwise
    assert debug.lines[-1][1].startswith("Results: ") and quiet.lines[-1][1].startswith("Results: ")
    debug.lines.pop()
    quiet.lines.pop()
    kind, last = debug.lines[-1]
    assert kind == "info" and last.startswith("Phases (s): qgis "), debug.lines[-3:]
    for phase in ("engine start", "planning", "read", "compute", "tile writes", "assembly"):
        assert f" {phase} " in last, last
    assert "overviews" not in last.split("[")[0]
    assert quiet.lines[-1][0] == "debug" and quiet.lines[-1][1].startswith("Phases (s): ")


def test_uncompressed_outputs_written_in_place_are_valid_cogs(tmp_path, out_dir):
    """Uncompressed outputs are written in place by the workers (no tile files, no assembly), with and without
    overviews (the workers' level, then GDAL's): GDAL's validator, with its full check of every block's
    leader and trailer, finds nothing wrong, and the pixels are the tile route's (the DEFLATE output's)."""
    from tilewise.core.vocabulary import COMPRESSIONS
    rng = np.random.default_rng(7)
    arrays = [rng.integers(1, 5000, (1024, 2048)).astype(np.uint16) for _ in range(3)]
    inputs = [write_raster(tmp_path / f"in{i}.tif", a, nodata=0) for i, a in enumerate(arrays)]
    none = COMPRESSIONS.index("NONE")
    deflate = str(out_dir / "deflate.tif")
    run("tilewise:temporalmedian", {"INPUT": inputs, "TILE_SIZE": 1024, "WORKERS": 2, "OUTPUT": deflate})
    for name, overviews in (("flat.tif", False), ("pyramid.tif", True)):
        output = str(out_dir / name)
        log = _Log()
        run("tilewise:temporalmedian", {"INPUT": inputs, "TILE_SIZE": 1024, "WORKERS": 2, "COMPRESSION": none,
                                        "OVERVIEWS": overviews, "OUTPUT": output}, feedback=log)
        assert any("Cloud-Optimized GeoTIFF in place" in line for _, line in log.lines), log.lines
        warnings, errors, details = validate(output, full_check=True)
        assert errors == []
        assert warnings == ([] if overviews else ["The file is greater than 512xH or Wx512, it is recommended to "
                                                  "include internal overviews"])
        assert ("overview_0" in details["ifd_offsets"]) == overviews
        ds = gdal.Open(output)
        assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") is None
        assert ds.GetRasterBand(1).GetOverviewCount() == (2 if overviews else 0)
        ds = None
        np.testing.assert_array_equal(read_raster(output).array, read_raster(deflate).array)
    assert sorted(p.name for p in out_dir.iterdir()) == ["deflate.tif", "flat.tif", "pyramid.tif"]

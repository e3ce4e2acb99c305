"""``tilewise:chips`` in real QGIS: processing.run with a memory layer of points, qgis_process, and QGIS
loading a chip as a raster layer with its CRS, extent and one band per date."""

import json
import os

import numpy as np
import pytest
from osgeo import gdal

from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer

from test_extract import point_layer
from test_qgis_process import qgis_process  # noqa: F401 (the fixture)
from test_stac import EXTENT_4326, SEASON, catalogue  # noqa: F401 (the fixture)
from twtest import UTM33_10M, run, write_raster

SHAPE = (40, 50)
ALG = "tilewise:chips"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two dates of two bands (float32, nodata -9999), dated in their names (given out of date order)."""
    folder = tmp_path_factory.mktemp("chips-scenes")
    rng = np.random.default_rng(24)
    paths, arrays = [], []
    for name in ("s2_2021-06-11", "s2_2021-05-02"):
        a = rng.normal(500, 120, (2,) + SHAPE).astype(np.float32)
        a[rng.random(a.shape) < 0.1] = -9999.0
        arrays.append(a)
        paths.append(write_raster(folder / f"{name}.tif", a, nodata=-9999.0))
    return paths, arrays


def expected(arrays, row, col, size):
    """Dates in date order (the second scene first), NaN for nodata and past the raster."""
    out = np.full((2, 2, size, size), np.nan, np.float32)
    r0, c0, r1, c1 = max(row, 0), max(col, 0), min(row + size, SHAPE[0]), min(col + size, SHAPE[1])
    for t, a in enumerate((arrays[1], arrays[0])):
        out[t, :, r0 - row:r1 - row, c0 - col:c1 - col] = a[:, r0:r1, c0:c1]
    out[out == -9999.0] = np.nan
    return out


def read_chip(path, variable):
    ds = gdal.Open(f'NETCDF:"{path}":{variable}')
    assert ds is not None, gdal.GetLastErrorMsg()
    return np.stack([ds.GetRasterBand(b + 1).ReadAsArray() for b in range(ds.RasterCount)]), ds.GetGeoTransform()


def test_processing_run_writes_a_chip_per_point_that_qgis_loads(scenes, tmp_path):
    paths, arrays = scenes
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    cells = [(3, 4), (20, 25), (38, 49)]          # (row, col); the last one at the corner: padded
    layer = point_layer([(x0 + (c + 0.5) * 10, y1 - (r + 0.5) * 10) for r, c in cells])
    out = tmp_path / "chips"
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    result = run(ALG, {"INPUT": paths, "ZONES": layer, "ID_FIELD": "plot", "MODE": 1, "SIZE_X": 5, "SIZE_Y": 5,
                       "WORKERS": 1, "OUTPUT_FOLDER": str(out)}, feedback=feedback, context=context)
    assert result["OUTPUT_LAYERS"] == [str(out / f"p{i}.nc") for i in range(3)]
    for i, (r, c) in enumerate(cells):
        want = expected(arrays, r - 2, c - 2, 5)
        for b, variable in enumerate(("band_1", "band_2")):
            got, transform = read_chip(out / f"p{i}.nc", variable)
            np.testing.assert_array_equal(got, want[:, b])
            assert transform == (x0 + (c - 2) * 10, 10.0, 0.0, y1 - (r - 2) * 10, 0.0, -10.0)
    uri = f'NETCDF:"{out / "p1.nc"}":band_2'
    chip = QgsRasterLayer(uri, "p1", "gdal")
    assert chip.isValid(), chip.error().message()
    assert chip.bandCount() == 2 and chip.crs().authid() == "EPSG:32633"
    assert (chip.width(), chip.height()) == (5, 5)
    extent = chip.extent()
    assert extent.xMinimum() == pytest.approx(x0 + 230) and extent.yMaximum() == pytest.approx(y1 - 180)


def test_qgis_process_runs_box_mode(qgis_process, scenes, tmp_path):  # noqa: F811 (the fixture)
    paths, arrays = scenes
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    zones = tmp_path / "fields.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "urn:ogc:def:crs:EPSG::32633"}}, "features": [{"type": "Feature", "properties": {"name": "a/b"},
        "geometry": {"type": "Polygon", "coordinates": [[[x0 + 52, y1 - 101], [x0 + 118, y1 - 101],
                                                         [x0 + 118, y1 - 197], [x0 + 52, y1 - 101]]]}}]}))
    out = tmp_path / "boxes"
    proc = qgis_process("run", ALG, "--json", "--", *[f"INPUT={p}" for p in paths], f"ZONES={zones}",
                        "ID_FIELD=name", "MODE=0", "BUFFER=10", f"OUTPUT_FOLDER={out}", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout[proc.stdout.index("{"):])["results"]
    assert results["OUTPUT_LAYERS"] == [str(out / "a_b.nc")]
    got, _ = read_chip(out / "a_b.nc", "band_1")
    # bounds 52..118 x 101..197 grown by 10: columns 4-12, rows 9-20
    np.testing.assert_array_equal(got, expected(arrays, 9, 4, 12)[:, 0, :12, :9])
    assert sorted(os.listdir(out)) == [".tilewise-chips.json", "a_b.nc"]


def test_gap_filling_and_the_footprints_layer(scenes, tmp_path):
    from qgis.core import QgsVectorLayer
    paths, arrays = scenes
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    layer = point_layer([(x0 + 105, y1 - 205), (x0 + 305, y1 - 105)])
    footprints = tmp_path / "footprints.gpkg"
    result = run(ALG, {"INPUT": paths, "ZONES": layer, "ID_FIELD": "plot", "MODE": 1, "SIZE_X": 4, "SIZE_Y": 4,
                       "GAPFILL": 1, "EDGES": 1, "WORKERS": 1, "OUTPUT_FOLDER": str(tmp_path / "chips"),
                       "OUTPUT_FOOTPRINTS": str(footprints)})
    assert result["OUTPUT_FOOTPRINTS"] == str(footprints)
    assert result["OUTPUT_LAYERS"] == [str(tmp_path / "chips" / f"p{i}.nc") for i in range(2)]
    values, _ = read_chip(tmp_path / "chips" / "p0.nc", "band_1")
    flags, _ = read_chip(tmp_path / "chips" / "p0.nc", "band_1_flags")
    raw = expected(arrays, 18, 8, 4)[:, 0]
    assert np.isnan(raw).any() and not np.isnan(values).any()      # edges nearest: two dates fill each other
    np.testing.assert_array_equal(values[~np.isnan(raw)], raw[~np.isnan(raw)])
    np.testing.assert_array_equal(flags, np.where(np.isnan(raw), 3, 0))
    fp = QgsVectorLayer(str(footprints), "footprints", "ogr")
    assert fp.isValid() and fp.featureCount() == 2 and fp.crs().authid() == "EPSG:32633"
    names = [f.name() for f in fp.fields()]
    assert names[1:5] == ["plot", "file", "width", "height"]
    assert names[5:] == ["valid_d20210502", "valid_d20210611"]


def test_a_model_stacsearch_then_chips(catalogue, tmp_path):  # noqa: F811 (the fixture)
    """A Graphical Modeler chain: the layers of tilewise:stacsearch (rustac + nginx) feed tilewise:chips,
    masked by the SCL band; the patches equal the scenes' pixels."""
    from qgis.core import (QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource, QgsProcessingModelOutput)
    from stacdata import INSIDE_A, SCL_MASKED, search_ids

    def static(child, values):
        for name, value in values.items():
            child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])

    points = point_layer([(500_000 + 20 * 10 + 5, 5_000_000 - 30 * 10 - 5)])
    model = QgsProcessingModelAlgorithm("stac_then_chips", "Tilewise tests")
    search = QgsProcessingModelChildAlgorithm("tilewise:stacsearch")
    search.setChildId("search")
    static(search, {"STAC_API": catalogue.api.url, "COLLECTIONS": "s2-test", "EXTENT": EXTENT_4326,
                    "DATETIME": SEASON, "MAX_CLOUD": 40, "ASSETS": "red,nir,scl",
                    "OUTPUT_FOLDER": str(tmp_path / "items")})
    model.addChildAlgorithm(search)
    chips = QgsProcessingModelChildAlgorithm(ALG)
    chips.setChildId("chips")
    chips.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput(
        "search", "OUTPUT_LAYERS")])
    static(chips, {"ZONES": points, "ID_FIELD": "plot", "MODE": 1, "SIZE_X": 4, "SIZE_Y": 4, "BANDS": "1,2",
                   "MASK_BAND": 3, "MASK_VALUES": ",".join(map(str, SCL_MASKED)), "WORKERS": 1})
    output = QgsProcessingModelOutput("chips", "Chips")
    output.setChildId("chips")
    output.setChildOutputName("OUTPUT_FOLDER")
    chips.setModelOutputs({"chips": output})
    model.addChildAlgorithm(chips)
    model.updateDestinationParameters()
    folder = tmp_path / "chips"
    result = run(model, {"chips:chips": str(folder)})
    assert result["chips:chips"] == str(folder)
    ids = search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30", max_cloud=40)
    for band in ("red", "nir"):
        got, _ = read_chip(folder / "p0.nc", band)
        want = np.stack([getattr(catalogue.scenes[i], band)[28:32, 18:22].astype(np.float32) for i in ids])
        scl = np.stack([catalogue.scenes[i].scl_10m()[28:32, 18:22] for i in ids])
        want[np.isin(scl, SCL_MASKED) | (want == 0)] = np.nan          # masked classes, the assets' nodata
        assert np.isnan(want).any() and np.isfinite(want).any()
        np.testing.assert_array_equal(got, want)


def test_geotiff_chips_load_as_layers(scenes, tmp_path):
    paths, arrays = scenes
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    result = run(ALG, {"INPUT": paths, "ZONES": point_layer([(x0 + 105, y1 - 205)]), "ID_FIELD": "plot", "MODE": 1,
                       "SIZE_X": 3, "SIZE_Y": 3, "FORMAT": 1, "WORKERS": 1, "OUTPUT_FOLDER": str(tmp_path / "tifs")})
    assert result["OUTPUT_LAYERS"] == [str(tmp_path / "tifs" / f"p0_{d}.tif") for d in ("2021-05-02", "2021-06-11")]
    layer = QgsRasterLayer(result["OUTPUT_LAYERS"][1], "p0", "gdal")
    assert layer.isValid() and layer.bandCount() == 2 and layer.crs().authid() == "EPSG:32633"
    ds = gdal.Open(result["OUTPUT_LAYERS"][1])
    np.testing.assert_array_equal(ds.ReadAsArray(), expected(arrays, 19, 9, 3)[1])


def test_training_set_through_qgis_process(qgis_process, scenes, tmp_path):  # noqa: F811 (the fixture)
    paths, arrays = scenes
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    zones = tmp_path / "pts.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"pid": f"p{i}"}, "geometry": {"type": "Point", "coordinates": [x, y]}}
        for i, (x, y) in enumerate([(x0 + 105, y1 - 205), (x0 + 255, y1 - 155)])]}).replace(
        '"features"', '"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}, "features"'))
    out = tmp_path / "train"
    proc = qgis_process("run", ALG, "--json", "--", *[f"INPUT={p}" for p in paths], f"ZONES={zones}",
                        "ID_FIELD=pid", "MODE=1", "SIZE_X=3", "SIZE_Y=3", "FORMAT=2", f"OUTPUT_FOLDER={out}",
                        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["results"]["OUTPUT_LAYERS"] == [str(out / "chips.nc")]
    ds = gdal.Open(f'NETCDF:"{out / "chips.nc"}":band_1')
    assert ds.RasterCount == 2 * 2                                 # GDAL: the feature x time slices as bands
    # no 1-D y coordinate (each patch has its own): GDAL takes netCDF's default, rows from the south up
    np.testing.assert_array_equal(np.flipud(ds.GetRasterBand(1).ReadAsArray()), expected(arrays, 19, 9, 3)[0, 0])


def test_a_folder_with_the_users_file_is_one_clear_error(scenes, tmp_path):
    from qgis.core import QgsProcessingException
    paths, _ = scenes
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "p0.nc").write_text("my own notes")
    with pytest.raises(QgsProcessingException) as caught:
        run(ALG, {"INPUT": paths, "ZONES": point_layer([(x0 + 105, y1 - 205)]), "ID_FIELD": "plot", "MODE": 1,
                  "WORKERS": 1, "OUTPUT_FOLDER": str(folder)})
    message = str(caught.value)
    assert "already holds p0.nc, which Tilewise did not write: it is not replaced" in message
    assert "Traceback" not in message and (folder / "p0.nc").read_text() == "my own notes"

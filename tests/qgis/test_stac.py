"""tilewise:stacsearch in real QGIS, against ``rustac serve`` (a STAC API) and nginx (COG assets over HTTP,
range requests) started on 127.0.0.1: processing.run, qgis_process, errors, and a Graphical Modeler model
stacsearch -> temporalmedian (masked by SCL) whose COG equals numpy on the same pixels."""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingModelAlgorithm, QgsRasterLayer, QgsVectorLayer

from conftest import ENGINE_PYTHON, PLUGINS_DIR, REPO
from twtest import read_raster, run, write_raster

sys.path.append(str(REPO / "tests" / "engine"))   # the servers and the test catalogue (no rasterio there)
import stacdata  # noqa: E402
from servers import Nginx, Rustac, free_port, rustac_binary  # noqa: E402
from stacdata import INSIDE_A, SCL_MASKED, build_catalogue, median_reference, search_ids  # noqa: E402

MODEL = Path(__file__).resolve().parent / "data" / "stac_search_then_median.model3"
SEASON = "2024-05-01/2024-09-30"
EXTENT_4326 = "{},{},{},{} [EPSG:4326]".format(INSIDE_A[0], INSIDE_A[2], INSIDE_A[1], INSIDE_A[3])


def write_cog(path, data, transform, epsg, nodata):
    a, b, c, d, e, f = transform
    tmp = write_raster(str(path) + ".tmp.tif", data, nodata=nodata, geotransform=(c, a, b, f, d, e), epsg=epsg)
    ds = gdal.Translate(str(path), tmp, format="COG", creationOptions=["COMPRESS=DEFLATE", "BLOCKSIZE=32"])
    if ds is None:
        raise OSError(f"gdal.Translate to COG failed: {gdal.GetLastErrorMsg()}")
    ds = None
    os.remove(tmp)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    with Nginx(www, tmp_path_factory.mktemp("nginx")) as nginx:
        cat = build_catalogue(www, nginx.url, write_cog)
        start = time.perf_counter()
        with Rustac(cat.api_files, tmp_path_factory.mktemp("rustac"), rustac_binary(str(ENGINE_PYTHON))) as api:
            print(f"\nrustac serve started in {time.perf_counter() - start:.2f} s")
            cat.api = api
            yield cat


def search(catalogue, out_dir, **overrides):
    params = {"STAC_API": catalogue.api.url, "COLLECTIONS": "s2-test", "EXTENT": EXTENT_4326, "DATETIME": SEASON,
              "MAX_CLOUD": 40, "ASSETS": "red,nir,scl", "OUTPUT_FOLDER": str(out_dir / "items"),
              "OUTPUT_FOOTPRINTS": str(out_dir / "footprints.gpkg")}
    params.update(overrides)
    return run("tilewise:stacsearch", params)


def expected_ids():
    return search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30", max_cloud=40)


def test_stacsearch_gives_layers_in_date_order_and_footprints(catalogue, out_dir):
    result = search(catalogue, out_dir)
    ids = expected_ids()
    assert len(ids) == 4
    assert result["OUTPUT_LAYERS"] == [str(out_dir / "items" / f"{i}.vrt") for i in ids]
    assert result["OUTPUT_FOLDER"] == str(out_dir / "items") and result["ITEM_COUNT"] == 4
    layer = QgsRasterLayer(result["OUTPUT_LAYERS"][0], "first")
    assert layer.isValid() and layer.bandCount() == 3 and layer.crs().authid() == "EPSG:32633"
    red = read_raster(result["OUTPUT_LAYERS"][0], band=1)
    np.testing.assert_array_equal(red.array, catalogue.scenes[ids[0]].red)
    scl = read_raster(result["OUTPUT_LAYERS"][0], band=3)
    np.testing.assert_array_equal(scl.array, catalogue.scenes[ids[0]].scl_10m())

    footprints = QgsVectorLayer(result["OUTPUT_FOOTPRINTS"], "footprints", "ogr")
    assert footprints.isValid() and footprints.crs().authid() == "EPSG:4326"
    features = list(footprints.getFeatures())
    assert [f["id"] for f in features] == ids
    assert [f["layer"] for f in features] == [f"{i}.vrt" for i in ids]
    assert [f["cloud_cover"] for f in features] == [5.0, 15.0, 30.0, 2.0]
    assert features[0]["asset_scl"] == catalogue.asset_url(f"{ids[0]}_scl.tif")
    assert features[0].geometry().isMultipart() and features[0].geometry().area() > 0
    assert sorted(os.listdir(out_dir / "items")) == sorted(
        [f"{i}.vrt" for i in ids] + ["footprints.geojson", "items.json", "search.json"])


def test_extent_in_another_crs_is_sent_in_degrees(catalogue, out_dir):
    """The same area in Web Mercator finds the same items."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle
    transform = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                       QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance())
    rect = transform.transformBoundingBox(QgsRectangle(*INSIDE_A))
    extent = f"{rect.xMinimum()},{rect.xMaximum()},{rect.yMinimum()},{rect.yMaximum()} [EPSG:3857]"
    result = search(catalogue, out_dir, EXTENT=extent)
    assert [Path(p).stem for p in result["OUTPUT_LAYERS"]] == expected_ids()


def test_common_names_and_groups(catalogue, out_dir):
    result = search(catalogue, out_dir, COLLECTIONS="s2-pc", EXTENT=None, MAX_CLOUD=None, ASSETS="red,scl")
    assert [Path(p).stem for p in result["OUTPUT_LAYERS"]] == ["pc-20240602-A", "pc-20240712-A"]
    grouped = search(catalogue, out_dir, EXTENT=None, MAX_CLOUD=10, GROUP_BY=1,
                     OUTPUT_FOLDER=str(out_dir / "passes"), OUTPUT_FOOTPRINTS="memory:")
    assert [Path(p).stem for p in grouped["OUTPUT_LAYERS"]] == [
        "s2-test_2024-05-03_sentinel-2a_22", "s2-test_2024-07-12_sentinel-2a_22", "s2-test_2024-07-12_sentinel-2a_79"]
    assert read_raster(grouped["OUTPUT_LAYERS"][0]).width == 2 * stacdata.SIDE


@pytest.mark.parametrize("case", ["unreachable", "empty", "missing asset", "no assets"])
def test_failures_are_one_clear_message(catalogue, out_dir, case):
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    overrides = {
        "unreachable": {"STAC_API": nowhere},
        "empty": {"DATETIME": "2010-01-01/2010-12-31"},
        "missing asset": {"COLLECTIONS": "s2-broken", "EXTENT": None, "MAX_CLOUD": None},
        "no assets": {"ASSETS": " , "},
    }[case]
    expected = {
        "unreachable": f"Cannot reach the STAC catalogue at {nowhere}: Connection refused.",
        "empty": f"No STAC item matches the search in {catalogue.api.url} (collections s2-test;",
        "missing asset": f"The asset red (red) of item {stacdata.BROKEN} cannot be read. Input not found: "
                         f"{catalogue.asset_url('no_such_file_red.tif')} (HTTP 404 Not Found).",
        "no assets": "No assets were given",
    }[case]
    with pytest.raises(QgsProcessingException) as info:
        search(catalogue, out_dir, **overrides)
    message = str(info.value)
    assert message.startswith(expected) and "\n" not in message.strip(), message
    assert not (out_dir / "items").exists()


def test_qgis_process_runs_stacsearch(catalogue, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from qgis_process import run_algorithm
    out = tmp_path / "items"
    proc = run_algorithm("tilewise:stacsearch", [
        ("STAC_API", catalogue.api.url), ("COLLECTIONS", "s2-test"), ("EXTENT", EXTENT_4326), ("DATETIME", SEASON),
        ("MAX_CLOUD", "40"), ("ASSETS", "red,nir,scl"), ("OUTPUT_FOLDER", str(out)),
        ("OUTPUT_FOOTPRINTS", str(tmp_path / "footprints.geojson"))], str(PLUGINS_DIR), str(tmp_path / "profile"),
        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.stem for p in out.glob("*.vrt")) == sorted(expected_ids())
    assert QgsVectorLayer(str(tmp_path / "footprints.geojson"), "f", "ogr").featureCount() == 4


# -- the model ---------------------------------------------------------------------------------------------

def test_model_file_chains_stacsearch_into_temporalmedian():
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), MODEL
    children = model.childAlgorithms()
    assert children["search"].algorithmId() == "tilewise:stacsearch"
    assert children["median"].algorithmId() == "tilewise:temporalmedian"
    source = children["median"].parameterSources()["INPUT"][0]
    assert (source.outputChildId(), source.outputName()) == ("search", "OUTPUT_LAYERS")
    ok, errors = model.validate()
    assert ok, errors


def test_model_median_of_a_search_equals_numpy(catalogue, out_dir):
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL))
    output = str(out_dir / "median.tif")
    result = run(model, {"stac_api": catalogue.api.url, "collections": "s2-test", "extent": EXTENT_4326,
                         "datetime": SEASON, "max_cloud": 40, "median:median": output,
                         "search:items": str(out_dir / "items"), "search:footprints": str(out_dir / "fp.geojson")})
    assert result["median:median"] == output
    ids = expected_ids()
    expected = median_reference([catalogue.scenes[i] for i in ids], SCL_MASKED)
    assert 0 < np.isnan(expected).mean() < 0.1                 # some pixels have no clear observation
    for band in (1, 2):
        out = read_raster(output, band)
        assert (out.width, out.height, out.count) == (stacdata.SIDE, stacdata.SIDE, 2)
        reference = expected[band - 1]
        np.testing.assert_array_equal(out.array == out.nodata, np.isnan(reference))
        valid = ~np.isnan(reference)
        np.testing.assert_array_equal(out.array[valid], reference[valid].astype(np.float32))
    assert QgsVectorLayer(str(out_dir / "fp.geojson"), "f", "ogr").featureCount() == len(ids)
    ds = gdal.Open(output)
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    ds = None


# -- issue 26: the user's files in the output folder, local files from a remote catalogue --------------------------

def test_files_tilewise_did_not_write_are_refused_unless_replace_is_checked(catalogue, out_dir):
    folder = out_dir / "items"
    folder.mkdir()
    (folder / "items.json").write_text("my own items")
    with pytest.raises(QgsProcessingException) as info:
        search(catalogue, out_dir)
    message = str(info.value)
    assert message.startswith(f"The output folder {folder} already holds items.json, which no Tilewise search there "
                              "wrote"), message
    assert "OVERWRITE in QGIS" in message and "\n" not in message.strip()
    assert (folder / "items.json").read_text() == "my own items" and sorted(os.listdir(folder)) == ["items.json"]
    result = search(catalogue, out_dir, OVERWRITE=True)
    assert [Path(p).stem for p in result["OUTPUT_LAYERS"]] == expected_ids()
    assert (folder / "items.json").read_text() != "my own items"


def test_a_remote_catalogue_pointing_at_a_local_file_is_refused(out_dir, tmp_path):
    import json
    from hostile import ScriptedServer  # noqa: E402  (standard library only)
    secret = tmp_path / "secret.tif"
    secret.write_text("SECRET-CONTENT")
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "local", "collection": "c",
            "geometry": {"type": "Point", "coordinates": [15, 45]}, "bbox": [15, 45, 15, 45],
            "properties": {"datetime": "2024-05-03T10:00:00Z"}, "links": [],
            "assets": {"red": {"href": secret.as_uri(), "type": "image/tiff"}}}
    body = json.dumps({"type": "FeatureCollection", "features": [item]}).encode()
    with ScriptedServer({"/ic.json": (200, {"Content-Type": "application/json"}, body)}) as server:
        url = f"{server.url}/ic.json"
        with pytest.raises(QgsProcessingException) as info:
            run("tilewise:stacsearch", {"STAC_API": url, "COLLECTIONS": "c", "ASSETS": "red",
                                        "OUTPUT_FOLDER": str(out_dir / "items"), "OUTPUT_FOOTPRINTS": "memory:"})
    message = str(info.value)
    assert message.startswith(f"No item of {url} can be used: their assets point at addresses the catalogue may not "
                              f"make Tilewise read (item local: asset {secret.as_uri()} (it is not a remote "
                              "address"), message
    assert "SECRET-CONTENT" not in message and not (out_dir / "items").exists()

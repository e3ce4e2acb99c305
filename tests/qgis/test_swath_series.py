"""Swath scenes as the series of the raster algorithms in real QGIS (tilewise:gapfill, tilewise:mosaic), and the
issue's model: extraction over 10 swath scenes, then the plot of each station's series. The products are
written by the engine's Python with tests/engine/swathdata.py (netCDF4 is a test package of the engine)."""

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal
from qgis.core import (QgsApplication, QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingException,
                       QgsProcessingModelAlgorithm, QgsVectorLayer)

from twtest import run, write_raster

ENGINE_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine")
MODEL = Path(__file__).resolve().parent / "data" / "swath_extract_then_plot.model3"
CELL = 0.002
#: Ten scenes over two months (out of date order in the list), each rotated and shifted a little.
DAYS = (20, 2, 9, 14, 27, 5, 30, 17, 11, 24)
WRITE = """
import json, sys
import numpy as np
import swathdata as sd
folder, days = sys.argv[1], [int(d) for d in sys.argv[2].split(",")]
paths = [sd.write_olci_product(folder, stamp=f"202405{d:02d}T100000", seed=d, rotation=10 + k, lon0=-60.0 + 0.004 * k,
                               fill_cols=0) for k, d in enumerate(days)]
lat, lon = sd.geolocation_truth(paths[0])
chl = [float(sd.read_truth(p, "chl_nn.nc", "CHL_NN")[10, 12]) for p in paths]
print(json.dumps({"paths": paths, "points": [[float(lon[10, 12]), float(lat[10, 12])],
                                             [float(lon[40, 30]), float(lat[40, 30])]],
                  "extent": [float(np.nanmin(lon)), float(np.nanmax(lon)), float(np.nanmin(lat)),
                             float(np.nanmax(lat))]}))
"""


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3-series")
    env = dict(os.environ, PYTHONPATH=ENGINE_TESTS)
    proc = subprocess.run([os.environ["TILEWISE_PYTHON"], "-c", WRITE, str(folder), ",".join(map(str, DAYS))],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "No module named 'netCDF4'" in proc.stderr:
        pytest.skip("netCDF4 (the test extra) is not installed in the engine's Python")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def grid(products):
    x0, x1, y0, y1 = (round(v / CELL) * CELL for v in products["extent"])
    return (x0, x1, y0, y1)


def stations(points):
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=station:string", "stations", "memory")
    features = []
    for i, (x, y) in enumerate(points):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        f.setAttributes([f"s{i}"])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    return layer


def test_gapfill_of_safe_folders_equals_the_engine_cli(products, tmp_path):
    """tilewise:gapfill grids the scenes (EXTENT, CELL_SIZE) and fills the gridded series: its pixels are the
    engine CLI's (whose gridding and filling the engine tests check against gdalwarp -geoloc)."""
    x0, x1, y0, y1 = grid(products)
    scenes = products["paths"][:5]
    out = str(tmp_path / "filled.tif")
    result = run("tilewise:gapfill", {"INPUT": scenes, "VARIABLES": "CHL_NN", "MASK_FLAGS": "CLOUD", "EDGES": 1,
                                      "EXTENT": f"{x0},{x1},{y0},{y1} [EPSG:4326]", "TARGET_CRS": "EPSG:4326",
                                      "CELL_SIZE": CELL, "OUTPUT": out})
    assert result["OUTPUT"] == out
    cli = str(tmp_path / "cli.tif")
    proc = subprocess.run([os.environ["TILEWISE_PYTHON"], "-m", "tilewise", "gapfill", "--variables", "CHL_NN",
                           "--mask-flags", "CLOUD", "--edges", "nearest", "--extent", str(x0), str(y0), str(x1),
                           str(y1), "--crs", "EPSG:4326", "--cell-size", str(CELL), "-o", cli, "-q", *scenes],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    a, b = gdal.Open(out), gdal.Open(cli)
    assert a.GetGeoTransform() == b.GetGeoTransform() and a.RasterCount == b.RasterCount == 5
    assert [a.GetRasterBand(i).GetDescription() for i in range(1, 6)] == \
        [f"2024-05-{d:02d}" for d in sorted(DAYS[:5])]                       # date order, from the product names
    mine, theirs = a.ReadAsArray(), b.ReadAsArray()
    nodata = a.GetRasterBand(1).GetNoDataValue()
    assert (mine == theirs).all() and (mine != nodata).sum() > 5 * 3000
    a = b = None
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tilewise-swath-")]


def test_mosaic_of_safe_folders(products, tmp_path):
    x0, x1, y0, y1 = grid(products)
    out = str(tmp_path / "mosaic.tif")
    run("tilewise:mosaic", {"INPUT": products["paths"][:3], "VARIABLES": "CHL_NN", "OVERLAP": 3,
                            "EXTENT": f"{x0},{x1},{y0},{y1} [EPSG:4326]", "CELL_SIZE": CELL, "OUTPUT": out})
    ds = gdal.Open(out)
    band = ds.GetRasterBand(1)
    values = band.ReadAsArray()
    assert ds.RasterCount == 1 and (values == values).sum() > 3000 and float(values[values == values].max()) > 0.5
    ds = band = None


def test_wrong_swath_series_get_one_message(products, tmp_path):
    raster = write_raster(tmp_path / "r.tif", [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(QgsProcessingException, match="mix swath scenes"):
        run("tilewise:gapfill", {"INPUT": [products["paths"][0], raster], "OUTPUT": str(tmp_path / "f.tif")})
    x0, x1, y0, y1 = grid(products)
    with pytest.raises(QgsProcessingException, match="takes one variable: name it in VARIABLES"):
        run("tilewise:gapfill", {"INPUT": products["paths"][:2], "EXTENT": f"{x0},{x1},{y0},{y1} [EPSG:4326]",
                                 "CELL_SIZE": CELL, "OUTPUT": str(tmp_path / "f.tif")})
    with pytest.raises(QgsProcessingException, match="give the target EXTENT"):
        run("tilewise:gapfill", {"INPUT": products["paths"][:2], "VARIABLES": "CHL_NN",
                                 "OUTPUT": str(tmp_path / "f.tif")})
    for algorithm, key in (("tilewise:index", "INPUT"), ("tilewise:bandmath", "LAYERS"), ("tilewise:chips", "INPUT")):
        with pytest.raises(QgsProcessingException, match="is a swath scene .* reads bands of rasters. Grid it first"):
            run(algorithm, {key: [products["paths"][0]], "RED_BAND": 1, "NIR_BAND": 1, "BANDS": "A=1",
                            "EXPRESSION": "A * 2", "ZONES": stations([(-59.9, -3.1)]),
                            "OUTPUT": str(tmp_path / "i.tif"), "OUTPUT_FOLDER": str(tmp_path / "chips")})
    assert sorted(os.listdir(tmp_path)) == ["r.tif"]


# -- the model: extract over 10 scenes, then a plot ---------------------------------------------------------------

def load_model():
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), MODEL
    return model


def test_model_file_extracts_then_plots():
    model = load_model()
    assert model.name() == "swath_extract_then_plot"
    (child,) = model.childAlgorithms().values()
    assert child.algorithmId() == "tilewise:extract"
    assert sorted(o.childOutputName() for o in child.modelOutputs().values()) == ["OUTPUT", "OUTPUT_PLOT"]
    ok, errors = model.validate()
    assert ok, errors


@pytest.fixture
def model_provider(tmp_path):
    """The model installed in a Processing models folder, as a user saves it from the Modeler."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from processing.modeler.ModelerUtils import ModelerUtils
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(MODEL, folder)
    previous = ProcessingConfig.getSetting(ModelerUtils.MODELS_FOLDER)
    ProcessingConfig.setSettingValue(ModelerUtils.MODELS_FOLDER, str(folder))
    provider = QgsApplication.processingRegistry().providerById("model")
    provider.refreshAlgorithms()
    yield "model:swath_extract_then_plot"
    ProcessingConfig.setSettingValue(ModelerUtils.MODELS_FOLDER, previous)
    provider.refreshAlgorithms()


@pytest.mark.parametrize("how", ["from file", "model provider"])
def test_model_extracts_ten_scenes_then_plots(how, products, tmp_path, request):
    algorithm = load_model() if how == "from file" else request.getfixturevalue("model_provider")
    table, plot = str(tmp_path / "series.csv"), str(tmp_path / "series.html")
    manifests = [os.path.join(p, "xfdumanifest.xml") for p in products["paths"]]
    result = run(algorithm, {"scenes": manifests, "stations": stations(products["points"]), "id_field": "station",
                             "variables": "CHL_NN,Oa08_reflectance", "extract:series": table,
                             "extract:plot": plot})
    assert (result["extract:series"], result["extract:plot"]) == (table, plot)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 10 * 2, rows[:1]                           # stations x scenes x variables
    assert list(rows[0])[:3] == ["station", "source", "date"], list(rows[0])
    dates = [f"2024-05-{d:02d}" for d in sorted(DAYS)]
    assert [r["date"] for r in rows if r["station"] == "s0" and r["variable"] == "CHL_NN"] == dates
    text = Path(plot).read_text(encoding="utf-8")
    data = json.loads(re.search(r"const D = (\{.*?\});\n", text, re.S).group(1))
    assert data["x"] == dates and data["points"] and [b["name"] for b in data["bands"]] == \
        ["CHL_NN", "Oa08_reflectance"]
    assert len(data["features"]) == 2 and data["sources"][0].startswith("S3A_OL_2_WFR____20240502T100000")
    want = [float(r["value"]) if r["value"] else None for r in rows
            if r["station"] == "s0" and r["variable"] == "CHL_NN"]
    assert data["features"][0]["b"][0]["m"] == pytest.approx(want, rel=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["models", "series.csv", "series.html"] if how == "model provider" \
        else sorted(os.listdir(tmp_path)) == ["series.csv", "series.html"]

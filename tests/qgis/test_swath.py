"""``tilewise:extract`` on Sentinel-3 swath scenes in real QGIS: SAFE folders, manifests and netCDF files as
the input series, through processing.run and qgis_process. The products are written by the engine's Python
(netCDF4 is a test package of the engine, not of QGIS's Python), with tests/engine/swathdata.py."""

import csv
import json
import os
import subprocess

import pytest

from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingException, QgsVectorLayer

from test_qgis_process import qgis_process  # noqa: F401 (the fixture)
from twtest import run

ALG = "tilewise:extract"
ENGINE_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine")
WRITE = """
import json, sys
import swathdata as sd
folder = sys.argv[1]
paths = [sd.write_olci_product(folder, stamp=s, seed=k) for k, s in enumerate(["20240520T101010", "20240514T134512"])]
lat, lon = sd.geolocation_truth(paths[0])
print(json.dumps({"paths": paths, "points": [[float(lon[10, 12]), float(lat[10, 12])],
                                             [float(lon[27, 30]), float(lat[27, 30])]],
                  "chl": [float(v) for v in sd.read_truth(paths[0], "chl_nn.nc", "CHL_NN")[[10, 27], [12, 30]]]}))
"""


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3-products")
    env = dict(os.environ, PYTHONPATH=ENGINE_TESTS)
    proc = subprocess.run([os.environ["TILEWISE_PYTHON"], "-c", WRITE, str(folder)], env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0 and "No module named 'netCDF4'" in proc.stderr:
        pytest.skip("netCDF4 (the test extra) is not installed in the engine's Python")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def stations(points):
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=station:string", "stations", "memory")
    features = []
    for i, (x, y) in enumerate(points + [[20.0, 10.0]]):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        f.setAttributes([f"s{i}"])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    return layer


def test_processing_run_with_safe_folders(products, tmp_path):
    out = str(tmp_path / "ts.csv")
    result = run(ALG, {"INPUT": products["paths"], "ZONES": stations(products["points"]), "ID_FIELD": "station",
                       "VARIABLES": "CHL_NN", "LAYOUT": 1, "ANGLES": True, "OUTPUT": out})
    assert result["OUTPUT"] == out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["station"] for r in rows] == ["s0", "s0", "s1", "s1", "s2", "s2"]
    assert [r["date"] for r in rows[:2]] == ["2024-05-14", "2024-05-20"]      # date order, from the names
    assert (rows[1]["row"], rows[1]["col"]) == ("10", "12") and (rows[3]["row"], rows[3]["col"]) == ("27", "30")
    assert float(rows[1]["value"]) == pytest.approx(products["chl"][0], rel=1e-6)
    assert rows[4]["value"] == "" and rows[4]["reason"] == "outside the swath"
    assert float(rows[1]["sza"]) == pytest.approx(30 + 0.01 * 10 + 0.02 * 12, abs=1e-5) and rows[4]["sza"] == ""


def test_processing_run_with_manifests_and_netcdf_files_and_flags(products, tmp_path):
    out = str(tmp_path / "ts.gpkg")
    manifests = [os.path.join(p, "xfdumanifest.xml") for p in products["paths"]]
    result = run(ALG, {"INPUT": manifests, "ZONES": stations(products["points"]), "VARIABLES": "CHL_NN",
                       "MASK_FLAGS": "CLOUD", "MAX_DISTANCE": 500, "OUTPUT": out})
    layer = QgsVectorLayer(result["OUTPUT"], "ts", "ogr")
    assert layer.isValid() and layer.featureCount() == 3          # wide: one feature per station
    names = layer.fields().names()
    assert "d20240514_CHL_NN_value" in names and "d20240520_row" in names
    values = {f["station"]: f["d20240514_CHL_NN_value"] for f in layer.getFeatures()}
    assert values["s0"] == pytest.approx(products["chl"][0], rel=1e-6)
    assert values["s1"] is None or values["s1"] != values["s1"] or str(values["s1"]) == "NULL"   # row 27: CLOUD
    files = [os.path.join(p, "chl_nn.nc") for p in products["paths"]]
    out2 = str(tmp_path / "ts2.csv")
    run(ALG, {"INPUT": files, "ZONES": stations(products["points"]), "VARIABLES": "CHL_NN", "LAYOUT": 1,
              "OUTPUT": out2})
    with open(out2, newline="") as f:
        assert len(list(csv.DictReader(f))) == 6


def test_folder_that_is_not_safe_is_one_message(products, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(QgsProcessingException, match="plain is not a SAFE product"):
        run(ALG, {"INPUT": [str(plain)], "ZONES": stations(products["points"]), "OUTPUT": str(tmp_path / "x.csv")})
    assert not (tmp_path / "x.csv").exists()


def test_temporal_median_of_safe_folders(products, tmp_path):
    """The composite grids the scenes first (EXTENT, CELL_SIZE): its pixels are the engine CLI's."""
    xs, ys = zip(*products["points"])
    extent = (min(xs) - 0.05, max(xs) + 0.05, min(ys) - 0.05, max(ys) + 0.05)
    out = str(tmp_path / "median.tif")
    run("tilewise:temporalmedian", {"INPUT": products["paths"], "VARIABLES": "CHL_NN", "MASK_FLAGS": "CLOUD",
                                    "EXTENT": f"{extent[0]},{extent[1]},{extent[2]},{extent[3]} [EPSG:4326]",
                                    "TARGET_CRS": "EPSG:4326", "CELL_SIZE": 0.002, "OUTPUT": out})
    cli = str(tmp_path / "cli.tif")
    env = dict(os.environ)
    proc = subprocess.run([os.environ["TILEWISE_PYTHON"], "-m", "tilewise", "composite", "--variables", "CHL_NN",
                           "--mask-flags", "CLOUD", "--extent", str(extent[0]), str(extent[2]), str(extent[1]),
                           str(extent[3]), "--crs", "EPSG:4326", "--cell-size", "0.002", "-o", cli, "-q",
                           *products["paths"]], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from osgeo import gdal
    a, b = gdal.Open(out), gdal.Open(cli)
    assert a.GetGeoTransform() == b.GetGeoTransform() and a.RasterCount == 1
    mine, theirs = a.ReadAsArray(), b.ReadAsArray()
    assert (mine == theirs).all() and (mine != a.GetRasterBand(1).GetNoDataValue()).sum() > 1000
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tilewise-swath-")]


def test_qgis_process_with_safe_folders(products, qgis_process, tmp_path):  # noqa: F811 (the fixture)
    zones = tmp_path / "stations.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"station": f"s{i}"}, "geometry": {"type": "Point", "coordinates": xy}}
        for i, xy in enumerate(products["points"])]}))
    out = tmp_path / "ts.csv"
    proc = qgis_process("run", ALG, "--json", "--", *[f"INPUT={p}" for p in products["paths"]], f"ZONES={zones}",
                        "ID_FIELD=station", "VARIABLES=CHL_NN", "MASK_PRESET=3", "LAYOUT=1", f"OUTPUT={out}",
                        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["results"]["OUTPUT"] == str(out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["source"].startswith("S3A_OL_2_WFR____20240514T134512")
    assert {r["reason"] for r in rows} <= {"", "flagged"}

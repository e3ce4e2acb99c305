"""OUTPUT_PLOT of a swath extraction: the page's series are the table's (whatever its layout), in date order,
its dates the scenes'; a wrong plot path is one message before any work. The page loads in Chromium."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

import swathdata as sd
from support import leftovers, subprocess_env
from tilewise.core.errors import OutputError, TilewiseWarning
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.extract.run import extract

pytest.importorskip("netCDF4")
STAMPS = ("20240520T101010", "20240514T134512", "20240602T093000")


def page_data(path):
    text = open(path, encoding="utf-8").read()
    return json.loads(re.search(r"const D = (\{.*?\});\n", text, re.S).group(1))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot")
    paths = [sd.write_olci_product(str(folder), stamp=s, seed=k) for k, s in enumerate(STAMPS)]
    tlat, tlon = sd.geolocation_truth(paths[0])
    lake = shapely.Polygon([(tlon[i, j], tlat[i, j]) for i, j in ((30, 20), (30, 40), (50, 40), (50, 20))])
    zones = zones_from_geometries([shapely.Point(tlon[10, 12], tlat[10, 12]), lake, shapely.Point(20.0, 10.0)],
                                  "EPSG:4326")
    return folder, paths, zones


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_plot_of_polygons_and_points_is_the_long_table(scenes, tmp_path, layout):
    folder, paths, zones = scenes
    out, plot = tmp_path / "ts.parquet", tmp_path / "ts.html"
    with pytest.warns(TilewiseWarning, match="1 of 3 features") as caught:
        report = extract(paths, zones, str(out), "mean,std,count", variables="CHL_NN,Oa08_reflectance",
                         output_plot=str(plot), layout=layout, workers=1)
    assert len([w for w in caught if "features of the zones layer" in str(w.message)]) == 1   # not again for the plot
    assert report.outputs == (str(out), str(plot))
    data = page_data(plot)
    assert data["x"] == ["2024-05-14", "2024-05-20", "2024-06-02"] and data["dated"]
    assert [b["name"] for b in data["bands"]] == ["CHL_NN", "Oa08_reflectance"]
    assert data["sources"][0] == sd.product_name("20240514T134512")
    assert [f["id"] for f in data["features"]] == ["0", "1", "2"] and data["total"] == 3
    if layout == "wide":
        return
    t = pq.read_table(out).to_pandas()
    for f, feature in enumerate(data["features"]):
        for b, variable in enumerate(["CHL_NN", "Oa08_reflectance"]):
            rows = t[(t.feature_id == f) & (t.variable == variable)]
            assert rows.date.astype(str).tolist() == data["x"]
            want = rows["mean"].to_numpy()
            got = np.array([np.nan if v is None else v for v in feature["b"][b]["m"]])
            np.testing.assert_allclose(got, want, rtol=1e-5)
            np.testing.assert_array_equal(feature["b"][b]["v"], rows.n_valid.tolist())
            np.testing.assert_allclose(np.array([np.nan if v is None else v for v in feature["b"][b]["e"]]),
                                       rows["std"].to_numpy(), rtol=1e-5)
    assert data["features"][1]["b"][0]["v"][0] > 100             # the lake: many pixels
    assert data["features"][2]["b"][0]["m"] == [None, None, None]  # outside every scene


def test_plot_of_points_only_gives_values(scenes, tmp_path):
    folder, paths, zones = scenes
    points = zones_from_geometries([zones.geometry[0]], "EPSG:4326")
    plot = tmp_path / "p.html"
    extract(paths, points, str(tmp_path / "p.csv"), variables="CHL_NN", output_plot=str(plot), workers=1)
    data = page_data(plot)
    assert data["points"] and data["statistic"] == "value" and "e" not in data["features"][0]["b"][0]
    truth = sd.read_truth(paths[0], "chl_nn.nc", "CHL_NN")[10, 12]
    assert data["features"][0]["b"][0]["m"][1] == pytest.approx(float(truth), rel=1e-5)   # 2024-05-14 is paths[0]


def test_a_wrong_plot_is_one_message_before_any_work(scenes, tmp_path):
    folder, paths, zones = scenes
    out = tmp_path / "ts.csv"
    with pytest.raises(OutputError, match="is an HTML page: give it a .html name"):
        extract(paths, zones, str(out), output_plot=str(tmp_path / "plot.png"))
    with pytest.raises(OutputError, match="does not exist"):
        extract(paths, zones, str(out), output_plot=str(tmp_path / "nowhere" / "plot.html"))
    assert leftovers(out) == [] and list(tmp_path.iterdir()) == []


def test_cli_plot_of_swath_extraction_loads_in_chromium(scenes, tmp_path):
    folder, paths, zones = scenes
    shapely_zones = tmp_path / "z.geojson"
    shapely_zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": n}, "geometry": shapely.geometry.mapping(g)}
        for n, g in zip(["buoy", "lake", "far"], zones.geometry)]}))
    proc = subprocess.run([sys.executable, "-m", "tilewise", "extract", "-z", str(shapely_zones), "--id-field", "name",
                           "--variables", "CHL_NN", "-o", "ts.csv", "--plot", "ts.html", "-q", *paths], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [f["id"] for f in page_data(tmp_path / "ts.html")["features"]] == ["buoy", "lake", "far"]
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed")
    from test_plot import chromium, console
    page = tmp_path / "ts.html"
    dom, stderr = chromium("--dump-dom", page.as_uri())
    assert console(stderr, page) == [], console(stderr, page)
    assert "buoy" in re.search(r'<div id="note">(.*?)</div>', dom).group(1)

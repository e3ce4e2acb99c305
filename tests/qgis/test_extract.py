"""``tilewise:extract`` in real QGIS: processing.run and qgis_process. Points: nearest equals QGIS's own
``native:rastersampling``, bilinear equals ``gdalwarp -r bilinear``; a memory layer of zones in another CRS;
the table QGIS loads has NULLs for no data; the parameter indices models store."""

import json
import os

import numpy as np
import pytest
from osgeo import gdal

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsField, QgsGeometry,
                       QgsPointXY, QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsVectorLayer,
                       QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant

from test_qgis_process import qgis_process  # noqa: F401 (the fixture)
from twtest import UTM33_10M, run, write_raster

SHAPE = (60, 80)
ALG = "tilewise:extract"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two float32 scenes (nodata -9999, holes) dated in their names, and their arrays."""
    folder = tmp_path_factory.mktemp("extract-scenes")
    rng = np.random.default_rng(4)
    paths, arrays = [], []
    for name in ("s2_2021-06-11", "s2_2021-05-02"):
        a = rng.normal(500, 120, SHAPE).astype(np.float32)
        a[rng.random(SHAPE) < 0.1] = -9999.0
        arrays.append(a)
        paths.append(write_raster(folder / f"{name}.tif", a, nodata=-9999.0))
    return paths, arrays


def point_layer(xy, crs="EPSG:32633", fields=True):
    layer = QgsVectorLayer(f"Point?crs={crs}", "points", "memory")
    provider = layer.dataProvider()
    if fields:
        provider.addAttributes([QgsField("plot", QVariant.String)])
        layer.updateFields()
    features = []
    for i, (x, y) in enumerate(xy):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        if fields:
            f.setAttributes([f"p{i}"])
        features.append(f)
    provider.addFeatures(features)
    return layer


def random_points(rng, n, margin=0.0):
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    xs = x0 + rng.uniform(-margin, SHAPE[1] * 10 + margin, n)
    ys = y1 - rng.uniform(-margin, SHAPE[0] * 10 + margin, n)
    return list(zip(xs.tolist(), ys.tolist()))


def read_long(path):
    layer = QgsVectorLayer(str(path), "ts", "ogr")
    assert layer.isValid(), path
    rows = []
    for f in layer.getFeatures():
        rows.append({name: (None if f[name] is None or (hasattr(f[name], "isNull") and f[name].isNull())
                            else f[name]) for name in layer.fields().names()})
    return layer, rows


def test_points_nearest_equal_rastersampling(scenes, tmp_path):
    paths, arrays = scenes
    rng = np.random.default_rng(1)
    points = point_layer(random_points(rng, 150, margin=30))        # some outside the rasters
    out = tmp_path / "points.gpkg"
    result = run(ALG, {"INPUT": paths, "ZONES": points, "ID_FIELD": "plot", "LAYOUT": 1, "OUTPUT": str(out),
                       "TILE_SIZE": 16, "WORKERS": 2})
    assert result["OUTPUT"] == str(out)
    layer, rows = read_long(out)
    assert layer.wkbType() == QgsWkbTypes.NoGeometry
    assert layer.fields().names()[1:] == ["plot", "source", "date", "band", "value"]
    # date order: the 2021-05-02 scene first, for each point
    assert [r["source"] for r in rows[:2]] == ["s2_2021-05-02", "s2_2021-06-11"]
    ours = {(r["plot"], r["source"]): r["value"] for r in rows}
    compared = nulls = 0
    for path in paths:
        source = os.path.splitext(os.path.basename(path))[0]
        sampled = run("native:rastersampling", {"INPUT": points, "RASTERCOPY": path, "COLUMN_PREFIX": "v_",
                                                "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
        for f in sampled.getFeatures():
            theirs = f["v_1"]
            theirs = None if theirs is None or (hasattr(theirs, "isNull") and theirs.isNull()) else float(theirs)
            mine = ours[(f["plot"], source)]
            if theirs is None:
                assert mine is None, (f["plot"], source)
                nulls += 1
            else:
                assert mine == pytest.approx(theirs, rel=1e-7), (f["plot"], source)   # float32 values
                compared += 1
    assert compared > 200 and nulls > 10


def test_points_bilinear_equal_gdalwarp(scenes, tmp_path):
    """gdalwarp -r bilinear onto a shifted lattice: its pixel centres, given as points in WGS 84."""
    paths, arrays = scenes
    a = np.where(arrays[0] == -9999.0, 0.0, arrays[0]).astype(np.float32)   # no holes: see the engine's test
    image = write_raster(tmp_path / "full.tif", a)
    res, left, top = 7.3, UTM33_10M[0] + 13.1, UTM33_10M[3] - 9.7
    width, height = 90, 60
    warped = tmp_path / "gdal.tif"
    ds = gdal.Warp(str(warped), image, resampleAlg="bilinear", outputBounds=(left, top - res * height,
                   left + res * width, top), width=width, height=height, outputType=gdal.GDT_Float64,
                   dstNodata=-1e30, errorThreshold=0)
    want = ds.GetRasterBand(1).ReadAsArray().astype(float)
    ds = None
    rows, cols = np.mgrid[0:height, 0:width]
    xs, ys = left + (cols.ravel() + 0.5) * res, top - (rows.ravel() + 0.5) * res
    to_wgs = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32633"),
                                    QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    lonlat = [to_wgs.transform(QgsPointXY(x, y)) for x, y in zip(xs.tolist(), ys.tolist())]
    points = point_layer([(p.x(), p.y()) for p in lonlat], crs="EPSG:4326", fields=False)
    out = tmp_path / "bilinear.csv"
    run(ALG, {"INPUT": [image], "ZONES": points, "POINT_METHOD": 1, "LAYOUT": 1, "OUTPUT": str(out),
              "TILE_SIZE": 16})
    _, got = read_long(out)
    ours = np.array([np.nan if r["value"] in (None, "") else float(r["value"]) for r in got])
    want = np.where(want.ravel() == -1e30, np.nan, want.ravel())
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(want))
    # through WGS 84 and back the points move by ~1e-9 m: values agree to ~1e-6 of their range
    np.testing.assert_allclose(ours[~np.isnan(ours)], want[~np.isnan(want)], rtol=1e-7, atol=1e-4)
    assert np.sum(~np.isnan(want)) > 4000


def test_wide_layer_with_plot_loads_with_nulls(scenes, tmp_path):
    paths, arrays = scenes
    polygons = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string", "fields", "memory")
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    features = []
    for name, wkt in (("in", f"POLYGON(({x0 + 50} {y1 - 50}, {x0 + 250} {y1 - 60}, {x0 + 200} {y1 - 300}, "
                             f"{x0 + 50} {y1 - 50}))"),
                      ("out", f"POLYGON(({x0 - 900} {y1 + 900}, {x0 - 800} {y1 + 900}, {x0 - 800} {y1 + 800}, "
                              f"{x0 - 900} {y1 + 900}))")):
        f = QgsFeature(polygons.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        f.setAttributes([name])
        features.append(f)
    polygons.dataProvider().addFeatures(features)
    out, plot = tmp_path / "wide.gpkg", tmp_path / "plot.html"
    feedback = QgsProcessingFeedback()
    result = run(ALG, {"INPUT": paths, "ZONES": polygons, "ID_FIELD": "name", "STATISTICS": [0, 4, 5, 7],
                       "PERCENTILES": "50", "COVERAGE": 2, "OUTPUT": str(out), "OUTPUT_PLOT": str(plot)},
                 feedback=feedback, context=QgsProcessingContext())
    assert result == {"OUTPUT": str(out), "OUTPUT_PLOT": str(plot)}
    layer = QgsVectorLayer(str(out), "wide", "ogr")
    assert layer.isValid() and layer.featureCount() == 2
    assert QgsWkbTypes.geometryType(layer.wkbType()) == QgsWkbTypes.PolygonGeometry
    names = layer.fields().names()
    assert names[:2] == ["fid", "name"] and "d20210502_b1_mean" in names and "d20210611_b1_p50" in names
    by_name = {f["name"]: f for f in layer.getFeatures()}
    assert by_name["in"]["d20210502_b1_count"] > 100
    missing = by_name["out"]["d20210502_b1_mean"]
    assert missing is None or missing.isNull()
    assert "in" in plot.read_text(encoding="utf-8")


def test_enum_indices_are_the_documented_ones():
    """Models store indices: their order is the issue's and never changes."""
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert params["STATISTICS"].options() == ["mean", "median", "min", "max", "std", "count", "sum", "percentiles"]
    assert params["STATISTICS"].allowMultiple()
    assert [o.split(":")[0] for o in params["COVERAGE"].options()] == ["centre", "all touched", "fractional"]
    assert [o.split(":")[0].split(" ")[0] for o in params["POINT_METHOD"].options()] == ["nearest", "bilinear"]
    assert [o.split(":")[0] for o in params["LAYOUT"].options()] == ["wide", "long"]
    for name in ("INPUT", "BANDS", "INPUT_NODATA", "MASK_BAND", "MASK_LAYERS", "MASK_VALUES", "SCALE", "OFFSET",
                 "ZONES", "ID_FIELD", "POINT_METHOD", "GEOMETRY_MODE", "WINDOW", "PERCENTILES",
                 "MIN_VALID_FRACTION", "DATES", "OUTPUT", "OUTPUT_PLOT"):
        assert name in params, name


def test_a_bad_parameter_is_a_processing_error(scenes, tmp_path):
    from qgis.core import QgsProcessingException
    paths, _ = scenes
    points = point_layer([(UTM33_10M[0] + 15, UTM33_10M[3] - 15)])
    with pytest.raises(QgsProcessingException, match="Mask values, bits or a preset were given but no mask band"):
        run(ALG, {"INPUT": paths, "ZONES": points, "MASK_VALUES": "8,9", "OUTPUT": str(tmp_path / "x.gpkg")})
    assert not (tmp_path / "x.gpkg").exists()


def test_qgis_process_runs_extract(qgis_process, scenes, tmp_path):  # noqa: F811 (the fixture)
    paths, arrays = scenes
    zones = tmp_path / "zones.gpkg"
    layer = point_layer([(UTM33_10M[0] + 15, UTM33_10M[3] - 25), (UTM33_10M[0] + 405, UTM33_10M[3] - 305)])
    from qgis.core import QgsVectorFileWriter
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    error = QgsVectorFileWriter.writeAsVectorFormatV2(layer, str(zones), QgsProject.instance().transformContext(),
                                                      options)
    assert error[0] == QgsVectorFileWriter.NoError, error
    out = tmp_path / "ts.csv"
    proc = qgis_process("run", ALG, "--json", "--", *[f"INPUT={p}" for p in paths], f"ZONES={zones}",
                        "ID_FIELD=plot", "LAYOUT=1", f"OUTPUT={out}", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["results"]["OUTPUT"] == str(out)
    lines = out.read_text().splitlines()
    assert lines[0] == '"plot","source","date","band","value"'
    first = lines[1].split(",")
    assert first[:3] == ['"p0"', '"s2_2021-05-02"', "2021-05-02"]
    assert float(first[4]) == pytest.approx(float(arrays[1][2, 1]), rel=1e-7)


def test_a_crs_set_in_qgis_on_a_shapefile_without_prj(scenes, tmp_path):
    """The zones' CRS is the one QGIS has for the layer, not only the file's."""
    from osgeo import ogr
    paths, arrays = scenes
    to_wgs = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32633"),
                                    QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    cells = [(3, 7), (30, 55)]
    shp = str(tmp_path / "stations.shp")
    ds = ogr.GetDriverByName("ESRI Shapefile").CreateDataSource(shp)
    layer = ds.CreateLayer("stations", None, ogr.wkbPoint)
    for r, c in cells:
        p = to_wgs.transform(QgsPointXY(UTM33_10M[0] + 10 * c + 5, UTM33_10M[3] - 10 * r - 5))
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({p.x()} {p.y()})"))
        layer.CreateFeature(f)
        f = None
    layer = ds = None
    zones = QgsVectorLayer(shp, "stations", "ogr")
    assert zones.isValid() and not zones.crs().isValid()
    zones.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    out = tmp_path / "ts.gpkg"
    run(ALG, {"INPUT": paths[1:], "ZONES": zones, "LAYOUT": 1, "OUTPUT": str(out)})
    _, rows = read_long(out)
    assert [r["value"] for r in rows] == pytest.approx([float(arrays[1][r, c]) for r, c in cells], rel=1e-7)


def test_zones_outside_every_raster_are_a_warning_in_the_log(scenes, tmp_path):
    """Issue 26 A8: a table of nulls does not pass for a result: the warning reaches the feedback."""
    from twtest import messages
    paths, _ = scenes
    away = point_layer([(UTM33_10M[0] - 5000, UTM33_10M[3] + 5000), (UTM33_10M[0] + 90000, UTM33_10M[3])])
    feedback = messages()
    out = tmp_path / "ts.gpkg"
    run(ALG, {"INPUT": paths, "ZONES": away, "LAYOUT": 1, "OUTPUT": str(out)}, feedback=feedback)
    said = [w for w in feedback.warnings if "features of the zones layer" in w]
    assert len(said) == 1 and said[0].startswith("Warning: None of the 2 features of the zones layer ") and \
        "lies on any of the 2 rasters: every value of the output is null." in said[0], feedback.warnings
    _, rows = read_long(out)
    assert len(rows) == 4 and all(r["value"] is None for r in rows)


def test_some_zones_outside_say_how_many(scenes, tmp_path):
    from twtest import messages
    paths, _ = scenes
    zones = point_layer([(UTM33_10M[0] + 15, UTM33_10M[3] - 15), (UTM33_10M[0] - 5000, UTM33_10M[3] + 5000)])
    feedback = messages()
    run(ALG, {"INPUT": paths, "ZONES": zones, "ID_FIELD": "plot", "OUTPUT": str(tmp_path / "ts.gpkg")},
        feedback=feedback)
    said = [w for w in feedback.warnings if "features of the zones layer" in w]
    assert len(said) == 1 and said[0].startswith("Warning: 1 of 2 features of the zones layer ") and \
        said[0].endswith("lie outside every raster: their values are null (plot p1)."), feedback.warnings


def test_metres_in_a_shapefile_labelled_wgs84_is_one_processing_error(scenes, tmp_path):
    """Issue 26 A7: a .prj that says WGS 84 on UTM metres gives a message naming the layer, not PROJ's traceback."""
    from osgeo import ogr, osr
    from qgis.core import QgsProcessingException
    paths, _ = scenes
    shp = str(tmp_path / "fields.shp")
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    ds = ogr.GetDriverByName("ESRI Shapefile").CreateDataSource(shp)
    layer = ds.CreateLayer("fields", wgs84, ogr.wkbPolygon)
    x0, y1 = UTM33_10M[0], UTM33_10M[3]
    f = ogr.Feature(layer.GetLayerDefn())
    f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON (({x0 + 20} {y1 - 20}, {x0 + 120} {y1 - 20}, {x0 + 120} "
                                            f"{y1 - 120}, {x0 + 20} {y1 - 120}, {x0 + 20} {y1 - 20}))"))
    layer.CreateFeature(f)
    f = layer = ds = None
    zones = QgsVectorLayer(shp, "fields", "ogr")
    assert zones.isValid() and zones.crs().authid() == "EPSG:4326"
    out = tmp_path / "ts.gpkg"
    with pytest.raises(QgsProcessingException) as info:
        run(ALG, {"INPUT": paths, "ZONES": zones, "OUTPUT": str(out)})
    message = str(info.value)
    assert "Traceback" not in message and "PROJ" not in message and "Unexpected engine error" not in message, message
    for part in ("fields.shp", "are outside the range of its CRS", "EPSG:4326", f"x from {x0 + 20:.10g}",
                 "Assigned Coordinate Reference System"):
        assert part in message, message
    assert not out.exists()

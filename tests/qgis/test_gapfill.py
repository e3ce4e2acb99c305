"""tilewise:gapfill in real QGIS (processing.run and qgis_process) against numpy per pixel, QA bit masks
against numpy bitwise logic (also in tilewise:temporalmedian), and a model: NDVI per scene -> gap filling ->
tilewise:extract at points."""

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import PLUGINS_DIR
from twtest import Errors, run, write_raster

DATA = Path(__file__).resolve().parent / "data"
MODEL = DATA / "ndvi_scenes_then_gapfill_then_sampling.model3"
SHAPE = (36, 52)
ND = -9999.0
#: Irregular dates (3 to 40 days apart).
DATES = [dt.date(2023, 12, 28) + dt.timedelta(days=int(d)) for d in np.cumsum([0, 3, 19, 40, 8, 11, 27, 5])]
DAYS = np.array([(d - dt.date(1970, 1, 1)).days for d in DATES], np.float64)


def _values(seed=5, gaps=0.35):
    rng = np.random.default_rng(seed)
    v = rng.normal(0.5, 0.2, (len(DATES),) + SHAPE).astype(np.float32)
    v[rng.random(v.shape) < gaps] = np.nan
    v[:, 3:6, 4:9] = np.nan                     # no observation at all
    return v


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """One float32 file per date, named after it, nodata -9999; given in shuffled order."""
    folder = tmp_path_factory.mktemp("gapfill-series")
    values = _values()
    order = np.random.default_rng(1).permutation(len(DATES))
    paths = [write_raster(folder / f"ndvi_{DATES[i]:%Y%m%d}.tif", np.where(np.isnan(values[i]), ND, values[i]),
                          nodata=ND) for i in order]
    return paths, values


def read_all(path):
    """(bands, rows, cols) float64 with NaN for nodata, and the band descriptions."""
    ds = gdal.Open(str(path))
    assert ds is not None, path
    data, names = [], []
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        a = band.ReadAsArray().astype(np.float64)
        if band.GetNoDataValue() is not None and band.DataType != gdal.GDT_Byte:
            a[a == band.GetNoDataValue()] = np.nan
        data.append(a)
        names.append(band.GetDescription())
        band = None
    ds = None
    return np.stack(data), names


def interp_reference(values, days, targets, edges):
    """numpy.interp per pixel through the valid observations; outside them NaN (edges 0) or constant."""
    flat = values.reshape(values.shape[0], -1)
    out = np.full((len(targets), flat.shape[1]), np.nan)
    for p in range(flat.shape[1]):
        ok = ~np.isnan(flat[:, p])
        if ok.any():
            out[:, p] = np.interp(targets, days[ok], flat[ok, p].astype(np.float64))
            if not edges:
                out[(targets < days[ok][0]) | (targets > days[ok][-1]), p] = np.nan
    return out.astype(np.float32).reshape((len(targets),) + values.shape[1:])


def fill_reference(values, method):
    """previous / next / nearest in time per pixel with numpy (edges left empty)."""
    n = values.shape[0]
    idx = np.arange(n)[:, None, None] * np.ones(values.shape, int)
    ok = ~np.isnan(values)
    prev = np.maximum.accumulate(np.where(ok, idx, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(ok, idx, n)[::-1], axis=0)[::-1]
    inside = (prev >= 0) & (nxt < n)
    take = {"previous": prev, "next": nxt}.get(method)
    if take is None:    # nearest: the closer in days, the earlier at a tie
        dprev = DAYS[:, None, None] - DAYS[np.clip(prev, 0, n - 1)]
        dnext = DAYS[np.clip(nxt, 0, n - 1)] - DAYS[:, None, None]
        take = np.where(dprev <= dnext, prev, nxt)
    got = np.take_along_axis(values, np.clip(take, 0, n - 1), axis=0)
    return np.where(inside, got, np.nan)


def test_linear_equals_numpy_interp_with_flags_and_date_bands(series, out_dir):
    paths, values = series
    out, flags = str(out_dir / "filled.tif"), str(out_dir / "flags.tif")
    result = run("tilewise:gapfill", {"INPUT": paths, "METHOD": 0, "EDGES": 1, "OUTPUT": out, "OUTPUT_FLAGS": flags,
                                      "TILE_SIZE": 16})
    assert result["OUTPUT"] == out and result["OUTPUT_FLAGS"] == flags and result["OUTPUT_LAYERS"] == [out]
    got, names = read_all(out)
    assert names == [d.isoformat() for d in DATES]
    np.testing.assert_array_equal(got, interp_reference(values, DAYS, DAYS, 1).astype(np.float64))
    observed = ~np.isnan(values)
    np.testing.assert_array_equal(got[observed], values[observed])
    f, fnames = read_all(flags)
    assert fnames == names
    assert np.array_equal(f == 0, observed) and np.array_equal(f == 255, np.isnan(got))
    assert set(np.unique(f)) == {0, 1, 3, 255}
    assert (f[:, 3:6, 4:9] == 255).all()


@pytest.mark.parametrize("method, index", [("nearest", 1), ("previous", 2), ("next", 3)])
def test_nearest_previous_next_equal_numpy(series, out_dir, method, index):
    paths, values = series
    out = str(out_dir / f"{method}.tif")
    run("tilewise:gapfill", {"INPUT": paths, "METHOD": index, "OUTPUT": out})
    np.testing.assert_array_equal(read_all(out)[0], fill_reference(values, method))


def test_max_gap_edges_and_seasonal_known_answers(tmp_path, out_dir):
    paths = []
    for year, level in ((2021, 1.0), (2022, 3.0), (2023, 2.0)):
        for month in (2, 5, 8, 11):
            value = level * month if (year, month) not in ((2022, 5), (2022, 8), (2023, 11)) else ND
            paths.append(write_raster(tmp_path / f"s_{year}-{month:02d}-10.tif",
                                      np.full((8, 8), value, np.float32), nodata=ND))
    out, flags = str(out_dir / "seasonal.tif"), str(out_dir / "seasonal_flags.tif")
    run("tilewise:gapfill", {"INPUT": paths, "METHOD": 4, "SEASON_DAYS": 30, "EDGES": 0, "OUTPUT": out,
                             "OUTPUT_FLAGS": flags})
    got, names = read_all(out)
    f, _ = read_all(flags)
    k = names.index("2022-05-10")
    assert got[k, 0, 0] == np.median([5.0, 10.0]) and f[k, 0, 0] == 2          # 2021-05 and 2023-05
    k = names.index("2023-11-10")                                               # trailing, EDGES 0: left empty
    assert np.isnan(got[k, 0, 0]) and f[k, 0, 0] == 255
    run("tilewise:gapfill", {"INPUT": paths, "METHOD": 4, "SEASON_DAYS": 30, "EDGES": 1, "OUTPUT": out,
                             "OUTPUT_FLAGS": flags})
    got, names = read_all(out)
    f, _ = read_all(flags)
    assert got[k, 0, 0] == np.median([11.0, 33.0]) and f[k, 0, 0] == 2        # EDGES 1: 2021-11 and 2022-11
    # linear with MAX_GAP 100 days: the 2022-05..08 gap (2022-02-10 to 2022-11-10, 273 days) stays empty
    out = str(out_dir / "gap.tif")
    run("tilewise:gapfill", {"INPUT": paths, "METHOD": 0, "MAX_GAP": 100, "EDGES": 1, "OUTPUT": out})
    got, names = read_all(out)
    assert np.isnan(got[names.index("2022-05-10"), 0, 0]) and np.isnan(got[names.index("2022-08-10"), 0, 0])
    assert got[names.index("2023-11-10"), 0, 0] == 16.0                         # edge: the last valid value


def test_target_dates_and_one_cog_per_date(series, out_dir):
    paths, values = series
    folder = out_dir / "every10"
    result = run("tilewise:gapfill", {"INPUT": paths, "METHOD": 0, "TARGET_DATES": "2024-01-01,10,2024-04-01",
                                      "OUTPUT_MODE": 1, "OUTPUT_FOLDER": str(folder)})
    targets = [dt.date(2024, 1, 1) + dt.timedelta(days=10 * k) for k in range(10)]
    assert result["OUTPUT_FOLDER"] == str(folder)
    assert [os.path.basename(p) for p in result["OUTPUT_LAYERS"]] == [f"filled_{d}.tif" for d in targets]
    want = interp_reference(values, DAYS, np.array([(d - dt.date(1970, 1, 1)).days for d in targets], float), 0)
    for k, path in enumerate(result["OUTPUT_LAYERS"]):
        data, names = read_all(path)
        assert names == [targets[k].isoformat()]
        np.testing.assert_array_equal(data[0], want[k].astype(np.float64))


def _qa_scenes(folder):
    """uint16 scenes: band 1 values, band 2 a Landsat-like QA_PIXEL of random bits."""
    rng = np.random.default_rng(12)
    values = rng.integers(100, 3000, (len(DATES),) + SHAPE).astype(np.uint16)
    qa = rng.integers(0, 2 ** 16, values.shape).astype(np.uint16)
    qa[rng.random(qa.shape) < 0.6] &= np.uint16(0b1111111111100001)
    paths = [write_raster(folder / f"lc_{d:%Y-%m-%d}.tif", np.stack([values[i], qa[i]])) for i, d in enumerate(DATES)]
    return paths, values, qa


def test_bit_masks_and_preset_equal_numpy_bitwise(tmp_path, out_dir):
    paths, values, qa = _qa_scenes(tmp_path)
    out, flags = str(out_dir / "masked.tif"), str(out_dir / "masked_flags.tif")
    run("tilewise:gapfill", {"INPUT": paths, "MASK_BAND": 2, "MASK_PRESET": 2, "MASK_BITS": "5", "MASK_VALUES": "0",
                             "OUTPUT": out, "OUTPUT_FLAGS": flags})
    drop = ((qa & np.uint16(0b111110)) != 0) | (qa == 0)
    f, _ = read_all(flags)
    np.testing.assert_array_equal(f == 0, ~drop)
    kept = np.where(drop, np.nan, values.astype(np.float32))
    np.testing.assert_array_equal(read_all(out)[0], interp_reference(kept, DAYS, DAYS, 0).astype(np.float64))
    # the composite takes the same mask
    median = str(out_dir / "median.tif")
    run("tilewise:temporalmedian", {"INPUT": paths, "STATISTIC": 3, "MASK_BAND": 2, "MASK_BITS": "1,3,4",
                                    "OUTPUT": median})
    drop = (qa & np.uint16(0b11010)) != 0
    masked = np.where(drop, -1, values.astype(np.int64))
    want = masked.max(axis=0).astype(np.float64)
    want[want < 0] = np.nan
    np.testing.assert_array_equal(read_all(median)[0][0], want)


def test_help_documents_the_presets():
    from qgis.core import QgsApplication
    for alg_id in ("tilewise:gapfill", "tilewise:temporalmedian"):
        alg = QgsApplication.processingRegistry().algorithmById(alg_id)
        text = alg.shortHelpString()
        assert "Sentinel-2 SCL" in text and "QA_PIXEL" in text and "0,1,3,8,9,10" in text and "1,2,3,4" in text
        assert {"MASK_VALUES", "MASK_BITS", "MASK_PRESET"} <= {p.name() for p in alg.parameterDefinitions()}


def test_a_bad_mask_bit_is_a_clear_error(tmp_path, out_dir):
    from qgis.core import QgsProcessingException
    paths, _, _ = _qa_scenes(tmp_path)
    with pytest.raises(QgsProcessingException, match=r"MASK_BITS \[16\] do not exist .* uint16"):
        run("tilewise:gapfill", {"INPUT": paths, "MASK_BAND": 2, "MASK_BITS": "16", "OUTPUT": str(out_dir / "x.tif")})
    assert not (out_dir / "x.tif").exists()


def test_qgis_process_gapfill_equals_processing_run(series, out_dir, tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from qgis_process import run_algorithm
    paths, _ = series
    cli_out = str(out_dir / "qp.tif")
    params = [("INPUT", p) for p in paths] + [("METHOD", 2), ("EDGES", 1), ("MAX_GAP", 30), ("OUTPUT", cli_out)]
    proc = run_algorithm("tilewise:gapfill", params, str(PLUGINS_DIR), str(tmp_path / "profile"),
                         timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = str(out_dir / "ref.tif")
    run("tilewise:gapfill", {"INPUT": paths, "METHOD": 2, "EDGES": 1, "MAX_GAP": 30, "OUTPUT": ref})
    np.testing.assert_array_equal(read_all(cli_out)[0], read_all(ref)[0])
    assert read_all(cli_out)[1] == [d.isoformat() for d in DATES]


# -- the model -------------------------------------------------------------------------------------------------

def _bands_scenes(folder):
    """4-band uint16 scenes (BLUE, GREEN, RED, NIR; nodata 0), holes in RED (clouds)."""
    rng = np.random.default_rng(21)
    red = rng.integers(300, 1500, (len(DATES),) + SHAPE).astype(np.uint16)
    nir = rng.integers(2000, 5000, red.shape).astype(np.uint16)
    red[rng.random(red.shape) < 0.3] = 0
    paths = []
    for i, d in enumerate(DATES):
        bands = np.stack([red[i], red[i], red[i], nir[i]])
        paths.append(write_raster(folder / f"S2_{d:%Y%m%d}.tif", bands, nodata=0))
    return paths, red, nir


def _points(folder, cells):
    """A GeoPackage of points at the centres of ``cells`` (row, col), written with OGR."""
    from osgeo import ogr, osr
    path = str(folder / "points.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    layer = ds.CreateLayer("points", srs, ogr.wkbPoint)
    for r, c in cells:
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({500000 + 10 * c + 5} {5000000 - 10 * r - 5})"))
        assert layer.CreateFeature(feat) == 0
        feat = None
    layer = None
    ds = None
    return path


def test_model_file_chains_index_gapfill_and_extract():
    from qgis.core import QgsProcessingModelAlgorithm
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL))
    children = model.childAlgorithms()
    assert {c.algorithmId() for c in children.values()} == {"tilewise:index", "tilewise:gapfill",
                                                           "tilewise:extract"}
    [source] = children["gapfill"].parameterSources()["INPUT"]
    assert (source.outputChildId(), source.outputName()) == ("ndvi", "OUTPUT_LAYERS")
    assert model.dependsOnChildAlgorithms("sample") == {"gapfill", "ndvi"}
    ok, errors = model.validate()
    assert ok, errors


def test_model_ndvi_per_scene_then_gapfill_then_extract_at_points(tmp_path, out_dir):
    from qgis.core import NULL, QgsProcessingModelAlgorithm, QgsVectorLayer
    paths, red, nir = _bands_scenes(tmp_path)
    cells = [(0, 0), (5, 7), (20, 33), (35, 51), (17, 2)]
    points = _points(tmp_path, cells)
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL))
    sampled = str(out_dir / "sampled.gpkg")
    filled = str(out_dir / "filled.tif")
    feedback = Errors()
    try:
        result = run(model, {"scenes": paths, "points": points, "max_gap": 0, "gapfill:filled": filled,
                             "sample:samples": sampled, "ndvi:ndvi_scenes": str(out_dir / "n")}, feedback=feedback)
    except Exception as exc:
        raise AssertionError(f"{exc}: {feedback.errors}") from None
    assert result["gapfill:filled"] == filled
    r, n = red.astype(np.float32), nir.astype(np.float32)
    ndvi = np.where(red == 0, np.nan, (n - r) / (n + r))
    want = interp_reference(ndvi, DAYS, DAYS, 0)
    np.testing.assert_array_equal(read_all(filled)[0], want.astype(np.float64))
    layer = QgsVectorLayer(result["sample:samples"], "s", "ogr")
    assert layer.isValid() and layer.featureCount() == len(cells) * len(DATES), layer.featureCount()
    names = [f.name() for f in layer.fields()]
    assert {"feature_id", "source", "date", "band", "value"} <= set(names), names
    rows = sorted((f["feature_id"], f["band"], f["value"]) for f in layer.getFeatures())
    points = sorted({r[0] for r in rows})                 # the feature ids, in the order the points were written
    assert len(points) == len(cells)
    empty = 0
    for fid, band, got in rows:
        row, col = cells[points.index(fid)]
        expected = want[band - 1, row, col]
        if np.isnan(expected):
            assert got is None or got == NULL                     # nodata is null, never a number
            empty += 1
        else:
            assert got == pytest.approx(float(expected), rel=1e-6)
    assert 0 < empty < len(cells) * len(DATES) // 2                      # leading/trailing gaps stay empty

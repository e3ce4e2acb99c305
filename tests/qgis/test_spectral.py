"""tilewise:temporalmedian's composites that keep the spectrum (geomedian, medoid, quality) in real QGIS:
the enum and parameters models depend on, processing.run against numpy, qgis_process, wrong inputs, and a
Graphical Modeler model stacsearch -> geomedian against rustac and nginx on 127.0.0.1."""

import datetime as dt
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingModelAlgorithm

from conftest import ENGINE_PYTHON, PLUGINS_DIR, REPO
from twtest import run, write_raster

ALG = "tilewise:temporalmedian"
OLD = ["median", "mean", "min", "max", "std", "count", "percentile"]
DATES = ["2024-04-02", "2024-06-20", "2024-05-11", "2024-08-01", "2024-07-07"]
MODEL = Path(__file__).resolve().parent / "data" / "stac_search_then_geomedian.model3"



def snap(pts, y):
    """The kernel's last step: the observation nearest to ``y``, if Vardi and Zhang's test says it is the median."""
    j = int(np.argmin(((pts - y) ** 2).sum(axis=1)))
    d = np.sqrt(((pts - pts[j]) ** 2).sum(axis=1))
    other = d > 0
    r = ((pts[other] - pts[j]) / d[other][:, None]).sum(axis=0)
    return pts[j] if np.sqrt((r * r).sum()) < np.count_nonzero(~other) - 1e-9 else y

def weiszfeld(points, tol=1e-10, max_iter=5000):
    """float64 Weiszfeld from the mean (Vardi and Zhang's step at an observation) of ``points`` (n, bands)."""
    y = points.mean(axis=0)
    for _ in range(max_iter):
        d = np.sqrt(((points - y) ** 2).sum(axis=1))
        at = 1e-12 * np.sqrt((y * y).sum())
        far = d > at
        if not far.any():
            break
        w = 1 / d[far]
        t, wsum = (w[:, None] * points[far]).sum(axis=0), w.sum()
        eta, beta = np.count_nonzero(~far), 0.0
        if eta:
            r = np.sqrt(((t - wsum * y) ** 2).sum())
            if r <= eta:
                return points[np.flatnonzero(~far)[-1]]
            beta = eta / r
        new = (1 - beta) * t / wsum + beta * y
        new = y + (1.5 if eta == 0 else 1.0) * (new - y)      # Ostresh's over-relaxed step, as the kernel
        step, y = np.sqrt(((new - y) ** 2).sum()), new
        if step <= tol * np.sqrt((y * y).sum()):
            break
    return snap(points, y)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """5 dated 3-band int16 scenes (nodata -1, holes in single bands and whole dates); (paths, raw (date order))."""
    folder = tmp_path_factory.mktemp("spectral")
    rng = np.random.default_rng(31)
    base = rng.integers(200, 3000, (3, 30, 40))
    raw = {}
    for d in DATES:
        a = (base + rng.normal(0, 200, base.shape)).astype(np.int16)
        a[rng.random(a.shape) < 0.05] = -1
        a[:, rng.random((30, 40)) < 0.2] = -1
        a[:, :3, :3] = -1
        raw[d] = a
    paths = [write_raster(folder / f"scene_{d}.tif", raw[d], nodata=-1) for d in DATES]
    return paths, np.stack([raw[d] for d in sorted(DATES)])


def read_all(path):
    ds = gdal.Open(str(path))
    data = ds.ReadAsArray()
    info = (gdal.GetDataTypeName(ds.GetRasterBand(1).DataType), ds.GetRasterBand(1).GetNoDataValue())
    ds = None
    return (data if data.ndim == 3 else data[None]), info


def test_the_enum_keeps_old_indices_and_new_parameters_come_last():
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    options = alg.parameterDefinition("STATISTIC").options()
    assert options[:7] == OLD and options[7:] == ["geomedian", "medoid", "quality"]
    types = alg.parameterDefinition("OUTPUT_TYPE")
    assert types.options()[:8] == ["float32", "float64", "int16", "uint16", "int32", "uint32", "uint8", "int8"]
    assert types.options()[8].startswith("default") and types.defaultValue() == 8
    names = [p.name() for p in alg.parameterDefinitions()]
    new = ["TOLERANCE", "MAX_ITERATIONS", "QUALITY_BAND", "QUALITY_EXPRESSION", "TARGET_DATE", "DOY_WEIGHT",
           "CLOUD_WEIGHT", "CLOUD_DISTANCE", "OPACITY_BAND", "OPACITY_WEIGHT", "DATES", "OUTPUT_MADS",
           "OUTPUT_COUNT", "OUTPUT_SOURCE"]
    assert names[-len(new):] == new and names.index("OUTPUT") < names.index("TOLERANCE")
    assert "geomedian" in alg.shortHelpString() and "BCMAD" in alg.shortHelpString()
    # a model or script saved before them still validates: every new parameter is optional
    assert all(alg.parameterDefinition(n).flags() & alg.parameterDefinition(n).FlagOptional for n in new)


def test_geomedian_with_mads_and_count_equals_numpy(scenes, out_dir):
    paths, raw = scenes
    out = {k: str(out_dir / f"{k}.tif") for k in ("g", "mads", "count")}
    result = run(ALG, {"INPUT": paths, "STATISTIC": 7, "TOLERANCE": 1e-10, "MAX_ITERATIONS": 5000, "WORKERS": 2,
                       "TILE_SIZE": 16, "OUTPUT": out["g"], "OUTPUT_MADS": out["mads"], "OUTPUT_COUNT": out["count"]})
    assert result["OUTPUT"] == out["g"] and result["OUTPUT_MADS"] == out["mads"]
    data, (dtype, nodata) = read_all(out["g"])
    assert dtype == "Float32" and nodata == -9999 and data.shape == (3, 30, 40)
    count = read_all(out["count"])[0][0]
    mads = read_all(out["mads"])[0]
    for r in range(30):
        for c in range(40):
            obs = raw[:, :, r, c].astype(np.float64)
            obs = obs[(obs != -1).all(axis=1)]
            assert count[r, c] == len(obs)
            if not len(obs):
                assert (data[:, r, c] == -9999).all() and (mads[:, r, c] == -9999).all()
                continue
            g = weiszfeld(obs)
            np.testing.assert_allclose(data[:, r, c], g, rtol=1e-6)
            emad = np.median(np.sqrt(((obs - data[:, r, c]) ** 2).sum(axis=1)))
            np.testing.assert_allclose(mads[0, r, c], emad, rtol=1e-5)


@pytest.mark.parametrize("statistic,extra", [(8, {}), (9, {"QUALITY_EXPRESSION": "(B2 - B1) / (B2 + B1)"})])
def test_medoid_and_quality_keep_the_type_and_name_the_source_date(scenes, out_dir, statistic, extra):
    paths, raw = scenes
    out, src = str(out_dir / "pick.tif"), str(out_dir / "src.tif")
    run(ALG, {"INPUT": paths, "STATISTIC": statistic, "WORKERS": 1, "OUTPUT": out, "OUTPUT_SOURCE": src, **extra})
    data, (dtype, nodata) = read_all(out)
    assert dtype == "Int16" and nodata == -1
    source = read_all(src)[0][0]
    epoch = dt.date(1970, 1, 1)
    day_of = {(dt.date.fromisoformat(d) - epoch).days: i for i, d in enumerate(sorted(DATES))}
    for r in range(30):
        for c in range(40):
            obs = raw[:, :, r, c].astype(np.float64)
            ok = (obs != -1).all(axis=1)
            if not ok.any():
                assert source[r, c] == np.iinfo(np.int32).min and (data[:, r, c] == -1).all()
                continue
            idx = np.flatnonzero(ok)
            if statistic == 8:
                sums = [sum(np.sqrt(((obs[i] - obs[j]) ** 2).sum()) for j in idx if j != i) for i in idx]
                best = idx[int(np.argmin(sums))]
            else:
                scores = (obs[idx, 1] - obs[idx, 0]) / (obs[idx, 1] + obs[idx, 0])
                best = idx[int(np.argmax(scores))]
            assert day_of[int(source[r, c])] == best
            np.testing.assert_array_equal(data[:, r, c], raw[best, :, r, c])


@pytest.mark.parametrize("params,message", [
    ({"STATISTIC": 9}, "The quality statistic scores observations in one way"),
    ({"STATISTIC": 9, "QUALITY_EXPRESSION": "B1 + B7"}, "QUALITY_EXPRESSION: Unknown name 'B7'"),
    ({"STATISTIC": 9, "DOY_WEIGHT": 1, "TARGET_DATE": "July"}, "The TARGET_DATE 'July' is not a date"),
])
def test_wrong_inputs_are_one_clear_message(scenes, out_dir, params, message):
    paths, _ = scenes
    with pytest.raises(QgsProcessingException) as info:
        run(ALG, {"INPUT": paths, "OUTPUT": str(out_dir / "x.tif"), **params})
    text = str(info.value)
    assert message in text and "Traceback" not in text, text
    assert not (out_dir / "x.tif").exists()


def test_qgis_process_runs_a_geomedian(scenes, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from qgis_process import run_algorithm
    paths, raw = scenes
    out = tmp_path / "g.tif"
    proc = run_algorithm(ALG, [("INPUT", p) for p in paths] + [
        ("STATISTIC", "7"), ("WORKERS", "2"), ("OUTPUT", str(out)), ("OUTPUT_COUNT", str(tmp_path / "n.tif"))],
        str(PLUGINS_DIR), str(tmp_path / "profile"), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data, _ = read_all(out)
    obs = raw[:, :, 20, 30].astype(np.float64)
    obs = obs[(obs != -1).all(axis=1)]
    np.testing.assert_allclose(data[:, 20, 30], weiszfeld(obs), rtol=1e-5)
    assert read_all(tmp_path / "n.tif")[0][0, 20, 30] == len(obs)


# -- a model: stacsearch -> geomedian ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    sys.path.append(str(REPO / "tests" / "engine"))
    from servers import Nginx, Rustac, rustac_binary
    from stacdata import build_catalogue
    from test_stac import write_cog
    www = tmp_path_factory.mktemp("www")
    with Nginx(www, tmp_path_factory.mktemp("nginx")) as nginx:
        cat = build_catalogue(www, nginx.url, write_cog)
        binary = rustac_binary(os.environ.get("TILEWISE_PYTHON", str(ENGINE_PYTHON)))   # a worktree has no .venv
        with Rustac(cat.api_files, tmp_path_factory.mktemp("rustac"), binary) as api:
            cat.api = api
            yield cat


def test_model_geomedian_of_a_search_equals_numpy(catalogue, out_dir):
    from stacdata import INSIDE_A, SCL_MASKED, search_ids
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), MODEL
    assert model.childAlgorithms()["median"].algorithmId() == ALG
    ok, errors = model.validate()
    assert ok, errors
    extent = "{},{},{},{} [EPSG:4326]".format(INSIDE_A[0], INSIDE_A[2], INSIDE_A[1], INSIDE_A[3])
    output = str(out_dir / "geomedian.tif")
    result = run(model, {"stac_api": catalogue.api.url, "collections": "s2-test", "extent": extent,
                         "datetime": "2024-05-01/2024-09-30", "max_cloud": 40, "median:median": output,
                         "search:items": str(out_dir / "items"), "search:footprints": str(out_dir / "fp.geojson")})
    assert result["median:median"] == output
    ids = search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30", max_cloud=40)
    scenes = [catalogue.scenes[i] for i in ids]
    def offset(item):     # what the search's layer says (GDAL's band offset), as the engine reads it
        ds = gdal.Open(str(out_dir / "items" / f"{item}.vrt"))
        value = ds.GetRasterBand(1).GetOffset() or 0.0
        assert ds.GetRasterBand(1).GetScale() == 0.0001
        ds = None
        return value
    offsets = [offset(i) for i in ids]
    data, (dtype, _) = read_all(output)
    assert dtype == "Float32" and data.shape[0] == 2
    checked = 0
    for r in range(0, data.shape[1], 3):
        for c in range(0, data.shape[2], 3):
            obs = np.array([[s.red[r, c], s.nir[r, c]] for s in scenes], np.float64)
            scl = np.array([s.scl_10m()[r, c] for s in scenes])
            keep = (obs != 0).all(axis=1) & ~np.isin(scl, SCL_MASKED)
            if not keep.any():
                assert (data[:, r, c] == -9999).all()
                continue
            scaled = (obs * 0.0001 + np.array(offsets)[:, None])[keep]
            expected = weiszfeld(scaled)
            got = data[:, r, c].astype(np.float64) * 0.0001 + offsets[0]
            # the model runs the default TOLERANCE (1e-7 relative steps): where the summed distance is flat (few,
            # nearly collinear observations) the steps shrink before the point settles, so compare what a median
            # minimises, and that the point is within the observations' ranges
            assert (got >= scaled.min(axis=0) - 1e-6).all() and (got <= scaled.max(axis=0) + 1e-6).all()
            summed = np.sqrt(((scaled - got) ** 2).sum(axis=1)).sum()
            assert summed <= np.sqrt(((scaled - expected) ** 2).sum(axis=1)).sum() * (1 + 1e-5) + 1e-6  # float32
            checked += 1
    assert checked > 100

"""tilewise:ndvi, tilewise:index and tilewise:bandmath in QGIS: the raster calculator's pixels,
processing.run, qgis_process, graphical models, and expressions that are refused before any work."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from qgis.core import (QgsProcessingException, QgsProcessingModelAlgorithm,
                       QgsProcessingOutputMultipleLayers, QgsProcessingParameterMultipleLayers)

from conftest import PLUGINS_DIR, REPO
from twtest import Errors, nan_reduce, read_raster, run, srs_wkt, warp, write_raster

DATA = Path(__file__).resolve().parent / "data"
NDVI_MEDIAN_MODEL = DATA / "ndvi_scenes_then_median.model3"
BANDMATH_MODEL = DATA / "bandmath_expression.model3"
SHAPE = (90, 130)
ND = 65535          # input nodata
ND_OUT = -9999.0    # Tilewise's float32 output nodata


def scene_bands(seed, shape=SHAPE):
    """BLUE, GREEN, RED, NIR (uint16, nodata 65535): values close to 65535 (NIR + RED overflows uint16),
    dark pixels, nodata in RED only and in NIR only, and 0 / 0."""
    rng = np.random.default_rng(seed)
    bands = rng.integers(50000, ND, (4,) + shape).astype(np.uint16)
    bands[:, ::5] = rng.integers(0, 4000, (4,) + bands[:, ::5].shape[1:])
    bands[2, 0, :20] = ND
    bands[3, 1, :20] = ND
    bands[2:, 2, :20] = 0
    return bands


def ndvi_reference(red, nir, scale=1.0, offset=0.0, clip=True):
    """numpy, float32 after scale/offset; NaN where a band is nodata or the denominator is zero."""
    r = red.astype(np.float32) * np.float32(scale) + np.float32(offset)
    n = nir.astype(np.float32) * np.float32(scale) + np.float32(offset)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (n - r) / (n + r)
    ndvi[(red == ND) | (nir == ND) | ~np.isfinite(ndvi)] = np.nan
    return np.clip(ndvi, -1, 1) if clip else ndvi


def assert_pixels(path, expected, atol=1e-6):
    out = read_raster(path)
    assert (out.array.dtype, out.nodata) == (np.float32, ND_OUT)
    valid = ~np.isnan(expected)
    assert 0.5 < valid.mean() < 1
    np.testing.assert_array_equal(out.valid, valid)
    np.testing.assert_allclose(out.array[valid], expected[valid], rtol=0, atol=atol)
    return out


@pytest.fixture(scope="module")
def landsat(tmp_path_factory):
    """One 4-band scene, ``landsat.tif`` (RED band 3, NIR band 4)."""
    folder = tmp_path_factory.mktemp("bandmath-inputs")
    bands = scene_bands(1)
    return write_raster(folder / "landsat.tif", bands, nodata=ND), bands


# -- NDVI: the raster calculator's pixels ----------------------------------------------------------------------

def test_ndvi_same_pixels_as_raster_calculator(landsat, out_dir):
    path, bands = landsat
    ours = run("tilewise:ndvi", {"RED": path, "RED_BAND": 3, "NIR": path, "NIR_BAND": 4, "TILE_SIZE": 32,
                                 "OUTPUT": str(out_dir / "tilewise.tif")})
    theirs = run("qgis:rastercalculator", {
        "EXPRESSION": '("landsat@4" - "landsat@3") / ("landsat@4" + "landsat@3")', "LAYERS": [path],
        "OUTPUT": str(out_dir / "qgis.tif")})
    a = read_raster(ours["OUTPUT"])
    b = read_raster(theirs["OUTPUT"])
    assert (a.width, a.height) == (b.width, b.height) == (SHAPE[1], SHAPE[0])
    assert a.geotransform == pytest.approx(b.geotransform)
    assert a.nodata == ND_OUT and b.nodata == pytest.approx(-3.4028234663852886e38)
    # where both define a value, the same value (QGIS computes in double, Tilewise in float32) ...
    both = a.valid & b.valid
    assert both.mean() > 0.9
    np.testing.assert_allclose(a.array[both], b.array[both], rtol=0, atol=1e-6)
    # ... and both leave the same pixels undefined: nodata in a band, 0 / 0
    np.testing.assert_array_equal(a.valid, b.valid)
    assert not a.valid[:3, :20].any()
    assert_pixels(ours["OUTPUT"], ndvi_reference(bands[2], bands[3]))


def test_ndvi_of_two_layers_on_different_grids_takes_the_red_grid(tmp_path, out_dir):
    """NIR comes from a file in Web Mercator; the output is on RED's grid (the default reference)."""
    bands = scene_bands(2)
    rng = np.random.default_rng(3)
    # NIR in 6-pixel blocks, so nearest-neighbour resampling is only ambiguous at block edges
    blocks = rng.integers(1, 60000, (SHAPE[0] // 6 + 1, SHAPE[1] // 6 + 1))
    nir = np.kron(blocks, np.ones((6, 6), np.int64))[:SHAPE[0], :SHAPE[1]].astype(np.uint16)
    red = write_raster(tmp_path / "red.tif", bands[2], nodata=ND)
    nir_utm = write_raster(tmp_path / "nir_utm.tif", nir, nodata=ND)
    nir_mercator = warp(tmp_path / "nir_3857.tif", nir_utm, dstSRS="EPSG:3857", xRes=7.0, yRes=7.0,
                        resampleAlg="near", srcNodata=ND, dstNodata=ND)
    back = read_raster(warp(tmp_path / "nir_back.tif", nir_mercator, dstSRS=srs_wkt(32633), width=SHAPE[1],
                            height=SHAPE[0], outputBounds=(500000.0, 5000000.0 - 10 * SHAPE[0],
                                                           500000.0 + 10 * SHAPE[1], 5000000.0),
                            resampleAlg="near", srcNodata=ND, dstNodata=ND)).array

    result = run("tilewise:ndvi", {"RED": red, "RED_BAND": 1, "NIR": nir_mercator, "NIR_BAND": 1,
                                   "OUTPUT": str(out_dir / "ndvi.tif")})

    out = assert_pixels(result["OUTPUT"], ndvi_reference(bands[2], back))
    assert out.geotransform == read_raster(red).geotransform and out.same_crs(32633)
    assert (out.width, out.height) == (SHAPE[1], SHAPE[0])
    assert (back == nir).mean() > 0.95                    # the warped NIR is the NIR, but for block edges


# -- tilewise:bandmath: processing.run, qgis_process, a model -------------------------------------------------

EXPRESSION = "(B - A) / (B + A)"


def bandmath_reference(bands):
    """(B - A) / (B + A) with A = band 3, B = band 4 and Sentinel-2 scaling; not clipped."""
    return ndvi_reference(bands[2], bands[3], 0.0001, -0.1, clip=False)


def test_bandmath_processing_run(landsat, out_dir):
    path, bands = landsat
    result = run("tilewise:bandmath", {"LAYERS": [path, path], "BANDS": "A=3,B=4", "EXPRESSION": EXPRESSION,
                                       "SCALE": 0.0001, "OFFSET": -0.1, "WORKERS": 2, "TILE_SIZE": 40,
                                       "OUTPUT": str(out_dir / "calc.tif")})
    assert result["OUTPUT"] == str(out_dir / "calc.tif")
    out = assert_pixels(result["OUTPUT"], bandmath_reference(bands))
    assert np.abs(out.array[out.valid]).max() > 1          # dark pixels after the offset: not clipped
    assert [p.name for p in out_dir.iterdir()] == ["calc.tif"]


def load_script(name):
    """A module of the repository's scripts/ folder."""
    spec = importlib.util.spec_from_file_location(f"tilewise_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bandmath_through_qgis_process(landsat, tmp_path, out_dir):
    path, bands = landsat
    qgis_process = load_script("qgis_process")
    target = tmp_path / "pwned"
    common = [("LAYERS", path), ("LAYERS", path), ("BANDS", "A=3,B=4"), ("SCALE", 0.0001), ("OFFSET", -0.1)]

    good = qgis_process.run_algorithm("tilewise:bandmath", common + [
        ("EXPRESSION", EXPRESSION), ("OUTPUT", out_dir / "calc.tif")], str(PLUGINS_DIR), str(tmp_path / "qgis"),
        timeout=120)
    bad = qgis_process.run_algorithm("tilewise:bandmath", common + [
        ("EXPRESSION", f"__import__('os').system('touch {target}')"), ("OUTPUT", out_dir / "bad.tif")],
        str(PLUGINS_DIR), str(tmp_path / "qgis"), timeout=120)

    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    assert_pixels(out_dir / "calc.tif", bandmath_reference(bands))
    assert bad.returncode != 0
    assert "only plain function calls like sqrt(A) are" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
    assert not target.exists()
    assert [p.name for p in out_dir.iterdir()] == ["calc.tif"]


def load_model(path):
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path)), path
    return model


def test_bandmath_inside_a_model(landsat, out_dir):
    path, bands = landsat
    model = load_model(BANDMATH_MODEL)
    assert model.childAlgorithms()["calc"].algorithmId() == "tilewise:bandmath"
    ok, errors = model.validate()
    assert ok, errors

    result = run(model, {"layers": [path, path], "bands": "A=3,B=4", "expression": "B - A",
                         "calc:result": str(out_dir / "diff.tif")})

    assert result["calc:result"] == str(out_dir / "diff.tif")
    expected = bands[3].astype(np.float64) - bands[2]
    expected[(bands[2] == ND) | (bands[3] == ND)] = np.nan
    assert_pixels(out_dir / "diff.tif", expected, atol=0)


def test_model_refuses_a_malicious_expression(landsat, tmp_path, out_dir):
    """Refused on every QGIS version, whichever check catches it.

    QGIS 3.22 does not call a model step's checkParameterValues: the engine's own check refuses the
    expression and the reason arrives as a feedback error. From 3.40 on, the model checks the step
    first and the reason is in the exception's message ("Error encountered while running Band
    math: Calling ... is not allowed"), with no feedback error.
    """
    path, _ = landsat
    target = tmp_path / "pwned"
    feedback = Errors()
    with pytest.raises(QgsProcessingException, match="Band math") as info:
        run(load_model(BANDMATH_MODEL), {"layers": [path, path], "bands": "A=3,B=4",
                                         "expression": f"__import__('os').system('touch {target}')",
                                         "calc:result": str(out_dir / "r.tif")}, feedback=feedback)
    reported = [str(info.value), *feedback.errors]
    assert any("Calling '__import__('os').system' is not allowed; only plain function calls like sqrt(A) are"
               in message for message in reported), reported
    assert not target.exists()
    assert list(out_dir.iterdir()) == []


# -- refused expressions: processing.run ---------------------------------------------------------------------

REFUSED = {
    "A.__class__": "Attribute access ('.__class__') is not allowed",
    "().__class__": "Attribute access ('.__class__') is not allowed",
    "open('f')": "Unknown function 'open'",
    "exec('1')": "Unknown function 'exec'",
    "A[0]": "Indexing ([...]) is not allowed",
    "(A + B": "Syntax error in the expression",
    "C": "Unknown name 'C' in the expression; the inputs are A, B",
    "lambda: 1": "Lambda is not allowed",
    '"string"': "Only numbers are allowed as constants",
    "A and B": "'and' / 'or' are not allowed",
    "sqrt(A, B)": "sqrt() takes 1 argument(s), got 2",
    "A if B else 1": "IfExp is not allowed",
    "sqrt": "The function 'sqrt' must be called",
    "where(A > 0, B, x=1)": "Keyword arguments are not allowed",
    "A.real": "Attribute access ('.real') is not allowed",
    "A < B < 1": "Chained comparisons like A < B < C are not allowed",
    "~A": "numexpr cannot evaluate the expression",   # within the grammar: the engine refuses it
}


@pytest.mark.parametrize("expression", list(REFUSED))
def test_processing_run_refuses_the_expression(landsat, out_dir, expression):
    path, _ = landsat
    with pytest.raises(QgsProcessingException) as info:
        run("tilewise:bandmath", {"LAYERS": [path, path], "BANDS": "A=3,B=4", "EXPRESSION": expression,
                                  "OUTPUT": str(out_dir / "r.tif")})
    message = str(info.value)
    assert REFUSED[expression] in message
    assert "Traceback" not in message and "Unexpected engine error" not in message
    assert list(out_dir.iterdir()) == []


def test_processing_run_does_not_run_an_injected_command(landsat, tmp_path, out_dir):
    path, _ = landsat
    target = tmp_path / "pwned"
    for expression in (f"__import__('os').system('touch {target}')", f"exec(\"open('{target}', 'w')\")",
                       f"open('{target}', 'w').close()"):
        with pytest.raises(QgsProcessingException):
            run("tilewise:bandmath", {"LAYERS": [path], "EXPRESSION": expression, "OUTPUT": str(out_dir / "r.tif")})
    assert not target.exists()
    assert list(out_dir.iterdir()) == []


# -- a model: NDVI of each scene (one COG per scene) -> temporal median ------------------------------------------

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ndvi-scenes")
    stacks = [scene_bands(10 + i) for i in range(4)]
    for bands in stacks:
        bands[2:, 40:50, 60:80] = ND                   # no observation in any scene there
    names = [f"2022-0{i + 5}-15" for i in range(4)]
    return [write_raster(folder / f"{n}.tif", b, nodata=ND) for n, b in zip(names, stacks)], stacks, names


def test_model_connects_index_layers_to_temporal_median():
    model = load_model(NDVI_MEDIAN_MODEL)
    children = model.childAlgorithms()
    assert children["ndvi"].algorithmId() == "tilewise:index"
    assert children["median"].algorithmId() == "tilewise:temporalmedian"
    [source] = children["median"].parameterSources()["INPUT"]
    assert (source.outputChildId(), source.outputName()) == ("ndvi", "OUTPUT_LAYERS")
    assert model.dependsOnChildAlgorithms("median") == {"ndvi"}
    # a multiple-layers output is a source the model offers for a multiple-layers parameter
    offered = model.availableSourcesForChild("median", [QgsProcessingParameterMultipleLayers.typeName()],
                                             [QgsProcessingOutputMultipleLayers.typeName()], [])
    assert ("ndvi", "OUTPUT_LAYERS") in [(s.outputChildId(), s.outputName()) for s in offered]
    ok, errors = model.validate()
    assert ok, errors


def test_model_gives_the_median_of_the_per_scene_ndvi(scenes, out_dir):
    paths, stacks, names = scenes
    folder = out_dir / "ndvi_scenes"
    median_path = str(out_dir / "median_ndvi.tif")

    result = run(load_model(NDVI_MEDIAN_MODEL), {"scenes": paths, "red_band": 3, "nir_band": 4,
                                                 "ndvi:ndvi_scenes": str(folder), "median:median_ndvi": median_path})

    assert result["median:median_ndvi"] == median_path
    per_scene = [ndvi_reference(b[2], b[3]) for b in stacks]
    # (QGIS itself leaves GDAL .aux.xml statistics beside the layers the median step loads)
    written = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".aux.xml"))
    assert written == sorted(f"{n}_ndvi.tif" for n in names)
    for name, expected in zip(names, per_scene):
        assert_pixels(folder / f"{name}_ndvi.tif", expected)
    expected = nan_reduce(np.nanmedian, np.stack(per_scene).astype(np.float64))
    out = read_raster(median_path)
    assert not out.valid[40:50, 60:80].any()
    np.testing.assert_array_equal(out.valid, ~np.isnan(expected))
    np.testing.assert_allclose(out.array[out.valid], expected[out.valid], rtol=0, atol=1e-6)
    assert sorted(p.name for p in out_dir.iterdir()) == ["median_ndvi.tif", "ndvi_scenes"]

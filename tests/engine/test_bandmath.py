"""NDVI, the spectral-index catalogue, time series of indices and the band-math command line.

NDVI's reference is computed here with numpy in float32, as the engine is meant to: both
bands converted to float32, scale and offset applied, then (NIR - RED) / (NIR + RED), clipped
to [-1, 1]. A pixel that is nodata in either band, or whose denominator is zero, must be the
output nodata (never inf). The catalogue indices are checked against numbers worked out by
hand from the published formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from tilewise.core.operations.bandmath import bandmath, index
from tilewise.core.errors import InputError, ParameterError
from tilewise.core.operations.indices import INDICES

from support import UTM_CRS, UTM_TRANSFORM, leftovers, read_raster
from test_cli import tilewise_cli

H, W = 45, 70                  # no tile size used below divides both
ND_OUT = -9999.0               # the output nodata of a float32 result
NODATA = {"uint8": 255, "uint16": 65535, "int16": -9999, "float32": float("nan")}
SCALINGS = {"none": (1.0, 0.0), "sentinel-2": (0.0001, -0.1), "landsat-c2": (0.0000275, -0.2)}


def ndvi_reference(red, nir, nodata, scale=1.0, offset=0.0):
    """NDVI in float32 after scale/offset; NaN where either band is nodata or the result not finite."""
    r = red.astype(np.float32) * np.float32(scale) + np.float32(offset)
    n = nir.astype(np.float32) * np.float32(scale) + np.float32(offset)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (n - r) / (n + r)
    assert ndvi.dtype == np.float32
    if nodata is not None and not math.isnan(nodata):
        ndvi[(red == nodata) | (nir == nodata)] = np.nan
    ndvi[~np.isfinite(ndvi)] = np.nan                   # NaN input, 0 / 0, x / 0
    return np.clip(ndvi, -1, 1)


def red_nir(dtype, seed=0, shape=(H, W)):
    """RED and NIR of one scene: random values up to the top of the type, nodata in RED only
    (row 0), in NIR only (row 1) and in both (row 2), 0 / 0 (row 3) and, for signed types,
    x / 0 (row 4)."""
    rng = np.random.default_rng(seed)
    nodata = NODATA[dtype]
    if dtype == "uint8":
        red, nir = rng.integers(0, 255, (2,) + shape)
    elif dtype == "uint16":                              # NIR + RED overflows uint16
        red, nir = rng.integers(58000, 65535, (2,) + shape)
        red[::4] = rng.integers(0, 3000, red[::4].shape)  # dark: negative reflectance after an offset
    elif dtype == "int16":
        red, nir = rng.integers(-2000, 12000, (2,) + shape)
    else:
        red, nir = rng.uniform(-0.1, 0.9, (2,) + shape)
    red, nir = red.astype(dtype), nir.astype(dtype)
    red[0, :10] = nodata
    nir[1, :10] = nodata
    red[2, :10] = nir[2, :10] = nodata
    red[3, :10] = nir[3, :10] = 0
    if dtype in ("int16", "float32"):
        red[4, :10] = -nir[4, :10]
    return red, nir, nodata


def four_band_scene(raster, name, red, nir, nodata, seed=1):
    """A scene like Landsat 5/7: bands 1-2 other values, band 3 RED, band 4 NIR."""
    others = np.random.default_rng(seed).integers(0, 100, (2,) + red.shape).astype(red.dtype)
    return raster(name, np.stack([others[0], others[1], red, nir]), nodata=nodata)


def assert_ndvi(path, expected, bands=1):
    data, profile = read_raster(path)
    assert (profile["dtype"], profile["nodata"], profile["count"]) == ("float32", ND_OUT, bands)
    for got, want in zip(data, expected.reshape((bands,) + expected.shape[-2:])):
        valid = ~np.isnan(want)
        assert 0.5 < valid.mean() < 1
        np.testing.assert_array_equal(got == ND_OUT, ~valid)
        np.testing.assert_allclose(got[valid], want[valid], rtol=0, atol=1e-6)
        assert np.isfinite(got).all()
    return data


# -- NDVI ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scaling", list(SCALINGS))
@pytest.mark.parametrize("dtype", list(NODATA))
def test_ndvi_of_two_bands_of_one_file_equals_numpy(raster, tmp_path, dtype, scaling):
    red, nir, nodata = red_nir(dtype)
    scene = four_band_scene(raster, "scene.tif", red, nir, nodata)
    scale, offset = SCALINGS[scaling]
    out = tmp_path / "ndvi.tif"

    report = index([{"RED": (scene, 3), "NIR": (scene, 4)}], "ndvi", str(out), scale=scale,
                   offset=offset, tile_size=25, workers=1)

    assert report.tiles == 2 * 3
    expected = ndvi_reference(red, nir, nodata, scale, offset)
    data = assert_ndvi(out, expected)
    assert (data[0, :3, :10] == ND_OUT).all()        # nodata in RED, in NIR, in both
    if scaling == "none":
        assert (data[0, 3, :10] == ND_OUT).all()      # 0 / 0
        if dtype in ("int16", "float32"):
            assert (data[0, 4, :10] == ND_OUT).all()  # x / 0: nodata, not inf
    if dtype == "uint16":                            # near 65535: integer arithmetic would wrap
        top = (red > 60000) & (nir > 60000) & (red != nodata) & (nir != nodata)
        assert top.sum() > 100 and (data[0][top] != ND_OUT).all()


def test_ndvi_is_clipped_to_plus_minus_one(raster, tmp_path):
    # negative reflectances (e.g. after an offset) take a normalized difference out of [-1, 1]
    red = np.array([[-100, 500, 100, 300]], np.int16)
    nir = np.array([[500, -100, 300, 100]], np.int16)
    # (500 + 100) / (500 - 100) = 1.5 -> 1; (-100 - 500) / 400 = -1.5 -> -1; 200 / 400; -200 / 400
    out = tmp_path / "ndvi.tif"
    index([{"RED": (raster("r.tif", red), 1), "NIR": (raster("n.tif", nir), 1)}], "ndvi", str(out),
                 workers=1)
    np.testing.assert_array_equal(read_raster(out)[0][0], [[1.0, -1.0, 0.5, -0.5]])


def test_zero_denominator_is_nodata_not_inf(raster, tmp_path):
    red = np.array([[0.0, 0.2, -0.3, 0.1]], np.float32)
    nir = np.array([[0.0, -0.2, 0.3, 0.3]], np.float32)
    # 0 / 0, -0.4 / 0, 0.6 / 0, 0.2 / 0.4
    out = tmp_path / "ndvi.tif"
    index([{"RED": (raster("r.tif", red), 1), "NIR": (raster("n.tif", nir), 1)}], "ndvi", str(out),
                 workers=1)
    np.testing.assert_allclose(read_raster(out)[0][0], [[ND_OUT, ND_OUT, ND_OUT, 0.5]], rtol=1e-6)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tile_size", [8, 16, 25, 128])
def test_ndvi_does_not_depend_on_tiles_or_workers(raster, tmp_path, pool, tile_size, workers):
    """RED and NIR as two files; every tiling and worker count gives the whole-array numpy answer."""
    red, nir, nodata = red_nir("uint16", seed=3)
    scene = {"RED": (raster("red.tif", red, nodata=nodata), 1), "NIR": (raster("nir.tif", nir, nodata=nodata), 1)}
    out = tmp_path / "ndvi.tif"

    report = index([scene], "ndvi", str(out), scale=0.0001, offset=-0.1, tile_size=tile_size,
                   workers=1, executor=pool if workers == 2 else None)

    assert (report.tiles, report.workers) == (math.ceil(H / tile_size) * math.ceil(W / tile_size), workers)
    assert_ndvi(out, ndvi_reference(red, nir, nodata, 0.0001, -0.1))
    assert leftovers(out) == [str(out)]


def blocky(rng, shape, block, low, high, dtype):
    """Constant ``block`` x ``block`` squares, so nearest-neighbour resampling is only ambiguous at their edges."""
    small = rng.integers(low, high, (shape[0] // block + 1, shape[1] // block + 1))
    return np.kron(small, np.ones((block, block), np.int64))[:shape[0], :shape[1]].astype(dtype)


@pytest.fixture
def red_utm_nir_mercator(raster):
    """RED on the reference UTM grid; NIR made on that grid (5-pixel blocks) over rows 10-39 and
    columns 10-59 only, then reprojected by rasterio to Web Mercator at 6 m."""
    rng = np.random.default_rng(5)
    red = rng.integers(1, 10000, (H, W)).astype("uint16")
    nir = blocky(rng, (H, W), 5, 1, 10000, "uint16")
    r0, r1, c0, c1 = 10, 40, 10, 60
    part = UTM_TRANSFORM @ Affine.translation(c0, r0)
    bounds = (part.c, part.f - 10.0 * (r1 - r0), part.c + 10.0 * (c1 - c0), part.f)
    merc_transform, mw, mh = calculate_default_transform(UTM_CRS, "EPSG:3857", c1 - c0, r1 - r0, *bounds,
                                                         resolution=6.0)
    merc = np.zeros((mh, mw), "uint16")
    reproject(nir[r0:r1, c0:c1], merc, src_transform=part, src_crs=UTM_CRS, dst_transform=merc_transform,
              dst_crs="EPSG:3857", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    rows, cols = np.mgrid[0:H, 0:W]
    # pixels whose 8 neighbours carry the same NIR value, well inside the NIR part: no ambiguity
    unambiguous = ((rows % 5 != 0) & (rows % 5 != 4) & (cols % 5 != 0) & (cols % 5 != 4)
                   & (rows > r0) & (rows < r1 - 1) & (cols > c0) & (cols < c1 - 1))
    outside = (rows < r0 - 1) | (rows > r1) | (cols < c0 - 1) | (cols > c1)
    return dict(red=raster("red_utm.tif", red, nodata=0),
                nir=raster("nir_mercator.tif", merc, crs="EPSG:3857", transform=merc_transform, nodata=0),
                expected=ndvi_reference(red, nir, 0), unambiguous=unambiguous, outside=outside)


def assert_on_reference_grid(path):
    _, profile = read_raster(path)
    assert profile["crs"] == CRS.from_user_input(UTM_CRS)
    assert profile["transform"].almost_equals(UTM_TRANSFORM, precision=1e-9)
    assert (profile["height"], profile["width"]) == (H, W)


@pytest.mark.parametrize("tile_size", [16, 64])
def test_ndvi_of_files_on_different_grids_is_aligned_on_the_fly(red_utm_nir_mercator, tmp_path, tile_size):
    case = red_utm_nir_mercator
    out = tmp_path / "ndvi.tif"

    index([{"RED": (case["red"], 1), "NIR": (case["nir"], 1)}], "ndvi", str(out), reference=case["red"],
                 tile_size=tile_size, workers=1)

    assert_on_reference_grid(out)
    got = read_raster(out)[0][0]
    inside = case["unambiguous"]
    assert inside.sum() > 300
    np.testing.assert_allclose(got[inside], case["expected"][inside], rtol=0, atol=1e-6)
    assert (got[case["outside"]] == ND_OUT).all()           # no NIR there
    assert (got != ND_OUT).mean() > 0.4


# -- free band math -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression,reference", [
    ("where(B > A, 1, 0)", lambda a, b: np.where(b > a, 1.0, 0.0)),
    ("(A > 5000) & (B < 5000)", lambda a, b: ((a > 5000) & (b < 5000)).astype(float)),
    ("isnan(A) | isnan(B)", lambda a, b: np.zeros_like(a)),
], ids=["where", "and", "isnan"])
def test_bandmath_nodata_in_any_input_is_nodata_even_where_the_expression_hides_it(raster, tmp_path, expression,
                                                                                    reference):
    """A comparison with a missing value is just false: the engine, not the expression, must mask it."""
    red, nir, nodata = red_nir("int16", seed=7)
    scene = four_band_scene(raster, "scene.tif", red, nir, nodata)
    out = tmp_path / "result.tif"

    bandmath({"A": (scene, 3), "B": (scene, 4)}, expression, str(out), tile_size=16, workers=1)

    expected = reference(red.astype(np.float64), nir.astype(np.float64))
    expected[(red == nodata) | (nir == nodata)] = np.nan
    np.testing.assert_array_equal(read_raster(out)[0][0], np.where(np.isnan(expected), ND_OUT, expected))


# -- the catalogue, against the published formulas ----------------------------------------------------------

ROLE_BANDS = {"BLUE": 1, "GREEN": 2, "RED": 3, "NIR": 4, "SWIR1": 5, "SWIR2": 6}
#                     BLUE  GREEN RED    NIR  SWIR1 SWIR2     (reflectances)
PIXELS = np.array([[0.10, 0.20, 0.10, 0.50, 0.30, 0.20],
                   [0.04, 0.30, 0.10, 0.20, 0.10, 0.30],
                   [0.02, 0.10, 0.04, 0.40, 0.20, 0.10],
                   [0.00, 0.00, 0.00, 0.00, 0.00, 0.00],
                   [0.16, 0.00, 0.00, 0.30, 0.30, 0.00],
                   [0.00, 0.10, -0.10, 0.30, -0.20, 0.10]], np.float32)
N = None  # nodata: a zero denominator
# Worked out by hand, pixel by pixel, from the formulas of the papers (not from the catalogue's text):
EXPECTED = {
    # NDVI = (NIR - RED) / (NIR + RED)                       Rouse et al. 1974
    "ndvi": [0.4 / 0.6, 0.1 / 0.3, 0.36 / 0.44, N, 0.3 / 0.3, 1.0],          # 0.4 / 0.2 = 2 -> clipped
    # NDWI = (GREEN - NIR) / (GREEN + NIR)                   McFeeters 1996
    "ndwi": [-0.3 / 0.7, 0.1 / 0.5, -0.3 / 0.5, N, -0.3 / 0.3, -0.2 / 0.4],
    # MNDWI = (GREEN - SWIR1) / (GREEN + SWIR1)              Xu 2006
    "mndwi": [-0.1 / 0.5, 0.2 / 0.4, -0.1 / 0.3, N, -0.3 / 0.3, -1.0],      # 0.3 / -0.1 = -3 -> clipped
    # NBR = (NIR - SWIR2) / (NIR + SWIR2)                    Key & Benson 2006
    "nbr": [0.3 / 0.7, -0.1 / 0.5, 0.3 / 0.5, N, 0.3 / 0.3, 0.2 / 0.4],
    # NDBI = (SWIR1 - NIR) / (SWIR1 + NIR)                   Zha et al. 2003
    "ndbi": [-0.2 / 0.8, -0.1 / 0.3, -0.2 / 0.6, N, 0.0 / 0.6, -1.0],       # -0.5 / 0.1 = -5 -> clipped
    # EVI = 2.5 (NIR - RED) / (NIR + 6 RED - 7.5 BLUE + 1)   Huete et al. 2002 (G=2.5, C1=6, C2=7.5, L=1)
    "evi": [1.0 / 1.35, 0.25 / 1.5, 0.9 / 1.49, 0.0 / 1.0, 0.75 / 0.1, 1.0 / 0.7],  # not clipped: 7.5
    # SAVI = (1 + L) (NIR - RED) / (NIR + RED + L), L = 0.5  Huete 1988
    "savi": [0.6 / 1.1, 0.15 / 0.8, 0.54 / 0.94, 0.0 / 0.5, 0.45 / 0.8, 0.6 / 0.7],
    # EVI2 = 2.5 (NIR - RED) / (NIR + 2.4 RED + 1)            Jiang et al. 2008
    "evi2": [1.0 / 1.74, 0.25 / 1.44, 0.9 / 1.496, 0.0 / 1.0, 0.75 / 1.3, 1.0 / 1.06],
}
# SAVI with other soil factors: (1 + L) (NIR - RED) / (NIR + RED + L)
SAVI_L = {
    1.0: [0.8 / 1.6, 0.2 / 1.3, 0.72 / 1.44, 0.0 / 1.0, 0.6 / 1.3, 0.8 / 1.2],
    0.25: [0.5 / 0.85, 0.125 / 0.55, 0.45 / 0.69, 0.0 / 0.25, 0.375 / 0.55, 0.5 / 0.45],
}


@pytest.fixture
def six_bands(raster):
    """The pixels above as a 6-band float32 raster of 2 rows x 3 columns."""
    return raster("reflectance.tif", PIXELS.T.reshape(6, 2, 3))


def run_index(scene_path, key, out, **kwargs):
    spec = INDICES[key]
    scene = {role: (scene_path, ROLE_BANDS[role]) for role in spec.bands}
    index([scene], key, str(out), workers=1, **kwargs)
    return read_raster(out)[0][0].ravel()


def expected_output(values):
    return np.array([ND_OUT if v is None else v for v in values], np.float64)


def test_the_catalogue_is_the_one_tested_here():
    assert set(INDICES) == set(EXPECTED)
    assert INDICES["savi"].constants == {"L": 0.5}


@pytest.mark.parametrize("key", list(EXPECTED))
def test_index_equals_the_published_formula(six_bands, tmp_path, key):
    got = run_index(six_bands, key, tmp_path / f"{key}.tif")
    np.testing.assert_allclose(got, expected_output(EXPECTED[key]), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("soil", list(SAVI_L))
def test_savi_with_another_soil_factor(six_bands, tmp_path, soil):
    got = run_index(six_bands, "savi", tmp_path / "savi.tif", constants={"L": soil})
    np.testing.assert_allclose(got, expected_output(SAVI_L[soil]), rtol=2e-6, atol=1e-6)


def test_index_applies_scale_and_offset_first(raster, tmp_path):
    """Sentinel-2 L2A digital numbers: reflectance = DN * 0.0001 - 0.1."""
    digital = np.round((PIXELS + 0.1) / 0.0001).astype(np.uint16)
    scene = raster("dn.tif", digital.T.reshape(6, 2, 3))
    got = run_index(scene, "evi", tmp_path / "evi.tif", scale=0.0001, offset=-0.1)
    np.testing.assert_allclose(got, expected_output(EXPECTED["evi"]), rtol=1e-4, atol=1e-5)


def test_unknown_index_and_constant_are_parameter_errors(six_bands, tmp_path):
    scene = {role: (six_bands, b) for role, b in ROLE_BANDS.items()}
    with pytest.raises(ParameterError, match="Unknown index 'ndxi'; available: NDVI, NDWI"):
        index([scene], "ndxi", str(tmp_path / "x.tif"))
    with pytest.raises(ParameterError, match="NDVI has no constant L"):
        index([scene], "ndvi", str(tmp_path / "x.tif"), constants={"L": 1.0})
    with pytest.raises(InputError, match=r"EVI needs the band\(s\) BLUE"):
        index([{"RED": (six_bands, 3), "NIR": (six_bands, 4)}], "evi", str(tmp_path / "x.tif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reflectance.tif"]


# -- time series -----------------------------------------------------------------------------------------------

SCENE_NAMES = ["2021-04-03", "2021-05-13", "2021-06-22"]


@pytest.fixture
def series(raster, tmp_path):
    """Three 4-band int16 scenes (RED band 3, NIR band 4, nodata -9999) and their NDVI references."""
    (tmp_path / "scenes").mkdir()
    paths, references = [], []
    for i, name in enumerate(SCENE_NAMES):
        red, nir, nodata = red_nir("int16", seed=10 + i)
        paths.append(four_band_scene(raster, f"scenes/{name}.tif", red, nir, nodata, seed=20 + i))
        references.append(ndvi_reference(red, nir, nodata, 0.0001))
    return paths, np.stack(references)


def ndvi_scenes(paths):
    return [{"RED": (p, 3), "NIR": (p, 4)} for p in paths]


def test_series_gives_one_cog_with_a_band_per_scene(series, tmp_path, pool):
    paths, expected = series
    out = tmp_path / "ndvi_series.tif"

    report = index(ndvi_scenes(paths), "ndvi", str(out), scale=0.0001, tile_size=16, executor=pool)

    assert (report.bands, report.output) == (3, str(out))
    assert_ndvi(out, expected, bands=3)
    with rasterio.open(out) as src:
        assert list(src.descriptions) == SCENE_NAMES
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_series_per_scene_gives_one_cog_per_scene_in_a_folder(series, tmp_path, pool):
    paths, expected = series
    folder = tmp_path / "ndvi"

    report = index(ndvi_scenes(paths), "ndvi", str(folder), per_scene=True, scale=0.0001, tile_size=16,
                   executor=pool)

    names = [f"{n}_ndvi.tif" for n in SCENE_NAMES]
    assert list(report.outputs) == [str(folder / n) for n in names]      # one run, its sink split in one COG each
    assert sorted(p.name for p in folder.iterdir()) == names            # no work folder left either
    for name, want in zip(names, expected):
        assert_ndvi(folder / name, want)
        with rasterio.open(folder / name) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_series_scene_names_can_be_given(series, tmp_path):
    paths, _ = series
    out = tmp_path / "named.tif"
    index(ndvi_scenes(paths), "ndvi", str(out), scene_names=["april", "may", "june"], workers=1)
    with rasterio.open(out) as src:
        assert list(src.descriptions) == ["april", "may", "june"]


# -- the command line gives the API's pixels --------------------------------------------------------------------

@pytest.fixture
def cli_scenes(tmp_path, raster):
    """Two 4-band uint16 scenes s1.tif and s2.tif in tmp_path: BLUE, GREEN, RED, NIR (nodata 65535)."""
    arrays = []
    for i in (1, 2):
        red, nir, nodata = red_nir("uint16", seed=30 + i)
        blue = np.random.default_rng(40 + i).integers(1, 2000, red.shape).astype("uint16")
        bands = np.stack([blue, blue // 2, red, nir])
        raster(f"s{i}.tif", bands, nodata=nodata)
        arrays.append(bands)
    return arrays


def cli_and_api(tmp_path, args, api, *api_args, **api_kwargs):
    """Run ``tilewise ARGS`` (writing cli.tif) and the API (writing api.tif); the same pixels and grid."""
    proc = tilewise_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(tmp_path / "cli.tif") + ": ")
    api(*api_args, str(tmp_path / "api.tif"), workers=1, **api_kwargs)
    cli, cli_profile = read_raster(tmp_path / "cli.tif")
    ref, ref_profile = read_raster(tmp_path / "api.tif")
    np.testing.assert_array_equal(cli, ref)
    for key in ("crs", "transform", "dtype", "nodata", "count"):
        assert cli_profile[key] == ref_profile[key], key
    return cli


def test_cli_ndvi(tmp_path, cli_scenes):
    s1 = str(tmp_path / "s1.tif")
    cli_and_api(tmp_path, ["ndvi", "--red", "s1.tif:3", "--nir", "s1.tif:4", "-o", "cli.tif"],
                index, [{"RED": (s1, 3), "NIR": (s1, 4)}], "ndvi")
    assert_ndvi(tmp_path / "cli.tif", ndvi_reference(cli_scenes[0][2], cli_scenes[0][3], 65535))


def test_cli_index_evi_over_two_scenes_with_scale(tmp_path, cli_scenes):
    scenes = [{"NIR": (str(tmp_path / s), 4), "RED": (str(tmp_path / s), 3), "BLUE": (str(tmp_path / s), 1)}
              for s in ("s1.tif", "s2.tif")]
    cli = cli_and_api(tmp_path, ["index", "evi", "--bands", "RED=3,NIR=4,BLUE=1", "--scale", "0.0001",
                                 "-o", "cli.tif", "s1.tif", "s2.tif"],
                      index, scenes, "evi", scale=0.0001)
    assert cli.shape == (2, H, W)
    for got, bands in zip(cli, cli_scenes):
        blue, red, nir = bands[[0, 2, 3]].astype(np.float32) * np.float32(0.0001)
        denominator = nir.astype(np.float64) + 6 * red - 7.5 * blue + 1
        evi = 2.5 * (nir.astype(np.float64) - red) / denominator
        valid = (bands[[0, 2, 3]] != 65535).all(axis=0)
        np.testing.assert_array_equal(got != ND_OUT, valid)
        steady = valid & (np.abs(denominator) > 0.05)     # away from a pole, float32 inputs give 1e-6
        assert steady.mean() > 0.8
        np.testing.assert_allclose(got[steady], evi[steady], rtol=1e-5, atol=1e-6)


def test_cli_calc(tmp_path, cli_scenes):
    s1 = str(tmp_path / "s1.tif")
    cli_and_api(tmp_path, ["calc", "-e", "(B-A)/(B+A)", "A=s1.tif:3", "B=s1.tif:4", "-o", "cli.tif"],
                bandmath, {"A": (s1, 3), "B": (s1, 4)}, "(B-A)/(B+A)")
    # NDVI's numbers (unclipped, but bands that are not negative stay within [-1, 1])
    assert_ndvi(tmp_path / "cli.tif", ndvi_reference(cli_scenes[0][2], cli_scenes[0][3], 65535))


def test_cli_ndvi_takes_the_red_grid_like_qgis(red_utm_nir_mercator, tmp_path):
    """Without --reference the output takes RED's grid, as tilewise:ndvi does, although NIR
    sorts first and its file is in another CRS."""
    case = red_utm_nir_mercator
    proc = tilewise_cli("ndvi", "--red", case["red"], "--nir", case["nir"], "-q", "-o", "ndvi.tif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_on_reference_grid(tmp_path / "ndvi.tif")
    got = read_raster(tmp_path / "ndvi.tif")[0][0]
    inside = case["unambiguous"]
    np.testing.assert_allclose(got[inside], case["expected"][inside], rtol=0, atol=1e-6)


def test_calc_takes_the_first_given_input_grid(red_utm_nir_mercator, tmp_path):
    """``calc``'s default grid is the first input's (as its help says), whatever the names sort as."""
    case = red_utm_nir_mercator
    proc = tilewise_cli("calc", "-e", "(N - R) / (N + R)", f"R={case['red']}", f"N={case['nir']}", "-q",
                        "-o", "calc.tif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_on_reference_grid(tmp_path / "calc.tif")
    got = read_raster(tmp_path / "calc.tif")[0][0]
    inside = case["unambiguous"]
    np.testing.assert_allclose(got[inside], case["expected"][inside], rtol=0, atol=1e-6)
    assert (got[case["outside"]] == ND_OUT).all()


# -- one numexpr pass: the same bytes as converting to floats first (issue 21) -----------------------------------
#
# The reference is the former pipeline, step by step with numpy: read into the work type (NaN for
# nodata, outside and masked pixels: sources.to_float), scale and offset in the work type, numexpr
# on the floats, the result as float64, NaN where an input was NaN or the result is not finite, clip,
# then to_output (rint, the type's range, nodata). The engine instead reads integer bands as stored and
# does all of it in one numexpr pass; the output must be the same, bit for bit.

from tilewise.core.io.cog import to_output                                      # noqa: E402
from tilewise.core.io.sources import to_float, read_window                      # noqa: E402
from tilewise.core.grid import Grid, Tile                                         # noqa: E402
from tilewise.core.operations.bandmath import RAW_TYPES, TileValues, evaluate_tile   # noqa: E402
from tilewise.core.options import OutputSpec                                     # noqa: E402
from tilewise.core.vocabulary import OUTPUT_TYPES                                # noqa: E402

import numexpr                                                                    # noqa: E402

IN_TYPES = ("uint8", "int8", "uint16", "int16", "int32", "uint32", "float32", "float64")
IN_NODATA = {"uint8": 0, "int8": -128, "uint16": 65535, "int16": -9999, "int32": -2147483648,
             "uint32": 4294967295, "float32": -9999.0, "float64": float("nan")}
EXPRESSIONS = (
    "(B - A) / (B + A)",                              # NDVI
    INDICES["evi"].expression().replace("NIR", "B").replace("RED", "A").replace("BLUE", "(A - B)"),
    INDICES["savi"].expression(L=0.428).replace("NIR", "B").replace("RED", "A"),
    "A > B",                                          # a boolean result
    "where(A > B, 100000007, -3)",                    # an int32 result, not exact in float32
    "where(A > B, A, B) / 2",                         # halves: ties for the rounding to integers
    "(A + B) / 2 - 0.5",
    "-A * 0 + B * 0",                                 # -0.0 and +0.0 around clip bounds
    "A * 1e30 - B",                                   # beyond float32 (and int) ranges
    "sqrt(A - B) + log(B)",                           # NaN and -inf: nodata
    "A / B",                                          # x / 0
    "A * B * A * B",                                  # float32 overflow
    "A ** 2 - B ** 0.5",
)
CLIPS = (None, (-1.0, 1.0), (0.0, 50.0), (-0.0, 0.0), (5.0, 1.0), (float("nan"), 1.0), (-1e39, 1e39))
SCALES = ((1.0, 0.0), (0.0001, -0.1), (2.5, 0.0), (1.0, 3.0), (0.0, 1.0))   # 0 x inf is NaN


def values_of(dtype, rng, shape=(24, 40)):
    """Values over the whole range of ``dtype``, small ones (ties, zeros), its nodata, and for floats
    NaN, +-inf, -0.0 and subnormals."""
    if dtype.startswith("float"):
        a = rng.choice([rng.uniform(-5, 5), rng.uniform(-1e6, 1e6), 0.0, -0.0, 1.0, np.inf, -np.inf, np.nan,
                        1e-42, 3e38], shape).astype(dtype)
        a[rng.random(shape) < 0.6] = rng.uniform(-2, 60, shape).astype(dtype)[rng.random(shape) < 0.6][0]
        a.flat[::7] = rng.uniform(-2, 60, a.flat[::7].shape)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, endpoint=True, dtype=np.int64)
        small = rng.integers(max(info.min, -60), 60, shape)
        a = np.where(rng.random(shape) < 0.7, small, a).astype(dtype)
        a.flat[::11] = [info.min, info.max][rng.integers(0, 2)]
    a.flat[::13] = IN_NODATA[dtype]
    return a


def former_pipeline(expression, raws, fill, scale, offset, work, clip, spec, missing):
    """Tilewise's band math before issue 21, on in-memory tiles (see above)."""
    values = {}
    for name, raw in raws.items():
        buf = np.empty(raw.shape, work)
        to_float(raw, buf, fill)
        if missing is not None:
            buf[missing] = np.nan
        if scale != 1.0 or offset != 0.0:
            buf = buf * buf.dtype.type(scale) + buf.dtype.type(offset)
        values[name] = buf
    invalid = np.zeros(missing.shape if missing is not None else next(iter(raws.values())).shape, bool)
    for v in values.values():
        invalid |= np.isnan(v)
    with np.errstate(all="ignore"):
        result = numexpr.evaluate(expression, local_dict=values).astype(np.float64, copy=False)
        result[invalid | ~np.isfinite(result)] = np.nan
        if clip:
            np.clip(result, clip[0], clip[1], out=result)
        return to_output(result, spec)


def one_pass(expression, raws, fill, scale, offset, work, clip, spec, missing):
    """The engine's tile computation, on the tiles as the engine reads them (_read_scene)."""
    inputs = []
    for name, raw in raws.items():
        if raw.dtype.name in RAW_TYPES:
            inputs.append(TileValues(name, raw, fill, scale, offset))
        else:                                          # read as floats, NaN for no value
            buf = np.empty(raw.shape, work)
            to_float(raw, buf, fill)
            if missing is not None:
                buf[missing] = np.nan
            inputs.append(TileValues(name, buf, None, scale, offset))
    gap = missing if any(raw.dtype.name in RAW_TYPES for raw in raws.values()) else None
    out = np.empty(next(iter(raws.values())).shape, spec.dtype)
    evaluate_tile(expression, inputs, out, spec, work, clip, gap)
    return out


@pytest.mark.parametrize("expression", EXPRESSIONS)
@pytest.mark.parametrize("dtype", IN_TYPES)
def test_one_pass_equals_the_former_pipeline_bit_for_bit(dtype, expression):
    rng = np.random.default_rng(IN_TYPES.index(dtype) * 100 + EXPRESSIONS.index(expression))
    work = "float64" if dtype in ("int32", "uint32", "float64") else "float32"
    raws = {"A": values_of(dtype, rng), "B": values_of(dtype, rng)}
    missing = rng.random(raws["A"].shape) < 0.05
    # every output type with no clip and the index clip; every clip into float32, int16 and uint8; the
    # scalings and the mask in turn (each combination compiles its own program: a full product is slow)
    combos = [(o, c) for o in OUTPUT_TYPES for c in CLIPS if o in ("float32", "int16", "uint8") or c in CLIPS[:2]]
    checked = 0
    for k, (out_type, clip) in enumerate(combos):
        scale, offset = SCALES[k % len(SCALES)]
        for gap in ((None, missing) if k % 3 == 0 else (missing if k % 2 else None,)):
            spec = OutputSpec("x.tif", out_type).resolved()
            args = (expression, raws, IN_NODATA[dtype], scale, offset, work, clip, spec, gap)
            want, got = former_pipeline(*args), one_pass(*args)
            assert got.dtype == want.dtype
            bits = f"u{got.itemsize}"
            differ = np.flatnonzero(got.view(bits) != want.view(bits))
            assert not differ.size, (
                f"{dtype} -> {out_type}, clip {clip}, scale {scale} offset {offset}, mask {gap is not None}: "
                f"{differ.size} pixels differ, e.g. A {raws['A'].flat[differ[:3]]} B {raws['B'].flat[differ[:3]]}: "
                f"{got.flat[differ[:3]]} instead of {want.flat[differ[:3]]}")
            checked += 1
    assert checked == len(combos) + len(combos[::3])


def test_one_pass_keeps_the_nodata_of_every_kind_apart():
    # what must be nodata is, and nothing else: a value equal to the nodata of another input, the
    # output nodata value itself computed, a masked pixel, and NaN from a float input
    a = np.array([[0, 7, 9, 3, 9]], np.uint8)
    b = np.array([[5, 0, 9, 3, 255]], np.uint8)
    c = np.array([[1.0, 2.0, np.nan, 1.0, 1.0]], np.float32)
    missing = np.array([[False, False, False, True, False]])
    out = np.empty((1, 5), np.float32)
    evaluate_tile("A - B + C - 10000", [TileValues("A", a, 0), TileValues("B", b, 255), TileValues("C", c)],
                  out, OutputSpec("x", "float32", -9999.0), missing=missing)
    np.testing.assert_array_equal(out, [[-9999.0, -9991.0, -9999.0, -9999.0, -9999.0]])
    out = np.empty((1, 5), np.float32)
    evaluate_tile("A - B + C - 10000", [TileValues("A", a, 0), TileValues("B", b, None), TileValues("C", c)],
                  out, OutputSpec("x", "float32", -9999.0))
    np.testing.assert_array_equal(out, [[-9999.0, -9991.0, -9999.0, -9999.0, -10245.0]])


def test_rounding_to_integers_is_half_to_even_like_numpy():
    halves = np.arange(-8, 9, dtype=np.int16)           # x / 2: every tie between -4 and 4
    for out_type in ("int16", "uint8", "int8", "uint32", "int32", "uint16"):
        out = np.empty(halves.shape, out_type)
        spec = OutputSpec("x.tif", out_type).resolved()
        evaluate_tile("A / 2", [TileValues("A", halves)], out, spec)
        info = np.iinfo(out_type)
        np.testing.assert_array_equal(out, np.clip(np.rint(halves / 2), info.min, info.max).astype(out_type))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_reading_as_stored_equals_reading_as_floats(raster, tmp_path, dtype):
    # partly outside the input, an internal mask, another grid (warped, with and without nodata): the
    # tiles the engine computes from the values as stored equal those from the former float read
    rng = np.random.default_rng(3)
    data = values_of(dtype, rng, (2, 30, 37))
    data[~np.isfinite(data)] = 1 if dtype.startswith("float") else data[~np.isfinite(data)]
    with_nodata = raster("nd.tif", data, nodata=IN_NODATA[dtype])
    masked = raster("masked.tif", data)
    with rasterio.open(masked, "r+") as dst:
        mask = np.full(data.shape[1:], 255, np.uint8)
        mask[5:9, 3:20] = 0
        dst.write_mask(mask)
    bigger = Grid(UTM_CRS, tuple(UTM_TRANSFORM @ Affine.translation(-6, -4))[:6], 49, 41)
    shifted = Grid(UTM_CRS, tuple(UTM_TRANSFORM @ Affine.translation(-5.5, 3.25) @ Affine.scale(0.75))[:6], 50, 40)
    spec = OutputSpec("x.tif", "float32").resolved()
    work = "float32" if dtype != "float64" else "float64"
    for path in (with_nodata, masked):
        for grid in (bigger, shifted):
            for tile in (Tile(0, 0, 0, 20, 17), Tile(1, 20, 17, grid.height - 20, grid.width - 17)):
                floats = np.empty((2, tile.height, tile.width), work)
                read_window(path, [1, 2], grid, tile, floats)
                want = former_pipeline("(B - A) / (B + A)", {"A": floats[0], "B": floats[1]}, None, 1.0, 0.0,
                                       work, (-1.0, 1.0), spec, None)
                stored = np.empty((2, tile.height, tile.width), dtype if dtype in RAW_TYPES else work)
                missing = read_window(path, [1, 2], grid, tile, stored)
                with rasterio.open(path) as src:
                    fill = src.nodata
                got = np.empty(want.shape, np.float32)
                evaluate_tile("(B - A) / (B + A)", [TileValues("A", stored[0], fill), TileValues("B", stored[1], fill)],
                              got, spec, work, (-1.0, 1.0), missing)
                assert got.tobytes() == want.tobytes(), (path, grid, tile)
                assert (want == spec.nodata).mean() > 0.05

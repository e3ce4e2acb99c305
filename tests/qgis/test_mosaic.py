"""tilewise:mosaic in QGIS: layers and folders put back together exactly, inputs in two CRSs against
gdalwarp, 2,000 files through qgis_process under a low open-file limit, valid COGs whose overviews
follow OVERVIEW_RESAMPLING, and one clear error per bad input."""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal, osr
from osgeo_utils.samples.validate_cloud_optimized_geotiff import validate
from qgis.core import (QgsApplication, QgsProcessingException, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterString, QgsRasterLayer)

from conftest import PLUGINS_DIR, REPO
from test_alignment import blocky
from twtest import UTM33_10M, messages, qgis_enum, read_raster, run, write_raster

sys.path.insert(0, str(REPO / "scripts"))
from qgis_process import qgis_process_binary, qgis_process_env  # noqa: E402  (scripts/ is no package)

ALG_ID = "tilewise:mosaic"
OVERLAPS = ["first", "last", "min", "max", "mean", "median"]
#: a process that opens every file matching its argument and keeps them all open
HOLD_ALL = "import glob, sys; held = [open(p, 'rb') for p in glob.glob(sys.argv[1])]"
FD_LIMIT = 256   # far fewer than the 2,000 inputs below


def overlap(name):
    return OVERLAPS.index(name)


def read_all(path):
    """``(bands x rows x cols array, dataset)`` of a raster read with GDAL."""
    ds = gdal.Open(str(path))
    assert ds is not None, gdal.GetLastErrorMsg()
    data = ds.ReadAsArray()
    return (data if data.ndim == 3 else data[np.newaxis]), ds


def cut(data, folder, size, nodata, geotransform=UTM33_10M, options=("TILED=YES", "COMPRESS=DEFLATE")):
    """``data`` (bands, rows, cols) as ``size`` x ``size`` pieces on its lattice (edge pieces smaller)."""
    os.makedirs(folder, exist_ok=True)
    x0, dx, _, y0, _, dy = geotransform
    paths = []
    for row in range(0, data.shape[1], size):
        for col in range(0, data.shape[2], size):
            paths.append(write_raster(os.path.join(folder, f"piece_{row:04d}_{col:04d}.tif"),
                                      data[:, row:row + size, col:col + size], nodata=nodata,
                                      geotransform=(x0 + col * dx, dx, 0.0, y0 + row * dy, 0.0, dy),
                                      options=options))
    return paths


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A 3-band int16 raster (nodata -9999, some holes), and its path."""
    folder = tmp_path_factory.mktemp("original")
    rng = np.random.default_rng(21)
    data = rng.integers(-3000, 3000, (3, 90, 130)).astype(np.int16)
    data[rng.random(data.shape) < 0.1] = -9999
    return data, write_raster(folder / "original.tif", data, nodata=-9999)


def assert_same_raster(output, data, source):
    got, ds = read_all(output)
    _, ref = read_all(source)
    np.testing.assert_array_equal(got, data)
    assert ds.GetGeoTransform() == ref.GetGeoTransform()
    assert ds.GetRasterBand(1).DataType == ref.GetRasterBand(1).DataType
    assert read_raster(output).same_crs(32633)
    layer = QgsRasterLayer(str(output), "mosaic", "gdal")
    assert layer.isValid()
    assert (layer.bandCount(), layer.width(), layer.height()) == (data.shape[0], data.shape[2], data.shape[1])
    assert layer.crs().authid() == "EPSG:32633"


# -- layers and folders back into the original -------------------------------------------------------------

@pytest.mark.parametrize("rule,route", [("first", "GDAL VRT -> COG"), ("mean", "tiles of up to 32 x 32")])
def test_layers_mosaic_back_to_the_original(original, tmp_path, out_dir, rule, route):
    data, source = original
    pieces = cut(data, tmp_path / "pieces", 40, -9999)              # 130 = 40 + 40 + 40 + 10, 90 = 40 + 40 + 10
    layers = [QgsRasterLayer(p, os.path.basename(p), "gdal") for p in pieces]
    assert all(layer.isValid() for layer in layers)
    feedback = messages()

    result = run(ALG_ID, {"INPUT": layers, "OVERLAP": overlap(rule), "TILE_SIZE": 32, "WORKERS": 2,
                          "OUTPUT": str(out_dir / "mosaic.tif")}, feedback=feedback)

    assert result["OUTPUT"] == str(out_dir / "mosaic.tif")
    assert f"Mosaic of {len(pieces)} rasters, overlap rule {rule}" in feedback.text
    assert route in feedback.text                                   # GDAL's path or the engine's tiles
    assert sorted(p.name for p in out_dir.iterdir()) == ["mosaic.tif"]
    assert_same_raster(result["OUTPUT"], data, source)


def test_folder_and_pattern_mosaic_back_to_the_original(original, tmp_path, out_dir):
    """Only the files matching PATTERN count (``**`` recursing into sub-folders), in a folder whose
    name holds glob characters."""
    data, source = original
    folder = tmp_path / "tiles [2020]"
    cut(data[:, :, :80], folder, 40, -9999)
    east = cut(data[:, :, 80:], folder / "east", 40, -9999,
               geotransform=(UTM33_10M[0] + 80 * 10.0,) + UTM33_10M[1:])
    # an input the pattern leaves out; taken in, it would win everywhere it is listed before the pieces
    write_raster(folder / "other.tif", np.full(data.shape, 7, np.int16), nodata=-9999)
    (folder / "notes.txt").write_text("not a raster\n", encoding="utf-8")
    assert sorted(os.listdir(folder))[0] == "east" and east

    result = run(ALG_ID, {"INPUT_FOLDER": str(folder), "PATTERN": "**/piece_*.tif",
                          "OUTPUT": str(out_dir / "mosaic.tif")})

    assert_same_raster(result["OUTPUT"], data, source)
    result = run(ALG_ID, {"INPUT_FOLDER": str(folder), "PATTERN": "**/*.tif", "OUTPUT": str(out_dir / "all.tif")})
    assert (read_all(result["OUTPUT"])[0] == 7).mean() > 0.5        # the pattern does decide


def test_folder_and_pattern_are_text_parameters_not_a_layer_list():
    """Thousands of files go through a folder and a pattern: nothing lists them in a layer widget."""
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG_ID)
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert isinstance(params["INPUT_FOLDER"], QgsProcessingParameterFile)
    assert params["INPUT_FOLDER"].behavior() == qgis_enum("Qgis.ProcessingFileParameterBehavior.Folder",
                                                           "QgsProcessingParameterFile.Folder")
    assert isinstance(params["PATTERN"], QgsProcessingParameterString)
    assert isinstance(params["INPUT"], QgsProcessingParameterMultipleLayers)
    assert params["OVERLAP"].options() == OVERLAPS   # models store the index


# -- inputs in two CRSs against gdalwarp ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_crs(tmp_path_factory):
    """Overlapping 2-band inputs: UTM 33 at 100 m, UTM 34 at 120 m (nodata -1, with holes)."""
    folder = tmp_path_factory.mktemp("two_crs")
    rng = np.random.default_rng(6)
    inputs = []
    for name, epsg, origin, res, shape in [("a_32633.tif", 32633, (693900.0, 5319600.0), 100.0, (50, 60)),
                                           ("b_32634.tif", 32634, (248700.0, 5322900.0), 120.0, (45, 55))]:
        data = np.stack([blocky(rng, shape, 3, 1, 1000) for _ in range(2)]).astype(np.int16)
        data[:, 20:30, 10:25] = -1
        gt = (origin[0], res, 0.0, origin[1], 0.0, -res)
        inputs.append(write_raster(folder / name, data, nodata=-1, geotransform=gt, epsg=epsg))
    return inputs


def srs(epsg):
    s = osr.SpatialReference()
    s.ImportFromEPSG(epsg)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def footprint(path, epsg):
    """The raster's bounds in EPSG:``epsg`` (edges densified, as a warp sees them)."""
    ds = gdal.Open(path)
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    source = osr.SpatialReference(ds.GetProjection())
    source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    box = (x0, y0 + dy * ds.RasterYSize, x0 + dx * ds.RasterXSize, y0)
    return osr.CoordinateTransformation(source, srs(epsg)).TransformBounds(*box, 21)


@pytest.mark.parametrize("case", ["TARGET_CRS + CELL_SIZE", "union default"])
def test_two_crs_match_gdalwarp_on_the_asked_grid(two_crs, tmp_path, out_dir, case):
    a, b = two_crs
    if case == "union default":   # the first input's CRS and pixel size, on its lattice; "first" wins
        epsg, res, params, warp_order = 32633, 100.0, {"OVERLAP": overlap("first")}, [b, a]
    else:                         # gdalwarp paints later inputs over earlier ones: "last"
        epsg, res, params, warp_order = 3035, 150.0, {"OVERLAP": overlap("last"), "TARGET_CRS": "EPSG:3035",
                                                      "CELL_SIZE": 150.0}, [a, b]

    result = run(ALG_ID, dict(params, INPUT=[a, b], TILE_SIZE=32, OUTPUT=str(out_dir / "mosaic.tif")))

    got, ds = read_all(result["OUTPUT"])
    x0, dx, rx, y0, ry, dy = ds.GetGeoTransform()
    width, height = ds.RasterXSize, ds.RasterYSize
    assert read_raster(result["OUTPUT"]).same_crs(epsg)
    assert (dx, dy, rx, ry) == (res, -res, 0.0, 0.0)
    if case == "union default":
        ax, _, _, ay, _, _ = gdal.Open(a).GetGeoTransform()
        columns, rows = (x0 - ax) / res, (ay - y0) / res
        assert (columns, rows) == (pytest.approx(round(columns), abs=1e-9), pytest.approx(round(rows), abs=1e-9))
    boxes = [footprint(p, epsg) for p in (a, b)]
    union = (min(bx[0] for bx in boxes), min(bx[1] for bx in boxes), max(bx[2] for bx in boxes),
             max(bx[3] for bx in boxes))
    bounds = (x0, y0 + dy * height, x0 + dx * width, y0)
    eps = 1e-6 * res                                 # the output covers the inputs, with less than a pixel to spare
    assert all(bounds[i] <= union[i] + eps for i in (0, 1)) and all(bounds[i] >= union[i] - eps for i in (2, 3))
    assert all(union[i] - bounds[i] < res for i in (0, 1)) and all(bounds[i] - union[i] < res for i in (2, 3))

    expected = gdalwarp(warp_order, tmp_path / "gdalwarp.tif", epsg, res, bounds)
    assert expected.shape == got.shape
    assert ((expected == -1) == (got == -1)).mean() > 0.99
    both = (expected != -1) & (got != -1)
    # nearest neighbour may pick the other side of a block edge where a pixel centre lies within the
    # 0.125-pixel approximation error of the warp; the blocky inputs make that rare
    assert (got[both] == expected[both]).mean() > 0.99
    alone = np.stack([gdalwarp([p], tmp_path / f"alone{i}.tif", epsg, res, bounds)[0] for i, p in enumerate((a, b))])
    assert (alone != -1).all(axis=0).mean() > 0.1   # the overlap rule decided a real part of the output


def gdalwarp(sources, destination, epsg, res, bounds):
    """The gdalwarp command line onto a grid (nearest; later sources paint over earlier ones)."""
    proc = subprocess.run(["gdalwarp", "-q", "-overwrite", "-t_srs", f"EPSG:{epsg}", "-tr", repr(res), repr(res),
                           "-te", *map(repr, bounds), "-r", "near", "-srcnodata", "-1", "-dstnodata", "-1",
                           *map(str, sources), str(destination)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return read_all(destination)[0]


# -- 2,000 files through qgis_process, under a low open-file limit ------------------------------------------

@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory):
    """``qgis_process ARGS...`` as scripts/qgis_process.py runs it (a fresh profile with Tilewise enabled,
    the plugin from its folder), optionally with at most ``fd_limit`` open files."""
    env = qgis_process_env(str(PLUGINS_DIR), str(tmp_path_factory.mktemp("qgis-process-profile")))
    env.pop("PYTHONPATH", None)

    def call(*args, fd_limit=None):
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
        return subprocess.run([qgis_process_binary(), *args], env=env, capture_output=True, text=True, timeout=300,
                              preexec_fn=limit if fd_limit else None)
    return call


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    """2,000 uncompressed 16 x 16 two-band files (40 rows x 50 columns of them) cut from one canvas."""
    folder = tmp_path_factory.mktemp("many")
    canvas = np.random.default_rng(2000).integers(0, 250, (2, 640, 800)).astype(np.uint8)
    paths = cut(canvas, folder / "tiles", 16, None, options=())
    assert len(paths) == 2000
    return folder, canvas


def test_the_open_file_limit_is_below_the_number_of_inputs(many_files):
    """The limit the next test runs under: a process that held every input open at once would fail."""
    folder, _ = many_files
    proc = subprocess.run([sys.executable, "-c", HOLD_ALL,
                           str(folder / "tiles" / "*.tif")], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT)))
    assert proc.returncode != 0
    assert "Too many open files" in proc.stderr


@pytest.mark.parametrize("rule,route", [("first", "GDAL VRT -> COG"), ("mean", "tiles of up to")])
def test_two_thousand_files_from_a_folder_under_a_low_open_file_limit(qgis_process, many_files, rule, route):
    folder, canvas = many_files
    output = folder / f"{rule}.tif"
    proc = qgis_process("--json", "run", ALG_ID, "--", f"INPUT_FOLDER={folder / 'tiles'}", "PATTERN=piece_*.tif",
                        f"OVERLAP={overlap(rule)}", "WORKERS=2", f"OUTPUT={output}", fd_limit=FD_LIMIT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["results"]["OUTPUT"] == str(output)
    assert "Mosaic of 2000 rasters" in proc.stdout and route in proc.stdout
    got, ds = read_all(output)
    np.testing.assert_array_equal(got, canvas)
    assert ds.GetGeoTransform() == UTM33_10M
    _, errors, _ = validate(str(output), full_check=True)
    assert errors == []


def test_qgis_process_help_names_the_folder_parameters(qgis_process):
    proc = qgis_process("help", ALG_ID)
    assert proc.returncode == 0, proc.stderr
    for name in ("INPUT_FOLDER", "PATTERN", "OVERLAP", "OVERVIEW_RESAMPLING", "Cloud-Optimized GeoTIFF"):
        assert name in proc.stdout, name


# -- COG validity and overviews --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkerboard(tmp_path_factory):
    """A 1024 x 1024 checkerboard of single pixels, 10 and 30, cut into four 512-pixel pieces: every
    2 x 2 block averages to 20, and nearest picks a pixel of the same colour in every block."""
    rows, cols = np.indices((1024, 1024))
    board = np.where((rows + cols) % 2 == 0, 10, 30).astype(np.uint16)[np.newaxis]
    return board, cut(board, tmp_path_factory.mktemp("checkerboard"), 512, None, options=())


@pytest.mark.parametrize("rule", ["first", "mean"])
@pytest.mark.parametrize("resampling", ["average", "nearest"])
def test_output_is_a_valid_cog_with_the_asked_overviews(checkerboard, out_dir, rule, resampling):
    board, pieces = checkerboard
    output = str(out_dir / "board.tif")
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG_ID)
    choice = alg.parameterDefinition("OVERVIEW_RESAMPLING").options().index(resampling)

    run(ALG_ID, {"INPUT": pieces, "OVERLAP": overlap(rule), "OVERVIEW_RESAMPLING": choice, "WORKERS": 2,
                 "OUTPUT": output})

    warnings, errors, details = validate(output, full_check=True)
    assert errors == []
    assert warnings == []
    assert "overview_0" in details["ifd_offsets"]
    ds = gdal.Open(output)
    band = ds.GetRasterBand(1)
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    assert band.GetBlockSize() == [512, 512]
    assert band.GetOverviewCount() >= 1
    np.testing.assert_array_equal(band.ReadAsArray(), board[0])
    overview = band.GetOverview(0)
    assert (overview.XSize, overview.YSize) == (512, 512)
    values = overview.ReadAsArray()
    if resampling == "average":
        assert (values == 20).all()
    else:   # one pixel of each 2 x 2 block, the same one in every block (GDAL versions differ in which)
        assert any(np.array_equal(values, board[0, r::2, c::2]) for r in (0, 1) for c in (0, 1))
    overview = band = ds = None


# -- bad inputs ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty").mkdir()
    (folder / "tiles").mkdir()
    write_raster(folder / "tiles" / "two_bands.tif", np.ones((2, 20, 30), np.uint16), nodata=0)
    write_raster(folder / "tiles" / "one_band.tif", np.ones((20, 30), np.uint16), nodata=0)
    return folder


def bad_case(name, folder, output):
    tiles = folder / "tiles"
    return {
        "no inputs at all": ({"OUTPUT": output}, ["No input rasters", "select layers or a folder"]),
        "empty folder": ({"INPUT_FOLDER": str(folder / "empty"), "OUTPUT": output},
                         [f"No file matches *.tif in {folder / 'empty'}"]),
        "pattern matching nothing": ({"INPUT_FOLDER": str(tiles), "PATTERN": "*.jp2", "OUTPUT": output},
                                     [f"No file matches *.jp2 in {tiles}"]),
        "different band counts": ({"INPUT": [str(tiles / "two_bands.tif"), str(tiles / "one_band.tif")],
                                   "OUTPUT": output}, [str(tiles / "one_band.tif"), "1 band(s)", "same bands"]),
        "band counts in a folder": ({"INPUT_FOLDER": str(tiles), "OUTPUT": output},
                                    [str(tiles / "two_bands.tif"), "2 band(s)", "same bands"]),
    }[name]


@pytest.mark.parametrize("name", ["no inputs at all", "empty folder", "pattern matching nothing",
                                  "different band counts", "band counts in a folder"])
def test_bad_input_is_one_clear_error_and_writes_nothing(bad_folder, out_dir, name):
    params, expected = bad_case(name, bad_folder, str(out_dir / "out.tif"))
    before = sorted(p.name for p in (bad_folder / "tiles").iterdir())

    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, params)

    message = str(info.value)
    for text in expected:
        assert text in message, message
    assert "\n" not in message.strip() and "Traceback" not in message, message
    assert list(out_dir.iterdir()) == []
    assert sorted(p.name for p in (bad_folder / "tiles").iterdir()) == before

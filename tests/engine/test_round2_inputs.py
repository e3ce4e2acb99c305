"""Issue 26, A7 and A8 (not STAC): file names that are not UTF-8, zones whose coordinates do not fit
their CRS, warnings that -q must not hide, and zones outside every raster. Through the command line,
run as users run it (a separate process, under a UTF-8 locale), and through the Python API."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import shapely
from affine import Affine
from pyogrio.raw import write as write_vector

from tilewise.core import composite
from tilewise.core.errors import InputError
from tilewise.core.io.names import NameAliases, shown, undecodable
from tilewise.core.io.vector import reproject
from tilewise.core.operations.extract import zones_from_geometries
from tilewise.core.operations.extract.run import extract

from support import UTM_CRS, read_raster, subprocess_env, write_raster

SHAPE = (20, 30)
FFFD = "\ufffd"
#: The UTM cells of the rasters: x 500000-500300, y 4999800-5000000.
INSIDE = shapely.box(500_020, 4_999_850, 500_120, 4_999_950)


def cli(*args, cwd):
    """``tilewise ARGS`` in a UTF-8 locale; bytes arguments are passed as they are (Latin-1 names)."""
    env = {**subprocess_env(), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    argv = [os.fsencode(sys.executable), b"-m", b"tilewise",
            *(a if isinstance(a, bytes) else os.fsencode(str(a)) for a in args)]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=300)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tilewise: error: "), stderr
    return lines[0]


def latin1(folder, name: bytes) -> bytes:
    """``folder/name`` as bytes (``name`` with a Latin-1 byte, not UTF-8)."""
    return os.path.join(os.fsencode(str(folder)), name)


def to_latin1(path, name: bytes) -> bytes:
    """Rename ``path`` (written under a UTF-8 name: GDAL cannot write the other) and its side files
    to ``name``'s stem."""
    folder, base = os.path.split(str(path))
    stem, new_stem = os.path.splitext(base)[0], os.path.splitext(name)[0]
    for entry in os.listdir(folder):
        if entry.startswith(stem + "."):
            os.rename(os.path.join(folder, entry), latin1(folder, new_stem + os.fsencode(entry[len(stem):])))
    return latin1(folder, name)


@pytest.fixture
def scenes(tmp_path):
    """Two uint8 scenes named ``caf\\xe9{i}_2020-0{i+1}-01.tif`` (Latin-1), and their data."""
    rng = np.random.default_rng(26)
    layers = [rng.integers(1, 200, SHAPE).astype("uint8") for _ in range(2)]
    names = []
    for i, a in enumerate(layers):
        name = b"caf\xe9%d_2020-0%d-01.tif" % (i, i + 1)
        to_latin1(write_raster(tmp_path / f"tmp{i}.tif", a, nodata=0), name)
        names.append(name)
    return names, layers


# -- A7: names that are not UTF-8 ----------------------------------------------------------------------------

def test_composite_reads_latin1_names(tmp_path, scenes):
    names, layers = scenes
    code, out, err = cli("composite", "-q", "-j", "1", "-s", "mean", "-o", "mean.tif", *names, cwd=tmp_path)
    assert code == 0 and "Traceback" not in err, err
    data, _ = read_raster(tmp_path / "mean.tif")
    np.testing.assert_allclose(data[0], np.mean(np.stack(layers).astype(float), axis=0), rtol=1e-6)


def test_a_quoted_glob_matching_latin1_names(tmp_path, scenes):
    code, _, err = cli("composite", "-q", "-j", "1", "-s", "count", "-o", "n.tif", "caf*.tif", cwd=tmp_path)
    assert code == 0, err
    assert read_raster(tmp_path / "n.tif")[0][0].max() == 2


def test_calc_reads_latin1_names_with_bands(tmp_path, scenes):
    names, layers = scenes
    code, _, err = cli("calc", "-q", "-e", "A + B", b"A=" + names[0], b"B=" + names[1] + b":1", "-o", "sum.tif",
                       "--output-type", "float32", cwd=tmp_path)
    assert code == 0, err
    data, _ = read_raster(tmp_path / "sum.tif")
    np.testing.assert_array_equal(data[0], layers[0].astype("float32") + layers[1])


def test_extract_shows_latin1_names_with_replacement_characters(tmp_path, scenes):
    names, layers = scenes
    zones = b"z\xf6nes.shp"                      # a Latin-1 shapefile: its .shx, .dbf and .prj must be found too
    write_vector(str(tmp_path / "tmpz.shp"), shapely.to_wkb([INSIDE]), [np.array([7])], fields=["pid"],
                 geometry_type="Polygon", crs=UTM_CRS)
    to_latin1(tmp_path / "tmpz.shp", zones)
    code, out, err = cli("extract", "-q", "-z", zones, "--id-field", "pid", "-o", "ts.csv", *names, cwd=tmp_path)
    assert code == 0 and err == "", err                         # no "has no CRS" warning: its .prj was read
    with open(tmp_path / "ts.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["pid"], r["source"], r["date"]) for r in rows] == [
        ("7", f"caf{FFFD}0_2020-01-01", "2020-01-01"), ("7", f"caf{FFFD}1_2020-02-01", "2020-02-01")]
    assert float(rows[0]["mean"]) == pytest.approx(layers[0][5:15, 2:12].mean())


def test_messages_name_the_users_file_not_its_alias(tmp_path, scenes):
    far = b"loin\xe9.tif"
    to_latin1(write_raster(tmp_path / "tmpfar.tif", np.ones(SHAPE, "uint8"), nodata=0,
                           transform=Affine(10, 0, 700_000, 0, -10, 5_000_000)), far)
    code, _, err = cli("composite", "-q", "-j", "1", "-o", "o.tif", scenes[0][0], far, cwd=tmp_path)
    assert code == 0, err
    assert f"do not overlap the output grid and add nothing to it: loin{FFFD}.tif" in err
    assert "tilewise-names" not in err


def test_a_missing_latin1_input_is_one_line(tmp_path, scenes):
    code, _, err = cli("composite", "-o", "o.tif", scenes[0][0], b"absent\xe9.tif", cwd=tmp_path)
    assert code == 2
    assert f"not found: absent{FFFD}.tif" in one_error_line(err)


def test_a_latin1_output_name_is_one_line(tmp_path, scenes):
    code, _, err = cli("composite", "-o", b"sortie\xe9.tif", scenes[0][0], cwd=tmp_path)
    assert code == 2
    line = one_error_line(err)
    assert f"output name sortie{FFFD}.tif is not valid UTF-8" in line and "Rename" in line
    assert sorted(os.listdir(os.fsencode(str(tmp_path)))) == sorted(scenes[0])


def test_an_alias_is_stable_and_carries_the_side_files(tmp_path):
    base = latin1(tmp_path, b"sc\xe8ne.tif")
    for suffix in (b"", b".ovr", b".aux.xml"):
        with open(base + suffix, "wb") as f:
            f.write(b"x")
    path = os.fsdecode(base)
    assert undecodable(path) and shown(path).endswith(f"sc{FFFD}ne.tif")
    first = NameAliases().alias(path)
    assert not undecodable(first) and os.path.basename(first) == f"sc{FFFD}ne.tif"
    folder = os.path.dirname(first)
    assert sorted(os.listdir(folder)) == sorted(f"sc{FFFD}ne.tif{s}" for s in ("", ".ovr", ".aux.xml"))
    os.remove(base + b".ovr")
    second = NameAliases().alias(path)                   # the same alias on every run (resume finds its job)
    assert second == first and sorted(os.listdir(folder)) == sorted(f"sc{FFFD}ne.tif{s}" for s in ("", ".aux.xml"))
    assert os.path.samefile(first, base)


# -- A7: zones whose coordinates are outside their CRS -------------------------------------------------------

@pytest.fixture
def plain(tmp_path):
    rng = np.random.default_rng(3)
    return write_raster(tmp_path / "plain.tif", rng.integers(1, 200, SHAPE).astype("uint8"), nodata=0)


def metres_labelled_wgs84(tmp_path, name="fields.shp"):
    """A shapefile whose .prj says WGS 84 while its coordinates are UTM metres."""
    path = str(tmp_path / name)
    boxes = [INSIDE, shapely.box(500_150, 4_999_850, 500_250, 4_999_950)]
    write_vector(path, shapely.to_wkb(boxes), [np.array([1, 2])], fields=["pid"], geometry_type="Polygon",
                 crs="EPSG:4326")
    return path


def test_metres_in_a_wgs84_shapefile_is_one_message(tmp_path, plain):
    zones = metres_labelled_wgs84(tmp_path)
    code, _, err = cli("extract", "-z", zones, "-o", "ts.csv", plain, cwd=tmp_path)
    assert code == 2
    line = one_error_line(err)
    for part in (f"zones layer {zones} are outside the range of its CRS", "EPSG:4326, WGS 84",
                 "x from 500020 to 500250", "the layer's CRS (e.g. its .prj file) is probably wrong",
                 "--zones-crs"):
        assert part in line, line
    assert not (tmp_path / "ts.csv").exists()
    code, _, err = cli("extract", "-q", "-z", zones, "--zones-crs", UTM_CRS, "-o", "ts.csv", plain, cwd=tmp_path)
    assert code == 0 and "Warning" not in err, err              # the right CRS given: both fields inside


def test_some_features_outside_their_crs_range_are_a_warning(tmp_path, plain):
    moved = reproject(np.array([INSIDE], dtype=object), UTM_CRS, "EPSG:4326")
    zones = zones_from_geometries([moved[0], shapely.Point(500_050, 4_999_900)], "EPSG:4326")
    said = []
    extract([plain], zones, str(tmp_path / "ts.csv"), log=said.append, workers=1)
    warned = [m for m in said if m.startswith("Warning: ")]
    assert any("1 of 2 features of the zones layer zones have coordinates outside the range of its CRS" in m
               and "feature_id 1" in m for m in warned), said
    with open(tmp_path / "ts.csv") as f:
        means = [r["mean"] for r in csv.DictReader(f)]
    assert means[0] != "" and means[1] == ""


ORTHO_NORTH = "+proj=ortho +lat_0=90 +lon_0=0"          # the southern hemisphere is outside its domain


def test_vertices_proj_refuses_become_non_finite():
    line = shapely.LineString([(180, -89.9), (15, 20)])
    moved = reproject(np.array([shapely.Point(15, 10), line], dtype=object), "EPSG:4326", ORTHO_NORTH)
    xy = np.array(moved[1].coords)
    assert np.all(np.isfinite(shapely.get_coordinates(moved[0])))
    assert np.isnan(xy[0]).all() and np.isfinite(xy[1]).all()


def test_zones_proj_refuses_entirely_are_an_input_error_naming_the_layer():
    south = np.array([shapely.Point(15, -10), shapely.Point(180, -89.9)], dtype=object)
    with pytest.raises(InputError, match=r"Cannot move the zones fields\.gpkg from their CRS \(EPSG:4326, WGS 84\)"
                                         r".*x from 15 to 180, y from -89\.9 to -10\. Check"):
        reproject(south, "EPSG:4326", ORTHO_NORTH, "fields.gpkg")


# -- A8: warnings are not hidden by -q; zones outside every raster ---------------------------------------

def test_quiet_keeps_the_warning_of_an_input_outside_the_grid(tmp_path, plain):
    write_raster(tmp_path / "far.tif", np.ones(SHAPE, "uint8"), nodata=0,
                 transform=Affine(10, 0, 700_000, 0, -10, 5_000_000))
    code, out, err = cli("composite", "-q", "-j", "1", "-o", "o.tif", plain, "far.tif", cwd=tmp_path)
    assert code == 0, err
    assert err.splitlines() == ["Warning: 1 of 2 inputs do not overlap the output grid and add nothing to it: "
                                "far.tif"]                    # the warning, and no progress or log lines


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "verbose"])
def test_extract_with_every_zone_outside_warns(tmp_path, plain, quiet):
    path = str(tmp_path / "away.gpkg")
    away = [shapely.box(600_000, 4_000_000, 600_100, 4_000_100), shapely.Point(600_050, 4_000_050)]
    write_vector(path, shapely.to_wkb(away), [np.array([1, 2])], fields=["pid"], geometry_type="Unknown",
                 crs=UTM_CRS)
    code, _, err = cli("extract", *(["-q"] if quiet else []), "-z", path, "-o", "ts.csv", plain, cwd=tmp_path)
    assert code == 0, err
    assert (f"Warning: None of the 2 features of the zones layer {path} lies on the raster: every value of the "
            "output is null.") in err
    if quiet:
        assert len(err.splitlines()) == 1, err


def test_extract_says_how_many_features_are_outside(tmp_path, plain):
    zones = [INSIDE] + [shapely.Point(600_000 + i, 4_000_000) for i in range(3)]
    said = []
    extract([plain], zones_from_geometries(zones, UTM_CRS), str(tmp_path / "ts.csv"), log=said.append, workers=1)
    assert ("Warning: 3 of 4 features of the zones layer zones lie outside every raster: their values are null "
            "(feature_id 1, 2, 3).") in said


def test_no_warning_when_every_zone_is_on_a_raster(tmp_path, plain):
    said = []
    extract([plain], zones_from_geometries([INSIDE], UTM_CRS), str(tmp_path / "ts.csv"), log=said.append)
    assert [m for m in said if m.startswith("Warning")] == []


def test_composite_api_log_gets_the_warning(tmp_path, plain):
    far = write_raster(tmp_path / "far.tif", np.ones(SHAPE, "uint8"), nodata=0,
                       transform=Affine(10, 0, 700_000, 0, -10, 5_000_000))
    said = []
    composite([plain, far], str(tmp_path / "o.tif"), log=said.append, workers=1)
    assert any(m.startswith("Warning: 1 of 2 inputs do not overlap") for m in said), said


# -- A7: rasters (and grids) whose coordinates are outside their CRS -----------------------------------------

@pytest.fixture
def metres_in_wgs84(tmp_path):
    """A raster labelled WGS 84 whose transform is in UTM metres."""
    return write_raster(tmp_path / "labelled.tif", np.ones(SHAPE, "uint8"), nodata=0, crs="EPSG:4326")


@pytest.mark.parametrize("name, grid_from_it", [("composite", False), ("composite", True), ("mosaic", False),
                                                ("calc", False), ("gapfill", False)])
def test_a_raster_outside_its_crs_is_one_message(tmp_path, plain, metres_in_wgs84, name, grid_from_it):
    pair = [metres_in_wgs84, plain] if grid_from_it else [plain, metres_in_wgs84]
    inputs = [f"A={pair[0]}", f"B={pair[1]}"] if name == "calc" else pair
    extra = ["-e", "A + B"] if name == "calc" else []
    code, _, err = cli(name, "-q", *extra, "-o", "o.tif", *inputs, cwd=tmp_path)
    assert code == 2, err
    line = one_error_line("\n".join(ln for ln in err.splitlines() if not ln.startswith("Warning: ")))
    if grid_from_it:      # the grid comes from the mislabelled raster, and the other is moved into it
        assert "The output grid (500000, 4.9998e+06, 500300, 5e+06) is outside the range of its CRS" in line
        assert "has a wrong CRS" in line
    else:
        assert f"The coordinates of {metres_in_wgs84} are outside the range of its CRS (EPSG:4326, WGS 84" in line
        assert "x from 500000 to 500300, y from 4999800 to 5000000" in line and "gdal_edit.py -a_srs" in line
    assert not (tmp_path / "o.tif").exists()


def test_a_raster_in_its_own_crs_needs_no_range(tmp_path, metres_in_wgs84):
    """Nothing is moved between CRSs: the label does not matter, and the run goes on as before."""
    code, _, err = cli("composite", "-q", "-o", "o.tif", metres_in_wgs84, metres_in_wgs84, cwd=tmp_path)
    assert code == 0 and err == "", err


def test_an_extent_in_metres_with_a_crs_in_degrees(tmp_path, plain):
    code, _, err = cli("composite", "-q", "--crs", "EPSG:4326", "--extent", "500000", "4999800", "500300", "5000000",
                       "--cell-size", "10", "-o", "o.tif", plain, cwd=tmp_path)
    assert code == 2
    assert "The output grid (500000, 4.9998e+06, 500300, 5e+06) is outside the range of its CRS" in one_error_line(err)

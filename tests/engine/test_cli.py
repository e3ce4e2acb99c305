"""The ``tilewise composite`` command line, run as users run it: a separate process."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tilewise.core import composite

from support import as_output, leftovers, numpy_reference, read_raster, subprocess_env, to_nan_stack


def tilewise_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def scenes(tmp_path, raster):
    """Four int16 scenes in ``tmp_path/scenes`` (nodata -9999), plus a non-matching file."""
    (tmp_path / "scenes").mkdir()
    rng = np.random.default_rng(12)
    layers = []
    for i in range(4):
        a = rng.integers(0, 1000, (70, 90)).astype("int16")
        a[rng.random(a.shape) < 0.3] = -9999
        raster(f"scenes/2020-{i + 1:02d}.tif", a, nodata=-9999)
        layers.append(a)
    (tmp_path / "scenes" / "readme.txt").write_text("not a raster")
    return to_nan_stack(layers, -9999)


def test_cli_glob_gives_the_api_pixels(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "cli.tif", "-q", "--tile-size", "32", "-j", "2",
                        "-s", "percentile", "-p", "10,50,90", "scenes/*.tif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\S*cli\.tif: 90 x 70 x 3 bands, 9 tiles on 2 workers in [\d.]+ s\n", proc.stdout)
    paths = sorted(str(p) for p in (tmp_path / "scenes").glob("*.tif"))
    composite(paths, str(tmp_path / "api.tif"), "percentile", [10, 50, 90], tile_size=32, workers=1)
    cli, cli_profile = read_raster(tmp_path / "cli.tif")
    api, api_profile = read_raster(tmp_path / "api.tif")
    np.testing.assert_array_equal(cli, api)
    assert (cli_profile["crs"], cli_profile["transform"]) == (api_profile["crs"], api_profile["transform"])
    np.testing.assert_allclose(cli, as_output(numpy_reference(scenes, "percentile", [10, 50, 90])), rtol=1e-6)


def test_cli_default_median_and_progress(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "median.tif", "--tile-size", "32", "-j", "1",
                        "scenes/2020-01.tif", "scenes/2020-0[234].tif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "tiles of up to 32 x 32" in proc.stderr                  # the log, on stderr
    data, _ = read_raster(tmp_path / "median.tif")
    np.testing.assert_array_equal(data, as_output(numpy_reference(scenes, "median")))


def test_cli_missing_input_is_a_one_line_error(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "out.tif", "-q", "scenes/2020-01.tif", "scenes/2019-12.tif",
                        cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tilewise: error: ") and "2019-12.tif" in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert leftovers(tmp_path / "out.tif") == []


def test_cli_glob_matching_nothing_is_an_error(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "out.tif", "-q", "scenes/*.jp2", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tilewise: error: ") and "*.jp2" in proc.stderr
    assert leftovers(tmp_path / "out.tif") == []


def test_cli_bad_argument_is_a_usage_error(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "out.tif", "-s", "mode", "scenes/*.tif", cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid choice: 'mode'" in proc.stderr
    assert leftovers(tmp_path / "out.tif") == []

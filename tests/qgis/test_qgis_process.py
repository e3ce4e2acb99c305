"""qgis_process, as a user or a script runs it from the shell, loads the plugin from its folder and runs it."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import PLUGINS_DIR
from twtest import assert_band_medians, masked_stack, nan_reduce, read_raster, reported_scenes, write_raster

ALG_ID = "tilewise:temporalmedian"


def qgis_process_binary():
    # Debian's /usr/bin/qgis_process wrapper adds --noversioncheck, which QGIS 3.22 rejects
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("qgis_process is not installed (it comes with the qgis package)")


@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory):
    """Run qgis_process with a fresh profile where only Tilewise is enabled, found through QGIS_PLUGINPATH."""
    config = tmp_path_factory.mktemp("qgis-process-config")
    ini = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ntilewise=true\n", encoding="utf-8")
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(config), QGIS_PLUGINPATH=str(PLUGINS_DIR),
               QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)  # the plugin must come from the plugin folder, as for a user
    binary = qgis_process_binary()

    def call(*args, cwd=None, timeout=120, **more_env):
        return subprocess.run([binary, *args], env=dict(env, **more_env), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    return call


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qp-inputs")
    rng = np.random.default_rng(3)
    arrays = []
    for i in range(4):
        a = rng.integers(1, 500, (90, 130)).astype(np.int16)
        a[rng.random(a.shape) < 0.25] = -1
        arrays.append(a)
        write_raster(folder / f"scene{i}.tif", a, nodata=-1)
    return folder, arrays


def test_list_and_help(qgis_process):
    listed = qgis_process("list")
    assert listed.returncode == 0, listed.stderr
    assert ALG_ID in listed.stdout
    helped = qgis_process("help", ALG_ID)
    assert helped.returncode == 0, helped.stderr
    for name in ("INPUT", "STATISTIC", "OUTPUT", "WORKERS", "TILE_SIZE", "Cloud-Optimized GeoTIFF"):
        assert name in helped.stdout, name


def test_run_with_relative_paths(qgis_process, series, tmp_path):
    """Paths on the command line are relative to the shell's folder, not the engine's."""
    folder, arrays = series
    work = tmp_path / "work"
    shutil.copytree(folder, work / "scenes")
    proc = qgis_process("--json", "run", ALG_ID, "--", *[f"INPUT=scenes/scene{i}.tif" for i in range(4)],
                        "STATISTIC=1", "WORKERS=2", "OUTPUT=mean.tif", cwd=work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(proc.stdout)["results"]
    assert results["OUTPUT"] == str(work / "mean.tif")
    out = read_raster(work / "mean.tif")
    expected = nan_reduce(np.nanmean, masked_stack(arrays, -1))
    np.testing.assert_array_equal(out.valid, ~np.isnan(expected))
    np.testing.assert_allclose(out.array[out.valid], expected[out.valid], rtol=1e-6)
    assert sorted(p.name for p in work.iterdir()) == ["mean.tif", "scenes"]


@pytest.mark.parametrize("case", ["missing input", "mask layers"])
def test_failure_gives_a_message_and_nonzero_exit(qgis_process, series, case, out_dir):
    folder, _ = series
    inputs = [f"INPUT={folder / f'scene{i}.tif'}" for i in range(3)]
    if case == "missing input":
        args = inputs + [f"INPUT={folder / 'not-there.tif'}"]
        message = f"Input not found: {folder / 'not-there.tif'}"
    else:
        args = inputs + [f"MASK_LAYERS={folder / 'scene0.tif'}", "MASK_VALUES=1"]
        message = "1 mask layers were given for 3 inputs"
    proc = qgis_process("run", ALG_ID, "--", *args, f"OUTPUT={out_dir / 'out.tif'}")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(out_dir.iterdir()) == []


def test_a_cold_cache_through_qgis_process(qgis_process, tmp_path):
    """A first run from the shell, as reported when it failed: four 6-band uint8 scenes (349 x 352,
    nodata 0), an empty numba cache, the kernels compiled in the engine's workers (the other
    kernel paths with a cold cache: test_first_contact.py)."""
    paths, arrays = reported_scenes(tmp_path, seed=14)
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    inputs = [f"INPUT={p}" for p in paths]
    output = tmp_path / "out.tif"
    proc = qgis_process("run", ALG_ID, "--", *inputs, "WORKERS=2", "TILE_SIZE=128", f"OUTPUT={output}",
                        timeout=600, NUMBA_CACHE_DIR=str(cache))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any(name.endswith(".nbi") for _, _, files in os.walk(cache) for name in files)
    assert_band_medians(output, arrays, 0, bands=range(1, 7))

"""First contact: a cold numba cache, a read-only plugin folder, no writable home; where the cache goes.

Every test that needs a cold cache makes one (an empty NUMBA_CACHE_DIR, or a fresh
home), whatever ran before it. They run the engine in subprocesses: numba reads
its configuration once per process.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tilewise.core import __version__

from readonly import run_readonly
from support import PLUGINS_DIR, as_output, numpy_reference, read_raster, subprocess_env, to_nan_stack, write_raster


def clean_env(**changes) -> dict:
    """The engine's environment without any numba setting of the developer's or of CI."""
    env = subprocess_env()
    for key in ("NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "XDG_CACHE_HOME"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in changes.items()})
    return env


def python(code: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def cache_files(folder) -> dict:
    """``{path: (size, mtime)}`` of numba's cache files under ``folder``."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            info = os.stat(path)
            found[path] = (info.st_size, info.st_mtime_ns)
    return found


def events_of(proc) -> list:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# -- where the cache goes ------------------------------------------------------------------------------------

CONFIGURE = """
    import os, sys
    from tilewise.core.jitconfig import configure_cache
    print(configure_cache())
    print(os.environ.get("NUMBA_CACHE_DIR"))
    print("numba" in sys.modules)
"""


def test_the_cache_is_per_user_and_per_release(tmp_path):
    out = python(CONFIGURE, clean_env(XDG_CACHE_HOME=tmp_path / "xdg")).stdout.split()
    expected = str(tmp_path / "xdg" / "tilewise" / f"numba-{__version__}")
    assert out == [expected, expected, "False"]
    assert os.path.isdir(expected)


def test_a_relative_xdg_cache_home_is_ignored(tmp_path):
    out = python(CONFIGURE, clean_env(HOME=tmp_path / "home", XDG_CACHE_HOME="relative/cache")).stdout.split()
    assert out[0] == str(tmp_path / "home" / ".cache" / "tilewise" / f"numba-{__version__}")


def test_a_cache_folder_set_by_the_user_wins(tmp_path):
    mine = tmp_path / "my numba cache"
    out = python(CONFIGURE, clean_env(NUMBA_CACHE_DIR=mine, XDG_CACHE_HOME=tmp_path / "xdg")).stdout.splitlines()
    assert out[:2] == [str(mine), str(mine)]
    assert not (tmp_path / "xdg").exists()


def test_no_writable_home_falls_back_to_a_private_temporary_folder(tmp_path):
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    (tmp_path / "tmp").mkdir()
    out = python(CONFIGURE, clean_env(XDG_CACHE_HOME=blocked / "cache", TMPDIR=tmp_path / "tmp")).stdout.split()
    expected = tmp_path / "tmp" / f"tilewise-{os.getuid()}" / f"numba-{__version__}"
    assert out[:2] == [str(expected), str(expected)]
    assert stat.S_IMODE(os.stat(expected).st_mode) == 0o700


def test_a_temporary_folder_others_can_write_is_not_used(tmp_path):
    """numba's cache holds pickled code: a folder anybody can write into is no place to load it from."""
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    shared = tmp_path / "tmp" / f"tilewise-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    env = clean_env(XDG_CACHE_HOME=blocked / "cache", TMPDIR=tmp_path / "tmp")
    out = python(CONFIGURE, env).stdout.split()
    assert out[:2] == ["None", "None"]
    # without a cache the kernels still run (compiled for this process only)
    out = python("""
        import numpy as np
        from tilewise.core.kernels import reducers as kernels
        print(kernels.CACHE_DIR, kernels.reduce_stack(np.array([[1.0], [3.0]], np.float32), "median")[0, 0])
    """, env).stdout.split()
    assert out == ["None", "2.0"]
    assert list(shared.iterdir()) == []


# -- numba's thread count in workers ------------------------------------------------------------------------

def test_the_start_up_check_does_not_import_numba(tmp_path):
    out = python("""
        import sys
        from tilewise.core import missing_packages
        print(missing_packages(), "numba" in sys.modules)
        print(missing_packages(load=True), "numba" in sys.modules)
    """, clean_env()).stdout.splitlines()
    assert out == ["[] False", "[] True"]


@pytest.mark.parametrize("started", [False, True], ids=["numba imported", "numba threads running"])
def test_a_thread_limit_keeps_numba_config_and_environment_in_agreement(tmp_path, started):
    """The limit a worker sets must not make numba raise at its next compile (a cold cache compiles)."""
    script = tmp_path / "limit.py"   # numba caches the functions of files only
    script.write_text(textwrap.dedent(f"""
        import os
        import numba
        from numba.core import config
        from tilewise.core.jitconfig import limit_threads

        @numba.njit(parallel=True, cache=True)
        def total(a):
            s = 0.0
            for i in numba.prange(a.shape[0]):
                s += a[i]
            return s

        if {started}:
            numba.set_num_threads(1)          # launches numba's threads
        limit_threads(1)
        print(config.NUMBA_NUM_THREADS == int(os.environ["NUMBA_NUM_THREADS"]), numba.get_num_threads())
        import numpy as np
        print(total(np.ones(1000)))          # compiles: numba reloads its configuration here
    """))
    proc = subprocess.run([sys.executable, str(script)], env=clean_env(NUMBA_CACHE_DIR=tmp_path / "numba"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "1", "1000.0"]
    assert cache_files(tmp_path / "numba"), "nothing was compiled into the cold cache"


# -- the warm-up compiles what runs use -----------------------------------------------------------------------

RUN_EVERY_PATH = """
    import sys
    import numpy as np
    import pyogrio
    import shapely
    from tilewise.core.operations.bandmath import bandmath
    from tilewise.core.operations.composite import composite
    from tilewise.core.operations.extract.run import extract
    from tilewise.core.operations.gapfill import gapfill
    from tilewise.core.operations.mosaic import mosaic
    from support import UTM_CRS, write_raster
    folder = sys.argv[1]
    rng = np.random.default_rng(3)
    # points, a line and polygons (one smaller than a pixel) over the rasters' 300 x 200 m
    zones = [shapely.Point(500_055, 4_999_945), shapely.Point(500_201, 4_999_877),
             shapely.LineString([(500_010, 4_999_990), (500_280, 4_999_810)]),
             shapely.box(500_020, 4_999_900, 500_150, 4_999_960), shapely.box(500_201, 4_999_902, 500_204, 4_999_906)]
    for kind, part in (("points", zones[:2]), ("lines", zones[2:3]), ("polygons", zones[3:])):
        pyogrio.raw.write(f"{folder}/{kind}.gpkg", shapely.to_wkb(part), [np.arange(len(part))], ["fid_"],
                          crs=UTM_CRS, geometry_type=part[0].geom_type, driver="GPKG")
    for dtype in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"):
        paths = [write_raster(f"{folder}/{dtype}_2024-05-{10 + i}.tif", (rng.random((20, 30)) * 200).astype(dtype),
                              nodata=0) for i in range(3)]
        for statistic in ("median", "percentile", "mean", "std"):
            composite(paths, f"{folder}/{dtype}_{statistic}.tif", statistic,
                      [10.0, 50.0] if statistic == "percentile" else [], workers=1)
        for overlap in ("median", "mean"):
            mosaic(paths, f"{folder}/{dtype}_mosaic_{overlap}.tif", overlap=overlap, workers=1)
        for method in ("linear", "seasonal"):
            gapfill(paths, f"{folder}/{dtype}_gapfill_{method}.tif", method, edges=1, workers=1)
        bandmath({"A": (paths[0], 1), "B": (paths[1], 1)}, "(A - B) / (A + B)", f"{folder}/{dtype}_calc.tif", workers=1)
        # the spectral composites: geomedian and MADs, medoid, quality with the cloud distance
        composite(paths, f"{folder}/{dtype}_geomedian.tif", "geomedian", output_mads=f"{folder}/{dtype}_mads.tif",
                  workers=1)
        composite(paths, f"{folder}/{dtype}_medoid.tif", "medoid", workers=1)
        composite(paths, f"{folder}/{dtype}_quality.tif", "quality", cloud_weight=1.0, workers=1)
        # the kernels specialize on the values' type; the coverage and point method are arguments
        extract(paths, f"{folder}/points.gpkg", f"{folder}/{dtype}_points.csv", "mean,percentiles",
                percentiles=[10, 90], point_method="bilinear", tile_size=16, workers=1)
        extract(paths, f"{folder}/polygons.gpkg", f"{folder}/{dtype}_polygons.csv", "median,std",
                coverage="fractional", tile_size=16, workers=1)
    extract(paths, f"{folder}/lines.gpkg", f"{folder}/lines.csv", "median", coverage="all_touched", workers=1)
    extract(paths, f"{folder}/polygons.gpkg", f"{folder}/scaled.csv", "median", scale=0.5, workers=1)  # float64
    # rasters whose missing pixels come from their dataset mask (no nodata value)
    import rasterio
    masked = []
    for i, path in enumerate(paths[:2]):
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path) as src:
            profile = {**src.profile, "nodata": None, "dtype": "int16"}
            with rasterio.open(f"{folder}/masked_2024-05-1{i}.tif", "w", **profile) as dst:
                dst.write(src.read().astype("int16"))
                dst.write_mask(np.where(np.arange(30)[None, :] < 7, 0, 255).repeat(20, 0).astype("uint8"))
        masked.append(dst.name)
    extract(masked, f"{folder}/points.gpkg", f"{folder}/masked_points.csv", "mean,percentiles", percentiles=[10, 90],
            point_method="bilinear", tile_size=16, workers=1)
    extract(masked, f"{folder}/polygons.gpkg", f"{folder}/masked.csv", "median,std", coverage="fractional",
            tile_size=16, workers=1)
    print("ok")
"""


def warm(env) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tilewise.core.runtime.driver", "--warm"], env=env,
                          capture_output=True, text=True, stdin=subprocess.PIPE, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    events = events_of(proc)
    assert events[-1]["event"] == "done", events
    assert [(e["done"], e["total"]) for e in events if e["event"] == "progress"] == [(i, 5) for i in range(6)]
    return events[-1]["report"]


def test_the_warm_up_compiles_every_kernel_a_run_uses(tmp_path):
    cache = tmp_path / "numba"
    env = clean_env(NUMBA_CACHE_DIR=cache)
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(os.path.abspath(__file__))  # support.py
    # a warm engine's worker loads the kernels before its first task, but only from a warmed cache:
    # with a cold one it compiles nothing (that would hold it up for tens of seconds)
    assert preload(env) == 0 and not cache_files(cache)
    report = warm(env)
    # the two order-statistic kernels (float32) and every reducer's kernel (float32 and float64; median and
    # percentile take float32 through the order-statistic kernels): 2 + 5 * 2 + 2 specializations; the
    # gap-filling kernel (float32 and float64): 2; the extraction's: the cover, the reduction of each of
    # 9 value types, the two quantile kernels called from Python (12), and those two once more as the
    # reduction calls them (2: compiled into the reduction's code, so never loaded on their own); the spectral
    # composites': geomedian, medoid, best pick and MADs (float32 and float64) and the cloud distance: 9
    assert (report["cache"], report["compiled"], report["loaded"]) == (str(cache), 16 + 14 + 9, 0)
    before = cache_files(cache)
    assert before
    (tmp_path / "runs").mkdir()
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN_EVERY_PATH), str(tmp_path / "runs")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert cache_files(cache) == before, "a run compiled a kernel the warm-up had not"
    again = warm(env)
    assert (again["compiled"], again["loaded"]) == (0, 16 + 12 + 9)
    warmed = cache_files(cache)
    assert preload(env) == 16 + 12 + 9 and cache_files(cache) == warmed


def preload(env) -> int:
    """Specializations a new process loads with :func:`tilewise.core.runtime.preload.preload`."""
    proc = subprocess.run([sys.executable, "-c", "from tilewise.core.runtime.preload import preload; print(preload())"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split()[-1])


# -- a read-only plugin folder ---------------------------------------------------------------------------------

def test_a_read_only_plugin_folder_and_no_writable_home(tmp_path):
    """A system-wide install run by a user without a writable home: the plugin folder and the home are
    read-only (real read-only mounts: root could write anywhere else), so numba's cache goes to a
    private temporary folder (it failed with "cannot cache function '_select': no locator available").
    The engine's driver starts two workers that compile with that cold cache: the first run that
    failed ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched")
    while the driver's start-up check imported numba. (A read-only plugin folder with a writable home:
    the zip install test of the QGIS suite.)"""
    plugins = tmp_path / "ro-plugins"
    (plugins / "tilewise").mkdir(parents=True)
    home_dir = tmp_path / "home"
    home_dir.mkdir()
    (tmp_path / "tmp").mkdir()
    mounts = [(os.path.join(PLUGINS_DIR, "tilewise"), plugins / "tilewise"), (home_dir, home_dir)]
    rng = np.random.default_rng(8)
    layers = [rng.integers(0, 1000, (40, 50)).astype("uint16") for _ in range(3)]
    paths = [write_raster(tmp_path / f"s{i}.tif", a, nodata=0) for i, a in enumerate(layers)]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"operation": "composite", "params": {
        "inputs": paths, "output": str(tmp_path / "median.tif"), "tile_size": 16, "workers": 2}}))
    env = clean_env(HOME=home_dir, TMPDIR=tmp_path / "tmp", PYTHONPATH=plugins)
    proc = run_readonly(mounts, [sys.executable, "-m", "tilewise.core.runtime.driver", str(job)], env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert events_of(proc)[-1]["event"] == "done"
    cache = tmp_path / "tmp" / f"tilewise-{os.getuid()}" / f"numba-{__version__}"
    assert cache_files(cache), f"nothing was cached in {cache}"
    assert list(home_dir.iterdir()) == []
    data, _ = read_raster(tmp_path / "median.tif")
    np.testing.assert_array_equal(data[0], as_output(numpy_reference(to_nan_stack(layers, 0), "median"))[0])

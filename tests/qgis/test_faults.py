"""Bad inputs and faults (issue 9) through processing.run and qgis_process: the output onto an input,
far too many workers, costly expressions, SIGTERM, a full disk, inputs outside the grid, a huge mosaic
grid, side-car files, other extensions and small errors. The engine checks; QGIS shows its message."""

import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException

from conftest import ENGINE_PYTHON, PLUGINS_DIR, REPO
from twtest import children_of, messages, my_engine, read_raster, run, still_running, wait_for, write_raster

sys.path.insert(0, str(REPO / "scripts"))
from qgis_process import qgis_process_binary, qgis_process_env  # noqa: E402  (scripts/ is no package)

MEDIAN = "tilewise:temporalmedian"
SHAPE = (40, 60)
FAR = (900000.0, 10.0, 0.0, 3000000.0, 0.0, -10.0)     # 2,000 km south-east of the others


@pytest.fixture
def scenes(tmp_path):
    """Three 3-band uint16 scenes on one grid, and one 2,000 km away, in ``tmp_path/in``."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    paths = [write_raster(folder / f"a{i}.tif", rng.integers(1, 1000, (3,) + SHAPE).astype(np.uint16), nodata=0)
             for i in range(3)]
    paths.append(write_raster(folder / "far.tif", np.full((3,) + SHAPE, 7, np.uint16), nodata=0, geotransform=FAR))
    return paths


def content(path):
    with open(path, "rb") as f:
        return f.read()


def refused(algorithm, params, *parts, feedback=None):
    with pytest.raises(QgsProcessingException) as info:
        run(algorithm, params, feedback=feedback)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    assert "Traceback" not in message and "Unexpected engine error" not in message, message
    return message


@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory):
    env = qgis_process_env(str(PLUGINS_DIR), str(tmp_path_factory.mktemp("qp-profile")))
    env.pop("PYTHONPATH", None)

    def call(*args, cwd=None):
        return subprocess.run([qgis_process_binary(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=120)
    call.env = env
    return call


# -- 1. the output written onto an input ---------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["temporalmedian", "bandmath", "ndvi", "index", "mosaic"])
def test_output_onto_an_input_is_refused(scenes, algorithm):
    a0 = scenes[0]
    params = {
        "temporalmedian": {"INPUT": scenes[:2]},
        "bandmath": {"LAYERS": [a0], "EXPRESSION": "A * 2"},
        "ndvi": {"RED": a0, "RED_BAND": 1, "NIR": a0, "NIR_BAND": 3},
        "index": {"INPUT": [scenes[1], a0], "RED_BAND": 1, "NIR_BAND": 3},
        "mosaic": {"INPUT": scenes[:2]},
    }[algorithm]
    before = content(a0)
    refused(f"tilewise:{algorithm}", dict(params, OUTPUT=a0), f"The output {a0} is also an input",
            "would destroy that input")
    assert content(a0) == before


def test_qgis_process_refuses_the_output_onto_an_input(qgis_process, scenes):
    before = content(scenes[0])
    proc = qgis_process("run", MEDIAN, "--", f"INPUT={scenes[0]}", f"INPUT={scenes[1]}", f"OUTPUT={scenes[0]}")
    assert proc.returncode != 0
    assert f"The output {scenes[0]} is also an input" in proc.stdout + proc.stderr
    assert content(scenes[0]) == before


# -- 2. far too many workers -------------------------------------------------------------------------------

def test_workers_1000_run_on_the_cores_and_the_log_says_so(scenes, out_dir):
    feedback = messages()
    run(MEDIAN, {"INPUT": scenes[:3], "WORKERS": 1000, "TILE_SIZE": 16, "OUTPUT": str(out_dir / "m.tif")},
        feedback=feedback)
    cores = len(os.sched_getaffinity(0))
    assert f"1000 workers were asked for; using {cores}: this machine has {cores} cores" in "\n".join(feedback.lines)
    assert f"12 tiles on {cores} workers" in "\n".join(feedback.lines)


# -- 3. costly constant folding ----------------------------------------------------------------------------

@pytest.mark.parametrize("expression,message", [
    ("A + 10**10**10", "The constant 10 ** 10 ** 10 is too large"),
    ("A ** 1e308", "The exponent 1e+308 in A ** 1e+308 is too large for numexpr"),
    ("+".join(["A"] * 1000), "The expression nests 1000 operations deep; numexpr handles at most 200"),
], ids=["huge power", "huge exponent", "1000 terms"])
def test_costly_expressions_are_refused_at_once(scenes, out_dir, expression, message):
    start = time.monotonic()
    refused("tilewise:bandmath", {"LAYERS": [scenes[0]], "EXPRESSION": expression, "OUTPUT": str(out_dir / "r.tif")},
            message)
    assert time.monotonic() - start < 10
    assert list(out_dir.iterdir()) == []


# -- 4. SIGTERM ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow")
    rng = np.random.default_rng(4)
    return [write_raster(folder / f"s{i}.tif", rng.integers(1, 9999, (1200, 1200)).astype(np.uint16), nodata=0)
            for i in range(4)]


def journal_of(output):
    return os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.tilewise-work", "finished.txt")


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_sigterm_to_the_engine_is_a_clean_stop(slow_series, out_dir, resume):
    output = str(out_dir / "median.tif")
    seen = {}

    def terminate():
        if wait_for(lambda: os.path.exists(journal_of(output)) and os.path.getsize(journal_of(output)) > 0, 60):
            engine = my_engine()
            seen["engine"] = engine
            if engine:
                os.kill(engine.pid, signal.SIGTERM)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    message = refused(MEDIAN, {"INPUT": slow_series, "TILE_SIZE": 32, "WORKERS": 2, "RESUME": resume,
                               "OUTPUT": output}, "The Tilewise engine was stopped (SIGTERM); no output was written.")
    killer.join(10)
    assert seen.get("engine"), "the run ended before the signal"
    workdir = os.path.dirname(journal_of(output))
    if resume:
        assert f"The finished tiles are kept in {workdir}: run again with resume to continue." in message
        assert sorted(os.listdir(out_dir)) == [os.path.basename(workdir)]
    else:
        assert "kept" not in message
        assert list(out_dir.iterdir()) == []


def test_qgis_process_stopped_by_sigterm_leaves_nothing(qgis_process, slow_series, out_dir):
    """`timeout qgis_process ...`: qgis_process dies at once; its engine is told (SIGTERM) and cleans up."""
    output = str(out_dir / "median.tif")
    args = [qgis_process_binary(), "run", MEDIAN, "--", *[f"INPUT={p}" for p in slow_series], "TILE_SIZE=32",
            "WORKERS=2", f"OUTPUT={output}"]
    proc = subprocess.Popen(args, env=qgis_process.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(journal_of(output)) and os.path.getsize(journal_of(output)) > 0, 60), \
            "no tile was finished in time"
        engines = [p for p in children_of(proc.pid) if "tilewise.core.runtime.driver" in p.cmdline]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert engines, "the engine process was not found"
    assert still_running(engines, timeout=30) == []
    assert wait_for(lambda: not os.listdir(out_dir), 10), os.listdir(out_dir)


# -- 5. a full disk ------------------------------------------------------------------------------------------

PROCESSING_RUN = """
import os, sys
from qgis.core import QgsApplication, QgsProcessingException
app = QgsApplication([], False, sys.argv[1]); app.initQgis()
python = os.path.join(QgsApplication.pkgDataPath(), "python")
sys.path[:0] = [python, os.path.join(python, "plugins"), sys.argv[2]]
from processing.core.Processing import Processing
Processing.initialize()
import qgis.utils
qgis.utils.plugin_paths.insert(0, sys.argv[2]); qgis.utils.updateAvailablePlugins()
qgis.utils.loadPlugin("tilewise"); qgis.utils.startProcessingPlugin("tilewise")
import processing
try:
    processing.run("tilewise:temporalmedian", {"INPUT": [sys.argv[3]], "TILE_SIZE": 128, "WORKERS": 1,
                                               "OUTPUT": sys.argv[4]})
    print("MESSAGE: none")
except QgsProcessingException as exc:
    print("MESSAGE:", str(exc).replace("\\n", " | "))
"""


def in_small_disk(command, folder, env, size="1m"):
    """A shell ``command`` where ``folder`` is a fresh 1 MiB tmpfs, in a private mount namespace (root, or a
    user allowed user namespaces); prints what is left on it afterwards."""
    script = (f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))} && {{ {command}; }}; "
              f"echo LEFT:; ls -A {shlex.quote(str(folder))}")
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def noise(tmp_path):
    """700 x 700 random floats: 1.9 MiB that compression cannot shrink, for a 1 MiB disk."""
    return write_raster(tmp_path / "noise.tif", np.random.default_rng(1).random((700, 700)).astype(np.float32))


def test_processing_run_full_disk_is_one_clear_message(tmp_path, noise):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "run.py"
    script.write_text(PROCESSING_RUN)
    env = dict(os.environ, TILEWISE_PYTHON=str(ENGINE_PYTHON))
    command = " ".join(shlex.quote(a) for a in ["/usr/bin/python3", str(script), str(tmp_path / "profile"),
                                                 str(PLUGINS_DIR), noise, str(disk / "median.tif")])
    proc = in_small_disk(command, disk, env)
    message = [line for line in proc.stdout.splitlines() if line.startswith("MESSAGE:")]
    assert message and message[0].startswith(f"MESSAGE: The disk is full: {disk} has "), proc.stdout + proc.stderr
    assert "and this run needs up to" in message[0] and "Traceback" not in message[0]
    assert proc.stdout.split("LEFT:")[1].split() == []


def test_qgis_process_full_disk_is_one_clear_message(qgis_process, tmp_path, noise):
    disk = tmp_path / "disk"
    disk.mkdir()
    command = " ".join(shlex.quote(a) for a in [qgis_process_binary(), "run", MEDIAN, "--", f"INPUT={noise}",
                                                 "TILE_SIZE=128", "WORKERS=1", f"OUTPUT={disk / 'median.tif'}"])
    proc = in_small_disk(command, disk, qgis_process.env)
    assert f"The disk is full: {disk} has " in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.stdout.split("LEFT:")[1].split() == []


# -- 6. inputs outside the grid ------------------------------------------------------------------------------

def test_inputs_outside_the_grid_are_named(scenes, out_dir):
    feedback = messages()
    result = run(MEDIAN, {"INPUT": [scenes[0], scenes[3], scenes[1]], "OUTPUT": str(out_dir / "m.tif")},
                 feedback=feedback)
    assert os.path.exists(result["OUTPUT"])
    assert any(f"1 of 3 inputs do not overlap the output grid and add nothing to it: {scenes[3]}" in w
               for w in feedback.warnings), feedback.warnings


def test_output_no_input_touches_is_an_error(scenes, out_dir):
    refused(MEDIAN, {"INPUT": scenes[:2], "REFERENCE_LAYER": scenes[3], "OUTPUT": str(out_dir / "m.tif")},
            "No input overlaps the output grid", f"{scenes[0]}, {scenes[1]}")
    assert list(out_dir.iterdir()) == []


# -- 7. a huge mosaic grid -----------------------------------------------------------------------------------

def test_huge_mosaic_grid_names_the_input_that_stretches_it(scenes, out_dir):
    message = refused("tilewise:mosaic", {"INPUT": scenes, "OUTPUT": str(out_dir / "m.tif")},
                      "The output grid would be 40,060 x 200,040 pixels x 3 band(s) of uint16",
                      f"It is stretched by {scenes[3]}, far from the other inputs", "ALLOW_LARGE")
    assert scenes[0] not in message
    assert list(out_dir.iterdir()) == []


def test_allow_large_reaches_the_engine(scenes, out_dir):
    alg = QgsApplication.processingRegistry().createAlgorithmById("tilewise:mosaic")
    context = QgsProcessingContext()
    for value in (True, False):
        params = alg.output_params({"ALLOW_LARGE": value, "OUTPUT": str(out_dir / "m.tif")}, context)
        assert params["allow_large"] is value


# -- 8. side-car files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodata", [1e20, 0.1])
def test_no_side_car_is_left(scenes, out_dir, nodata):
    result = run(MEDIAN, {"INPUT": scenes[:3], "OUTPUT_NODATA": nodata, "OUTPUT": str(out_dir / "m.tif")})
    assert sorted(os.listdir(out_dir)) == ["m.tif"]
    assert read_raster(result["OUTPUT"]).nodata == float(np.float32(nodata))


# -- 9. other extensions -------------------------------------------------------------------------------------

def test_output_file_filter_is_geotiff_only():
    alg = QgsApplication.processingRegistry().algorithmById(MEDIAN)
    assert alg.parameterDefinition("OUTPUT").createFileFilter() == "GeoTIFF (*.tif *.tiff *.TIF *.TIFF)"
    assert alg.parameterDefinition("OUTPUT").clone().createFileFilter() == "GeoTIFF (*.tif *.tiff *.TIF *.TIFF)"


def test_other_extensions_are_refused_and_tif_is_added(scenes, out_dir):
    refused(MEDIAN, {"INPUT": scenes[:2], "OUTPUT": str(out_dir / "m.png")},
            f"The output {out_dir / 'm.png'} would be a GeoTIFF named .png", f"Name it {out_dir / 'm.tif'}.")
    assert list(out_dir.iterdir()) == []
    feedback = messages()
    result = run(MEDIAN, {"INPUT": scenes[:2], "OUTPUT": str(out_dir / "median")}, feedback=feedback)
    assert result["OUTPUT"] == str(out_dir / "median.tif")
    assert sorted(os.listdir(out_dir)) == ["median.tif"]
    assert any("has no extension: writing" in w for w in feedback.warnings), feedback.warnings


# -- 10. small errors ----------------------------------------------------------------------------------------

def test_tile_size_zero_is_automatic_and_small_ones_are_refused(scenes, out_dir):
    run(MEDIAN, {"INPUT": scenes[:2], "TILE_SIZE": 0, "OUTPUT": str(out_dir / "m.tif")})
    refused(MEDIAN, {"INPUT": scenes[:2], "TILE_SIZE": 5, "OUTPUT": str(out_dir / "n.tif")},
            "Tile size must be at least 8 pixels (or 0: from the memory budget), got 5.")


def test_band_count_mismatch_names_the_files(scenes, tmp_path, out_dir):
    gray = write_raster(tmp_path / "gray.tif", np.ones(SHAPE, np.uint16))
    refused(MEDIAN, {"INPUT": [scenes[0], gray], "OUTPUT": str(out_dir / "m.tif")},
            f"The inputs have different band counts (1 band: {gray}; 3 bands: {scenes[0]})")


def test_truncated_geotiff_names_the_file_and_where(tmp_path, out_dir):
    cut = write_raster(tmp_path / "cut.tif", np.random.default_rng(2).integers(0, 255, (200, 200)).astype(np.uint8),
                       options=("TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"))
    good = write_raster(tmp_path / "good.tif", np.ones((200, 200), np.uint8))
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 3)
    refused(MEDIAN, {"INPUT": [good, cut], "TILE_SIZE": 64, "WORKERS": 1, "OUTPUT": str(out_dir / "m.tif")},
            f"{cut} is damaged (truncated or corrupt): its pixels at rows ", "of the file cannot be read",
            "Replace the file or repair it.")
    assert list(out_dir.iterdir()) == []

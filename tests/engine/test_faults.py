"""Bad inputs and faults (issue 9), through the command line as users run it and through the Python API:
the output written onto an input, far too many workers, costly constant expressions, SIGTERM and
SIGHUP, a full disk, inputs outside the grid, a huge mosaic grid, side-car files, other extensions
and small errors. Each refusal is one line that says what is wrong, before any work."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilewise.core import composite
from tilewise.core.io import coverage
from tilewise.core.operations.bandmath import bandmath
from tilewise.core.errors import ExpressionError, GridError, OutputError, TilewiseWarning
from tilewise.core.runtime.executor import cpu_count
from tilewise.core.operations.expression import MAX_DEPTH, validate_expression
from tilewise.core.operations.mosaic import mosaic
from tilewise.core.paths import workdir_for
from tilewise.core.logs import logging_to
from tilewise.core.runtime.workdir import JOURNAL

from support import in_small_disk, leftovers, read_raster, subprocess_env, write_raster
from test_cli import tilewise_cli

SHAPE = (40, 60)
FAR = Affine(10.0, 0.0, 900_000.0, 0.0, -10.0, 3_000_000.0)     # 2,000 km south-east of the others


@pytest.fixture
def scenes(tmp_path):
    """Three 3-band uint16 scenes on one grid (nodata 0) in ``tmp_path``, named a0, a1, a2."""
    rng = np.random.default_rng(9)
    return [write_raster(tmp_path / f"a{i}.tif", rng.integers(1, 1000, (3,) + SHAPE).astype("uint16"), nodata=0)
            for i in range(3)]


def fingerprint(path):
    with open(path, "rb") as f:
        return f.read()


def one_error_line(proc, *parts):
    """The run failed with exit code 2 and one ``tilewise: error:`` line holding every part."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilewise: error: "), proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_planning_warnings_go_to_the_log_and_others_are_shown():
    """Regression: showing another warning (rasterio's NotGeoreferencedWarning) while still recording them
    recorded it again, for ever: a run on an ungeoreferenced input hung before its first tile."""
    lines, shown = [], []

    def plan():
        with warnings.catch_warnings(record=True) as outer:
            warnings.simplefilter("always")
            with logging_to(lines.append):
                warnings.warn(TilewiseWarning("inputs outside"), stacklevel=1)
                warnings.warn(UserWarning("not georeferenced"), stacklevel=1)
        shown.extend(str(w.message) for w in outer)

    worker = threading.Thread(target=plan, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "logging_to did not return"
    assert lines == ["Warning: inputs outside"] and shown == ["not georeferenced"]


# -- 1. the output written onto an input ---------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["calc", "-e", "A*2", "A=a0.tif", "-o", "a0.tif"],
    ["composite", "-o", "a0.tif", "a0.tif", "a1.tif", "a2.tif"],
    ["mosaic", "-o", "a0.tif", "a0.tif", "a1.tif"],
    ["ndvi", "--red", "a0.tif:1", "--nir", "a0.tif:3", "-o", "a0.tif"],
    ["index", "ndvi", "--bands", "RED=1,NIR=3", "-o", "a0.tif", "a1.tif", "a0.tif"],
    ["composite", "--reference", "a0.tif", "-o", "a0.tif", "a1.tif", "a2.tif"],
], ids=["calc", "composite", "mosaic", "ndvi", "index", "reference"])
def test_cli_refuses_to_write_onto_an_input(tmp_path, scenes, command):
    before = fingerprint(scenes[0])
    proc = tilewise_cli(*command, cwd=tmp_path)
    one_error_line(proc, f"The output {scenes[0]} is also an input", "would destroy that input")
    assert fingerprint(scenes[0]) == before
    assert sorted(os.listdir(tmp_path)) == ["a0.tif", "a1.tif", "a2.tif"]


def _vrt(path, sources):
    subprocess.run(["gdalbuildvrt", "-q", str(path), *map(str, sources)], check=True)
    return str(path)


@pytest.mark.parametrize("way", ["symlink to the output", "output is a symlink", "hard link", "file URL",
                                 "vsisubfile", "vrt source", "vrt of a vrt", "mask layer"])
def test_output_reached_another_way_is_refused(tmp_path, scenes, way):
    out = scenes[0]
    inputs, kw = [scenes[1]], {}
    if way == "symlink to the output":
        os.symlink(out, tmp_path / "alias.tif")
        inputs.append(str(tmp_path / "alias.tif"))
    elif way == "output is a symlink":
        os.symlink(scenes[1], tmp_path / "alias.tif")
        out = str(tmp_path / "alias.tif")
    elif way == "hard link":
        os.link(out, tmp_path / "same.tif")
        inputs.append(str(tmp_path / "same.tif"))
    elif way == "file URL":
        inputs.append("file://" + out)
    elif way == "vsisubfile":
        inputs.append(f"/vsisubfile/0_{os.path.getsize(out)},{out}")
    elif way == "vrt source":
        inputs.append(_vrt(tmp_path / "stack.vrt", [scenes[2], out]))
    elif way == "vrt of a vrt":
        inner = _vrt(tmp_path / "inner.vrt", [out])
        inputs.append(_vrt(tmp_path / "outer.vrt", [inner]))
    else:
        inputs.append(scenes[2])
        kw = dict(mask_layers=[scenes[2], out], mask_values=[1])
    before = {p: fingerprint(p) for p in scenes}
    with pytest.raises(OutputError, match="would destroy") as info:
        composite(inputs, out, workers=1, **kw)
    assert out in str(info.value)
    assert {p: fingerprint(p) for p in scenes} == before
    assert not os.path.exists(workdir_for(out))


def test_index_per_scene_outputs_never_overwrite_another_scene(tmp_path, scenes):
    """One COG per scene, named SCENE_ndvi.tif: a scene already called so is an input, not an output."""
    os.rename(scenes[1], tmp_path / "a0_ndvi.tif")
    scene = str(tmp_path / "a0_ndvi.tif")
    proc = tilewise_cli("index", "ndvi", "--bands", "RED=1,NIR=3", "--per-scene", "-o", ".", "a0.tif", scene,
                        cwd=tmp_path)
    one_error_line(proc, f"The output {scene} is also an input")


# -- 2. far too many workers -------------------------------------------------------------------------------

def test_cli_caps_workers_at_the_cores_and_says_so(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "out.tif", "--tile-size", "16", "-j", "1000", *scenes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    used = min(cpu_count(), 12)
    assert f"1000 workers were asked for; using {used}: this machine has {cpu_count()} cores" in proc.stderr
    assert f"12 tiles on {used} workers" in proc.stdout


def test_workers_never_exceed_the_tiles(tmp_path, scenes):
    lines = []
    report = composite(scenes, str(tmp_path / "out.tif"), workers=1000, log=lines.append)   # one tile
    assert (report.tiles, report.workers) == (1, 1)
    assert any(line.startswith("1000 workers were asked for; using 1:") and "the run has 1 tile to compute" in line
               for line in lines), lines


@pytest.mark.parametrize("command", ["composite", "mosaic"])
def test_cli_negative_workers_is_an_error(tmp_path, scenes, command):
    proc = tilewise_cli(command, "-o", "out.tif", "-j", "-3", *scenes, cwd=tmp_path)
    one_error_line(proc, "The number of workers must be 0 (all cores) or a positive number, got -3.")
    assert leftovers(tmp_path / "out.tif") == []


# -- 3. costly constant folding in band math ---------------------------------------------------------------

REFUSED_CONSTANTS = {
    "A + 10**10**10": "The constant 10 ** 10 ** 10 is too large: whole numbers must fit in 64 bits",
    "A + 9**9**9**9": "The constant 9 ** 9 ** 9 is too large",
    "A * 2**64": "The constant 2 ** 64 is too large",
    "A + 2.5**10**10": "The constant 2.5 ** 10 ** 10 is too large: numbers must lie within +-1.8e+308",
    "A * 1e309": "The constant 1e309 is too large",
    "A ** 1e308": "The exponent 1e+308 in A ** 1e+308 is too large for numexpr (at most 8.99e+307)",
    "A + 1 / 0": "The constant 1 / 0 divides by zero",
    "A + (-1) ** 0.5": "The constant (-1) ** 0.5 is not a real number",
    "sqrt(10 ** 400) + A": "The constant 10 ** 400 is too large",
    "+".join(["A"] * 1000): f"The expression nests 1000 operations deep; numexpr handles at most {MAX_DEPTH}",
}


@pytest.mark.parametrize("expression", list(REFUSED_CONSTANTS), ids=lambda e: e[:20])
def test_costly_or_impossible_constants_are_refused_at_once(expression):
    start = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        validate_expression(expression, ["A"])
    assert time.perf_counter() - start < 1.0
    assert REFUSED_CONSTANTS[expression] in str(info.value)


@pytest.mark.parametrize("expression", ["A * 2**62", "A + 2.0**70", "A * 0.5**10**10", "A + 10**-10**10",
                                        "(A + A) * 1e308", "+".join(["A"] * MAX_DEPTH)])
def test_large_but_possible_constants_are_kept(tmp_path, scenes, expression):
    report = bandmath({"A": (scenes[0], 1)}, expression, str(tmp_path / "out.tif"), workers=1)
    assert report.bands == 1


@pytest.mark.parametrize("expression", ["A + 10**10**10", "A ** 1e308", "+".join(["A"] * 1000)],
                         ids=["huge power", "huge exponent", "1000 terms"])
def test_cli_refuses_costly_expressions_quickly(tmp_path, scenes, expression):
    proc = tilewise_cli("calc", "-e", expression, "A=a0.tif", "-o", "out.tif", cwd=tmp_path)
    one_error_line(proc, REFUSED_CONSTANTS[expression])
    assert leftovers(tmp_path / "out.tif") == []


# -- 4. SIGTERM and SIGHUP ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_series(tmp_path_factory):
    """Four 1200 x 1200 scenes: with 32-pixel tiles (1,444 of them) a run lasts a few seconds."""
    folder = tmp_path_factory.mktemp("slow")
    rng = np.random.default_rng(4)
    return [write_raster(folder / f"s{i}.tif", rng.integers(1, 9999, (1200, 1200)).astype("uint16"), nodata=0)
            for i in range(4)]


def _hangup_as_a_terminal_sends_it():
    # The suite may run under nohup (SIGHUP ignored, and inherited): a CLI started so rightly ignores
    # it. These runs stand for one in a terminal that closes.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start_cli(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_hangup_as_a_terminal_sends_it)


def wait_for_tiles(output, proc, timeout=60):
    """Wait until the run has finished some tiles (its journal lists them)."""
    journal = os.path.join(workdir_for(str(output)), JOURNAL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(journal) and os.path.getsize(journal) > 0:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    pytest.fail("no tile was finished in time")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGTERM to the process group"])
@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_cli_stopped_by_a_signal_cleans_up_like_ctrl_c(tmp_path, slow_series, how, resume):
    out = tmp_path / "median.tif"
    proc = start_cli(["composite", "-o", out, "--tile-size", "32", "-j", "2", *slow_series]
                     + (["--resume"] if resume else []), tmp_path)
    wait_for_tiles(out, proc)
    sig = signal.SIGHUP if how == "SIGHUP" else signal.SIGTERM
    if how.endswith("group"):        # as `timeout` does: the process, then its whole group
        os.kill(proc.pid, sig)
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"tilewise: stopped ({sig.name}); no output was written, "), stderr
    assert "Traceback" not in stderr
    if resume:
        assert leftovers(out) == [workdir_for(str(out))]
        assert f"its finished tiles are kept in {workdir_for(str(out))}: run the same command with --resume" in last
        assert f"The finished tiles are kept in {workdir_for(str(out))}: run again with resume" in stderr  # the log
    else:
        assert last.endswith("nothing is left behind")
        assert leftovers(out) == []
    assert sorted(os.listdir(tmp_path)) == (["." + out.name + ".tilewise-work"] if resume else [])


STOPPED_WHILE_WORKERS_DIE = """
import signal, threading, time
from tilewise.core.runtime.executor import LocalExecutor

def interrupt(*_):
    raise KeyboardInterrupt          # what Stopped is: a signal ends the run's loop in the main thread

if __name__ == "__main__":
    with LocalExecutor(2) as executor:
        executor.in_flight = 5     # more tasks in flight than the pool queues: some not started, cancellable
        results = executor.run(time.sleep, [(0,)] + [(5,)] * 19)
        next(results)
        workers = list(executor._pool._processes.values())
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        threading.Timer(1.0, lambda: [p.terminate() for p in workers]).start()   # the group's signal
        try:
            next(results)
        except KeyboardInterrupt:
            print("stopped")
"""


def test_a_stopped_run_whose_workers_die_too_does_not_hang(tmp_path):
    """`timeout` signals the whole process group: the run stops (the tasks not yet started are
    cancelled) while the workers die of the same signal. A cancelled task never completes, and
    waiting for it hung the CLI for ever; only the tasks already running are waited for."""
    try:
        proc = subprocess.run([sys.executable, "-c", STOPPED_WHILE_WORKERS_DIE], cwd=tmp_path, env=subprocess_env(),
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("stopping the run hung on a cancelled task")
    assert proc.stdout.strip() == "stopped", proc.stderr


# -- 5. a full disk ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_cli_full_disk_is_one_clear_message(tmp_path, resume):
    src = write_raster(tmp_path / "noise.tif", np.random.default_rng(1).random((700, 700)).astype("float32"))
    disk = tmp_path / "disk"
    disk.mkdir()
    cli = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "tilewise", "composite", "-o", "out.tif",
                                             "--tile-size", "128", "-j", "1", src] + (["--resume"] if resume else []))
    proc = in_small_disk(cli, disk)
    text = proc.stdout + proc.stderr
    assert "rc=2" in proc.stdout, text
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tilewise: error:")]
    assert len(errors) == 1, text
    assert re.search(rf"The disk is full: {re.escape(str(disk))} has [\d.]+ (B|KiB) free, and this run needs up to "
                     r"[\d.]+ MiB \([\d.]+ MiB of tiles, then [\d.]+ MiB for the output", errors[0]), errors[0]
    assert "Traceback" not in text and "RasterioIOError" not in text
    assert re.search(rf"Warning: only [\d.]+ (KiB|MiB) free in {re.escape(str(disk))}; this run needs up to [\d.]+ MiB",
                     proc.stderr), proc.stderr
    left = proc.stdout.split("LEFT:")[1].split()
    assert left == ([".out.tif.tilewise-work"] if resume else []), text


# -- 6. inputs outside the output grid ---------------------------------------------------------------------

@pytest.fixture
def far(tmp_path):
    """A scene 2,000 km away, and one in another CRS (geographic, in South America)."""
    ones = np.ones((3,) + SHAPE, "uint16")
    return (write_raster(tmp_path / "far.tif", ones * 7, transform=FAR, nodata=0),
            write_raster(tmp_path / "far4326.tif", ones * 9, crs="EPSG:4326",
                         transform=Affine(0.01, 0, -60.0, 0, -0.01, -10.0), nodata=0))


def test_cli_names_inputs_outside_the_grid(tmp_path, scenes, far):
    proc = tilewise_cli("composite", "-q", "-o", "with.tif", scenes[0], far[0], far[1], scenes[1], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tilewise_cli("composite", "-q", "-o", "without.tif", scenes[0], scenes[1], cwd=tmp_path)
    np.testing.assert_array_equal(read_raster(tmp_path / "with.tif")[0], read_raster(tmp_path / "without.tif")[0])
    proc = tilewise_cli("composite", "-o", "with.tif", scenes[0], far[0], far[1], scenes[1], cwd=tmp_path)
    assert (f"Warning: 2 of 4 inputs do not overlap the output grid and add nothing to it: {far[0]}, {far[1]}"
            in proc.stderr), proc.stderr


@pytest.mark.parametrize("command", [
    ["composite", "--reference", "far.tif", "-o", "out.tif", "a0.tif", "a1.tif"],
    ["mosaic", "--extent", "0", "0", "1000", "1000", "-o", "out.tif", "a0.tif", "a1.tif"],
], ids=["composite", "mosaic"])
def test_cli_output_no_input_touches_is_an_error(tmp_path, scenes, far, command):
    proc = tilewise_cli(*command, cwd=tmp_path)
    one_error_line(proc, "No input overlaps the output grid", "a0.tif, a1.tif")
    assert leftovers(tmp_path / "out.tif") == []


def test_cli_band_math_with_an_input_outside_is_an_error(tmp_path, scenes, far):
    proc = tilewise_cli("calc", "-e", "A + B", "A=a0.tif", "B=far4326.tif", "-o", "out.tif", cwd=tmp_path)
    one_error_line(proc, "Input B (far4326.tif) does not overlap the output grid: every pixel of the output "
                         "would be nodata")


# -- 7. a huge mosaic grid ---------------------------------------------------------------------------------

def test_cli_huge_mosaic_grid_needs_a_confirmation(tmp_path, scenes, far):
    proc = tilewise_cli("mosaic", "-o", "out.tif", "a0.tif", "a1.tif", "far.tif", cwd=tmp_path)
    message = one_error_line(proc, "The output grid would be 40,060 x 200,040 pixels x 3 band(s) of uint16, "
                                   "44.8 GiB before compression", "It is stretched by far.tif, far from the other "
                                   "inputs", "--allow-large")
    assert "a0.tif" not in message
    assert leftovers(tmp_path / "out.tif") == []


def test_cli_allow_large_confirms(tmp_path, scenes):
    """With a small limit (patched in the process), the same command fails without the flag, runs with it."""
    script = ("import sys; import tilewise.core.io.coverage as c; c.LARGE_OUTPUT_BYTES = 1000; "
              "from tilewise.core.cli import main; sys.exit(main(sys.argv[1:]))")
    base = [sys.executable, "-c", script, "mosaic", "-q", "-o", "out.tif", "a0.tif", "a1.tif"]
    refused = subprocess.run(base, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    one_error_line(refused, "The output grid would be 60 x 40 pixels x 3 band(s) of uint16, 14.1 KiB")
    done = subprocess.run(base + ["--allow-large"], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert read_raster(tmp_path / "out.tif")[0].shape == (3,) + SHAPE


def test_api_large_outputs_need_allow_large(tmp_path, scenes, monkeypatch):
    monkeypatch.setattr(coverage, "LARGE_OUTPUT_BYTES", 1000)
    with pytest.raises(GridError, match="allow_large=True"):
        composite(scenes, str(tmp_path / "out.tif"), workers=1)
    assert composite(scenes, str(tmp_path / "out.tif"), workers=1, allow_large=True).bands == 3
    with pytest.raises(GridError, match="written without a confirmation"):
        mosaic(scenes, str(tmp_path / "m.tif"))


# -- 8. side-car files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodata", ["1e20", "0.1"])
def test_cli_leaves_no_side_car_files(tmp_path, scenes, nodata):
    (tmp_path / "out.tif.aux.xml").write_text("<PAMDataset>stale statistics</PAMDataset>")
    proc = tilewise_cli("composite", "-q", "-o", "out.tif", "--output-nodata", nodata, *scenes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["a0.tif", "a1.tif", "a2.tif", "out.tif"]
    with rasterio.open(tmp_path / "out.tif") as src:
        assert src.nodata == float(np.float32(float(nodata)))


# -- 9. other extensions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.vrt"])
def test_cli_refuses_other_extensions(tmp_path, scenes, name):
    proc = tilewise_cli("composite", "-o", name, *scenes, cwd=tmp_path)
    stem = name.split(".")[0]
    one_error_line(proc, f"The output {name} would be a GeoTIFF named .{name.split('.')[1]}: Tilewise writes "
                         f"Cloud-Optimized GeoTIFFs only. Name it {stem}.tif.")
    assert sorted(os.listdir(tmp_path)) == ["a0.tif", "a1.tif", "a2.tif"]


def test_cli_adds_tif_to_a_name_without_extension(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "median", *scenes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Warning: The output name median has no extension: writing median.tif" in proc.stderr
    assert proc.stdout.startswith(f"{tmp_path / 'median.tif'}: 60 x 40")
    assert sorted(os.listdir(tmp_path)) == ["a0.tif", "a1.tif", "a2.tif", "median.tif"]


# -- 10. small errors --------------------------------------------------------------------------------------

def test_cli_tile_size_zero_is_automatic(tmp_path, scenes):
    proc = tilewise_cli("composite", "-o", "out.tif", "--tile-size", "0", *scenes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    bad = tilewise_cli("composite", "-o", "out.tif", "--tile-size", "5", *scenes, cwd=tmp_path)
    one_error_line(bad, "Tile size must be at least 8 pixels (or 0: from the memory budget), got 5.")


def test_cli_band_count_mismatch_names_the_files(tmp_path, scenes):
    write_raster(tmp_path / "gray.tif", np.ones(SHAPE, "uint16"))
    proc = tilewise_cli("composite", "-o", "out.tif", "a0.tif", "gray.tif", "a1.tif", cwd=tmp_path)
    one_error_line(proc, "The inputs have different band counts (1 band: gray.tif; 3 bands: a0.tif, a1.tif); "
                         "pick the bands to composite")


def test_cli_truncated_geotiff_names_the_file_and_where(tmp_path, scenes):
    cut = write_raster(tmp_path / "cut.tif", np.random.default_rng(2).integers(0, 255, (200, 200)).astype("uint8"),
                       tiled=True, blockxsize=64, blockysize=64)
    write_raster(tmp_path / "good.tif", np.ones((200, 200), "uint8"))
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) // 3)
    proc = tilewise_cli("composite", "-q", "-o", "out.tif", "--tile-size", "64", "-j", "1", "good.tif", "cut.tif",
                        cwd=tmp_path)
    message = one_error_line(proc, "cut.tif is damaged (truncated or corrupt): its pixels at rows ",
                             " of the file cannot be read (", "Replace the file or repair it.")
    assert re.search(r"^tilewise: error: tile \d+ \(rows \d+-\d+, cols \d+-\d+\): cut\.tif is damaged", message)
    assert "TIFFReadEncodedTile" in message and "See previous exception" not in message
    assert leftovers(tmp_path / "out.tif") == []

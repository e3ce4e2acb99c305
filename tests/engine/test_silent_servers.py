"""Servers that never answer do not hang a run (issue 26, A3).

A run whose remote input sits on a server that accepts the connection and then says nothing (or
answers the header and goes silent on the pixels) ends by itself after the HTTP timeout, with one
message naming the URL and the setting to raise; and SIGTERM or Ctrl+C stop it within seconds
wherever it waits: opening the inputs in the main process, reading tiles in the main process or
in worker processes, or reading the assets' headers of a STAC search.

The servers bind 127.0.0.1 (``hostile.py``, ``stalling.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import stacdata
from hostile import ScriptedServer, SilentServer, wait_until
from stalling import StallingServer
from support import PLUGINS_DIR, leftovers, signals_as_a_terminal_sends_them, write_raster

from tilewise.core.errors import InputError
from tilewise.core.grid import Grid, plan_tiles
from tilewise.core.io import network
from tilewise.core.io.sources import close_all, describe_raster, read_window

#: Seconds a stopped run may take to end: it should take about one (three when a worker is killed);
#: the margin is for a loaded machine.
STOP_MARGIN = 10.0
#: The HTTP timeout (whole seconds) the runs that must give up are given: a server that sends nothing sends
#: nothing however long the wait, so the smallest setting shows the same as the default 30 s; the stalling
#: server must get its header through first, which 2 s leaves room for on a loaded machine.
SILENT_TIMEOUT = 1
STALL_TIMEOUT = 2


def cli_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDAL_HTTP", "TILEWISE_HTTP"))}
    env["PYTHONPATH"] = PLUGINS_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def start_cli(args, cwd, **env):
    return subprocess.Popen([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=signals_as_a_terminal_sends_them)


def finish(proc, timeout):
    """``(returncode, stderr, seconds it took)`` of a run that must end within ``timeout`` seconds."""
    started = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"the run did not end within {timeout} s:\n{stderr}")
    return proc.returncode, stderr, time.monotonic() - started


@pytest.fixture
def silent():
    with SilentServer() as server:
        yield server


@pytest.fixture(scope="module")
def scene_bytes(tmp_path_factory):
    """A 1024 x 1024 tiled, uncompressed GeoTIFF (2 MiB): its header fits in the first 16 KiB."""
    path = tmp_path_factory.mktemp("stalling") / "scene.tif"
    data = np.random.default_rng(7).integers(1, 9999, (1024, 1024)).astype("uint16")
    write_raster(path, data, nodata=0, tiled=True, blockxsize=256, blockysize=256)
    return path.read_bytes()


@pytest.fixture
def stalling(scene_bytes):
    with StallingServer(scene_bytes, cutoff=16384) as server:
        yield server


COMMANDS = {
    "composite": lambda url: ["composite", "-q", "-o", "out.tif", url],
    "calc": lambda url: ["calc", "-q", "-e", "A * 2", f"A={url}", "-o", "out.tif"],
}


# -- the HTTP timeout --------------------------------------------------------------------------------------------

def test_timeout_setting_gives_gdal_its_http_options(monkeypatch):
    monkeypatch.setenv(network.HTTP_TIMEOUT_ENV, "7")
    for key in network.http_config(30):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "999")          # the user's own wins
    network.apply_http_defaults()
    assert {k: os.environ[k] for k in network.http_config(30)} == {
        "GDAL_HTTP_CONNECTTIMEOUT": "7", "GDAL_HTTP_LOW_SPEED_LIMIT": "1", "GDAL_HTTP_LOW_SPEED_TIME": "7",
        "GDAL_HTTP_TIMEOUT": "999"}
    monkeypatch.setenv(network.HTTP_TIMEOUT_ENV, "40")       # a changed setting applies to what Tilewise set
    network.apply_http_defaults()
    assert (os.environ["GDAL_HTTP_CONNECTTIMEOUT"], os.environ["GDAL_HTTP_LOW_SPEED_TIME"],
            os.environ["GDAL_HTTP_TIMEOUT"]) == ("10", "40", "999")


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_a_bad_timeout_setting_is_one_clear_message(tmp_path, silent, value):
    proc = start_cli(COMMANDS["composite"](f"{silent.url}/b.tif"), tmp_path, TILEWISE_HTTP_TIMEOUT=value)
    code, stderr, _ = finish(proc, 60)
    assert code == 2, stderr
    assert stderr.strip().splitlines()[-1] == (f"tilewise: error: {network.HTTP_TIMEOUT_ENV}={value!r} is not a number "
                                               "of seconds above 0 (default 30).")


@pytest.mark.parametrize("how", ["option", "environment", "GDAL's own setting"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_silent_server_is_given_up_after_the_timeout(tmp_path, silent, command, how):
    url = f"{silent.url}/b.tif"
    args = COMMANDS[command](url)
    env = {}
    if how == "option":
        args += ["--http-timeout", str(SILENT_TIMEOUT)]
    elif how == "environment":
        env[network.HTTP_TIMEOUT_ENV] = str(SILENT_TIMEOUT)
    else:   # the user's GDAL_HTTP_* win over Tilewise's setting
        env.update({network.HTTP_TIMEOUT_ENV: "600", "GDAL_HTTP_LOW_SPEED_TIME": str(SILENT_TIMEOUT)})
    proc = start_cli(args, tmp_path, **env)
    code, stderr, seconds = finish(proc, 60)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"tilewise: error: Opening {url} timed out: the server sent nothing"), stderr
    assert "--http-timeout SECONDS" in last and network.HTTP_TIMEOUT_ENV in last
    assert silent.accepted >= 1
    assert seconds < SILENT_TIMEOUT + 25, "gave up far later than the timeout"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_pixels_that_never_come_are_given_up_after_the_timeout(tmp_path, stalling, workers):
    url = f"{stalling.url}/scene.tif"
    proc = start_cli(["composite", "-q", "-j", workers, "--tile-size", "256", "--http-timeout", STALL_TIMEOUT, "-o",
                      "out.tif", url], tmp_path)
    code, stderr, seconds = finish(proc, 90)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("tilewise: error: ") and f"Reading {url} at rows 0-255, cols " in last, stderr
    assert " timed out: the server sent nothing" in last, stderr
    assert "--http-timeout SECONDS" in last
    assert stalling.stalled >= 1
    assert seconds < STALL_TIMEOUT * 2 + 30
    assert os.listdir(tmp_path) == []


VRT = """<VRTDataset rasterXSize="512" rasterYSize="512">
  <SRS>EPSG:32633</SRS>
  <GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform>
  <VRTRasterBand dataType="UInt16" band="1">
    <NoDataValue>0</NoDataValue>
    <SimpleSource>
      <SourceFilename relativeToVRT="0">/vsicurl/{url}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SourceProperties RasterXSize="512" RasterYSize="512" DataType="UInt16" BlockXSize="256" BlockYSize="256"/>
      <SrcRect xOff="0" yOff="0" xSize="512" ySize="512"/>
      <DstRect xOff="0" yOff="0" xSize="512" ySize="512"/>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


def input_folder(tmp_path):
    """A folder beside the run's (which must be left empty)."""
    folder = tmp_path.parent / f"{tmp_path.name}-in"
    folder.mkdir()
    return folder


def remote_vrt(folder, url):
    """A local VRT whose one source is ``url``, described in full (as a STAC search writes them): opening it
    asks the server nothing, reading its pixels does."""
    path = folder / "remote.vrt"
    path.write_text(VRT.format(url=url))
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_a_local_vrt_of_a_silent_server_is_given_up_after_the_timeout(tmp_path, silent, workers):
    vrt = remote_vrt(input_folder(tmp_path), f"{silent.url}/b.tif")
    proc = start_cli(["composite", "-q", "-j", workers, "--tile-size", "256", "--http-timeout", SILENT_TIMEOUT, "-o",
                      "out.tif", vrt], tmp_path)
    code, stderr, seconds = finish(proc, 90)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert f"Reading a remote source of {vrt} at rows 0-" in last and " timed out: the server sent nothing" in last \
        and "--http-timeout SECONDS" in last, stderr
    assert seconds < SILENT_TIMEOUT * 3 + 30
    assert os.listdir(tmp_path) == []


def _read_tiles(vrt, tiles):
    """The messages of reading ``tiles`` (of the VRT's 512 x 512 grid, 256 x 256 each) of ``vrt`` in this process."""
    grid = Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 512, 512)
    messages = []
    try:
        for index in tiles:
            with pytest.raises(InputError) as failed:
                read_window(str(vrt), [1], grid, plan_tiles(grid, 256)[index], np.empty((1, 256, 256)))
            messages.append(str(failed.value))
    finally:
        close_all()
    return messages


def test_every_read_of_a_silent_remote_source_is_called_timed_out(tmp_path, silent, monkeypatch):
    # GDAL keeps a file whose request timed out as missing: the process's next reads of it fail at once saying only
    # that it "does not exist in the file system"; a worker's second tile so called the VRT damaged
    monkeypatch.setenv(network.HTTP_TIMEOUT_ENV, str(SILENT_TIMEOUT))
    for key in network.http_config(30):
        monkeypatch.delenv(key, raising=False)
    vrt = remote_vrt(tmp_path, f"{silent.url}/b.tif")
    messages = _read_tiles(vrt, [0, 1, 3])
    for message in messages:
        assert message.startswith(f"Reading a remote source of {vrt} at rows ") and \
            " timed out: the server sent nothing" in message and "--http-timeout SECONDS" in message, messages


def test_a_server_back_up_is_asked_again_by_the_next_run(tmp_path, scene_bytes, monkeypatch):
    # GDAL keeps a file it gave up on as missing for the life of the process: a warm engine's or kept worker's
    # next run would find the server's file "timed out" at once, without asking it, however long it is back up.
    # pyogrio (the engine's tables) loads a second GDAL in the process, with its own cache: the one cleared is
    # rasterio's
    import pyogrio  # noqa: F401
    monkeypatch.setenv(network.HTTP_TIMEOUT_ENV, str(SILENT_TIMEOUT))
    for key in network.http_config(30):
        monkeypatch.delenv(key, raising=False)
    with SilentServer() as silent:
        url = f"{silent.url}/scene.tif"
        port = silent.port
        with pytest.raises(InputError, match=" timed out: the server sent nothing"):
            describe_raster(url)
    with ScriptedServer({"/scene.tif": (200, {"Content-Type": "image/tiff"}, scene_bytes)}, port=port) as back_up:
        close_all()                                  # the run ends (a kept worker's next run begins so)
        assert describe_raster(url).width == 1024
        assert back_up.seen, "GDAL did not ask the server"


def test_a_vrt_of_a_truncated_local_file_is_still_called_damaged(tmp_path):
    data = np.random.default_rng(3).integers(1, 9999, (512, 512)).astype("uint16")
    scene = write_raster(tmp_path / "scene.tif", data, nodata=0, tiled=True, blockxsize=256, blockysize=256)
    with open(scene, "r+b") as f:
        f.truncate(os.path.getsize(scene) // 3)
    vrt = tmp_path / "local.vrt"
    vrt.write_text(VRT.replace("/vsicurl/{url}", str(scene)))
    [message] = _read_tiles(vrt, [3])
    assert message.startswith(f"{vrt} is damaged (truncated or corrupt): its pixels at rows 256-511, cols 256-511 "
                              "of the file cannot be read (") and "Replace the file or repair it." in message, message


# -- stopping a run that waits for a server ----------------------------------------------------------------------

SIGNALS = {"SIGTERM": (signal.SIGTERM, "SIGTERM"), "SIGINT": (signal.SIGINT, "Ctrl+C")}


def stop_and_check(proc, tmp_path, sig_name):
    sig, said = SIGNALS[sig_name]
    os.kill(proc.pid, sig)
    code, stderr, seconds = finish(proc, 60)
    assert code == 128 + sig, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last == f"tilewise: stopped ({said}); no output was written, nothing is left behind", stderr
    assert seconds < STOP_MARGIN, f"took {seconds:.1f} s to stop"
    assert leftovers(tmp_path / "out.tif") == [] and os.listdir(tmp_path) == []


@pytest.mark.parametrize("sig_name", sorted(SIGNALS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_run_opening_a_silent_input_stops_at_once(tmp_path, silent, command, sig_name):
    proc = start_cli(COMMANDS[command](f"{silent.url}/b.tif") + ["--http-timeout", "600"], tmp_path)
    assert wait_until(lambda: silent.accepted >= 1 or proc.poll() is not None, 60), "the run never connected"
    time.sleep(0.5)       # well inside GDAL's wait
    assert proc.poll() is None, proc.communicate()
    stop_and_check(proc, tmp_path, sig_name)


@pytest.mark.parametrize("sig_name", sorted(SIGNALS))
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_reading_pixels_that_never_come_stops_at_once(tmp_path, stalling, workers, sig_name):
    proc = start_cli(["composite", "-q", "-j", workers, "--tile-size", "256", "--http-timeout", "600", "-o",
                      "out.tif", f"{stalling.url}/scene.tif"], tmp_path)
    assert wait_until(lambda: stalling.stalled >= workers or proc.poll() is not None, 90), "no read was stalled"
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    stop_and_check(proc, tmp_path, sig_name)


@pytest.mark.parametrize("sig_name", sorted(SIGNALS))
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_reading_a_local_vrt_of_a_silent_server_stops_at_once(tmp_path, silent, workers, sig_name):
    vrt = remote_vrt(input_folder(tmp_path), f"{silent.url}/b.tif")
    proc = start_cli(["composite", "-q", "-j", workers, "--tile-size", "256", "--http-timeout", "600", "-o",
                      "out.tif", vrt], tmp_path)
    assert wait_until(lambda: silent.accepted >= workers or proc.poll() is not None, 90), "no read was made"
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    stop_and_check(proc, tmp_path, sig_name)


# -- STAC: an asset on a silent host ------------------------------------------------------------------------------

def silent_item_collection(folder, url):
    """A local ItemCollection of one item whose assets are on ``url`` (only GDAL reads them)."""
    files = {b: f"{url}/{b}.tif" for b in ("red", "nir", "scl")}
    item = stacdata._item("s2-silent", "s2-test", "2024-05-03T10:00:00Z", "A", 5.0, "05.10", 22, "sentinel-2a",
                          stacdata._assets("es", files, False))
    path = folder / "items-in.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path


def test_stac_search_gives_up_an_asset_on_a_silent_host(tmp_path, silent):
    catalogue = silent_item_collection(tmp_path, silent.url)
    proc = start_cli(["stac", "search", catalogue, "--assets", "red,nir", "--http-timeout", SILENT_TIMEOUT, "-o",
                      "found"],
                     tmp_path)
    code, stderr, seconds = finish(proc, 60)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("tilewise: error: The asset ") and " of item s2-silent cannot be read. Opening " \
        f"{silent.url}/" in last and " timed out: " in last and "--http-timeout SECONDS" in last, stderr
    assert seconds < SILENT_TIMEOUT + 25


@pytest.mark.parametrize("sig_name", sorted(SIGNALS))
def test_stac_search_reading_an_asset_on_a_silent_host_stops_at_once(tmp_path, silent, sig_name):
    catalogue = silent_item_collection(tmp_path, silent.url)
    proc = start_cli(["stac", "search", catalogue, "--assets", "red,nir", "--http-timeout", "600", "-o", "found"],
                     tmp_path)
    assert wait_until(lambda: silent.accepted >= 2 or proc.poll() is not None, 60), "the assets were never asked for"
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    sig, said = SIGNALS[sig_name]
    os.kill(proc.pid, sig)
    code, stderr, seconds = finish(proc, 60)
    assert code == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"tilewise: stopped ({said}); no output was written"), stderr
    assert seconds < STOP_MARGIN, f"took {seconds:.1f} s to stop"


# -- Dask: the workers take the submitting process's timeouts ----------------------------------------------------

def test_dask_workers_give_up_a_silent_server_after_the_timeout(dask_cluster, stalling, tmp_path):
    url = f"{stalling.url}/scene.tif"
    proc = start_cli(["composite", "-q", "--scheduler", dask_cluster.address, "--tile-size", "256", "--http-timeout",
                      STALL_TIMEOUT, "-o", "out.tif", url], tmp_path)
    code, stderr, seconds = finish(proc, 120)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert f"Reading {url} at rows " in last and " timed out: the server sent nothing, or less than 1 byte/s, for " \
        f"{STALL_TIMEOUT} s " in last, stderr
    assert stalling.stalled >= 1
    assert seconds < STALL_TIMEOUT * 3 + 60

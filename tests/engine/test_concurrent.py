"""Two runs on one output (issue 26 A1): one run owns an output at a time.

The first run holds the output's lock (``.out.tif.tilewise-lock``) from before it touches anything
until its last cleanup. A second run stops with one message naming the first (exit code 2 on the
command line), or waits for it with ``--wait-if-busy``, and never touches the first's files. A lock
left by a killed run (``kill -9``) blocks nobody.

No timing is relied on: the first run is paused in its progress callback (it holds the lock and has
written some tiles) until the test lets it go, and a waiting run is seen waiting by its log line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from tilewise.core import composite
from tilewise.core.errors import OutputBusyError
from tilewise.core.runtime.lock import OutputLock, output_locks, read_holder
from tilewise.core.paths import lock_path, workdir_for

from support import build_stack, leftovers, subprocess_env

#: A median composite through the Python API that stops after two tiles (holding the lock, its work folder
#: half full) until a line comes on its stdin; it prints its pid when paused.
PAUSED_RUN = textwrap.dedent("""
    import os, sys
    from tilewise.core import composite
    inputs, output = sys.argv[2:], sys.argv[1]

    def progress(done, total):
        if done == 2:
            print(f"paused {os.getpid()}", flush=True)
            sys.stdin.readline()

    composite(inputs, output, "median", tile_size=64, workers=1, progress=progress)
    print("finished", flush=True)
""")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Five uint16 scenes of 200 x 260 pixels: 12 tiles of 64 pixels."""
    return build_stack(tmp_path_factory.mktemp("scenes"), "uint16", 0, 5, height=200, width=260, seed=26).paths


@pytest.fixture(scope="module")
def expected(scenes, tmp_path_factory) -> Dict[str, bytes]:
    """The median and the mean, each from a run alone."""
    folder = tmp_path_factory.mktemp("alone")
    out = {}
    for statistic in ("median", "mean"):
        path = folder / f"{statistic}.tif"
        composite(scenes, str(path), statistic, tile_size=64, workers=1)
        out[statistic] = path.read_bytes()
    return out


def cli(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def composite_cli(statistic: str, out: Path, scenes: List[str], *extra: str) -> subprocess.Popen:
    return cli("composite", "-j", "1", "--tile-size", "64", "-s", statistic, *extra, "-o", out, *scenes,
               cwd=out.parent)


class Paused:
    """A median run (:data:`PAUSED_RUN`) in another process, paused after two tiles."""

    def __init__(self, out: Path, scenes: List[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PAUSED_RUN, str(out), *scenes], cwd=out.parent,
                                     env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()                  # as long as it takes (numba's first compile)
        assert line.startswith("paused "), line + self.proc.stderr.read()
        self.pid = int(line.split()[1])

    def resume(self) -> str:
        out, err = self.proc.communicate("go\n", timeout=300)
        assert self.proc.returncode == 0, err
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=60)


def snapshot(folder: Path) -> Dict[str, tuple]:
    """Every file under ``folder`` (the hidden ones of a run too) with its inode, size and time."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


class Stderr:
    """Reads a process's stderr in a thread; :meth:`wait_for` a text in it, without sleeping blind."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc) -> None:
        while True:
            chunk = proc.stderr.read(1)
            if not chunk:
                return
            self.text += chunk

    def wait_for(self, part: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while part not in self.text:
            assert time.monotonic() < deadline, f"{part!r} not seen in: {self.text}"
            time.sleep(0.05)

    def join(self) -> str:
        self._thread.join(30)
        return self.text


# -- the command line: the two composites on one output -----------------------------------------------

def test_a_second_run_on_a_busy_output_stops_with_one_message_naming_the_first(scenes, expected, tmp_path):
    out = tmp_path / "out.tif"
    first = Paused(out, scenes)
    try:
        before = snapshot(tmp_path)
        assert any(name.startswith(".out.tif.tilewise-work/tile_") for name in before), before

        second = composite_cli("mean", out, scenes, "-q")
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2, err
        assert err.strip().splitlines() == [err.strip()], err                 # one line, no traceback
        assert err.startswith(f"tilewise: error: {out} is being written by another Tilewise run "
                              f"(composite median, pid {first.pid} on "), err
        assert "started " in err and "wait for it to finish or choose another output" in err
        assert "--wait-if-busy" in err
        assert snapshot(tmp_path) == before                                    # the first run's files untouched
    finally:
        if first.proc.poll() is None:
            first.resume()
    assert out.read_bytes() == expected["median"]                              # the first's own result
    assert leftovers(out) == [str(out)]                                        # no work folder, no lock file


def test_a_run_asked_to_wait_waits_then_writes_its_own_result(scenes, expected, tmp_path):
    out = tmp_path / "out.tif"
    first = Paused(out, scenes)
    try:
        second = composite_cli("mean", out, scenes, "--wait-if-busy")
        err = Stderr(second)
        err.wait_for(f"out.tif is being written by another Tilewise run (composite median, pid {first.pid} ")
        err.wait_for("waiting for it to finish")
        assert second.poll() is None and not out.exists()                      # waiting, nothing written
        assert first.resume().strip() == "finished"
        second.wait(timeout=300)
        log = err.join()
    finally:
        first.kill()
    assert second.returncode == 0, log
    assert "out.tif is free: starting" in log
    assert out.read_bytes() == expected["mean"]                                # then its own result
    assert leftovers(out) == [str(out)]


def test_a_lock_left_by_a_killed_run_blocks_nobody(scenes, expected, tmp_path):
    out = tmp_path / "out.tif"
    first = Paused(out, scenes)
    first.kill()                                                               # kill -9, in the middle of its run
    assert os.path.exists(lock_path(str(out))) and os.path.isdir(workdir_for(str(out)))
    assert read_holder(str(out))["pid"] == first.pid                           # its note is still there

    second = composite_cli("mean", out, scenes, "-q")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert out.read_bytes() == expected["mean"]
    assert leftovers(out) == [str(out)]                                        # its stale lock file too is gone


# -- Python ----------------------------------------------------------------------------------------------------

def test_in_python_a_busy_output_is_an_output_busy_error_and_nothing_is_touched(scenes, tmp_path):
    out = tmp_path / "out.tif"
    out.write_bytes(b"an earlier output")
    with output_locks([str(out)], "mosaic"):                                   # another run, in this process
        before = snapshot(tmp_path)
        with pytest.raises(OutputBusyError) as info:
            composite(scenes, str(out), "mean", tile_size=64, workers=1, resume=True)
        assert snapshot(tmp_path) == before
    assert str(info.value).startswith(f"{out} is being written by another Tilewise run (mosaic, pid {os.getpid()} ")
    assert out.read_bytes() == b"an earlier output"
    assert not os.path.exists(lock_path(str(out)))                            # released, and removed


def test_in_python_wait_if_busy_waits_for_the_holder(scenes, expected, tmp_path):
    out = tmp_path / "out.tif"
    holder = OutputLock(str(out), "composite median")
    assert holder.try_acquire()
    logs: List[str] = []
    released = threading.Event()

    def release_once_waiting():
        deadline = time.monotonic() + 120
        while not any("waiting for it to finish" in m for m in logs) and time.monotonic() < deadline:
            time.sleep(0.02)
        released.set()
        holder.release()

    threading.Thread(target=release_once_waiting, daemon=True).start()
    composite(scenes, str(out), "mean", tile_size=64, workers=1, wait_if_busy=True, log=logs.append)
    assert released.is_set()
    assert out.read_bytes() == expected["mean"]
    waiting = [m for m in logs if "waiting for it to finish" in m]
    assert len(waiting) == 1, logs                                             # said once
    assert waiting[0].startswith(f"out.tif is being written by another Tilewise run (composite median, "
                                 f"pid {os.getpid()} on "), waiting
    assert logs.index("out.tif is free: starting") == logs.index(waiting[0]) + 1, logs


@pytest.fixture(scope="module")
def zones(tmp_path_factory) -> str:
    import pyogrio
    import shapely
    path = tmp_path_factory.mktemp("zones") / "fields.gpkg"
    box = shapely.box(500_100.0, 4_998_500.0, 501_500.0, 4_999_900.0)
    pyogrio.raw.write(str(path), shapely.to_wkb([box]), [np.array(["f1"], dtype=object)], ["pid"],
                      crs="EPSG:32633", geometry_type="Polygon", driver="GPKG")
    return str(path)


def every_operation(scenes, zones, folder: Path):
    """``(name, call, path locked)`` for each operation that writes outputs."""
    a, b = scenes[0], scenes[1]
    out = str(folder / "out.tif")
    per_scene = str(folder / "ndvi")
    from tilewise.core import bandmath, chips, extract, gapfill, index, mosaic
    return [
        ("composite", lambda: composite(scenes, out, "median", workers=1), out),
        ("bandmath", lambda: bandmath({"A": (a, 1), "B": (b, 1)}, "A - B", out, workers=1), out),
        ("index", lambda: index([{"RED": (a, 1), "NIR": (b, 1)}], "ndvi", out, workers=1), out),
        ("index per scene", lambda: index([{"RED": (a, 1), "NIR": (a, 1)}, {"RED": (b, 1), "NIR": (b, 1)}],
                                          "ndvi", per_scene, per_scene=True, workers=1), per_scene),
        ("mosaic", lambda: mosaic(scenes, out, workers=1), out),
        ("gapfill", lambda: gapfill(scenes, out, workers=1), out),
        ("extract", lambda: extract(scenes, zones, str(folder / "ts.csv"), "mean", workers=1),
         str(folder / "ts.csv")),
        ("extract's plot", lambda: extract(scenes, zones, str(folder / "ts.csv"), "mean", workers=1,
                                           output_plot=str(folder / "ts.html")), str(folder / "ts.html")),
        ("geomedian", lambda: composite(scenes, out, "geomedian", workers=1), out),
        ("chips", lambda: chips(scenes, zones, str(folder / "chips"), "box", workers=1), str(folder / "chips")),
    ]


@pytest.mark.parametrize("which", range(10))
def test_every_operation_takes_the_lock_of_its_outputs(scenes, zones, tmp_path, which):
    name, call, locked = every_operation(scenes, zones, tmp_path)[which]
    with output_locks([locked], "another run"):
        before = snapshot(tmp_path)
        with pytest.raises(OutputBusyError, match=f"is being written by another Tilewise run \\(another run, "
                                                  f"pid {os.getpid()} "):
            call()
        assert snapshot(tmp_path) == before, name
    call()                                                                     # free again: it runs
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tilewise-lock")], name


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_worker_does_not_hold_the_lock(tmp_path):
    out = str(tmp_path / "out.tif")
    lock = OutputLock(out)
    assert lock.try_acquire()
    ready, up = os.pipe()
    child = os.fork()
    if child == 0:                                                  # a worker, outliving the run's process
        os.write(up, b"x")                                          # (its fork handlers have run)
        time.sleep(30)
        os._exit(0)
    os.read(ready, 1)
    os.close(ready)
    os.close(up)
    try:
        os.close(lock.fd)                           # as when the run's process dies: no unlock, only its fd closed
        again = OutputLock(out)
        assert again.try_acquire()                                             # the worker's copy holds nothing
        again.release()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_new_holder_writes_its_note_over_a_longer_one_left_behind(tmp_path):
    """The note is written over the old one and cut to its length (not cut to nothing first: ext4 flushes
    such a file to the disk when it is closed, 2 ms of every run)."""
    out = str(tmp_path / "out.tif")
    with open(lock_path(out), "w") as f:
        json.dump({"pid": 1, "host": "elsewhere", "operation": "x" * 500}, f)
    with OutputLock(out, "composite median"):
        holder = read_holder(out)
        assert (holder["pid"], holder["operation"]) == (os.getpid(), "composite median")
        assert os.path.getsize(lock_path(out)) < 200
    assert not os.path.exists(lock_path(out))


def test_a_lock_file_removed_while_being_locked_is_not_taken(tmp_path, monkeypatch):
    """A run that opened the lock file just before its holder released and removed it must lock the new
    file, not the removed one: else a third run could lock the new file too, and two runs would write."""
    from tilewise.core.runtime import lock as lock_module
    out = str(tmp_path / "out.tif")
    first, second, third = OutputLock(out), OutputLock(out), OutputLock(out)
    assert first.try_acquire()
    real = lock_module._try_lock
    calls = []

    def holder_leaves_meanwhile(fd):
        calls.append(fd)
        if len(calls) == 1:
            first.release()                                     # between second's open and its lock
        return real(fd)

    monkeypatch.setattr(lock_module, "_try_lock", holder_leaves_meanwhile)
    assert second.try_acquire()
    assert len(calls) == 2                                      # the removed file was let go, the new one locked
    monkeypatch.setattr(lock_module, "_try_lock", real)
    assert not third.try_acquire()
    second.release()
    assert third.try_acquire()
    third.release()


def test_a_file_system_without_locks_runs_with_a_warning(scenes, expected, tmp_path, monkeypatch):
    """Some network and FUSE file systems refuse locks (ENOLCK): the run goes on, and says it is unprotected."""
    import errno
    from tilewise.core.runtime import lock as lock_module

    def no_locks(fd):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module, "_try_lock", no_locks)
    out = tmp_path / "out.tif"
    logs: List[str] = []
    composite(scenes, str(out), "mean", tile_size=64, workers=1, log=logs.append)
    assert f"Warning: the file system of {out} has no file locks: another Tilewise run writing it at the same " \
           "time would not be stopped" in logs
    assert out.read_bytes() == expected["mean"]
    assert leftovers(out) == [str(out)]


def test_a_stac_search_into_a_folder_another_search_writes_stops_before_any_request(tmp_path):
    from hostile import ScriptedServer
    from tilewise.core.operations.stac.search import stac_search
    folder = tmp_path / "layers"
    with ScriptedServer() as catalogue, output_locks([str(folder)], "stac search"):
        with pytest.raises(OutputBusyError) as info:
            stac_search(catalogue.url + "/stac", str(folder), "red")
        assert catalogue.seen == []
    assert str(info.value).startswith(f"{folder} is being written by another Tilewise run (stac search, pid ")


def test_a_failed_stac_search_leaves_none_of_the_folders_it_made_for_its_lock(tmp_path):
    from hostile import ScriptedServer
    from tilewise.core.errors import CatalogError
    from tilewise.core.operations.stac.search import stac_search
    with ScriptedServer() as catalogue:                                        # 404 everywhere
        with pytest.raises(CatalogError):
            stac_search(catalogue.url + "/stac", str(tmp_path / "new" / "deeper" / "layers"), "red")
        assert catalogue.seen
    assert os.listdir(tmp_path) == []


def test_cleaning_up_after_a_run_whose_output_folder_does_not_exist_finds_it_free(tmp_path):
    """QGIS cleans up after a refused run (e.g. an output folder that does not exist) under the lock: no
    lock file can be made there, and nothing of a run can be there either."""
    from tilewise.core.runtime.lock import lock_if_free
    with lock_if_free(str(tmp_path / "no such folder" / "out.tif")) as free:
        assert free
    assert os.listdir(tmp_path) == []

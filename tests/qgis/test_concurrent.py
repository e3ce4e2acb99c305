"""Two runs on one output (issue 26 A1) through processing.run: while another Tilewise run (another QGIS, a
script, the command line) is writing the output, the algorithm stops with the message naming that run, and
leaves the output and that run's files (work folder, partial file) as they are."""

import os
import subprocess
import textwrap

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from conftest import PLUGINS_DIR
from twtest import read_raster, run, write_raster

SHAPE = (40, 60)

#: Another run on ``out.tif``: it takes the output's lock as a run does, leaves what a run has written by
#: then (a tile in its work folder, its partial file), says "locked" and holds on until its stdin closes.
HOLDER = textwrap.dedent("""
    import os, sys
    from tilewise.core.runtime.lock import output_locks
    from tilewise.core.paths import partial_path, workdir_for
    out = sys.argv[1]
    with output_locks([out], "composite mean"):
        os.makedirs(workdir_for(out))
        with open(os.path.join(workdir_for(out), "tile_0000000_0000000.tif"), "wb") as f:
            f.write(b"a tile of the other run")
        with open(partial_path(out), "wb") as f:
            f.write(b"the other run's output, half written")
        print("locked", os.getpid(), flush=True)
        sys.stdin.read()
""")


def snapshot(folder):
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def test_an_output_another_run_is_writing_is_refused_and_left_alone(tmp_path):
    rng = np.random.default_rng(26)
    inputs = [write_raster(tmp_path / f"s{i}.tif", rng.integers(1, 1000, SHAPE).astype(np.uint16), nodata=0)
              for i in range(3)]
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "out.tif"
    out.write_bytes(b"an earlier output")
    env = dict(os.environ, PYTHONPATH=str(PLUGINS_DIR))
    holder = subprocess.Popen([os.environ["TILEWISE_PYTHON"], "-c", HOLDER, str(out)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line.startswith("locked "), line + holder.stderr.read()
        pid = int(line.split()[1])
        before = snapshot(folder)
        assert len(before) == 4, sorted(before)             # output, tile, partial file, lock file

        with pytest.raises(QgsProcessingException) as info:
            run("tilewise:temporalmedian", {"INPUT": inputs, "OUTPUT": str(out)})
        message = str(info.value)
        assert message.startswith(f"{out} is being written by another Tilewise run (composite mean, pid {pid} on "), \
            message
        assert "wait for it to finish or choose another output" in message
        assert "Traceback" not in message and "Engine output" not in message, message
        assert snapshot(folder) == before                   # nothing removed nor written, in any way
    finally:
        holder.stdin.close()                                # the other run ends
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read()

    os.remove(out)
    run("tilewise:temporalmedian", {"INPUT": inputs, "OUTPUT": str(out)})   # free now: it runs
    stack = np.stack([read_raster(p).array.astype(float) for p in inputs])
    np.testing.assert_array_equal(read_raster(out).array, np.median(stack, axis=0).astype(np.float32))
    assert sorted(os.listdir(folder)) == ["out.tif"]        # the other run's leftovers cleared by this run

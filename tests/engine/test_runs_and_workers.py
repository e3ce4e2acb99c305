"""Running tiles: dead workers, failing tiles, interrupted runs, repeated runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tilewise.core import composite
from tilewise.core.errors import CancelledError, TileError, WorkerError
from tilewise.core.runtime.executor import LocalExecutor, SerialExecutor
from tilewise.core.options import RunOptions
from tilewise.core.runtime.runner import run_tiles
from tilewise.core.operations.composite import composite_tile, plan_composite
from tilewise.core.operations.series import CompositeOptions

from support import leftovers, read_raster, subprocess_env

SHAPE = (40, 60)       # 16-pixel tiles: 3 x 4 = 12 tiles


# Tile functions must be module-level so that worker processes can unpickle them.

def exit_on_tile_one(job, tile, path):
    if tile.index == 1:
        os._exit(1)
    return composite_tile(job, tile, path)


def sigkill_on_tile_one(job, tile, path):
    if tile.index == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return composite_tile(job, tile, path)


def raise_on_tile_five(job, tile, path):
    if tile.index == 5:
        raise TileError(f"{tile.name}: reading {job.inputs[1]} failed: checksum error")
    return composite_tile(job, tile, path)


@pytest.fixture
def job(tmp_path, raster):
    rng = np.random.default_rng(1)
    paths = [raster(f"in{i}.tif", rng.integers(0, 9, SHAPE).astype("uint8")) for i in range(3)]
    return plan_composite(paths, str(tmp_path / "out.tif"), CompositeOptions("median"))


@pytest.mark.parametrize("tile_fn", [exit_on_tile_one, sigkill_on_tile_one], ids=["exit", "sigkill"])
def test_dead_worker_is_a_worker_error(job, tile_fn):
    with LocalExecutor(2) as ex:
        with pytest.raises(WorkerError, match="worker process died"):
            run_tiles(job, tile_fn, RunOptions(tile_size=16, executor=ex))
    assert leftovers(job.output.path) == []


def test_dead_worker_in_an_own_pool_keeps_the_previous_output(job):
    with open(job.output.path, "wb") as f:
        f.write(b"last year's composite")
    with pytest.raises(WorkerError):
        run_tiles(job, sigkill_on_tile_one, RunOptions(tile_size=16, workers=2))
    with open(job.output.path, "rb") as f:
        assert f.read() == b"last year's composite"
    assert leftovers(job.output.path) == [job.output.path]


@pytest.mark.parametrize("executor", ["serial", "pool"])
def test_failing_tile_is_a_tile_error_naming_tile_and_input(job, pool, executor):
    ex = SerialExecutor() if executor == "serial" else pool
    with pytest.raises(TileError) as info:
        run_tiles(job, raise_on_tile_five, RunOptions(tile_size=16, executor=ex))
    assert "tile 5 (rows 16-31, cols 16-31)" in str(info.value)
    assert job.inputs[1] in str(info.value)
    assert leftovers(job.output.path) == []


def test_unreadable_tile_of_an_input_is_a_tile_error(tmp_path, raster):
    """A file whose header is fine but whose pixel data are cut off fails in its tile, by name."""
    rng = np.random.default_rng(2)
    good = raster("good.tif", rng.integers(0, 9, (200, 200)).astype("uint8"))
    cut = raster("cut.tif", rng.integers(0, 255, (200, 200)).astype("uint8"), tiled=True,
                 blockxsize=64, blockysize=64)
    size = os.path.getsize(cut)
    with open(cut, "r+b") as f:       # keep the header (written first), drop most of the tiles
        f.truncate(size // 3)
    out = tmp_path / "out.tif"
    with pytest.raises(TileError) as info:
        composite([good, cut], str(out), tile_size=64, workers=1)
    assert "cut.tif" in str(info.value) and str(info.value).startswith("tile ")
    assert leftovers(out) == []


def test_cancelling_from_the_progress_callback_leaves_nothing(job):
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 3:
            raise CancelledError("Cancelled by the user.")

    with pytest.raises(CancelledError):
        run_tiles(job, composite_tile, RunOptions(tile_size=16, executor=SerialExecutor(), progress=progress))
    assert seen == [0, 1, 2, 3]
    assert leftovers(job.output.path) == []


def test_progress_counts_every_tile(job, pool):
    seen = []
    report = run_tiles(job, composite_tile, RunOptions(tile_size=16, executor=pool,
                                                       progress=lambda d, t: seen.append((d, t))))
    assert seen == [(i, 12) for i in range(13)]
    assert report.tiles == 12


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_run_reads_rewritten_inputs(tmp_path, raster, workers):
    """Regression: a serial run kept its inputs open in this process, and the next run read the
    old pixels through the stale handle after the file was rewritten."""
    path = raster("scene.tif", np.full(SHAPE, 1, "int16"))
    out = str(tmp_path / "out.tif")
    composite([path], out, "max", tile_size=16, workers=workers)
    raster("scene.tif", np.full(SHAPE, 7, "int16"))
    composite([path], out, "max", tile_size=16, workers=workers)
    data, _ = read_raster(out)
    assert (data == 7).all()


def test_pool_made_before_numba_threads_start_still_works(tmp_path, raster):
    """Regression: a LocalExecutor created while the process could fork, used after numba's
    (OpenMP) threads had started, forked its workers then and they died."""
    path = raster("scene.tif", np.arange(SHAPE[0] * SHAPE[1], dtype="int16").reshape(SHAPE))
    script = textwrap.dedent(f"""
        import numpy as np
        from tilewise.core.runtime.executor import LocalExecutor
        from tilewise.core.kernels.reducers import reduce_stack
        from tilewise.core.operations.composite import composite

        if __name__ == "__main__":
            with LocalExecutor(2) as ex:
                reduce_stack(np.ones((3, 5000), np.float32), "median")   # starts numba's threads
                composite([{path!r}], {str(tmp_path / 'out.tif')!r}, "max", tile_size=16, executor=ex)
            print("ok")
    """)
    # a cold cache: the workers compile, the case where numba's thread settings must agree
    env = dict(subprocess_env(), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"
    data, _ = read_raster(tmp_path / "out.tif")
    np.testing.assert_array_equal(data[0], np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE))


@pytest.mark.skipif(sys.platform == "win32", reason="forkserver")
def test_a_kept_pool_started_from_a_threaded_process_has_every_worker_loaded_before_its_first_run(tmp_path, raster):
    """The warm engine's process runs threads, so its kept pool uses forkserver, whose pool starts a worker
    only when no idle one is left: a later run with more tasks than the first waited for a new worker to
    start and load its kernels (issue 21: a second session run slower than the first). Every worker is
    started, its kernels loaded, when the pool is."""
    path = raster("scene.tif", np.arange(SHAPE[0] * SHAPE[1], dtype="int16").reshape(SHAPE))
    script = textwrap.dedent(f"""
        import threading, time
        from tilewise.core.runtime.executor import warm_workers, _start_method
        from tilewise.core.operations.composite import composite

        if __name__ == "__main__":
            threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
            with warm_workers(2) as kept:
                composite([{path!r}], {str(tmp_path / 'one.tif')!r}, "max")            # one tile
                first = kept.pids()
                composite([{path!r}], {str(tmp_path / 'many.tif')!r}, "max", tile_size=16)
                print(_start_method(), len(first), first == kept.pids())
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["forkserver", "2", "True"]

"""Scaling out on Dask: a real ``dask scheduler`` + ``dask worker`` processes on 127.0.0.1, and a
``LocalCluster`` for the Python API. Outputs must equal the local pool's exactly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from distributed import Client, LocalCluster

from tilewise.core import composite
from tilewise.core.operations.bandmath import bandmath
from tilewise.core.runtime.executor import DaskExecutor
from tilewise.core.operations.mosaic import mosaic

from support import as_output, build_stack, leftovers, numpy_reference, read_raster, subprocess_env
from servers import free_port


def tilewise_cli(*args, cwd, env=None, prelude=""):
    """``python -m tilewise ...`` in a separate process (``prelude``: Python run before the CLI)."""
    code = f"{prelude}\nimport sys\nfrom tilewise.core.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Twelve uint16 scenes of 400 x 500 with holes (nodata 65535)."""
    return build_stack(tmp_path_factory.mktemp("series"), "uint16", 65535, 12, height=400, width=500, seed=7)


@pytest.fixture(scope="module")
def local_median(series, tmp_path_factory):
    """The reference: the same median on the local process pool."""
    out = tmp_path_factory.mktemp("local") / "median.tif"
    report = composite(series.paths, str(out), tile_size=100, workers=2)
    assert report.workers == 2
    return out


def same_file(a, b) -> None:
    data_a, profile_a = read_raster(a)
    data_b, profile_b = read_raster(b)
    np.testing.assert_array_equal(data_a, data_b)
    assert profile_a == profile_b
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()          # the whole COG, byte for byte


def executed(cluster) -> dict:
    """Tasks each worker of the cluster has executed so far."""
    with Client(cluster.address, set_as_default=False) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


def test_cli_scheduler_gives_the_local_pool_output(dask_cluster, series, local_median, tmp_path):
    dask_cluster.ensure_workers()
    before = executed(dask_cluster)
    proc = tilewise_cli("composite", "--scheduler", dask_cluster.address, "--tile-size", "100", "-o", "dask.tif",
                        *series.paths, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"20 tiles of up to 100 x 100 pixels on 2 Dask worker thread(s) at {dask_cluster.address}" in proc.stderr
    assert re.search(r"dask\.tif: 500 x 400 x 1 bands, 20 tiles on 2 workers in", proc.stdout), proc.stdout
    same_file(tmp_path / "dask.tif", local_median)
    data, _ = read_raster(tmp_path / "dask.tif")
    np.testing.assert_array_equal(data, as_output(numpy_reference(series.stack, "median")))
    assert leftovers(tmp_path / "dask.tif") == [str(tmp_path / "dask.tif")]    # no work folder left
    # the 20 tiles were 20 tasks, shared by both worker processes
    after = executed(dask_cluster)
    ran = {w: after[w] - before.get(w, 0) for w in after}
    assert sum(ran.values()) == 20 and len(ran) == 2 and min(ran.values()) > 0, ran


def test_killing_a_dask_worker_mid_run_gives_the_same_output(dask_cluster, series, local_median, tmp_path):
    dask_cluster.ensure_workers()
    victim = dask_cluster.live_workers()[0]
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == total // 4 and victim.poll() is None:
            victim.send_signal(signal.SIGKILL)                 # tasks on it are lost: Dask reschedules them
            victim.wait(10)

    try:
        report = composite(series.paths, str(tmp_path / "dask.tif"), tile_size=50, scheduler=dask_cluster.address,
                           progress=progress)
        assert victim.returncode == -signal.SIGKILL
        assert report.tiles == 80 and seen == list(range(81))
        assert len(dask_cluster.live_workers()) == 1
    finally:
        dask_cluster.ensure_workers()
    composite(series.paths, str(tmp_path / "local.tif"), tile_size=50, workers=2)
    same_file(tmp_path / "dask.tif", tmp_path / "local.tif")
    data, _ = read_raster(tmp_path / "dask.tif")
    np.testing.assert_array_equal(data, read_raster(local_median)[0])


def test_python_api_with_a_local_cluster_client(series, local_median, tmp_path):
    a, b = series.paths[:2]
    bandmath({"A": (a, 1), "B": (b, 1)}, "B - A", str(tmp_path / "diff_local.tif"), workers=2, tile_size=100)
    mosaic([a, b], str(tmp_path / "mosaic_local.tif"), "median", tiled=True, workers=2, tile_size=100)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        report = composite(series.paths, str(tmp_path / "median.tif"), tile_size=100, executor=DaskExecutor(client))
        bandmath({"A": (a, 1), "B": (b, 1)}, "B - A", str(tmp_path / "diff.tif"), scheduler=client, tile_size=100)
        mosaic([a, b], str(tmp_path / "mosaic.tif"), "median", tiled=True, scheduler=cluster, tile_size=100)
        assert client.status == "running"                       # the caller's client is left open
    assert (report.workers, report.tiles) == (2, 20)
    same_file(tmp_path / "median.tif", local_median)
    same_file(tmp_path / "diff.tif", tmp_path / "diff_local.tif")
    same_file(tmp_path / "mosaic.tif", tmp_path / "mosaic_local.tif")


def test_unreachable_scheduler_is_one_clear_message(series, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"                  # nothing listens there
    proc = tilewise_cli("composite", "-q", "--scheduler", address, "-o", "out.tif", *series.paths[:3], cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"tilewise: error: Cannot reach the Dask scheduler at {address}: connection refused "
                     "(no scheduler listens there; start one with `dask scheduler`, or check the address)."], \
        proc.stderr
    assert leftovers(tmp_path / "out.tif") == []


BLOCK_DASK = "import sys\nsys.modules['distributed'] = None\nsys.modules['dask'] = None   # as if not installed"


def test_without_dask_a_scheduler_is_one_message_naming_the_package(series, tmp_path):
    proc = tilewise_cli("composite", "-q", "--scheduler", "tcp://127.0.0.1:8786", "-o", "out.tif",
                        *series.paths[:3], cwd=tmp_path, prelude=BLOCK_DASK)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "lacks the package 'distributed'" in lines[0]
    assert f'{os.path.normpath(sys.executable)} -m pip install "dask[distributed]"' in lines[0]
    assert leftovers(tmp_path / "out.tif") == []
    # Dask stays optional: the same Python without it runs locally
    proc = tilewise_cli("composite", "-q", "-j", "2", "--tile-size", "100", "-o", "local.tif", *series.paths,
                        cwd=tmp_path, prelude=BLOCK_DASK)
    assert proc.returncode == 0, proc.stderr
    data, _ = read_raster(tmp_path / "local.tif")
    np.testing.assert_array_equal(data, as_output(numpy_reference(series.stack, "median")))


def test_importing_the_engine_does_not_import_dask(tmp_path):
    script = textwrap.dedent("""
        import sys
        import tilewise.core.cli, tilewise.core.runtime.runner
        import tilewise.core.operations.composite, tilewise.core.runtime.executor
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

"""Tiles as tasks on a Dask distributed cluster (optional: needs ``dask[distributed]``).

The same :class:`~tilewise.core.runtime.executor.Executor` interface as the local pool:
results come back as tiles complete, and only a bounded number of tasks is in
flight (twice the cluster's worker threads), so memory stays bounded by the
tile size. A task carries plain values only (the job: paths, URLs, the grid; a
tile window; the tile file's path), never an open dataset. The GDAL
configuration of the submitting process (``GDAL_*``, ``CPL_*``, ``VSI_*``,
``AWS_*``... environment variables and an active ``rasterio.Env``) is captured
once per run and applied inside every task, so remote inputs are read on the
workers with the same HTTP options and credentials. Tile files go to the run's
work folder, which the workers must see at the same path (a shared file system);
the COG is then assembled by the submitting process.

Any cluster works through its scheduler: ``dask scheduler`` + ``dask worker``,
a ``LocalCluster``, dask-jobqueue's ``SLURMCluster``/``PBSCluster``,
dask-kubernetes' ``KubeCluster``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

from ..errors import ClusterError, WorkerError
from .executor_base import Executor, cpu_count

log = logging.getLogger(__name__)

#: Environment variables that configure GDAL and its network file systems.
CONFIG_PREFIXES = ("GDAL_", "CPL_", "VSI_", "AWS_", "GS_", "GOOGLE_", "AZURE_", "OSS_", "SWIFT_",
                   "WEBHDFS_", "OGR_", "GTIFF_")
#: Paths of this machine's installation: a worker has its own.
NOT_CAPTURED = frozenset({"GDAL_DATA", "GDAL_DRIVER_PATH", "GDAL_PYTHON_DRIVER_PATH", "GDAL_CONFIG_FILE"})

CONNECT_TIMEOUT = 10.0
INSTALL_HINT = 'python -m pip install "dask[distributed]"'


def import_distributed():
    """The ``distributed`` module, or a :class:`ClusterError` naming the package and the install command."""
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(
            f"A Dask scheduler was given, but the engine's Python ({sys.executable}) lacks the package "
            f"'distributed' (Dask distributed: {exc}). Install it with: "
            f"{INSTALL_HINT.replace('python', sys.executable, 1)}") from None
    return distributed


def capture_gdal_config() -> Dict[str, str]:
    """GDAL configuration of this process: matching environment variables, then the options of an
    active ``rasterio.Env`` (which win, as they do in GDAL)."""
    config = {k: v for k, v in os.environ.items() if k.startswith(CONFIG_PREFIXES) and k not in NOT_CAPTURED}
    env = sys.modules.get("rasterio.env")
    if env is not None and env.hasenv():
        for key, value in env.getenv().items():
            if key not in NOT_CAPTURED and isinstance(value, (str, int, float, bool)):
                config[key] = ("ON" if value else "OFF") if isinstance(value, bool) else str(value)
    return config


_APPLIED_LOCK = threading.Lock()
_APPLIED: Dict[str, Optional[str]] = {}   # key -> the worker's own value before a run's config replaced it


def apply_gdal_config(config: Dict[str, str]) -> None:
    """Make ``config`` this worker's GDAL configuration, undoing keys an earlier run set and this one does not.

    Environment variables, because GDAL reads them at every request (a
    ``rasterio.Env`` would end with the task while its datasets stay cached).
    """
    with _APPLIED_LOCK:
        for key in [k for k in _APPLIED if k not in config]:
            original = _APPLIED.pop(key)
            if original is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = original
        for key, value in config.items():
            if os.environ.get(key) != value:
                _APPLIED.setdefault(key, os.environ.get(key))
                os.environ[key] = value


def run_task(fn: Callable[..., Any], config: Dict[str, str], *args: Any) -> Any:
    """What a Dask worker runs for one tile: the submitter's GDAL configuration, then ``fn(*args)``."""
    apply_gdal_config(config)
    _share_cores()
    return fn(*args)


def _share_cores() -> None:
    # numba's thread pool would use every core in every worker thread: split the cores instead
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        from distributed import get_worker
        threads = get_worker().state.nthreads
    except Exception:  # noqa: BLE001 - not on a worker (e.g. called directly)
        log.debug("Not on a Dask worker: numba's threads left as they are", exc_info=True)
        return
    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, cpu_count() // max(1, threads))))


def close_worker_datasets() -> None:
    """Close the datasets a worker process keeps open between tiles (run on every worker at the end)."""
    from ..io.sources import close_all
    close_all()


class DaskExecutor(Executor):
    """Runs tiles as tasks of a ``dask.distributed.Client``.

    Parameters
    ----------
    client : dask.distributed.Client
        A connected client; it is left open by :meth:`close` (it belongs to the caller).
        :meth:`connect` makes one from an address or a cluster and closes it afterwards.

    Examples
    --------
    >>> from dask.distributed import Client                        # doctest: +SKIP
    >>> with Client("tcp://scheduler:8786") as client:             # doctest: +SKIP
    ...     composite(paths, "median.tif", executor=DaskExecutor(client))
    """

    def __init__(self, client: Any, *, own_client: bool = False) -> None:
        self.client = client
        self._own = own_client
        self.address = str(getattr(getattr(client, "scheduler", None), "address", "") or "")
        self._threads_seen = 0.0
        self.threads = self._threads()
        self.workers = max(1, self.threads)

    @classmethod
    def connect(cls, scheduler: Any, timeout: float = CONNECT_TIMEOUT) -> "DaskExecutor":
        """An executor from a scheduler address (``tcp://host:8786``), a scheduler file (JSON, as
        written by ``dask scheduler --scheduler-file``), a ``Client`` or a cluster object."""
        distributed = import_distributed()
        if hasattr(scheduler, "submit") and hasattr(scheduler, "nthreads"):
            return cls(scheduler)
        if hasattr(scheduler, "scheduler_address"):             # LocalCluster, SLURMCluster, KubeCluster...
            return cls(distributed.Client(scheduler, set_as_default=False), own_client=True)
        address = str(scheduler).strip()
        if os.path.isfile(address):
            return cls(_client(distributed, address, timeout, scheduler_file=address), own_client=True)
        _probe(distributed, address, timeout)
        return cls(_client(distributed, address, timeout), own_client=True)

    def describe(self) -> str:
        where = f" at {self.address}" if self.address else ""
        if not self.threads:
            return f"the Dask cluster{where}, which has no worker yet (the tiles wait for workers to join)"
        return f"{self.threads} Dask worker thread(s){where}"

    def _threads(self) -> int:
        try:
            return sum(self.client.nthreads().values())
        except Exception as exc:
            raise ClusterError(f"Lost the connection to the Dask scheduler {self.address}: {exc}") from exc

    def _limit(self) -> int:
        # workers may join (adaptive clusters, a queue that starts jobs late): look again now and then
        if time.monotonic() - self._threads_seen > 2.0:
            self._threads_seen = time.monotonic()
            self.threads = self._threads()
            self.workers = max(1, self.threads)
        return 2 * self.workers

    def check_workdir(self, workdir: str) -> None:
        try:
            seen = self.client.run(os.path.isdir, workdir)
        except Exception as exc:
            raise ClusterError(f"The Dask workers at {self.address} did not answer: {exc}") from exc
        blind = sorted(w for w, ok in seen.items() if not ok)
        if blind:
            raise ClusterError(
                f"The Dask worker(s) {', '.join(blind)} cannot see the work folder {workdir}. Tiles are written "
                "beside the output: put the output on a file system the workers share, at the same path.")

    def run(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[Any]:
        from distributed import as_completed
        config = capture_gdal_config()
        token = uuid.uuid4().hex[:12]
        todo = iter(enumerate(tasks))
        running = as_completed(loop=self.client.loop)
        in_flight = set()

        def submit() -> bool:
            item = next(todo, None)
            if item is None:
                return False
            i, args = item
            fut = self.client.submit(run_task, fn, config, *args, key=f"tilewise-tile-{token}-{i}", pure=False)
            in_flight.add(fut)
            running.add(fut)
            return True

        try:
            while len(in_flight) < self._limit() and submit():
                pass
            for fut in running:
                in_flight.discard(fut)
                yield _result(fut, self.address)
                while len(in_flight) < self._limit() and submit():
                    pass
        finally:
            if in_flight:
                try:
                    self.client.cancel(list(in_flight))
                except Exception:  # noqa: BLE001 - the connection is gone: the scheduler forgets them by itself
                    log.debug("The unfinished tiles were not cancelled on %s", self.address, exc_info=True)

    def release(self) -> None:
        """Close the datasets the workers keep open (inputs may be rewritten or locked)."""
        try:
            self.client.run(close_worker_datasets)
        except Exception:  # noqa: BLE001 - a worker gone keeps no dataset open
            log.debug("The Dask workers at %s did not close their datasets", self.address, exc_info=True)

    def close(self) -> None:
        if self._own and self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None


def _result(fut: Any, address: str) -> Any:
    from concurrent.futures import CancelledError
    from distributed import KilledWorker
    from distributed.comm import CommClosedError
    try:
        return fut.result()
    except KilledWorker as exc:
        raise WorkerError(f"Dask workers died while computing a tile, several times ({exc}); the tile is "
                          "probably too large for a worker's memory. Try a smaller tile size.") from None
    except ImportError as exc:
        if "tilewise" in str(exc):
            raise ClusterError(f"The Dask workers at {address} cannot import tilewise ({exc}). Install it, with "
                               "its dependencies, in the workers' Python: pip install 'tilewise[dask]'.") from None
        raise
    except (CancelledError, CommClosedError) as exc:     # the scheduler went away (or cancelled the task)
        reason = " ".join(str(exc).split())
        raise ClusterError(f"Lost the Dask scheduler at {address} during the run ({reason}).") from None


def _client(distributed, address: str, timeout: float, **kwargs: Any) -> Any:
    target = kwargs.get("scheduler_file") or address
    try:
        if kwargs:
            return distributed.Client(timeout=timeout, set_as_default=False, **kwargs)
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"Cannot connect to the Dask scheduler at {target}: {exc}") from None


def _probe(distributed, address: str, timeout: float) -> None:
    """Fail at once, with a plain message, on an address nothing listens at (Dask would retry until its
    timeout and then report a generic time-out)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        scheme, location = parse_address(address)
    except ValueError as exc:
        raise ClusterError(f"Not a Dask scheduler address: {address!r} ({exc}); e.g. tcp://host:8786.") from None
    if scheme not in ("tcp", "tls"):
        return
    try:
        host, port = parse_host_port(location, default_port=8786)
    except ValueError as exc:
        raise ClusterError(f"Not a Dask scheduler address: {address!r} ({exc}); e.g. tcp://host:8786.") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror:
        raise ClusterError(f"Cannot reach the Dask scheduler at {address}: unknown host {host}.") from None
    except ConnectionRefusedError:
        raise ClusterError(f"Cannot reach the Dask scheduler at {address}: connection refused (no scheduler "
                           "listens there; start one with `dask scheduler`, or check the address).") from None
    except OSError as exc:
        raise ClusterError(f"Cannot reach the Dask scheduler at {address}: {exc.strerror or exc}.") from None

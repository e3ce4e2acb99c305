"""The executor seam: how tile tasks are run.

Every engine operation hands its tile tasks to an :class:`Executor` and
consumes results as they complete. :class:`SerialExecutor` runs them in this
process; :class:`LocalExecutor` runs them in a pool of worker processes;
:class:`~tilewise.core.runtime.dask_executor.DaskExecutor` runs them as tasks on a
Dask distributed cluster (imported only when asked for: Dask is optional).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from ..errors import WorkerError
from ..options import RunOptions, check_workers
from .executor_base import Executor, SerialExecutor, cpu_count
from ..jitconfig import limit_threads, threads_started
from ..logs import detach
from .lifeline import die_with_parent

log = logging.getLogger(__name__)


def resolve_workers(workers: Optional[int]) -> int:
    """How many local worker processes to run: ``None`` or ``0`` means all cores, and more than
    the cores are capped at the cores (more processes would only compete for them, each with
    its own tile in memory). A negative number is an error.

    >>> resolve_workers(10 ** 6) == resolve_workers(None) == cpu_count()
    True
    """
    workers = check_workers(workers)
    return cpu_count() if workers is None else min(workers, cpu_count())


def workers_note(asked: Optional[int], used: int, tiles: Optional[int] = None) -> Optional[str]:
    """A line for the log when fewer local workers run than were asked for, saying why.

    >>> workers_note(1000, cpu_count(), 500) == f"1000 workers were asked for; using {cpu_count()}: " \\
    ...     f"this machine has {cpu_count()} cores"
    True
    >>> workers_note(1, 1, 3) is None
    True
    """
    if not asked or asked <= used:
        return None
    reasons = []
    if asked > cpu_count():
        reasons.append(f"this machine has {cpu_count()} cores")
    if tiles is not None and used < min(asked, cpu_count()):
        reasons.append(f"the run has {tiles} tile{'s' if tiles != 1 else ''} to compute")
    return f"{asked} workers were asked for; using {used}: {' and '.join(reasons)}"


def _init_worker(numba_threads: int, preload: bool = False) -> None:
    die_with_parent()
    detach()
    limit_gdal_cache()
    # One numba thread per process: the processes already fill the cores, and
    # more threads only oversubscribe them.
    limit_threads(numba_threads)
    if preload:  # a kept worker: its kernels loaded now, not in the first tile that needs each
        try:
            from .preload import preload
            preload()
        except Exception:  # noqa: BLE001 - a run compiles or loads what it needs anyway
            log.debug("Preloading the kernels in a worker failed", exc_info=True)


class LocalExecutor(Executor):
    """A pool of worker processes on this machine.

    At most ``2 * workers`` tasks are in flight, so memory stays bounded by the
    tile size whatever the number of tiles. A worker that dies (crash, out of
    memory, killed) becomes a :class:`WorkerError`.
    """

    in_flight = 2       # tasks submitted per worker at a time
    #: seconds a stopped or failed run waits for its running tasks before it kills the workers
    settle_seconds = 3.0

    def __init__(self, workers: int, preload: bool = False) -> None:
        self.workers = max(1, workers)
        ctx = multiprocessing.get_context(_start_method())
        threads = max(1, cpu_count() // self.workers)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(threads, preload))
        # Start every worker now, and wait until each has run its initializer: with fork, while it is
        # safe (later this process may run numba's OpenMP threads, and forked children die); with
        # forkserver or spawn, so that a kept pool's workers have loaded their kernels before the first
        # run (the pool starts a worker only when no idle one is left, so a later run with more tasks
        # would wait for a new worker's loading). One task per worker, all submitted before any ends.
        for started in [self._pool.submit(os.getpid) for _ in range(self.workers)]:
            started.result()

    def run(self, fn: Callable[..., Any], tasks: Iterable[tuple], limit: Optional[int] = None) -> Iterator[Any]:
        pending: set = set()
        order: dict = {}        # task -> its place in ``tasks``
        places = itertools.count()
        todo: Iterable[tuple] = iter(tasks)
        limit = limit or self.in_flight * self.workers
        try:
            while True:
                for args in todo:
                    fut = self._pool.submit(fn, *args)
                    order[fut] = next(places)
                    pending.add(fut)
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                # tasks that ended together in their own order: of several failed tiles, the first is
                # reported (a worker's later tiles of a file GDAL gave up fail at once, and with less said)
                for fut in sorted(done, key=order.pop):
                    yield _result(fut)
        except BrokenProcessPool as exc:
            raise WorkerError("A Tilewise worker process died (crashed, ran out of memory or was killed). "
                              "Nothing was written. Try a smaller tile size or fewer workers.") from exc
        finally:
            self._settle([fut for fut in pending if not fut.cancel()])

    def _settle(self, running: Sequence[Future]) -> None:
        """Let the tasks already running end (they cannot be stopped otherwise) before the caller
        removes the work folder they write into; those still running after :attr:`settle_seconds`
        (blocked on a server that does not answer, say) are stopped by killing the workers. If the
        pool breaks meanwhile (its workers killed by the signal that stops the run, as `timeout`
        sends to the whole group), the futures may never complete: CPython 3.11's pool dies marking
        a cancelled one failed. Then wait for the workers themselves instead."""
        deadline = time.monotonic() + self.settle_seconds
        while running:
            _, running = wait(running, timeout=0.2)
            if running and time.monotonic() > deadline:
                self.kill_workers()
                return
            if running and getattr(self._pool, "_broken", False):
                for process in self._processes():
                    process.join(5)
                return

    def _processes(self) -> list:
        return list((getattr(self._pool, "_processes", None) or {}).values())

    def kill_workers(self) -> None:
        """Kill the worker processes at once (SIGKILL: one blocked inside GDAL would not run a signal
        handler); the pool is broken afterwards (a kept pool is replaced by its next lease)."""
        # CPython 3.11's broken pool sets an exception on every task it still holds, and dies with a
        # traceback on one that was cancelled: give those a future of their own that nobody waits for
        for item in list((getattr(self._pool, "_pending_work_items", None) or {}).values()):
            if item.future.cancelled():
                item.future = Future()
        for process in self._processes():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.kill()
        for process in self._processes():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.join(5)
        # the pool's own thread marks it broken once it sees them dead: wait (briefly) for it, so that
        # whoever looks next (a kept pool's next lease) finds it broken
        deadline = time.monotonic() + 5
        while not getattr(self._pool, "_broken", False) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class WarmWorkers:
    """One pool of worker processes kept between runs (:func:`warm_workers`), with their
    imported modules and loaded kernels. Each run leases it (:class:`PoolLease`); what a
    worker holds for one run (open datasets) is dropped before it serves the next."""

    def __init__(self, workers: Optional[int] = None) -> None:
        self.workers = resolve_workers(workers)
        self.pool: Optional[LocalExecutor] = None
        self._runs = itertools.count(1)

    def lease(self, workers: int) -> Executor:
        """The pool for one run of ``workers`` (at most the pool's own), started or replaced
        if it is not running (a worker died in an earlier run)."""
        if self.pool is None or self.broken:
            self.discard()
            self.pool = LocalExecutor(self.workers, preload=True)
        return PoolLease(self.pool, min(max(1, workers), self.workers), next(self._runs))

    @property
    def broken(self) -> bool:
        return self.pool is not None and bool(getattr(self.pool._pool, "_broken", False))

    def pids(self) -> list:
        """The worker processes' ids (empty before the first run)."""
        procs = getattr(self.pool._pool, "_processes", None) if self.pool else None
        return sorted((procs or {}).keys())

    def discard(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            if getattr(pool._pool, "_broken", False):  # its workers are dead or dying: do not wait for them
                pool._pool.shutdown(wait=False, cancel_futures=True)
            else:
                pool.close()


class PoolLease(Executor):
    """A run's use of :class:`WarmWorkers`: at most ``workers`` of its processes busy (with a
    lease of fewer workers than the pool, one task each), every task tagged with the run, and
    :meth:`close` leaves the pool running."""

    def __init__(self, pool: LocalExecutor, workers: int, run_id: int) -> None:
        self.pool, self.workers, self.run_id = pool, workers, run_id

    def run(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[Any]:
        limit = self.pool.in_flight * self.workers if self.workers >= self.pool.workers else self.workers
        return self.pool.run(_in_run, ((self.run_id, fn, args) for args in tasks), limit=limit)


_WORKER_RUN = [0]


def _in_run(run_id: int, fn: Callable[..., Any], args: tuple) -> Any:
    """A task of run ``run_id`` in a kept worker: the datasets an earlier run left open are closed
    first (a file rewritten since must be read anew, and no run reads through another's handles)."""
    if _WORKER_RUN[0] != run_id:
        from ..io.sources import close_all
        close_all()
        _WORKER_RUN[0] = run_id
    return fn(*args)


_WARM: List[WarmWorkers] = []


@contextlib.contextmanager
def warm_workers(workers: Optional[int] = None) -> Iterator[WarmWorkers]:
    """Within the block, every local run uses one pool of ``workers`` processes (all cores by
    default) kept between runs, instead of starting its own: the second and later runs skip the
    workers' start and numba's loading of the kernels. The engine's warm process serves QGIS
    this way; in Python::

        with warm_workers():
            for scenes in batches:
                composite(scenes, ...)
    """
    kept = WarmWorkers(workers)
    _WARM.append(kept)
    try:
        yield kept
    finally:
        _WARM.remove(kept)
        kept.discard()


def limit_gdal_cache(megabytes: int = 64) -> None:
    """Cap GDAL's block cache (5 % of RAM per process by default): tiles are read once,
    so a large cache only makes memory grow with the data. A user's setting wins."""
    os.environ.setdefault("GDAL_CACHEMAX", str(megabytes))


def _start_method() -> str:
    # fork on Linux while this process runs a single thread and numba has not
    # started its thread pool: fast, and a script without an
    # ``if __name__ == "__main__"`` guard works as long as it does not run a
    # serial job (numba threads) before a parallel one. Otherwise the safe
    # methods (forking a threaded process can deadlock or abort).
    if sys.platform.startswith("linux") and threading.active_count() == 1 and not threads_started():
        return "fork"
    return "spawn" if sys.platform == "win32" else "forkserver"


def _result(fut: Future) -> Any:
    return fut.result()


def connect(run: RunOptions) -> Optional[Executor]:
    """The executor ``run`` names, the one place where ``executor``, ``scheduler`` and ``workers`` are
    resolved: the executor given (a ``dask.distributed.Client`` wrapped), else a Dask cluster at the
    scheduler, else None: local workers, made by :func:`local_executor` once the tiles are known."""
    if run.executor is not None:
        return as_executor(run.executor)
    if run.scheduler is not None:
        return make_executor(scheduler=run.scheduler)
    return None


def local_executor(run: RunOptions, tiles: int, warm: Optional[Callable[[], None]] = None) -> Executor:
    """``run.workers`` local workers (all cores by default), never more than the ``tiles`` to compute;
    the log says why when fewer run than were asked for. ``warm()`` runs first when a new pool is
    about to be forked from this process (see :meth:`.runner.TiledJob.warm`)."""
    n_workers = min(resolve_workers(run.workers), max(1, tiles))
    note = workers_note(run.workers, n_workers, tiles)
    if note:
        log.info(note)
    if warm is not None and forks_pool(n_workers):
        warm()
    return make_executor(n_workers)


def forks_pool(workers: int) -> bool:
    """True when :func:`make_executor` would fork a new pool of ``workers`` from this process: not
    inside :func:`warm_workers` (its kept workers are preloaded, and the warm engine's own process
    loads no kernel), not for one worker (serial), not with the spawn or forkserver start methods."""
    return not _WARM and resolve_workers(workers) > 1 and _start_method() == "fork"


def make_executor(workers: Optional[int] = None, scheduler: Any = None) -> Executor:
    """The executor for a run.

    With ``scheduler`` (a Dask scheduler address such as ``tcp://host:8786``, a
    ``dask.distributed.Client`` or a cluster object) the tiles run on that Dask
    cluster; otherwise serially for one worker, in a local process pool for more.
    """
    if scheduler is not None and scheduler != "":
        from .dask_executor import DaskExecutor
        return DaskExecutor.connect(scheduler)
    n = resolve_workers(workers)
    if _WARM:  # inside warm_workers(): the kept pool, even for one worker (its kernels are loaded)
        return _WARM[-1].lease(n)
    return SerialExecutor() if n == 1 else LocalExecutor(n)


def as_executor(value: Any) -> Executor:
    """An :class:`Executor` as it is, or a ``dask.distributed.Client`` wrapped (not closed afterwards)."""
    if isinstance(value, Executor):
        return value
    if hasattr(value, "submit") and hasattr(value, "nthreads"):
        from .dask_executor import DaskExecutor
        return DaskExecutor(value)
    raise TypeError(f"Not an executor or a dask.distributed.Client: {value!r}")


__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "cpu_count", "resolve_workers", "workers_note", "connect",
           "local_executor", "forks_pool", "make_executor", "as_executor", "limit_gdal_cache", "warm_workers",
           "WarmWorkers", "PoolLease"]


def __getattr__(name: str) -> Any:
    # ``from tilewise.core.runtime.executor import DaskExecutor`` without importing Dask for everyone else
    if name == "DaskExecutor":
        from .dask_executor import DaskExecutor
        return DaskExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

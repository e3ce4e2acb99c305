"""Compiling every kernel into numba's cache before the first run.

A cold cache costs the first run the kernels' compile time (seconds per kernel,
in every worker). ``tilewise:setupengine`` and ``make deps`` call
:func:`warmup` (the driver's ``warmup`` operation, or
``python -m tilewise.core.runtime.driver --warm``), so that the first real run loads
them from the cache like any later one. The kernels compile in worker processes,
the way runs use them; this process does not import numba.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..kernels.statistics import WARM_GROUPS
from ..runtime.executor import as_executor, make_executor, resolve_workers
from ..jitconfig import configure_cache, warm_stamp
from ..logs import log_option

log = logging.getLogger(__name__)


@dataclass
class WarmReport:
    """What :func:`warmup` did: specializations ``compiled`` and ``loaded`` from ``cache``."""

    cache: Optional[str]
    compiled: int
    loaded: int
    seconds: float
    workers: int

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def warm_group(group: str) -> Tuple[str, Optional[str], int, int]:
    """One task: ``(group, cache folder, compiled, loaded)`` for the kernels of ``group``."""
    from ..runtime.preload import load_group  # numba loads in the worker, as for a run
    from ..kernels.reducers import CACHE_DIR
    compiled, loaded = load_group(group)
    return group, CACHE_DIR, compiled, loaded


def _mark_warm(cache: str) -> None:
    try:
        with open(warm_stamp(cache), "w", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    except OSError:
        pass


@log_option
def warmup(workers: Optional[int] = None, executor=None,
               progress: Optional[Callable[[int, int], None]] = None,
               log: Optional[Callable[[str], None]] = None) -> WarmReport:
    """Compile every kernel specialization the engine uses into numba's cache (or find it there).

    Parameters
    ----------
    workers : int, optional
        Processes compiling at once (at most one per kernel group); by default all cores.
    executor : optional
        Compile there instead (an executor or a ``dask.distributed.Client``).
    progress, log : callables, optional
        ``progress(done, total)`` per kernel group; ``log(message)``: the log lines (see
        :mod:`tilewise.core.logs`).
    """
    return _warm(workers, executor, progress)


def _warm(workers: Optional[int], executor, progress: Optional[Callable[[int, int], None]]) -> WarmReport:
    t0 = time.perf_counter()
    cache = configure_cache()
    log.info(f"numba cache: {cache}" if cache else "numba cache: none writable (kernels compile on every run)")
    own = executor is None
    ex = make_executor(min(len(WARM_GROUPS), resolve_workers(workers))) if own else as_executor(executor)
    compiled = loaded = 0
    try:
        if progress:
            progress(0, len(WARM_GROUPS))
        for done, (group, where, n_compiled, n_loaded) in enumerate(
                ex.run(warm_group, [(g,) for g in WARM_GROUPS]), start=1):
            compiled += n_compiled
            loaded += n_loaded
            cache = cache or where
            log.info(f"{group}: {n_compiled} compiled, {n_loaded} loaded from the cache")
            if progress:
                progress(done, len(WARM_GROUPS))
        if cache and own:
            _mark_warm(cache)
    finally:
        if own:
            ex.close()
    return WarmReport(cache, compiled, loaded, time.perf_counter() - t0, ex.workers)

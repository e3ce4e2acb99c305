"""The warm engine: one engine process that serves job after job,
``python -m tilewise.core.runtime.driver --serve IDLE``.

The QGIS plugin keeps it between runs (see ``algorithms/warm_engine.py``), so a run skips the
interpreter's start, the imports and the worker processes' start and kernel loading, which a
cold engine pays every time. Jobs come on stdin, one JSON object per line (the job file of the
cold driver: ``{"operation": ..., "params": {...}}``). For each, the server answers on stdout with
``{"event": "accepted"}``, then the cold driver's events, ending with the job's ``done`` or
``error`` event; then it waits for the next job.

Its worker pool (:func:`~tilewise.core.runtime.executor.warm_workers`, all cores) is started before
the first job and kept. No run sees another's state: each job runs with the same code as a cold
one, its options from its own parameters, and every worker drops what it held for an earlier run
(open datasets) before its first task of a new one.

The server ends (exit code 0) when its stdin closes (QGIS is gone or let it go), after ``IDLE``
seconds without a job, and after a run in which a worker died (the next run gets a new engine;
a dying parent's SIGTERM (see :func:`~.lifeline.die_with_parent`) ends it too. It never runs two
jobs at a time: a caller that wants a second one while it is busy starts a cold engine.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Callable, Optional

from ..vocabulary import EVENT_ACCEPTED, EVENT_ERROR
from ..io.network import forget_given_up
from .lifeline import stop_on_signals


def _read_jobs(stream, jobs: "queue.Queue[Optional[str]]") -> None:
    for line in stream:
        if line.strip():
            jobs.put(line)
    jobs.put(None)


def serve(idle_seconds: float, run_reported: Callable[[dict, float], int], emit: Callable[..., None],
          stdin=None) -> int:
    """Serve jobs from ``stdin`` until it closes, ``idle_seconds`` pass without one, or the pool breaks;
    the driver's ``run_reported(job, started)`` runs each and ``emit`` reports."""
    from .executor import warm_workers
    with warm_workers() as kept, stop_on_signals():
        kept.lease(kept.workers)  # fork the workers now, while this process runs one thread
        jobs: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=_read_jobs, args=(stdin or sys.stdin, jobs), name="tilewise-jobs",
                         daemon=True).start()
        try:
            while True:
                try:
                    line = jobs.get(timeout=idle_seconds if idle_seconds > 0 else None)
                except queue.Empty:
                    return 0            # idle: the caller starts a new engine when it needs one
                if line is None:
                    return 0            # the caller is gone
                started = time.perf_counter()
                emit(EVENT_ACCEPTED)
                try:
                    job = json.loads(line)
                except ValueError as exc:
                    emit(EVENT_ERROR, kind="ParameterError", message=f"Not a job: {exc}")
                    continue
                forget_given_up()       # a server that was silent in an earlier job is asked again
                code = run_reported(job, started)
                if code > 128 or kept.broken:  # stopped by a signal, or a worker died: end, and be replaced
                    return 0 if kept.broken else code
        except KeyboardInterrupt as exc:      # SIGTERM / SIGHUP between jobs
            return 128 + getattr(exc, "signum", 2)

"""The engine process that the QGIS plugin starts: ``python -m tilewise.core.runtime.driver JOB.json``.

It reads a job (operation + keyword arguments of the Python API, e.g. ``inputs``,
``output``, ``workers``, and for scaling out ``scheduler`` (a Dask scheduler address)
and ``resume``), runs it and reports on stdout, one JSON object per line:

``{"event": "progress", "done": 3, "total": 12}``, ``{"event": "log", "message": ...}``,
``{"event": "done", "report": {...}}``, ``{"event": "error", "kind": ..., "message": ...}``,
``{"event": "missing", "packages": [...], "python": ...}``.

Exit codes: 0 done, 2 a user-facing error, 3 missing packages, 128 + N stopped by
signal N (SIGTERM, SIGHUP: also sent when the process that started the engine
dies), 1 anything else. ``--serve IDLE_SECONDS`` serves jobs from stdin, one per line, until stdin
closes or it has been idle that long: the warm engine (:mod:`.server`). ``--check`` only reports which
required packages are missing (importing each, so a broken install counts as missing). ``--warm`` runs the
``warmup`` operation: every kernel compiled into numba's cache (see :mod:`tilewise.core.operations.warmup`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any, Dict

from .. import missing_packages
from ..logs import lines_to, log_cause
from ..vocabulary import (EVENT_DONE, EVENT_ERROR, EVENT_LOG, EVENT_MISSING, EVENT_OK, EVENT_PROGRESS,
                          REQUIRED_PACKAGES, STOPPED)
from .lifeline import die_with_parent, stop_on_signals, watch_stdin
from ..phases import merge

_STARTED = time.perf_counter()  # as this module loads: the interpreter's own start is the caller's to time


def emit(event: str, **fields: Any) -> None:
    try:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the caller is gone (it died, hence this run stopping): nobody to tell
        pass


def emit_log(line: str) -> None:
    """A line of the engine's log (:mod:`tilewise.core.logs`) for the caller: a ``log`` event."""
    emit(EVENT_LOG, message=line)


def use_wheel_data() -> None:
    """A rasterio wheel carries its own GDAL and PROJ data; make sure a host
    application's GDAL_DATA / PROJ_LIB (e.g. QGIS's) do not point it elsewhere."""
    import importlib.util
    spec = importlib.util.find_spec("rasterio")
    if spec is None or not spec.origin:
        return
    root = os.path.dirname(spec.origin)
    proj = os.path.join(root, "proj_data")
    gdal = os.path.join(root, "gdal_data")
    if os.path.isdir(proj):
        os.environ["PROJ_DATA"] = os.environ["PROJ_LIB"] = proj
    if os.path.isdir(gdal):
        os.environ["GDAL_DATA"] = gdal


def report_dict(result: Any) -> Dict[str, Any]:
    """One report for the caller; an operation that wrote several files lists them in ``outputs``."""
    if not isinstance(result, list):
        return result.to_dict()
    first = result[0].to_dict()
    first.update(outputs=[r.output for r in result], tiles=sum(r.tiles for r in result),
                 seconds=sum(r.seconds for r in result), bands=sum(r.bands for r in result),
                 phases=merge(*(r.phases for r in result)), tile_seconds=merge(*(r.tile_seconds for r in result)))
    return first


def timed_report(result: Any, called: float, started: float = _STARTED) -> Dict[str, Any]:
    """:func:`report_dict` with the engine's own phases: ``engine start`` (from this module's import to the
    operation's call) and the operation's planning before its runs; ``engine_seconds``: this process's
    time so far (the caller adds the interpreter's start and its own side)."""
    report = report_dict(result)
    now = time.perf_counter()
    phases = report.setdefault("phases", {})
    before_runs = now - called - float(report.get("seconds", 0.0))
    report["phases"] = merge(phases, {"engine start": called - started, "planning": max(before_runs, 0.0)})
    report["engine_seconds"] = round(now - started, 4)
    return report


def run_job(job: Dict[str, Any], started: float = _STARTED) -> int:
    """Run one job, reporting on stdout; its exit code (see the module's doc). ``started``: when the
    engine began on it (this module's import for a cold engine, the job's arrival for a warm one)."""
    from ..errors import TilewiseError
    from ..registry import api_function
    from .lifeline import stopped_by
    try:
        function = api_function(str(job.get("operation")))
    except TilewiseError as exc:
        emit(EVENT_ERROR, kind=type(exc).__name__, message=str(exc))
        return 2
    params = dict(job.get("params", {}))
    last = [-1]

    def progress(done: int, total: int) -> None:
        if done != last[0]:
            last[0] = done
            emit(EVENT_PROGRESS, done=done, total=total)

    called = time.perf_counter()
    with lines_to(emit_log, logging.DEBUG if os.environ.get("TILEWISE_DEBUG") else logging.INFO):
        try:
            report = function(progress=progress, **params)
        except TilewiseError as exc:
            log_cause(exc)
            emit(EVENT_ERROR, kind=type(exc).__name__, message=str(exc))
            return 2
        except MemoryError:
            emit(EVENT_ERROR, kind="MemoryError",
                 message="The engine ran out of memory; use a smaller tile size or fewer workers.")
            return 2
        except KeyboardInterrupt as exc:  # SIGTERM, SIGHUP (see stop_on_signals) or SIGINT: cleaned up like a cancel
            how = stopped_by(exc) or "a signal"
            emit(EVENT_ERROR, kind=STOPPED, message=f"The Tilewise engine was stopped ({how}); no output was written.")
            return 128 + getattr(exc, "signum", signal.SIGINT)
    emit(EVENT_DONE, report=timed_report(report, called, started))
    return 0


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # SIGTERM, not SIGKILL, when the caller dies (qgis_process stopped by `timeout`, QGIS
    # crashing): the run removes its work folder (or keeps its tiles to resume) and ends
    serving = len(args) == 2 and args[0] == "--serve"
    # (a warm engine reads its jobs from stdin and ends when it closes: see .server)
    if not die_with_parent(signal.SIGTERM) and "--check" not in args and not serving:
        watch_stdin()
    # Looked for, not imported: numba must not load in this process before it starts its workers.
    missing = missing_packages(load="--check" in args)
    if "--check" in args or missing:
        emit(EVENT_MISSING if missing else EVENT_OK, packages=missing, required=list(REQUIRED_PACKAGES),
             python=sys.executable, version=sys.version.split()[0])
        return 3 if missing else 0
    if args != ["--warm"] and not serving and (len(args) != 1 or args[0].startswith("--")):
        emit(EVENT_ERROR, kind="ParameterError",
             message="usage: python -m tilewise.core.runtime.driver JOB.json | --check | --warm | --serve IDLE_SECONDS")
        return 2
    use_wheel_data()
    from .executor import limit_gdal_cache
    from ..jitconfig import configure_cache, skip_blas_probe
    skip_blas_probe()
    limit_gdal_cache()
    configure_cache()  # before any worker starts: they all inherit the same folder
    if serving:
        from .server import serve
        return serve(float(args[1]), run_reported, emit)
    if args == ["--warm"]:
        job = {"operation": "warmup", "params": {}}
    else:
        with open(args[0], encoding="utf-8") as f:
            job = json.load(f)
    with stop_on_signals():
        return run_reported(job)


def run_reported(job: Dict[str, Any], started: float = _STARTED) -> int:
    """:func:`run_job`, with anything unexpected reported too (its traceback on stderr)."""
    try:
        return run_job(job, started)
    except Exception as exc:
        traceback.print_exc()
        emit(EVENT_ERROR, kind=type(exc).__name__, message=f"Unexpected engine error: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

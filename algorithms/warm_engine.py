"""The warm engine on the QGIS side: one engine process kept between runs of a QGIS session.

QGIS-side, but free of QGIS and Qt imports (testable alone). A cold run (:func:`.engine_process.run_engine`)
starts an interpreter, imports the engine, starts worker processes and loads the kernels, then throws it
all away: about a second, which a tiny job or every step of a model pays. :class:`WarmEngine` starts
``python -m tilewise.core.runtime.driver --serve IDLE`` (see ``core/runtime/server.py``) once and sends it
job after job on its stdin.

- One job at a time: a run that finds it busy (QGIS runs algorithms in parallel tasks) goes cold.
- Cancel kills the engine and its workers at once, as on the cold path; the next run starts a new one.
- An engine that died between runs (killed, crashed, ended by its idle timeout) is replaced by the next
  run without an error: a job it never accepted is sent to a new engine. One that dies during a run is
  that run's error, worded as on the cold path.
- A different interpreter or environment (a changed setting, another ``NUMBA_CACHE_DIR``...) gets a new
  engine: no run sees another's state.
- It ends with QGIS (its stdin closes, and on Linux the kernel signals it), on :func:`shutdown` (plugin
  unload) and after the idle timeout.
- It outlives the thread that ran the algorithm. A dialog runs it on a QThreadPool thread, which ends half
  a minute after its task, and Linux sends the parent-death signal (``PR_SET_PDEATHSIG``, see
  ``core/runtime/lifeline.py``) when the *thread* that started a process ends, not the whole process. So
  engines are started by one thread of their own that lives as long as QGIS (:func:`_start`).
- An engine that ends by itself (idle timeout, killed from outside) is waited for at once: it never stays
  ``<defunct>`` under QGIS until the next run.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import tempfile
import threading
from collections import deque
from typing import Callable, Dict, Optional

from ..core.vocabulary import EVENT_ACCEPTED, EVENT_LOG
from .engine_process import (follow_events, run_outcome, read_events, read_lines, kill_tree, remove_leftovers,
                             start_engine)
from .interpreter import EngineCancelled, engine_env
from .settings import DEFAULT_IDLE_MINUTES  # noqa: F401 (the idle timeout by default; 0: no warm engine)


class _Gone(Exception):
    """The engine ended before it accepted the job: the job goes to a new one."""


class _Parent:
    """The thread that starts every warm engine and stays until QGIS exits (see the module's doc)."""

    def __init__(self) -> None:
        self.requests: "queue.Queue[tuple]" = queue.Queue()
        self.thread: Optional[threading.Thread] = None
        self.lock = threading.Lock()

    def start(self, *args):
        """:func:`.engine_process.start_engine` ``(*args)``, called on this thread; its result or its error."""
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, name="tilewise-engine-parent", daemon=True)
                self.thread.start()
        answer: dict = {}
        done = threading.Event()
        self.requests.put((args, answer, done))
        done.wait()
        if "error" in answer:
            raise answer["error"]
        return answer["proc"]

    def _serve(self) -> None:
        while True:
            args, answer, done = self.requests.get()
            try:
                answer["proc"] = start_engine(*args)
            except BaseException as exc:  # handed to the caller
                answer["error"] = exc
            done.set()


_start = _Parent().start


class WarmEngine:
    """One engine process serving jobs, started with ``python`` and the environment ``env``."""

    def __init__(self, python: str, env: Dict[str, str], idle_seconds: float) -> None:
        self.python, self.env, self.idle_seconds = python, env, idle_seconds
        self.home = tempfile.mkdtemp(prefix="tilewise-engine-")  # its working folder
        try:
            self.proc = _start(python, ["--serve", str(idle_seconds)], env, self.home)
        except BaseException:
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        self.events: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.stderr: deque = deque(maxlen=40)
        for target, args in ((read_events, (self.proc.stdout, self.events)),
                             (read_lines, (self.proc.stderr, self.stderr))):
            threading.Thread(target=target, args=args, name="tilewise-warm-engine", daemon=True).start()
        threading.Thread(target=self._reap, name="tilewise-warm-engine-reaper", daemon=True).start()

    def _reap(self) -> None:
        """Wait for the engine's end, whenever and however it comes, so that it leaves no zombie."""
        self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """Not ended. Asked without reaping where the system can (``waitid`` with ``WNOWAIT``): ``poll`` needs
        the lock that :meth:`_reap`'s ``wait`` holds, and said an ended engine was alive until that thread ran."""
        if self.proc.returncode is not None:
            return False
        if hasattr(os, "waitid"):
            try:
                return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
            except ChildProcessError:   # reaped by now
                return False
            except OSError:
                pass
        return self.proc.poll() is None

    def fits(self, python: str, env: Dict[str, str], idle_seconds: float) -> bool:
        """Alive, and started as a cold engine would be now."""
        return self.alive() and (self.python, self.env, self.idle_seconds) == (python, env, idle_seconds)

    def run(self, job: dict, on_progress, on_log, is_cancelled, poll_seconds: float = 0.1) -> dict:
        """Send ``job`` and follow it to its end; raises :class:`_Gone` if the engine never took it."""
        output = job["params"].get("output")
        keep = bool(job["params"].get("resume"))
        self.stderr.clear()
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (OSError, ValueError):  # its stdin is closed: it has ended
            self.close()
            raise _Gone() from None
        try:
            first = _first_event(self.events, on_log, is_cancelled, poll_seconds)
            if first is None:
                raise _Gone()
            accepted = first.get("event") == EVENT_ACCEPTED
            result = follow_events(self.proc, self.events, on_progress, on_log, is_cancelled, poll_seconds, keep,
                             until_final=True) if accepted else {"final": first}  # it could not serve: why
        except _Gone:
            self.close()
            raise
        except BaseException:  # cancelled, or QGIS is going: stop it all at once
            self.close()
            remove_leftovers(output, keep)
            raise
        if accepted and "final" in result:
            return run_outcome(result, 0, "\n".join(self.stderr), output, self.python, keep)
        rc = self.proc.wait()  # it died during the run, or could not serve: that run's error, as when cold
        self.close()
        return run_outcome(result, rc, "\n".join(self.stderr), output, self.python, keep)

    def close(self) -> None:
        """End the engine and its workers at once (nothing of theirs is worth waiting for)."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        kill_tree(self.proc)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)


def _first_event(events, on_log, is_cancelled, poll_seconds) -> Optional[dict]:
    """The engine's answer to a job (``accepted``, or why it cannot serve); None if it ended."""
    while True:
        if is_cancelled():
            raise EngineCancelled("Cancelled; the engine was stopped and no output was written.")
        try:
            event = events.get(timeout=poll_seconds)
        except queue.Empty:
            continue
        if event is not None and event.get("event") == EVENT_LOG:
            on_log(event["message"])
            continue
        return event


_LOCK = threading.Lock()
_ENGINE: Optional[WarmEngine] = None


def run_warm(job: dict, python: str, idle_seconds: float, on_progress: Callable[[int, int], None] = lambda d, t: None,
             on_log: Callable[[str], None] = lambda m: None, is_cancelled: Callable[[], bool] = lambda: False,
             poll_seconds: float = 0.1) -> Optional[dict]:
    """Run ``job`` on the warm engine and return its report; None if it is busy with another run (the
    caller runs this one cold). Raises as :func:`.engine_process.run_engine` does."""
    global _ENGINE
    if not _LOCK.acquire(blocking=False):
        return None
    try:
        env = engine_env()
        for attempt in (1, 2):
            if _ENGINE is not None and not _ENGINE.fits(python, env, idle_seconds):
                _ENGINE.close()
                _ENGINE = None
            if _ENGINE is None:
                _ENGINE = WarmEngine(python, env, idle_seconds)
            engine = _ENGINE
            try:
                return engine.run(job, on_progress, on_log, is_cancelled, poll_seconds)
            except _Gone:
                if attempt == 2:  # a new engine that ended at once: say why, as a cold run would
                    return run_outcome({}, engine.proc.wait(), "\n".join(engine.stderr), job["params"].get("output"),
                                    python)
            finally:
                if not engine.alive():  # ended (killed, idle, a worker died): the next run starts another
                    engine.close()
                    if _ENGINE is engine:
                        _ENGINE = None
        return None
    finally:
        _LOCK.release()


def current() -> Optional[WarmEngine]:
    """The warm engine, if one runs."""
    engine = _ENGINE
    return engine if engine is not None and engine.alive() else None


def shutdown() -> None:
    """End the warm engine (the plugin unloaded, QGIS or Python exiting)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is not None:
            _ENGINE.close()
            _ENGINE = None


atexit.register(shutdown)


def idle_seconds(minutes) -> float:
    """The idle timeout setting (minutes) in seconds: empty or not a number means the default,
    0 or less means no warm engine (0.0)."""
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        value = DEFAULT_IDLE_MINUTES
    return max(value, 0.0) * 60.0


__all__ = ["WarmEngine", "run_warm", "current", "shutdown", "DEFAULT_IDLE_MINUTES", "idle_seconds"]

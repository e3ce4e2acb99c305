"""Starting the engine in a separate Python process and following it.

QGIS-side, but free of QGIS and Qt imports so that it can be tested alone.
The engine runs in another interpreter (numba and rasterio wheels must never
load into the QGIS process, see :mod:`.interpreter`); this module starts
``python -m tilewise.core.runtime.driver``, turns its JSON-lines events into
callbacks, kills the whole process tree on cancel and cleans up after it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from typing import Callable, Optional

from ..core.runtime.lock import lock_if_free
from ..core.paths import has_finished_tiles, partial_path, workdir_for
from ..core.vocabulary import EVENT_DONE, EVENT_ERROR, EVENT_LOG, EVENT_MISSING, EVENT_PROGRESS, USER_ERRORS
from .interpreter import SETTING_HINT, EngineCancelled, EngineError, popen_flags, engine_env, missing_message

def _last_event(text: str) -> Optional[dict]:
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _tail(text: str, lines: int = 12) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return ("Engine output:\n" + "\n".join(kept)) if kept else ""


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill the engine and every worker it started."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def remove_leftovers(output: Optional[str], keep_workdir: bool = False) -> None:
    """Remove the partial file of a run that did not finish, and its work folder unless it is
    kept for resuming (its finished tiles are what a resumed run reuses)."""
    if not output:  # a job that writes no raster (the kernel warm-up)
        return
    with lock_if_free(output) as free:
        if not free:    # another run is writing this output (why this one stopped, maybe): its files
            return
        if not keep_workdir:
            shutil.rmtree(workdir_for(output), ignore_errors=True)
        try:
            os.remove(partial_path(output))
        except FileNotFoundError:
            pass


def start_engine(python: str, args: list, env: dict, cwd: str) -> subprocess.Popen:
    """``python -m tilewise.core.runtime.driver ARGS`` in its own process group, its stdin, stdout and
    stderr piped to this process."""
    try:
        return subprocess.Popen([python, "-m", "tilewise.core.runtime.driver", *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, **popen_flags())
    except OSError as exc:
        raise EngineError(f"Cannot start the Python interpreter {python}: {exc}. "
                          f"Set another one in {SETTING_HINT}.") from None


def run_engine(job: dict, python: str, on_progress: Callable[[int, int], None] = lambda d, t: None,
               on_log: Callable[[str], None] = lambda m: None, is_cancelled: Callable[[], bool] = lambda: False,
               poll_seconds: float = 0.1) -> dict:
    """Run ``job`` in ``python`` and return the engine's report.

    Raises :class:`EngineCancelled` when ``is_cancelled()`` turns true (the
    process tree is killed and leftovers removed), :class:`EngineError` when the
    engine reports an error or dies.
    """
    output = job["params"].get("output")
    keep = bool(job["params"].get("resume"))
    with tempfile.TemporaryDirectory(prefix="tilewise-job-") as tmp:
        job_file = os.path.join(tmp, "job.json")
        with open(job_file, "w", encoding="utf-8") as f:
            json.dump(job, f)
        proc = start_engine(python, [job_file], engine_env(), tmp)
        events: "queue.Queue[Optional[dict]]" = queue.Queue()
        stderr: deque = deque(maxlen=40)
        threads = [threading.Thread(target=read_events, args=(proc.stdout, events), daemon=True),
                   threading.Thread(target=read_lines, args=(proc.stderr, stderr), daemon=True)]
        for t in threads:
            t.start()
        try:
            result = follow_events(proc, events, on_progress, on_log, is_cancelled, poll_seconds, keep)
        except BaseException:
            kill_tree(proc)
            remove_leftovers(output, keep)
            raise
        finally:
            if proc.stdin:
                proc.stdin.close()
        for t in threads:
            t.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        rc = proc.wait()
        kill_tree(proc)  # workers of a crashed engine must not outlive it
    return run_outcome(result, rc, "\n".join(stderr), output, python, keep)


def follow_events(proc, events, on_progress, on_log, is_cancelled, poll_seconds, keep=False, until_final=False) -> dict:
    """Pass the engine's events on until its stdout closes (or, ``until_final``, until the job's last event:
    a warm engine goes on to the next job); ``{"progress": (done, total), "final": event}``."""
    last: dict = {}
    while True:
        if is_cancelled():
            raise EngineCancelled(f"Cancelled{_where(last)}; the engine was stopped and no output was written."
                                  + (" Its finished tiles are kept: run it again with resume to continue."
                                     if keep and "progress" in last else ""))
        try:
            event = events.get(timeout=poll_seconds)
        except queue.Empty:
            continue
        if event is None:  # stdout closed: the engine has ended
            return last
        kind = event.get("event")
        if kind == EVENT_PROGRESS:
            last["progress"] = (event["done"], event["total"])
            on_progress(event["done"], event["total"])
        elif kind == EVENT_LOG:
            on_log(event["message"])
        elif kind in (EVENT_DONE, EVENT_ERROR, EVENT_MISSING):
            last["final"] = event
            if until_final:
                return last


def _where(last: dict) -> str:
    if "progress" in last:
        done, total = last["progress"]
        return f" after {done} of {total} tiles"
    return ""


def run_outcome(result: dict, rc: int, stderr: str, output: Optional[str], python: str, keep: bool = False) -> dict:
    final = result.get("final")
    if final and final["event"] == EVENT_DONE and rc == 0:
        return final["report"]
    remove_leftovers(output, keep)
    if keep and output and has_finished_tiles(output):
        kept = f"\nThe finished tiles are kept in {workdir_for(output)}: run again with resume to continue."
    else:
        kept = ""
    if final and final["event"] == EVENT_ERROR:
        raise EngineError(final["message"] + kept
                          + ("\n" + _tail(stderr) if final.get("kind") not in USER_ERRORS else ""))
    if final and final["event"] == EVENT_MISSING:
        raise EngineError(missing_message(python, final["packages"]))
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        raise EngineError(f"The Tilewise engine process was killed by signal {name}{_where(result)} "
                          "(out of memory, or stopped from outside). Nothing was written; QGIS is unaffected."
                          + kept + _with_tail(stderr))
    raise EngineError(f"The Tilewise engine process stopped unexpectedly (exit code {rc}){_where(result)}. "
                      "Nothing was written." + kept + _with_tail(stderr))


def _with_tail(stderr: str) -> str:
    tail = _tail(stderr)
    return "\n" + tail if tail else ""




def read_events(stream, events: "queue.Queue") -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            continue
        try:
            events.put(json.loads(line))
        except ValueError:
            events.put({"event": EVENT_LOG, "message": line})
    events.put(None)


def read_lines(stream, sink: deque) -> None:
    for raw in stream:
        sink.append(raw.decode("utf-8", "replace").rstrip())

"""Starting the engine in a separate Python process and following it.

QGIS-side, but free of QGIS and Qt imports so that it can be tested alone.
The engine runs in another interpreter (numba and rasterio wheels must never
load into the QGIS process); this module finds that interpreter, starts
``python -m tilewise.core.runtime.driver``, turns its JSON-lines reports into
callbacks, kills the whole process tree on cancel and cleans up after it.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from typing import Callable, Dict, Iterator, List, Optional

from ..core.runtime.paths import has_finished_tiles, partial_path, workdir_for
from ..core.vocabulary import (EVENT_DONE, EVENT_ERROR, EVENT_LOG, EVENT_MISSING, EVENT_PROGRESS,
                               REQUIRED_PACKAGES as PACKAGES, USER_ERRORS)

ENV_VAR = "TILEWISE_PYTHON"
SETTING_HINT = ("Processing > Options > Providers > Tilewise > 'Python interpreter for the Tilewise engine' "
                f"(or the {ENV_VAR} environment variable)")
#: The one step that gives the engine a working environment.
SETUP_ALGORITHM = "tilewise:setupengine"
SETUP_HINT = (f"Run the algorithm {SETUP_ALGORITHM} once (Processing Toolbox > Tilewise > Setup > "
              "Set up the Tilewise engine)")


class EngineError(Exception):
    """The engine reported a problem, or could not run; the message is for the user."""


class EngineCancelled(EngineError):
    """The user cancelled; the engine was stopped and nothing was written."""


def package_root() -> str:
    """The folder that contains the ``tilewise`` package (a QGIS plugins folder, or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_venv_python() -> str:
    """Where ``make install`` (or the user) puts a dedicated engine environment."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA", os.path.expanduser("~"))
        return os.path.join(base, "tilewise", "venv", "Scripts", "python.exe")
    base = os.environ.get("XDG_DATA_HOME", os.path.expanduser("~/.local/share"))
    return os.path.join(base, "tilewise", "venv", "bin", "python")


def configured_interpreter(configured: str = "") -> str:
    """The interpreter the user chose: the Processing setting, else the environment variable, else ''."""
    return configured or os.environ.get(ENV_VAR, "")


def candidate_pythons(configured: str = "") -> Iterator[str]:
    """Interpreters to try, best first: the user's choice, Tilewise's own environment, then
    the Pythons of this machine (:func:`system_pythons`)."""
    if configured:
        yield configured
    if os.environ.get(ENV_VAR):
        yield os.environ[ENV_VAR]
    yield default_venv_python()
    yield from system_pythons()


def system_pythons() -> Iterator[str]:
    """The Pythons beside QGIS and on the PATH, best first (some may not exist). Inside QGIS
    ``sys.executable`` may be the QGIS binary itself, so it is only used when it is a Python;
    on Linux it is whichever ``python3`` comes first on the PATH, so the interpreter of QGIS's
    own Python version comes first."""
    exe = sys.executable or ""
    if sys.platform not in ("win32", "darwin"):
        yield os.path.join(sys.exec_prefix, "bin", "python%d.%d" % sys.version_info[:2])
    if os.path.basename(exe).lower().startswith("python"):
        yield exe
    if sys.platform == "win32":  # OSGeo4W / standalone installer: python3.exe beside the QGIS apps
        for root in (sys.exec_prefix, sys.prefix, os.path.dirname(exe)):
            yield os.path.join(root, "python3.exe")
            yield os.path.join(root, "python.exe")
    elif sys.platform == "darwin":  # QGIS.app/Contents/MacOS/bin/python3
        yield os.path.join(sys.prefix, "bin", "python3")
        yield os.path.join(os.path.dirname(exe), "bin", "python3")
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            yield found


def find_python(configured: str = "") -> str:
    """The first candidate that exists; an explicit setting must exist."""
    if configured and not os.path.isfile(configured):
        raise EngineError(f"The Python interpreter set for Tilewise does not exist: {configured}. "
                          f"Fix it in {SETTING_HINT}, or clear it and: {SETUP_HINT}.")
    env = os.environ.get(ENV_VAR)
    if not configured and env and not os.path.isfile(env):
        raise EngineError(f"{ENV_VAR} points to {env}, which does not exist.")
    for path in candidate_pythons(configured):
        if path and os.path.isfile(path):
            return path
    raise EngineError("The Tilewise engine has no Python environment yet, and no Python interpreter was found "
                      f"on this machine. Install Python 3, then: {SETUP_HINT}; or set an interpreter in "
                      f"{SETTING_HINT}.")


def engine_env() -> Dict[str, str]:
    env = dict(os.environ)
    root = package_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    # Let the engine pick its own Qt-free environment: QGIS's Python path tweaks
    # do not belong to the other interpreter.
    for key in ("PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(key, None)
    return env


def install_command(python: str, packages: List[str]) -> str:
    """The exact command that installs ``packages`` for ``python``."""
    quoted = shlex.quote(python) if sys.platform != "win32" else f'"{python}"'
    pkgs = " ".join(packages)
    in_venv, has_pip, managed = _describe_python(python)
    if in_venv:  # pip refuses --user in a virtual environment, and PEP 668 does not apply there
        ensure = "" if has_pip else f"{quoted} -m ensurepip && "
        return f"{ensure}{quoted} -m pip install {pkgs}"
    if managed:
        venv = default_venv_python()
        root = os.path.dirname(os.path.dirname(venv))
        return (f"{quoted} -m venv {shlex.quote(root)} && {shlex.quote(venv)} -m pip install {' '.join(PACKAGES)}"
                "\n(this Python is managed by the system, so Tilewise uses its own environment there, "
                "which it finds by itself)")
    return f"{quoted} -m pip install --user {pkgs}"


_DESCRIBE = ("import importlib.util, sys, sysconfig; print(sys.prefix != sys.base_prefix); "
             "print(importlib.util.find_spec('pip') is not None); print(sysconfig.get_paths()['stdlib'])")


def _describe_python(python: str):
    """``(in a virtual environment, has pip, externally managed)``, asked of ``python`` itself:
    a venv's interpreter is a symlink to the system one, but its prefix, packages and
    PEP 668 status are its own."""
    try:
        out = subprocess.run([python, "-c", _DESCRIBE], capture_output=True, text=True, env=engine_env(),
                             timeout=30, stdin=subprocess.DEVNULL, **_popen_flags()).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return False, True, False
    if len(out) < 3:
        return False, True, False
    in_venv, has_pip, stdlib = out[0] == "True", out[1] == "True", out[2].strip()
    managed = not in_venv and bool(stdlib) and os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED"))
    return in_venv, has_pip, managed


def missing_message(python: str, missing: List[str]) -> str:
    """No working engine environment: the one step to take, then the command for doing it by hand."""
    return (f"The Tilewise engine has no working Python environment yet: it runs in {python}, which lacks "
            f"the Python package(s) {', '.join(missing)}.\n{SETUP_HINT}: it installs them (into the "
            "interpreter set for Tilewise if there is one, else into an environment of its own) and prepares "
            "the kernels.\n"
            f"Or install them yourself with:\n    {install_command(python, missing)}\n"
            f"or choose another interpreter in {SETTING_HINT}.")


def check_python(python: str) -> None:
    """Make sure ``python`` can run the engine; raise a message naming what is missing.

    ``run_engine`` does not need this (the engine reports missing packages
    itself); it is for settings dialogs and diagnostics.
    """
    try:
        proc = subprocess.run([python, "-m", "tilewise.core.runtime.driver", "--check"], capture_output=True, text=True,
                              env=engine_env(), timeout=120, stdin=subprocess.DEVNULL, **_popen_flags())
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"Cannot start the Python interpreter {python}: {exc}. Set another one in {SETTING_HINT}.")
    report = _last_event(proc.stdout)
    if report is None:
        raise EngineError(f"{python} cannot run the Tilewise engine (exit code {proc.returncode}). "
                          f"{_tail(proc.stderr)} Set another interpreter in {SETTING_HINT}.")
    if report.get("event") == EVENT_MISSING:
        raise EngineError(missing_message(python, report["packages"]))


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


def _popen_flags() -> dict:
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | 0x08000000}  # CREATE_NO_WINDOW
    return {"start_new_session": True}


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
    if not keep_workdir:
        shutil.rmtree(workdir_for(output), ignore_errors=True)
    try:
        os.remove(partial_path(output))
    except FileNotFoundError:
        pass


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
        try:
            proc = subprocess.Popen([python, "-m", "tilewise.core.runtime.driver", job_file], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=engine_env(), cwd=tmp,
                                    **_popen_flags())
        except OSError as exc:
            raise EngineError(f"Cannot start the Python interpreter {python}: {exc}. "
                              f"Set another one in {SETTING_HINT}.") from None
        events: "queue.Queue[Optional[dict]]" = queue.Queue()
        stderr: deque = deque(maxlen=40)
        threads = [threading.Thread(target=_read_events, args=(proc.stdout, events), daemon=True),
                   threading.Thread(target=_read_lines, args=(proc.stderr, stderr), daemon=True)]
        for t in threads:
            t.start()
        try:
            result = _follow(proc, events, on_progress, on_log, is_cancelled, poll_seconds, keep)
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
    return _outcome(result, rc, "\n".join(stderr), output, python, keep)


def _follow(proc, events, on_progress, on_log, is_cancelled, poll_seconds, keep=False) -> dict:
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


def _where(last: dict) -> str:
    if "progress" in last:
        done, total = last["progress"]
        return f" after {done} of {total} tiles"
    return ""


def _outcome(result: dict, rc: int, stderr: str, output: Optional[str], python: str, keep: bool = False) -> dict:
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




def _read_events(stream, events: "queue.Queue") -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            continue
        try:
            events.put(json.loads(line))
        except ValueError:
            events.put({"event": EVENT_LOG, "message": line})
    events.put(None)


def _read_lines(stream, sink: deque) -> None:
    for raw in stream:
        sink.append(raw.decode("utf-8", "replace").rstrip())

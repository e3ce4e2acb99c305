"""Creating, checking and repairing the engine's Python environment: what ``tilewise:setupengine`` does.

QGIS-free, like :mod:`.interpreter`, so ``make install`` and scripts run it too::

    python3 -m tilewise.algorithms.environment setup [--python P | --venv DIR] [--wheelhouse DIR]
    python3 -m tilewise.algorithms.environment requirements        # the locked engine packages
    python3 -m tilewise.algorithms.environment wheelhouse DIR      # download them, for offline installs

Steps, each done only when needed, so that running it again repairs or does nothing:

1. the interpreter: the one set for Tilewise (never created or deleted), else
   Tilewise's own virtual environment (:func:`~.interpreter.default_venv_python`),
   created from a real Python (inside QGIS ``sys.executable`` may be QGIS itself),
   and created again if its interpreter no longer runs;
2. the packages: the ``[engine]`` section of ``constraints.txt`` (the lock), installed
   by pip at exactly those versions (from a folder of wheels when given one, offline);
   packages at other versions, missing or failing to import are reinstalled;
3. the kernels: compiled into numba's cache by the engine (the ``warmup`` operation),
   so that the first run takes no longer than any later one.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import itertools
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..core.jitconfig import usable_user_dir
from .engine_process import kill_tree, run_engine
from .interpreter import (SETTING_HINT, SETUP_ALGORITHM, EngineCancelled, EngineError, describe_python, popen_flags,
                          default_venv_python, package_root, system_pythons)

LOCK_NAME = "constraints.txt"
ENGINE_SECTION = "[engine]"
#: Progress (percent) at the start of each step.
STEPS = {"environment": 0.0, "packages": 10.0, "kernels": 75.0, "done": 100.0}


def plugin_dir() -> str:
    """The ``tilewise`` folder (the QGIS plugin, or the installed package)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Lock:
    """The pins of ``constraints.txt`` that hold for one interpreter (``where``): ``engine`` (canonical
    name -> (name, version)) is what the engine needs, ``development`` the rest of what ``make deps``
    installs; ``hashes`` the engine pins' allowed archive hashes (pip checks them)."""

    path: str
    engine: Dict[str, Tuple[str, str]]
    development: Dict[str, Tuple[str, str]]
    hashes: Dict[str, List[str]] = field(default_factory=dict)
    where: str = ""

    def requirements(self, hashes: bool = False) -> List[str]:
        return [f"{name}=={version}" + "".join(f" --hash={h}" for h in (self.hashes.get(key, []) if hashes else []))
                for key, (name, version) in self.engine.items()]


#: The PEP 508 marker values of an interpreter, as ``values`` (what a lock line's ``; marker`` is evaluated against).
_MARKER_VALUES = (
    "import json, os, platform, sys; v = sys.implementation.version; "
    "values = {'implementation_name': sys.implementation.name, "
    "'implementation_version': '%d.%d.%d' % (v.major, v.minor, v.micro), 'os_name': os.name, "
    "'platform_machine': platform.machine(), 'platform_release': platform.release(), "
    "'platform_system': platform.system(), 'platform_version': platform.version(), "
    "'python_full_version': platform.python_version(), "
    "'platform_python_implementation': platform.python_implementation(), "
    "'python_version': '.'.join(platform.python_version_tuple()[:2]), 'sys_platform': sys.platform}")


def marker_environment(python: Optional[str] = None) -> Dict[str, str]:
    """The marker values of ``python`` (default: this interpreter)."""
    if python is None:
        scope: Dict[str, object] = {}
        exec(_MARKER_VALUES, scope)
        return dict(scope["values"])  # type: ignore[arg-type]
    out = ask(python, _MARKER_VALUES + "; print(json.dumps(values))")
    try:
        return json.loads(out or "")
    except ValueError:
        raise EngineError(f"Cannot read the platform of {python}: it does not run.") from None


def _holds(marker: str, values: Dict[str, str], path: str) -> bool:
    """Whether a lock line's environment marker holds for ``values``."""
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:
        try:
            from pip._vendor.packaging.markers import Marker
        except ImportError:
            raise EngineError(f"Reading {path} needs the 'packaging' module or pip in {sys.executable}: "
                              f"install pip there ({sys.executable} -m ensurepip).") from None
    return Marker(marker).evaluate(values)


#: Marker values of the platforms ``requirements --platform`` names (for a folder of wheels for another machine).
PLATFORMS = {"linux": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                       "os_name": "posix"},
             "win_amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                           "os_name": "nt"},
             "macos_arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                             "os_name": "posix"},
             "macos_x86_64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64",
                              "os_name": "posix"}}


def read_lock(path: Optional[str] = None, python: Optional[str] = None,
              values: Optional[Dict[str, str]] = None) -> Lock:
    """Parse the lock file (``name==version [; marker] [--hash=...]`` lines, continued by ``\\``, under
    ``# [engine]`` and ``# [development]``): the pins that hold for ``python`` (default: this one),
    or for the marker ``values`` given (another machine's)."""
    path = path or os.path.join(plugin_dir(), LOCK_NAME)
    sections: Dict[str, Dict[str, Tuple[str, str]]] = {}
    hashes: Dict[str, List[str]] = {}
    current = None
    values = dict(marker_environment(python), **values) if values else None
    try:
        with open(path, encoding="utf-8") as f:
            lines = re.sub(r"\\\n", " ", f.read()).splitlines()
    except OSError as exc:
        raise EngineError(f"The list of the engine's packages is missing ({path}: {exc.strerror}); "
                          "reinstall the Tilewise plugin.") from None
    for line in lines:
        header = re.match(r"#\s*(\[\w+\])", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:;([^#]*?))?\s*((?:--hash=\S+\s*)*)$", line)
        if pin and current is not None:
            name, version, marker, hashed = pin.groups()
            marker = (marker or "").strip()
            if marker and values is None:
                values = marker_environment(python)
            if _holds(marker, values or {}, path) and canonical(name) not in current:
                current[canonical(name)] = (name, version)
                if current is sections.get(ENGINE_SECTION):
                    hashes[canonical(name)] = re.findall(r"--hash=(\S+)", hashed)
    if not sections.get(ENGINE_SECTION):
        raise EngineError(f"{path} has no {ENGINE_SECTION} section: reinstall the Tilewise plugin.")
    values = values or marker_environment(python)
    where = (f"{python or sys.executable}: Python {values['python_full_version']}, {values['sys_platform']} "
             f"{values['platform_machine']}")
    return Lock(path, sections[ENGINE_SECTION], sections.get("[development]", {}), hashes, where)


class SetupFeedback:
    """What the setup tells as it goes; :class:`~.setup_engine.SetupEngine` maps it to QGIS feedback."""

    def step(self, message: str) -> None:
        """A step begins or ends (a sentence for the user)."""

    def line(self, text: str) -> None:
        """One line of a tool's own output (pip's log)."""

    def progress(self, percent: float) -> None:
        """Overall progress, 0 to 100."""

    def cancelled(self) -> bool:
        return False


@dataclass
class SetupReport:
    """What :func:`setup_engine` found and did, in sentences (``actions``)."""

    python: str
    actions: List[str] = field(default_factory=list)
    cache: Optional[str] = None
    compiled: int = 0
    loaded: int = 0

    def text(self) -> str:
        return "\n".join(self.actions)


# -- running tools ----------------------------------------------------------------------------------------

def tool_env() -> Dict[str, str]:
    """The environment of pip and the interpreter checks: QGIS's Python settings do not belong there."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_streaming(cmd: Sequence[str], feedback: SetupFeedback, what: str, keep: int = 60) -> Tuple[int, List[str]]:
    """Run ``cmd``, passing each output line to ``feedback.line``; ``(exit code, last lines)``.

    Cancelling kills it and raises :class:`EngineCancelled`.
    """
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=tool_env(), **popen_flags())
    except OSError as exc:
        raise EngineError(f"Cannot run {cmd[0]} ({what}): {exc}") from None
    lines: "queue.Queue[Optional[str]]" = queue.Queue()
    tail: deque = deque(maxlen=keep)

    def read() -> None:
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip())
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            if feedback.cancelled():
                raise EngineCancelled(f"Cancelled while {what}. Run {SETUP_ALGORITHM} again to finish the setup.")
            try:
                text = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if text is None:
                break
            tail.append(text)
            feedback.line(text)
    except BaseException:
        kill_tree(proc)
        raise
    reader.join(timeout=5)
    proc.stdout.close()
    return proc.wait(), list(tail)


def ask(python: str, code: str, timeout: float = 60) -> Optional[str]:
    """What ``python -c code`` prints, or None if it does not run."""
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=tool_env(), **popen_flags())
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


# -- step 1: the interpreter -----------------------------------------------------------------------------

_VENV_CAPABLE = ("import sys, venv, ensurepip; "
                 "print('%d.%d.%d' % sys.version_info[:3] if sys.version_info >= (3, 9) else '')")


def base_pythons() -> Iterator[str]:
    """Existing interpreters that could create the engine's environment, best first (no duplicates)."""
    seen = set()
    for path in system_pythons():
        real = os.path.realpath(path) if path else ""
        if real and real not in seen and os.path.isfile(path):
            seen.add(real)
            yield path


def base_python() -> Tuple[str, str]:
    """``(interpreter, version)`` of the first Python 3.9+ that can create virtual environments."""
    tried = []
    for path in base_pythons():
        version = ask(path, _VENV_CAPABLE)
        if version:
            return path, version
        tried.append(path)
    raise EngineError("No Python 3.9 or later able to create a virtual environment was found"
                      f"{' (tried ' + ', '.join(tried) + ')' if tried else ''}.{_venv_hint()}\n"
                      f"Or set an interpreter that has pip in {SETTING_HINT} and run {SETUP_ALGORITHM} again.")


def venv_python(folder: str) -> str:
    return os.path.join(folder, "Scripts", "python.exe") if sys.platform == "win32" else \
        os.path.join(folder, "bin", "python")


def default_venv_dir() -> str:
    return os.path.dirname(os.path.dirname(default_venv_python()))


def python_version(python: str) -> Optional[str]:
    """The version of ``python`` if it runs (and is 3.9 or later), else None."""
    if not os.path.isfile(python):
        return None
    return ask(python, "import sys; print('%d.%d.%d' % sys.version_info[:3] if sys.version_info >= (3, 9) "
                       "else '')") or None


def ensure_venv(folder: str, feedback: SetupFeedback, report: SetupReport) -> str:
    """The interpreter of the virtual environment in ``folder``, created (again) when it does not run."""
    python = venv_python(folder)
    version = python_version(python)
    if version:
        report.actions.append(f"The engine environment {folder} exists (Python {version}).")
        return python
    base, base_version = base_python()
    again = os.path.exists(folder)
    feedback.step(f"{'Re-creating' if again else 'Creating'} the engine environment {folder} with {base} "
                  f"(Python {base_version})")
    cmd = [base, "-m", "venv"] + (["--clear"] if again else []) + [folder]
    rc, tail = run_streaming(cmd, feedback, "creating the engine environment")
    if rc != 0 or not python_version(python):
        raise EngineError(f"Creating the engine environment {folder} with {base} failed (exit code {rc}):\n"
                          + "\n".join(tail[-12:]) + _venv_hint())
    report.actions.append(f"{'Re-created' if again else 'Created'} the engine environment {folder} with {base} "
                          f"(Python {base_version})" + (": its interpreter did not run." if again else "."))
    return python


def _venv_hint() -> str:
    if sys.platform.startswith("linux"):
        return "\nOn Debian or Ubuntu install the python3-venv package (sudo apt install python3-venv)."
    return ""


def check_configured(python: str, feedback: SetupFeedback, report: SetupReport) -> str:
    """The interpreter set by the user: it must run, and pip must be allowed to install there."""
    version = python_version(python)
    if not version:
        raise EngineError(f"The Python interpreter set for Tilewise ({python}) does not exist or does not run. "
                          f"Fix it in {SETTING_HINT}, or clear it so that {SETUP_ALGORITHM} creates an environment "
                          "of its own.")
    _, _, managed = describe_python(python)
    if managed:
        raise EngineError(f"The Python interpreter set for Tilewise ({python}) is managed by the system, which "
                          f"does not let pip install packages into it. Clear it in {SETTING_HINT} so that "
                          f"{SETUP_ALGORITHM} creates an environment of its own, or set a virtual environment's "
                          "interpreter there.")
    report.actions.append(f"Using the interpreter set for Tilewise: {python} (Python {version}).")
    return python


def ensure_pip(python: str, feedback: SetupFeedback, report: SetupReport) -> None:
    """pip in ``python`` (a virtual environment made without it has none)."""
    if ask(python, "import pip; print('ok')") == "ok":
        return
    feedback.step(f"Adding pip to {python}")
    rc, tail = run_streaming([python, "-m", "ensurepip", "--default-pip"], feedback, "adding pip")
    if rc != 0:
        raise EngineError(f"{python} has no pip, and adding it failed:\n" + "\n".join(tail[-12:]) + _venv_hint())
    report.actions.append(f"Added pip to {python}.")


# -- step 2: the packages ----------------------------------------------------------------------------------

_VERSIONS = ("import json, importlib.metadata as m; "
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")


def installed_versions(python: str) -> Dict[str, str]:
    """``{canonical name: version}`` of the distributions ``python`` has."""
    out = ask(python, _VERSIONS)
    try:
        return {canonical(k): v for k, v in json.loads(out or "{}").items()}
    except ValueError:
        return {}


def broken_packages(python: str) -> List[str]:
    """Required packages ``python`` cannot import (the engine's own check, which imports each)."""
    env = tool_env()
    env["PYTHONPATH"] = package_root()
    try:
        proc = subprocess.run([python, "-m", "tilewise.core.runtime.driver", "--check"], capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL, env=env, **popen_flags())
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"The engine cannot start in {python}: {exc}") from None
    for line in reversed(proc.stdout.splitlines()):
        try:
            return list(json.loads(line).get("packages", []))
        except (ValueError, AttributeError):
            continue
    raise EngineError(f"The engine cannot start in {python} (exit code {proc.returncode}):\n"
                      + "\n".join(proc.stderr.strip().splitlines()[-12:]))


def packages_to_install(lock: Lock, have: Dict[str, str], broken: Sequence[str]) -> List[Tuple[str, str, str]]:
    """``(name, installed version or '', locked version)`` of every engine package to (re)install."""
    todo = []
    broken_names = {canonical(b) for b in broken}
    for key, (name, version) in lock.engine.items():
        if have.get(key) != version or key in broken_names:
            todo.append((name, have.get(key, ""), version))
    return todo


class _PipProgress:
    """Progress through pip's log: a share for each engine package it names, then the install itself."""

    def __init__(self, lock: Lock, feedback: SetupFeedback, start: float, end: float) -> None:
        self.names, self.feedback, self.start, self.end = set(lock.engine), feedback, start, end
        self.seen: set = set()

    def __call__(self, text: str) -> None:
        self.feedback.line(text)
        share = None
        found = re.match(r"(?:Collecting|Processing|Requirement already satisfied:|Using cached) (\S+)", text)
        if found:
            token = os.path.basename(found.group(1))
            name = canonical(re.split(r"[=<>!~ (;\[]|-\d", token, maxsplit=1)[0])
            if name in self.names:
                self.seen.add(name)
                share = 0.8 * len(self.seen) / len(self.names)
        elif text.startswith("Installing collected packages"):
            share = 0.85
        elif text.startswith("Successfully installed"):
            share = 1.0
        if share is not None:
            self.feedback.progress(self.start + share * (self.end - self.start))


class _LineFeedback(SetupFeedback):
    def __init__(self, outer: SetupFeedback, on_line) -> None:
        self.outer, self.on_line = outer, on_line

    def line(self, text: str) -> None:
        self.on_line(text)

    def cancelled(self) -> bool:
        return self.outer.cancelled()


PIP_LOGS_KEPT = 10
_PIP_LOG_COUNT = itertools.count()


def new_pip_log() -> str:
    """A log file of pip's own for one set-up, in the cache's ``setup-logs`` folder, named by the time
    and process: two set-ups at once (two QGIS windows, a test run beside a session) each keep their
    own log. Only the newest ``PIP_LOGS_KEPT`` logs are kept. Without a writable cache (a read-only
    home) the folder is this user's own in the temporary folder, or a new one there."""
    folder = usable_user_dir("setup-logs") or tempfile.mkdtemp(prefix="tilewise-setup-logs-")
    old = sorted(glob.glob(os.path.join(folder, "pip-*.log")))
    for path in old[:max(0, len(old) - PIP_LOGS_KEPT + 1)]:
        try:
            os.remove(path)
        except OSError:
            pass  # another set-up removed it, or it is open on Windows: it goes next time
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return os.path.join(folder, f"pip-{stamp}-{os.getpid()}-{next(_PIP_LOG_COUNT)}.log")


def pip_install(python: str, lock: Lock, wheelhouse: str, feedback: SetupFeedback, log: str,
                only: Sequence[str] = (), relaxed: Sequence[str] = ()) -> Tuple[int, List[str]]:
    """Install the engine's packages into ``python`` (``only`` those, reinstalled without their
    dependencies: a repair); ``(exit code, last lines of pip's output)``; pip appends its full log
    to ``log``.

    Every pin is installed at its locked version with its hashes checked, except the ``relaxed`` ones
    (canonical names: their locked version cannot be had here), which take the newest release pip
    finds; then no hash is checked (pip checks all or none) and the other pins stay exact. The
    requirements pin every engine package (the lock's closure), so no constraints file is needed."""
    keep = {canonical(o) for o in only}
    wanted = [(k, n, v) for k, (n, v) in lock.engine.items() if not only or k in keep]
    with tempfile.TemporaryDirectory(prefix="tilewise-setup-") as tmp:
        requirements = os.path.join(tmp, "engine-requirements.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            if relaxed:
                f.write("".join(f"{n}\n" if k in relaxed else f"{n}=={v}\n" for k, n, v in wanted))
            else:
                hashes = lock.hashes
                f.write("".join(f"{n}=={v}" + "".join(f" --hash={h}" for h in hashes.get(k, [])) + "\n"
                                for k, n, v in wanted))
        cmd = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
               "--only-binary", ":all:", "--log", log, "-r", requirements]
        if wheelhouse:
            cmd += ["--no-index", "--find-links", wheelhouse]
        if only:
            cmd += ["--force-reinstall", "--no-deps"]
        feedback.line("$ " + " ".join(cmd))
        progress = _PipProgress(lock, feedback, STEPS["packages"], STEPS["kernels"])
        return run_streaming(cmd, _LineFeedback(feedback, progress), "installing the engine's packages")


def unavailable(tail: Sequence[str]) -> List[str]:
    """The canonical names of the pins pip's output says it could not find (no wheel for this
    Python or platform, or not in the folder of wheels)."""
    found = re.findall(r"(?:No matching distribution found for|Could not find a version that satisfies the "
                       r"requirement) ([A-Za-z0-9][A-Za-z0-9._-]*)", "\n".join(tail))
    return list(dict.fromkeys(canonical(n) for n in found))


def install_locked(python: str, lock: Lock, wheelhouse: str, feedback: SetupFeedback, log: str,
                   only: Sequence[str] = ()) -> List[str]:
    """pip installs the lock's engine pins (``only`` those: a repair), its full log in ``log``; the
    canonical names of the pins that could not be had for this Python and platform, each said in the
    set-up's log and replaced by the newest release that can."""
    rc, tail = pip_install(python, lock, wheelhouse, feedback, log, only=only)
    relaxed: List[str] = []
    while rc != 0:
        missing = [k for k in unavailable(tail) if k in lock.engine]
        if missing and all(k in relaxed for k in missing):
            names = ", ".join(lock.engine[k][0] for k in missing)
            raise EngineError(f"No release of {names} can be installed for {lock.where}"
                              f"{' from ' + wheelhouse if wheelhouse else ''}: no wheel for this Python version "
                              f"and platform. Set the interpreter of another Python version (3.9 to 3.13 are "
                              f"the safest) in {SETTING_HINT} and run {SETUP_ALGORITHM} again; pip's full log is "
                              f"{log}:\n" + "\n".join(tail[-6:]))
        missing = [k for k in missing if k not in relaxed]
        if not missing:
            break
        relaxed += missing
        feedback.step("No locked version for this Python and platform of "
                      + ", ".join(" ".join(lock.engine[k]) for k in missing)
                      + f" ({lock.where}); installing the newest release that has one instead "
                        "(not the tested version)")
        rc, tail = pip_install(python, lock, wheelhouse, feedback, log, only=only, relaxed=relaxed)
    if rc != 0:
        raise EngineError(f"pip could not install the engine's packages into {python} (exit code {rc}); "
                          f"its full log is {log}:\n"
                          + "\n".join(tail[-15:]))
    return relaxed


def ensure_packages(python: str, lock: Lock, wheelhouse: str, feedback: SetupFeedback,
                    report: SetupReport) -> None:
    """Install what is missing, at another version or broken; nothing when all is as locked.

    A pin that cannot be had for this Python or platform is named, in the set-up's log and report,
    with the version installed instead (the newest release pip finds, not the tested one)."""
    have = installed_versions(python)
    broken = broken_packages(python) if all(have.get(k) == v for k, (_, v) in lock.engine.items()) else []
    todo = packages_to_install(lock, have, broken)
    if not todo:
        report.actions.append(f"All {len(lock.engine)} engine packages are installed at their locked versions "
                              "and load: nothing to install.")
        return
    where = f" from {wheelhouse}" if wheelhouse else ""
    feedback.step(f"Installing {len(todo)} package(s) into {python}{where}: "
                  + ", ".join(f"{n} {v}" for n, _, v in todo))
    repair = [n for n, _, _ in todo] if broken else []
    log = new_pip_log()
    relaxed = install_locked(python, lock, wheelhouse, feedback, log, only=repair)
    now = installed_versions(python)
    failed = {canonical(b) for b in broken}
    changes = [f"{n} {now.get(canonical(n), '?')}" + (" (did not load)" if canonical(n) in failed else
                                                       f" (was {old})" if old else "") for n, old, _ in todo]
    verb = "Repaired" if any(old for _, old, _ in todo) or broken else "Installed"
    report.actions.append(f"{verb} {len(todo)} package(s)" + (" at their locked versions" if not relaxed else "")
                          + f"{where}: {', '.join(changes)} (pip's log: {log}).")
    if relaxed:
        instead = "; ".join(f"{lock.engine[k][0]} {lock.engine[k][1]} could not be had, installed "
                            f"{lock.engine[k][0]} {now.get(k, '(none)')} instead" for k in relaxed)
        report.actions[-1] += (f" Not at the locked versions for this Python and platform ({lock.where}): "
                               f"{instead}. These are not the versions Tilewise is tested with.")
        feedback.step(f"Not the locked versions: {instead}")
    still = broken_packages(python)
    if still:
        raise EngineError(f"After installing, {python} still cannot load {', '.join(still)}; see {log}.")


# -- step 3: the kernels -----------------------------------------------------------------------------------

def warm_kernels(python: str, feedback: SetupFeedback, report: SetupReport) -> None:
    """Compile every kernel into numba's cache (or find them there), in the engine."""
    feedback.step("Compiling the kernels into numba's cache (once per Tilewise release)")
    span = STEPS["done"] - STEPS["kernels"]
    t0 = time.perf_counter()
    result = run_engine({"operation": "warmup", "params": {}}, python,
                        on_progress=lambda d, t: feedback.progress(STEPS["kernels"] + span * d / max(t, 1)),
                        on_log=feedback.line, is_cancelled=feedback.cancelled)
    report.cache, report.compiled, report.loaded = result.get("cache"), result["compiled"], result["loaded"]
    where = report.cache or "no cache (no writable folder: the kernels compile at every run)"
    if report.compiled:
        report.actions.append(f"Compiled {report.compiled} kernel specialization(s) into {where} in "
                              f"{time.perf_counter() - t0:.1f} s" + (f" ({report.loaded} were there already)."
                                                                     if report.loaded else "."))
    else:
        report.actions.append(f"All {report.loaded} kernel specializations are in numba's cache {where}: "
                              "nothing to compile.")


# -- all of it ---------------------------------------------------------------------------------------------

def setup_engine(python: str = "", venv: str = "", wheelhouse: str = "",
                 feedback: Optional[SetupFeedback] = None, lock: Optional[Lock] = None) -> SetupReport:
    """Make the engine ready to run: interpreter, locked packages, compiled kernels.

    Parameters
    ----------
    python : str, optional
        An interpreter to install into (the one set for Tilewise). It is never created or removed.
    venv : str, optional
        Without ``python``: the virtual environment to create or repair (default: Tilewise's own,
        where the plugin looks for it).
    wheelhouse : str, optional
        A folder of wheels to install from, without the network.
    """
    feedback = feedback or SetupFeedback()
    given, lock = lock, lock or read_lock()   # read here too: a broken lock stops before anything is done
    if wheelhouse and not os.path.isdir(wheelhouse):
        raise EngineError(f"The folder of wheels does not exist: {wheelhouse}")
    report = SetupReport(python=python)
    feedback.progress(STEPS["environment"])
    if python:
        report.python = check_configured(python, feedback, report)
    else:
        report.python = ensure_venv(venv or default_venv_dir(), feedback, report)
    feedback.step(report.actions[-1])
    ensure_pip(report.python, feedback, report)
    if given is None:   # the pins that hold for that interpreter's Python and platform
        lock = read_lock(lock.path, report.python)
    feedback.progress(STEPS["packages"])
    ensure_packages(report.python, lock, wheelhouse, feedback, report)
    feedback.step(report.actions[-1])
    feedback.progress(STEPS["kernels"])
    warm_kernels(report.python, feedback, report)
    feedback.step(report.actions[-1])
    report.actions.append(f"The Tilewise engine is ready: {report.python}")
    feedback.progress(STEPS["done"])
    return report


def download_wheelhouse(folder: str, python: str = sys.executable, lock: Optional[Lock] = None) -> int:
    """Download the locked engine packages as wheels into ``folder`` (for ``python``'s platform)."""
    lock = lock or read_lock()
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tilewise-wheels-") as tmp:
        requirements = os.path.join(tmp, "engine-requirements.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            f.write("\n".join(lock.requirements(hashes=True)) + "\n")
        return subprocess.run([python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                               "--only-binary", ":all:", "-d", folder, "-r", requirements],
                              env=tool_env()).returncode


class _PrintFeedback(SetupFeedback):
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def step(self, message: str) -> None:
        print(f">> {message}", flush=True)

    def line(self, text: str) -> None:
        if self.verbose:
            print(f"   {text}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tilewise.algorithms.environment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup", help="create or repair the engine environment, install, compile the kernels")
    s.add_argument("--python", default="", help="install into this interpreter instead of a virtual environment")
    s.add_argument("--venv", default="", help="the virtual environment (default: Tilewise's own)")
    s.add_argument("--wheelhouse", default="", help="a folder of wheels: install offline from it")
    s.add_argument("-v", "--verbose", action="store_true", help="show pip's output")
    r = sub.add_parser("requirements", help="print the locked engine packages (for this Python and platform)")
    r.add_argument("--python-version", default="", help="for another Python, e.g. 3.12")
    r.add_argument("--platform", default="", choices=sorted(PLATFORMS), help="for another platform")
    r.add_argument("--hashes", action="store_true", help="with their hashes (pip download checks them)")
    w = sub.add_parser("wheelhouse", help="download the locked engine packages as wheels into a folder")
    w.add_argument("folder")
    args = p.parse_args(argv)
    try:
        if args.command == "requirements":
            values = dict(PLATFORMS.get(args.platform, {}))
            if args.python_version:
                values.update(python_version=args.python_version, python_full_version=f"{args.python_version}.0")
            print("\n".join(read_lock(values=values or None).requirements(hashes=args.hashes)))
            return 0
        if args.command == "wheelhouse":
            return download_wheelhouse(args.folder)
        report = setup_engine(args.python, args.venv, args.wheelhouse, _PrintFeedback(args.verbose))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.actions[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Creating, checking and repairing the engine's Python environment: what ``tilewise:setupengine`` does.

QGIS-free, like :mod:`.engine`, so ``make install`` and scripts run it too::

    python3 -m tilewise.algorithms.environment setup [--python P | --venv DIR] [--wheelhouse DIR]
    python3 -m tilewise.algorithms.environment requirements        # the locked engine packages
    python3 -m tilewise.algorithms.environment wheelhouse DIR      # download them, for offline installs

Steps, each done only when needed, so that running it again repairs or does nothing:

1. the interpreter: the one set for Tilewise (never created or deleted), else
   Tilewise's own virtual environment (:func:`~.engine.default_venv_python`),
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

from ..core.jitconfig import user_cache_root
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
    """The pinned versions of ``constraints.txt``: ``engine`` (canonical name -> (name, version))
    is what the engine needs, ``development`` the rest of what ``make deps`` installs."""

    path: str
    engine: Dict[str, Tuple[str, str]]
    development: Dict[str, Tuple[str, str]]

    def requirements(self) -> List[str]:
        return [f"{name}=={version}" for name, version in self.engine.values()]


def read_lock(path: Optional[str] = None) -> Lock:
    """Parse the lock file (``name==version`` lines under ``# [engine]`` and ``# [development]``)."""
    path = path or os.path.join(plugin_dir(), LOCK_NAME)
    sections: Dict[str, Dict[str, Tuple[str, str]]] = {}
    current = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise EngineError(f"The list of the engine's packages is missing ({path}: {exc.strerror}); "
                          "reinstall the Tilewise plugin.") from None
    for line in lines:
        header = re.match(r"#\s*(\[\w+\])", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if pin and current is not None:
            current[canonical(pin.group(1))] = (pin.group(1), pin.group(2))
    if not sections.get(ENGINE_SECTION):
        raise EngineError(f"{path} has no {ENGINE_SECTION} section: reinstall the Tilewise plugin.")
    return Lock(path, sections[ENGINE_SECTION], sections.get("[development]", {}))


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


def pip_log() -> str:
    """Where pip writes its full log of the last setup."""
    return os.path.join(user_cache_root(), "setup-pip.log")


def pip_install(python: str, lock: Lock, wheelhouse: str, feedback: SetupFeedback, only: Sequence[str] = (),
                pinned: bool = True) -> Tuple[int, List[str]]:
    """Install the engine's packages into ``python`` (``only`` those, reinstalled without their
    dependencies: a repair); ``(exit code, last lines of pip's output)``."""
    os.makedirs(user_cache_root(), exist_ok=True)
    try:
        os.remove(pip_log())  # pip appends: keep the log of this set-up only
    except OSError:
        pass
    wanted = [(n, v) for k, (n, v) in lock.engine.items() if not only or k in {canonical(o) for o in only}]
    with tempfile.TemporaryDirectory(prefix="tilewise-setup-") as tmp:
        requirements = os.path.join(tmp, "engine-requirements.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            f.write("\n".join(f"{n}=={v}" if pinned else n for n, v in wanted) + "\n")
        cmd = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
               "--only-binary", ":all:", "--log", pip_log(), "-r", requirements]
        if pinned:
            cmd += ["-c", lock.path]
        if wheelhouse:
            cmd += ["--no-index", "--find-links", wheelhouse]
        if only:
            cmd += ["--force-reinstall", "--no-deps"]
        feedback.line("$ " + " ".join(cmd))
        progress = _PipProgress(lock, feedback, STEPS["packages"], STEPS["kernels"])
        return run_streaming(cmd, _LineFeedback(feedback, progress), "installing the engine's packages")


def _unavailable(tail: Sequence[str]) -> bool:
    text = "\n".join(tail)
    return "No matching distribution found" in text or "Could not find a version that satisfies" in text


def ensure_packages(python: str, lock: Lock, wheelhouse: str, feedback: SetupFeedback,
                    report: SetupReport) -> None:
    """Install what is missing, at another version or broken; nothing when all is as locked."""
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
    rc, tail = pip_install(python, lock, wheelhouse, feedback, only=repair)
    pinned = True
    if rc != 0 and _unavailable(tail):
        feedback.step("The locked versions are not available for this Python; installing the newest releases "
                      "that are")
        rc, tail = pip_install(python, lock, wheelhouse, feedback, only=repair, pinned=False)
        pinned = False
    if rc != 0:
        raise EngineError(f"pip could not install the engine's packages into {python} (exit code {rc}); "
                          f"its full log is {pip_log()}:\n"
                          + "\n".join(tail[-15:]))
    now = installed_versions(python)
    failed = {canonical(b) for b in broken}
    changes = [f"{n} {now.get(canonical(n), '?')}" + (" (did not load)" if canonical(n) in failed else
                                                       f" (was {old})" if old else "") for n, old, _ in todo]
    verb = "Repaired" if any(old for _, old, _ in todo) or broken else "Installed"
    report.actions.append(f"{verb} {len(todo)} package(s)" + (" at their locked versions" if pinned else
                          " at the newest versions available for this Python (not the tested ones)")
                          + f"{where}: {', '.join(changes)} (pip's log: {pip_log()}).")
    still = broken_packages(python)
    if still:
        raise EngineError(f"After installing, {python} still cannot load {', '.join(still)}; see {pip_log()}.")


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
    lock = lock or read_lock()
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
            f.write("\n".join(lock.requirements()) + "\n")
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
    sub.add_parser("requirements", help="print the locked engine packages")
    w = sub.add_parser("wheelhouse", help="download the locked engine packages as wheels into a folder")
    w.add_argument("folder")
    args = p.parse_args(argv)
    try:
        if args.command == "requirements":
            print("\n".join(read_lock().requirements()))
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

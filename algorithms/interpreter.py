"""Finding the engine's Python: the configured interpreter, the set-up environment, or a system Python.

QGIS-side, but free of QGIS and Qt imports (testable alone). Inside QGIS ``sys.executable``
may be the QGIS binary, so the engine's interpreter is always looked for explicitly.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import Dict, Iterator, List

from ..core.vocabulary import REQUIRED_PACKAGES as PACKAGES

ENV_VAR = "TILEWISE_PYTHON"
SETTING_HINT = ("Settings ▸ Options ▸ Processing ▸ Providers ▸ Tilewise ▸ 'Python interpreter for the Tilewise "
                f"engine' (or the {ENV_VAR} environment variable)")
#: The one step that gives the engine a working environment.
SETUP_ALGORITHM = "tilewise:setupengine"
SETUP_HINT = (f"Run the algorithm {SETUP_ALGORITHM} once (Processing Toolbox > Tilewise > Setup > "
              "Set up the Tilewise engine)")


class EngineError(Exception):
    """The engine reported a problem, or could not run; the message is for the user."""


class EngineCancelled(EngineError):
    """The user cancelled; the engine was stopped and nothing was written."""


def popen_flags() -> dict:
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | 0x08000000}  # CREATE_NO_WINDOW
    return {"start_new_session": True}


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
            return os.path.abspath(path)  # the engine runs in a folder of its own: a relative path would miss
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
    from .settings import engine_settings_env
    env.update(engine_settings_env())     # the HTTP timeout
    return env


def lock_path() -> str:
    """The lock shipped with Tilewise (``constraints.txt``): the exact versions tilewise:setupengine installs."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "constraints.txt")


def _quote(path: str) -> str:
    return shlex.quote(path) if sys.platform != "win32" else f'"{path}"'


def install_command(python: str, packages: List[str]) -> str:
    """The exact command that installs ``packages`` for ``python``, at the versions of the lock (pip's ``-c``,
    as tilewise:setupengine and ``make deps`` install them); '' without a lock (an unpinned command would
    install versions Tilewise was never tested with)."""
    lock = lock_path()
    if not os.path.isfile(lock):
        return ""
    quoted, pins = _quote(python), f"-c {_quote(lock)}"
    pkgs = " ".join(packages)
    in_venv, has_pip, managed = describe_python(python)
    if in_venv:  # pip refuses --user in a virtual environment, and PEP 668 does not apply there
        ensure = "" if has_pip else f"{quoted} -m ensurepip && "
        return f"{ensure}{quoted} -m pip install {pins} {pkgs}"
    if managed:
        venv = default_venv_python()
        root = os.path.dirname(os.path.dirname(venv))
        return (f"{quoted} -m venv {_quote(root)} && {_quote(venv)} -m pip install {pins} {' '.join(PACKAGES)}"
                "\n(this Python is managed by the system, so Tilewise uses its own environment there, "
                "which it finds by itself)")
    return f"{quoted} -m pip install --user {pins} {pkgs}"


_DESCRIBE = ("import importlib.util, sys, sysconfig; print(sys.prefix != sys.base_prefix); "
             "print(importlib.util.find_spec('pip') is not None); print(sysconfig.get_paths()['stdlib'])")


def describe_python(python: str):
    """``(in a virtual environment, has pip, externally managed)``, asked of ``python`` itself:
    a venv's interpreter is a symlink to the system one, but its prefix, packages and
    PEP 668 status are its own."""
    try:
        out = subprocess.run([python, "-c", _DESCRIBE], capture_output=True, text=True, env=engine_env(),
                             timeout=30, stdin=subprocess.DEVNULL, **popen_flags()).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return False, True, False
    if len(out) < 3:
        return False, True, False
    in_venv, has_pip, stdlib = out[0] == "True", out[1] == "True", out[2].strip()
    managed = not in_venv and bool(stdlib) and os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED"))
    return in_venv, has_pip, managed


def missing_message(python: str, missing: List[str]) -> str:
    """No working engine environment: the one step to take, then the command for doing it by hand."""
    command = install_command(python, missing)
    return (f"The Tilewise engine has no working Python environment yet: it runs in {python}, which lacks "
            f"the Python package(s) {', '.join(missing)}.\n{SETUP_HINT}: it installs them (into the "
            "interpreter set for Tilewise if there is one, else into an environment of its own) and prepares "
            "the kernels.\n"
            + (f"Or install them yourself with:\n    {command}\nor choose" if command else "Or choose")
            + f" another interpreter in {SETTING_HINT}.")

"""``make lock``: write constraints.txt, the exact versions of everything the engine environment installs,
for every platform QGIS runs on (Linux, Windows, macOS) and Python 3.9 to 3.14, with hashes.

Two universal resolutions by ``uv pip compile --universal`` (nothing is installed), for the newest
releases that pyproject.toml allows:

- ``[engine]``: the engine's own packages and their dependencies, for Python 3.9 and later, what
  ``tilewise:setupengine`` installs;
- ``[development]``: the rest of what ``make deps`` installs (tests, Dask, benchmark peers, pip
  itself), for Python 3.11 and later (rustac, a test server, has no wheel for older ones), resolved
  with the engine section as constraints, so the two sections never disagree.

A pin holds where its environment marker (``; python_full_version >= '3.12'``, ``; sys_platform ==
'win32'``) says: pip reads the markers and checks the hashes, in ``make deps`` and in the set-up.
uv is a tool of this script only (``make lock`` installs it into build/uv, not the engine's venv).
Then ``make test`` before committing the new lock.

    python3 scripts/lock.py --uv build/uv/bin/uv [--out constraints.txt] [--keep]

``--check DIR`` downloads, with pip, the wheels of the lock's ``[engine]`` pins that hold for each
platform and Python below (``pip download --only-binary :all: --platform ... --python-version ...``,
hashes checked) into DIR, one folder at a time, and prints the matrix:

    python3 scripts/lock.py --check /tmp/tilewise-wheels [--python 3.12] [--platform win_amd64]
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRAS = ("test", "dask", "bench")
ENGINE_PYTHON = "3.9"        # the oldest Python the engine supports (pyproject's requires-python)
DEVELOPMENT_PYTHON = "3.11"  # the oldest the development tools have wheels for
#: Where the newest releases have no wheel for a platform: the resolution forks there (uv reads the markers).
#: llvmlite (numba's LLVM) publishes no macOS x86_64 wheel after 0.45 (0.46 only as a beta), nor rasterio after
#: 1.4.3, so Intel Macs get the numba of llvmlite 0.45 (Python 3.10-3.13; none has a wheel for Python 3.14 on
#: Intel Macs) and rasterio 1.4.3. The other platforms are held to the releases after those, or a universal
#: resolution would give every platform the Intel Macs' versions (one version for all forks where it can).
INTEL_MAC = "sys_platform == 'darwin' and platform_machine == 'x86_64'"
OTHERS = "python_version >= '3.10' and (sys_platform != 'darwin' or platform_machine != 'x86_64')"
PLATFORM_LIMITS = [f"llvmlite<0.46 ; {INTEL_MAC}", f"llvmlite>=0.45 ; {INTEL_MAC} and python_version >= '3.10'",
                   f"llvmlite>=0.46 ; {OTHERS}", f"rasterio<1.4.4 ; {INTEL_MAC}", f"rasterio>=1.4.4 ; {OTHERS}"]


def entries(text: str) -> list:
    """The requirement lines of uv's output (continuations joined; comments dropped), in order."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [" ".join(line.split()) for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def pin_of(entry: str) -> str:
    """``name==version`` of an entry, the name as pip compares them."""
    name, version = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", entry).groups()
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def compile_(uv: str, python: str, extras=(), constraints: str = "", also=(), keep: str = "") -> str:
    """uv's universal resolution of pyproject.toml (with ``extras``, and the requirements ``also``),
    preferring the pins of ``keep`` (uv reads its output file's pins as preferences)."""
    with tempfile.TemporaryDirectory(prefix="tilewise-lock-") as tmp:
        out, more = os.path.join(tmp, "lock.txt"), os.path.join(tmp, "more.in")
        with open(out, "w", encoding="utf-8") as f:
            f.write(keep)
        with open(more, "w", encoding="utf-8") as f:
            f.write("".join(f"{r}\n" for r in also))
        limits = os.path.join(tmp, "limits.txt")
        with open(limits, "w", encoding="utf-8") as f:
            f.write("".join(f"{r}\n" for r in PLATFORM_LIMITS))
        cmd = [uv, "pip", "compile", "--quiet", "--universal", "--python-version", python, "--generate-hashes",
               "--no-header", "--no-annotate", "--no-python-downloads", os.path.join(ROOT, "pyproject.toml"),
               more, "-o", out, "-c", limits]
        for extra in extras:
            cmd += ["--extra", extra]
        if constraints:
            cmd += ["-c", constraints]
        subprocess.run(cmd, check=True)
        with open(out, encoding="utf-8") as f:
            return f.read()


def uv_version(uv: str) -> str:
    return subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.strip()


#: (name, marker values, pip's --platform tags) of the platforms QGIS users run.
PLATFORMS = [
    ("linux x86_64", {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                      "os_name": "posix"},
     ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
     + [f"manylinux_2_{v}_x86_64" for v in range(5, 29)]),   # pip takes these as given: each glibc 2.x tag
    ("win_amd64", {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                   "os_name": "nt"}, ["win_amd64"]),
    ("macOS arm64", {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                     "os_name": "posix"}, [f"macosx_{v}_0_arm64" for v in range(11, 15)]),
    ("macOS x86_64", {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64",
                      "os_name": "posix"},
     [f"macosx_10_{v}_x86_64" for v in range(9, 16)] + [f"macosx_{v}_0_x86_64" for v in range(11, 15)]),
]
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]


def engine_pins(lock: str, values: dict) -> list:
    """The ``[engine]`` entries of the lock file ``lock`` whose markers hold for ``values``."""
    from packaging.markers import Marker, default_environment   # pip's own dependency: there wherever pip is
    with open(lock, encoding="utf-8") as f:
        text = f.read()
    section = text.split("# [engine]", 1)[1].split("# [development]", 1)[0]
    env = dict(default_environment(), implementation_name="cpython", platform_python_implementation="CPython",
               **values)
    held = []
    for entry in entries(section.split("\n", 1)[1]):
        requirement, _, hashes = entry.partition(" --hash")
        pin, _, marker = requirement.partition(";")
        if not marker.strip() or Marker(marker.strip()).evaluate(env):
            held.append(pin.strip() + (" --hash" + hashes if hashes else ""))
    return held


def check(lock: str, folder: str, pythons: list, platforms: list) -> bool:
    """pip downloads the engine pins for each platform and Python; a line of the matrix for each."""
    ok = True
    results = {}
    for name, values, tags in PLATFORMS:
        if platforms and not any(p in (name, *tags) for p in platforms):
            continue
        for python in pythons:
            pins = engine_pins(lock, dict(values, python_version=python, python_full_version=f"{python}.0"))
            dest = os.path.join(folder, f"{name.replace(' ', '-')}-py{python}")
            os.makedirs(dest, exist_ok=True)
            requirements = os.path.join(dest, "requirements.txt")
            with open(requirements, "w", encoding="utf-8") as f:
                f.write("\n".join(pins) + "\n")
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                   "--python-version", python, "--implementation", "cp", "-d", dest, "-r", requirements]
            for tag in tags:
                cmd += ["--platform", tag]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = [w for w in os.listdir(dest) if w.endswith(".whl")]
            good = proc.returncode == 0 and len(wheels) == len(pins)
            ok &= good
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
            results[f"{name} / Python {python}"] = {"ok": good, "pins": len(pins), "wheels": len(wheels),
                                                    "errors": errors[:3]}
            print(f"{name:14} Python {python:5} {'ok' if good else 'FAILED':6} {len(wheels):3}/{len(pins)} wheels"
                  + (": " + " | ".join(errors[:3]) if errors else ""), flush=True)
            shutil.rmtree(dest, ignore_errors=True)
    with open(os.path.join(folder, "matrix.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv executable (pip install uv)")
    p.add_argument("--out", default=os.path.join(ROOT, "constraints.txt"))
    p.add_argument("--keep", action="store_true", help="keep the current lock's versions where they still resolve "
                                                        "(default: the newest releases)")
    p.add_argument("--check", metavar="DIR", help="download the engine's wheels for every platform and Python "
                                                    "into DIR (pip download), instead of locking")
    p.add_argument("--python", action="append", default=[], help="with --check: only this Python (again for more)")
    p.add_argument("--platform", action="append", default=[], help="with --check: only this platform")
    args = p.parse_args()
    if args.check:
        sys.exit(0 if check(args.out, args.check, args.python or PYTHONS, args.platform) else 1)
    keep = ""
    if args.keep and os.path.isfile(args.out):
        with open(args.out, encoding="utf-8") as f:
            keep = f.read()
    if not shutil.which(args.uv) and not os.path.isfile(args.uv):
        sys.exit(f"uv not found ({args.uv}): pip install uv into a venv of its own and give it with --uv")
    engine = compile_(args.uv, ENGINE_PYTHON, keep=keep)
    with tempfile.TemporaryDirectory(prefix="tilewise-lock-") as tmp:
        constraints = os.path.join(tmp, "engine.txt")
        with open(constraints, "w", encoding="utf-8") as f:
            f.write(engine)
        everything = compile_(args.uv, DEVELOPMENT_PYTHON, EXTRAS, constraints, also=["pip"], keep=keep)
    engine_lines = entries(engine)
    engine_pins = {pin_of(e) for e in engine_lines}
    development = [e for e in entries(everything) if pin_of(e) not in engine_pins]
    lines = ["# The exact versions Tilewise is tested with (written by `make lock`: scripts/lock.py, uv pip compile",
             "# --universal). make deps installs all of them, tilewise:setupengine the [engine] section; a pin holds",
             "# where its marker says (Python version, platform), and pip checks the hashes.",
             f"# Resolved {datetime.date.today()} by {uv_version(args.uv)}: Linux, Windows and macOS, "
             f"[engine] for Python {ENGINE_PYTHON}+, [development] for Python {DEVELOPMENT_PYTHON}+.",
             "# [engine] the engine's packages and their dependencies"]
    lines += [e.replace(" --hash", " \\\n    --hash") for e in engine_lines]
    lines.append(f"# [development] tests, Dask, benchmark peers and pip (pyproject.toml extras {','.join(EXTRAS)})")
    lines += [e.replace(" --hash", " \\\n    --hash") for e in development]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written: {args.out} ({len(engine_lines)} engine pins, {len(development)} more)")


if __name__ == "__main__":
    main()

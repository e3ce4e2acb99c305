"""``make lock``: write constraints.txt, the exact versions of everything the engine environment installs.

Two resolutions by pip (``pip install --dry-run --report``, nothing is installed),
for the newest releases that pyproject.toml allows:

- ``[engine]``: the engine's own packages and their dependencies, what
  ``tilewise:setupengine`` installs;
- ``[development]``: the rest of what ``make deps`` installs (tests, Dask, benchmark
  peers, pip itself).

The engine's packages take the versions of the full resolution, so the two
sections never disagree. Run it with the Python the engine runs on (wheels differ
between Python versions), then ``make test`` before committing the new lock.

    python3 scripts/lock.py --python .venv/bin/python [--out constraints.txt]
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRAS = "test,dask,bench"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(python: str, *requirements: str) -> dict:
    """``{canonical name: (name, version)}`` of what pip would install for ``requirements``."""
    with tempfile.TemporaryDirectory(prefix="tilewise-lock-") as tmp:
        report = os.path.join(tmp, "report.json")
        subprocess.run([python, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                        "--report", report, *requirements], check=True)
        with open(report, encoding="utf-8") as f:
            items = json.load(f)["install"]
    found = {}
    for item in items:
        meta = item["metadata"]
        if canonical(meta["name"]) != "tilewise":
            found[canonical(meta["name"])] = (meta["name"], meta["version"])
    return found


def python_description(python: str) -> str:
    out = subprocess.run([python, "-c", "import platform, sys; print(platform.python_version(), sys.platform, "
                                        "platform.machine())"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="the engine's Python (default: this one)")
    p.add_argument("--out", default=os.path.join(ROOT, "constraints.txt"))
    args = p.parse_args()
    engine = resolve(args.python, ROOT)
    everything = resolve(args.python, "pip", f"{ROOT}[{EXTRAS}]")
    missing = sorted(set(engine) - set(everything))
    if missing:
        sys.exit(f"the full resolution lacks engine packages: {missing}")
    lines = ["# The exact versions Tilewise is tested with (written by `make lock`: scripts/lock.py).",
             "# make deps installs all of them, tilewise:setupengine the [engine] section.",
             f"# Resolved {datetime.date.today()} for Python {python_description(args.python)}.",
             "# [engine] the engine's packages and their dependencies"]
    lines += [f"{everything[k][0]}=={everything[k][1]}" for k in sorted(engine)]
    lines.append(f"# [development] tests, Dask, benchmark peers and pip (pyproject.toml extras {EXTRAS})")
    lines += [f"{v[0]}=={v[1]}" for k, v in sorted(everything.items()) if k not in engine]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written: {args.out} ({len(engine)} engine packages, {len(everything) - len(engine)} more)")


if __name__ == "__main__":
    main()

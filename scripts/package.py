"""``make package``: ``dist/tilewise-<version>.zip``, the plugin as QGIS installs it.

One top folder, ``tilewise/``, with metadata.txt, the plugin, the engine, the
resources, the lock of the engine's packages and the licence: the layout that
Plugins > Manage and Install Plugins > Install from ZIP and the QGIS plugin
repository expect. Only files under version control go in (no tests, benchmark
data, caches or build outputs); metadata.txt is checked first.

    python3 scripts/package.py [--out dist]
"""

import argparse
import configparser
import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = "tilewise"
#: What the plugin is made of (files, or folders ending in "/").
CONTENTS = ("metadata.txt", "LICENSE", "constraints.txt", "__init__.py", "__main__.py", "plugin.py",
            "algorithms/", "core/", "resources/")
#: metadata.txt keys QGIS and the plugin repository want.
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "homepage", "tracker", "repository", "tags", "changelog", "icon", "category")


def tracked_files(root: str) -> list:
    """Files under version control (or, outside a git checkout, every file but caches)."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, check=True).stdout
        return sorted(p for p in out.decode("utf-8").split("\0") if p)
    except (OSError, subprocess.CalledProcessError):
        found = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            found += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/") for f in files
                      if not f.endswith((".pyc", ".pyo"))]
        return sorted(found)


def plugin_files(root: str = ROOT) -> list:
    """The files of the plugin, relative to ``root``."""
    files = [p for p in tracked_files(root)
             if any(p == c or (c.endswith("/") and p.startswith(c)) for c in CONTENTS)]
    missing = [c for c in CONTENTS if not any(p == c or (c.endswith("/") and p.startswith(c)) for p in files)]
    if missing:
        sys.exit(f"package: missing from the checkout: {', '.join(missing)}")
    return [p for p in files if "__pycache__" not in p and not p.endswith((".pyc", ".pyo"))]


def check_metadata(root: str = ROOT) -> str:
    """metadata.txt complete, its version that of the engine; return the version."""
    meta = configparser.ConfigParser(interpolation=None)
    meta.optionxform = str
    meta.read(os.path.join(root, "metadata.txt"), encoding="utf-8")
    general = meta["general"]
    empty = [k for k in REQUIRED_METADATA if not general.get(k, "").strip()]
    if empty:
        sys.exit(f"package: metadata.txt lacks {', '.join(empty)}")
    with open(os.path.join(root, "core", "__init__.py"), encoding="utf-8") as f:
        engine = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)
    if general["version"] != engine:
        sys.exit(f"package: metadata.txt says version {general['version']}, tilewise.core {engine}")
    if not os.path.isfile(os.path.join(root, general["icon"])):
        sys.exit(f"package: the icon {general['icon']} is missing")
    return engine


def build(out_dir: str, root: str = ROOT) -> str:
    """Write the zip; return its path."""
    version = check_metadata(root)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{TOP}-{version}.zip")
    partial = path + ".partial"
    files = plugin_files(root)
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(root, TOP)
        for folder in sorted({os.path.dirname(p) for p in files} - {""}):
            zf.write(os.path.join(root, folder), f"{TOP}/{folder}")
        for rel in files:
            zf.write(os.path.join(root, rel), f"{TOP}/{rel}")
    os.replace(partial, path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "dist"))
    args = p.parse_args()
    path = build(args.out)
    with zipfile.ZipFile(path) as zf:
        n = len([i for i in zf.infolist() if not i.is_dir()])
    print(f"written: {path} ({n} files, {os.path.getsize(path) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

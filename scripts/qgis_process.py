"""Running ``qgis_process`` with the Tilewise plugin from this checkout (used by the demo and tests).

Debian's ``/usr/bin/qgis_process`` wrapper passes ``--noversioncheck``, which
QGIS 3.22 rejects, so the real binary ``qgis_process.bin`` is called when it
exists (else ``qgis_process`` with ``QGIS_OPTS`` cleared). A throw-away QGIS
profile enables the plugin, found through ``QGIS_PLUGINPATH``.
"""

import os
import shutil
import subprocess


def qgis_process_binary() -> str:
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("qgis_process not found: install QGIS (make test installs it)")


def qgis_process_env(plugins_dir: str, profile_root: str) -> dict:
    """Environment for qgis_process: a profile under ``profile_root`` with Tilewise enabled."""
    ini_dir = os.path.join(profile_root, "profiles", "default", "QGIS")
    os.makedirs(ini_dir, exist_ok=True)
    ini = os.path.join(ini_dir, "QGIS3.ini")
    text = open(ini, encoding="utf-8").read() if os.path.exists(ini) else ""
    if "tilewise=true" not in text:
        with open(ini, "a", encoding="utf-8") as f:
            f.write("\n[PythonPlugins]\ntilewise=true\n")
    env = dict(os.environ)
    env.update(QGIS_CUSTOM_CONFIG_PATH=profile_root, QGIS_PLUGINPATH=plugins_dir, QGIS_OPTS="",
               QT_QPA_PLATFORM="offscreen")
    return env


def run_algorithm(algorithm: str, params: list, plugins_dir: str, profile_root: str, timeout: float = 3600):
    """``qgis_process run ALGORITHM -- KEY=VALUE ...``; returns the CompletedProcess."""
    args = [qgis_process_binary(), "run", algorithm, "--"] + [f"{k}={v}" for k, v in params]
    return subprocess.run(args, env=qgis_process_env(plugins_dir, profile_root), capture_output=True, text=True,
                          timeout=timeout)

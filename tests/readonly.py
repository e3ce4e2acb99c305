"""Running a command with some folders mounted read-only, as a system-wide plugin install is.

Root can write into any folder whatever its permissions, so ``chmod`` proves
nothing: the folders are bind-mounted read-only (``mount --bind`` then
``mount -o remount,ro,bind``) in a private mount namespace of the command
(``unshare --mount``; as another user, ``unshare --user --map-root-user --mount``),
so nothing outlives it, even if the test dies. Shared by the engine and QGIS tests.
"""

import os
import shlex
import shutil
import subprocess
from typing import Dict, Sequence, Tuple


def readonly_command(mounts: Sequence[Tuple[str, str]], cmd: Sequence[str]) -> list:
    """``cmd`` run with each ``(source, target)`` folder bind-mounted read-only at ``target``.

    Each target must exist (an empty folder); the command fails first when a mount does not become
    read-only (the command's own exit code is 97 then).
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("unshare (util-linux) is needed to mount folders read-only")
    steps = []
    for source, target in mounts:
        t = shlex.quote(str(target))
        steps.append(f"{{ mount --bind {shlex.quote(str(source))} {t} && mount -o remount,ro,bind {t} "
                     f"&& ! touch {t}/.tilewise-rw-probe 2>/dev/null; }} || exit 97")
    script = "\n".join(steps + ['exec "$@"'])
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user, "--mount", "--propagation", "private", "sh", "-c", script, "sh", *map(str, cmd)]


def run_readonly(mounts: Sequence[Tuple[str, str]], cmd: Sequence[str], env: Dict[str, str],
                 timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (see :func:`readonly_command`); exit code 97 means the mounts failed."""
    proc = subprocess.run(readonly_command(mounts, cmd), env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    if proc.returncode == 97:
        raise RuntimeError(f"could not mount {mounts} read-only: {proc.stderr[-1000:]}")
    return proc

"""numba's on-disk cache and thread pool, set up the same way in every engine process.

numba reads its configuration from the environment (``NUMBA_CACHE_DIR``,
``NUMBA_NUM_THREADS``) when it is imported, and again before every compile.
Both must be settled before :mod:`tilewise.core.kernels.reducers` imports numba:

- **The cache** goes to a per-user folder keyed by the Tilewise version
  (``numba-<version>`` in :func:`user_cache_root`, e.g. ``~/.cache/tilewise/numba-0.1.0``;
  :func:`usable_user_dir`), not beside the source files: a plugin folder is
  often read-only (a system-wide install), and a new release must never load
  kernels compiled for an old one. A ``NUMBA_CACHE_DIR`` set by the user wins.
  When no folder is writable the kernels are compiled on every run instead.
- **The thread count** of a worker process is changed only before numba starts
  its threads, and numba's configuration is reloaded at once so that it agrees
  with the environment; otherwise numba raises at the worker's first compile
  ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have
  been launched").

Nothing here imports numba.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from typing import Optional

from . import __version__

CACHE_ENV = "NUMBA_CACHE_DIR"
THREADS_ENV = "NUMBA_NUM_THREADS"


def user_cache_root() -> str:
    """The platform's per-user cache folder for Tilewise.

    ``%LOCALAPPDATA%\\tilewise\\Cache`` on Windows, ``~/Library/Caches/tilewise`` on
    macOS, ``$XDG_CACHE_HOME/tilewise`` (default ``~/.cache/tilewise``) elsewhere.
    """
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "tilewise", "Cache")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches", "tilewise")
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        base = os.path.join(home, ".cache")
    return os.path.join(base, "tilewise")


def _temp_user_root() -> str:
    """This user's Tilewise folder in the temporary folder (``/tmp/tilewise-<uid>``)."""
    try:
        user = str(os.getuid())  # type: ignore[attr-defined]
    except AttributeError:  # Windows: the temporary folder is already per user
        user = os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"tilewise-{user}")


def usable_user_dir(name: str) -> Optional[str]:
    """The folder ``name`` in :func:`user_cache_root`, or, without a writable home (a service account, a
    read-only home), in this user's private folder of the temporary folder: the first :func:`usable_dir`
    of the two, created; None if neither is. The temporary folder is shared with other users, so the
    fallback there must be this user's alone, and its parent too."""
    for path, private in ((os.path.join(user_cache_root(), name), False),
                          (os.path.join(_temp_user_root(), name), True)):
        if usable_dir(path, private):
            return path
    return None


def usable_dir(path: str, private: bool = False) -> bool:
    """Create ``path`` if needed; true if this process can write there.

    With ``private`` (POSIX) its parent and itself must also belong to this user and be
    writable by nobody else (numba's cache holds pickled code); the parent is checked
    before anything is created in it.
    """
    check = private and os.name == "posix"
    try:
        if check:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            if not _private(os.path.dirname(path)):
                return False
        os.makedirs(path, mode=0o700, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return not check or _private(path)


def _private(folder: str) -> bool:
    info = os.lstat(folder)
    return not stat.S_ISLNK(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def configure_cache() -> Optional[str]:
    """Settle where numba caches compiled kernels, before numba compiles any; return that folder.

    A ``NUMBA_CACHE_DIR`` already set is kept (``None`` is returned when it is not
    writable). Otherwise it is set to this release's folder, ``numba-<version>``, in
    the first usable of :func:`usable_user_dir`'s two places; ``None`` when neither is
    usable, and then the kernels must not ask numba to cache.
    """
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return chosen if usable_dir(chosen) else None
    path = usable_user_dir(f"numba-{__version__}")
    if path is not None:
        os.environ[CACHE_ENV] = path
        numba = sys.modules.get("numba")
        if numba is not None:  # imported already (by the caller): numba read its config then
            numba.config.CACHE_DIR = path
    return path


def warm_stamp(cache: str) -> str:
    """The file that says the set-up's warm-up put every kernel of these sources into ``cache``. numba keys
    its cache by the source files' folder, so there is one stamp per folder the package is imported from."""
    import hashlib
    kernels = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
    return os.path.join(cache, ".warm-" + hashlib.sha1(kernels.encode()).hexdigest()[:16])


def threads_started() -> bool:
    """True once numba has launched its thread pool in this process (its size is then fixed)."""
    if "numba" not in sys.modules:
        return False
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return True
    return bool(getattr(parallel, "_is_initialized", True))


def limit_threads(threads: int) -> None:
    """Let numba use ``threads`` threads in this process (a worker: the processes fill the cores).

    Before numba is imported this is the environment variable numba reads then. If
    numba is imported but has not started its threads, the variable is changed and
    numba's configuration reloaded with it, so that both agree when numba checks
    them again at its next compile. Once the threads run, their number is fixed: the
    variable keeps it. Either way numba is then told to use ``threads`` of them.
    """
    threads = max(1, int(threads))
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ[THREADS_ENV] = str(threads)
        return
    from numba.core import config
    if not threads_started():
        os.environ[THREADS_ENV] = str(threads)
        config.reload_config()
    else:
        os.environ[THREADS_ENV] = str(config.NUMBA_NUM_THREADS)
    numba.set_num_threads(min(threads, config.NUMBA_NUM_THREADS))


def skip_blas_probe() -> None:
    """numba's first kernel (compiled or loaded from the cache) imports ``scipy.linalg`` where SciPy is
    installed, to find BLAS for ``np.dot`` and ``np.linalg`` in compiled code (``numba.np.arraymath``); no
    Tilewise kernel uses them. That import (with ``numpy.f2py``, ``numpy.testing``, ``unittest``...) is 0.2 s
    of CPU of every command. The engine's own processes (a command, the driver, their workers) never import
    SciPy: there numba finds no BLAS, at once."""
    if "scipy.linalg" not in sys.modules:
        sys.modules.setdefault("scipy.linalg.cython_blas", None)  # type: ignore[assignment]

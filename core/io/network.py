"""Remote inputs that never hang a run: HTTP timeouts for GDAL, and blocking calls that can be abandoned.

One setting bounds how long a server may keep a run waiting: ``TILEWISE_HTTP_TIMEOUT`` (seconds,
default 30; the command line's ``--http-timeout``, QGIS's "HTTP timeout" Processing setting). From it
(:func:`http_config`), unless the user set them:

- ``GDAL_HTTP_CONNECTTIMEOUT``: the timeout, at most 10 s, to connect;
- ``GDAL_HTTP_LOW_SPEED_LIMIT`` / ``GDAL_HTTP_LOW_SPEED_TIME``: a request that receives less than
  1 byte/s for the timeout is given up (a server that accepts and says nothing, or trickles);
- ``GDAL_HTTP_TIMEOUT``: no request lasts more than four times the timeout.

GDAL blocks in C while it waits for a server, and Python runs signal handlers only in the main
thread, between bytecodes: a run blocked so could not be stopped by Ctrl+C, SIGTERM or a cancel.
:func:`abandonable` runs such a call in a helper thread and waits for it in short steps, so the
waiting thread stays stoppable: a signal raises in the main thread at once, and other waiting
threads give up once :func:`stop_blocked_calls` was called (by the signal handlers of
:mod:`tilewise.core.runtime.lifeline`). The helper thread is left behind (a daemon: it ends with
the process, or when GDAL's own timeout ends its call).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import re
import threading
from typing import Callable, Dict, Iterable, List, Optional, TypeVar

from ..errors import ParameterError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The environment variable holding the HTTP timeout, in seconds.
HTTP_TIMEOUT_ENV = "TILEWISE_HTTP_TIMEOUT"
DEFAULT_HTTP_TIMEOUT = 30
#: Where a user raises the timeout, for messages.
TIMEOUT_HINT = (f"raise the HTTP timeout if the server is only slow: --http-timeout SECONDS on the command line, "
                f"the {HTTP_TIMEOUT_ENV} environment variable, or in QGIS Settings > Options > Processing > "
                "Providers > Tilewise > HTTP timeout")

#: GDAL's network options for remote inputs, unless the user set them: retry transient HTTP errors
#: (429, 500, 502, 503, 504; the delay doubles at each try). Only HTTP is concerned, so process-wide.
HTTP_DEFAULTS = {"GDAL_HTTP_MAX_RETRY": "5", "GDAL_HTTP_RETRY_DELAY": "1"}

#: GDAL's file systems that read over the network.
NETWORK_PREFIXES = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsihdfs",
                    "/vsiwebhdfs")
_STEP = 0.1      # seconds between two looks of a waiting thread at its helper and at the stop flag
_STOP = threading.Event()
_OURS: Dict[str, str] = {}      # the GDAL options this module set, and to what
_OURS_LOCK = threading.Lock()


def http_timeout() -> int:
    """The HTTP timeout in seconds: ``TILEWISE_HTTP_TIMEOUT``, else 30 (see :func:`parse_timeout`)."""
    text = os.environ.get(HTTP_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_HTTP_TIMEOUT
    return parse_timeout(text, HTTP_TIMEOUT_ENV)


def timeout_seconds(text: str, what: str = "--http-timeout") -> float:
    """The seconds ``text`` says (a number above 0); else a :class:`ParameterError` naming ``what``. The STAC
    client reads the setting this way; GDAL's reads through :func:`parse_timeout`."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{what}={text!r} is not a number of seconds above 0 (default {DEFAULT_HTTP_TIMEOUT}).")
    return value


def parse_timeout(text: str, what: str = "--http-timeout") -> int:
    """Whole seconds, at least 1 (a fraction is rounded up: GDAL counts whole seconds), from ``text``;
    else a :class:`ParameterError` naming ``what``.

    >>> parse_timeout("2.5"), parse_timeout("60")
    (3, 60)
    """
    return max(1, math.ceil(timeout_seconds(text, what)))


def http_config(timeout: Optional[int] = None) -> Dict[str, str]:
    """GDAL's HTTP options for a timeout of ``timeout`` seconds (default :func:`http_timeout`).

    >>> http_config(30) == {"GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    ...                     "GDAL_HTTP_LOW_SPEED_TIME": "30", "GDAL_HTTP_TIMEOUT": "120"}
    True
    """
    seconds = http_timeout() if timeout is None else timeout
    return {"GDAL_HTTP_CONNECTTIMEOUT": str(min(seconds, 10)), "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
            "GDAL_HTTP_LOW_SPEED_TIME": str(seconds), "GDAL_HTTP_TIMEOUT": str(4 * seconds)}


def apply_http_defaults() -> None:
    """Set GDAL's HTTP options (retries, :func:`http_config`) in this process's environment, where GDAL
    reads them at every request and whence worker processes and Dask tasks take them. A value the user
    set wins; one this module set follows the timeout setting when it changes."""
    wanted = {**HTTP_DEFAULTS, **http_config()}
    with _OURS_LOCK:
        for key, value in wanted.items():
            current = os.environ.get(key)
            if current is None or current == _OURS.get(key):
                os.environ[key] = _OURS[key] = value


def is_timeout(text: str) -> bool:
    """True when GDAL's message says a server took too long (no answer, too slow).

    >>> is_timeout("CURL error: Operation too slow. Less than 1 bytes/sec transferred the last 3 seconds")
    True
    """
    return bool(re.search(r"timed out|too slow|Timeout was reached", text, re.IGNORECASE))


def limits_in_effect() -> Dict[str, str]:
    """GDAL's HTTP options as GDAL sees them now: the environment's (the user's, or those of
    :func:`apply_http_defaults`), else those of the timeout setting."""
    return {key: os.environ.get(key) or value for key, value in http_config().items()}


def waited_out(seconds: float) -> bool:
    """True when a failed request lasted about as long as GDAL may wait for a silent server (GDAL does
    not always pass curl's "too slow" on: a failed pixel read only says it got 0 bytes)."""
    try:
        limit = float(limits_in_effect()["GDAL_HTTP_LOW_SPEED_TIME"])
    except ValueError:
        return False
    return seconds >= 0.9 * limit


#: The remote files GDAL names in a message: ``'/vsicurl/http://host/a.tif' does not exist in the file system``
#: (a VRT's failed read opens the quote with a backquote).
_GDAL_NAMES = re.compile(r"[`'](/vsi[a-z0-9_]+/[^'`]+)'")
_GAVE_UP: set = set()       # the remote files whose requests timed out in this process


def remote_names(text: str) -> List[str]:
    """The remote files (GDAL network paths) a GDAL message names.

    >>> remote_names("`/vsicurl/http://h/b.tif' does not exist in the file system; '/vsis3/k/c.tif' neither")
    ['/vsicurl/http://h/b.tif', '/vsis3/k/c.tif']
    """
    return [name for name in _GDAL_NAMES.findall(text) if any(p in name for p in NETWORK_PREFIXES)]


def gave_up_on(names: Iterable[str]) -> None:
    """Remember that the requests for ``names`` (GDAL network paths) timed out in this process: GDAL keeps
    such a file as missing, and its later reads fail at once saying only that it "does not exist"."""
    _GAVE_UP.update(names)


def given_up(names: Iterable[str]) -> bool:
    """True when a request for one of ``names`` timed out earlier in this process (:func:`gave_up_on`)."""
    return any(name in _GAVE_UP for name in names)


def forget_given_up() -> None:
    """Let GDAL ask again for the files given up on in this process (:func:`gave_up_on`): GDAL keeps them
    missing for the life of the process, so in a warm engine or a kept worker a server back up would stay
    unreadable until a restart. Called between runs (:func:`~.sources.close_all`); within a run, a file given
    up on fails at once."""
    if not _GAVE_UP:
        return
    clear = _gdal_function("VSICurlPartialClearCache")
    if clear is not None:
        for name in sorted(_GAVE_UP):
            clear(name.encode("utf-8"))
    _GAVE_UP.clear()


def _gdal_function(name: str):
    """``name`` of the GDAL library rasterio loaded (its own copy, in a wheel), or None where it cannot be
    found (rasterio not loaded yet, not Linux)."""
    import sys
    rasterio = sys.modules.get("rasterio")
    if rasterio is None:
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "libgdal" in line}
        import ctypes
        library = _rasterio_gdal(sorted(p for p in paths if os.path.basename(p).startswith("libgdal")),
                                 os.path.dirname(os.path.abspath(rasterio.__file__)))
        function = getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        return None
    if function is None:
        return None
    function.argtypes = [ctypes.c_char_p]
    function.restype = None
    return function


def _rasterio_gdal(libraries: List[str], package: str) -> Optional[str]:
    """Of the GDAL libraries loaded in this process, the one rasterio uses: its wheel's own copy (beside its
    package, in ``rasterio.libs``), or the only one loaded. Another copy (pyogrio's wheel brings its own GDAL)
    has its own cache, and clearing that one would not let rasterio's GDAL ask again.

    >>> _rasterio_gdal(["/e/pyogrio.libs/libgdal-1.so", "/e/rasterio.libs/libgdal-2.so"], "/e/rasterio")
    '/e/rasterio.libs/libgdal-2.so'
    >>> _rasterio_gdal(["/usr/lib/libgdal.so.32"], "/usr/lib/python3/dist-packages/rasterio")
    '/usr/lib/libgdal.so.32'
    >>> _rasterio_gdal(["/e/pyogrio.libs/libgdal-1.so", "/usr/lib/libgdal.so.32"], "/e/rasterio") is None
    True
    """
    own = [lib for lib in libraries if os.path.dirname(lib).startswith((package + os.sep, package + ".libs"))]
    if len(own) == 1:
        return own[0]
    return libraries[0] if len(libraries) == 1 else None


def timeout_message(url: str, doing: str = "Reading", where: str = "") -> str:
    """One message for a server that took too long: the URL (and ``where`` in it), the timeout, what to do."""
    limits = limits_in_effect()
    at = f" at {where}" if where else ""
    return (f"{doing} {url}{at} timed out: the server sent nothing, or less than 1 byte/s, for "
            f"{limits['GDAL_HTTP_LOW_SPEED_TIME']} s (or one request took more than "
            f"{limits['GDAL_HTTP_TIMEOUT']} s). Check that the server is up, or {TIMEOUT_HINT}.")


class Abandoned(Exception):
    """A blocking call was given up because the run is stopping (:func:`stop_blocked_calls`)."""


def stop_blocked_calls() -> None:
    """Every thread waiting in :func:`abandonable` gives up (raises :class:`Abandoned`) within a moment.
    Called when the process is asked to stop (a signal)."""
    _STOP.set()


def allow_blocked_calls() -> None:
    """Undo :func:`stop_blocked_calls` (a new run starts)."""
    _STOP.clear()


def abandonable(fn: Callable[[], T]) -> T:
    """``fn()``, run so that the caller can give up waiting for it: in a helper thread (with the caller's
    ``rasterio.Env`` options), waited for in short steps. A signal handler that raises in the waiting
    (main) thread ends the wait at once; other threads raise :class:`Abandoned` once
    :func:`stop_blocked_calls` was called. What ``fn`` returns after its caller gave up is closed.

    In a worker process (a child of :mod:`multiprocessing`, as the local pool's and Dask's are) ``fn``
    runs directly: its parent stops it by killing it.

    >>> abandonable(lambda: 6 * 7)
    42
    """
    if multiprocessing.parent_process() is not None:
        return fn()
    rio_env = _rasterio_options()
    box: Dict[str, object] = {}
    lock = threading.Lock()
    done = threading.Event()

    def target() -> None:
        try:
            if rio_env:
                import rasterio
                with rasterio.Env(**rio_env):
                    box["value"] = fn()
            else:
                box["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        with lock:
            done.set()
            if box.get("abandoned"):
                _close(box.get("value"))

    threading.Thread(target=target, name="tilewise-blocking-call", daemon=True).start()
    main = threading.current_thread() is threading.main_thread()
    try:
        while not done.wait(_STEP):
            if _STOP.is_set() and not main:
                raise Abandoned("stopped while waiting for a server")
    except BaseException:
        with lock:
            box["abandoned"] = True
            if done.is_set():
                _close(box.get("value"))
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _rasterio_options() -> Dict[str, object]:
    import sys
    env = sys.modules.get("rasterio.env")
    if env is None or not env.hasenv():
        return {}
    return dict(env.getenv())


def _close(value: object) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing what is abandoned anyway
            log.debug("Closing %r failed", value, exc_info=True)

"""Tie engine processes to the process that started them.

If QGIS (or whatever launched the engine) dies, the engine and its workers
must not run on as orphans. On Linux the kernel delivers SIGKILL when the
parent dies (``PR_SET_PDEATHSIG``); elsewhere a daemon thread waits for the
parent to close our stdin.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to kill this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_stdin() -> None:
    """Exit the whole process group when stdin reaches end of file."""
    def wait() -> None:
        try:
            while sys.stdin.buffer.read(1024):
                pass
        except (OSError, ValueError):
            pass
        if hasattr(os, "killpg"):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os._exit(70)

    threading.Thread(target=wait, name="tilewise-lifeline", daemon=True).start()

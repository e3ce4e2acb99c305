"""Tie engine processes to the process that started them.

If QGIS (or whatever launched the engine) dies, the engine and its workers
must not run on as orphans. On Linux the kernel delivers a signal when the
parent dies (``PR_SET_PDEATHSIG``); elsewhere a daemon thread waits for the
parent to close our stdin.

A command-line run or the engine process asked to stop (SIGTERM, SIGHUP: ``kill``,
``timeout``, a closed terminal, a dying parent) stops as on Ctrl+C
(:func:`stop_on_signals`): the run cleans up after itself, or keeps its finished
tiles when resuming, instead of dying on the spot. Whatever the run is waiting for, even a server that
never answers (see :func:`tilewise.core.io.network.abandonable`), it stops within moments.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, Optional, Sequence

from ..io.network import allow_blocked_calls, stop_blocked_calls

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` (default SIGKILL) to this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP); handled like Ctrl+C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[dict]:
    """Within the block, the first of ``signals`` raises :class:`Stopped` in the main thread; the
    same signals again (``timeout`` sends one twice) are ignored while the run cleans up, so
    only SIGKILL cuts the cleanup short. Worker processes forked meanwhile inherit the handler
    and die of these signals as they would without it (a process pool stops its workers so).
    Yields a dict whose ``"signal"`` is the number of the signal received, if any.

    These signals and Ctrl+C (SIGINT, which still raises :class:`KeyboardInterrupt` each time) also make
    every thread waiting for a blocked call give up (:func:`~tilewise.core.io.network.stop_blocked_calls`),
    so no thread of the run waits for a silent server.
    """
    owner = os.getpid()
    seen: dict = {"signal": None}

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if seen["signal"] is not None:
            return
        seen["signal"] = signum
        stop_blocked_calls()
        raise Stopped(signum)

    def interrupt(signum: int, frame: object) -> None:
        if os.getpid() == owner:
            stop_blocked_calls()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    allow_blocked_calls()
    # a signal ignored on purpose (nohup ignores SIGHUP) stays ignored
    previous = {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not one the caller installed
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    try:
        yield seen
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def stopped_by(exc: BaseException, seen: Optional[dict] = None) -> Optional[str]:
    """The name of the signal (or ``"Ctrl+C"``) that stopped a run, if ``exc`` (or a signal seen
    by :func:`stop_on_signals`) says it was stopped, else None."""
    if isinstance(exc, Stopped):
        return signal_name(exc.signum)
    if seen and seen.get("signal") is not None:
        return signal_name(seen["signal"])
    if isinstance(exc, KeyboardInterrupt):
        return "Ctrl+C"
    return None


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

"""One run owns an output at a time: a lock file beside it, held by the process that drives the run.

Two runs writing one output would share its work folder and its partial file: one could
remove the other's tiles, or finish with the other's data under its own name. So before a
run removes or writes anything of an output (work folder, partial file, the output itself)
it takes the output's lock, ``.NAME.tilewise-lock`` beside it (:func:`~.paths.lock_path`),
and keeps it until its last rename and cleanup are done.

- The lock is the kernel's: ``flock`` on POSIX, ``msvcrt.locking`` on Windows. It ends
  with the process that holds it, however that process ends (``kill -9``, a crash, a
  reboot): a lock file left behind holds nothing and blocks nobody.
- The holder writes who it is into the file (pid, host, start time, operation), so a
  second run's message can name it: :class:`~tilewise.core.errors.OutputBusyError`.
  Asked to (``wait``), the second run waits for the first to finish instead.
- Worker processes forked while a lock is held do not hold it (they close their copy).
- The holder removes the file when it releases the lock; a run that locked a file that
  was removed meanwhile (by its previous holder) locks the new one instead.

Standard library only: the QGIS side uses it too (:func:`lock_if_free`, before it removes
what a stopped engine left).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from typing import Dict, Iterable, Iterator, List, Optional

from ..errors import OutputBusyError, OutputError
from ..paths import lock_path

log = logging.getLogger(__name__)

__all__ = ["OutputLock", "output_locks", "lock_if_free", "read_holder", "describe_holder"]

#: Seconds between two tries of a run that waits for a busy output.
POLL_SECONDS = 0.25
#: Windows locks a byte range; this byte, far past the holder's note, so that others can read the note.
_WINDOWS_BYTE = 0x7FFFFFF0

if os.name == "nt":  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK, errno.EAGAIN):
                return False
            raise

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


#: errno of a file system without locks (some network and FUSE file systems)
_NO_LOCKS = tuple(getattr(errno, name) for name in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS")
                  if hasattr(errno, name))

#: The locks this process holds, by file descriptor (closed in forked children: see _forget_in_child).
_HELD: Dict[int, "OutputLock"] = {}


def _forget_in_child() -> None:
    """A forked worker closes its copies of the lock files: the lock stays with the process that drives
    the run (closing a copy does not release it), and a worker outliving that process holds nothing."""
    for fd, lock in list(_HELD.items()):
        lock.fd = None
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class OutputLock:
    """The lock of one output (a file, or the folder of a set of outputs), taken by :meth:`acquire`.

    ``operation``: what the run does, for the message another run gets (e.g. ``"composite median"``).
    """

    def __init__(self, output: str, operation: str = "") -> None:
        self.output = output
        self.path = lock_path(output)
        self.operation = operation
        self.fd: Optional[int] = None
        #: True when the file system has no locks: the run goes on unprotected (:meth:`acquire` says so)
        self.unsupported = False

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True); False if another run holds it."""
        while True:
            fd = self._open()
            try:
                try:
                    locked = _try_lock(fd)
                except OSError as exc:
                    if exc.errno not in _NO_LOCKS:
                        raise
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        os.remove(self.path)        # it stands for nothing here
                    self.unsupported = True
                    return True
                if not locked:
                    os.close(fd)
                    return False
                if not _same_file(fd, self.path):   # released and removed by its holder meanwhile: again
                    _unlock(fd)
                    os.close(fd)
                    continue
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            self.fd = fd
            _HELD[fd] = self
            self._write_note()
            return True

    def acquire(self, wait: bool = False, poll: float = POLL_SECONDS) -> None:
        """Take the lock; if another run holds it, :class:`OutputBusyError` naming that run, or (``wait``)
        wait for it (the log says so once)."""
        said = False
        while not self.try_acquire():
            holder = read_holder(self.output)
            if not holder:      # taken a moment ago, its note not written yet
                time.sleep(0.05)
                holder = read_holder(self.output)
            if not wait:
                raise OutputBusyError(busy_message(self.output, holder))
            if not said:
                log.info(f"{_name(self.output)} is being written by another Tilewise run ({describe_holder(holder)}): "
                         "waiting for it to finish")
                said = True
            time.sleep(poll)
        if said:
            log.info(f"{_name(self.output)} is free: starting")
        if self.unsupported:
            log.warning(f"the file system of {self.output} has no file locks: another Tilewise run writing "
                     "it at the same time would not be stopped")

    def release(self) -> None:
        """Remove the lock file and release the lock (in that order: a run waiting for it then locks a
        new file, never the removed one)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        _HELD.pop(fd, None)
        try:
            if os.name != "nt":
                with contextlib.suppress(OSError):
                    os.remove(self.path)
            with contextlib.suppress(OSError):
                _unlock(fd)
        finally:
            os.close(fd)
        if os.name == "nt":  # pragma: no cover - Windows removes no file another process holds open
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            pass                    # another user's lock file: locked as well through a read-only descriptor
        try:
            return os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise OutputError(f"Cannot create the lock file {self.path} beside the output "
                              f"({exc.strerror}); check that its folder exists and can be written.") from None

    def _write_note(self) -> None:
        # no command line: it may carry credentials (a signed URL, a header), and the note is world-readable
        note = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "operation": self.operation}
        data = json.dumps(note).encode("utf-8")
        # written over whatever a crashed run left, then cut to its length: a file cut to nothing and written
        # again is flushed to the disk when it is closed (ext4's auto_da_alloc), 2 ms of every run
        with contextlib.suppress(OSError):   # the note is for messages only: the lock is what counts
            os.lseek(self.fd, 0, os.SEEK_SET)
            os.write(self.fd, data)
            os.ftruncate(self.fd, len(data))

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        st, fst = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def read_holder(output: str) -> dict:
    """What the run holding the lock of ``output`` wrote about itself (empty if nothing readable)."""
    try:
        with open(lock_path(output), "rb") as f:
            note = json.loads(f.read(4096).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def describe_holder(holder: dict) -> str:
    """``"composite median, pid 1234 on host, started 16:40:12"`` (what is known of it)."""
    parts: List[str] = []
    if holder.get("operation"):
        parts.append(str(holder["operation"]))
    if holder.get("pid"):
        host = f" on {holder['host']}" if holder.get("host") else ""
        parts.append(f"pid {holder['pid']}{host}")
    started = holder.get("started")
    if isinstance(started, (int, float)):
        same_day = time.strftime("%Y-%m-%d", time.localtime(started)) == time.strftime("%Y-%m-%d")
        parts.append("started " + time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S",
                                                time.localtime(started)))
    return ", ".join(parts) or "no details recorded yet"


def busy_message(output: str, holder: dict) -> str:
    return (f"{output} is being written by another Tilewise run ({describe_holder(holder)}); wait for it to "
            "finish or choose another output. To wait for it instead: --wait-if-busy on the command line, "
            "wait_if_busy=True in Python.")


def _name(output: str) -> str:
    return os.path.basename(output.rstrip("/\\")) or output


@contextlib.contextmanager
def output_locks(outputs: Iterable[str], operation: str = "", wait: bool = False) -> Iterator[List[OutputLock]]:
    """Within the block, this process holds the lock of every one of ``outputs`` (taken in sorted order,
    so two runs that share several outputs cannot each wait for the other); see :meth:`OutputLock.acquire`.

    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "median.tif")
    >>> with output_locks([out], "composite median") as held:
    ...     os.path.exists(held[0].path)
    True
    >>> os.path.exists(lock_path(out))
    False
    """
    held: List[OutputLock] = []
    try:
        for output in sorted({os.path.abspath(o) for o in outputs}):
            lock = OutputLock(output, operation)
            lock.acquire(wait)
            held.append(lock)
        yield held
    finally:
        for lock in reversed(held):
            lock.release()


@contextlib.contextmanager
def lock_if_free(output: str) -> Iterator[bool]:
    """Within the block, hold the lock of ``output`` if no run holds it (yields True), else yields False:
    for removing what a stopped run left of ``output`` only when no other run is writing it."""
    lock = OutputLock(output, "cleaning up after a stopped run")
    try:
        free = lock.try_acquire()
    except (OutputError, OSError):
        free = True     # no lock file can be made there (no such folder): nothing of a run can be there either
    try:
        yield free
    finally:
        lock.release()

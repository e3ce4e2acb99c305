"""Disk space: an estimate before a run starts, and one clear message when the disk fills up.

A run writes its tiles into a work folder beside the output, then the COG (with
overviews) beside them, and only then removes the tiles: at its peak it holds
both. The estimate counts them before compression (an upper bound: compression
usually saves a good part). GDAL reports a full disk only as "Write failed" (the
reason goes to its log), so a failed write is taken for a full disk when the
folder has less room left than the write needed.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass
from typing import Optional

from ..errors import DiskFullError

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "not enough space")
#: A failed write with less room left than it needed (up to this much) is a full disk.
_ROOM_CAP = 64 * 2**20


@dataclass(frozen=True)
class SpaceNeed:
    """Bytes a run needs in ``folder``, before compression: tiles still to compute, then the output."""

    folder: str
    tiles: int
    output: int

    @property
    def total(self) -> int:
        return self.tiles + self.output

    def describe(self) -> str:
        parts = f"{human_size(self.tiles)} of tiles, then " if self.tiles else ""
        return (f"up to {human_size(self.total)} ({parts}{human_size(self.output)} for the output with "
                "overviews, before compression)")


def human_size(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``.

    >>> human_size(0), human_size(1536), human_size(3 * 2**30)
    ('0 B', '1.5 KiB', '3.0 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_bytes(folder: str) -> Optional[int]:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def space_warning(need: SpaceNeed) -> Optional[str]:
    """A warning when ``need.folder`` has less free space than the run may need, else None."""
    free = free_bytes(need.folder)
    if free is None or free >= need.total:
        return None
    return (f"only {human_size(free)} free in {need.folder}; this run needs {need.describe()}. "
            "It may run out of space: free some, or write the output to another disk.")


def disk_full(need: SpaceNeed) -> DiskFullError:
    """The one message for a full disk: the folder, the space needed and the space free."""
    free = free_bytes(need.folder)
    have = f"has {human_size(free)} free" if free is not None else "is full"
    return DiskFullError(f"The disk is full: {need.folder} {have}, and this run needs {need.describe()}. "
                         "Free some space, or write the output to another disk.")


def is_disk_full(exc: BaseException, folder: str, nbytes: int = 0) -> bool:
    """True if ``exc``, raised by a write of ``nbytes`` into ``folder``, means the disk is full."""
    seen = exc
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return True
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        if any(text in str(seen).lower() for text in _FULL_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    free = free_bytes(folder)
    return free is not None and free < max(min(nbytes, _ROOM_CAP), 64 * 1024)

"""Headers of local rasters kept between the runs of one process (the warm engine), while the files are unchanged.

Planning opens every input to read its header (:func:`~.sources.describe_raster`): for a tiny job in a QGIS
session (12 files of 81 x 33 pixels) those opens were a third of the engine's time, for the same files as the
previous run. A header read here is kept, keyed by what would change with the file: the path as given, and
for the file, each side-car GDAL read with it (``.aux.xml``, ``.ovr``...) and their folder (a side-car added
or removed changes the folder), the device, inode, size, modification and change times. Any difference reads
the header anew. Not kept: remote inputs, VRTs and GDAL virtual paths (what they read may change without
them), and files or folders changed in the last :data:`SETTLE_SECONDS` (a file rewritten twice within one tick
of the file system's clock keeps its times: git's "racily clean" case).

>>> key = file_key(__file__)
>>> key is not None and key == file_key(__file__)
True
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Callable, Optional, Tuple, TypeVar

T = TypeVar("T")

#: Headers kept at most (least recently used go first).
MAX_HEADERS = 4096
#: Files or folders changed this recently are read anew every time.
SETTLE_SECONDS = 2.0

_KEPT: "OrderedDict[str, Tuple[tuple, object]]" = OrderedDict()
_LOCK = threading.Lock()


def file_key(path: str) -> Optional[tuple]:
    """What identifies the present state of ``path`` (None if it cannot be read, or changed just now)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if time.time() - max(st.st_mtime, st.st_ctime) < SETTLE_SECONDS:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _state(path: str, files: Tuple[str, ...]) -> Optional[tuple]:
    names = dict.fromkeys((path, os.path.dirname(os.path.abspath(path)) or ".", *files))
    keys = tuple(file_key(name) for name in names)
    return None if any(k is None for k in keys) else (tuple(names), keys)


def remembered(path: str, read: Callable[[str], T], files: Callable[[T], Tuple[str, ...]]) -> T:
    """``read(path)``, or the value it gave before for the same unchanged file (see the module's doc);
    ``files(value)``: the files GDAL read for it, the path's own among them."""
    with _LOCK:
        kept = _KEPT.get(path)
    if kept is not None:
        state, value = kept
        if _state(path, state[0][2:]) == state:
            with _LOCK:
                _KEPT.move_to_end(path)
            return value  # type: ignore[return-value]
    value = read(path)
    state = _state(path, tuple(f for f in files(value) if f != path))
    with _LOCK:
        if state is None:
            _KEPT.pop(path, None)
        else:
            _KEPT[path] = (state, value)
            _KEPT.move_to_end(path)
            while len(_KEPT) > MAX_HEADERS:
                _KEPT.popitem(last=False)
    return value


def forget() -> None:
    """Drop every kept header."""
    with _LOCK:
        _KEPT.clear()

"""Writing a file so that no reader ever sees half of it: the one home of write-then-rename.

The data goes to a hidden name beside the file (:func:`tilewise.core.paths.partial_name`), which is renamed
over the file when the writing ends; an error (or Ctrl+C) removes it instead, and leaves an older file at
``path`` as it was.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with atomic_write(os.path.join(folder, "a.json")) as f:
...     _ = f.write("{}")
>>> sorted(os.listdir(folder))
['a.json']
>>> with atomic_write(os.path.join(folder, "a.json")) as f:  # doctest: +IGNORE_EXCEPTION_DETAIL
...     _ = f.write("{half")
...     raise ValueError("stopped half way")
Traceback (most recent call last):
ValueError: stopped half way
>>> sorted(os.listdir(folder)), open(os.path.join(folder, "a.json")).read()
(['a.json'], '{}')
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator

from ..paths import PARTIAL_MARK, partial_name


@contextlib.contextmanager
def staged_path(path: str, unique: bool = False) -> Iterator[str]:
    """The name to write ``path`` under (for writers that take a name, such as GDAL's); renamed to ``path``
    when the block ends, removed if it raises.

    ``unique``: a new file created exclusively, so that writers of one folder never share a name and a
    link planted under the name is never followed (a folder others write to, e.g. a STAC search's);
    else :func:`~tilewise.core.paths.partial_name`, the same every time (a folder the run owns).
    """
    tmp = new_partial(path) if unique else partial_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, fsync: bool = False, unique: bool = False) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that is renamed into place when the block ends (text is UTF-8); ``fsync``: on
    the disk before the rename (a journal that must survive a power cut)."""
    with staged_path(path, unique) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def new_partial(path: str) -> str:
    """A new, empty hidden file beside ``path`` with a name no other writer has (created exclusively)."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name[:40]}.", suffix=PARTIAL_MARK + os.path.splitext(name)[1], dir=folder)
    os.close(fd)
    return tmp


def remove_if_there(path: str) -> None:
    """Remove the file ``path`` if it is there (any other error is raised)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def remove_with_sidecar(path: str) -> None:
    """Remove ``path`` and the ``.aux.xml`` side-car GDAL may have written beside it, if they are there."""
    remove_if_there(path)
    remove_if_there(path + ".aux.xml")

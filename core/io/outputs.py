"""Checks on the output path before any work: a GeoTIFF name, and never one of the inputs.

Writing the output onto a file an input reads would destroy that input (the
output replaces the file when it is complete). The check compares real paths,
so it sees through symbolic links, hard links, ``file://`` URLs, GDAL virtual
paths such as ``/vsizip//data/a.zip/x.tif`` or ``/vsigzip//data/a.tif.gz`` and
the source files of a VRT (GDAL's list of the files a dataset reads).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import OutputError

_VSI_PREFIX = re.compile(r"^/vsi[a-z0-9_?]+/(?:\d+_\d+,)?", re.IGNORECASE)   # /vsisubfile/OFFSET_SIZE,path


def check_not_an_input(output: str, inputs: Iterable[Tuple[str, Sequence[str]]]) -> None:
    """Raise :class:`OutputError` if writing ``output`` would overwrite a file an input reads.

    ``inputs`` holds ``(path as given, files GDAL lists for it)`` for every input, mask and
    reference raster. Nothing is opened here.
    """
    target = _identity(output)
    for given, files in inputs:
        for candidate in [given, *files]:
            local = local_file(candidate)
            if local is None or _identity(local) != target:
                continue
            if candidate == given:
                raise OutputError(f"The output {output} is also an input ({given}); writing it would destroy "
                                  "that input. Choose another output file.")
            raise OutputError(f"The output {output} is a file the input {given} reads; writing it would "
                              "destroy data of that input. Choose another output file.")


def local_file(path: str) -> Optional[str]:
    """The local file behind ``path``: itself, the file of a ``file://`` URL, or the archive or file a
    GDAL virtual path reads (``/vsizip//data/a.zip/x.tif`` -> ``/data/a.zip``); None for remote inputs.

    >>> local_file("/vsisubfile/0_100,/data/a.tif"), local_file("https://host/a.tif")
    ('/data/a.tif', None)
    """
    if not path:
        return None
    if path.lower().startswith("file://"):
        path = path[7:]
    if path.startswith("/vsi"):
        inner = path
        while True:
            stripped = _VSI_PREFIX.sub("", inner, count=1)
            if stripped == inner:
                break
            inner = "/" + stripped.lstrip("/") if stripped.startswith("/") else stripped
        if inner.startswith(("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsimem")) or "://" in inner:
            return None
        inner = inner.replace("{", "").replace("}", "")
        return _existing_prefix(inner) or inner
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        return None
    return path


def _existing_prefix(path: str) -> Optional[str]:
    """The longest leading part of ``path`` that is a file (an archive inside a virtual path)."""
    probe = path
    while probe and probe != os.path.dirname(probe):
        if os.path.isfile(probe):
            return probe
        probe = os.path.dirname(probe)
    return None


def _identity(path: str) -> Tuple:
    """What makes two paths the same file: device and inode when it exists (``stat`` follows links itself: no
    ``realpath``, whose ``lstat`` of every parent folder cost a tiny job 3 ms for its 12 inputs), else its
    real path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(os.path.realpath(path)))


def describe_inputs(infos: Iterable) -> List[Tuple[str, Sequence[str]]]:
    """``(path, files)`` of :class:`~tilewise.core.io.sources.RasterInfo` values, for :func:`check_not_an_input`."""
    return [(info.path, info.files) for info in infos]


@contextlib.contextmanager
def output_folder(folder: str) -> Iterator[str]:
    """The folder a set of outputs goes to (e.g. one COG per scene), created if missing; if the block
    fails (an output refused before any work) and the folder was made here, it is removed again."""
    if not folder:
        raise OutputError("No output folder was given.")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"The output folder is a file: {folder}")
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def unique_names(names: Sequence[str], what: str) -> List[str]:
    """``names`` if no two are the same, else an :class:`OutputError` naming the first repeated one.

    >>> unique_names(["a_ndvi.tif", "b_ndvi.tif"], "scenes")
    ['a_ndvi.tif', 'b_ndvi.tif']
    """
    seen = set()
    for name in names:
        if name in seen:
            raise OutputError(f"Two {what} would both be written to {name}; give the {what} distinct file names.")
        seen.add(name)
    return list(names)

"""Uncompressed COGs written in place: workers write their pixels straight into the final file's blocks.

An uncompressed COG has a layout known before any pixel is computed: GDAL's COG driver writes the
header (the IFDs of the full resolution and of each overview level, their tag arrays and the "ghost
area" that describes the layout), then the blocks of the smallest overview level, of the next one...
and of the full resolution last; each image's 512 x 512 blocks in row-major order, each as a 4-byte
leader (the block's size), the block's bytes (pixel-interleaved, partial edge blocks padded with
zeros) and a 4-byte trailer (the block's last 4 bytes repeated). Every block has the same size, so
where each one starts follows from the header's size.

:func:`plan_layout` (in the parent, before the tiles run) lets GDAL's COG driver write that
header, with the options :func:`~.cog.write_cog` uses, from an empty VRT of the output (same grid,
bands, descriptions, nodata; empty overview levels declared as the tile route declares the workers')
with ``SPARSE_OK``, so no block is written; it then fills in the block offsets and sizes GDAL gives a
complete file and extends the file to its full size (the unwritten blocks are holes, read as zeros).
:func:`write_tile_in_place` (in a worker) writes a tile's part of each block it covers with
``os.pwrite``, at full resolution and at the overview levels the worker builds
(:mod:`.overviews`); the levels above those are GDAL's, computed at the end from the last of them
and written in the same way. The result is byte for byte the file the tile-files route (tiles -> VRT
-> COG driver) writes; the tests compare both.

The file is made in the run's work folder and renamed to the output when every tile is in it, so a
reader never sees a half-written output and a resumed run reopens it.

Tiles need not be aligned with the blocks: a tile covering a block's whole width writes its rows
in one piece, others write row by row. Neighbouring tiles write disjoint bytes of a shared block;
the leader is written by the tile holding the block's top-left pixel and the trailer by the tile
holding its bottom-right pixel, which holds the block's last 4 bytes when tile edges fall on
multiples of 4 pixels (:func:`fits`).
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import DiskFullError, OutputError
from ..grid import Tile
from ..options import OutputSpec
from .atomic import remove_with_sidecar
from .diskspace import is_disk_full
from . import tiff



def fits(spec: OutputSpec, tile_size: int, worker_levels: int = 0, overview_levels: int = 0) -> bool:
    """True if an output of ``spec`` cut in tiles of ``tile_size`` can be written in place: uncompressed;
    without overviews (``overview_levels``: how many the output's size gives it), or with at least one of
    them built by the workers (``worker_levels``: GDAL computes those above from the last of them, as the
    tile route does); and tile edges on multiples of 4 pixels at every level the workers write (so one tile
    holds each block's last 4 bytes, which the trailer repeats).

    >>> from tilewise.core.options import OutputSpec
    >>> fits(OutputSpec("a.tif", compression="NONE", overviews=False), 512), fits(OutputSpec("a.tif"), 512)
    (True, False)
    >>> raw = OutputSpec("a.tif", compression="NONE")
    >>> fits(raw, 1024, worker_levels=0, overview_levels=2), fits(raw, 1024, worker_levels=1, overview_levels=2)
    (False, True)
    """
    if spec.compression != "NONE" or tile_size <= 0 or not hasattr(os, "pwrite"):   # Windows has no pwrite
        return False
    levels = overview_levels if spec.overviews else 0
    if levels and worker_levels < 1:
        return False                       # GDAL would compute every level from the full resolution
    return all((tile_size >> level) % 4 == 0 for level in range(min(worker_levels, levels) + 1))


@dataclass(frozen=True)
class Layout(tiff.Blocked):
    """Where the blocks of an uncompressed single-IFD COG are: block ``(row, col)`` of ``block`` x ``block``
    pixels starts at ``first + (row * blocks_across + col) * (block_bytes + 8)`` in ``path``."""

    path: str
    width: int
    height: int
    bands: int
    dtype: str              # with its byte order, e.g. "<f4"
    block: int
    first: int
    order: str = "<"        # the file's byte order

    @property
    def pixel_bytes(self) -> int:
        return self.bands * np.dtype(self.dtype).itemsize

    @property
    def block_bytes(self) -> int:
        return self.block * self.block * self.pixel_bytes

    @property
    def end(self) -> int:
        """Where its last block's trailer ends (for the full resolution, the last image in the file: the file's
        size)."""
        return self.first - 4 + self.blocks_across * self.blocks_down * (self.block_bytes + 8)

    def offset(self, row: int, col: int) -> int:
        """Where the bytes of block ``(row, col)`` start (its leader is the 4 bytes before)."""
        return self.first + (row * self.blocks_across + col) * (self.block_bytes + 8)


def plan_layout(vrt_path: str, path: str, spec: OutputSpec, options: Dict[str, str]) -> Tuple[Layout, ...]:
    """Make ``path`` the COG GDAL's COG driver writes from ``vrt_path`` (an empty VRT of the output, with its
    overviews declared if it has any) with ``options`` (:func:`~.cog.cog_options`), every block allocated but
    none written; return the layout of each of its images, full resolution first, then the overview levels.

    Raises :class:`OutputError` if GDAL's header is not the layout this module writes."""
    from rasterio.shutil import copy as gdal_copy
    remove_with_sidecar(path)
    try:
        gdal_copy(vrt_path, path, driver="COG", **dict(options, SPARSE_OK="TRUE"))
    except Exception as exc:
        full = is_disk_full(exc, os.path.dirname(path))
        remove_with_sidecar(path)
        if full:
            raise DiskFullError(f"The disk is full: preparing {spec.path} in {os.path.dirname(path)} failed.") \
                from None
        raise
    header = os.path.getsize(path)
    with open(path, "r+b") as f:
        images = _read_header(f, path, spec, header)
        for layout, offsets, sizes in images:
            blocks = layout.blocks_across * layout.blocks_down
            tiff.write_array(f, layout.order, offsets, [layout.first + i * (layout.block_bytes + 8)
                                                        for i in range(blocks)])
            tiff.write_array(f, layout.order, sizes, [layout.block_bytes] * blocks)
        f.truncate(images[0][0].end)
        try:
            _allocate(f.fileno(), images[0][0].end)
        except OSError as exc:
            if is_disk_full(exc, os.path.dirname(path), images[0][0].end):
                raise DiskFullError(f"The disk is full: preparing {spec.path} in {os.path.dirname(path)} failed.") \
                    from None
            raise
    return tuple(layout for layout, _, _ in images)


def _allocate(fd: int, size: int) -> None:
    """Reserve the file's blocks on disk (Linux ``fallocate``; elsewhere, or where the file system cannot,
    the blocks stay holes until written): a full disk shows here, before any work, and flushing the file
    while workers write into it never has to allocate blocks (which holds them up)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fallocate = libc.fallocate64 if hasattr(libc, "fallocate64") else libc.fallocate
    except (OSError, AttributeError):
        return
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(fd, 0, 0, size) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err))


def open_layout(path: str, spec: OutputSpec) -> Tuple[Layout, ...]:
    """The layouts of ``path`` made by :func:`plan_layout` (in a resumed run); :class:`OutputError` if the file
    is not that (damaged, or of another output)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        images = _read_header(f, path, spec, None)
    layouts = tuple(layout for layout, _, _ in images)
    if size != layouts[0].end:
        raise OutputError(f"The partial output {path} has {size} bytes, {layouts[0].end} expected.")
    return layouts


def write_tile_in_place(layout: Layout, tile: Tile, data: np.ndarray) -> None:
    """Write ``tile``'s pixels ``data`` (bands, rows, cols) into the blocks of the file at ``layout.path``."""
    data = data.astype(layout.dtype, copy=False)
    if data.shape != (layout.bands, tile.height, tile.width):
        raise ValueError(f"{tile.name}: {data.shape} values for {layout.bands} bands of {tile.height} x {tile.width}")
    b = layout.block
    fd = os.open(layout.path, os.O_WRONLY)
    try:
        for row in range(tile.row_off // b, (tile.row_off + tile.height - 1) // b + 1):
            for col in range(tile.col_off // b, (tile.col_off + tile.width - 1) // b + 1):
                _write_block_part(fd, layout, tile, data, row, col)
    except OSError as exc:
        if is_disk_full(exc, os.path.dirname(layout.path), data.nbytes):
            raise DiskFullError(f"The disk is full: writing {tile.name} into {layout.path} failed.") from None
        raise
    finally:
        os.close(fd)


def _write_block_part(fd: int, layout: Layout, tile: Tile, data: np.ndarray, row: int, col: int) -> None:
    b, pb = layout.block, layout.pixel_bytes
    r0, c0 = row * b, col * b                                       # the block, cut to the grid
    r1, c1 = min(r0 + b, layout.height), min(c0 + b, layout.width)
    a0, a1 = max(r0, tile.row_off), min(r1, tile.row_off + tile.height)     # its part in the tile
    b0, b1 = max(c0, tile.col_off), min(c1, tile.col_off + tile.width)
    pixels = np.moveaxis(data[:, a0 - tile.row_off:a1 - tile.row_off, b0 - tile.col_off:b1 - tile.col_off], 0, -1)
    start = layout.offset(row, col)
    leader = a0 == r0 and b0 == c0
    trailer = a1 == r1 == r0 + b and b1 == c1 == c0 + b   # else the block's last 4 bytes are zero padding
    if b0 == c0 and b1 == c1:                       # whole rows of the block (with their padding): one write
        rows = a1 - a0
        buf = np.zeros(4 * leader + rows * b * pb + 4 * trailer, np.uint8)
        body = buf[4 * leader:4 * leader + rows * b * pb].view(layout.dtype).reshape(rows, b, layout.bands)
        body[:, :b1 - b0, :] = pixels
        if leader:
            buf[:4] = np.frombuffer(_leader(layout), np.uint8)
        if trailer:
            buf[-4:] = buf[-8:-4]
        _pwrite(fd, buf, start - 4 * leader + (a0 - r0) * b * pb)
        return
    rows_bytes = np.ascontiguousarray(pixels).view(np.uint8).reshape(a1 - a0, (b1 - b0) * pb)
    for y in range(a1 - a0):
        _pwrite(fd, rows_bytes[y], start + ((a0 - r0 + y) * b + (b0 - c0)) * pb)
    if leader:
        _pwrite(fd, _leader(layout), start - 4)
    if trailer:
        _pwrite(fd, rows_bytes[-1, -4:].tobytes(), start + layout.block_bytes)


def _pwrite(fd: int, data, offset: int) -> None:
    """All of ``data`` at ``offset`` (a write may be cut short, e.g. by a full disk: then it fails)."""
    view = memoryview(data).cast("B")
    while len(view):
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[written:], offset + written


def _leader(layout: Layout) -> bytes:
    return struct.pack(layout.order + "I", layout.block_bytes)


# -- GDAL's header -----------------------------------------------------------------------------------------------

def _read_header(f, path: str, spec: OutputSpec,
                 header: Optional[int]) -> List[Tuple[Layout, tiff.TagArray, tiff.TagArray]]:
    """Check that the file GDAL made is an uncompressed, pixel-interleaved, tiled COG whose blocks have leaders
    and trailers (no mask); return, for each of its images (full resolution first), its layout and where its
    block offsets and sizes are listed. ``header``: the header's size in a file GDAL just made (no block
    written: every offset and size is 0); None: a file :func:`plan_layout` made (its offsets are checked)."""
    try:
        order, _, images = tiff.read_cog(f)
    except ValueError as exc:
        raise OutputError(f"{path} {exc}.") from None
    dtype = np.dtype(spec.dtype).newbyteorder(order)
    if any(image.compression != 1 or image.bits != dtype.itemsize * 8 for image in images):
        raise OutputError(f"{path} is not an uncompressed, pixel-interleaved COG of {spec.dtype} values "
                          "without a mask.")
    if header is None:                   # the smallest overview's blocks come first, right after the header
        header = tiff.read_array(f, order, replace(images[-1].offsets, count=1))[0] - 4
        planned = True
    else:
        planned = False
    out = []
    first = header + 4
    for image in reversed(images):          # the data: smallest overview first
        layout = Layout(path, image.width, image.height, image.bands, dtype.str, image.block, first, order)
        first = layout.end + 4
        for array, expected in ((image.offsets, [layout.offset(i // layout.blocks_across, i % layout.blocks_across)
                                                 for i in range(image.offsets.count)]),
                                (image.sizes, [layout.block_bytes] * image.sizes.count)):
            if list(tiff.read_array(f, order, array)) != (expected if planned else [0] * array.count):
                raise OutputError(f"{path}: its blocks are not where this layout puts them.")
        out.append((layout, image.offsets, image.sizes))
    return out[::-1]


__all__ = ["Layout", "fits", "plan_layout", "open_layout", "write_tile_in_place"]

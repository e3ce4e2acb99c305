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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DiskFullError, OutputError
from ..grid import Tile
from ..options import OutputSpec
from .atomic import remove_if_there
from .diskspace import is_disk_full

#: TIFF tags read from GDAL's header.
_WIDTH, _LENGTH, _BITS, _COMPRESSION, _SAMPLES, _PLANAR = 256, 257, 258, 259, 277, 284
_TILE_WIDTH, _TILE_LENGTH, _TILE_OFFSETS, _TILE_BYTE_COUNTS = 322, 323, 324, 325
_SUBFILE_TYPE = 254
_TYPE_SIZES = {3: 2, 4: 4, 16: 8}           # SHORT, LONG, LONG8
_TYPE_CODES = {3: "H", 4: "I", 16: "Q"}
_GHOST = b"GDAL_STRUCTURAL_METADATA_SIZE="
_GHOST_NEEDS = (b"LAYOUT=IFDS_BEFORE_DATA", b"BLOCK_ORDER=ROW_MAJOR", b"BLOCK_LEADER=SIZE_AS_UINT4",
                b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED")


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
class Layout:
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
    def blocks_across(self) -> int:
        return -(-self.width // self.block)

    @property
    def blocks_down(self) -> int:
        return -(-self.height // self.block)

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
    _remove_with_sidecar(path)
    try:
        gdal_copy(vrt_path, path, driver="COG", **dict(options, SPARSE_OK="TRUE"))
    except Exception as exc:
        full = is_disk_full(exc, os.path.dirname(path))
        _remove_with_sidecar(path)
        if full:
            raise DiskFullError(f"The disk is full: preparing {spec.path} in {os.path.dirname(path)} failed.") \
                from None
        raise
    header = os.path.getsize(path)
    with open(path, "r+b") as f:
        images = _read_header(f, path, spec, header)
        for layout, offsets, sizes in images:
            blocks = layout.blocks_across * layout.blocks_down
            _write_array(f, offsets, [layout.first + i * (layout.block_bytes + 8) for i in range(blocks)], layout)
            _write_array(f, sizes, [layout.block_bytes] * blocks, layout)
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

@dataclass(frozen=True)
class _Array:
    """A tag's array of values in the file: ``count`` values of TIFF type ``kind`` at ``at``."""

    at: int
    count: int
    kind: int


def _read_header(f, path: str, spec: OutputSpec,
                 header: Optional[int]) -> List[Tuple[Layout, _Array, _Array]]:
    """Check that the file GDAL made is an uncompressed, pixel-interleaved, tiled COG whose blocks have leaders
    and trailers (no mask); return, for each of its images (full resolution first), its layout and where its
    block offsets and sizes are listed. ``header``: the header's size in a file GDAL just made (no block
    written: every offset and size is 0); None: a file :func:`plan_layout` made (its offsets are checked)."""
    f.seek(0)
    head = f.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        raise OutputError(f"{path} is not a TIFF file.")
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    at = struct.unpack(order + "Q", head[8:16])[0] if big else struct.unpack(order + "I", head[4:8])[0]
    f.seek(16 if big else 8)
    ghost = f.read(1024)
    if not ghost.startswith(_GHOST) or not all(need in ghost for need in _GHOST_NEEDS):
        raise OutputError(f"{path} does not have the layout of a COG with block leaders and trailers.")
    images = []
    while at and len(images) < 64:
        entries, at = _read_ifd(f, order, big, at)
        images.append(_image(f, path, spec, order, entries))
    if not images:
        raise OutputError(f"{path} has no image.")
    if header is None:                   # the smallest overview's blocks come first, right after the header
        smallest = images[-1]
        f.seek(smallest[1].at)
        header = struct.unpack(order + _TYPE_CODES[smallest[1].kind], f.read(_TYPE_SIZES[smallest[1].kind]))[0] - 4
        planned = True
    else:
        planned = False
    out = []
    first = header + 4
    for layout, offsets, sizes in reversed(images):          # the data: smallest overview first
        layout = replace(layout, first=first)
        first = layout.end + 4
        for array, expected in ((offsets, [layout.offset(i // layout.blocks_across, i % layout.blocks_across)
                                           for i in range(offsets.count)]),
                                (sizes, [layout.block_bytes] * sizes.count)):
            f.seek(array.at)
            values = struct.unpack(f"{order}{array.count}{_TYPE_CODES[array.kind]}",
                                   f.read(array.count * _TYPE_SIZES[array.kind]))
            if list(values) != (expected if planned else [0] * array.count):
                raise OutputError(f"{path}: its blocks are not where this layout puts them.")
        out.append((layout, offsets, sizes))
    return out[::-1]


def _image(f, path: str, spec: OutputSpec, order: str, entries: Dict[int, Tuple[int, int, int]]
           ) -> Tuple[Layout, _Array, _Array]:
    """One image (IFD) of the file: its layout (``first`` still unknown) and its offset and size arrays."""
    def value(tag: int) -> int:
        kind, count, at = entries[tag]
        f.seek(at)
        return struct.unpack(order + _TYPE_CODES[kind], f.read(_TYPE_SIZES[kind]))[0]

    need = (_WIDTH, _LENGTH, _BITS, _COMPRESSION, _SAMPLES, _TILE_WIDTH, _TILE_LENGTH, _TILE_OFFSETS,
            _TILE_BYTE_COUNTS)
    if any(tag not in entries or entries[tag][0] not in _TYPE_SIZES for tag in need):
        raise OutputError(f"{path} is not a tiled TIFF of the expected kind.")
    width, height, bands, block = value(_WIDTH), value(_LENGTH), value(_SAMPLES), value(_TILE_WIDTH)
    dtype = np.dtype(spec.dtype).newbyteorder(order)
    if (value(_COMPRESSION) != 1 or (_PLANAR in entries and value(_PLANAR) != 1) or value(_TILE_LENGTH) != block
            or value(_BITS) != dtype.itemsize * 8 or (_SUBFILE_TYPE in entries and value(_SUBFILE_TYPE) & 4)):
        raise OutputError(f"{path} is not an uncompressed, pixel-interleaved COG of {spec.dtype} values "
                          "without a mask.")
    layout = Layout(path, width, height, bands, dtype.str, block, 0, order)
    arrays = []
    for tag in (_TILE_OFFSETS, _TILE_BYTE_COUNTS):
        kind, count, at = entries[tag]
        if count != layout.blocks_across * layout.blocks_down:
            raise OutputError(f"{path} lists {count} blocks, {layout.blocks_across * layout.blocks_down} expected.")
        arrays.append(_Array(at, count, kind))
    return layout, arrays[0], arrays[1]


def _read_ifd(f, order: str, big: bool, at: int) -> Tuple[Dict[int, Tuple[int, int, int]], int]:
    """``{tag: (type, count, where its values are)}`` of the IFD at ``at``, and the next IFD's offset."""
    f.seek(at)
    count_fmt, entry_size, inline = ("Q", 20, 8) if big else ("H", 12, 4)
    count = struct.unpack(order + count_fmt, f.read(8 if big else 2))[0]
    raw = f.read(count * entry_size + (8 if big else 4))
    entries = {}
    for k in range(count):
        e = raw[k * entry_size:(k + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", e[:4])
        n = struct.unpack(order + ("Q" if big else "I"), e[4:12 if big else 8])[0]
        here = at + (8 if big else 2) + k * entry_size + (12 if big else 8)
        if kind in _TYPE_SIZES and n * _TYPE_SIZES[kind] > inline:
            here = struct.unpack(order + ("Q" if big else "I"), e[12:20] if big else e[8:12])[0]
        entries[tag] = (kind, n, here)
    next_ifd = struct.unpack(order + ("Q" if big else "I"), raw[count * entry_size:])[0]
    return entries, next_ifd


def _write_array(f, array: _Array, values: Sequence[int], layout: Layout) -> None:
    f.seek(array.at)
    f.write(struct.pack(f"{layout.order}{array.count}{_TYPE_CODES[array.kind]}", *values))


def _remove_with_sidecar(path: str) -> None:
    for p in (path, path + ".aux.xml"):
        remove_if_there(p)


__all__ = ["Layout", "fits", "plan_layout", "open_layout", "write_tile_in_place"]

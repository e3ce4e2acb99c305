"""Compressed COGs assembled from the workers' compressed blocks: no block is decoded or encoded twice.

The tile-files route (:mod:`.cog`) has the workers write uncompressed tiles; GDAL's COG driver then reads
them all back through a VRT and compresses every block in the parent. Here each worker writes its tile, and
the overview levels it builds (:mod:`.overviews`), as GeoTIFFs in the output's own 512 x 512 blocks,
compressed with the options GDAL's COG driver uses (:func:`~.cog.packed_options`): the same pixels, codec,
level and predictor give the same bytes, block for block. :func:`assemble`, in the parent, then

1. lets the COG driver write the output's header from an empty VRT of it (as :mod:`.inplace` does), with
   ``SPARSE_OK``, so no block is written: the header's block offsets and sizes are still 0;
2. copies every block as it is, in the COG's order: the smallest overview level first, each image's blocks
   in row-major order, each with its leader (its size, 4 bytes) and trailer (its last 4 bytes repeated);
3. fills in the header's block offsets and sizes.

The levels above the workers' are GDAL's, computed from the last of theirs (as the tile-files route
does) into a small compressed COG whose blocks are copied in the same way. The result is byte for byte
the COG GDAL's COG driver writes from the pixels (the tests compare both).

A tile's blocks are the output's blocks when tiles start on multiples of the block size: at full resolution
always (:func:`fits`), at an overview level when twice, four times... the block size divides the tile size
(:func:`aligned_levels`). The first level the workers build whose tiles are not on its blocks they write
uncompressed: GDAL compresses it, and builds the levels above it from it. Files that are not the layout copied
here (another GDAL, a damaged tile file) raise :class:`NotPacked`: the caller then assembles the same tile
files through a VRT, as the tile-files route does.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from . import tiff
from .cog import BLOCK_SIZE, TIFF_COMPRESSIONS, cog_options, packed_options
from ..errors import OutputError
from ..grid import Tile
from ..options import OutputSpec


class NotPacked(Exception):
    """The files are not the layout :func:`assemble` copies (the message says which and how)."""


def fits(spec: OutputSpec, tile_size: int, worker_levels: int, overview_levels: int, side: int) -> bool:
    """True if an output of ``spec`` cut in tiles of ``tile_size`` can be assembled from its compressed blocks:
    compressed; tiles on its blocks, or one tile across the grid's longest side ``side``; without overviews
    (``overview_levels``: how many the output's size gives it) or with at least one level built by the workers
    (``worker_levels``: :func:`aligned_levels` says which of them they write compressed).

    >>> from tilewise.core.options import OutputSpec
    >>> fits(OutputSpec("a.tif"), 2048, 2, 4, 7040), fits(OutputSpec("a.tif"), 1536, 1, 4, 7040)
    (True, True)
    >>> fits(OutputSpec("a.tif", compression="NONE"), 2048, 2, 4, 7040), fits(OutputSpec("a.tif"), 2048, 0, 4, 7040)
    (False, False)
    >>> fits(OutputSpec("a.tif", overviews=False), 1408, 0, 4, 7040), fits(OutputSpec("a.tif"), 1408, 1, 4, 7040)
    (False, False)
    """
    if spec.compression not in TIFF_COMPRESSIONS or spec.compression == "NONE" or tile_size <= 0:
        return False
    if spec.overviews and overview_levels and worker_levels < 1:
        return False                       # GDAL would compute every level from the full resolution
    return tile_size >= side or tile_size % BLOCK_SIZE == 0


def aligned_levels(tile_size: int, worker_levels: int, side: int) -> int:
    """How many of the ``worker_levels`` overview levels of tiles of ``tile_size`` (on a grid whose longest side
    is ``side``) start on the output's blocks (512 pixels at each level): those the workers write compressed.

    >>> aligned_levels(2048, 2, 7040), aligned_levels(1536, 1, 7040), aligned_levels(4096, 3, 4096)
    (2, 0, 3)
    """
    if tile_size >= side:
        return worker_levels
    levels = 0
    while levels < worker_levels and tile_size % (BLOCK_SIZE << (levels + 1)) == 0:
        levels += 1
    return levels


@dataclass(frozen=True)
class Blocks:
    """Where the compressed blocks of one image of the output are: block ``i`` (row-major) is ``sizes[i]`` bytes
    at ``offsets[i]`` in ``files[sources[i]]``."""

    width: int
    height: int
    files: Tuple[str, ...]
    sources: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray


def tile_blocks(placements: Sequence[Tuple[str, Tile]], width: int, height: int, spec: OutputSpec,
                bands: int) -> Blocks:
    """The blocks of a ``width`` x ``height`` image of ``bands`` bands laid out in tile files (``(path, tile)``:
    the tile's window of the image), each a GeoTIFF of the output's blocks written by :func:`~.cog.write_tile`
    with ``packed``. :class:`NotPacked` if a file is not that or the tiles leave a block out."""
    across, down = -(-width // BLOCK_SIZE), -(-height // BLOCK_SIZE)
    sources = np.full(across * down, -1, np.int64)
    offsets, sizes = np.zeros(across * down, np.int64), np.zeros(across * down, np.int64)
    for k, (path, tile) in enumerate(placements):
        image, block_offsets, block_sizes = _read_image(path, 0, spec, bands)
        if (image.width, image.height) != (tile.width, tile.height) or tile.row_off % BLOCK_SIZE \
                or tile.col_off % BLOCK_SIZE:
            raise NotPacked(f"{path} is not {tile.name} in the output's blocks")
        rows = tile.row_off // BLOCK_SIZE + np.arange(image.blocks_down)
        cols = tile.col_off // BLOCK_SIZE + np.arange(image.blocks_across)
        where = (rows[:, None] * across + cols[None, :]).ravel()
        sources[where] = k
        offsets[where], sizes[where] = block_offsets, block_sizes
    if (sources < 0).any():
        raise NotPacked(f"the tiles leave {int((sources < 0).sum())} blocks of a {width} x {height} image out")
    return Blocks(width, height, tuple(p for p, _ in placements), sources, offsets, sizes)


def file_blocks(path: str, index: int, spec: OutputSpec, bands: int) -> Blocks:
    """The blocks of image ``index`` (0: the first IFD) of the tiled TIFF at ``path``, written with the output's
    compression options (e.g. GDAL's levels above the workers', :func:`~.overviews.build_upper_levels`)."""
    image, offsets, sizes = _read_image(path, index, spec, bands)
    return Blocks(image.width, image.height, (path,), np.zeros(len(offsets), np.int64), offsets, sizes)


def _read_image(path: str, index: int, spec: OutputSpec, bands: int
                ) -> Tuple[tiff.TiledImage, np.ndarray, np.ndarray]:
    """Image ``index`` of ``path``, checked to hold ``bands`` bands of the output's type, blocks and compression,
    and its blocks' offsets and sizes."""
    try:
        with open(path, "rb") as f:
            order, _, ifds = tiff.read_ifds(f, limit=index + 1)
            if len(ifds) <= index:
                raise ValueError(f"has no image {index + 1}")
            image = tiff.tiled_image(f, order, ifds[index])
            offsets = np.array(tiff.read_array(f, order, image.offsets), np.int64)
            sizes = np.array(tiff.read_array(f, order, image.sizes), np.int64)
    except (OSError, ValueError, struct.error) as exc:
        raise NotPacked(f"{path} {exc}") from None
    found = (order, image.block, image.bands, image.bits, image.compression, image.predictor)
    expected = ("<", BLOCK_SIZE, bands, np.dtype(spec.dtype).itemsize * 8, TIFF_COMPRESSIONS[spec.compression],
                _predictor(spec))
    if found != expected:
        raise NotPacked(f"{path} has (byte order, block, bands, bits, compression, predictor) {found}, not the "
                        f"output's {expected}")
    if (sizes < 4).any():                  # a block left out (sparse) or too small for its trailer
        raise NotPacked(f"{path} has a block of {int(sizes.min())} bytes")
    return image, offsets, sizes


def _predictor(spec: OutputSpec) -> int:
    return int(packed_options(spec).get("predictor", 1))


def assemble(header_vrt: str, path: str, spec: OutputSpec, overviews: str, images: Sequence[Blocks]) -> None:
    """Write the COG of ``spec`` at ``path`` from ``images`` (full resolution first, then each overview level),
    with the header GDAL's COG driver writes from ``header_vrt`` (an empty VRT of the output, with empty
    overview levels declared: ``overviews`` is then ``FORCE_USE_EXISTING``). :class:`NotPacked` if GDAL's
    header is not the layout written here (the caller removes ``path``)."""
    from rasterio.shutil import copy as gdal_copy
    gdal_copy(header_vrt, path, driver="COG", **dict(cog_options(spec, overviews=overviews), SPARSE_OK="TRUE"))
    header = os.path.getsize(path)
    with open(path, "r+b") as f:
        order, big, layout = _header(f, path, spec, images)
        total = header + sum(int(b.sizes.sum()) + 8 * len(b.sizes) for b in images)
        if not big and total >= 1 << 32:
            raise NotPacked(f"GDAL laid {path} out as a classic TIFF, which cannot hold {total} bytes")
        f.seek(header)
        starts = [_copy_blocks(f, blocks, order) for blocks in reversed(images)][::-1]  # the smallest level first
        for (offsets, sizes), blocks, first in zip(layout, images, starts):
            tiff.write_array(f, order, offsets, first)
            tiff.write_array(f, order, sizes, blocks.sizes.tolist())


def _header(f, path: str, spec: OutputSpec, images: Sequence[Blocks]
            ) -> Tuple[str, bool, List[Tuple[tiff.TagArray, tiff.TagArray]]]:
    """Check GDAL's header against ``images``; the byte order, BigTIFF or not, and each image's offset and size
    arrays."""
    try:
        order, big, found = tiff.read_cog(f)
    except ValueError as exc:
        raise NotPacked(f"{path} {exc}") from None
    if len(found) != len(images) or order != "<":
        raise NotPacked(f"GDAL laid {path} out with {len(found)} images, {len(images)} expected")
    compression = TIFF_COMPRESSIONS[spec.compression]
    for image, blocks in zip(found, images):
        if (image.width, image.height, image.block, image.compression, image.predictor) != \
                (blocks.width, blocks.height, BLOCK_SIZE, compression, _predictor(spec)) \
                or image.offsets.count != len(blocks.sizes) \
                or any(tiff.read_array(f, order, a) != (0,) * a.count for a in (image.offsets, image.sizes)):
            raise NotPacked(f"GDAL laid {path} out otherwise than its blocks")
    return order, big, [(image.offsets, image.sizes) for image in found]


def _copy_blocks(f, blocks: Blocks, order: str) -> List[int]:
    """Append ``blocks`` to ``f`` (at its position), each with its leader and trailer; return where each block's
    bytes start."""
    fds: Dict[int, int] = {}
    starts = []
    try:
        for source, offset, size in zip(blocks.sources.tolist(), blocks.offsets.tolist(), blocks.sizes.tolist()):
            fd = fds.get(source)
            if fd is None:
                fd = fds[source] = os.open(blocks.files[source], os.O_RDONLY | getattr(os, "O_BINARY", 0))
            data = _read_at(fd, size, offset, blocks.files[source])
            f.write(struct.pack(order + "I", size))
            starts.append(f.tell())
            f.write(data)
            f.write(data[-4:])
    finally:
        for fd in fds.values():
            os.close(fd)
    return starts


def _read_at(fd: int, size: int, offset: int, path: str) -> bytes:
    if hasattr(os, "pread"):
        data = os.pread(fd, size, offset)
    else:                                   # Windows
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, size)
    if len(data) != size:
        raise OutputError(f"The tile file {path} is cut short: run again without resume.")
    return data


__all__ = ["NotPacked", "Blocks", "fits", "aligned_levels", "tile_blocks", "file_blocks", "assemble"]

"""The structure of the TIFF files GDAL writes: their images (IFDs), the tags read here, and where a tag's
values are, to read them or write them in place (:mod:`.inplace` and :mod:`.packed` fill in the block offsets
and sizes of a header GDAL wrote).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Dict, List, Sequence, Tuple

#: The tags read here.
WIDTH, LENGTH, BITS, COMPRESSION, PREDICTOR, SAMPLES, PLANAR = 256, 257, 258, 259, 317, 277, 284
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325
SUBFILE_TYPE = 254
#: Integer types: SHORT, LONG, LONG8.
TYPE_SIZES = {3: 2, 4: 4, 16: 8}
TYPE_CODES = {3: "H", 4: "I", 16: "Q"}

#: ``{tag: (type, count, where its values are)}`` of one image.
Entries = Dict[int, Tuple[int, int, int]]


@dataclass(frozen=True)
class TagArray:
    """A tag's values in the file: ``count`` values of TIFF type ``kind`` at ``at``."""

    at: int
    count: int
    kind: int


def read_start(f: BinaryIO) -> Tuple[str, bool, int]:
    """The file's byte order (``"<"`` or ``">"``), whether it is a BigTIFF, and where its first IFD is; ``ValueError``
    if it is not a TIFF file."""
    f.seek(0)
    head = f.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        raise ValueError("not a TIFF file")
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    at = struct.unpack(order + "Q", head[8:16])[0] if big else struct.unpack(order + "I", head[4:8])[0]
    return order, big, at


def read_ifd(f: BinaryIO, order: str, big: bool, at: int) -> Tuple[Entries, int]:
    """The entries of the IFD at ``at``, and the next IFD's offset (0: none)."""
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
        if kind in TYPE_SIZES and n * TYPE_SIZES[kind] > inline:
            here = struct.unpack(order + ("Q" if big else "I"), e[12:20] if big else e[8:12])[0]
        entries[tag] = (kind, n, here)
    next_ifd = struct.unpack(order + ("Q" if big else "I"), raw[count * entry_size:])[0]
    return entries, next_ifd


def read_ifds(f: BinaryIO, limit: int = 64) -> Tuple[str, bool, List[Entries]]:
    """Byte order, BigTIFF or not, and the entries of every image of the file (at most ``limit``), in file order."""
    order, big, at = read_start(f)
    images = []
    while at and len(images) < limit:
        entries, at = read_ifd(f, order, big, at)
        images.append(entries)
    return order, big, images


def tag_value(f: BinaryIO, order: str, entries: Entries, tag: int, default: int = 0) -> int:
    """The first value of an integer ``tag`` (``default`` if the image has no such tag)."""
    if tag not in entries:
        return default
    kind, _, at = entries[tag]
    if kind not in TYPE_SIZES:
        raise ValueError(f"tag {tag} is not an integer")
    f.seek(at)
    return struct.unpack(order + TYPE_CODES[kind], f.read(TYPE_SIZES[kind]))[0]


def tag_array(entries: Entries, tag: int) -> TagArray:
    """Where the values of the integer ``tag`` are; ``ValueError`` if the image has no such tag."""
    if tag not in entries or entries[tag][0] not in TYPE_SIZES:
        raise ValueError(f"no integer tag {tag}")
    kind, count, at = entries[tag]
    return TagArray(at, count, kind)


class Blocked:
    """An image of ``width`` x ``height`` pixels in square blocks of ``block`` pixels (the edge blocks cut)."""

    width: int
    height: int
    block: int

    @property
    def blocks_across(self) -> int:
        return -(-self.width // self.block)

    @property
    def blocks_down(self) -> int:
        return -(-self.height // self.block)


@dataclass(frozen=True)
class TiledImage(Blocked):
    """One tiled, pixel-interleaved image (IFD) without a mask: its size, bands, bits per sample, square block
    side, compression and predictor codes, and where its block offsets and sizes are listed."""

    width: int
    height: int
    bands: int
    bits: int
    block: int
    compression: int
    predictor: int
    offsets: TagArray
    sizes: TagArray


def tiled_image(f: BinaryIO, order: str, entries: Entries) -> TiledImage:
    """The :class:`TiledImage` of ``entries``; ``ValueError`` (saying what the file is not) for any other image."""
    need = (WIDTH, LENGTH, BITS, COMPRESSION, SAMPLES, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS)
    if any(tag not in entries or entries[tag][0] not in TYPE_SIZES for tag in need):
        raise ValueError("is not a tiled TIFF of the expected kind")

    def value(tag: int, default: int = 0) -> int:
        return tag_value(f, order, entries, tag, default)

    block = value(TILE_WIDTH)
    if value(PLANAR, 1) != 1 or value(TILE_LENGTH) != block or value(SUBFILE_TYPE) & 4 or block <= 0:
        raise ValueError("is not a pixel-interleaved TIFF of square blocks without a mask")
    image = TiledImage(value(WIDTH), value(LENGTH), value(SAMPLES), value(BITS), block, value(COMPRESSION),
                       value(PREDICTOR, 1), tag_array(entries, TILE_OFFSETS), tag_array(entries, TILE_BYTE_COUNTS))
    blocks = image.blocks_across * image.blocks_down
    for array in (image.offsets, image.sizes):
        if array.count != blocks:
            raise ValueError(f"lists {array.count} blocks, {blocks} expected")
    return image


#: The start of the "ghost area" of GDAL's COG header, and the layout it must declare to be written here.
GHOST = b"GDAL_STRUCTURAL_METADATA_SIZE="
GHOST_NEEDS = (b"LAYOUT=IFDS_BEFORE_DATA", b"BLOCK_ORDER=ROW_MAJOR", b"BLOCK_LEADER=SIZE_AS_UINT4",
               b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED")


def read_cog(f: BinaryIO) -> Tuple[str, bool, List[TiledImage]]:
    """Byte order, BigTIFF or not, and the images (full resolution first) of a COG GDAL wrote with its IFDs before
    the data and every block with a leader (its size) and a trailer (its last 4 bytes); ``ValueError`` (saying
    what the file is not) otherwise."""
    order, big, at = read_start(f)
    f.seek(16 if big else 8)
    ghost = f.read(1024)
    if not ghost.startswith(GHOST) or not all(need in ghost for need in GHOST_NEEDS):
        raise ValueError("does not have the layout of a COG with block leaders and trailers")
    _, _, ifds = read_ifds(f)
    if not ifds:
        raise ValueError("has no image")
    return order, big, [tiled_image(f, order, entries) for entries in ifds]


def read_array(f: BinaryIO, order: str, array: TagArray) -> Tuple[int, ...]:
    f.seek(array.at)
    return struct.unpack(f"{order}{array.count}{TYPE_CODES[array.kind]}", f.read(array.count * TYPE_SIZES[array.kind]))


def write_array(f: BinaryIO, order: str, array: TagArray, values: Sequence[int]) -> None:
    f.seek(array.at)
    f.write(struct.pack(f"{order}{array.count}{TYPE_CODES[array.kind]}", *values))


__all__ = ["TagArray", "Blocked", "TiledImage", "tiled_image", "read_cog", "read_start", "read_ifd", "read_ifds",
           "tag_value", "tag_array", "read_array", "write_array"]

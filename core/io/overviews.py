"""Overviews built in parallel: each worker decimates its tile while the tile is in memory.

Today GDAL's COG driver computes every overview level serially after the tiles, reading the
whole full-resolution mosaic again. Here a worker writes, beside its tile, the tile's first
overview levels (:func:`write_tile_overviews`, from :class:`~tilewise.core.runtime.sinks.CogSink`);
the assembly (:func:`prepare_overviews`) lays each level out in a VRT, lets GDAL build the few
small levels above from the last of them (:func:`build_upper_levels`), declares all levels as
the tile VRT's overviews, and :func:`~.cog.write_cog` copies it with the COG driver's
``OVERVIEWS=FORCE_USE_EXISTING``. The file has the layout GDAL gives
today (block size, overview count and sizes, IFD order) and the same pixels:

- GDAL computes each level from the one below (chained), with windows of exactly 2 x 2
  pixels when the level below has even sides; ``average`` is the mean of the window's valid
  pixels, summed in double as (top left + top right) + (bottom left + bottom right) (without
  a nodata value: in row order), ``nearest`` its top-left pixel. These orders are GDAL 3.10's (the
  GDAL rasterio ships; the tests compare with it). float32 without a nodata value goes through
  GDAL's SIMD path, exact only away from the right edge, so it stays GDAL's (engine outputs
  always have a nodata value). Workers reproduce
  exactly that (:func:`decimate`), so they build only levels whose level below has even sides
  on the whole grid, whose tiles start on even pixels, and whose tiles are still at least a
  block wide (:func:`worker_levels`).
- Other levels (odd sides: GDAL's windows drift by a pixel over the image, so a tile alone
  cannot compute them) and other resamplings (``mode``, ``bilinear``, ``cubic``, whose
  windows or ties cross tiles) are GDAL's own, computed by GDAL from the level below.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence, Tuple

import numpy as np
from rasterio.shutil import copy as gdal_copy

from ..errors import OutputError
from ..grid import Grid, Tile
from ..options import OutputSpec
from .cog import BLOCK_SIZE, Placement, cog_options, tile_path, write_tile, write_vrt

#: Resamplings whose levels a worker reproduces exactly from its tile alone.
PARALLEL_RESAMPLINGS = ("average", "nearest")
#: Output types whose ``average`` a worker reproduces exactly (not integers: GDAL rounds them its own way).
EXACT_AVERAGE_TYPES = ("float32", "float64")


def overview_sizes(width: int, height: int, block: int = BLOCK_SIZE) -> List[Tuple[int, int]]:
    """``(width, height)`` of each overview level GDAL's COG driver writes: the sides are halved
    (rounding down) until both fit in one block.

    >>> overview_sizes(6980, 7040)
    [(3490, 3520), (1745, 1760), (872, 880), (436, 440)]
    >>> overview_sizes(512, 300)
    []
    """
    sizes = []
    while width > block or height > block:
        width, height = width // 2, height // 2
        sizes.append((width, height))
    return sizes


def worker_levels(width: int, height: int, tile_size: int, resampling: str, dtype: str,
                  block: int = BLOCK_SIZE, has_nodata: bool = True) -> int:
    """How many overview levels the workers build for a ``width`` x ``height`` grid cut in
    tiles of ``tile_size``: level k is theirs when levels 1 .. k all halve even sides exactly,
    tiles start on multiples of 2**k and a full tile is still ``block`` pixels wide at level k.

    >>> worker_levels(6980, 7040, 2048, "average", "float32")
    2
    >>> worker_levels(6981, 7040, 2048, "average", "float32"), worker_levels(6980, 7040, 2048, "cubic", "float32")
    (0, 0)
    """
    average = resampling == "average"
    if resampling not in PARALLEL_RESAMPLINGS or (average and dtype not in EXACT_AVERAGE_TYPES) \
            or (average and dtype == "float32" and not has_nodata):
        return 0
    levels = 0
    for k, _ in enumerate(overview_sizes(width, height, block), start=1):
        below_w, below_h = width >> (k - 1), height >> (k - 1)
        if below_w % 2 or below_h % 2 or tile_size % (1 << k) or (tile_size >> k) < block:
            break
        levels = k
    return levels


def decimate(data: np.ndarray, nodata: Optional[float], resampling: str) -> np.ndarray:
    """One overview level of ``data`` (``(bands, rows, cols)``, even rows and cols, in the
    output type) as GDAL computes it from 2 x 2 windows; nodata pixels do not count and a
    window of nodata only is nodata.

    >>> a = np.array([[[1, 2, 5, -9], [3, 4, -9, -9]]], np.float32)
    >>> decimate(a, -9.0, "average").tolist(), decimate(a, -9.0, "nearest").tolist()
    ([[[2.5, 5.0]]], [[[1.0, 5.0]]])
    """
    if data.shape[-1] % 2 or data.shape[-2] % 2:
        raise ValueError(f"Overview levels halve even sides; got {data.shape[-2]} x {data.shape[-1]} pixels.")
    if resampling == "nearest":
        return np.ascontiguousarray(data[..., ::2, ::2])
    if resampling != "average":
        raise ValueError(f"Workers build {' and '.join(PARALLEL_RESAMPLINGS)} overviews, not {resampling!r}.")
    quads = [data[..., dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]
    wide = [q.astype(np.float64) for q in quads]
    if nodata is None:  # GDAL's sum without nodata: in row order, in double
        total = ((wide[0] + wide[1]) + wide[2]) + wide[3]
        return (total / 4).astype(data.dtype)
    # nodata pixels are those equal to the nodata in the data's own type, as GDAL's (a float32 band's
    # -9999.1 is float32(-9999.1), which its float64 is not)
    valid = [_valid(q if q.dtype.kind == "f" else w, nodata) for q, w in zip(quads, wide)]
    count = valid[0].astype(np.int32) + valid[1] + valid[2] + valid[3]
    w = [np.where(ok, v, 0.0) for v, ok in zip(wide, valid)]
    total = (w[0] + w[1]) + (w[2] + w[3])  # GDAL's sum with nodata: each row's pair, then the rows
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(data.dtype)
    if nodata is not None:
        out[count == 0] = data.dtype.type(nodata)
    return out


def _valid(values: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    if nodata is None:
        return np.ones(values.shape, bool)
    if np.isnan(nodata):
        return ~np.isnan(values)
    return values != values.dtype.type(nodata)


def tile_overviews(data: np.ndarray, nodata: Optional[float], resampling: str, levels: int) -> List[np.ndarray]:
    """Levels 1 .. ``levels`` of a tile, each from the one below (as GDAL chains them)."""
    out = []
    for _ in range(levels):
        data = decimate(data, nodata, resampling)
        out.append(data)
    return out


def level_grid(grid: Grid, level: int) -> Grid:
    """The grid of overview ``level`` (0: the grid itself): sides halved ``level`` times
    rounding down, pixels 2**level times larger, the same origin."""
    f = 1 << level
    a, b, c, d, e, g = grid.transform
    return Grid(grid.crs, (a * f, b * f, c, d * f, e * f, g), grid.width >> level, grid.height >> level)


def level_tile(tile: Tile, level: int) -> Tile:
    return Tile(tile.index, tile.row_off >> level, tile.col_off >> level, tile.height >> level, tile.width >> level)


def overview_tile_path(workdir: str, tile: Tile, level: int, layer: "int | str" = 0) -> str:
    return os.path.join(workdir, f"ovr{level}", os.path.basename(tile_path(workdir, tile, layer)))


def write_tile_overviews(workdir: str, data: np.ndarray, grid: Grid, tile: Tile, spec: OutputSpec,
                         levels: int, layer: "int | str" = 0) -> List[str]:
    """In a worker: write levels 1 .. ``levels`` of ``data`` (the tile's pixels in the output
    type, as :func:`write_tile` writes them) in ``ovr<k>/`` of the work folder; return their
    paths. Call it before writing the tile itself, so that a finished tile (what a resumed
    run skips) always has its overviews."""
    paths = []
    for k, level in enumerate(tile_overviews(data, spec.nodata, spec.overview_resampling, levels), start=1):
        path = overview_tile_path(workdir, tile, k, layer)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_tile(path, level, level_grid(grid, k), level_tile(tile, k), spec)
        paths.append(path)
    return paths


def level_vrt(workdir: str, grid: Grid, tiles: Sequence[Tile], spec: OutputSpec, descriptions: Sequence[str],
              level: int, bands: Optional[Sequence[int]] = None, layer: "int | str" = 0, name: str = "") -> str:
    """A VRT laying out the workers' tiles (of tile ``layer``, taking ``bands``) of overview ``level``."""
    placements = [Placement(os.path.relpath(overview_tile_path(workdir, t, level, layer), workdir),
                            *_level_window(t, level), relative=True) for t in tiles]
    return write_vrt(os.path.join(workdir, f"{name}ovr{level}.vrt"), level_grid(grid, level), spec, descriptions,
                     placements, bands)


def _level_window(tile: Tile, level: int) -> Tuple[int, int, int, int]:
    t = level_tile(tile, level)
    return t.row_off, t.col_off, t.height, t.width


def upper_path(workdir: str, name: str = "") -> str:
    """The COG in which :func:`build_upper_levels` writes the levels above the workers' (its overviews)."""
    return os.path.join(workdir, f"{name}upper.tif")


def build_upper_levels(below_vrt: str, workdir: str, spec: OutputSpec, block: int = BLOCK_SIZE,
                       name: str = "", compressed: bool = False) -> List[str]:
    """The levels above the workers', by GDAL from the last of theirs (``below_vrt``): GDAL's COG
    driver writes that level with its own overviews (the sizes and pixels it would give them in
    the full file), uncompressed or (``compressed``) in the output's blocks and compression (see
    :mod:`.packed`); return one dataset name per level, smallest last."""
    upper = upper_path(workdir, name)
    compression = cog_options(spec) if compressed else dict(COMPRESS="NONE")
    gdal_copy(below_vrt, upper, driver="COG", **dict(compression, BLOCKSIZE=block, OVERVIEWS="IGNORE_EXISTING",
                                                     OVERVIEW_RESAMPLING=spec.overview_resampling.upper(),
                                                     BIGTIFF="IF_SAFER"))
    import rasterio
    with rasterio.open(upper) as src:
        n = len(src.overviews(1))
    return [f"GTIFF_DIR:{i + 2}:{upper}" for i in range(n)]


def declare_overviews(vrt_path: str, overviews: Sequence[str]) -> None:
    """Add ``overviews`` (dataset names, largest first; relative ones to the VRT's folder) to
    every band of the VRT at ``vrt_path``."""
    tree = ET.parse(vrt_path)
    for band in tree.getroot().iter("VRTRasterBand"):
        for name in overviews:
            ov = ET.SubElement(band, "Overview")
            relative = not name.startswith("GTIFF_DIR:") and not os.path.isabs(name)
            ET.SubElement(ov, "SourceFilename", relativeToVRT=str(int(relative))).text = name
            ET.SubElement(ov, "SourceBand").text = band.get("band")
    tree.write(vrt_path, encoding="utf-8")


def prepare_overviews(grid: Grid, tiles: Sequence[Tile], workdir: str, spec: OutputSpec,
                      descriptions: Sequence[str], levels: int, vrt_path: str,
                      bands: Optional[Sequence[int]] = None, layer: "int | str" = 0, name: str = "") -> str:
    """Make the tile VRT ``vrt_path`` declare the output's overviews from the workers' ``levels`` levels
    of every tile (see :func:`worker_levels`) and GDAL's levels above them; return the COG driver's
    ``OVERVIEWS`` option for :func:`~.cog.write_cog`: ``FORCE_USE_EXISTING``, or ``IGNORE_EXISTING``
    (GDAL builds every level, as without worker levels) when there are none."""
    sizes = overview_sizes(grid.width, grid.height)
    if levels <= 0 or not sizes:
        return "IGNORE_EXISTING"
    names = [os.path.basename(level_vrt(workdir, grid, tiles, spec, descriptions, k, bands, layer, name))
             for k in range(1, levels + 1)]
    if levels < len(sizes):
        names += build_upper_levels(os.path.join(workdir, names[-1]), workdir, spec, name=name)
    if len(names) != len(sizes):
        raise OutputError(f"Overviews of {spec.path}: {len(names)} levels built, {len(sizes)} expected.")
    declare_overviews(vrt_path, names)
    return "FORCE_USE_EXISTING"

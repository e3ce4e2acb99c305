"""Target grid and tiling, as pure functions of plain values.

A :class:`Grid` is a CRS, an affine transform and a size. A :class:`Tile` is a
window of that grid. Neither holds a dataset handle, so both pickle cheaply
and can travel to worker processes or Dask tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .errors import GridError, ParameterError

Transform = Tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid.

    ``transform`` is in rasterio/affine order ``(a, b, c, d, e, f)``:
    ``x = a * col + b * row + c`` and ``y = d * col + e * row + f``.
    """

    crs: str
    transform: Transform
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise GridError(f"The target grid is empty ({self.width} x {self.height} pixels).")

    @property
    def res(self) -> Tuple[float, float]:
        return (abs(self.transform[0]), abs(self.transform[4]))

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of a north-up grid."""
        a, _, c, _, e, f = self.transform
        xs = (c, c + a * self.width)
        ys = (f, f + e * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    def window_transform(self, tile: "Tile") -> Transform:
        a, b, c, d, e, f = self.transform
        return (a, b, c + a * tile.col_off + b * tile.row_off, d, e, f + d * tile.col_off + e * tile.row_off)


@dataclass(frozen=True)
class Tile:
    """A window of a grid: ``index`` in the tile plan, offsets and size in pixels."""

    index: int
    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return (f"tile {self.index} (rows {self.row_off}-{self.row_off + self.height - 1}, "
                f"cols {self.col_off}-{self.col_off + self.width - 1})")

    def slices(self) -> Tuple[slice, slice]:
        return (slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width))


MIN_TILE_SIZE = 8


def check_tile_size(tile_size: Optional[int]) -> Optional[int]:
    """A tile size as asked for: None or 0 mean "from the memory budget" (None), else at least 8.

    >>> check_tile_size(0) is None, check_tile_size(256)
    (True, 256)
    """
    if tile_size is None or tile_size == 0:
        return None
    if tile_size < MIN_TILE_SIZE:
        raise ParameterError(f"Tile size must be at least {MIN_TILE_SIZE} pixels (or 0: from the memory budget), "
                             f"got {tile_size}.")
    return int(tile_size)


def plan_tiles(grid: Grid, tile_size: int) -> List[Tile]:
    """Split ``grid`` into square tiles of ``tile_size`` pixels, row-major.

    Edge tiles are cut to the grid, so every pixel is in exactly one tile.

    >>> g = Grid("EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 10.0), 20, 10)
    >>> [(t.row_off, t.col_off, t.height, t.width) for t in plan_tiles(g, 16)]
    [(0, 0, 10, 16), (0, 16, 10, 4)]
    """
    if tile_size < MIN_TILE_SIZE:
        raise ParameterError(f"Tile size must be at least {MIN_TILE_SIZE} pixels, got {tile_size}.")
    tiles = []
    for row_off in range(0, grid.height, tile_size):
        for col_off in range(0, grid.width, tile_size):
            tiles.append(Tile(len(tiles), row_off, col_off,
                              min(tile_size, grid.height - row_off), min(tile_size, grid.width - col_off)))
    return tiles


def auto_tile_size(n_layers: int, bytes_per_value: int = 4, budget_bytes: int = 256 * 2**20,
                   block: int = 512) -> int:
    """Largest multiple of ``block`` whose stack fits the budget (a power of two below that).

    The stack of one tile is ``n_layers x tile x tile`` values; the kernel needs
    about twice that (stack + a working buffer).

    >>> auto_tile_size(10), auto_tile_size(100), auto_tile_size(200), auto_tile_size(2000)
    (1536, 512, 256, 128)
    """
    n = max(1, n_layers)
    side = int(math.sqrt(budget_bytes / (2 * n * bytes_per_value)))
    if side < block:
        return max(64, 2 ** int(math.log2(max(side, 1))))
    return min(4 * block, (side // block) * block)


def balance_tile_size(grid: Grid, tile_size: int, workers: int, floor: int = 256, per_worker: int = 4,
                      step: int = 128, block: int = 512) -> int:
    """Shrink ``tile_size`` (not below ``floor``) until every worker has at least ``per_worker`` tiles, so one
    slow tile does not leave a core idle; a raster too small for that gets tiles of ``floor`` (never tinier
    tiles: their fixed costs would dominate). Tiles above ``2 * block`` shrink to the next multiple of ``block``
    (they stay on the outputs' blocks, whose compressed bytes the workers then write:
    :mod:`tilewise.core.io.packed`), smaller ones by ``step`` pixels.

    >>> g = Grid("EPSG:3857", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 1000, 1000)
    >>> balance_tile_size(g, 2048, 2), balance_tile_size(g, 512, 1), balance_tile_size(g, 2048, 16)
    (384, 512, 256)
    >>> balance_tile_size(Grid("EPSG:3857", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 81, 33), 1536, 2)
    256
    >>> balance_tile_size(Grid("EPSG:3857", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 4000, 4000), 2048, 2)
    1536
    """
    if workers <= 1:
        return tile_size

    def tiles(size: int) -> int:
        return math.ceil(grid.width / size) * math.ceil(grid.height / size)

    while tiles(tile_size) < per_worker * workers:
        smaller = smaller_tile_size(tile_size, step, block)
        if smaller < floor:
            break
        tile_size = smaller
    return tile_size


def smaller_tile_size(tile_size: int, step: int = 128, block: int = 512) -> int:
    """The next tile size :func:`balance_tile_size` tries below ``tile_size``.

    >>> smaller_tile_size(2048), smaller_tile_size(1408), smaller_tile_size(1024), smaller_tile_size(896)
    (1536, 1024, 896, 768)
    """
    if tile_size > 2 * block:
        return (tile_size - 1) // block * block
    return tile_size - step


def snap_extent(extent: Tuple[float, float, float, float], origin: Tuple[float, float],
                res: Tuple[float, float]) -> Tuple[float, float, float, float]:
    """Grow ``extent`` outward to whole pixels of a grid with ``origin`` and ``res``.

    >>> snap_extent((0.5, 0.5, 2.2, 2.9), (0.0, 10.0), (1.0, 1.0))
    (0.0, 0.0, 3.0, 3.0)
    """
    xmin, ymin, xmax, ymax = extent
    ox, oy = origin
    rx, ry = res
    # Forgive a millionth of a pixel: coordinates such as UTM northings (~5e6) carry
    # rounding errors of ~1e-9 m, over 1e-9 pixel at sub-metre resolutions.
    eps = 1e-6
    x0 = ox + math.floor((xmin - ox) / rx + eps) * rx
    x1 = ox + math.ceil((xmax - ox) / rx - eps) * rx
    y1 = oy - math.floor((oy - ymax) / ry + eps) * ry
    y0 = oy - math.ceil((oy - ymin) / ry - eps) * ry
    return (x0, y0, x1, y1)


def grid_from_extent(crs: str, extent: Tuple[float, float, float, float],
                     res: Tuple[float, float]) -> Grid:
    """A north-up grid covering ``extent`` with pixels of ``res``.

    >>> grid_from_extent("EPSG:3857", (0, 0, 100, 50), (10, 10)).width
    10
    """
    xmin, ymin, xmax, ymax = extent
    rx, ry = abs(res[0]), abs(res[1])
    if rx <= 0 or ry <= 0:
        raise GridError(f"Cell size must be positive, got {res}.")
    if xmax <= xmin or ymax <= ymin:
        raise GridError(f"The extent {extent} is empty.")
    width = max(1, int(math.ceil((xmax - xmin) / rx - 1e-6)))
    height = max(1, int(math.ceil((ymax - ymin) / ry - 1e-6)))
    return Grid(crs, (rx, 0.0, xmin, 0.0, -ry, ymax), width, height)


def parse_cell_size(value: Optional[object]) -> Optional[Tuple[float, float]]:
    """Accept ``None``, ``0``, a number or an ``(x, y)`` pair."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            raise GridError(f"Cell size must be positive, got {value}.")
        return None if value == 0 else (float(value), float(value))
    x, y = value  # type: ignore[misc]
    if float(x) <= 0 or float(y) <= 0:
        raise GridError(f"Cell size must be positive, got {(x, y)}.")
    return (float(x), float(y))

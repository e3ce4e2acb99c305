"""Reading input rasters, one tile window at a time, on the target grid.

Inputs on the target grid are read by plain windows. Inputs on another grid or
CRS are warped on the fly through a :class:`rasterio.vrt.WarpedVRT`, never by
writing a temporary full copy. Opened datasets are kept in a small per-process
LRU cache, so a worker holds a bounded number of file handles however many
inputs there are.

Inputs may be remote: HTTP(S) URLs (read through GDAL's ``/vsicurl/``) and
GDAL virtual paths (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``...).
A window read fetches only the blocks it needs, by HTTP range requests
(a Cloud-Optimized GeoTIFF's overviews are not touched at full resolution).
Transient HTTP errors are retried; a missing or forbidden URL is an
:class:`InputError` naming the URL and the HTTP status. A silent or trickling server is given up
after the HTTP timeout (:mod:`.network`), and a remote open or read never keeps a run from
stopping (it runs :func:`~.network.abandonable`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections import OrderedDict
from http import HTTPStatus
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import InputError, ParameterError
from ..grid import Grid, Tile
from ..phases import timed
from ..vocabulary import RESAMPLING_METHODS
from .network import (HTTP_DEFAULTS, NETWORK_PREFIXES, abandonable, apply_http_defaults,  # noqa: F401
                      forget_given_up, gave_up_on, given_up, is_timeout, remote_names, timeout_message, waited_out)

if TYPE_CHECKING:  # pragma: no cover
    from ..masks import MaskSpec

MAX_OPEN_DATASETS = 128

# HTTP_DEFAULTS (GDAL's retries) lives in .network with the timeouts; still importable from here.
#: While a remote input is opened: do not list its "directory" nor probe for side-car files
#: (.aux.xml, .ovr, .msk: a request each). Only around the open, so local inputs keep their side-cars.
REMOTE_OPEN_DEFAULTS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class RasterInfo:
    """What the planner needs to know about one input, read once from its header."""

    path: str
    count: int
    dtypes: Tuple[str, ...]
    nodata: Optional[float]
    crs: str
    transform: Tuple[float, float, float, float, float, float]
    width: int
    height: int
    files: Tuple[str, ...] = ()      # every file GDAL reads for it (a VRT's sources too)


def is_remote(path: str) -> bool:
    """True for URLs and GDAL network paths (also inside a chain, e.g. ``/vsizip//vsicurl/...``).

    >>> is_remote("https://example.com/a.tif"), is_remote("/vsis3/bucket/a.tif"), is_remote("/data/a.tif")
    (True, True, False)
    """
    return bool(_URL.match(path)) or any(p in path for p in NETWORK_PREFIXES)


def gdal_path(path: str) -> str:
    """The name GDAL opens: an HTTP(S) URL goes through ``/vsicurl/`` (range requests).

    >>> gdal_path("https://example.com/cog.tif")
    '/vsicurl/https://example.com/cog.tif'
    """
    if path[:8].lower().startswith(("http://", "https://")):
        return "/vsicurl/" + path
    return path


def may_use_network(path: str) -> bool:
    """True when GDAL may wait for a server to open or read ``path``: a remote path, or a VRT (whose
    sources may be remote, as those of a STAC search are).

    >>> may_use_network("items/it1.vrt"), may_use_network("/data/a.tif")
    (True, False)
    """
    return is_remote(path) or path.lower().endswith(".vrt") or path.lstrip().startswith("<VRTDataset")


def open_raster(path: str):
    """``rasterio.open`` for reading, with the network defaults (see :mod:`.network`); the open of a
    ``path`` that may wait for a server can be abandoned (:func:`~.network.abandonable`)."""
    def opener():
        with _open_env(path):
            return rasterio.open(gdal_path(path))
    return _stoppable(path, opener)()


def _open_env(path: str):
    apply_http_defaults()       # for a VRT's remote sources too
    if not is_remote(path):
        return contextlib.nullcontext()
    active = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    options = {k: v for k, v in REMOTE_OPEN_DEFAULTS.items() if k not in os.environ and k not in active}
    return rasterio.Env(**options) if options else contextlib.nullcontext()


def open_error(path: str, exc: Exception, what: str = "Not a raster GDAL can read") -> InputError:
    """A message for a failed open: for a URL, the HTTP status or the network error."""
    text = str(exc)
    remote = _failed_remotes(path, text)
    if is_timeout(text) or (given_up(remote) and "HTTP" not in text):   # see read_error
        gave_up_on(remote)
        return InputError(timeout_message(path, "Opening" if is_remote(path) else "Opening a remote source of"))
    if is_remote(path):
        code = re.search(r"HTTP response code: (\d+)", text)
        if code:
            status = int(code.group(1))
            try:
                reason = f" {HTTPStatus(status).phrase}"
            except ValueError:
                reason = ""
            if status == 404:
                return InputError(f"Input not found: {path} (HTTP 404{reason}).")
            if status in (401, 403):
                return InputError(f"Access to input {path} was refused (HTTP {status}{reason}); check the URL "
                                  "(an expired signature?) or the credentials (AWS_*, GDAL_HTTP_* settings).")
            return InputError(f"Cannot read input {path}: HTTP {status}{reason}.")
        if "CURL error" in text or "Could not resolve" in text:
            return InputError(f"Cannot reach input {path}: {text}")
    return InputError(f"{what}: {path} ({exc})")


def describe_raster(path: str) -> RasterInfo:
    """Open ``path`` and return its header, or raise :class:`InputError` saying what is wrong. A local
    file's header is read once while it is unchanged (:mod:`.headers`: the warm engine's next runs)."""
    if path and not may_use_network(path) and not path.startswith("/vsi"):
        from .headers import remembered
        return remembered(path, _describe_raster, lambda info: info.files)
    return _describe_raster(path)


def _describe_raster(path: str) -> RasterInfo:
    if not path:
        raise InputError("An input has an empty path.")
    if not is_remote(path) and not path.startswith("/vsi") and not os.path.exists(path):
        raise InputError(f"Input file not found: {path}")
    try:
        with open_raster(path) as src:
            crs = src.crs.to_wkt() if src.crs else ""
            return RasterInfo(path, src.count, tuple(src.dtypes), src.nodata, crs,
                              tuple(src.transform)[:6], src.width, src.height,  # type: ignore[arg-type]
                              () if is_remote(path) else files_read(src))
    except RasterioIOError as exc:
        raise open_error(path, exc) from None


def files_read(src, depth: int = 0) -> Tuple[str, ...]:
    """The files GDAL reads for an open dataset (``src.files``), with the sources of nested VRTs."""
    files = list(src.files)
    if depth < 4:
        for name in files[1:]:
            if name.lower().endswith(".vrt") and os.path.isfile(name):
                try:
                    with rasterio.open(name) as inner:
                        files.extend(files_read(inner, depth + 1))
                except RasterioIOError:
                    continue
    return tuple(files)


def resampling_method(name: str) -> Resampling:
    if name not in RESAMPLING_METHODS:
        raise ParameterError(f"Unknown resampling method {name!r}; use one of {', '.join(RESAMPLING_METHODS)}.")
    return Resampling[name]


def same_grid_offset(info_crs: Optional[CRS], info_transform, grid: Grid,
                     grid_crs: Optional[CRS]) -> Optional[Tuple[int, int]]:
    """Pixel offset ``(row, col)`` of the grid origin in the source, if the source
    is on the same lattice (same CRS, same pixel size, whole-pixel shift)."""
    if (info_crs or None) != (grid_crs or None):
        return None
    a, b, c, d, e, f = tuple(info_transform)[:6]
    ga, gb, gc, gd, ge, gf = grid.transform
    if b or d or gb or gd:
        return None
    tol = 1e-6
    if not (math.isclose(a, ga, rel_tol=tol) and math.isclose(e, ge, rel_tol=tol)):
        return None
    col = (gc - c) / a
    row = (gf - f) / e
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        return None
    return (int(round(row)), int(round(col)))


class _DatasetCache:
    """A per-process LRU of open datasets (and their warped views)."""

    def __init__(self, size: int = MAX_OPEN_DATASETS) -> None:
        self.size = size
        self._items: "OrderedDict[tuple, tuple]" = OrderedDict()

    def get(self, key: tuple, opener):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            return item
        item = opener()
        self._items[key] = item
        while len(self._items) > self.size:
            _, old = self._items.popitem(last=False)
            for ds in reversed(old):
                if ds is not None and hasattr(ds, "close"):
                    ds.close()
        return item

    def clear(self) -> None:
        while self._items:
            _, old = self._items.popitem()
            for ds in reversed(old):
                if ds is not None and hasattr(ds, "close"):
                    ds.close()


_CACHE = _DatasetCache()


def _open_on_grid(path: str, grid: Grid, resampling: str, nodata: Optional[float]):
    """Return ``(src, view, offset)``: the dataset, a warped view (or None) and a lattice offset."""
    def opener():
        src = _open_input(path)
        grid_crs = CRS.from_user_input(grid.crs) if grid.crs else None
        offset = same_grid_offset(src.crs, src.transform, grid, grid_crs)
        if offset is not None:
            return (src, None, offset)
        if src.crs is None or grid_crs is None:
            src.close()
            raise InputError(f"Input {path} is on another grid than the target and one of them has no CRS; "
                             "it cannot be aligned.")
        src_nodata = nodata if nodata is not None else src.nodata
        kwargs = dict(crs=grid_crs, transform=rasterio.Affine(*grid.transform), width=grid.width,
                      height=grid.height, resampling=resampling_method(resampling))
        if src_nodata is not None and not (isinstance(src_nodata, float) and math.isnan(src_nodata)):
            kwargs.update(src_nodata=src_nodata, nodata=src_nodata)
            view = WarpedVRT(src, **kwargs)
        elif src_nodata is not None:
            view = WarpedVRT(src, src_nodata=src_nodata, nodata=src_nodata, **kwargs)
        else:
            view = WarpedVRT(src, add_alpha=True, **kwargs)
        return (src, view, None)

    return _CACHE.get((path, _signature(path), grid, resampling, nodata), _stoppable(path, opener))


def _stoppable(path: str, fn):
    """``fn`` as it is for a local ``path``; for one that may wait for a server, a call that can be abandoned."""
    return (lambda: abandonable(fn)) if may_use_network(path) else fn


def open_dataset(path: str):
    """The dataset of ``path`` as it is on disk now, opened once per process and kept open across
    tiles (in the per-process LRU, keyed by the path and the file's size and modification time:
    a rewritten file is opened anew). Closed by :func:`close_all`, which the runner and the kept
    workers call per run. Raises :class:`InputError` when it cannot be opened."""
    return _CACHE.get(("dataset", path, _signature(path)), lambda: (_open_input(path),))[0]


def _open_input(path: str):
    """Open the input ``path`` for reading; an :class:`InputError` naming it when GDAL cannot."""
    try:
        return open_raster(path)
    except RasterioIOError as exc:
        failure = open_error(path, exc, "Cannot open input")
    raise failure   # outside the handler: no chain of GDAL's errors to carry (a Dask worker pickles it)


def _signature(path: str) -> tuple:
    """Size and modification time of a local file, so a rewritten input is reopened."""
    try:
        st = os.stat(path)
    except OSError:  # remote or virtual paths
        return ()
    return (st.st_size, st.st_mtime_ns)


def read_window(path: str, bands: Sequence[int], grid: Grid, tile: Tile, out: np.ndarray,
                nodata: Optional[float] = None, resampling: str = "nearest") -> Optional[np.ndarray]:
    """Read ``bands`` of ``path`` over ``tile`` of ``grid`` into ``out`` (bands, rows, cols).

    ``out`` is a float array; nodata (the file's, or ``nodata`` if given), pixels
    outside the input and masked pixels become NaN. Or ``out`` has the bands' own
    integer type: the values stay as stored (nodata values too, for the caller to
    compare) and the pixels outside the input or masked are returned as a boolean
    mask (None when there are none).
    """
    with timed("read"):  # opening (cached per process) counts as reading
        src, view, offset = _open_on_grid(path, grid, resampling, nodata)
    for b in bands:
        if b < 1 or b > src.count:
            raise InputError(f"Input {path} has {src.count} band(s); band {b} does not exist.")
    fill = nodata if nodata is not None else src.nodata
    started = time.monotonic()
    try:
        with timed("read"):
            if view is None:
                return _stoppable(path, lambda: _read_lattice(src, bands, tile, offset, out, fill))()
            return _stoppable(path, lambda: _read_warped(view, src.count, bands, tile, out, fill))()
    except RasterioIOError as exc:
        failure = read_error(path, exc, _where(tile, offset, src.height, src.width), time.monotonic() - started)
    raise failure   # outside the handler: no chain of GDAL's errors to carry (a Dask worker pickles it)


def _failed_remotes(path: str, said: str) -> List[str]:
    """The remote files behind a failure of ``path``: those GDAL's message ``said`` names (a VRT's sources),
    else ``path`` itself when it is remote (GDAL's name for it)."""
    return remote_names(said) or ([gdal_path(path)] if is_remote(path) else [])


def read_error(path: str, exc: BaseException, where: str, seconds: float = 0.0) -> InputError:
    """A failed pixel read: which file, where, and what GDAL said (rasterio's own message is
    only "Read failed. See previous exception for details"); for a remote file that failed after
    ``seconds`` as long as the HTTP timeout, or whose server timed out earlier in this process, that its
    server took too long. A local file is called damaged only when no remote source of it failed."""
    said = []
    seen: Optional[BaseException] = exc
    while seen is not None:
        text = str(seen).strip()
        if text and "See previous exception" not in text and not any(text in t for t in said):
            said.append(text)
        seen = seen.__cause__ or seen.__context__
    details = "; ".join(said) or str(exc)
    doing = "Reading" if is_remote(path) else "Reading a remote source of"
    remote = _failed_remotes(path, details)
    if may_use_network(path) and (is_timeout(details) or (waited_out(seconds) and "HTTP" not in details)):
        gave_up_on(remote)
        return InputError(timeout_message(path, doing, where))
    if remote and given_up(remote) and "HTTP" not in details:
        # GDAL keeps a file whose request timed out as missing: this process's later reads of it fail at
        # once, saying only that it "does not exist"; the cause is still the silent server
        return InputError(timeout_message(path, doing, where))
    if remote:
        return InputError(f"{doing} {path} at {where} failed: {details}")
    return InputError(f"{path} is damaged (truncated or corrupt): its pixels at {where} cannot be read "
                      f"({details}). Replace the file or repair it.")


def _where(tile: Tile, offset: Optional[Tuple[int, int]], height: int, width: int) -> str:
    """The part of an input a tile reads: its rows and columns if it is on the grid's lattice."""
    if offset is None:
        return (f"the area of output rows {tile.row_off}-{tile.row_off + tile.height - 1}, "
                f"cols {tile.col_off}-{tile.col_off + tile.width - 1}")
    row0, col0 = tile.row_off + offset[0], tile.col_off + offset[1]
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + tile.height, height) - 1, min(col0 + tile.width, width) - 1
    return f"rows {r0}-{r1}, cols {c0}-{c1} of the file"


def read_masked(src, bands: Sequence[int], window: Window,
                nodata: Optional[float] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read ``bands`` of the open dataset ``src`` over ``window`` (in its own pixels), as stored, with
    the mask of the pixels that have no data.

    No data: the values equal to ``nodata`` (the file's nodata value when None); when there is no
    nodata value at all, the pixels the dataset's mask (per-dataset or alpha) hides. A NaN nodata
    value, or one the bands' type cannot hold, marks nothing (NaN values are left to the caller).

    Returns ``(values, missing)``: ``values`` (bands, rows, cols); ``missing`` is True where a pixel
    has no data, of ``values``' shape (nodata values) or (rows, cols) (the dataset's mask, the same
    for every band), or None when no pixel is missing.
    """
    values = src.read(list(bands), window=window)
    fill = nodata if nodata is not None else src.nodata
    if fill is None:
        return values, dataset_mask(src, bands[0], window)
    return values, nodata_mask(values, fill)


def nodata_mask(values: np.ndarray, nodata: Optional[float]) -> Optional[np.ndarray]:
    """True where ``values`` equal ``nodata``; None when ``nodata`` is None, NaN or a value their type
    cannot hold (then none does).

    >>> nodata_mask(np.array([0, 3], np.uint8), 0), nodata_mask(np.array([0, 3], np.uint8), -1)
    (array([ True, False]), None)
    """
    if nodata is None or math.isnan(nodata) or not representable(nodata, values.dtype):
        return None
    return values == values.dtype.type(nodata)


def dataset_mask(src, band: int, window: Window) -> Optional[np.ndarray]:
    """True over ``window`` where the dataset's mask (per-dataset or alpha) of ``src`` hides a pixel;
    None when it has no such mask."""
    if not has_dataset_mask(src):
        return None
    return src.read_masks(band, window=window) == 0


def _read_lattice(src, bands, tile, offset, out, fill) -> Optional[np.ndarray]:
    row0 = tile.row_off + offset[0]
    col0 = tile.col_off + offset[1]
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + tile.height, src.height), min(col0 + tile.width, src.width)
    if out.dtype.kind in "iu":
        return _read_lattice_raw(src, bands, (row0, col0), (r0, c0, r1, c1), out, fill)
    out.fill(np.nan)
    if r1 <= r0 or c1 <= c0:
        return
    raw, missing = read_masked(src, bands, Window(c0, r0, c1 - c0, r1 - r0), fill)
    dst = out[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0]
    dst[...] = raw
    if missing is not None and missing.ndim == 2:
        dst[:, missing] = np.nan
    elif missing is not None:
        dst[missing] = np.nan
    return None


def _read_lattice_raw(src, bands, origin, box, out, fill) -> Optional[np.ndarray]:
    """The values as stored, straight into ``out`` when the tile lies inside the input; the mask of
    the pixels outside it or masked by its dataset mask (None: every pixel has a value)."""
    (row0, col0), (r0, c0, r1, c1) = origin, box
    height, width = out.shape[1:]
    if r1 <= r0 or c1 <= c0:
        out.fill(0)
        return np.ones((height, width), bool)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    inside = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
    missing = None
    if (r1 - r0, c1 - c0) == (height, width):
        src.read(list(bands), window=window, out=out)
    else:
        out.fill(0)
        out[(slice(None),) + inside] = src.read(list(bands), window=window)
        missing = np.ones((height, width), bool)
        missing[inside] = False
    masked = dataset_mask(src, bands[0], window) if fill is None else None
    if masked is not None:
        if missing is None:
            missing = np.zeros((height, width), bool)
        missing[inside] |= masked
    return missing


def _read_warped(view, count, bands, tile, out, fill) -> Optional[np.ndarray]:
    window = Window(tile.col_off, tile.row_off, tile.width, tile.height)
    raw_values = out.dtype.kind in "iu"   # see read_window
    if fill is None:
        raw = view.read(list(bands) + [count + 1], window=window)
        if raw_values:
            out[...] = raw[:-1]
            return raw[-1] == 0
        to_float(raw[:-1], out, None)
        out[:, raw[-1] == 0] = np.nan
    elif raw_values:
        view.read(list(bands), window=window, out=out)
    else:
        to_float(view.read(list(bands), window=window), out, fill)
    return None


def has_dataset_mask(src) -> bool:
    flags = src.mask_flag_enums[0] if src.count else ()
    return any(f.name in ("per_dataset", "alpha") for f in flags)


def to_float(raw: np.ndarray, dst: np.ndarray, fill: Optional[float]) -> None:
    dst[...] = raw
    missing = nodata_mask(raw, fill)
    if missing is not None:
        dst[missing] = np.nan


def representable(value: float, dtype: np.dtype) -> bool:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def read_categories(path: str, band: int, grid: Grid, tile: Tile) -> np.ndarray:
    """Read one categorical band (e.g. a QA / SCL band) over ``tile``, nearest neighbour, as int64.

    Pixels outside the input read as -1.
    """
    out = np.empty((1, tile.height, tile.width), np.float64)
    read_window(path, [band], grid, tile, out, nodata=None, resampling="nearest")
    cats = np.full(out.shape[1:], -1, np.int64)
    valid = ~np.isnan(out[0])
    cats[valid] = out[0][valid].astype(np.int64)
    return cats


def read_qa_mask(spec: "MaskSpec", i: int, inputs: Sequence[str], grid: Grid, tile: Tile) -> np.ndarray:
    """Boolean (rows, cols): True where the QA band of input ``i`` marks ``tile``'s pixels to drop
    (:func:`tilewise.core.masks.qa_mask`; read nearest neighbour; its nodata and pixels outside it
    are never masked)."""
    from ..masks import qa_mask
    path, band = spec.source(i, inputs)
    out = np.empty((1, tile.height, tile.width), np.float64)
    read_window(path, [band], grid, tile, out, nodata=None, resampling="nearest")
    return qa_mask(out[0], spec.mask, spec.width)


def close_all() -> None:
    """Close every dataset this process holds open; the remote files given up on are asked for again."""
    _CACHE.clear()
    forget_given_up()

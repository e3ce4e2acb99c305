"""The assets of one STAC item (or of one pass, several items) as the bands of one VRT.

The VRT is on the grid of the first asset (for a pass: the union of its items' first
assets, on the first one's pixel lattice). An asset at another resolution is resampled
by GDAL inside the VRT (``resampling`` of its source); harmonized bands are shifted by a
``ComplexSource`` offset and stay integers (GDAL clamps at 0, as ``clip(1000) - 1000``).
Every source states its size, type and blocks (``SourceProperties``), so opening the VRT
opens no asset: only reading does, through the bounded cache of GDAL.
"""

from __future__ import annotations

import logging
import math
import os
import urllib.parse
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from ...errors import CatalogError
from ...io.atomic import atomic_write
from .assets import HARMONIZE_OFFSET

log = logging.getLogger(__name__)

Transform = Tuple[float, float, float, float, float, float]

GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64"}
#: rasterio's resampling names as GDAL's VRT sources spell them.
VRT_RESAMPLING = {"nearest": "nearest", "bilinear": "bilinear", "cubic": "cubic", "cubic_spline": "cubicspline",
                  "lanczos": "lanczos", "average": "average", "mode": "mode"}
HEADER_THREADS = 8


@dataclass(frozen=True)
class AssetHeader:
    """What a VRT needs to know of one asset file."""

    source: str                 # the name GDAL opens, written in the VRT
    width: int
    height: int
    count: int
    dtypes: Tuple[str, ...]
    nodata: Optional[float]
    crs: str
    transform: Transform
    block: Tuple[int, int]      # (x, y)


@dataclass(frozen=True)
class HeaderRequest:
    source: str
    url: str                    # for messages: the asset href, unsigned
    label: str                  # e.g. "asset red (B04) of item S2A_..."
    headers: Tuple[Tuple[str, str], ...] = ()   # extra HTTP headers for this asset (a trusted origin only)
    open_as: str = ""           # what to open instead of ``source`` (where a trusted asset redirects)


def source_url(source: str) -> str:
    """The http(s) URL a ``/vsicurl?...&url=`` or ``/vsicurl/`` source reads, else "".

    >>> source_url("/vsicurl?max_retry=5&list_dir=no&url=https%3A%2F%2Fa.example%2Fb.tif"), source_url("/d/b.tif")
    ('https://a.example/b.tif', '')
    """
    if source.startswith("/vsicurl?"):
        urls = urllib.parse.parse_qs(source[len("/vsicurl?"):]).get("url") or [""]
        return urls[0]
    if source.startswith("/vsicurl/"):
        return source[len("/vsicurl/"):]
    return ""


def read_header(request: HeaderRequest) -> AssetHeader:
    """Open one asset and read its header; a missing or refused asset names itself."""
    from ...io.sources import open_error, open_raster
    try:
        with open_raster(request.open_as or request.source) as src:
            block = src.block_shapes[0] if src.count else (256, 256)
            return AssetHeader(request.source, src.width, src.height, src.count, tuple(src.dtypes), src.nodata,
                               src.crs.to_wkt() if src.crs else "", tuple(src.transform)[:6],  # type: ignore[arg-type]
                               (int(block[1]), int(block[0])))
    except RasterioIOError as exc:
        raise CatalogError(f"The {request.label} cannot be read. {open_error(request.url, exc)}") from None


def read_headers(requests: Sequence[HeaderRequest], http_headers: Mapping[str, str],
                 progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, AssetHeader]:
    """Headers of every asset (a few at a time: it is network latency), keyed by source. Each request's
    own ``headers`` (else ``http_headers``) go to its asset only."""
    unique = list({r.source: r for r in requests}.values())

    def one(request: HeaderRequest) -> AssetHeader:
        extra = request.headers or tuple(http_headers.items())
        if not extra:
            return read_header(request)
        lines = [f"{k}: {v}" for k, v in extra]
        if os.environ.get("GDAL_HTTP_HEADERS"):
            lines.insert(0, os.environ["GDAL_HTTP_HEADERS"])
        with rasterio.Env(GDAL_HTTP_HEADERS="\r\n".join(lines)):       # thread-local: each thread sets its own
            return read_header(request)

    out: Dict[str, AssetHeader] = {}
    if progress:
        progress(0, len(unique))
    with ThreadPoolExecutor(max_workers=max(1, min(HEADER_THREADS, len(unique)))) as pool:
        for done, header in enumerate(pool.map(one, unique), start=1):
            out[header.source] = header
            if progress:
                progress(done, len(unique))
    return out


def same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return CRS.from_wkt(a) == CRS.from_wkt(b)
    except Exception:  # noqa: BLE001 - a CRS that cannot be parsed is not the same
        log.debug("Two CRS cannot be compared", exc_info=True)
        return False


def common_dtype(dtypes: Sequence[str]) -> str:
    """One type for every band (readers such as rasterio read a mixed-type raster band by band only).

    >>> common_dtype(["uint16", "uint8"]), common_dtype(["int16", "uint16"]), common_dtype(["uint16", "float32"])
    ('uint16', 'int32', 'float32')
    """
    dtype = np.result_type(*[np.dtype(d) for d in dtypes]).name
    return dtype if dtype in GDAL_TYPES else "float64"


# -- the grid of a layer ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerGrid:
    crs: str
    transform: Transform
    width: int
    height: int


def layer_grid(headers: Sequence[AssetHeader], label: str) -> LayerGrid:
    """The union of ``headers``' footprints on the first one's pixel lattice (one header: its grid)."""
    first = headers[0]
    a, b, c, d, e, f = first.transform
    if b or d or a <= 0 or e >= 0:
        raise CatalogError(f"The first asset of {label} is not a north-up raster ({first.source}); "
                           "list a north-up asset first.")
    for h in headers[1:]:
        if not same_crs(h.crs, first.crs):
            raise CatalogError(f"The items of {label} are in different CRSs; search without grouping.")
    lefts, tops, rights, bottoms = zip(*(_bounds(h) for h in headers))
    col0 = math.floor((min(lefts) - c) / a + 1e-6)
    col1 = math.ceil((max(rights) - c) / a - 1e-6)
    row0 = math.floor((max(tops) - f) / e + 1e-6)
    row1 = math.ceil((min(bottoms) - f) / e - 1e-6)
    return LayerGrid(first.crs, (a, 0.0, c + col0 * a, 0.0, e, f + row0 * e), col1 - col0, row1 - row0)


def _bounds(h: AssetHeader) -> Tuple[float, float, float, float]:
    a, b, c, d, e, f = h.transform
    if b or d:
        raise CatalogError(f"The asset {h.source} is rotated; Tilewise can lay out north-up assets only.")
    xs, ys = (c, c + a * h.width), (f, f + e * h.height)
    return (min(xs), max(ys), max(xs), min(ys))


# -- the VRT ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Piece:
    """One source of one VRT band (a pass has one per item, the last drawn on top)."""

    header: AssetHeader
    band: int
    nodata: Optional[float]
    harmonize: bool


@dataclass(frozen=True)
class Band:
    description: str
    pieces: Tuple[Piece, ...]
    nodata: Optional[float]
    scale: Optional[float]
    offset: Optional[float]
    metadata: Tuple[Tuple[str, str], ...] = ()


def vrt_xml(grid: LayerGrid, bands: Sequence[Band], dtype: str, resampling: str,
            metadata: Sequence[Tuple[str, str]] = ()) -> str:
    """The VRT document of one layer."""
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    if grid.crs:
        ET.SubElement(root, "SRS").text = grid.crs
    a, _, c, _, e, f = grid.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(_num(v) for v in (c, a, 0.0, f, 0.0, e))
    _metadata(root, metadata)
    for i, band in enumerate(bands, start=1):
        el = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[dtype], band=str(i))
        ET.SubElement(el, "Description").text = band.description
        _metadata(el, band.metadata)
        if band.nodata is not None:
            ET.SubElement(el, "NoDataValue").text = _num(band.nodata)
        if band.offset is not None:
            ET.SubElement(el, "Offset").text = _num(band.offset)
        if band.scale is not None:
            ET.SubElement(el, "Scale").text = _num(band.scale)
        for piece in band.pieces:
            _source(el, piece, grid, resampling)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _source(parent: ET.Element, piece: Piece, grid: LayerGrid, resampling: str) -> None:
    h = piece.header
    el = ET.SubElement(parent, "ComplexSource", resampling=VRT_RESAMPLING.get(resampling, resampling))
    ET.SubElement(el, "SourceFilename", relativeToVRT="0").text = h.source
    ET.SubElement(el, "SourceBand").text = str(piece.band)
    ET.SubElement(el, "SourceProperties", RasterXSize=str(h.width), RasterYSize=str(h.height),
                  DataType=GDAL_TYPES.get(h.dtypes[piece.band - 1], "Float64"), BlockXSize=str(h.block[0]),
                  BlockYSize=str(h.block[1]))
    ET.SubElement(el, "SrcRect", xOff="0", yOff="0", xSize=str(h.width), ySize=str(h.height))
    ga, _, gc, _, ge, gf = grid.transform
    sa, _, sc, _, se, sf = h.transform
    ET.SubElement(el, "DstRect", xOff=_rect((sc - gc) / ga), yOff=_rect((sf - gf) / ge),
                  xSize=_rect(h.width * sa / ga), ySize=_rect(h.height * se / ge))
    if piece.nodata is not None:
        ET.SubElement(el, "NODATA").text = _num(piece.nodata)
    if piece.harmonize:
        ET.SubElement(el, "ScaleOffset").text = str(-HARMONIZE_OFFSET)
        ET.SubElement(el, "ScaleRatio").text = "1"


def _metadata(parent: ET.Element, items: Sequence[Tuple[str, str]]) -> None:
    if not items:
        return
    md = ET.SubElement(parent, "Metadata")
    for key, value in items:
        ET.SubElement(md, "MDI", key=key).text = value


def _num(value: float) -> str:
    """A number as GDAL reads it back exactly (integers without a fraction).

    >>> _num(0.0), _num(-1000.0), _num(0.0001), _num(float("nan"))
    ('0', '-1000', '0.0001', 'nan')
    """
    value = float(value)
    if math.isnan(value):
        return "nan"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _rect(value: float) -> str:
    """A pixel offset or size: float noise below 1e-9 pixel is dropped (2.0000000001 -> 2)."""
    return _num(round(value, 9))


def write_if_changed(path: str, text: str) -> bool:
    """Write ``text`` to ``path`` (atomically) unless it holds that text already: a search run again
    keeps its files, and so the finished tiles of a composite of them can be resumed."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    with atomic_write(path) as f:
        f.write(text)
    return True


def pieces_dtypes(pieces: Sequence[Piece]) -> List[str]:
    return [p.header.dtypes[p.band - 1] for p in pieces]

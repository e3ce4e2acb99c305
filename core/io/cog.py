"""Writing tiles and assembling them into a Cloud-Optimized GeoTIFF.

Workers write each tile as a small GeoTIFF (to a temporary name, renamed when
complete), with their first overview levels (:mod:`.overviews`). The tiles are then
listed in a VRT and GDAL's COG driver writes the final file, with overviews, using every core. The final
file too is written to a temporary name in the output folder and renamed, so a reader never sees a
half-written output.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.shutil import copy as gdal_copy

from .atomic import remove_if_there, remove_with_sidecar, staged_path
from .diskspace import is_disk_full
from ..errors import DiskFullError, OutputError
from ..grid import Grid, Tile
from ..options import OutputSpec
from ..paths import partial_path

log = logging.getLogger(__name__)

BLOCK_SIZE = 512

_GDAL_TYPES = {"float32": "Float32", "float64": "Float64", "int16": "Int16", "uint16": "UInt16",
               "int32": "Int32", "uint32": "UInt32", "uint8": "Byte", "int8": "Int8"}


def check_writable(path: str) -> None:
    """Fail early, before any work, if ``path`` cannot be written."""
    if not path:
        raise OutputError("No output file was given.")
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder does not exist: {folder}")
    if os.path.isdir(path):
        raise OutputError(f"The output path is a folder, not a file: {path}")
    probe = os.path.join(folder, f".tilewise-probe-{os.getpid()}")
    try:
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"Cannot write in the output folder {folder}: {exc.strerror}") from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"The output file exists and cannot be overwritten: {path}")


def to_output(values: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """Cast float results to the output type: NaN -> nodata, integers rounded and clipped."""
    dtype = np.dtype(spec.dtype)
    nan = np.isnan(values)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(np.where(nan, 0, values)), info.min, info.max).astype(dtype)
    else:
        out = values.astype(dtype)
    out[nan] = dtype.type(spec.nodata)
    return out


def tile_path(workdir: str, tile: Tile, layer: "int | str" = 0) -> str:
    """The file of ``tile`` in the work folder (``layer``: one of several files per tile, e.g. of another type, or
    a name, e.g. ``"p0"``: the first output's packed tile, :mod:`.packed`)."""
    suffix = f"_{layer}" if layer else ""
    return os.path.join(workdir, f"tile_{tile.row_off:07d}_{tile.col_off:07d}{suffix}.tif")


def write_tile(path: str, data: np.ndarray, grid: Grid, tile: Tile, spec: OutputSpec, packed: bool = False) -> None:
    """Write one tile as a GeoTIFF, atomically (temporary name, then rename); ``packed``: in the output's
    blocks, compressed as the output is (:func:`packed_options`), for :mod:`.packed`."""
    # Several bands: band-interleaved blocks, since the assembly reads the tiles band by band (a row strip
    # of interleaved pixels is decoded whole for each band: a 48-date gap fill's assembly took 3x longer).
    layout = packed_options(spec) if packed else dict(
        tiled=True, blockxsize=min(512, -(-tile.width // 16) * 16), blockysize=min(512, -(-tile.height // 16) * 16),
        interleave="band") if data.shape[0] > 1 else dict(tiled=False)
    profile = dict(driver="GTiff", width=tile.width, height=tile.height, count=data.shape[0],
                   dtype=spec.dtype, crs=grid.crs or None, transform=rasterio.Affine(*grid.window_transform(tile)),
                   nodata=spec.nodata, **layout)
    # uncompressed, whatever the output's compression: the assembly decodes every tile once to encode the
    # output, and ZSTD (level 1) cost the workers' writes and that decoding about 1 s of the 4.2 s of CPU of a
    # 7000 x 7000 NDVI default COG on noise, to save disk that the space check counted anyway (raw pixels)
    try:
        with staged_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
    except Exception as exc:
        if is_disk_full(exc, os.path.dirname(path), data.nbytes):
            raise DiskFullError(f"The disk is full: writing {tile.name} into {os.path.dirname(path)} failed.") \
                from None
        raise


@dataclass(frozen=True)
class Placement:
    """One source file laid on the grid: its whole extent goes to a window of the grid."""

    filename: str
    row_off: int
    col_off: int
    height: int
    width: int
    relative: bool = False
    nodata: Optional[float] = None  # a source nodata makes those pixels transparent


def write_vrt(path: str, grid: Grid, spec: OutputSpec, descriptions: Sequence[str],
              placements: Sequence[Placement], bands: Optional[Sequence[int]] = None) -> str:
    """Write a VRT laying ``placements`` on ``grid`` (later sources paint over earlier ones); its band
    ``b`` reads band ``bands[b - 1]`` of the sources (by default band ``b``)."""
    gtype = _GDAL_TYPES[spec.dtype]
    srs = f"  <SRS>{escape(grid.crs)}</SRS>\n" if grid.crs else ""
    parts = [f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">\n', srs,
             "  <GeoTransform>{}</GeoTransform>\n".format(", ".join(repr(v) for v in _gdal_transform(grid)))]
    for b, desc in enumerate(descriptions, start=1):
        parts.append(f'  <VRTRasterBand dataType="{gtype}" band="{b}">\n'
                     f"    <Description>{escape(desc)}</Description>\n"
                     f"    <NoDataValue>{spec.nodata!r}</NoDataValue>\n")
        source_band = bands[b - 1] if bands else b
        for p in placements:
            kind = "SimpleSource" if p.nodata is None else "ComplexSource"
            nodata = "" if p.nodata is None else f"<NODATA>{p.nodata!r}</NODATA>"
            parts.append(
                f'    <{kind}><SourceFilename relativeToVRT="{int(p.relative)}">{escape(p.filename)}'
                f"</SourceFilename><SourceBand>{source_band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{p.width}" ySize="{p.height}"/>'
                f'<DstRect xOff="{p.col_off}" yOff="{p.row_off}" xSize="{p.width}" ySize="{p.height}"/>'
                f"{nodata}</{kind}>\n")
        parts.append("  </VRTRasterBand>\n")
    parts.append("</VRTDataset>\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(parts))
    return path


def build_vrt(grid: Grid, tiles: Sequence[Tile], workdir: str, spec: OutputSpec, descriptions: Sequence[str],
              bands: Optional[Sequence[int]] = None, layer: "int | str" = 0, name: str = "tiles.vrt") -> str:
    """Write a VRT that lays the tile files (of ``layer``) out on the grid, taking their ``bands``
    (default all); return its path."""
    placements = [Placement(os.path.basename(tile_path(workdir, t, layer)), t.row_off, t.col_off, t.height, t.width,
                            relative=True) for t in tiles]
    return write_vrt(os.path.join(workdir, name), grid, spec, descriptions, placements, bands)


def _gdal_transform(grid: Grid):
    a, b, c, d, e, f = grid.transform
    return (c, a, b, f, d, e)


def write_cog(vrt_path: str, spec: OutputSpec, threads: str = "ALL_CPUS", overviews: str = "IGNORE_EXISTING") -> None:
    """Translate the tile VRT into the final COG at ``spec.path`` (atomically).

    ``overviews`` is the COG driver's ``OVERVIEWS``: ``IGNORE_EXISTING`` (GDAL computes every level),
    ``FORCE_USE_EXISTING`` (the VRT declares them: :func:`.overviews.prepare_overviews`); a spec
    without overviews (``spec.overviews`` False) writes none (``NONE``)."""
    tmp = partial_path(spec.path)
    options = cog_options(spec, threads, overviews)
    try:
        gdal_copy(vrt_path, tmp, driver="COG", **options)
        _replace_output(tmp, spec.path)
    except Exception as exc:
        write_failed(exc, spec, tmp, _raw_bytes(vrt_path))
        raise


def write_array_cog(data: np.ndarray, grid: Grid, spec: OutputSpec, descriptions: Sequence[str], path: str) -> None:
    """Write ``data`` (bands, rows, cols: the whole ``grid``) as the COG of ``spec`` at ``path`` (the caller
    renames it into place), byte for byte what :func:`write_cog` makes from a VRT of one tile holding
    ``data`` with GDAL building every overview level: the run of one tile skips its tile file and VRT.

    It runs in a worker process, so GDAL uses no threads of its own here: a worker forked from a process
    whose GDAL had started its thread pool (the engine after an assembly, a test process) inherits a pool
    without threads, and the COG driver would wait for them forever."""
    profile = dict(driver="COG", width=grid.width, height=grid.height, count=data.shape[0], dtype=spec.dtype,
                   crs=grid.crs or None, transform=rasterio.Affine(*grid.transform), nodata=spec.nodata,
                   **cog_options(spec, threads="1"))
    try:
        # a MEM dataset, copied by the COG driver on close
        with rasterio.Env(GDAL_NUM_THREADS="1"), rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for band, description in enumerate(descriptions, start=1):
                dst.set_band_description(band, description)
    except Exception as exc:
        write_failed(exc, spec, path, data.nbytes)
        raise


def write_failed(exc: Exception, spec: OutputSpec, partial: str, nbytes: int) -> None:
    """After writing the COG of ``spec`` at ``partial`` failed with ``exc``: remove what was written, then
    raise :class:`DiskFullError` if the disk is full (``nbytes``: what the write needed), or
    :class:`OutputError` for a file-system or GDAL error; otherwise return (the caller re-raises ``exc``)."""
    full = is_disk_full(exc, os.path.dirname(partial), nbytes)
    remove_with_sidecar(partial)
    if full:
        raise DiskFullError(f"The disk is full: writing {spec.path} failed.") from None
    if isinstance(exc, (OSError, RasterioError)) or type(exc).__name__.startswith("CPLE_"):
        raise OutputError(f"Writing {spec.path} failed: {exc}") from exc


def cog_options(spec: OutputSpec, threads: str = "ALL_CPUS", overviews: str = "IGNORE_EXISTING") -> Dict[str, str]:
    """The COG driver's creation options for an output of ``spec`` (see :func:`write_cog`); the layout planned
    for writing in place (:mod:`.inplace`) takes the same."""
    options = dict(COMPRESS=spec.compression, BLOCKSIZE=str(BLOCK_SIZE),
                   OVERVIEWS=overviews if spec.overviews else "NONE",
                   OVERVIEW_RESAMPLING=spec.overview_resampling.upper(), NUM_THREADS=threads, BIGTIFF="IF_SAFER")
    if spec.compression == "DEFLATE" and spec.dtype in FLOAT_DEFLATE_TYPES:
        options.update(FLOAT_DEFLATE)
    elif spec.compression in ("DEFLATE", "ZSTD", "LZW"):
        options["PREDICTOR"] = "YES"
    return options


#: TIFF's code (tag 259) of each compression, as GDAL writes it.
TIFF_COMPRESSIONS = {"NONE": 1, "LZW": 5, "DEFLATE": 8, "ZSTD": 50000}


def packed_options(spec: OutputSpec) -> Dict[str, object]:
    """The GeoTIFF creation options (rasterio's keywords) whose blocks are, byte for byte, those GDAL's COG driver
    writes with :func:`cog_options` from the same pixels: its block size and pixel interleave, codec, level and
    predictor (the COG driver's ``PREDICTOR=YES`` is the floating-point predictor for floats).

    >>> from tilewise.core.options import OutputSpec
    >>> sorted(packed_options(OutputSpec("a.tif", "float32")).items())[:3]
    [('blockxsize', 512), ('blockysize', 512), ('compress', 'DEFLATE')]
    >>> packed_options(OutputSpec("a.tif", "int16"))["predictor"], packed_options(OutputSpec("a.tif"))["zlevel"]
    (2, '1')
    """
    cog = cog_options(spec)
    options: Dict[str, object] = dict(tiled=True, blockxsize=BLOCK_SIZE, blockysize=BLOCK_SIZE, interleave="pixel",
                                      compress=spec.compression)
    if "LEVEL" in cog:
        options["zstd_level" if spec.compression == "ZSTD" else "zlevel"] = cog["LEVEL"]
    if cog.get("PREDICTOR") == "YES":
        options["predictor"] = 3 if np.dtype(spec.dtype).kind == "f" else 2
    return options


#: Float outputs (NDVI, indices, float composites) take DEFLATE at level 1 without a predictor: on the NDVI
#: COG of the benchmark (``make bench``'s DEFLATE trade table, README *Benchmark*) it encodes 1.8-1.9x faster
#: than level 6 with the horizontal predictor, and the file is 34 % smaller on noisy values, 2.2x larger on
#: the blocky x20 scene (12 MiB instead of 6). The horizontal predictor adds the bytes of neighbouring floats
#: as integers: it rarely helps floats. Integer outputs keep level 6 and the predictor. Any GDAL reads it.
FLOAT_DEFLATE = {"LEVEL": "1"}
FLOAT_DEFLATE_TYPES = ("float32", "float64")


def replace_output(tmp: str, path: str) -> None:
    """Put the finished output ``tmp`` in place at ``path`` (see :func:`_replace_output`)."""
    _replace_output(tmp, path)


def _replace_output(tmp: str, path: str) -> None:
    """Put the finished COG in place, with its side-car if GDAL wrote one; an older output's
    side-car (statistics, histograms of the previous pixels) goes with the older output."""
    side = tmp + ".aux.xml"
    if os.path.exists(side):
        os.replace(side, path + ".aux.xml")
    else:
        remove_if_there(path + ".aux.xml")
    os.replace(tmp, path)


def _raw_bytes(vrt_path: str) -> int:
    try:
        with rasterio.open(vrt_path) as src:
            return src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
    except Exception:  # noqa: BLE001 - only to tell a full disk: unknown, it is not counted
        log.debug("The size of %s is unknown", vrt_path, exc_info=True)
        return 0

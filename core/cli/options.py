"""Command-line options defined once and composed per command (as rasterio's ``rio/options.py``).

Each ``add_*`` function adds one group of options to a command; the matching
``*_kwargs`` function turns the parsed values into the API's keyword arguments,
whose names are the fields of :class:`~tilewise.core.options.GridOptions`,
:class:`~tilewise.core.options.OutputOptions` and :class:`~tilewise.core.options.RunOptions`.
Value lists come from :mod:`tilewise.core.vocabulary`.
"""

from __future__ import annotations

import argparse
import os
from typing import List, Optional, Sequence

from ..io.names import expand_pattern
from ..vocabulary import COMPRESSIONS, MASK_PRESETS, OUTPUT_TYPES, OVERVIEW_RESAMPLINGS, RESAMPLING_METHODS


# -- values ------------------------------------------------------------------------------------------------------

def numbers(text: str, kind=float) -> List:
    """``"10,50;90"`` -> ``[10.0, 50.0, 90.0]``."""
    try:
        return [kind(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def integers(text: str) -> List[int]:
    return numbers(text, int)


def band_spec(text: str) -> List:
    """``path`` or ``path:band`` (a trailing number after the last colon is the band)."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and head:
        return [head, int(tail)]
    return [text, 1]


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """Expand glob patterns (quoted on the shell, or on Windows), keep plain paths as they are."""
    return [m for p in patterns for m in expand_pattern(p)]


def _choices(values: Sequence[str]) -> str:
    return ", ".join(values)


# -- groups --------------------------------------------------------------------------------------------------------

def add_grid_options(p: argparse.ArgumentParser, default: str = "the first input's grid") -> None:
    g = p.add_argument_group(f"target grid (default: {default})")
    g.add_argument("--reference", help="raster whose grid the output takes")
    g.add_argument("--extent", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="output extent, in the target CRS")
    g.add_argument("--crs", help="target CRS, e.g. EPSG:3035")
    g.add_argument("--cell-size", type=float, help="output pixel size, in target CRS units")
    g.add_argument("--resampling", default=RESAMPLING_METHODS[0], choices=RESAMPLING_METHODS, metavar="METHOD",
                   help=f"for inputs on another grid: {_choices(RESAMPLING_METHODS)} (default {RESAMPLING_METHODS[0]})")


def grid_kwargs(args: argparse.Namespace) -> dict:
    return dict(reference=args.reference, extent=args.extent, crs=args.crs, cell_size=args.cell_size,
                resampling=args.resampling)


def add_output_options(p: argparse.ArgumentParser, type_default: Optional[str] = OUTPUT_TYPES[0],
                       nodata_default: str = "-9999, or the type's maximum if unsigned") -> None:
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", required=True,
                   help="output Cloud-Optimized GeoTIFF (.tif or .tiff; .tif is added to a name without extension)")
    g.add_argument("--output-type", default=type_default, type=str.lower, choices=OUTPUT_TYPES, metavar="TYPE",
                   help=f"{_choices(OUTPUT_TYPES)} (default {type_default or 'the inputs type'})")
    g.add_argument("--output-nodata", type=float, help=f"default {nodata_default}")
    g.add_argument("--compression", default=COMPRESSIONS[0], type=str.upper, choices=COMPRESSIONS, metavar="NAME",
                   help=f"{_choices(COMPRESSIONS)} (default {COMPRESSIONS[0]})")
    g.add_argument("--overview-resampling", default=OVERVIEW_RESAMPLINGS[0], choices=OVERVIEW_RESAMPLINGS,
                   metavar="METHOD", help=f"of the COG's overviews: {_choices(OVERVIEW_RESAMPLINGS)} "
                                          f"(default {OVERVIEW_RESAMPLINGS[0]})")
    g.add_argument("--no-overviews", dest="overviews", action="store_false",
                   help="write the COG without overviews (faster; slower to view zoomed out)")
    g.add_argument("--allow-large", action="store_true",
                   help="write an output above 16 GiB before compression (refused without this flag: a grid "
                        "that large is usually a mistake, e.g. an input far away or a wrong cell size)")


def output_kwargs(args: argparse.Namespace) -> dict:
    return dict(output_type=args.output_type, output_nodata=args.output_nodata, compression=args.compression,
                overview_resampling=args.overview_resampling, allow_large=args.allow_large, overviews=args.overviews)


def add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running")
    g.add_argument("--tile-size", type=int,
                   help="tile side in pixels, at least 8 (default or 0: from the memory budget)")
    g.add_argument("-j", "--workers", type=int,
                   help="worker processes (default or 0: all cores; never more than the cores or the tiles)")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar or progress messages (warnings still print)")
    g.add_argument("--debug", action="store_true",
                   help="print where the time went (engine start, planning, read, compute, tile writes, "
                        "overviews, assembly) as the last line")
    r = p.add_argument_group("scaling out and long runs")
    r.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the tiles on a Dask cluster: its scheduler's address (tcp://host:8786) or "
                        "scheduler file (needs dask[distributed]; the output folder must be shared with the workers)")
    r.add_argument("--resume", action="store_true",
                   help="reuse the finished tiles of an interrupted run of the same command")
    r.add_argument("--keep-workdir", action="store_true",
                   help="keep the work folder (tiles, manifest) beside the output after success")
    r.add_argument("--wait-if-busy", action="store_true",
                   help="if another Tilewise run is writing the same output, wait for it to finish "
                        "(default: stop with a message naming that run)")
    add_http_timeout_option(g)


def run_kwargs(args: argparse.Namespace) -> dict:
    return dict(tile_size=args.tile_size, workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                keep_workdir=args.keep_workdir, wait_if_busy=args.wait_if_busy)


def add_input_nodata_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-nodata", type=float, help="nodata value of the inputs (overrides the files')")


def add_mask_options(p: argparse.ArgumentParser) -> None:
    """The QA mask every masking command takes: where (a band of each input, or one raster per input)
    and what (classes, bits, a preset; they add up)."""
    g = p.add_argument_group("QA mask (classes, bits and a preset add up)")
    g.add_argument("--mask-band", type=int, help="band of each input holding the QA classes or bits "
                                                 "(e.g. Sentinel-2 SCL, Landsat QA_PIXEL)")
    g.add_argument("--mask", nargs="+", dest="mask_layers", help="one mask raster per input, in order")
    g.add_argument("--mask-values", type=integers, default=[], help="QA classes to exclude, e.g. 0,1,3,8,9,10")
    g.add_argument("--mask-bits", type=integers, default=[],
                   help="QA bits to exclude where set (bit 0 the lowest), e.g. 1,2,3,4 for Landsat C2 "
                        "dilated cloud, cirrus, cloud, cloud shadow")
    g.add_argument("--mask-preset", choices=MASK_PRESETS, default=MASK_PRESETS[0],
                   help="s2-scl: Sentinel-2 SCL classes 0,1,3,8,9,10; landsat-c2-qa: Landsat Collection 2 "
                        "QA_PIXEL bits 1,2,3,4 (default none)")


def mask_kwargs(args: argparse.Namespace, mask_band: Optional[int] = None) -> dict:
    """The API's mask keywords; ``mask_band``: the band when the command resolved it otherwise (STAC)."""
    return dict(mask_band=mask_band if mask_band is not None else args.mask_band,
                mask_layers=expand_inputs(args.mask_layers) if args.mask_layers else None,
                mask_values=args.mask_values, mask_bits=args.mask_bits,
                mask_preset=None if args.mask_preset == MASK_PRESETS[0] else args.mask_preset)


def add_raster_options(p: argparse.ArgumentParser, grid_default: str = "the first input's grid", **output) -> None:
    """Grid, output and run options: what every command that writes a COG takes."""
    add_grid_options(p, grid_default)
    add_output_options(p, **output)
    add_run_options(p)


def raster_kwargs(args: argparse.Namespace) -> dict:
    return {**grid_kwargs(args), **output_kwargs(args), **run_kwargs(args)}


def add_http_timeout_option(p) -> None:
    """``--http-timeout SECONDS``: how long a server of remote inputs may stay silent (see
    :mod:`tilewise.core.io.network`); :func:`apply_http_timeout` makes it the process's setting."""
    from ..io.network import DEFAULT_HTTP_TIMEOUT, HTTP_TIMEOUT_ENV
    p.add_argument("--http-timeout", type=_seconds, metavar="SECONDS",
                   help=f"give up a remote input (http, s3...) whose server sends nothing for this long (default "
                        f"{DEFAULT_HTTP_TIMEOUT}, or the {HTTP_TIMEOUT_ENV} environment variable; one request lasts "
                        "at most four times this)")


def _seconds(text: str) -> int:
    from ..errors import ParameterError
    from ..io.network import parse_timeout
    try:
        return parse_timeout(text)
    except ParameterError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0") from None


def apply_http_timeout(args: argparse.Namespace) -> None:
    """The ``--http-timeout`` given becomes ``TILEWISE_HTTP_TIMEOUT`` for this process and its workers."""
    from ..io.network import HTTP_TIMEOUT_ENV
    if getattr(args, "http_timeout", None) is not None:
        os.environ[HTTP_TIMEOUT_ENV] = str(args.http_timeout)


def add_swath_grid_options(p) -> None:
    """Options of swath scenes given to a raster operation (gridded onto --extent and --cell-size first)."""
    g = p.add_argument_group("swath scenes (SAFE folders, netCDF on latitude/longitude grids; gridded onto "
                             "--extent and --cell-size first, in --crs, default EPSG:4326)")
    g.add_argument("--variables", metavar="LIST", help="variables to grid, e.g. CHL_NN (default all measured ones)")
    g.add_argument("--mask-flags", metavar="LIST", help="flags to mask by name, e.g. LAND,CLOUD,INVALID")
    g.add_argument("--flag-variable", metavar="NAME", help="the flag variable (default: the scene's, e.g. WQSF)")


def swath_grid_kwargs(args: argparse.Namespace) -> dict:
    """The swath options that were given (a raster run refuses them)."""
    return {k: getattr(args, k) for k in ("variables", "mask_flags", "flag_variable") if getattr(args, k, None)}

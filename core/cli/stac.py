"""The STAC parts of the ``tilewise`` command line.

    tilewise stac search https://earth-search.aws.element84.com/v1 --collections sentinel-2-l2a \\
        --bbox 15.9 45.7 16.1 45.9 --datetime 2024-05-01/2024-09-30 --max-cloud 20 --assets red,nir,scl -o items/
    tilewise composite --stac https://earth-search.aws.element84.com/v1 --collections sentinel-2-l2a \\
        --bbox 15.9 45.7 16.1 45.9 --datetime 2024-05-01/2024-09-30 --max-cloud 20 --assets red,nir,scl \\
        --mask-asset scl --mask-values 0,1,3,8,9,10 -o median.tif
"""

from __future__ import annotations

import argparse
import os
from typing import Any, List, Optional, Tuple

from ..errors import ParameterError
from ..vocabulary import STAC_GROUPINGS, STAC_RESAMPLINGS


def add_search_options(p: argparse.ArgumentParser, assets_required: bool) -> None:
    g = p.add_argument_group("STAC search")
    g.add_argument("--collections", help="collection ids, comma-separated (e.g. sentinel-2-l2a)")
    g.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="area, in EPSG:4326 degrees")
    g.add_argument("--datetime", help="RFC 3339 date, date-time or interval, e.g. 2024-05-01/2024-09-30")
    g.add_argument("--max-cloud", type=float, help="keep items with eo:cloud_cover at most this (percent)")
    g.add_argument("--limit", type=int, default=100, help="at most this many items (default 100; 0: all)")
    g.add_argument("--assets", required=assets_required,
                   help="bands in order: asset keys or eo:bands common names, e.g. red,nir,scl or B04,B08,SCL")
    g.add_argument("--group-by", choices=[g.replace("_", "-") for g in STAC_GROUPINGS], default=STAC_GROUPINGS[0],
                   help="solar-day: one layer per pass (the items of one day and orbit mosaicked)")
    g.add_argument("--harmonize", action="store_true",
                   help="subtract the 1000 DN offset of Sentinel-2 processing baseline 04.00 and later")
    g.add_argument("--asset-resampling", default=STAC_RESAMPLINGS[0], choices=STAC_RESAMPLINGS, metavar="METHOD",
                   help=f"for assets at another resolution than the first asset: {', '.join(STAC_RESAMPLINGS)} "
                        f"(default {STAC_RESAMPLINGS[0]})")
    g.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="extra HTTP header (repeatable); it goes to the catalogue's own host (scheme, host, port) "
                        "only, and to the hosts of --header-hosts")
    g.add_argument("--header-hosts", metavar="HOST[,HOST...]",
                   help="more hosts that get the --header values, e.g. the asset hosts: host, host:port or "
                        "https://host (redirects to other hosts never get them)")
    g.add_argument("--sign", metavar="MODULE:FUNCTION",
                   help="URL signing hook for the asset hrefs, e.g. planetary_computer:sign")
    g.add_argument("--page-size", type=int, default=100, help="items per page of an API search (default 100)")


def add_commands(sub: Any) -> None:
    """``tilewise stac search URL ... -o FOLDER``."""
    stac = sub.add_parser("stac", help="STAC catalogues: search into layers (one VRT per item)")
    actions = stac.add_subparsers(dest="stac_command", required=True)
    s = actions.add_parser("search", help="search a STAC API, static catalogue or ItemCollection",
                           description="Search a STAC catalogue and write one VRT per item (or per pass) whose "
                                       "bands are the assets, plus search.json, items.json and footprints.geojson. "
                                       "The layer paths are printed in date order, one per line.")
    s.add_argument("url", help="STAC API URL, or path / URL of a static catalogue or ItemCollection JSON")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("-q", "--quiet", action="store_true", help="print only the layer paths (and warnings)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace files in the output folder that Tilewise did not write (default: refuse)")
    add_search_options(s, assets_required=True)
    from .options import add_http_timeout_option
    add_http_timeout_option(s)     # the assets' headers are read by GDAL
    stac.set_defaults(run=run_stac)


def add_composite_options(c: argparse.ArgumentParser) -> None:
    """``tilewise composite --stac URL ...``: search, then composite the layers found."""
    g = c.add_argument_group("inputs from a STAC search (instead of input files)")
    g.add_argument("--stac", metavar="URL", help="search this STAC catalogue and composite what it finds")
    g.add_argument("--stac-output", metavar="FOLDER",
                   help="folder for the search's layers (default: beside the output, <name>_stac)")
    g.add_argument("--stac-overwrite", action="store_true",
                   help="replace files in that folder that Tilewise did not write (default: refuse)")
    g.add_argument("--mask-asset", metavar="NAME", help="the asset that holds the mask classes, e.g. scl")
    add_search_options(c, assets_required=False)


def search_kwargs(args: argparse.Namespace) -> dict:
    return dict(collections=args.collections, bbox=args.bbox, datetime=args.datetime, max_cloud=args.max_cloud,
                limit=args.limit, group_by=args.group_by.replace("-", "_"), harmonize=args.harmonize,
                headers=args.header, header_hosts=args.header_hosts, sign=args.sign, resampling=args.asset_resampling,
                page_size=args.page_size)


def run_stac(args: argparse.Namespace) -> int:
    from ..operations.stac.search import stac_search
    report = stac_search(args.url, args.output, args.assets, overwrite=args.overwrite,
                         **search_kwargs(args))
    for path in report.layers:
        print(path)
    return 0


def composite_inputs(args: argparse.Namespace, expand) -> Tuple[List[str], Optional[int]]:
    """The composite's inputs and mask band: the files given, or the layers of a STAC search."""
    if not args.stac:
        if not args.inputs:
            raise ParameterError("Give input rasters, or --stac URL to search a STAC catalogue for them.")
        if args.mask_asset:
            raise ParameterError("--mask-asset goes with --stac; with input files use --mask-band.")
        return expand(args.inputs), args.mask_band
    if args.inputs:
        raise ParameterError("Give either input rasters or --stac URL, not both.")
    if not args.assets:
        raise ParameterError("--stac needs --assets, the bands to read in order (e.g. red,nir,scl).")
    from ..operations.stac.search import stac_search
    from ..operations.stac.assets import parse_assets
    names = parse_assets(args.assets)
    mask_band = args.mask_band
    if args.mask_asset:
        if args.mask_band is not None:
            raise ParameterError("Give either --mask-asset or --mask-band, not both.")
        if args.mask_asset not in names:
            raise ParameterError(f"--mask-asset {args.mask_asset} is not one of --assets {', '.join(names)}.")
        mask_band = names.index(args.mask_asset) + 1
    folder = args.stac_output or os.path.splitext(os.path.abspath(args.output))[0] + "_stac"
    report = stac_search(args.stac, folder, names, overwrite=args.stac_overwrite,
                         **search_kwargs(args))
    return report.layers, mask_band

"""``tilewise composite``: a per-pixel statistic across a time series (or the layers of a STAC search)."""

from __future__ import annotations

import argparse

from ..vocabulary import STATISTICS
from . import print_report, run_with_progress
from .options import (add_input_nodata_option, add_mask_options, add_raster_options, expand_inputs, integers,
                      mask_kwargs, numbers, raster_kwargs)
from .stac import add_composite_options, composite_inputs


def add_commands(sub) -> None:
    c = sub.add_parser("composite", help="per-pixel statistic across a time series of rasters",
                       description="Per-pixel median (or mean, min, max, std, count, percentiles) across rasters, "
                                   "nodata and masked classes ignored, every band composited.")
    c.add_argument("inputs", nargs="*", help="input rasters or quoted glob patterns (or use --stac)")
    c.add_argument("-s", "--statistic", default=STATISTICS[0], choices=STATISTICS)
    c.add_argument("-p", "--percentiles", type=numbers, default=[], help="e.g. 25,50,75 (with -s percentile)")
    c.add_argument("--bands", type=integers, help="input bands to composite, e.g. 1,2,3 (default all)")
    add_input_nodata_option(c)
    add_mask_options(c)
    g = c.add_argument_group("swath scenes (SAFE folders, netCDF on latitude/longitude grids; gridded onto "
                             "--extent and --cell-size first)")
    g.add_argument("--variables", metavar="LIST", help="variables to composite, e.g. CHL_NN (default all "
                   "measured ones)")
    g.add_argument("--mask-flags", metavar="LIST", help="flags to mask by name, e.g. LAND,CLOUD,INVALID")
    add_raster_options(c)
    add_composite_options(c)
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.composite import composite
    inputs, mask_band = composite_inputs(args, expand_inputs)
    report = run_with_progress(
        composite, args, inputs, args.output, args.statistic, args.percentiles, bands=args.bands,
        input_nodata=args.input_nodata, **mask_kwargs(args, mask_band), **raster_kwargs(args),
        **{k: v for k, v in (("variables", args.variables), ("mask_flags", args.mask_flags)) if v})
    print_report(report)
    return 0

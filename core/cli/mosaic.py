"""``tilewise mosaic``: many rasters (files, folders, glob patterns) into one COG."""

from __future__ import annotations

import argparse

from ..vocabulary import OVERLAP_RULES
from . import run_with_progress
from .options import add_input_nodata_option, add_raster_options, add_swath_grid_options, raster_kwargs, \
    swath_grid_kwargs


def add_commands(sub) -> None:
    s = sub.add_parser("mosaic", help="many rasters (files, folders, glob patterns) into one COG",
                       description="Mosaic: tilewise mosaic -o out.tif 'tiles/*.tif'. All bands kept; inputs in "
                                   "other CRSs warped on the fly; overlaps combined by --overlap.")
    s.add_argument("inputs", nargs="+", help="rasters, folders or quoted glob patterns (thousands are fine); or swath "
                                                "scenes (SAFE folders, netCDF on latitude/longitude grids)")
    s.add_argument("--overlap", default=OVERLAP_RULES[0], choices=OVERLAP_RULES)
    add_input_nodata_option(s)
    add_swath_grid_options(s)
    add_raster_options(s, "the union of the inputs", type_default=None, nodata_default="the inputs'")
    s.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.mosaic import mosaic
    report = run_with_progress(mosaic, args, args.inputs, args.output, args.overlap, input_nodata=args.input_nodata,
                               **raster_kwargs(args), **swath_grid_kwargs(args))
    print(f"{report.output}: {report.width} x {report.height} x {report.bands} bands in {report.seconds:.2f} s")
    return 0

"""``tilewise gapfill``: the gaps of a time series filled in time, per pixel.

    tilewise gapfill --method linear --max-gap 60 --mask-band 13 --mask-preset s2-scl -o filled.tif scenes/*.tif
"""

from __future__ import annotations

import argparse

from ..vocabulary import GAPFILL_EDGE_MODES, GAPFILL_METHODS
from . import print_report, run_with_progress
from .options import add_input_nodata_option, add_mask_options, add_raster_options, add_swath_grid_options, \
    expand_inputs, mask_kwargs, raster_kwargs, swath_grid_kwargs


def add_commands(sub) -> None:
    c = sub.add_parser(
        "gapfill", help="fill the gaps of a time series in time (clouds, nodata), per pixel",
        description="Fill the masked and nodata dates of a time series, per pixel: linear in time (weighted by "
                    "the days between dates), nearest, previous, next, or the median of the same season in other "
                    "years. The output has one band per date (band descriptions: the ISO dates), in date order. "
                    "Dates come from the file names (YYYY-MM-DD, YYYYMMDD, YYYY_MM_DD, YYYY-MM, YYYY_MM), else "
                    "the metadata, else --dates. Observed values pass through unchanged.")
    c.add_argument("inputs", nargs="+", help="input rasters (one per date, any order) or quoted glob patterns; or "
                                              "swath scenes (SAFE folders, netCDF on latitude/longitude grids)")
    c.add_argument("-m", "--method", default=GAPFILL_METHODS[0], choices=GAPFILL_METHODS,
                   help="linear (default), nearest, previous, next or seasonal (then linear for what remains)")
    c.add_argument("--max-gap", type=float, default=0, metavar="DAYS",
                   help="longest gap to fill, in days; a longer one stays nodata (default 0: no limit)")
    c.add_argument("--edges", default=GAPFILL_EDGE_MODES[0], choices=GAPFILL_EDGE_MODES,
                   help="leading and trailing gaps: leave them empty (default) or take the nearest valid value")
    c.add_argument("--season-days", type=float, default=30, metavar="DAYS",
                   help="seasonal: the width of the season around a date, in days (default 30)")
    c.add_argument("--years-window", type=int, default=0, metavar="YEARS",
                   help="seasonal: years before and after to look in (default 0: all)")
    c.add_argument("--target-dates", metavar="DATES",
                   help="output dates: START,STEP_DAYS,END for a regular series (e.g. 2024-01-01,10,2024-12-31) "
                        "or a list of dates (default: the input dates)")
    c.add_argument("--dates", help="one date per input, in input order, for inputs whose file name and metadata "
                                   "give none (a name or metadata date comes first)")
    c.add_argument("--band", type=int, help="the band to fill (default: the only band that is not the mask band)")
    c.add_argument("--per-date", action="store_true",
                   help="-o is a folder that receives one COG per output date (PREFIX_YYYY-MM-DD.tif)")
    c.add_argument("--prefix", default="filled", help="with --per-date: the file names' start (default filled)")
    c.add_argument("--flags", metavar="FLAGS.tif",
                   help="also write a uint8 COG with the same bands: 0 observed, 1 interpolated, 2 seasonal, "
                        "3 edge-filled, 255 still missing")
    add_input_nodata_option(c)
    add_mask_options(c)
    add_swath_grid_options(c)
    add_raster_options(c, type_default=None)  # float32, or float64 for 32-bit and float64 inputs
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.gapfill import gapfill
    report = run_with_progress(
        gapfill, args, expand_inputs(args.inputs), args.output, args.method, max_gap=args.max_gap, edges=args.edges,
        season_days=args.season_days, years_window=args.years_window, target_dates=args.target_dates,
        dates=args.dates, band=args.band, per_date=args.per_date, prefix=args.prefix, flags=args.flags,
        input_nodata=args.input_nodata, **mask_kwargs(args), **raster_kwargs(args), **swath_grid_kwargs(args))
    print_report(report)
    return 0

"""``tilewise composite``: a per-pixel statistic across a time series (or the layers of a STAC search)."""

from __future__ import annotations

import argparse

from ..vocabulary import COMPOSITE_STATISTICS, SPECTRAL_STATISTICS
from . import print_report, run_with_progress
from .options import (add_input_nodata_option, add_mask_options, add_raster_options, add_swath_grid_options,
                      expand_inputs, integers, mask_kwargs, numbers, raster_kwargs, swath_grid_kwargs)
from .stac import add_composite_options, composite_inputs


def add_commands(sub) -> None:
    c = sub.add_parser("composite", help="per-pixel statistic across a time series of rasters",
                       description="Per-pixel median (or mean, min, max, std, count, percentiles) across rasters, "
                                   "nodata and masked classes ignored, every band composited; or a composite "
                                   "that keeps each pixel's bands together: geomedian (geometric median), "
                                   "medoid, quality (best-available pixel).")
    c.add_argument("inputs", nargs="*", help="input rasters or quoted glob patterns (or use --stac)")
    c.add_argument("-s", "--statistic", default=COMPOSITE_STATISTICS[0], choices=COMPOSITE_STATISTICS)
    c.add_argument("-p", "--percentiles", type=numbers, default=[], help="e.g. 25,50,75 (with -s percentile)")
    c.add_argument("--bands", type=integers, help="input bands to composite, e.g. 1,2,3 (default all)")
    add_input_nodata_option(c)
    add_mask_options(c)
    add_swath_grid_options(c)
    add_spectral_options(c)
    add_raster_options(c, type_default=None)
    for action in c._actions:  # None: the statistic's own default
        if "--output-type" in action.option_strings:
            action.help = action.help.replace("the inputs type", "float32; the inputs' type for medoid and quality")
    add_composite_options(c)
    c.set_defaults(run=run)


def add_spectral_options(c: argparse.ArgumentParser) -> None:
    g = c.add_argument_group("geomedian, medoid and quality (bands kept together)")
    g.add_argument("--tolerance", type=float, help="geomedian: stop when a step is below this times the "
                                                   "estimate's norm (default 1e-7)")
    g.add_argument("--max-iterations", type=int, help="geomedian: at most this many Weiszfeld steps (default 500)")
    g.add_argument("--quality-band", type=int, help="quality: the band whose highest value wins, e.g. 8")
    g.add_argument("--quality-expression", help="quality: numexpr over the bands B1, B2..., e.g. "
                                                "'(B8 - B4) / (B8 + B4)'")
    g.add_argument("--target-date", help="quality: the day of year to be close to, e.g. 2024-07-15 (with --doy-weight)")
    g.add_argument("--doy-weight", type=float, help="quality: weight of the closeness to --target-date's day of year")
    g.add_argument("--cloud-weight", type=float, help="quality: weight of the distance to masked pixels")
    g.add_argument("--cloud-distance", type=int, help="quality: distance in pixels that scores full (default 50)")
    g.add_argument("--opacity-band", type=int, help="quality: the haze/aerosol opacity band (0 clear .. 1)")
    g.add_argument("--opacity-weight", type=float, help="quality: weight of 1 - opacity")
    g.add_argument("--dates", help="dates of inputs without one in their name or metadata, in input order")
    g.add_argument("--output-mads", metavar="FILE", help="also write EMAD, SMAD and BCMAD to FILE")
    g.add_argument("--output-count", metavar="FILE", help="also write the count of complete observations to FILE")
    g.add_argument("--output-source", metavar="FILE",
                   help="medoid, quality: also write the day number (days since 1970-01-01) of the chosen "
                        "observation to FILE")


_SPECTRAL_ARGS = ("tolerance", "max_iterations", "quality_band", "quality_expression", "target_date", "doy_weight",
                  "cloud_weight", "cloud_distance", "opacity_band", "opacity_weight", "dates", "output_mads",
                  "output_count", "output_source")


def spectral_kwargs(args: argparse.Namespace) -> dict:
    given = {k: getattr(args, k) for k in _SPECTRAL_ARGS if getattr(args, k) is not None}
    if given and args.statistic not in SPECTRAL_STATISTICS:
        from ..errors import ParameterError
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ParameterError(f"{flags}: only with -s {'|'.join(SPECTRAL_STATISTICS)}, not -s {args.statistic}.")
    return given


def run(args: argparse.Namespace) -> int:
    from ..operations.composite import composite
    spectral = spectral_kwargs(args)
    inputs, mask_band = composite_inputs(args, expand_inputs)
    report = run_with_progress(
        composite, args, inputs, args.output, args.statistic, args.percentiles, bands=args.bands,
        input_nodata=args.input_nodata, **mask_kwargs(args, mask_band), **raster_kwargs(args), **spectral,
        **swath_grid_kwargs(args))
    print_report(report)
    return 0

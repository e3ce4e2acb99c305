"""``tilewise extract``: time series of statistics at points and polygons, over many rasters, to a table.

    tilewise extract -z fields.gpkg --id-field pid --stats mean,count --coverage centre --layout long \\
        -o ts.parquet scenes/*.tif
"""

from __future__ import annotations

import argparse

from ..vocabulary import EXTRACT_COVERAGES, EXTRACT_GEOMETRY_MODES, EXTRACT_LAYOUTS, EXTRACT_POINT_METHODS, \
    EXTRACT_STATISTICS
from . import run_with_progress
from .options import add_input_nodata_option, add_mask_options, add_run_options, expand_inputs, integers, \
    mask_kwargs, numbers, run_kwargs



def add_commands(sub) -> None:
    c = sub.add_parser("extract", help="statistics of points and polygons over a time series of rasters, to a table",
                       description="Every feature, every raster, every band in one run: the values at points (nearest "
                                   "pixel or bilinear) and statistics of lines and polygons (pixel centres, all "
                                   "touched, or covered fractions), in a GeoPackage, CSV or Parquet table.")
    c.add_argument("inputs", nargs="+", help="input rasters or quoted glob patterns; or swath scenes: Sentinel-3 "
                   "SAFE folders (.SEN3, or their xfdumanifest.xml) or netCDF files on latitude/longitude grids")
    c.add_argument("-z", "--zones", required=True, help="vector file of points, lines or polygons (any CRS)")
    c.add_argument("--layer", help="layer of the zones file (default its first)")
    c.add_argument("--zones-crs", metavar="CRS",
                   help="the zones' CRS instead of the file's (e.g. EPSG:32633 for a shapefile whose .prj is "
                        "missing or wrong)")
    c.add_argument("--id-field", help="field carried into the output as the id (default the feature id)")
    c.add_argument("-s", "--stats", default="mean", metavar="LIST",
                   help=f"comma-separated: {', '.join(EXTRACT_STATISTICS)} (default mean)")
    c.add_argument("-p", "--percentiles", type=numbers, default=[], help="e.g. 10,50,90 (adds the percentiles; "
                   "-s percentiles alone gives 25,50,75)")
    c.add_argument("--coverage", default=EXTRACT_COVERAGES[0], choices=EXTRACT_COVERAGES,
                   help="polygon pixels: centre inside (as QGIS), all touched, or weighted by covered fraction "
                        "(as exactextract)")
    c.add_argument("--point-method", default=EXTRACT_POINT_METHODS[0], choices=EXTRACT_POINT_METHODS)
    c.add_argument("--geometry-mode", default=EXTRACT_GEOMETRY_MODES[0], choices=EXTRACT_GEOMETRY_MODES,
                   help="lines and polygons: zonal statistics, or each vertex as a point")
    c.add_argument("--window", type=int, default=1, help="n x n pixels around each point, reduced with --stats")
    c.add_argument("--min-valid-fraction", type=float, default=0.0,
                   help="below this valid fraction of a feature's footprint its statistics are null (0-1)")
    c.add_argument("--bands", type=integers, help="bands to extract, e.g. 1,2 (default all but the mask band)")
    add_input_nodata_option(c)
    c.add_argument("--scale", type=float, help="values are multiplied by this (after nodata is found)")
    c.add_argument("--offset", type=float, help="and this is added")
    add_mask_options(c)
    c.add_argument("--dates", help="one date per input, in order (default: from the file names, else the metadata)")
    c.add_argument("--layout", default="long", choices=EXTRACT_LAYOUTS,
                   help="long: one row per feature x raster x band (default); wide: the features with one field "
                        "per date x band x statistic")
    g = c.add_argument_group("swath scenes (SAFE folders, netCDF on latitude/longitude grids)")
    g.add_argument("--variables", metavar="LIST", help="variables to extract, e.g. Oa08_reflectance,CHL_NN "
                   "(default every measured one: not flags, not *_err)")
    g.add_argument("--max-distance", type=float, metavar="METRES",
                   help="a point farther than this from every valid pixel is outside the swath (null); default "
                        "the scene's pixel diagonal")
    g.add_argument("--flag-variable", metavar="NAME", help="the flag variable (default the product's only one, "
                   "e.g. WQSF)")
    g.add_argument("--mask-flags", metavar="LIST", help="flags to mask by name, e.g. LAND,CLOUD,INVALID (with "
                   "--mask-bits, --mask-values and --mask-preset olci-wfr; default none)")
    g.add_argument("--angles", action="store_true", help="add the sun and view angles (sza, oza, saa, oaa) at "
                   "each point's pixel, interpolated from the tie points")
    c.add_argument("-o", "--output", required=True, help="output table: .gpkg, .csv or .parquet")
    c.add_argument("--plot", help="also write an HTML chart of each feature's series")
    add_run_options(c)
    c.set_defaults(run=run)


def swath_kwargs(args: argparse.Namespace) -> dict:
    """The swath options that were given (a raster run refuses them)."""
    given = dict(variables=args.variables, max_distance=args.max_distance, flag_variable=args.flag_variable,
                 mask_flags=args.mask_flags, angles=args.angles or None)
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from ..operations.extract.run import extract
    report = run_with_progress(
        extract, args, expand_inputs(args.inputs), args.zones, args.output, args.stats,
        percentiles=args.percentiles, coverage=args.coverage, point_method=args.point_method,
        geometry_mode=args.geometry_mode, window=args.window, min_valid_fraction=args.min_valid_fraction,
        bands=args.bands, input_nodata=args.input_nodata, scale=args.scale, offset=args.offset,
        **mask_kwargs(args), dates=args.dates, id_field=args.id_field,
        layer=args.layer, zones_crs=args.zones_crs, layout=args.layout, output_plot=args.plot, **swath_kwargs(args),
        **run_kwargs(args))
    reused = f" ({report.reused} reused)" if report.reused else ""
    print(f"{report.output}: {report.rows} rows, {report.tiles} tiles{reused} on {report.workers} workers "
          f"in {report.seconds:.2f} s")
    if len(report.outputs) > 1:
        print(f"{report.outputs[1]}: plot")
    return 0

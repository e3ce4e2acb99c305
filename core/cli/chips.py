"""``tilewise chips``: the pixels around each feature, every date and band, one netCDF file per feature.

    tilewise chips -z points.gpkg --id-field pid --mode patch --size 10 10 --mask-band 4 --mask-preset s2-scl \\
        --crs EPSG:3035 -o chips/ scenes/*.tif
"""

from __future__ import annotations

import argparse

from ..vocabulary import CHIPS_BUFFER_UNITS, CHIPS_FORMATS, CHIPS_MODES, GAPFILL_EDGE_MODES, GAPFILL_METHODS, \
    RESAMPLING_METHODS
from . import run_with_progress
from .options import add_input_nodata_option, add_mask_options, add_run_options, expand_inputs, integers, \
    mask_kwargs, run_kwargs
from .stac import add_composite_options, composite_inputs


def add_commands(sub) -> None:
    c = sub.add_parser(
        "chips", help="image chips or fixed-size patches around each feature, one netCDF cube per feature",
        description="For each point, line or polygon: every date and band of the pixels around it, as one CF-1.8 "
                    "netCDF file (dims time, y, x; one variable per band; the feature's id and fields as global "
                    "attributes) named by --id-field. Box mode: the feature's bounding box grown by --buffer; "
                    "patch mode: --size X Y pixels centred on the pixel holding the feature's centre, the same "
                    "size for every feature (nodata past the rasters). A feature outside every raster is skipped "
                    "with a warning. A file already in the folder is replaced only if an earlier chips run wrote it.")
    c.add_argument("inputs", nargs="*", help="input rasters (one per date, any order; VRTs of tilewise stac "
                                             "search too) or quoted glob patterns (or use --stac)")
    c.add_argument("-z", "--zones", required=True, help="vector file of points, lines or polygons (any CRS)")
    c.add_argument("--layer", help="layer of the zones file (default its first)")
    c.add_argument("--zones-crs", metavar="CRS", help="the zones' CRS instead of the file's")
    c.add_argument("--id-field", help="field that names the files and is written as feature_id (default the "
                                      "feature id)")
    c.add_argument("--mode", default=CHIPS_MODES[0], choices=CHIPS_MODES,
                   help="box: the bounding box grown by --buffer (default); patch: --size pixels centred on the "
                        "feature")
    c.add_argument("--buffer", type=float, default=0.0, help="box mode: grow the bounding box by this much")
    c.add_argument("--buffer-units", default=CHIPS_BUFFER_UNITS[0], choices=CHIPS_BUFFER_UNITS,
                   help="grid: the output CRS's units (default); metres")
    c.add_argument("--size", nargs=2, type=int, default=[32, 32], metavar=("X", "Y"),
                   help="patch mode: columns and rows of every patch (default 32 32)")
    c.add_argument("--bands", type=integers, help="bands to cut, e.g. 1,2,3 (default all but the mask band)")
    add_input_nodata_option(c)
    add_mask_options(c)
    c.add_argument("--dates", help="one date per input, in order, for inputs whose name and metadata give none")
    g = c.add_argument_group("output grid (default: the first input's CRS and cell size)")
    g.add_argument("--reference", help="raster whose CRS and pixel lattice the chips take")
    g.add_argument("--crs", help="output CRS, e.g. EPSG:3035")
    g.add_argument("--cell-size", type=float, help="output pixel size, in output CRS units")
    g.add_argument("--resampling", default=RESAMPLING_METHODS[0], choices=RESAMPLING_METHODS, metavar="METHOD",
                   help=f"for inputs on another grid (default {RESAMPLING_METHODS[0]})")
    f = c.add_argument_group("gap filling along time, inside each chip (as tilewise gapfill)")
    f.add_argument("--gapfill", default="none", choices=("none",) + tuple(GAPFILL_METHODS),
                   help="fill masked and nodata dates: none (default), linear, nearest, previous, next, seasonal; "
                        "the flags become a <band>_flags variable")
    f.add_argument("--max-gap", type=float, default=0, metavar="DAYS",
                   help="longest gap to fill, in days (default 0: no limit)")
    f.add_argument("--edges", default=GAPFILL_EDGE_MODES[0], choices=GAPFILL_EDGE_MODES,
                   help="leading and trailing gaps: leave them empty (default) or take the nearest valid value")
    c.add_argument("--format", default=CHIPS_FORMATS[0], choices=CHIPS_FORMATS,
                   help="netcdf: a file per feature (default); geotiff: a file per feature and date, "
                        "NAME_YYYY-MM-DD.tif; training (patch mode): one chips.nc of every patch, dims feature, "
                        "time, y, x")
    c.add_argument("-o", "--output", required=True, metavar="FOLDER", help="output folder of the chips")
    c.add_argument("--footprints", metavar="LAYER",
                   help="also write a layer of the chips (.gpkg, .csv, .parquet): id, file, extent, size, and the "
                        "valid fraction on each date")
    add_run_options(c)
    add_composite_options(c)    # --stac URL and the search options: the layers found are the inputs
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..operations.chips.run import chips
    inputs, mask_band = composite_inputs(args, expand_inputs)
    report = run_with_progress(
        chips, args, inputs, args.zones, args.output, args.mode, buffer=args.buffer,
        buffer_units=args.buffer_units, size_x=args.size[0], size_y=args.size[1], bands=args.bands,
        input_nodata=args.input_nodata, **mask_kwargs(args, mask_band), dates=args.dates, id_field=args.id_field,
        layer=args.layer, zones_crs=args.zones_crs, reference=args.reference, crs=args.crs,
        cell_size=args.cell_size, resampling=args.resampling, gapfill=args.gapfill, max_gap=args.max_gap,
        edges=args.edges, footprints=args.footprints, format=args.format, **run_kwargs(args))
    reused = f" ({report.reused} reused)" if report.reused else ""
    print(f"{args.output}: {report.rows} chips, {report.tiles} tiles{reused} on {report.workers} workers "
          f"in {report.seconds:.2f} s")
    if args.footprints:
        print(f"{report.outputs[-1]}: footprints")
    return 0

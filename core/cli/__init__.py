"""``tilewise`` command line: the engine without QGIS.

    tilewise composite -o median.tif scenes/*.tif
    tilewise composite -s percentile -p 10,50,90 --mask-band 7 --mask-values 0,1,3,8,9,10 -o p.tif s2_*.tif
    tilewise composite --scheduler tcp://scheduler:8786 --resume -o /shared/median.tif https://host/cogs/s2_2024-0{5,6,7}.tif
    tilewise stac search https://earth-search.aws.element84.com/v1 --collections sentinel-2-l2a --bbox W S E N \
        --datetime 2024-05-01/2024-09-30 --max-cloud 20 --assets red,nir,scl -o items/
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import List, Optional, Sequence

from . import stac as stac_cli
from ..errors import TilewiseError
from ..runtime.lifeline import Stopped, stop_on_signals, stopped_by


def _numbers(text: str, kind=float) -> List:
    try:
        return [kind(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> List[int]:
    return _numbers(text, int)


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """Expand glob patterns (quoted on the shell, or on Windows), keep plain paths as they are."""
    paths: List[str] = []
    for p in patterns:
        wild = any(c in p for c in "*?[") and not os.path.exists(p) and "://" not in p  # a file may have [ in its name
        matches = sorted(glob.glob(p)) if wild else []
        paths.extend(matches or [p])
    return paths


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target grid (default: the first input's grid)")
    g.add_argument("--reference", help="raster whose grid the output takes")
    g.add_argument("--extent", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="output extent, in the target CRS")
    g.add_argument("--crs", help="target CRS, e.g. EPSG:3035")
    g.add_argument("--cell-size", type=float, help="output pixel size, in target CRS units")
    g.add_argument("--resampling", default="nearest", help="for inputs on another grid (default nearest)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", required=True,
                   help="output Cloud-Optimized GeoTIFF (.tif or .tiff; .tif is added to a name without extension)")
    g.add_argument("--output-type", default="float32", help="float32 (default), float64, int16, uint16, uint8...")
    g.add_argument("--output-nodata", type=float, help="default -9999 (or the type's maximum if unsigned)")
    g.add_argument("--compression", default="DEFLATE", help="DEFLATE (default), ZSTD, LZW or NONE")
    g.add_argument("--tile-size", type=int,
                   help="tile side in pixels, at least 8 (default or 0: from the memory budget)")
    g.add_argument("-j", "--workers", type=int,
                   help="worker processes (default or 0: all cores; never more than the cores or the tiles)")
    g.add_argument("--allow-large", action="store_true",
                   help="write an output above 16 GiB before compression (refused without this flag: a grid "
                        "that large is usually a mistake, e.g. an input far away or a wrong cell size)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r = p.add_argument_group("scaling out and long runs")
    r.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the tiles on a Dask cluster: its scheduler's address (tcp://host:8786) or "
                        "scheduler file (needs dask[distributed]; the output folder must be shared with the workers)")
    r.add_argument("--resume", action="store_true",
                   help="reuse the finished tiles of an interrupted run of the same command")
    r.add_argument("--keep-workdir", action="store_true",
                   help="keep the work folder (tiles, manifest) beside the output after success")


def band_spec(text: str) -> List:
    """``path`` or ``path:band`` (a trailing number after the last colon is the band)."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and head:
        return [head, int(tail)]
    return [text, 1]


def _named_band(text: str):
    name, sep, spec = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=path[:band], got {text!r}")
    return name.strip(), band_spec(spec)


def _role_bands(text: str):
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        role, sep, band = item.partition("=")
        if not sep or not band.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected ROLE=band, e.g. RED=4,NIR=5; got {item!r}")
        out[role.strip().upper()] = int(band)
    return out


def _add_scaling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=float, default=1.0, help="multiply input values first (e.g. 0.0001)")
    p.add_argument("--offset", type=float, default=0.0, help="then add this (e.g. -0.1)")
    p.add_argument("--input-nodata", type=float, help="nodata value of the inputs (overrides the files')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tilewise", description="Fast tiled raster processing to COG.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("composite", help="per-pixel statistic across a time series of rasters",
                       description="Per-pixel median (or mean, min, max, std, count, percentiles) across rasters, "
                                   "nodata and masked classes ignored, every band composited.")
    c.add_argument("inputs", nargs="*", help="input rasters or quoted glob patterns (or use --stac)")
    c.add_argument("-s", "--statistic", default="median",
                   choices=["median", "mean", "min", "max", "std", "count", "percentile"])
    c.add_argument("-p", "--percentiles", type=_numbers, default=[], help="e.g. 25,50,75 (with -s percentile)")
    c.add_argument("--bands", type=_ints, help="input bands to composite, e.g. 1,2,3 (default all)")
    c.add_argument("--input-nodata", type=float, help="nodata value of the inputs (overrides the files')")
    c.add_argument("--mask-band", type=int, help="band of each input holding QA classes (e.g. Sentinel-2 SCL)")
    c.add_argument("--mask", nargs="+", dest="mask_layers", help="one mask raster per input, in order")
    c.add_argument("--mask-values", type=_ints, default=[], help="mask classes to exclude, e.g. 0,1,3,8,9,10")
    _add_grid_options(c)
    _add_output_options(c)
    stac_cli.add_composite_options(c)

    n = sub.add_parser("ndvi", help="NDVI = (NIR - RED) / (NIR + RED)",
                       description="NDVI of one scene; RED and NIR as path:band (e.g. scene.tif:3).")
    n.add_argument("--red", required=True, type=band_spec, help="red band, path[:band]")
    n.add_argument("--nir", required=True, type=band_spec, help="near-infrared band, path[:band]")
    _add_scaling_options(n)
    _add_grid_options(n)
    _add_output_options(n)

    from ..operations.indices import INDICES
    i = sub.add_parser("index", help="a catalogue index on one scene or a time series",
                       description="Indices: " + "; ".join(x.describe() for x in INDICES.values()))
    i.add_argument("index", choices=sorted(INDICES), type=str.lower)
    i.add_argument("scenes", nargs="*", help="multi-band scenes (time series); use with --bands")
    i.add_argument("--bands", type=_role_bands, default={}, help="band numbers in the scenes, e.g. RED=4,NIR=5")
    for role in ("blue", "green", "red", "nir", "swir1", "swir2"):
        i.add_argument(f"--{role}", type=band_spec, help=f"{role.upper()} band of one scene, path[:band]")
    i.add_argument("-L", type=float, dest="L", help="SAVI soil factor (default 0.5)")
    i.add_argument("--per-scene", action="store_true", help="one COG per scene; -o is then a folder")
    _add_scaling_options(i)
    _add_grid_options(i)
    _add_output_options(i)

    m = sub.add_parser("calc", help="free expression over named bands (numexpr)",
                       description="Band math: tilewise calc -e '(B - A) / (B + A)' A=scene.tif:3 B=scene.tif:4 -o out.tif")
    m.add_argument("inputs", nargs="+", type=_named_band, help="NAME=path[:band]")
    m.add_argument("-e", "--expression", required=True)
    _add_scaling_options(m)
    _add_grid_options(m)
    _add_output_options(m)

    s = sub.add_parser("mosaic", help="many rasters (files, folders, glob patterns) into one COG",
                       description="Mosaic: tilewise mosaic -o out.tif 'tiles/*.tif'. All bands kept; inputs in "
                                   "other CRSs warped on the fly; overlaps combined by --overlap.")
    s.add_argument("inputs", nargs="+", help="rasters, folders or quoted glob patterns (thousands are fine)")
    s.add_argument("--overlap", default="first", choices=["first", "last", "min", "max", "mean", "median"])
    s.add_argument("--input-nodata", type=float, help="nodata value of the inputs (overrides the files')")
    s.add_argument("--overview-resampling", default="average", choices=["average", "nearest", "mode"])
    _add_grid_options(s)
    _add_output_options(s)
    s.set_defaults(output_type=None)
    stac_cli.add_stac_parser(sub)
    return parser


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="tile", file=sys.stderr)
            except ImportError:
                self.bar = False
        if self.bar:
            self.bar.update(done - self.bar.n)
        else:
            print(f"\r{done}/{total} tiles", end="", file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar:
            self.bar.write(message, file=sys.stderr)
        else:
            print(("\n" if self.bar is False else "") + message, file=sys.stderr)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        elif self.bar is False:
            print(file=sys.stderr)


def run_composite(args: argparse.Namespace) -> int:
    from ..operations.composite import composite
    inputs, mask_band = stac_cli.composite_inputs(args, expand_inputs)
    progress = _Progress(args.quiet)
    try:
        report = composite(
            inputs, args.output, args.statistic, args.percentiles,
            tile_size=args.tile_size, workers=args.workers, progress=progress,
            log=progress.log, **_run_kwargs(args),
            bands=args.bands, input_nodata=args.input_nodata, mask_band=mask_band,
            mask_layers=[m for m in expand_inputs(args.mask_layers)] if args.mask_layers else None,
            mask_values=args.mask_values, reference=args.reference, extent=args.extent, crs=args.crs,
            cell_size=args.cell_size, resampling=args.resampling, output_type=args.output_type,
            output_nodata=args.output_nodata, compression=args.compression)
    finally:
        progress.close()
    _print_report(report)
    return 0


def _run_kwargs(args: argparse.Namespace) -> dict:
    return dict(scheduler=args.scheduler, resume=args.resume, keep_workdir=args.keep_workdir,
                allow_large=args.allow_large)


def _print_report(report) -> None:
    reused = f" ({report.reused} reused)" if report.reused else ""
    print(f"{report.output}: {report.width} x {report.height} x {report.bands} bands, "
          f"{report.tiles} tiles{reused} on {report.workers} workers in {report.seconds:.2f} s")


def _grid_output_kwargs(args: argparse.Namespace) -> dict:
    return dict(reference=args.reference, extent=args.extent, crs=args.crs, cell_size=args.cell_size,
                resampling=args.resampling, output_type=args.output_type, output_nodata=args.output_nodata,
                compression=args.compression, scale=args.scale, offset=args.offset,
                input_nodata=args.input_nodata)


def _run_and_report(fn, args, *a, **kw) -> int:
    progress = _Progress(args.quiet)
    try:
        result = fn(*a, tile_size=args.tile_size, workers=args.workers, progress=progress, log=progress.log,
                    **kw, **_run_kwargs(args), **_grid_output_kwargs(args))
    finally:
        progress.close()
    for report in (result if isinstance(result, list) else [result]):
        _print_report(report)
    return 0


def run_ndvi(args: argparse.Namespace) -> int:
    from ..operations.bandmath import index_series
    if not args.reference:  # the red band's grid, as tilewise:ndvi in QGIS
        args.reference = args.red[0]
    return _run_and_report(index_series, args, [{"RED": args.red, "NIR": args.nir}], "ndvi", args.output)


def run_index(args: argparse.Namespace) -> int:
    from ..operations.bandmath import index_series
    roles = {r: getattr(args, r.lower()) for r in ("BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2")}
    given = {r: v for r, v in roles.items() if v}
    if args.scenes and given:
        raise TilewiseError("Give either scenes (with --bands) or per-band paths (--red, --nir...), not both.")
    if args.scenes:
        scenes = [{r: [path, b] for r, b in args.bands.items()} for path in expand_inputs(args.scenes)]
    else:
        scenes = [given]
    constants = {"L": args.L} if args.L is not None else None
    return _run_and_report(index_series, args, scenes, args.index, args.output, per_scene=args.per_scene,
                           constants=constants)


def run_calc(args: argparse.Namespace) -> int:
    from ..operations.bandmath import bandmath
    inputs = dict(args.inputs)
    if len(inputs) != len(args.inputs):
        raise TilewiseError("Each input name may be given once.")
    return _run_and_report(bandmath, args, inputs, args.expression, args.output)


def run_mosaic(args: argparse.Namespace) -> int:
    from ..operations.mosaic import mosaic
    progress = _Progress(args.quiet)
    try:
        report = mosaic(args.inputs, args.output, args.overlap, tile_size=args.tile_size, workers=args.workers,
                        progress=progress, log=progress.log, **_run_kwargs(args),
                        reference=args.reference, extent=args.extent,
                        crs=args.crs, cell_size=args.cell_size, resampling=args.resampling,
                        input_nodata=args.input_nodata, output_type=args.output_type,
                        output_nodata=args.output_nodata, compression=args.compression,
                        overview_resampling=args.overview_resampling)
    finally:
        progress.close()
    print(f"{report.output}: {report.width} x {report.height} x {report.bands} bands in {report.seconds:.2f} s")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse hands an optional positional list (index scenes) nothing once options come first
    if args.command == "index" and extra and not any(e.startswith("-") for e in extra):
        args.scenes = list(args.scenes) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    commands = {"composite": run_composite, "ndvi": run_ndvi, "index": run_index, "calc": run_calc, "mosaic": run_mosaic,
                "stac": stac_cli.run_stac}
    with stop_on_signals() as seen:     # SIGTERM and SIGHUP stop a run as Ctrl+C does
        try:
            try:
                return commands[args.command](args)
            except TilewiseError as exc:
                if seen["signal"] is None:
                    print(f"tilewise: error: {exc}", file=sys.stderr)
                    return 2
                raise Stopped(seen["signal"]) from None   # e.g. workers stopped by the same signal
        except KeyboardInterrupt as exc:
            return _stopped(args, stopped_by(exc, seen) or "Ctrl+C", getattr(exc, "signum", None))


def _stopped(args: argparse.Namespace, how: str, signum: Optional[int]) -> int:
    from ..runtime.paths import has_finished_tiles, workdir_for
    kept = "nothing is left behind"
    for output in (args.output, args.output + ".tif"):     # the engine adds .tif to a name without extension
        if args.resume and has_finished_tiles(output):
            kept = (f"its finished tiles are kept in {workdir_for(output)}: run the same command with --resume "
                    "to continue")
    print(f"tilewise: stopped ({how}); no output was written, {kept}", file=sys.stderr)
    return 128 + signum if signum else 130

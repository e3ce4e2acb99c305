"""``tilewise ndvi``, ``tilewise index`` and ``tilewise bandmath`` (also ``calc``): expressions over bands."""

from __future__ import annotations

import argparse

from ..errors import TilewiseError
from . import print_report, run_with_progress
from .options import add_input_nodata_option, add_raster_options, band_spec, expand_inputs, raster_kwargs


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
    add_input_nodata_option(p)


def _scaling_kwargs(args: argparse.Namespace) -> dict:
    return dict(scale=args.scale, offset=args.offset, input_nodata=args.input_nodata)


def add_index_commands(sub) -> None:
    from ..operations.indices import INDICES, ROLES
    n = sub.add_parser("ndvi", help="NDVI = (NIR - RED) / (NIR + RED)",
                       description="NDVI of one scene; RED and NIR as path:band (e.g. scene.tif:3).")
    n.add_argument("--red", required=True, type=band_spec, help="red band, path[:band]")
    n.add_argument("--nir", required=True, type=band_spec, help="near-infrared band, path[:band]")
    _add_scaling_options(n)
    add_raster_options(n, "the red band's grid")
    n.set_defaults(run=run_ndvi)

    i = sub.add_parser("index", help="a catalogue index on one scene or a time series",
                       description="Indices: " + "; ".join(x.describe() for x in INDICES.values()))
    i.add_argument("index", choices=sorted(INDICES), type=str.lower)
    i.add_argument("scenes", nargs="*", help="multi-band scenes (time series); use with --bands")
    i.add_argument("--bands", type=_role_bands, default={}, help="band numbers in the scenes, e.g. RED=4,NIR=5")
    for role in ROLES:
        i.add_argument(f"--{role.lower()}", type=band_spec, help=f"{role} band of one scene, path[:band]")
    i.add_argument("-L", type=float, dest="L", help="SAVI soil factor (default 0.5)")
    i.add_argument("--per-scene", action="store_true", help="one COG per scene; -o is then a folder")
    _add_scaling_options(i)
    add_raster_options(i)
    i.set_defaults(run=run_index)


def add_bandmath_command(sub) -> None:
    m = sub.add_parser("bandmath", aliases=["calc"], help="free expression over named bands (numexpr)",
                       description="Band math: tilewise bandmath -e '(B - A) / (B + A)' A=scene.tif:3 B=scene.tif:4 "
                                   "-o out.tif")
    m.add_argument("inputs", nargs="+", type=_named_band, help="NAME=path[:band]")
    m.add_argument("-e", "--expression", required=True)
    _add_scaling_options(m)
    add_raster_options(m, "the first input's grid")
    m.set_defaults(run=run_bandmath)


def _run(fn, args: argparse.Namespace, *positional, **kwargs) -> int:
    report = run_with_progress(fn, args, *positional, **kwargs, **_scaling_kwargs(args), **raster_kwargs(args))
    print_report(report)
    return 0


def run_ndvi(args: argparse.Namespace) -> int:
    from ..operations.bandmath import index
    if not args.reference:  # the red band's grid, as tilewise:ndvi in QGIS
        args.reference = args.red[0]
    return _run(index, args, [{"RED": args.red, "NIR": args.nir}], "ndvi", args.output)


def run_index(args: argparse.Namespace) -> int:
    from ..operations.bandmath import index
    from ..operations.indices import ROLES
    given = {r: getattr(args, r.lower()) for r in ROLES if getattr(args, r.lower())}
    if args.scenes and given:
        raise TilewiseError("Give either scenes (with --bands) or per-band paths (--red, --nir...), not both.")
    if args.scenes:
        scenes = [{r: [path, b] for r, b in args.bands.items()} for path in expand_inputs(args.scenes)]
    else:
        scenes = [given]
    constants = {"L": args.L} if args.L is not None else None
    return _run(index, args, scenes, args.index, args.output, per_scene=args.per_scene, constants=constants)


def run_bandmath(args: argparse.Namespace) -> int:
    from ..operations.bandmath import bandmath
    inputs = dict(args.inputs)
    if len(inputs) != len(args.inputs):
        raise TilewiseError("Each input name may be given once.")
    return _run(bandmath, args, inputs, args.expression, args.output)

"""``tilewise`` command line: the engine without QGIS.

    tilewise composite -o median.tif scenes/*.tif
    tilewise composite -s percentile -p 10,50,90 --mask-band 7 --mask-values 0,1,3,8,9,10 -o p.tif s2_*.tif
    tilewise composite --scheduler tcp://scheduler:8786 --resume -o /shared/median.tif https://host/cogs/s2_2024-0{5,6,7}.tif
    tilewise stac search https://earth-search.aws.element84.com/v1 --collections sentinel-2-l2a --bbox W S E N \
        --datetime 2024-05-01/2024-09-30 --max-cloud 20 --assets red,nir,scl -o items/

Each operation of :mod:`tilewise.core.registry` adds its commands (``cli`` entry);
the options they share are defined once in :mod:`.options`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Callable, Optional, Sequence

from ..errors import ParameterError, TilewiseError
from ..io.names import NameAliases, shown, undecodable
from ..jitconfig import skip_blas_probe
from ..logs import WARNING, lines_to, log_cause
from ..runtime.lifeline import Stopped, stop_on_signals, stopped_by
from ..phases import format_phases, merge

_LOADED = time.perf_counter()  # the command's start, as far as it can tell (after Python's own start)


def build_parser() -> argparse.ArgumentParser:
    from ..registry import OPERATIONS, load
    parser = argparse.ArgumentParser(prog="tilewise", description="Fast tiled raster processing to COG.")
    sub = parser.add_subparsers(dest="command", required=True)
    for op in OPERATIONS:
        if op.cli:
            load(op.cli)(sub)
    return parser


def is_warning(message: str) -> bool:
    """A log line that says something the user must hear (an input dropped, little disk space...):
    it is printed even with ``-q``, which hides progress, not what happened to the data."""
    return message.startswith(WARNING)


class Lines:
    """The engine's log on stderr, the one handler's callback for a command (:func:`~..logs.lines_to`):
    between the updates of the progress bar while one runs (:func:`run_with_progress`); with ``quiet``,
    only the warnings."""

    def __init__(self, quiet: bool, show: Callable[[str], str] = shown) -> None:
        self.quiet = quiet
        self.show = show
        self.progress: Optional[Progress] = None

    def __call__(self, message: str) -> None:
        if self.progress is not None:
            self.progress.log(message)
        elif not self.quiet or is_warning(message):
            print(self.show(message), file=sys.stderr, flush=True)

    def level(self, debug: bool = False) -> int:
        """The records to show: warnings only when quiet, the debug records too with ``--debug``."""
        return logging.WARNING if self.quiet else logging.DEBUG if debug else logging.INFO


class Progress:
    """A progress bar on stderr (tqdm if installed), and the log lines between its updates
    (with ``quiet``: no bar, and only the warnings)."""

    def __init__(self, quiet: bool, show: Callable[[str], str] = shown) -> None:
        self.quiet = quiet
        self.show = show            # a message as the user should read it (their own file names)
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
            if total != self.bar.total:     # a run in two stages: swath scenes gridded, then the tiles
                self.bar.total = total
            self.bar.update(done - self.bar.n)
        else:
            print(f"\r{done}/{total} tiles", end="", file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        if self.quiet and not is_warning(message):
            return
        message = self.show(message)
        if self.bar:
            self.bar.write(message, file=sys.stderr)
        else:
            print(("\n" if self.bar is False else "") + message, file=sys.stderr)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        elif self.bar is False:
            print(file=sys.stderr)


def run_with_progress(fn: Callable[..., Any], args: argparse.Namespace, *positional: Any, **kwargs: Any) -> Any:
    """``fn(*positional, **kwargs)`` with the progress bar of :class:`Progress`, the log between its updates."""
    progress = Progress(args.quiet, getattr(args, "shown", shown))
    lines = getattr(args, "lines", None) or Lines(args.quiet, progress.show)   # main()'s, or this call's own
    called = time.perf_counter()
    lines.progress = progress
    try:
        with lines_to(lines, lines.level(getattr(args, "debug", False))):
            report = fn(*positional, progress=progress, **kwargs)
    finally:
        lines.progress = None
        progress.close()
    if getattr(args, "debug", False):  # printed by main() once the command has reported
        args.debug_line = debug_line(report, called, time.perf_counter())
    return report


def debug_line(report: Any, called: float, returned: float) -> str:
    """The phases of ``report`` (a run report, or a list of them) with this command's own: ``engine start``
    (from loading the command to the operation's call) and the planning before the runs."""
    reports = report if isinstance(report, list) else [report]
    phases = merge(*(getattr(r, "phases", {}) for r in reports))
    runs = sum(getattr(r, "seconds", 0.0) for r in reports)
    phases = merge(phases, {"engine start": called - _LOADED, "planning": max(returned - called - runs, 0.0)})
    return format_phases(phases, merge(*(getattr(r, "tile_seconds", {}) for r in reports)))


def print_report(report) -> None:
    """One line per output: its size, the tiles (and how many were reused), the workers and the time."""
    for r in report if isinstance(report, list) else [report]:
        reused = f" ({r.reused} reused)" if r.reused else ""
        print(f"{r.output}: {r.width} x {r.height} x {r.bands} bands, "
              f"{r.tiles} tiles{reused} on {r.workers} workers in {r.seconds:.2f} s")


def main(argv: Optional[Sequence[str]] = None) -> int:
    skip_blas_probe()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse hands an optional positional list (index scenes) nothing once options come first
    if args.command == "index" and extra and not any(e.startswith("-") for e in extra):
        args.scenes = list(args.scenes) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    aliases = NameAliases()
    args.shown = aliases.shown
    args.lines = Lines(getattr(args, "quiet", False), aliases.shown)
    from .options import apply_http_timeout
    apply_http_timeout(args)
    level = args.lines.level(getattr(args, "debug", False))
    with stop_on_signals() as seen, lines_to(args.lines, level):   # SIGTERM and SIGHUP stop a run as Ctrl+C does
        try:
            try:
                alias_arguments(args, aliases)
                code = args.run(args)
                if getattr(args, "debug_line", None):
                    print(args.debug_line, file=sys.stderr, flush=True)
                return code
            except TilewiseError as exc:
                if seen["signal"] is None:
                    print(f"tilewise: error: {aliases.shown(str(exc))}", file=sys.stderr)
                    log_cause(exc)
                    return 2
                raise Stopped(seen["signal"]) from None   # e.g. workers stopped by the same signal
            except UnicodeEncodeError as exc:    # a name not in UTF-8 that no alias stands for
                print(f"tilewise: error: {not_utf8(shown(str(exc.object)))}", file=sys.stderr)
                return 2
        except KeyboardInterrupt as exc:
            return _stopped(args, stopped_by(exc, seen) or "Ctrl+C", getattr(exc, "signum", None))


#: Arguments that name outputs (GDAL cannot write a name that is not UTF-8), and lists of inputs
#: the commands expand as glob patterns; and arguments that are not local file names.
OUTPUT_ARGUMENTS = ("output", "plot", "stac_output")
EXPANDED_ARGUMENTS = ("inputs", "mask_layers", "scenes")
NOT_FILES = ("run", "command", "shown", "url", "stac", "header", "expression", "dates", "target_dates")


def not_utf8(name: str, what: str = "name") -> str:
    return (f"The {what} {name} is not valid UTF-8 (it holds a byte of another encoding, e.g. Latin-1, "
            "shown as \ufffd) and GDAL cannot use it. Rename it in UTF-8 (e.g. convmv -f latin1 -t utf-8 "
            "--notest FILE).")


def alias_arguments(args: argparse.Namespace, aliases: NameAliases) -> None:
    """Input files whose names are not UTF-8 replaced by aliases GDAL can open (:mod:`..io.names`);
    an output name that is not UTF-8 refused."""
    for name in OUTPUT_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, str) and undecodable(value):
            raise ParameterError(not_utf8(shown(value), "output name"))
    for name, value in vars(args).items():
        if name in NOT_FILES or name in OUTPUT_ARGUMENTS or value is None:
            continue
        setattr(args, name, aliases.alias_values(value, expand=name in EXPANDED_ARGUMENTS))
    if aliases.aliases and getattr(args, "scheduler", None):
        name = not_utf8(shown(next(iter(aliases.aliases.values()))), "input name")
        raise ParameterError(f"{name} The workers of a Dask cluster cannot open it under another name.")


def _stopped(args: argparse.Namespace, how: str, signum: Optional[int]) -> int:
    from ..paths import has_finished_tiles, workdir_for
    kept = "nothing is left behind"
    for output in (args.output, args.output + ".tif"):     # the engine adds .tif to a name without extension
        if getattr(args, "resume", False) and has_finished_tiles(output):
            kept = (f"its finished tiles are kept in {workdir_for(output)}: run the same command with --resume "
                    "to continue")
    print(f"tilewise: stopped ({how}); no output was written, {kept}", file=sys.stderr)
    return 128 + signum if signum else 130

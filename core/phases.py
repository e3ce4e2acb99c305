"""Where a run's time goes: the phase breakdown of every report.

Workers time their part of each tile (:func:`timed` around reading, writing, overviews; the rest of
the tile function is compute) and send it back with the tile's result (:class:`TimedTile`). The
runner times its own steps (:class:`Phases`) and spreads the wall-clock time of the tiles over the
workers' phases in proportion to their summed seconds, so the phases of a report add up to its
wall-clock time. The engine process and the QGIS algorithm add what happens before the run starts
(``engine start``: the interpreter, imports, the worker pool) and around it (``qgis``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

__all__ = ["PHASES", "TILE_PHASES", "timed", "TimedTile", "Phases", "format_phases"]

#: Every phase, in the order of a run (and of the benchmark's stacked bars).
PHASES = ("qgis", "engine start", "planning", "read", "compute", "tile writes", "overviews", "assembly", "cleanup")
#: The phases a worker spends on a tile.
TILE_PHASES = ("read", "compute", "tile writes", "overviews")

_tile: Dict[str, float] = {}  # this process's current tile: phase -> seconds


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    """Count the block's seconds in ``phase`` of the tile this process is computing."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _tile[phase] = _tile.get(phase, 0.0) + time.perf_counter() - start


class TimedTile:
    """``fn(job, tile, target)`` returning ``(its result, {phase: seconds})``; what is not read,
    written or overviews is compute. Picklable (for process pools and Dask) when ``fn`` is."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Tuple[Any, Dict[str, float]]:
        _tile.clear()
        start = time.perf_counter()
        result = self.fn(*args)
        spent = dict(_tile)
        spent["compute"] = max(time.perf_counter() - start - sum(spent.values()), 0.0)
        _tile.clear()
        return result, spent


class Phases:
    """A run's phases: wall-clock seconds of the runner's steps and the workers' summed seconds."""

    def __init__(self) -> None:
        self.wall: Dict[str, float] = {}
        self.tiles: Dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - start)

    def add(self, phase: str, seconds: float) -> None:
        self.wall[phase] = self.wall.get(phase, 0.0) + seconds

    def add_tile(self, spent: Mapping[str, float]) -> None:
        for phase, seconds in spent.items():
            self.tiles[phase] = self.tiles.get(phase, 0.0) + seconds

    def spread_tiles(self, wall: float) -> None:
        """Share ``wall`` (the seconds the tiles took) among the tile phases, in proportion to the
        workers' summed seconds (all of it compute when no tile was timed, e.g. all reused)."""
        total = sum(self.tiles.values())
        if total <= 0:
            self.add("compute", wall)
            return
        for phase in TILE_PHASES:
            if self.tiles.get(phase):
                self.add(phase, wall * self.tiles[phase] / total)

    def to_dict(self) -> Dict[str, Any]:
        return {"phases": {p: round(self.wall[p], 4) for p in PHASES if p in self.wall},
                "tile_seconds": {p: round(self.tiles[p], 4) for p in TILE_PHASES if p in self.tiles}}


def merge(*breakdowns: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """The phases of several runs (or parts of one) added up."""
    out: Dict[str, float] = {}
    for b in breakdowns:
        for phase, seconds in (b or {}).items():
            out[phase] = round(out.get(phase, 0.0) + seconds, 4)
    return out


def format_phases(phases: Mapping[str, float], tile_seconds: Optional[Mapping[str, float]] = None) -> str:
    """One line: ``Phases (s): engine start 0.52, planning 0.03, ... = 2.31 total``; the workers' summed
    seconds follow in brackets when given.

    >>> format_phases({"planning": 0.25, "compute": 1.0}, {"compute": 1.9})
    'Phases (s): planning 0.25, compute 1.00 = 1.25 total [summed over workers: compute 1.90]'
    """
    order = [p for p in PHASES if p in phases] + [p for p in phases if p not in PHASES]
    line = "Phases (s): " + ", ".join(f"{p} {phases[p]:.2f}" for p in order) + f" = {sum(phases.values()):.2f} total"
    if tile_seconds:
        line += " [summed over workers: " + ", ".join(f"{p} {s:.2f}" for p, s in tile_seconds.items()) + "]"
    return line

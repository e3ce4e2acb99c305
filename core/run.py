"""Running a tiled job: plan tiles, run them through an executor, assemble the COG.

Shared by every operation. An operation provides a job value (with ``grid``,
``output`` and ``band_names``) and a tile function ``fn(job, tile, path)`` that
computes one tile and writes it to ``path``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .cog import build_vrt, tile_path, write_cog
from .paths import partial_path, workdir_for
from .errors import TilewiseError
from .executor import Executor, make_executor, resolve_workers
from .grid import auto_tile_size, balance_tile_size, plan_tiles
from .sources import close_all

ProgressFn = Callable[[int, int], None]
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class RunReport:
    """What a finished run did."""

    output: str
    tiles: int
    workers: int
    seconds: float
    width: int
    height: int
    bands: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def choose_tile_size(grid, n_layers: int, work_dtype: str, workers: Optional[int] = None,
                     executor: Optional[Executor] = None) -> int:
    """A tile size from the memory budget for ``n_layers`` values per pixel,
    shrunk so every worker gets at least two tiles."""
    size = auto_tile_size(n_layers, 8 if work_dtype == "float64" else 4)
    n_workers = executor.workers if executor is not None else resolve_workers(workers)
    return balance_tile_size(grid, size, n_workers)


def run_tiled(job: Any, tile_fn: Callable[..., Any], tile_size: int, workers: Optional[int] = None,
              executor: Optional[Executor] = None, progress: Optional[ProgressFn] = None,
              log: Optional[LogFn] = None) -> RunReport:
    """Compute every tile of ``job.grid`` with ``tile_fn`` and write ``job.output`` as a COG.

    Tile files go to a work folder beside the output, removed afterwards. On any
    failure (or Ctrl+C) the work folder and the partial output are removed and
    an existing output file is left as it was.
    """
    start = time.perf_counter()
    say = log or (lambda msg: None)
    tiles = plan_tiles(job.grid, tile_size)
    workdir = workdir_for(job.output.path)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    own_executor = executor is None
    ex = executor if executor is not None else make_executor(min(resolve_workers(workers), len(tiles)))
    try:
        say(f"{len(tiles)} tiles of up to {tile_size} x {tile_size} pixels on {ex.workers} worker(s)")
        if progress:
            progress(0, len(tiles))
        tasks = [(job, t, tile_path(workdir, t)) for t in tiles]
        for done, _ in enumerate(ex.run(tile_fn, tasks), start=1):
            if progress:
                progress(done, len(tiles))
        say("Assembling the Cloud-Optimized GeoTIFF")
        vrt = build_vrt(job.grid, tiles, workdir, job.output, job.band_names)
        write_cog(vrt, job.output)
    except BaseException:
        tmp = partial_path(job.output.path)
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        if own_executor:
            ex.close()
        # Inputs a serial run opened in this process: a later run must not read them
        # through stale handles (e.g. after the file was rewritten), nor keep them locked.
        close_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return RunReport(job.output.path, len(tiles), ex.workers, time.perf_counter() - start,
                     job.grid.width, job.grid.height, len(job.band_names))


def describe_failure(exc: BaseException) -> str:
    """A one-line message for an error, without a traceback for our own errors."""
    if isinstance(exc, TilewiseError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"

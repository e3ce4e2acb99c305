"""Running a tiled job: plan tiles, run them through an executor, assemble the COG.

Shared by every operation. An operation provides a job value (with ``grid``,
``output``, ``band_names`` and ``work_dtype``) and a tile function
``fn(job, tile, path)`` that computes one tile and writes it to ``path``.

Tile files go to a work folder beside the output (see :mod:`.workdir`), with a
manifest that identifies the job and a journal of finished tiles. A run given
``resume=True`` reuses the finished tiles of an interrupted run of the same job
and keeps its work folder if it fails in turn; otherwise the work folder is
started afresh and removed at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional

from ..io.cog import build_vrt, tile_path, write_cog
from .diskspace import SpaceNeed, disk_full, is_disk_full, space_needed, space_warning
from ..errors import DiskFullError, ParameterError, TilewiseError, TilewiseWarning
from .executor import Executor, as_executor, make_executor, resolve_workers, workers_note
from ..grid import Tile, auto_tile_size, balance_tile_size, check_tile_size
from .paths import has_finished_tiles, partial_path, workdir_for
from ..io.sources import close_all
from .workdir import Journal, WorkState, prepare_workdir

ProgressFn = Callable[[int, int], None]
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class RunReport:
    """What a finished run did (``reused``: tiles taken from an interrupted run)."""

    output: str
    tiles: int
    workers: int
    seconds: float
    width: int
    height: int
    bands: int
    reused: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def choose_tile_size(grid, n_layers: int, work_dtype: str, workers: Optional[int] = None,
                     executor: Optional[Executor] = None) -> int:
    """A tile size from the memory budget for ``n_layers`` values per pixel,
    shrunk so every worker gets at least two tiles."""
    size = auto_tile_size(n_layers, 8 if work_dtype == "float64" else 4)
    n_workers = executor.workers if executor is not None else resolve_workers(workers)
    return balance_tile_size(grid, size, n_workers)


def run_tiled(job: Any, tile_fn: Callable[..., Any], tile_size: Optional[int], workers: Optional[int] = None,
              executor: Any = None, progress: Optional[ProgressFn] = None, log: Optional[LogFn] = None, *,
              scheduler: Any = None, resume: bool = False, keep_workdir: bool = False,
              layers: int = 1) -> RunReport:
    """Compute every tile of ``job.grid`` with ``tile_fn`` and write ``job.output`` as a COG.

    Parameters
    ----------
    tile_size : int or None
        Tile side in pixels; None or 0: from the memory budget for ``layers`` values per
        pixel (or, when resuming, the interrupted run's).
    workers, executor, scheduler
        Where tiles run: an :class:`Executor` (or a ``dask.distributed.Client``), else a
        Dask cluster at ``scheduler`` (address, scheduler file, Client or cluster), else
        ``workers`` local processes (default all cores; never more than the cores or the tiles).
    resume : bool
        Reuse the finished tiles of an interrupted run of the same job; keep the work
        folder if this run fails too.
    keep_workdir : bool
        Keep the work folder (tiles, VRT, manifest) after the run.

    On failure (or Ctrl+C) the partial output is removed, an existing output is
    left as it was, and the work folder is removed unless ``resume`` or
    ``keep_workdir`` is set.
    """
    start = time.perf_counter()
    say = log or (lambda msg: None)
    tile_size = check_tile_size(tile_size)
    workdir = workdir_for(job.output.path)
    own = executor is None
    ex: Optional[Executor] = None
    done = False
    need: Optional[SpaceNeed] = None
    try:
        ex = as_executor(executor) if executor is not None else (
            make_executor(scheduler=scheduler) if scheduler not in (None, "") else None)
        n_workers = ex.workers if ex is not None else resolve_workers(workers)
        state = prepare_workdir(job, workdir, tile_size, lambda: _default_tile_size(job, layers, n_workers),
                                resume, say)
        todo = [t for t in state.tiles if t.index not in state.finished]
        need = space_needed(job, todo)
        warning = space_warning(need)
        if warning:
            say(warning)
        if ex is None:
            n_workers = min(n_workers, max(1, len(todo)))
            ex = make_executor(n_workers)
            note = workers_note(workers, n_workers, len(todo))
            if note:
                say(note)
        say(f"{len(state.tiles)} tiles of up to {state.tile_size} x {state.tile_size} pixels on {ex.describe()}")
        _compute(ex, job, tile_fn, state, todo, workdir, progress, say)
        say("Assembling the Cloud-Optimized GeoTIFF")
        vrt = build_vrt(job.grid, state.tiles, workdir, job.output, job.band_names)
        write_cog(vrt, job.output)
        done = True
    except BaseException as exc:
        tmp = partial_path(job.output.path)
        if os.path.exists(tmp):
            os.remove(tmp)
        if resume and has_finished_tiles(job.output.path):
            say(f"The finished tiles are kept in {workdir}: run again with resume to continue")
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and
                                              is_disk_full(exc, os.path.dirname(workdir))):
            raise disk_full(need or space_needed(job)) from None
        raise
    finally:
        _finish(ex, own, workdir, keep=keep_workdir or (resume and not done))
    return RunReport(job.output.path, len(state.tiles), ex.workers, time.perf_counter() - start,
                     job.grid.width, job.grid.height, len(job.band_names), len(state.finished))


@contextlib.contextmanager
def warnings_to(log: Optional[LogFn]) -> Iterator[None]:
    """Within the block, :class:`TilewiseWarning` s (planning's: an output name changed, inputs
    outside the grid...) go to ``log`` as ``"Warning: ..."`` lines, when one is given; other
    warnings are shown as usual."""
    if log is None:
        yield
        return
    caught: List[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TilewiseWarning)
            yield
    finally:  # outside the block: showing a warning inside it would record it again
        for w in caught:
            if issubclass(w.category, TilewiseWarning):
                log(f"Warning: {w.message}")
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _default_tile_size(job: Any, layers: int, n_workers: int) -> int:
    size = choose_tile_size(job.grid, layers, job.work_dtype, n_workers)
    if size < 8:
        raise ParameterError(f"Tile size must be at least 8 pixels, got {size}.")
    return size


def _compute(ex: Executor, job: Any, tile_fn: Callable[..., Any], state: WorkState, todo: List[Tile],
             workdir: str, progress: Optional[ProgressFn], say: LogFn) -> None:
    total = len(state.tiles)
    if state.finished:
        say(f"Resuming: {len(state.finished)} of {total} tiles were already finished and are reused; "
            f"{len(todo)} to compute")
    if progress:
        progress(len(state.finished), total)
    if not todo:
        return
    ex.check_workdir(workdir)
    with Journal(workdir) as journal:
        tasks = [(job, t, tile_path(workdir, t)) for t in todo]
        by_index = {t.index: t for t in todo}
        for done, index in enumerate(ex.run(tile_fn, tasks), start=len(state.finished) + 1):
            journal.record(by_index[index] if index in by_index else None)
            if progress:
                progress(done, total)


def _finish(ex: Optional[Executor], own: bool, workdir: str, keep: bool) -> None:
    if ex is not None:
        release = getattr(ex, "release", None)
        if release is not None:
            release()
        if own:
            ex.close()
    # Inputs a serial run opened in this process: a later run must not read them
    # through stale handles (e.g. after the file was rewritten), nor keep them locked.
    close_all()
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)


def describe_failure(exc: BaseException) -> str:
    """A one-line message for an error, without a traceback for our own errors."""
    if isinstance(exc, TilewiseError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"

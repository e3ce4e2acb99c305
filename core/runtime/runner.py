"""The tile runner: every operation's tiles go through :func:`run_tiles`.

An operation gives a job (a :class:`TiledJob`: plain values that travel to the
workers with each tile) and a tile function ``fn(job, tile, target)`` that
computes one tile and writes it to the ``target`` its sink gives (see
:mod:`.sinks`). The runner does the rest, the same way for every operation:

0. takes the lock of the output(s) (:mod:`.lock`) before anything of them is removed or
   written, and keeps it until the last rename and cleanup: one run owns an output at a time
   (another run gets :class:`~tilewise.core.errors.OutputBusyError` naming this one, or waits
   with ``wait_if_busy``);
1. resolves where the tiles run (:func:`.executor.connect`: an executor, a Dask
   cluster, or local workers sized by the tiles to compute);
2. decides the tile size (as asked, from the interrupted run when resuming, or
   from the job's memory budget) and plans the tiles, once;
3. opens the work folder beside the output (:mod:`.workdir`: a manifest that
   identifies the job, a journal of finished tiles; ``resume`` reuses the finished
   tiles of an interrupted run of the same job);
4. runs the tiles, journaling each finished one and reporting progress;
5. lets the sink assemble the output(s), and reports.

On failure (or Ctrl+C, SIGTERM) the sink removes its partial outputs, an existing
output is left as it was, and the work folder is removed unless ``resume`` or
``keep_workdir`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import DiskFullError, ParameterError
from ..grid import Grid, Tile, auto_tile_size, balance_tile_size, plan_tiles
from ..logs import lines_to
from ..options import LogFn, ProgressFn, RunOptions
from ..io.diskspace import SpaceNeed, disk_full, is_disk_full, space_warning
from .executor import Executor, LocalExecutor, PoolLease, connect, local_executor, resolve_workers
from .executor_base import SerialExecutor
from .lock import output_locks
from ..paths import has_finished_tiles
from ..phases import Phases, TimedTile
from .sinks import Sink
from .fingerprint import Fingerprint
from .workdir import NOT_JOURNALED, Journal, WorkState, is_durable, job_fingerprint, prepare_workdir, resumable_size

__all__ = ["TiledJob", "TileBudget", "RunReport", "run_tiles", "run_tasks", "LogFn", "ProgressFn"]

#: Executors whose workers are processes of this machine (they see its files: outputs can be written in place).
_LOCAL_EXECUTORS = (SerialExecutor, LocalExecutor, PoolLease)

#: ``fn(job, tile, target) -> tile.index``: computes one tile and writes it to its sink's target.
TileFn = Callable[[Any, Tile, Any], int]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileBudget:
    """What one tile holds in memory at once, per pixel: ``layers`` values of ``bytes_per_value`` bytes."""

    layers: int
    bytes_per_value: int = 4


class TiledJob:
    """What the runner needs of an operation's job (a frozen dataclass of plain values).

    Subclasses give :attr:`grid`, :attr:`sink` (where the results go) and :attr:`budget` (for
    the default tile size); :meth:`tiles` is the tile plan (by default the whole grid in
    square tiles); :attr:`tile_size` fixes the tile size when the job was planned for one.
    """

    grid: Grid

    @property
    def sink(self) -> Sink:
        raise NotImplementedError

    @property
    def budget(self) -> TileBudget:
        raise NotImplementedError

    @property
    def tile_size(self) -> Optional[int]:
        return None

    def tiles(self, tile_size: int) -> List[Tile]:
        return plan_tiles(self.grid, tile_size)

    def for_tile(self, tile: Tile) -> "TiledJob":
        """The job sent with the task of ``tile`` (through the pool's pipes, or to a Dask worker): the job
        itself by default; a job whose plan is large and mostly about other tiles gives that tile's part."""
        return self

    def warm(self) -> None:
        """Load into this process what every tile needs (compiled kernels), just before local worker
        processes are forked from it: they inherit it instead of each loading it. Not called for the
        kept workers of :func:`~.executor.warm_workers` (preloaded already) nor when the workers do not
        fork. By default nothing."""


@dataclass(frozen=True)
class RunReport:
    """What a finished run did (``reused``: tiles taken from an interrupted run)."""

    output: str
    tiles: int
    workers: int
    seconds: float
    width: int = 0
    height: int = 0
    bands: int = 0
    reused: int = 0
    outputs: Tuple[str, ...] = field(default=())
    rows: Optional[int] = None
    #: wall-clock seconds per phase (:mod:`tilewise.core.phases`), adding up to ``seconds``
    phases: Dict[str, float] = field(default_factory=dict)
    #: the workers' seconds per tile phase, summed over the tiles
    tile_seconds: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        values = dict(self.__dict__)
        values["outputs"] = list(self.outputs)
        values["phases"] = dict(self.phases)
        values["tile_seconds"] = dict(self.tile_seconds)
        if self.rows is None:
            del values["rows"]
        return values


def run_tiles(job: TiledJob, tile_fn: TileFn, run: RunOptions) -> RunReport:
    """Compute every tile of ``job`` with ``tile_fn`` and let its sink write the output(s), holding the
    lock of each output meanwhile; the run's log goes to ``run.log`` too, when given."""
    sink = job.sink
    with lines_to(run.log), output_locks(locked_paths(sink), describe_job(job), wait=run.wait_if_busy):
        return _run_locked(job, tile_fn, run, sink)


def locked_paths(sink: Sink) -> Tuple[str, ...]:
    """What a run locks: the path its work folder is named after (an output, or the folder of a set of
    outputs), and each output that is not in such a folder (a table and its plot)."""
    folder = getattr(sink, "folder", "")
    return (sink.home,) if folder else tuple(dict.fromkeys((sink.home, *sink.outputs)))


def describe_job(job: TiledJob) -> str:
    """What a job does, for the message another run on its output gets: ``"composite median"``."""
    name = type(job).__name__
    name = name[:-3] if name.endswith("Job") else name
    statistic = getattr(job, "statistic", None)
    return name.lower() + (f" {statistic}" if isinstance(statistic, str) else "")


def _run_locked(job: TiledJob, tile_fn: TileFn, run: RunOptions, sink: Sink) -> RunReport:
    start = time.perf_counter()
    workdir = sink.workdir()
    executor: Optional[Executor] = None
    state: Optional[WorkState] = None
    need: Optional[SpaceNeed] = None
    done = False
    phases = Phases()
    try:
        with phases.step("engine start"):
            executor = connect(run) if sink.tiled else None
        with phases.step("planning"):
            state, sink = _prepare(job, sink, workdir, run, executor)
            todo = [t for t in state.tiles if t.index not in state.finished]
            need = sink.space_needed(todo)
        warning = space_warning(need)
        if warning:
            log.warning(warning)
        if executor is None:
            with phases.step("engine start"):
                executor = local_executor(run, len(todo), warm=job.warm)
        if state.tiles:
            log.info(f"{len(state.tiles)} tiles of up to {state.tile_size} x {state.tile_size} pixels "
                     f"on {executor.describe()}")
        with phases.step("tile writes"):  # e.g. the outputs laid out for the tiles to write into
            sink = sink.begin(workdir, bool(state.finished))
        tiles_start = time.perf_counter()
        taken = _compute(executor, job, tile_fn, sink, state, todo, workdir, run, phases)
        if state.tiles:
            phases.spread_tiles(time.perf_counter() - tiles_start - taken)
            phases.add("assembly", taken)
        with phases.step("assembly"):
            summary = _finish(sink, workdir, state, run)
        for phase, seconds in summary.pop("phases", {}).items():  # what the sink timed apart (its overviews)
            phases.add(phase, seconds)
            phases.add("assembly", -seconds)
        done = True
    except BaseException as exc:
        sink.abort()
        if run.resume and has_finished_tiles(sink.home):
            log.info(f"The finished tiles are kept in {workdir}: run again with resume to continue")
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and
                                              is_disk_full(exc, os.path.dirname(workdir))):
            raise disk_full(need or sink.space_needed(state.tiles if state else [])) from None
        raise
    finally:
        with phases.step("cleanup"):
            _release(executor, run, workdir, keep=run.keep_workdir or (run.resume and not done))
    return RunReport(sink.outputs[0], len(state.tiles), executor.workers, time.perf_counter() - start,
                     reused=len(state.finished), outputs=sink.outputs, **summary, **phases.to_dict())


def default_tile_size(job: TiledJob, workers: int) -> int:
    """A tile size from the job's memory budget, shrunk so every worker gets about four tiles
    (:func:`~tilewise.core.grid.balance_tile_size`)."""
    budget = job.budget
    size = balance_tile_size(job.grid, auto_tile_size(budget.layers, budget.bytes_per_value), workers)
    if size < 8:
        raise ParameterError(f"Tile size must be at least 8 pixels, got {size}.")
    return size


def _prepare(job: TiledJob, sink: Sink, workdir: str, run: RunOptions,
             executor: Optional[Executor]) -> Tuple[WorkState, Sink]:
    """The tile size (asked, fixed by the job, the interrupted run's, or from the budget), the tile plan
    (planned once), the work folder, and the sink planned for them (:meth:`.Sink.planned`)."""
    asked = job.tile_size or run.tile_size
    if not sink.tiled:
        return prepare_workdir(job, sink, workdir, job_fingerprint(job), 0, [], resumed=False), sink
    fingerprint = job_fingerprint(job) if run.resume else None
    reused = resumable_size(workdir, fingerprint, asked) if fingerprint is not None else None
    size = reused or asked or default_tile_size(job, executor.workers if executor else resolve_workers(run.workers))
    local = executor is None or isinstance(executor, _LOCAL_EXECUTORS)
    sink = sink.planned(size, local=local)
    tiles = job.tiles(size)
    durable = is_durable(len(tiles), run.resume, run.keep_workdir)
    if not durable and len(tiles) == 1 and local:   # its worker sees the output's folder
        sink = sink.alone(tiles[0])
    if fingerprint is None:  # nothing to resume from a run that journals nothing: its inputs are not looked up
        fingerprint = job_fingerprint(job) if durable else Fingerprint(None, NOT_JOURNALED)
    return prepare_workdir(job, sink, workdir, fingerprint, size, tiles, resumed=reused is not None,
                           durable=durable), sink


def _compute(ex: Executor, job: TiledJob, tile_fn: TileFn, sink: Sink, state: WorkState, todo: List[Tile],
             workdir: str, run: RunOptions, phases: Phases) -> float:
    """Run the ``todo`` tiles, journal each, let the sink take it (:meth:`.Sink.tile_finished`); return the
    seconds the sink took meanwhile."""
    total = len(state.tiles)
    taken = 0.0
    if state.finished:
        log.info(f"Resuming: {len(state.finished)} of {total} tiles were already finished and are reused; "
                 f"{len(todo)} to compute")
    if not total:
        return taken
    if run.progress:
        run.progress(len(state.finished), total)
    if not todo:
        return taken
    ex.check_workdir(workdir)
    with (Journal(workdir) if state.durable else contextlib.nullcontext()) as journal:
        tasks = [(job.for_tile(t), t, sink.task_target(workdir, t, state.tile_size)) for t in todo]
        by_index = {t.index: t for t in todo}
        for index, spent in run_tasks(ex, TimedTile(tile_fn), tasks, run.progress, len(state.finished), total):
            phases.add_tile(spent)
            tile = by_index.get(index)
            if tile is not None:
                if journal is not None:     # a one-tile run that will not be resumed journals nothing
                    journal.record(sink.journal_entries(workdir, tile))
                started = time.perf_counter()
                sink.tile_finished(workdir, tile)
                taken += time.perf_counter() - started
    return taken


def run_tasks(ex: Executor, fn: Callable[..., Any], tasks: Sequence[tuple], progress: Optional[ProgressFn] = None,
              done: int = 0, total: Optional[int] = None) -> Iterator[Any]:
    """``fn(*args)`` of every ``args`` in ``tasks`` on ``ex``: each result as it comes, and once the caller
    has taken it, ``progress(done, total)`` (``done`` tasks were finished before these; ``total`` is by
    default those and these). The tile loop of :func:`run_tiles`; an operation that keeps its results in
    memory runs its tasks through it too (e.g. on a :class:`~.executor_base.SerialExecutor`).

    >>> list(run_tasks(SerialExecutor(), pow, [(2, 3), (3, 2)], lambda d, t: print(f"{d}/{t}")))
    1/2
    2/2
    [8, 9]
    """
    total = done + len(tasks) if total is None else total
    for count, result in enumerate(ex.run(fn, tasks), start=done + 1):
        yield result
        if progress:
            progress(count, total)


def _finish(sink: Sink, workdir: str, state: WorkState, run: RunOptions) -> Dict[str, Any]:
    """The sink's assembly; a sink without tiles counts it as the run's one step of progress."""
    if not state.tiles and run.progress:
        run.progress(0, 1)
    summary = sink.finish(workdir, state.tiles)
    if not state.tiles and run.progress:
        run.progress(1, 1)
    return summary


def _release(ex: Optional[Executor], run: RunOptions, workdir: str, keep: bool) -> None:
    from ..io.sources import close_all
    if ex is not None:
        release = getattr(ex, "release", None)
        if release is not None:
            release()
        if run.executor is None:        # made for this run (local workers, or a connection to a cluster)
            ex.close()
    # Inputs a serial run opened in this process: a later run must not read them
    # through stale handles (e.g. after the file was rewritten), nor keep them locked.
    close_all()
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)

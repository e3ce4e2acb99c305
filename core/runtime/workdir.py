"""The work folder of a run: tile files, a manifest naming the job, a journal of finished tiles.

A run can be interrupted in any way (cancel, crash, ``kill -9``, a machine
reboot). What makes it resumable:

- every tile file is written to a temporary name and renamed when complete
  (:func:`~tilewise.core.io.cog.write_tile`), so a half-written tile never has a
  tile's name;
- once a tile is complete, its file is flushed to disk (``fsync``) and only then
  listed in the journal with its size, so a listed tile survives a power cut; a tile
  written in place (into the output's file, in the work folder until the end: see
  :mod:`tilewise.core.io.inplace`) is listed under its own name with that file's size,
  after the file is flushed;
- the manifest holds a fingerprint of the job (its parameters, output grid, and
  the state of every input: see :mod:`.fingerprint`) and the tile size, so the
  tiles of another job, or of changed inputs, are never taken; a job whose
  inputs cannot be fingerprinted is never resumed.

A resumed run reuses the tiles listed in the journal whose file still has the
listed size, and recomputes the others.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

from ..grid import Tile
from .fingerprint import Fingerprint, fingerprint
from ..io.atomic import atomic_write
from ..io.stac_record import searches_for
from ..paths import JOURNAL_NAME as JOURNAL, MANIFEST_NAME as MANIFEST

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from .sinks import Sink

FORMAT = 1
SYNC_SECONDS = 1.0
#: Why a run's manifest has no job fingerprint when it journals nothing (:func:`is_durable`).
NOT_JOURNALED = "a run of one tile that journals nothing to resume"


@dataclass(frozen=True)
class WorkState:
    """The tiling of a run, the tiles already finished (indices), and whether the run journals its tiles
    (:func:`is_durable`)."""

    tiles: List[Tile]
    tile_size: int
    finished: FrozenSet[int]
    durable: bool = True


def job_fingerprint(job: Any) -> Fingerprint:
    """The job's parameters and the present state of every input it reads (:func:`.fingerprint.fingerprint`).

    >>> from tilewise.core.grid import Grid
    >>> g = Grid("", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 10, 10)
    >>> job_fingerprint(g) == job_fingerprint(Grid("", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 10, 10))
    True
    """
    return fingerprint(job)


def resumable_size(workdir: str, fingerprint: Fingerprint, tile_size: Optional[int]) -> Optional[int]:
    """The tile size of an interrupted run of the same job (``fingerprint``) in ``workdir``, if it can be
    resumed with ``tile_size`` (None: any); otherwise None, and the log says why."""
    manifest = read_manifest(workdir)
    if manifest is None:
        if os.path.isdir(workdir):
            log.info(f"The work folder {workdir} has no readable manifest: starting afresh")
        else:
            log.info("No interrupted run to resume: computing every tile")
        return None
    if fingerprint.digest is None:
        log.info(f"Not resuming: {fingerprint.reason}, so its tiles in {workdir} may be stale; starting afresh")
        return None
    if manifest.get("job") is None:
        log.info(f"The work folder {workdir} holds no tiles to resume: starting afresh")
        return None
    size = manifest.get("tile_size")
    if manifest.get("job") != fingerprint.digest or not isinstance(size, int) or tile_size not in (None, size):
        log.info(f"The work folder {workdir} belongs to another job (parameters, inputs or tile size changed): "
                 "starting afresh")
        return None
    return size


def prepare_workdir(job: Any, sink: "Sink", workdir: str, fingerprint: Fingerprint, tile_size: int,
                    tiles: Sequence[Tile], resumed: bool, durable: bool = True) -> WorkState:
    """Reuse the work folder of an interrupted run of the same job (``resumed``: :func:`resumable_size`
    said so) with its finished tiles, or start a new one for ``tiles`` (``durable``: its manifest flushed
    to disk, for a run that journals its tiles; see :func:`is_durable`). A run that journals nothing and
    whose sink puts nothing in the folder (:attr:`.Sink.uses_workdir`) gets none: an old one is removed."""
    if resumed:
        manifest = read_manifest(workdir) or {}
        if manifest.get("tiles") == len(tiles):
            finished = finished_tiles(workdir, tiles, sink)
            if finished:
                return WorkState(list(tiles), tile_size, finished)
            # nothing to reuse: a fresh folder, so that no line of the old journal outlives its files
            # (a file written in place is made anew with the same size)
        else:
            log.info(f"The work folder {workdir} was planned differently: starting afresh")
    shutil.rmtree(workdir, ignore_errors=True)
    if not durable and not sink.uses_workdir:
        return WorkState(list(tiles), tile_size, frozenset(), durable)
    os.makedirs(workdir)
    _write_json(os.path.join(workdir, MANIFEST), {
        "tilewise_workdir": FORMAT, "job": fingerprint.digest, "tile_size": tile_size, "tiles": len(tiles),
        "output": sink.outputs[0], "outputs": list(sink.outputs), "grid": [job.grid.width, job.grid.height],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(_stac_searches(job) if durable else {})}, fsync=durable)
    return WorkState(list(tiles), tile_size, frozenset(), durable)


def _stac_searches(job: Any) -> dict:
    """The STAC searches whose layers the job reads (their search.json), for the record."""
    found = searches_for(job)
    return {"stac_searches": found} if found else {}


def read_manifest(workdir: str) -> Optional[dict]:
    try:
        with open(os.path.join(workdir, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("tilewise_workdir") == FORMAT else None


def finished_tiles(workdir: str, tiles: Sequence[Tile], sink: "Sink") -> FrozenSet[int]:
    """Indices of the tiles whose every entry (:meth:`~tilewise.core.runtime.sinks.Sink.journal_entries`) the
    journal lists, with its file there and of the listed size."""
    listed: Dict[str, int] = {}
    try:
        with open(os.path.join(workdir, JOURNAL), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():      # not e.g. a line cut short by a kill
            listed[parts[0]] = int(parts[1])
    finished = set()
    for tile in tiles:
        entries = sink.journal_entries(workdir, tile)
        if entries and all(_intact(name, path, listed) for name, path in entries):
            finished.add(tile.index)
    return frozenset(finished)


def _intact(name: str, path: str, listed: Dict[str, int]) -> bool:
    size = listed.get(name)
    try:
        return size is not None and os.path.getsize(path) == size
    except OSError:
        return False


class Journal:
    """Appends finished tiles to the work folder's journal: their files are made durable first."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self._file = open(os.path.join(workdir, JOURNAL), "a", encoding="utf-8")
        self._synced = time.monotonic()

    def record(self, entries: Sequence[Union[str, Tuple[str, str]]]) -> None:
        """List a finished tile: its files, or ``(name, file)`` entries
        (:meth:`~tilewise.core.runtime.sinks.Sink.journal_entries`), each file made durable first."""
        pairs = [(os.path.basename(e), e) if isinstance(e, str) else e for e in entries]
        for path in dict.fromkeys(path for _, path in pairs):
            _fsync_path(path)
        for name, path in pairs:
            self._file.write(f"{name} {os.path.getsize(path)}\n")
        self._file.flush()                             # in the kernel's hands: survives a kill -9
        if time.monotonic() - self._synced > SYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._file.fileno())                  # on disk: survives a reboot
        self._synced = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.sync()
            finally:
                self._file.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)   # Windows flushes writable handles only
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_durable(tiles: int, resume: bool, keep_workdir: bool) -> bool:
    """Whether a run's work folder journals its finished tiles, each flushed to disk (what a later ``resume``
    reuses): always, but for a run of one tile that neither resumes nor keeps its folder. Such a run leaves
    nothing to reuse when it stops (its folder is removed), and after a ``kill -9`` or a power cut a later
    resumed run finds no journal and computes the one tile anew; it skips the flushes (an ``fsync`` of the
    tile, the journal and the manifest each: most of a tiny run's time on a busy disk).

    >>> is_durable(1, resume=False, keep_workdir=False), is_durable(2, False, False), is_durable(1, True, False)
    (False, True, True)
    """
    return tiles > 1 or resume or keep_workdir


def _write_json(path: str, value: dict, fsync: bool = True) -> None:
    with atomic_write(path, fsync=fsync) as f:
        json.dump(value, f, indent=1)

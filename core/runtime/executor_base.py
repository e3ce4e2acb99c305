"""The executor interface, and the serial executor: what every executor module builds on.

:mod:`.executor` (local process pools, and choosing the executor of a run) and
:mod:`.dask_executor` (a Dask cluster) both import this module, never each other
at import time.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence


def cpu_count() -> int:
    """Cores this process may use (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except AttributeError:
        return os.cpu_count() or 1


class Executor:
    """Runs ``fn(*args)`` for every ``args`` and yields results as they complete."""

    workers: int = 1

    def run(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers. Safe to call more than once."""

    def check_workdir(self, workdir: str) -> None:
        """Raise if the workers cannot write tiles into ``workdir`` (a distributed executor's
        workers must see it on a shared file system). Local workers always do."""

    def describe(self) -> str:
        """How the tiles run, for the log."""
        return f"{self.workers} worker(s)"

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Runs tasks one after the other in this process (numba still uses every core)."""

    def run(self, fn: Callable[..., Any], tasks: Sequence[tuple]) -> Iterator[Any]:
        for args in tasks:
            yield fn(*args)



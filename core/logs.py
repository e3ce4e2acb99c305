"""The engine's log: Python's :mod:`logging`, under the package's own logger (``tilewise``).

Every module of ``core/`` logs to its own logger, ``logging.getLogger(__name__)``
(``tilewise.core.runtime.runner``...). A library user sees those records as any other
library's (``logging.basicConfig(level=logging.INFO)``, or
``logging.getLogger("tilewise").setLevel(logging.DEBUG)`` for the debug records too).

The engine's front ends hear them through one handler, :class:`LineHandler`: a record
becomes the log line it always was (a warning reads ``"Warning: ..."``) and goes to a
callback: the command line's stderr (:mod:`tilewise.core.cli`), the engine process's event
stream to QGIS (:mod:`tilewise.core.runtime.driver`), or the ``log=`` callback of the
Python API (:class:`tilewise.core.options.RunOptions`). :func:`logging_to` attaches one for
a block.

>>> lines = []
>>> with logging_to(lines.append):
...     logging.getLogger("tilewise.core.example").warning("3 inputs outside the grid")
>>> lines
['Warning: 3 inputs outside the grid']
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import warnings
from typing import Any, Callable, Iterator, List, Optional, TypeVar, cast

from .errors import TilewiseWarning

#: The package's logger, the parent of every module's: ``tilewise`` (the plugin folder's name).
ROOT = __name__.split(".")[0]
#: The prefix of a warning's line: the command line prints it even with ``-q``, QGIS shows it as a warning.
WARNING = "Warning: "

#: A callback that hears the log's lines.
LogFn = Callable[[str], None]
F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)
_FORMATTER = logging.Formatter()


def line(record: logging.LogRecord) -> str:
    """A record as a log line: its message, ``"Warning: "`` first for a warning or an error, and the
    traceback of its exception, if it has one (the debug records of a failure's cause)."""
    message = record.getMessage()
    if record.levelno >= logging.WARNING and not message.startswith(WARNING):
        message = WARNING + message
    if record.exc_info and record.exc_info[1] is not None:
        message += "\n" + _FORMATTER.formatException(record.exc_info)
    return message


def log_cause(error: BaseException) -> None:
    """The cause of ``error``, whose message was shown without it: a debug record with the cause's
    traceback (the command line's ``--debug``, ``TILEWISE_DEBUG`` for QGIS's engine)."""
    cause = error.__cause__
    if cause is not None:
        log.debug("%s was caused by:", type(error).__name__, exc_info=(type(cause), cause, cause.__traceback__))


class LineHandler(logging.Handler):
    """Forwards each record of the ``tilewise`` loggers to ``send(line)`` (:func:`line`); with ``thread``,
    only the records of that thread (QGIS runs several algorithms at once, each in its own thread)."""

    def __init__(self, send: LogFn, level: int = logging.INFO, thread: Optional[int] = None) -> None:
        super().__init__(level)
        self.send = send
        if thread is not None:
            self.addFilter(lambda record: record.thread == thread)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(line(record))
        except Exception:  # noqa: BLE001 - logging's own rule: a failing handler must not fail the run
            self.handleError(record)


def forwarding() -> bool:
    """True while a :class:`LineHandler` is attached: the engine's records (and its warnings) have somewhere
    to go besides Python's defaults."""
    return any(isinstance(h, LineHandler) for h in logging.getLogger(ROOT).handlers)


def detach() -> None:
    """Remove the :class:`LineHandler` s a worker process inherited from the process that forked it: a
    worker's records stay in it (a worker writing on the engine's event stream could garble a line)."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, LineHandler)]:
        logger.removeHandler(handler)


@contextlib.contextmanager
def lines_to(send: Optional[LogFn], level: int = logging.INFO, this_thread: bool = False) -> Iterator[None]:
    """Within the block, the ``tilewise`` records of ``level`` and above go to ``send`` too (nothing when
    None, or when ``send`` already hears them: nested runs do not repeat a line); with ``this_thread``,
    only the records of the calling thread. The ``tilewise`` logger
    lets ``level`` through meanwhile if it was set higher (by default it follows the root's WARNING)."""
    logger = logging.getLogger(ROOT)
    if send is None or any(isinstance(h, LineHandler) and h.send == send for h in logger.handlers):
        yield
        return
    handler = LineHandler(send, level, threading.get_ident() if this_thread else None)
    before = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


@contextlib.contextmanager
def logging_to(send: Optional[LogFn] = None) -> Iterator[None]:
    """A run's log: within the block, the ``tilewise`` records also go to ``send`` (see :func:`lines_to`),
    and :class:`~tilewise.core.errors.TilewiseWarning` s (planning's: an output name changed, inputs
    outside the grid...) become warning records, once the block ends, when a :class:`LineHandler` hears
    them; with none, they stay Python warnings (a library user's ``warnings`` filters and
    ``pytest.warns`` see them). Other warnings are shown as usual."""
    with lines_to(send):
        if not forwarding():
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
                    log.warning("%s", w.message)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def log_option(function: F) -> F:
    """An operation of the Python API whose ``log=`` keyword (:class:`~tilewise.core.options.RunOptions`)
    hears the whole call's log, planning included."""
    @functools.wraps(function)
    def logged(*args: Any, **kwargs: Any) -> Any:
        with lines_to(kwargs.get("log")):
            return function(*args, **kwargs)
    return cast(F, logged)

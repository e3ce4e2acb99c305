"""Temporal gap filling: the options, their checks and the rules. Plain Python and numpy, no numba.

A pixel's series is its observations in date order; a missing one (masked,
nodata, cloud) is NaN. For each *target date* (the input dates, or a regular
series that resamples the series in time) the output value is:

- **observed** (flag 0): the target date is an input date and the pixel has an
  observation there: it is passed through bit for bit;
- else it lies in a *gap*, between the nearest valid observations before and
  after it, and is filled by ``METHOD`` (flag 1, or 2 for a seasonal value):

  - 0 ``linear``: linear in time between them, weighted by the days to each
    (``numpy.interp``'s formula, so its exact values);
  - 1 ``nearest``: the one closer in time; at equal distance the earlier one
    (as ``scipy``'s, ``pandas``' and ``xarray``'s ``nearest``);
  - 2 ``previous``: the one before (a forward fill);
  - 3 ``next``: the one after (a backward fill);
  - 4 ``seasonal``: the median of the same season in other years (see
    :func:`season_table`), where there is one; else as ``linear``.

Rules that hold for every method:

- **Gap length** is the number of days between the valid observations on
  either side of the target. For a leading (trailing) gap, which has a valid
  observation on one side only, it is the days between the start (end) of the
  series and the first (last) valid observation; the series runs from the
  earlier of the first input and first target date to the later of the last
  ones. (These are ``xarray``'s ``max_gap`` rules.)
- ``MAX_GAP`` (days, 0 for no limit): a target in a gap longer than this stays
  missing, whatever the method.
- ``EDGES`` 0 ``leave``: targets in a leading or trailing gap stay missing;
  1 ``nearest``: they take the first (last) valid value (flag 3), or with
  ``seasonal`` the seasonal median where there is one (flag 2).
- A pixel with no valid observation stays missing everywhere (flag 255), and so
  does any value the arithmetic leaves NaN (infinite inputs).

Missing outputs are NaN with flag 255. Enum orders are fixed (QGIS models store
the index): :data:`METHODS`, :data:`EDGE_MODES`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np

from ..dates import DateLike, dates_from_days, day_numbers, parse_date
from ..errors import ParameterError
from ..vocabulary import GAPFILL_EDGE_MODES, GAPFILL_METHODS

METHODS = GAPFILL_METHODS
EDGE_MODES = GAPFILL_EDGE_MODES

FLAG_OBSERVED = 0
FLAG_INTERPOLATED = 1
FLAG_SEASONAL = 2
FLAG_EDGE = 3
FLAG_MISSING = 255
FLAG_MEANINGS = {FLAG_OBSERVED: "observed", FLAG_INTERPOLATED: "interpolated", FLAG_SEASONAL: "seasonal",
                 FLAG_EDGE: "edge-filled", FLAG_MISSING: "still missing"}

#: Widest season window: half of it (180 days) is closer to one year's date than to the next year's,
#: so every observation belongs to one season of each target.
MAX_SEASON_DAYS = 360

#: Most output dates a run may ask for (a GeoTIFF holds at most 65535 bands).
MAX_TARGETS = 65535


@dataclass(frozen=True)
class RegularDates:
    """A regular series of target dates: ``start``, ``start + step``, ... up to ``end`` (included if on a step)."""

    start: _dt.date
    step: int
    end: _dt.date

    def dates(self) -> Tuple[_dt.date, ...]:
        n = (self.end - self.start).days // self.step + 1
        return tuple(self.start + _dt.timedelta(days=k * self.step) for k in range(n))


Targets = Union[None, RegularDates, Tuple[_dt.date, ...]]


@dataclass(frozen=True)
class GapfillOptions:
    """Checked gap-filling options (make them with :func:`plan_gapfill`).

    ``target`` None means the input dates; else a :class:`RegularDates` or a
    tuple of dates in increasing order.
    """

    method: str = "linear"
    max_gap: float = 0.0
    edges: str = "leave"
    season_days: float = 30.0
    years_window: int = 0
    target: Targets = None

    @property
    def method_code(self) -> int:
        return METHODS.index(self.method)

    @property
    def edges_code(self) -> int:
        return EDGE_MODES.index(self.edges)


def _choice(value, names: Tuple[str, ...], what: str) -> str:
    listed = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(names):
            return names[int(value)]
        raise ParameterError(f"{what} {value} does not exist; use {listed}.")
    key = str(value).strip().lower()
    if key.isdigit():
        return _choice(int(key), names, what)
    if key in names:
        return key
    raise ParameterError(f"Unknown {what} {value!r}; use {listed}.")


def _number(value, what: str, lo: float, hi: float, meaning: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} must be a number ({meaning}), got {value!r}.") from None
    if math.isnan(f) or not lo <= f <= hi:
        raise ParameterError(f"{what} must be between {lo:g} and {hi:g} ({meaning}), got {value!r}.")
    return f


def plan_gapfill(method: Union[int, str] = 0, max_gap: float = 0, edges: Union[int, str] = 0,
                 season_days: float = 30, years_window: int = 0,
                 target_dates: Union[None, str, RegularDates, Sequence[DateLike]] = None) -> GapfillOptions:
    """Check the gap-filling options; raise :class:`ParameterError` on the first problem.

    Parameters
    ----------
    method : int or str
        0 linear, 1 nearest, 2 previous, 3 next, 4 seasonal (index or name).
    max_gap : float
        Longest gap to fill, in days; 0 for no limit.
    edges : int or str
        0 leave (leading and trailing gaps stay missing), 1 nearest (the nearest valid value).
    season_days : float
        With ``seasonal``: the width of the season around a date, in days (1..360; half on each side).
    years_window : int
        With ``seasonal``: how many years before and after to look in; 0 for all.
    target_dates : None, str, RegularDates or list of dates
        None or "" for the input dates; a regular series ``"2024-01-01,10,2024-12-31"``
        (start, step in days, end) or ``RegularDates``; or a list of dates.

    >>> o = plan_gapfill("seasonal", max_gap=60, edges=1, target_dates="2024-01-01,10,2024-12-31")
    >>> o.method, o.edges, o.target.step, len(o.target.dates())
    ('seasonal', 'nearest', 10, 37)
    """
    name = _choice(method, METHODS, "gap-filling METHOD")
    gap = _number(max_gap, "MAX_GAP", 0, 1e6, "days; 0 for no limit")
    edge = _choice(edges, EDGE_MODES, "EDGES mode")
    season = _number(season_days, "SEASON_DAYS", 1, MAX_SEASON_DAYS, "the width of the season window in days, "
                     "centred on the date")
    years = _number(years_window, "YEARS_WINDOW", 0, 1000, "years before and after; 0 for all")
    if not years.is_integer():
        raise ParameterError(f"YEARS_WINDOW must be a whole number of years, got {years_window!r}.")
    return GapfillOptions(name, gap, edge, season, int(years), parse_target_dates(target_dates))


def parse_target_dates(value: Union[None, str, RegularDates, Sequence[DateLike]]) -> Targets:
    """``TARGET_DATES``: None (the input dates), a :class:`RegularDates`, or a sorted tuple of dates.

    Text with three items whose middle one is a whole number is a regular
    series (start, step in days, end); other text is a list of dates.

    >>> parse_target_dates("2024-01-01, 16, 2024-03-01")
    RegularDates(start=datetime.date(2024, 1, 1), step=16, end=datetime.date(2024, 3, 1))
    >>> parse_target_dates(["2024-03-01", "2024-01-01"])
    (datetime.date(2024, 1, 1), datetime.date(2024, 3, 1))
    >>> parse_target_dates("") is None
    True
    """
    if value is None:
        return None
    if isinstance(value, RegularDates):
        _check_regular(value)
        return value
    items = [t for t in re.split(r"[,;\s]+", value.strip()) if t] if isinstance(value, str) else list(value)
    if not items:
        return None
    if len(items) == 3 and re.fullmatch(r"\+?\d+(\.0*)?", str(items[1]).strip()):
        start, end = parse_date(items[0], "TARGET_DATES start"), parse_date(items[2], "TARGET_DATES end")
        series = RegularDates(start, int(float(items[1])), end)
        _check_regular(series)
        return series
    dates = tuple(sorted(parse_date(v, f"entry {i + 1} of TARGET_DATES") for i, v in enumerate(items)))
    twice = sorted({d for a, d in zip(dates, dates[1:]) if a == d})
    if twice:
        raise ParameterError(f"TARGET_DATES lists {', '.join(d.isoformat() for d in twice)} more than once.")
    if len(dates) > MAX_TARGETS:
        raise ParameterError(f"TARGET_DATES lists {len(dates)} dates; at most {MAX_TARGETS} can be written.")
    return dates


def _check_regular(series: RegularDates) -> None:
    if series.step < 1:
        raise ParameterError(f"The TARGET_DATES step must be at least 1 day, got {series.step}.")
    if series.end < series.start:
        raise ParameterError(f"The TARGET_DATES series ends ({series.end}) before it starts ({series.start}).")
    n = (series.end - series.start).days // series.step + 1
    if n > MAX_TARGETS:
        raise ParameterError(f"The TARGET_DATES series has {n} dates; at most {MAX_TARGETS} can be written: "
                             "use a longer step or a shorter period.")
    return True


def target_days(options: GapfillOptions, days: np.ndarray) -> np.ndarray:
    """The output dates as day numbers, increasing: the input ``days`` sorted, or ``options.target``'s."""
    if options.target is None:
        return np.sort(np.asarray(days, np.float64))
    dates = options.target.dates() if isinstance(options.target, RegularDates) else options.target
    return day_numbers(dates)


def output_dates(options: GapfillOptions, days: np.ndarray) -> Tuple[_dt.date, ...]:
    """The output dates (one band each), e.g. for band descriptions: ``[d.isoformat() for d in ...]``."""
    return dates_from_days(target_days(options, days))


def _same_day_in_year(d: _dt.date, year: int) -> _dt.date:
    if d.month == 2 and d.day == 29:
        try:
            return _dt.date(year, 2, 29)
        except ValueError:
            return _dt.date(year, 2, 28)
    return d.replace(year=year)


def season_offset(target: _dt.date, obs: _dt.date) -> Tuple[int, int]:
    """``(years, days)``: how far ``obs`` is from the same season as ``target``.

    ``obs`` is moved to the calendar year (the target's, the one before or the
    one after) where it falls closest to ``target`` (29 February becomes 28 February
    in other years); ``days`` is then its distance to ``target`` and ``years``
    the number of years it was moved. So the day-of-year distance wraps at the
    turn of the year: 2020-12-28 is 1 year and 8 days from 2022-01-05.

    >>> season_offset(_dt.date(2022, 1, 5), _dt.date(2020, 12, 28))
    (1, 8)
    >>> season_offset(_dt.date(2022, 6, 1), _dt.date(2024, 6, 16))
    (-2, 15)
    """
    best = None
    for year in (target.year - 1, target.year, target.year + 1):
        moved = _same_day_in_year(obs, year)
        d = abs((moved - target).days)
        if best is None or d < best[1]:
            best = (year, d)
    year, d = best  # type: ignore[misc]
    return year - obs.year, d


def season_table(days: np.ndarray, targets: np.ndarray, season_days: float,
                 years_window: int) -> Tuple[np.ndarray, np.ndarray]:
    """For each target, the inputs in its season in other years, as ``(pointers, indices)`` (CSR).

    Input ``i`` (day number ``days[i]``) is in the season of target ``t`` when,
    by :func:`season_offset`, it is at most ``season_days / 2`` days from it,
    moved by a non-zero number of years, at most ``years_window`` (0: any).
    The inputs of target ``j`` are ``indices[pointers[j]:pointers[j + 1]]``.

    >>> d = day_numbers([_dt.date(y, 6, 1) for y in (2020, 2021, 2022)])
    >>> season_table(d, d[1:2], 30, 0)
    (array([0, 2]), array([0, 2]))
    """
    in_dates = dates_from_days(np.floor(days))
    half = season_days / 2.0
    ptr = [0]
    idx = []
    for t in dates_from_days(np.floor(targets)):
        for i, o in enumerate(in_dates):
            years, dist = season_offset(t, o)
            if years != 0 and (years_window == 0 or abs(years) <= years_window) and dist <= half:
                idx.append(i)
        ptr.append(len(idx))
    return np.asarray(ptr, np.int64), np.asarray(idx, np.int64)

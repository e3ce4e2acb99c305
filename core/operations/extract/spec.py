"""What an extraction computes: statistics, coverage rule, point method (plain Python).

The orders of the value lists (:data:`~tilewise.core.vocabulary.EXTRACT_STATISTICS`, ``EXTRACT_COVERAGES``,
``EXTRACT_POINT_METHODS``, ``EXTRACT_GEOMETRY_MODES``) are fixed: QGIS models store the indices of enum
parameters, so a new entry only ever goes at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence, Tuple, Union

from ...errors import ParameterError
from ...vocabulary import DEFAULT_PERCENTILES, EXTRACT_COVERAGES, EXTRACT_GEOMETRY_MODES, EXTRACT_POINT_METHODS, \
    EXTRACT_STATISTICS


_ALIASES = {"percentile": "percentiles", "stdev": "std", "stddev": "std", "average": "mean",
            "minimum": "min", "maximum": "max", "center": "centre", "all-touched": "all_touched",
            "alltouched": "all_touched", "touched": "all_touched", "fraction": "fractional",
            "exact": "fractional", "near": "nearest", "vertex": "vertices"}

Choice = Union[int, str]


def choose(value: Choice, names: Sequence[str], what: str) -> str:
    """The name of an enum entry given by index or name.

    >>> choose(2, EXTRACT_COVERAGES, "coverage"), choose("center", EXTRACT_COVERAGES, "coverage")
    ('fractional', 'centre')
    """
    if isinstance(value, bool):
        raise ParameterError(f"Unknown {what} {value!r}; use one of {', '.join(names)}.")
    if isinstance(value, int):
        if 0 <= value < len(names):
            return names[value]
        raise ParameterError(f"{what.capitalize()} index {value} is out of range: 0 to {len(names) - 1} "
                             f"({', '.join(f'{i} {n}' for i, n in enumerate(names))}).")
    text = str(value).strip().lower()
    if text.isdigit():
        return choose(int(text), names, what)
    text = _ALIASES.get(text, text)
    if text not in names:
        raise ParameterError(f"Unknown {what} {value!r}; use one of {', '.join(names)}.")
    return text


def percentile_column(q: float) -> str:
    """Column name of a percentile: ``p25``, ``p2_5``, ``p99_9``.

    >>> [percentile_column(q) for q in (25, 2.5, 99.9, 100)]
    ['p25', 'p2_5', 'p99_9', 'p100']
    """
    text = f"{q:g}" if q != int(q) else str(int(q))
    return "p" + text.replace(".", "_")


@dataclass(frozen=True)
class ExtractSpec:
    """The statistics and the sampling rules of one extraction.

    ``statistics`` are names or indices of :data:`EXTRACT_STATISTICS`, kept in that fixed
    order; ``percentiles`` (0-100) go with ``percentiles`` (default 25, 50, 75). ``coverage`` and
    ``point_method`` take names or indices. ``window`` is the side of the n x n
    block of pixels around each point (1: the point's own pixel). Below
    ``min_valid_fraction`` of a feature's footprint with valid data its statistics
    are null.

    >>> s = ExtractSpec(statistics=[6, "mean", 7], percentiles=[90, 10])
    >>> s.statistics, s.columns
    (('mean', 'sum', 'percentiles'), ('mean', 'sum', 'p10', 'p90'))
    """

    statistics: Tuple[str, ...] = ("mean",)
    percentiles: Tuple[float, ...] = ()
    coverage: str = "centre"
    point_method: str = "nearest"
    window: int = 1
    geometry_mode: str = "zonal"
    min_valid_fraction: float = 0.0

    def __post_init__(self) -> None:
        stats = _statistics(self.statistics)
        percentiles = tuple(sorted({float(q) for q in self.percentiles}))
        bad = [q for q in percentiles if not (math.isfinite(q) and 0 <= q <= 100)]
        if bad:
            raise ParameterError(f"Percentiles must be between 0 and 100, got {bad}.")
        if "percentiles" in stats and not percentiles:
            percentiles = DEFAULT_PERCENTILES
        if percentiles and "percentiles" not in stats:
            stats = tuple(s for s in EXTRACT_STATISTICS if s in stats or s == "percentiles")
        window = int(self.window)
        if window != self.window or window < 1:
            raise ParameterError(f"WINDOW is the side of an n x n block of pixels, at least 1; got {self.window}.")
        fraction = float(self.min_valid_fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ParameterError(f"MIN_VALID_FRACTION must be between 0 and 1, got {self.min_valid_fraction}.")
        method = choose(self.point_method, EXTRACT_POINT_METHODS, "point method")
        if method == "bilinear" and window > 1:
            raise ParameterError("WINDOW reduces the n x n pixels around each point with EXTRACT_STATISTICS; bilinear "
                                 "interpolation does not apply to it. Use POINT_METHOD nearest with WINDOW > 1.")
        object.__setattr__(self, "statistics", stats)
        object.__setattr__(self, "percentiles", percentiles)
        object.__setattr__(self, "coverage", choose(self.coverage, EXTRACT_COVERAGES, "coverage"))
        object.__setattr__(self, "point_method", method)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "geometry_mode", choose(self.geometry_mode, EXTRACT_GEOMETRY_MODES, "geometry mode"))
        object.__setattr__(self, "min_valid_fraction", fraction)

    @property
    def columns(self) -> Tuple[str, ...]:
        """The statistic columns of a zonal result, in order (``n_valid`` comes on top of these)."""
        out = []
        for name in self.statistics:
            if name == "percentiles":
                out.extend(percentile_column(q) for q in self.percentiles)
            else:
                out.append(name)
        return tuple(out)

    @property
    def quantiles(self) -> Tuple[float, ...]:
        """The order statistics to compute, as fractions 0-1: the median first, then the percentiles."""
        qs = [0.5] if "median" in self.statistics else []
        if "percentiles" in self.statistics:
            qs.extend(q / 100.0 for q in self.percentiles)
        return tuple(qs)

    def to_dict(self) -> dict:
        return {"statistics": list(self.statistics), "percentiles": list(self.percentiles),
                "coverage": self.coverage, "point_method": self.point_method, "window": self.window,
                "geometry_mode": self.geometry_mode, "min_valid_fraction": self.min_valid_fraction}

    @classmethod
    def from_dict(cls, d: dict) -> "ExtractSpec":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _statistics(values: Union[Choice, Iterable[Choice]]) -> Tuple[str, ...]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    elif isinstance(values, int):
        values = [values]
    chosen = {choose(v, EXTRACT_STATISTICS, "statistic") for v in values}
    if not chosen:
        raise ParameterError(f"Choose at least one statistic: {', '.join(EXTRACT_STATISTICS)}.")
    return tuple(s for s in EXTRACT_STATISTICS if s in chosen)

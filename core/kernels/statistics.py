"""Which statistics there are and what they need: plain Python, no numba.

Planning (in the engine's parent process, or anywhere) uses these without
loading the compiled kernels; only the processes that reduce tiles do.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import ParameterError
from ..vocabulary import PER_BAND_STATISTICS

#: Kernels compiled together when warming numba's cache (:mod:`tilewise.core.operations.warmup`): the kernels
#: of a group share their helpers and no two groups do, so groups compile in parallel processes without two
#: of them writing one cache index.
WARM_GROUPS = ("order statistics", "other statistics", "gap filling", "extraction", "spectral composites")


def integer_range(dtypes: Sequence[str]) -> Optional[Tuple[int, int]]:
    """``(lowest value, bits)`` covering integer dtypes of at most 16 bits, else None.

    >>> integer_range(["uint8"]), integer_range(["int16", "uint8"]), integer_range(["float32"])
    ((0, 8), (-32768, 16), None)
    """
    lows, highs = [], []
    for dt in dtypes:
        kind = np.dtype(dt)
        if kind.kind not in "iu" or kind.itemsize > 2:
            return None
        info = np.iinfo(kind)
        lows.append(int(info.min))
        highs.append(int(info.max))
    if not lows:
        return None
    lo = min(lows)
    return lo, int(max(highs) - lo).bit_length()


def output_count(statistic: str, percentiles: Sequence[float] = ()) -> int:
    """How many output values per pixel (and input band) a statistic gives."""
    check_statistic(statistic, percentiles)
    return len(percentiles) if statistic == "percentile" else 1


def check_statistic(statistic: str, percentiles: Sequence[float] = ()) -> None:
    if statistic not in PER_BAND_STATISTICS:
        raise ParameterError(f"Unknown statistic {statistic!r}; use one of {', '.join(PER_BAND_STATISTICS)}.")
    if statistic == "percentile":
        if len(percentiles) == 0:
            raise ParameterError("The percentile statistic needs at least one percentile, e.g. 25,50,75.")
        bad = [q for q in percentiles if not 0 <= q <= 100]
        if bad:
            raise ParameterError(f"Percentiles must be between 0 and 100, got {bad}.")

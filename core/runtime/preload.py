"""Loading the kernels into a process before its first task: a kept worker of the warm engine.

Importing this module does not import numba; its functions do.
"""

from __future__ import annotations

import os
from typing import Tuple

from ..jitconfig import configure_cache, warm_stamp
from ..kernels.statistics import WARM_GROUPS


def load_group(group: str) -> Tuple[int, int]:
    """Compile the kernels of ``group`` (one of :data:`tilewise.core.kernels.statistics.WARM_GROUPS`) into
    numba's cache, or load them from it: ``(compiled, loaded)``, counted in specializations."""
    if group == WARM_GROUPS[2]:
        from ..kernels.gapfill import warm_up
    elif group == WARM_GROUPS[3]:
        from ..kernels.zonal import warm_up
    elif group == WARM_GROUPS[4]:
        from ..kernels.spectral import warm_up
    else:
        from ..kernels.reducers import warm_up
    return warm_up(group)


def preload() -> int:
    """Import what a tile task uses and load every kernel from numba's cache, if the set-up's warm-up
    (:func:`tilewise.core.operations.warmup.warmup`) has filled it; else load no kernel (compiling them
    all would hold a worker up for tens of seconds, while a run compiles only what it uses). Returns the
    specializations loaded."""
    import rasterio
    from ..io import sources  # noqa: F401  (the modules a tile task imports)
    with rasterio.Env():      # GDAL registers its drivers once per process
        pass
    cache = configure_cache()
    if not cache or not os.path.exists(warm_stamp(cache)):
        return 0
    return sum(load_group(group)[1] for group in WARM_GROUPS)

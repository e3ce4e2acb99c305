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
    """Import what a tile task uses, have GDAL read a GeoTIFF and write a COG once (:func:`first_task`), and
    load every kernel from numba's cache, if the set-up's warm-up (:func:`tilewise.core.operations.warmup.warmup`)
    has filled it; else load no kernel (compiling them all would hold a worker up for tens of seconds, while a
    run compiles only what it uses). Returns the specializations loaded."""
    first_task()
    cache = configure_cache()
    if not cache or not os.path.exists(warm_stamp(cache)):
        return 0
    return sum(load_group(group)[1] for group in WARM_GROUPS)


def first_task() -> None:
    """What the first tile task of a process pays once, paid now: the operations' modules (their tile
    functions and sinks; 0.1-0.15 s), GDAL's drivers, zlib and PROJ's database at a first read of a DEFLATE
    GeoTIFF and a first COG write (10-20 ms), in memory. A kept worker's first task of a QGIS session cost
    about 0.1 s more than the next (a tiny median: 0.12 s against 0.02 s)."""
    import importlib

    import numpy as np
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from ..io import cog, inplace, overviews, packed, sources  # noqa: F401  (the modules a tile task imports)
    from ..registry import OPERATIONS
    for op in OPERATIONS:
        if op.api and op.name != "warmup":
            importlib.import_module(op.api.partition(":")[0])
    data = np.zeros((1, 16, 16), np.float32)
    profile = dict(width=16, height=16, count=1, dtype="float32", crs="EPSG:32633", nodata=-9999.0,
                   transform=from_origin(500000, 5000016, 1, 1))
    # no GDAL threads: a worker of a process that started GDAL's thread pool would wait for them forever
    with rasterio.Env(GDAL_NUM_THREADS="1"), MemoryFile() as tif, MemoryFile() as out:
        with tif.open(driver="GTiff", compress="DEFLATE", tiled=True, blockxsize=16, blockysize=16, **profile) as dst:
            dst.write(data)
        with tif.open() as src:
            src.read()
        with out.open(driver="COG", COMPRESS="DEFLATE", NUM_THREADS="1", **profile) as dst:
            dst.write(data)

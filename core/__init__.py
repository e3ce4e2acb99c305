"""The Tilewise engine: tiled, parallel raster processing into Cloud-Optimized GeoTIFFs.

This package never imports QGIS. Heavy dependencies (numba, rasterio) load only
when an operation is called, so ``import tilewise.core`` is cheap and safe. The
operations (:data:`tilewise.core.registry.OPERATIONS`) are its API functions:
``composite``, ``index``, ``bandmath``, ``mosaic``, ``extract``, ``stac_search``, ``warmup``, ``chips``.

>>> from tilewise.core import composite                          # doctest: +SKIP
>>> report = composite(sorted(glob("ndvi_*.tif")), "median.tif", workers=4)  # doctest: +SKIP
"""

from typing import Any, List

from .errors import TilewiseError
from .vocabulary import REQUIRED_PACKAGES

#: The Tilewise release (also in pyproject.toml and metadata.txt; a test keeps the three equal).
__version__ = "0.1.0"

#: Names imported on first use: the operations' API functions (from the registry), executors, options.
_LAZY = {
    "GridOptions": "tilewise.core.options:GridOptions",
    "OutputOptions": "tilewise.core.options:OutputOptions",
    "RunOptions": "tilewise.core.options:RunOptions",
    "SerialExecutor": "tilewise.core.runtime.executor:SerialExecutor",
    "LocalExecutor": "tilewise.core.runtime.executor:LocalExecutor",
    "warm_workers": "tilewise.core.runtime.executor:warm_workers",
    "DaskExecutor": "tilewise.core.runtime.dask_executor:DaskExecutor",
}


def _api() -> dict:
    from .registry import OPERATIONS
    return {op.function_name: op.api for op in OPERATIONS if op.api}


def __getattr__(name: str) -> Any:
    path = _LAZY.get(name) or _api().get(name)
    if path is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .registry import load
    value = load(path)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_api()))


def missing_packages(load: bool = False) -> list:
    """Names of required packages this interpreter lacks.

    By default each package is only looked for, not imported: the engine's main
    process must not import numba before it starts its worker processes (a
    forked worker would inherit numba's configuration for the parent's thread
    count, and numba refuses to change it later). With ``load`` every package is
    imported, which also finds broken installs (e.g. numba built for another numpy).
    """
    import importlib
    import importlib.util
    import logging
    missing = []
    for name in REQUIRED_PACKAGES:
        try:
            found = importlib.import_module(name) if load else importlib.util.find_spec(name)
        except Exception:  # noqa: BLE001 - not installed, or installed but broken: missing either way
            logging.getLogger(__name__).debug("%s cannot be imported", name, exc_info=True)
            found = None
        if found is None:
            missing.append(name)
    return missing


__all__ = ["composite", "index", "bandmath", "gapfill", "mosaic", "extract", "stac_search", "warmup", "chips",
           "missing_packages", "TilewiseError", "REQUIRED_PACKAGES", "__version__"] + list(_LAZY)

"""The Tilewise engine: tiled, parallel raster processing into Cloud-Optimized GeoTIFFs.

This package never imports QGIS. Heavy dependencies (numba, rasterio) load only
when an operation is called, so ``import tilewise.core`` is cheap and safe.

>>> from tilewise.core import composite                          # doctest: +SKIP
>>> report = composite(sorted(glob("ndvi_*.tif")), "median.tif", workers=4)  # doctest: +SKIP
"""

from .errors import TilewiseError

#: The Tilewise release (also in pyproject.toml and metadata.txt; a test keeps the three equal).
__version__ = "0.1.0"

REQUIRED_PACKAGES = ("numpy", "numba", "rasterio", "numexpr")


def composite(*args, **kwargs):
    """Per-pixel statistic across a stack of rasters; see :func:`tilewise.core.operations.composite.composite`."""
    from .operations.composite import composite as _composite
    return _composite(*args, **kwargs)


def stac_search(*args, **kwargs):
    """Search a STAC catalogue into one VRT per item; see :func:`tilewise.core.operations.stac.search.stac_search`."""
    from .operations.stac.search import stac_search as _stac_search
    return _stac_search(*args, **kwargs)


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
    missing = []
    for name in REQUIRED_PACKAGES:
        try:
            found = importlib.import_module(name) if load else importlib.util.find_spec(name)
        except Exception:  # not installed, or installed but broken
            found = None
        if found is None:
            missing.append(name)
    return missing


__all__ = ["composite", "stac_search", "missing_packages", "TilewiseError", "REQUIRED_PACKAGES", "__version__"]

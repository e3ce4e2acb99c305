"""The Tilewise engine: tiled, parallel raster processing into Cloud-Optimized GeoTIFFs.

This package never imports QGIS. Heavy dependencies (numba, rasterio) load only
when an operation is called, so ``import tilewise.core`` is cheap and safe.

>>> from tilewise.core import composite                          # doctest: +SKIP
>>> report = composite(sorted(glob("ndvi_*.tif")), "median.tif", workers=4)  # doctest: +SKIP
"""

from .errors import TilewiseError

REQUIRED_PACKAGES = ("numpy", "numba", "rasterio", "numexpr")


def composite(*args, **kwargs):
    """Per-pixel statistic across a stack of rasters; see :func:`tilewise.core.temporal.composite`."""
    from .temporal import composite as _composite
    return _composite(*args, **kwargs)


def stac_search(*args, **kwargs):
    """Search a STAC catalogue into one VRT per item; see :func:`tilewise.core.stac.stac_search`."""
    from .stac import stac_search as _stac_search
    return _stac_search(*args, **kwargs)


def missing_packages() -> list:
    """Names of required packages this interpreter cannot import."""
    import importlib
    missing = []
    for name in REQUIRED_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


__all__ = ["composite", "stac_search", "missing_packages", "TilewiseError", "REQUIRED_PACKAGES"]

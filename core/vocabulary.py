"""The engine's vocabulary: every value list, the engine's event names and its errors, defined once.

The QGIS side (enum parameters), the command line (choices) and the engine
(checks) all read these lists, so they cannot disagree. Orders are fixed:
QGIS models and scripts store the *index* of an enum parameter, so a new
entry only ever goes at the end of a list.

Plain Python: no numpy, numba or rasterio here (QGIS imports this module).
"""

from __future__ import annotations

from typing import FrozenSet

from .errors import (CancelledError, CatalogError, ClusterError, DiskFullError, ExpressionError, GridError,
                     InputError, MaskError, OutputError, ParameterError, TileError, TilewiseError, TilewiseWarning,
                     WorkerError)

# -- outputs ---------------------------------------------------------------------------------------------------

#: Output data types (the first is the default).
OUTPUT_TYPES = ("float32", "float64", "int16", "uint16", "int32", "uint32", "uint8", "int8")
#: COG compressions (the first is the default).
COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW", "NONE")
#: Resampling of the COG's overviews (the first is the default).
OVERVIEW_RESAMPLINGS = ("average", "nearest", "mode", "bilinear", "cubic")

# -- inputs ----------------------------------------------------------------------------------------------------

#: Resampling of inputs on another grid than the output's (rasterio's names; the first is the default).
RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
                      "min", "max", "med", "q1", "q3")

# -- operations ------------------------------------------------------------------------------------------------

#: Per-pixel statistics of a stack of layers, each with the name of its kernel in
#: :mod:`tilewise.core.kernels.reducers` (a name -> kernel registry, as rasterio's ``MERGE_METHODS``).
#: Adding a statistic is one kernel there and one line here.
REDUCERS = {
    "median": "median_kernel",
    "mean": "mean_kernel",
    "min": "min_kernel",
    "max": "max_kernel",
    "std": "std_kernel",
    "count": "count_kernel",
    "percentile": "percentile_kernel",
}
#: The temporal composite's statistics, in their enum order.
PER_BAND_STATISTICS = tuple(REDUCERS)
#: Composites that keep each pixel's bands together (:mod:`tilewise.core.operations.spectral`): appended
#: to the composite's statistics (:data:`COMPOSITE_STATISTICS`), so existing models keep their indices.
SPECTRAL_STATISTICS = ("geomedian", "medoid", "quality")
#: Every statistic of the temporal composite, in its enum order.
COMPOSITE_STATISTICS = PER_BAND_STATISTICS + SPECTRAL_STATISTICS
#: A mosaic's rules for pixels covered by several inputs: the first two keep one input's value,
#: the others are statistics of :data:`REDUCERS`.
OVERLAP_RULES = ("first", "last", "min", "max", "mean", "median")
#: A STAC search's layers: one per item, or one per solar day and orbit (a pass, mosaicked).
STAC_GROUPINGS = ("none", "solar_day")
#: Resampling of STAC assets at another resolution than the first asset (GDAL VRT's names in
#: :data:`tilewise.core.operations.stac.vrt.VRT_RESAMPLING`).
STAC_RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode")
#: QA mask presets: 0 none, 1 Sentinel-2 SCL, 2 Landsat Collection 2 QA_PIXEL, 3 Sentinel-3 OLCI WFR WQSF flags
#: (see :mod:`tilewise.core.masks`).
MASK_PRESETS = ("none", "s2-scl", "landsat-c2-qa", "olci-wfr")
#: Gap filling (see :mod:`tilewise.core.kernels.gapfill_plan`): methods and the edge rule.
GAPFILL_METHODS = ("linear", "nearest", "previous", "next", "seasonal")
GAPFILL_EDGE_MODES = ("leave", "nearest")
#: Extraction (see :mod:`tilewise.core.operations.extract.spec`): statistics, coverage rules, point
#: methods, and how lines and polygons are sampled.
EXTRACT_STATISTICS = ("mean", "median", "min", "max", "std", "count", "sum", "percentiles")
EXTRACT_COVERAGES = ("centre", "all_touched", "fractional")
EXTRACT_POINT_METHODS = ("nearest", "bilinear")
EXTRACT_GEOMETRY_MODES = ("zonal", "vertices")
#: The percentiles of the percentile statistics when none are given (composite's dialog, extraction everywhere).
DEFAULT_PERCENTILES = (25.0, 50.0, 75.0)

# -- the engine process ----------------------------------------------------------------------------------------

#: Python packages the engine cannot run without.
REQUIRED_PACKAGES = ("numpy", "numba", "rasterio", "numexpr")

#: The engine's events, one JSON object per line on its stdout (``{"event": ..., ...}``).
EVENT_PROGRESS = "progress"      # done, total
EVENT_LOG = "log"                # message ("Warning: ..." for a warning)
EVENT_DONE = "done"              # report
EVENT_ERROR = "error"            # kind, message
EVENT_MISSING = "missing"        # packages, required, python, version
EVENT_OK = "ok"                  # the answer to --check when nothing is missing
EVENT_ACCEPTED = "accepted"      # the warm engine took a job (the job's own events follow)
#: Error kind of an engine stopped by a signal (SIGTERM, SIGHUP) or Ctrl+C.
STOPPED = "Stopped"


def _subclasses(cls: type) -> FrozenSet[str]:
    names = set()
    for sub in cls.__subclasses__():
        names.add(sub.__name__)
        names |= _subclasses(sub)
    return frozenset(names)


#: Error kinds whose message is all a user needs (no traceback or engine output added).
USER_ERRORS = _subclasses(TilewiseError) | {"MemoryError", STOPPED}

__all__ = ["OUTPUT_TYPES", "COMPRESSIONS", "OVERVIEW_RESAMPLINGS", "RESAMPLING_METHODS", "REDUCERS",
           "PER_BAND_STATISTICS", "OVERLAP_RULES", "STAC_GROUPINGS", "STAC_RESAMPLINGS", "MASK_PRESETS",
           "GAPFILL_METHODS", "GAPFILL_EDGE_MODES", "EXTRACT_STATISTICS", "EXTRACT_COVERAGES",
           "EXTRACT_POINT_METHODS", "EXTRACT_GEOMETRY_MODES", "REQUIRED_PACKAGES", "EVENT_PROGRESS", "EVENT_LOG",
           "EVENT_DONE", "EVENT_ERROR", "EVENT_MISSING", "EVENT_OK", "EVENT_ACCEPTED", "STOPPED", "USER_ERRORS",
           "TilewiseError", "InputError", "MaskError", "GridError", "OutputError", "DiskFullError", "ParameterError",
           "ExpressionError", "TileError", "WorkerError", "ClusterError", "CatalogError", "CancelledError",
           "TilewiseWarning", "DEFAULT_PERCENTILES", "SPECTRAL_STATISTICS", "COMPOSITE_STATISTICS"]

# -- image chips (appended; see :mod:`tilewise.core.operations.chips`) ------------------------------------------
#: MODE of ``tilewise:chips``: 0 the feature's bounding box grown by BUFFER, 1 a SIZE_X x SIZE_Y pixel patch.
CHIPS_MODES = ("box", "patch")
#: BUFFER_UNITS: 0 the units of the output grid's CRS, 1 metres (converted at each feature's latitude
#: on a geographic grid).
CHIPS_BUFFER_UNITS = ("grid", "metres")
__all__ += ["CHIPS_MODES", "CHIPS_BUFFER_UNITS"]
#: FORMAT of ``tilewise:chips``: 0 netCDF (a file per feature), 1 GeoTIFF (a file per feature and date),
#: 2 training (patch mode: one netCDF file of every patch, with a leading ``feature`` dimension).
CHIPS_FORMATS = ("netcdf", "geotiff", "training")
__all__ += ["CHIPS_FORMATS"]

#: LAYOUT of an extraction's table: 0 wide (a row per feature), 1 long (a row per feature x raster x band).
EXTRACT_LAYOUTS = ("wide", "long")
__all__ += ["EXTRACT_LAYOUTS"]

"""Swath scenes (2-D latitude/longitude grids: Sentinel-3 OLCI/SLSTR, MODIS, VIIRS): extraction and flags.

:mod:`.extract` (points, vertices and polygons over many scenes, through the tile runner, one task per
scene), :mod:`.flags` (flag masks by bit, class or name). Reading is :mod:`tilewise.core.io.swath`'s,
the nearest-pixel search :mod:`tilewise.core.kernels.swath`'s.
"""

from .extract import SwathJob, SwathOptions, extract_swath, is_swath_run
from .flags import FlagRequest, flag_request, resolve_flags

__all__ = ["SwathJob", "SwathOptions", "extract_swath", "is_swath_run", "FlagRequest", "flag_request",
           "resolve_flags"]

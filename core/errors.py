"""Errors raised by the Tilewise engine.

One root class, specific subclasses, in the manner of ``rasterio.errors``.
Messages are written for a GIS user: which input, what is wrong, what to do.
"""


class TilewiseError(Exception):
    """Root of every error the engine raises on purpose."""


class InputError(TilewiseError):
    """An input raster is missing, unreadable or inconsistent with the others."""


class MaskError(InputError):
    """The QA mask configuration does not fit the inputs."""


class GridError(TilewiseError):
    """The target grid cannot be planned from the given parameters."""


class OutputError(TilewiseError):
    """The output cannot be written where asked."""


class DiskFullError(OutputError):
    """The disk holding the output (and the tiles beside it) is full."""


class ParameterError(TilewiseError):
    """A parameter value is out of range or inconsistent."""


class TileError(TilewiseError):
    """Computing one tile failed; the message names the tile and the input."""


class WorkerError(TilewiseError):
    """A worker process died (crash, out of memory, killed)."""


class CancelledError(TilewiseError):
    """The run was cancelled; nothing was written."""


class TilewiseWarning(UserWarning):
    """Something the user should know about, that does not stop the run."""


class ExpressionError(ParameterError):
    """A band-math expression is malformed or uses something outside the allowed grammar."""


class ClusterError(TilewiseError):
    """The Dask cluster cannot be used: scheduler unreachable, package missing, workers unable to run tiles."""


class CatalogError(InputError):
    """A STAC catalogue cannot be searched (unreachable, refused, not STAC) or gives nothing usable."""


class OutputBusyError(OutputError):
    """Another Tilewise run is writing the same output (the message names it)."""

"""Names of the files a run writes: its output, and the files beside it (pure: no dependencies beyond
:mod:`tilewise.core.errors`).

The QGIS side imports this to clean up after a cancelled or killed engine.
"""

import os
import warnings

from .errors import OutputError, TilewiseWarning


#: The mark of a file being written, before it is renamed to its name (:func:`partial_name`).
PARTIAL_MARK = ".tilewise-partial"


def partial_name(path: str) -> str:
    """The hidden name beside ``path`` that it is written under, then renamed from.

    >>> os.path.basename(partial_name("/data/tile_0_0.tif"))
    '.tile_0_0.tif.tilewise-partial.tif'
    """
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}{PARTIAL_MARK}{os.path.splitext(name)[1]}")


def partial_path(output: str) -> str:
    """The temporary name the final COG is written to before it is renamed."""
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}{PARTIAL_MARK}.tif")


def workdir_for(output: str) -> str:
    """The work folder that holds the tiles of a run."""
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.tilewise-work")


def lock_path(output: str) -> str:
    """The lock file of a run writing ``output`` (see :mod:`tilewise.core.runtime.lock`)."""
    folder, name = os.path.split(os.path.abspath(output.rstrip("/\\") or output))
    return os.path.join(folder, f".{name}.tilewise-lock")


#: In the work folder: what the job is (a fingerprint, the tile size), and the finished tiles.
MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = "finished.txt"


def has_finished_tiles(output: str) -> bool:
    """True if the work folder of ``output`` lists finished tiles (a run to resume)."""
    try:
        return os.path.getsize(os.path.join(workdir_for(output), JOURNAL_NAME)) > 0
    except OSError:
        return False


GEOTIFF_EXTENSIONS = (".tif", ".tiff")


def geotiff_path(path: str) -> str:
    """``path`` if it names a GeoTIFF; with ``.tif`` added (and a :class:`TilewiseWarning` saying so)
    if it has no extension; an :class:`OutputError` for any other extension.

    >>> geotiff_path("median.tif"), geotiff_path("/data/B04.TIFF")
    ('median.tif', '/data/B04.TIFF')
    >>> geotiff_path("out.png")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    tilewise.core.errors.OutputError: The output out.png would be a GeoTIFF named .png ...
    """
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    if ext.lower() in GEOTIFF_EXTENSIONS:
        return path
    if not ext and stem and not stem.startswith("."):
        fixed = path + ".tif"
        warnings.warn(TilewiseWarning(f"The output name {path} has no extension: writing {fixed}"), stacklevel=2)
        return fixed
    raise OutputError(f"The output {path} would be a GeoTIFF named {ext or name}: Tilewise writes "
                      f"Cloud-Optimized GeoTIFFs only. Name it {os.path.join(folder, stem or name)}.tif.")

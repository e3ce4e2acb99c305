"""Names of the files a run writes beside its output (pure, no dependencies).

The QGIS side imports this to clean up after a cancelled or killed engine.
"""

import os


def partial_path(output: str) -> str:
    """The temporary name the final COG is written to before it is renamed."""
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.tilewise-partial.tif")


def workdir_for(output: str) -> str:
    """The work folder that holds the tiles of a run."""
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.tilewise-work")


def lock_path(output: str) -> str:
    """The lock file of a run writing ``output`` (see :mod:`.lock`)."""
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

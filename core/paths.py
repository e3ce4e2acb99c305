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

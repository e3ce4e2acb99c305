"""Image chips and fixed-size patches per feature, for time-series analysis and deep learning: ``tilewise:chips``.

Modules: :mod:`.plan` (each feature's window on the output grid, file names, the output folder),
:mod:`.run` (options, the job on the tile runner, one task, the sink that writes the netCDF files).
"""

from .run import ChipsOptions, chips

__all__ = ["ChipsOptions", "chips"]

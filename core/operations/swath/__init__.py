"""Swath scenes (2-D latitude/longitude grids: Sentinel-3 OLCI/SLSTR, MODIS, VIIRS): extraction and flags.

:mod:`.extract` (points, vertices and polygons over many scenes, through the tile runner, one task per
scene), :mod:`.flags` (flag masks by bit, class or name). Reading is :mod:`tilewise.core.io.swath`'s,
the nearest-pixel search :mod:`tilewise.core.kernels.swath`'s.

Import the modules themselves: the package imports nothing, so that asking whether inputs are swaths
(:func:`.grid.swath_series`, on every composite) does not load numba into the parent of a pool.
"""

"""Tilewise: fast tiled raster processing for QGIS and headless use.

As a QGIS plugin, QGIS calls :func:`classFactory`. Headless, use
:mod:`tilewise.core` (no QGIS needed) or the ``tilewise`` command.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """Entry point QGIS calls to load the plugin."""
    from .plugin import TilewisePlugin
    return TilewisePlugin(iface)

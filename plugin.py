"""The QGIS plugin object: registers the Tilewise Processing provider."""

from qgis.core import QgsApplication


class TilewisePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS's name)
        """Called by QGIS and qgis_process (hasProcessingProvider=yes)."""
        if self.provider is not None:
            return
        from .algorithms.provider import TilewiseProvider
        self.provider = TilewiseProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        from .algorithms.warm_engine import shutdown
        shutdown()  # the warm engine and its workers end with the plugin
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

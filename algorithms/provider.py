"""The Tilewise Processing provider (id ``tilewise``): its algorithms come from the operations registry."""

from qgis.core import QgsProcessingProvider

from ..core.registry import OPERATIONS, load
from .icon import ICON, icon
from .settings import add_settings, remove_settings


class TilewiseProvider(QgsProcessingProvider):
    def id(self):
        return "tilewise"

    def name(self):
        return "Tilewise"

    def longName(self):
        return "Tilewise — fast tiled raster processing"

    def icon(self):
        return icon()

    def svgIconPath(self):
        return ICON

    def load(self):
        add_settings(self.name(), self.icon())
        self.refreshAlgorithms()
        return True

    def unload(self):
        remove_settings()

    def loadAlgorithms(self):
        for operation in OPERATIONS:
            for path in operation.qgis:
                self.addAlgorithm(load(path)())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def defaultRasterFileExtension(self):
        return "tif"

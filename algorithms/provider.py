"""The Tilewise Processing provider (id ``tilewise``)."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .band_math import BandMath, Ndvi, SpectralIndex
from .mosaic import Mosaic
from .temporal_composite import TemporalComposite

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icon.svg")
PYTHON_SETTING = "TILEWISE_PYTHON"


def _processing_config():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # Processing plugin not loaded (should not happen in QGIS or qgis_process)
        return None, None
    return ProcessingConfig, Setting


def configured_python() -> str:
    """The interpreter set in Processing options, or ''."""
    config, _ = _processing_config()
    if config is None:
        return ""
    value = config.getSetting(PYTHON_SETTING)
    return str(value).strip() if value else ""


class TilewiseProvider(QgsProcessingProvider):
    def id(self):
        return "tilewise"

    def name(self):
        return "Tilewise"

    def longName(self):
        return "Tilewise — fast tiled raster processing"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def load(self):
        config, setting = _processing_config()
        if config is not None:
            config.settingIcons[self.name()] = self.icon()
            config.addSetting(setting(self.name(), PYTHON_SETTING,
                                      "Python interpreter for the Tilewise engine (empty: detect)", "",
                                      valuetype=setting.FILE))
            config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        config, _ = _processing_config()
        if config is not None:
            config.removeSetting(PYTHON_SETTING)

    def loadAlgorithms(self):
        for alg in (TemporalComposite(), Ndvi(), SpectralIndex(), BandMath(), Mosaic()):
            self.addAlgorithm(alg)

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def defaultRasterFileExtension(self):
        return "tif"

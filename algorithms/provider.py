"""The Tilewise Processing provider (id ``tilewise``)."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .band_math import BandMath, Ndvi, SpectralIndex
from .mosaic import Mosaic
from .setup_engine import SetupEngine
from .stac_search import StacSearch
from .temporal_composite import TemporalComposite

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icon.svg")
PYTHON_SETTING = "TILEWISE_PYTHON"
SCHEDULER_SETTING = "TILEWISE_DASK_SCHEDULER"


def _processing_config():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # Processing plugin not loaded (should not happen in QGIS or qgis_process)
        return None, None
    return ProcessingConfig, Setting


def _setting(name) -> str:
    config, _ = _processing_config()
    if config is None:
        return ""
    value = config.getSetting(name)
    return str(value).strip() if value else ""


def configured_python() -> str:
    """The interpreter set in Processing options, or ''."""
    return _setting(PYTHON_SETTING)


def configured_scheduler() -> str:
    """The Dask scheduler address set in Processing options, or '' (run on this machine)."""
    return _setting(SCHEDULER_SETTING)


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
            config.addSetting(setting(self.name(), SCHEDULER_SETTING,
                                      "Dask scheduler address for Tilewise, e.g. tcp://host:8786 "
                                      "(empty: run on this machine)", ""))
            config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        config, _ = _processing_config()
        if config is not None:
            config.removeSetting(PYTHON_SETTING)
            config.removeSetting(SCHEDULER_SETTING)

    def loadAlgorithms(self):
        for alg in (TemporalComposite(), Ndvi(), SpectralIndex(), BandMath(), Mosaic(), StacSearch(), SetupEngine()):
            self.addAlgorithm(alg)

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def defaultRasterFileExtension(self):
        return "tif"

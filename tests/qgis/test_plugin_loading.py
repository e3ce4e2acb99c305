"""The plugin loads the way QGIS loads it: metadata.txt, classFactory, initProcessing, the provider."""

import configparser

import qgis.utils
from qgis.core import (Qgis, QgsApplication, QgsProcessingParameterEnum, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination)

from conftest import PLUGINS_DIR
from twtest import qgis_enum

ALG_ID = "tilewise:temporalmedian"


def test_metadata_is_what_qgis_reads():
    assert "tilewise" in qgis.utils.available_plugins
    assert qgis.utils.pluginMetadata("tilewise", "hasProcessingProvider") == "yes"
    assert qgis.utils.pluginMetadata("tilewise", "name") == "Tilewise"
    from pyplugin_installer.version_compare import isCompatible
    minimum = qgis.utils.pluginMetadata("tilewise", "qgisMinimumVersion")
    maximum = qgis.utils.pluginMetadata("tilewise", "qgisMaximumVersion")
    assert minimum != "__error__" and maximum != "__error__"
    assert isCompatible(Qgis.QGIS_VERSION, minimum, maximum), (Qgis.QGIS_VERSION, minimum, maximum)
    # the file itself, as the plugin repository reads it: mandatory keys present
    meta = configparser.ConfigParser()
    meta.read(PLUGINS_DIR / "tilewise" / "metadata.txt", encoding="utf-8")
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository"):
        assert meta.get("general", key).strip(), key
    icon = PLUGINS_DIR / "tilewise" / meta.get("general", "icon")
    assert icon.is_file(), icon


def test_plugin_object_comes_from_class_factory():
    assert qgis.utils.isPluginLoaded("tilewise")
    plugin = qgis.utils.plugins["tilewise"]
    assert type(plugin).__name__ == "TilewisePlugin"
    assert type(plugin).__module__ == "tilewise.plugin"
    registered = QgsApplication.processingRegistry().providerById("tilewise")
    assert registered is not None
    assert plugin.provider is registered


def test_provider_registers_the_algorithm():
    provider = QgsApplication.processingRegistry().providerById("tilewise")
    assert provider.isActive()
    assert provider.name() == "Tilewise"
    assert ALG_ID in [a.id() for a in provider.algorithms()]
    alg = QgsApplication.processingRegistry().algorithmById(ALG_ID)
    assert alg is not None
    assert alg.displayName() == "Temporal composite (median, percentiles, mean...)"
    # the ids users have in models, every one loaded from the operations registry
    assert sorted(a.id() for a in provider.algorithms()) == [f"tilewise:{n}" for n in (
        "bandmath", "chips", "extract", "gapfill", "index", "mosaic", "ndvi", "setupengine", "stacsearch",
        "temporalmedian")]
    assert "Cloud-Optimized GeoTIFF" in alg.shortHelpString()


def test_parameters():
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG_ID)
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert isinstance(params["INPUT"], QgsProcessingParameterMultipleLayers)
    optional = qgis_enum("Qgis.ProcessingParameterFlag.Optional", "QgsProcessingParameterDefinition.FlagOptional")
    advanced = qgis_enum("Qgis.ProcessingParameterFlag.Advanced", "QgsProcessingParameterDefinition.FlagAdvanced")
    assert params["INPUT"].layerType() == qgis_enum("Qgis.ProcessingSourceType.Raster", "QgsProcessing.TypeRaster")
    assert not params["INPUT"].flags() & optional
    assert isinstance(params["STATISTIC"], QgsProcessingParameterEnum)
    # models and scripts store the index: the order is part of the algorithm's interface
    assert params["STATISTIC"].options() == ["median", "mean", "min", "max", "std", "count", "percentile",
                                             "geomedian", "medoid", "quality"]     # issue 25: appended
    assert params["STATISTIC"].defaultValue() == 0
    assert isinstance(params["OUTPUT"], QgsProcessingParameterRasterDestination)
    for name in ("WORKERS", "TILE_SIZE"):
        assert isinstance(params[name], QgsProcessingParameterNumber), name
        assert params[name].flags() & advanced, name
    for name in ("INPUT", "STATISTIC", "OUTPUT"):
        assert not params[name].flags() & advanced, name
    assert [o.name() for o in alg.outputDefinitions()] == ["OUTPUT", "OUTPUT_MADS", "OUTPUT_COUNT", "OUTPUT_SOURCE"]


def test_unload_and_load_again():
    """QGIS calls unload() when the plugin is disabled and initProcessing() when enabled again."""
    registry = QgsApplication.processingRegistry()
    plugin = qgis.utils.plugins["tilewise"]
    plugin.unload()
    assert registry.providerById("tilewise") is None
    assert registry.algorithmById(ALG_ID) is None
    plugin.initProcessing()
    assert registry.providerById("tilewise") is plugin.provider
    assert registry.algorithmById(ALG_ID) is not None


def test_every_algorithm_offers_every_output_type_and_resampling_the_engine_accepts():
    from tilewise.core.vocabulary import OUTPUT_TYPES, RESAMPLING_METHODS
    provider = QgsApplication.processingRegistry().providerById("tilewise")
    checked = []
    for alg in provider.algorithms():
        params = {p.name(): p for p in alg.parameterDefinitions()}
        if "OUTPUT_TYPE" in params:
            offered = params["OUTPUT_TYPE"].options()
            assert [t for t in offered if t in OUTPUT_TYPES] == list(OUTPUT_TYPES), alg.id()
            assert params["RESAMPLING"].options() == list(RESAMPLING_METHODS), alg.id()
            checked.append(alg.name())
    assert sorted(checked) == ["bandmath", "gapfill", "index", "mosaic", "ndvi", "temporalmedian"]

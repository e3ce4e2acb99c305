"""Rebuild the test models (.model3) with the QgsProcessingModelAlgorithm API.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis/data/make_model.py [NAME ...]

composite_then_fillnodata: a time series -> tilewise:temporalmedian (median) -> native:fillnodata
(pixels with no valid observation get a fill value) -> the model's output.

ndvi_scenes_then_median: multi-band scenes -> tilewise:index (NDVI, one COG per scene in a folder)
-> its OUTPUT_LAYERS into tilewise:temporalmedian's INPUT -> the median NDVI.

ndvi_scenes_then_gapfill_then_sampling: multi-band scenes -> tilewise:index (NDVI, one COG per scene) -> its
OUTPUT_LAYERS into tilewise:gapfill (linear, MAX_GAP a model parameter; one band per date) -> tilewise:extract
at the model's points (long layout: one row per point and band, i.e. date).

bandmath_expression: layers, band numbers and an expression -> tilewise:bandmath -> the result.

swath_extract_then_plot: swath scenes (Sentinel-3 SAFE folders, their manifests or netCDF files: a list of
files, which QGIS cannot load as layers) and stations -> tilewise:extract (long layout, the variables a model
parameter) -> the table and the HTML plot of each station's series (OUTPUT_PLOT), both model outputs.

stac_search_then_median: a STAC catalogue, an area, dates and a cloud limit -> tilewise:stacsearch
(red, nir, scl as the bands of one VRT per item; the footprints a model output) -> its OUTPUT_LAYERS into
tilewise:temporalmedian, masked by band 3 (SCL) classes 0,1,3,8,9,10 -> the median of red and nir.
"""

import os
import sys

from qgis.core import (QgsApplication, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                       QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                       QgsProcessingModelParameter, QgsProcessingParameterExtent, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterString)
from qgis.PyQt.QtCore import QPointF

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS_DIR = os.path.join(HERE, "..", "..", "..", "build", "plugins")
NAME = "composite_then_fillnodata"


def _placed(component, x, y):
    component.setPosition(QPointF(x, y))  # laid out for the Graphical Modeler
    return component


def _with_defaults(child):
    """Set every other parameter to its default, as the Modeler's dialog does when a step is added."""
    alg = QgsApplication.processingRegistry().algorithmById(child.algorithmId())
    for definition in alg.parameterDefinitions():
        if definition.isDestination() or definition.name() in child.parameterSources():
            continue
        if definition.defaultValue() is not None:
            child.addParameterSources(definition.name(), [
                QgsProcessingModelChildParameterSource.fromStaticValue(definition.defaultValue())])
    return child


def _compat():
    """The plugin's QGIS 3.22 / Qt6 names (importable once the plugin is loaded, as in __main__)."""
    from tilewise.algorithms import compat
    return compat


def build():
    compat = _compat()
    model = QgsProcessingModelAlgorithm(NAME, "Tilewise tests")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("scenes", "Scenes", compat.TYPE_RASTER),
                            _placed(QgsProcessingModelParameter("scenes"), 120, 60))
    model.addModelParameter(QgsProcessingParameterNumber("fill_value", "Fill value",
                                                         compat.NUMBER_DOUBLE, 0.0),
                            _placed(QgsProcessingModelParameter("fill_value"), 420, 60))

    composite = QgsProcessingModelChildAlgorithm("tilewise:temporalmedian")
    composite.setChildId("composite")
    composite.setDescription("Temporal median")
    _placed(composite, 120, 180)
    composite.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scenes")])
    composite.addParameterSources("STATISTIC", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    model.addChildAlgorithm(_with_defaults(composite))

    fill = QgsProcessingModelChildAlgorithm("native:fillnodata")
    fill.setChildId("fill")
    fill.setDescription("Fill pixels without observation")
    _placed(fill, 300, 300)
    fill.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("composite", "OUTPUT")])
    fill.addParameterSources("BAND", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    fill.addParameterSources("FILL_VALUE", [QgsProcessingModelChildParameterSource.fromModelParameter("fill_value")])
    output = _placed(QgsProcessingModelOutput("filled", "Filled composite"), 480, 400)
    output.setChildId("fill")
    output.setChildOutputName("OUTPUT")
    fill.setModelOutputs({"filled": output})
    model.addChildAlgorithm(_with_defaults(fill))
    model.updateDestinationParameters()
    return model


def _model_output(child, output_name, name, description, x, y):
    output = _placed(QgsProcessingModelOutput(name, description), x, y)
    output.setChildId(child.childId())
    output.setChildOutputName(output_name)
    child.setModelOutputs({**child.modelOutputs(), name: output})


def _median_of_layers(child_id, description, position, output, **static):
    """tilewise:temporalmedian (median) of the OUTPUT_LAYERS of step ``child_id``, its result a model output."""
    median = QgsProcessingModelChildAlgorithm("tilewise:temporalmedian")
    median.setChildId("median")
    median.setDescription(description)
    _placed(median, *position)
    median.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput(child_id,
                                                                                                "OUTPUT_LAYERS")])
    for name, value in {"STATISTIC": 0, **static}.items():
        median.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    _model_output(median, "OUTPUT", *output)
    return _with_defaults(median)


def build_ndvi_median():
    """Scenes -> NDVI, one COG per scene (the folder is a model output) -> median of the per-scene layers."""
    compat = _compat()
    model = QgsProcessingModelAlgorithm("ndvi_scenes_then_median", "Tilewise tests")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("scenes", "Scenes", compat.TYPE_RASTER),
                            _placed(QgsProcessingModelParameter("scenes"), 120, 60))
    for i, (name, label, band) in enumerate([("red_band", "Red band", 3), ("nir_band", "Near-infrared band", 4)]):
        model.addModelParameter(QgsProcessingParameterNumber(name, label, compat.NUMBER_INTEGER,
                                                             band, minValue=1),
                                _placed(QgsProcessingModelParameter(name), 340 + 200 * i, 60))

    ndvi = QgsProcessingModelChildAlgorithm("tilewise:index")
    ndvi.setChildId("ndvi")
    ndvi.setDescription("NDVI of each scene")
    _placed(ndvi, 120, 180)
    ndvi.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scenes")])
    ndvi.addParameterSources("INDEX", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    ndvi.addParameterSources("RED_BAND", [QgsProcessingModelChildParameterSource.fromModelParameter("red_band")])
    ndvi.addParameterSources("NIR_BAND", [QgsProcessingModelChildParameterSource.fromModelParameter("nir_band")])
    ndvi.addParameterSources("OUTPUT_MODE", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    # QGIS creates a temporary destination only for a child output another step uses; nothing uses
    # OUTPUT_FOLDER (the next step takes OUTPUT_LAYERS), so the folder must be a model output.
    _model_output(ndvi, "OUTPUT_FOLDER", "ndvi_scenes", "NDVI of each scene (folder)", 360, 250)
    model.addChildAlgorithm(_with_defaults(ndvi))

    model.addChildAlgorithm(_median_of_layers("ndvi", "Median NDVI", (120, 320),
                                              ("median_ndvi", "Median NDVI", 360, 400)))
    model.updateDestinationParameters()
    return model


def _add_model_parameters(model, parameters, spacing):
    for i, parameter in enumerate(parameters):
        model.addModelParameter(parameter,
                                _placed(QgsProcessingModelParameter(parameter.name()), 120 + spacing * i, 60))


def _step(algorithm_id, child_id, description, position, from_model):
    """A child algorithm whose parameters ``from_model`` (name -> model parameter) come from the model's."""
    child = QgsProcessingModelChildAlgorithm(algorithm_id)
    child.setChildId(child_id)
    child.setDescription(description)
    _placed(child, *position)
    for name, source in from_model.items():
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromModelParameter(source)])
    return child


def build_bandmath():
    """tilewise:bandmath as one step of a model, its expression a model parameter."""
    compat = _compat()
    model = QgsProcessingModelAlgorithm("bandmath_expression", "Tilewise tests")
    parameters = [QgsProcessingParameterMultipleLayers("layers", "Layers (A, B, ...)", compat.TYPE_RASTER),
                  QgsProcessingParameterString("bands", "Bands", "A=3,B=4"),
                  QgsProcessingParameterString("expression", "Expression", "(B - A) / (B + A)")]
    _add_model_parameters(model, parameters, 200)
    calc = _step("tilewise:bandmath", "calc", "Band math", (320, 180),
                 {"LAYERS": "layers", "BANDS": "bands", "EXPRESSION": "expression"})
    _model_output(calc, "OUTPUT", "result", "Result", 520, 260)
    model.addChildAlgorithm(_with_defaults(calc))
    model.updateDestinationParameters()
    return model


def build_stac_median():
    """A STAC search -> the per-item layers, in date order -> their median, masked by the SCL band."""
    compat = _compat()
    model = QgsProcessingModelAlgorithm("stac_search_then_median", "Tilewise tests")
    parameters = [QgsProcessingParameterString("stac_api", "STAC API or catalogue"),
                  QgsProcessingParameterString("collections", "Collections", "sentinel-2-l2a"),
                  QgsProcessingParameterExtent("extent", "Area"),
                  QgsProcessingParameterString("datetime", "Dates", "2024-05-01/2024-09-30"),
                  QgsProcessingParameterNumber("max_cloud", "Maximum cloud cover (%)",
                                               compat.NUMBER_DOUBLE, 20.0, minValue=0, maxValue=100)]
    _add_model_parameters(model, parameters, 180)
    search = _step("tilewise:stacsearch", "search", "STAC search: red, nir, SCL", (300, 180),
                   {"STAC_API": "stac_api", "COLLECTIONS": "collections", "EXTENT": "extent", "DATETIME": "datetime",
                    "MAX_CLOUD": "max_cloud"})
    search.addParameterSources("ASSETS", [QgsProcessingModelChildParameterSource.fromStaticValue("red,nir,scl")])
    _model_output(search, "OUTPUT_FOLDER", "items", "Items (one VRT each)", 560, 250)
    _model_output(search, "OUTPUT_FOOTPRINTS", "footprints", "Footprints", 560, 290)
    model.addChildAlgorithm(_with_defaults(search))

    model.addChildAlgorithm(_median_of_layers("search", "Median, SCL-masked", (300, 340),
                                              ("median", "Median of red and nir", 560, 420),
                                              MASK_BAND=3, MASK_VALUES="0,1,3,8,9,10"))
    model.updateDestinationParameters()
    return model


def build_ndvi_gapfill_sampling():
    """Scenes -> NDVI per scene -> gap filling of the NDVI series -> its values sampled at points."""
    compat = _compat()
    from qgis.core import QgsProcessingParameterVectorLayer
    model = QgsProcessingModelAlgorithm("ndvi_scenes_then_gapfill_then_sampling", "Tilewise tests")
    _add_model_parameters(model, [
        QgsProcessingParameterMultipleLayers("scenes", "Scenes (one per date, dated names)", compat.TYPE_RASTER),
        QgsProcessingParameterVectorLayer("points", "Points to sample"),
        QgsProcessingParameterNumber("max_gap", "Maximum gap in days (0: no limit)", compat.NUMBER_DOUBLE, 0.0,
                                     minValue=0.0)], 220)
    ndvi = QgsProcessingModelChildAlgorithm("tilewise:index")
    ndvi.setChildId("ndvi")
    ndvi.setDescription("NDVI of each scene")
    _placed(ndvi, 120, 180)
    ndvi.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scenes")])
    for name, value in {"INDEX": 0, "RED_BAND": 3, "NIR_BAND": 4, "OUTPUT_MODE": 1}.items():
        ndvi.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    _model_output(ndvi, "OUTPUT_FOLDER", "ndvi_scenes", "NDVI of each scene (folder)", 360, 250)
    model.addChildAlgorithm(_with_defaults(ndvi))

    fill = QgsProcessingModelChildAlgorithm("tilewise:gapfill")
    fill.setChildId("gapfill")
    fill.setDescription("Gap filling of the NDVI series")
    _placed(fill, 120, 320)
    fill.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("ndvi",
                                                                                              "OUTPUT_LAYERS")])
    fill.addParameterSources("MAX_GAP", [QgsProcessingModelChildParameterSource.fromModelParameter("max_gap")])
    fill.addParameterSources("METHOD", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])
    _model_output(fill, "OUTPUT", "filled", "Filled NDVI series (one band per date)", 360, 390)
    model.addChildAlgorithm(_with_defaults(fill))

    sample = QgsProcessingModelChildAlgorithm("tilewise:extract")
    sample.setChildId("sample")
    sample.setDescription("NDVI series at the points")
    _placed(sample, 120, 460)
    sample.addParameterSources("ZONES", [QgsProcessingModelChildParameterSource.fromModelParameter("points")])
    sample.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("gapfill",
                                                                                                 "OUTPUT")])
    sample.addParameterSources("LAYOUT", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])   # long
    _model_output(sample, "OUTPUT", "samples", "Samples (one row per point and date)", 360, 530)
    model.addChildAlgorithm(_with_defaults(sample))
    model.updateDestinationParameters()
    return model


def build_swath_extract_plot():
    """Swath scenes and stations -> their time series (a table) -> the plot of each station's series."""
    compat = _compat()
    from qgis.core import QgsProcessingParameterField, QgsProcessingParameterVectorLayer
    model = QgsProcessingModelAlgorithm("swath_extract_then_plot", "Tilewise tests")
    _add_model_parameters(model, [
        QgsProcessingParameterMultipleLayers("scenes", "Swath scenes (SAFE folders, manifests or netCDF files)",
                                             compat.TYPE_FILE),
        QgsProcessingParameterVectorLayer("stations", "Stations or lakes"),
        QgsProcessingParameterField("id_field", "Their name field", parentLayerParameterName="stations",
                                    optional=True),
        QgsProcessingParameterString("variables", "Variables", "CHL_NN")], 220)
    extract = _step("tilewise:extract", "extract", "Time series of the stations in the scenes", (120, 180),
                    {"INPUT": "scenes", "ZONES": "stations", "ID_FIELD": "id_field", "VARIABLES": "variables"})
    extract.addParameterSources("LAYOUT", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])   # long
    _model_output(extract, "OUTPUT", "series", "Time series (one row per station, date and variable)", 360, 250)
    _model_output(extract, "OUTPUT_PLOT", "plot", "Plot of each station's series (HTML)", 360, 300)
    model.addChildAlgorithm(_with_defaults(extract))
    model.updateDestinationParameters()
    return model


MODELS = {NAME: build, "ndvi_scenes_then_median": build_ndvi_median, "bandmath_expression": build_bandmath,
          "stac_search_then_median": build_stac_median,
          "ndvi_scenes_then_gapfill_then_sampling": build_ndvi_gapfill_sampling,
          "swath_extract_then_plot": build_swath_extract_plot}


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing
    Processing.initialize()
    import qgis.utils
    qgis.utils.plugin_paths.insert(0, PLUGINS_DIR)
    sys.path.insert(0, PLUGINS_DIR)
    qgis.utils.updateAvailablePlugins()
    if not (qgis.utils.loadPlugin("tilewise") and qgis.utils.startProcessingPlugin("tilewise")):
        sys.exit("could not load the Tilewise plugin from " + PLUGINS_DIR)
    for name in sys.argv[1:] or list(MODELS):
        model = MODELS[name]()
        ok, errors = model.validate()
        if not ok:
            sys.exit(f"invalid model {name}: " + "; ".join(errors))
        path = os.path.join(HERE, name + ".model3")
        if not model.toFile(path):
            sys.exit(f"could not write {path}")
        print(path, [p.name() for p in model.parameterDefinitions()])

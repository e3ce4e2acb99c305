"""Rebuild composite_then_fillnodata.model3 with the QgsProcessingModelAlgorithm API.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis/data/make_model.py

The model: a time series -> tilewise:temporalmedian (median) -> native:fillnodata (pixels
with no valid observation get a fill value) -> the model's output.
"""

import os
import sys

from qgis.core import (QgsApplication, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                       QgsProcessingModelChildParameterSource, QgsProcessingModelOutput,
                       QgsProcessingModelParameter, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessing)
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


def build():
    model = QgsProcessingModelAlgorithm(NAME, "Tilewise tests")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("scenes", "Scenes", QgsProcessing.TypeRaster),
                            _placed(QgsProcessingModelParameter("scenes"), 120, 60))
    model.addModelParameter(QgsProcessingParameterNumber("fill_value", "Fill value",
                                                         QgsProcessingParameterNumber.Double, 0.0),
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
    model = build()
    ok, errors = model.validate()
    if not ok:
        sys.exit("invalid model: " + "; ".join(errors))
    path = os.path.join(HERE, NAME + ".model3")
    if not model.toFile(path):
        sys.exit(f"could not write {path}")
    print(path, [p.name() for p in model.parameterDefinitions()])

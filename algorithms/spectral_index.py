"""``tilewise:index``: a catalogue spectral index on one scene or a time series, on the engine."""

import os

from qgis.core import (QgsProcessingException, QgsProcessingOutputMultipleLayers, QgsProcessingParameterEnum,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer)

from ..core.operations.indices import INDICES, ROLES
from .base import TilewiseAlgorithm, tr
from .swath import RefusesSwaths
from .compat import NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_RASTER
from .parameters import ScalingParameters, with_decimals

INDEX_KEYS = list(INDICES)

INDEX_HELP = (
    "<p>A spectral index from a catalogue, on one scene or on a whole time series in one run, tile by tile on "
    "every core, written as Cloud-Optimized GeoTIFF (Float32).</p>"
    "<p><b>One scene</b>: give a layer for each band the index needs (BLUE, GREEN, RED, NIR, SWIR1 "
    "~1.6&nbsp;µm, SWIR2 ~2.2&nbsp;µm) and its band number; layers may differ and lie on other grids.<br> "
    "<b>A time series</b>: give the multi-band <i>Scenes</i> instead and the band number of each role; the "
    "result is one band per scene in one COG, or one COG per scene in a folder (whose layers can feed "
    "<i>Temporal composite</i> in a model).</p>"
    "<p>Scale/offset turn scaled integers into reflectance first (EVI and SAVI expect reflectance). Nodata in "
    "any band, or a zero denominator, gives the output nodata. Normalized differences are clipped to [-1, "
    "1].</p>"
    "<p>Indices:<br>{indices}</p>"
)


class SpectralIndex(RefusesSwaths, ScalingParameters, TilewiseAlgorithm):
    OPERATION = "index"
    INDEX = "INDEX"
    INPUT = "INPUT"
    CONSTANT_L = "L"
    OUTPUT_MODE = "OUTPUT_MODE"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_LAYERS = "OUTPUT_LAYERS"
    MODES = ["One COG, one band per scene", "One COG per scene, in a folder"]

    def name(self):
        return "index"

    def displayName(self):
        return tr("Spectral index (NDVI, NDWI, NBR, EVI, SAVI...)")

    def shortHelpString(self):
        return tr(INDEX_HELP.format(indices="<br>".join(i.describe() for i in INDICES.values())))

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterEnum(
            self.INDEX, tr("Index"), [f"{i.key.upper()} — {i.name}" for i in INDICES.values()], defaultValue=0))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, tr("Scenes (time series of multi-band layers; or use the band layers below)"),
            TYPE_RASTER, optional=True))
        for role in ROLES:
            self.addParameter(QgsProcessingParameterRasterLayer(
                role, tr(f"{role} layer (one scene)"), optional=True))
            self.addParameter(QgsProcessingParameterNumber(
                f"{role}_BAND", tr(f"{role} band number"), NUMBER_INTEGER, optional=True, minValue=1))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.CONSTANT_L, tr("SAVI soil factor L"), NUMBER_DOUBLE, defaultValue=0.5, minValue=0.0), 2))
        self.add_scaling_parameters()
        self.add_grid_parameters("default: the first scene or band layer")
        # last before the outputs, which the dialog shows at its end
        self.addParameter(QgsProcessingParameterEnum(self.OUTPUT_MODE, tr("Write the index as"), self.MODES,
                                                       defaultValue=0))
        self.add_output_parameters("Index", optional=True)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, tr("Output folder (one COG per scene)"), optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, tr("Index layers, one per scene")))

    def engine_params(self, parameters, context, feedback):
        spec = INDICES[INDEX_KEYS[self.parameterAsEnum(parameters, self.INDEX, context)]]
        scenes = self._scenes(spec, parameters, context)
        per_scene = self.parameterAsEnum(parameters, self.OUTPUT_MODE, context) == 1
        params = {"scenes": scenes, "index": spec.key, "per_scene": per_scene}
        if "L" in spec.constants:
            params["constants"] = {"L": self.parameterAsDouble(parameters, self.CONSTANT_L, context)}
        params.update(self.scaling_params(parameters, context))
        params.update(self.with_reference(self.grid_params(parameters, context), scenes[0][spec.bands[0]][0]))
        if per_scene:
            folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
            if not folder:  # e.g. inside a model where only OUTPUT_LAYERS feeds the next step
                folder = self.parameterDefinition(self.OUTPUT_FOLDER).generateTemporaryDestination()
                feedback.pushInfo(tr(f"No output folder given: the per-scene COGs go to {folder}"))
            params.update(self.output_params(parameters, context, require_output=False))
            params["output"] = os.path.abspath(folder)
        else:
            params.update(self.output_params(parameters, context))
        feedback.pushInfo(tr(f"{spec.describe()} on {len(scenes)} scene(s)"))
        return params

    def results(self, report, params, parameters, context, feedback):
        outputs = report.get("outputs", [report["output"]])
        if params["per_scene"]:
            return {self.OUTPUT_FOLDER: params["output"], self.OUTPUT_LAYERS: outputs}
        return {self.OUTPUT: report["output"], self.OUTPUT_LAYERS: outputs}

    def _scenes(self, spec, parameters, context):
        bands = {role: self.parameterAsInt(parameters, f"{role}_BAND", context)
                 if parameters.get(f"{role}_BAND") not in (None, "") else None for role in ROLES}
        scenes_given = parameters.get(self.INPUT)
        role_layers = {role: self.parameterAsRasterLayer(parameters, role, context) for role in spec.bands}
        if scenes_given:
            if any(role_layers.values()):
                raise QgsProcessingException(tr("Give either scenes or band layers, not both."))
            missing = [r for r in spec.bands if not bands[r]]
            if missing:
                raise QgsProcessingException(tr(
                    f"{spec.key.upper()} needs the band number of {', '.join(missing)} in the scenes."))
            return [{r: [src, bands[r]] for r in spec.bands}
                    for src in self.layer_sources(parameters, self.INPUT, context)]
        missing = [r for r in spec.bands if role_layers[r] is None]
        if missing:
            raise QgsProcessingException(tr(
                f"{spec.key.upper()} needs a layer for {', '.join(missing)} (or give scenes); {spec.describe()}."))
        return [{r: [self.raster_source(role_layers[r], r), bands[r] or 1] for r in spec.bands}]

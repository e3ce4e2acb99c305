"""``tilewise:ndvi``, ``tilewise:index`` and ``tilewise:bandmath``: expressions over bands, on the engine."""

import os
import re

from qgis.core import (QgsProcessingException, QgsProcessingOutputMultipleLayers, QgsProcessingParameterBand,
                       QgsProcessingParameterEnum, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)

from ..core.errors import ExpressionError
from ..core.operations.expression import ELEMENTWISE, validate_expression
from ..core.operations.indices import INDICES, ROLES
from .base import TilewiseAlgorithm, tr
from .compat import NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_RASTER

INDEX_KEYS = list(INDICES)
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]


class _ScaledInputs(TilewiseAlgorithm):
    SCALE = "SCALE"
    OFFSET = "OFFSET"
    INPUT_NODATA = "INPUT_NODATA"

    def add_scaling_parameters(self):
        self.addParameter(QgsProcessingParameterNumber(
            self.SCALE, tr("Scale applied to input values (e.g. 0.0001 for Sentinel-2 L2A)"), NUMBER_DOUBLE,
            defaultValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.OFFSET, tr("Offset added after scaling (e.g. -0.1 for Sentinel-2 L2A baseline 04.00)"),
            NUMBER_DOUBLE, defaultValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(
            self.INPUT_NODATA, tr("Input nodata (empty: each file's own)"), NUMBER_DOUBLE, optional=True))

    def scaling_params(self, parameters, context):
        nodata = parameters.get(self.INPUT_NODATA)
        return {
            "scale": self.parameterAsDouble(parameters, self.SCALE, context),
            "offset": self.parameterAsDouble(parameters, self.OFFSET, context),
            "input_nodata": self.parameterAsDouble(parameters, self.INPUT_NODATA, context)
            if nodata not in (None, "") else None,
        }

    def with_reference(self, params, fallback):
        """Without a reference layer, the output takes the grid of ``fallback``."""
        if not params.get("reference"):
            params["reference"] = fallback
        return params


NDVI_HELP = """
<p>NDVI = (NIR - RED) / (NIR + RED), tile by tile on every core, written as a Cloud-Optimized GeoTIFF
(Float32, values in [-1, 1]).</p>
<p>RED and NIR may be two bands of one multi-band layer (e.g. Landsat 7 bands 3 and 4) or bands of two
layers, even on different grids or CRSs (aligned on the fly to the reference grid, by default RED's).
Integer inputs are converted to float before any arithmetic (no overflow on uint16). <i>Scale</i> and
<i>offset</i> turn scaled integers into reflectance first. A pixel that is nodata in either band, or has a
zero denominator, gets the output nodata.</p>
<p>For a time series of scenes, or other indices, use <i>Spectral index</i>.</p>
"""


class Ndvi(_ScaledInputs):
    RED = "RED"
    RED_BAND = "RED_BAND"
    NIR = "NIR"
    NIR_BAND = "NIR_BAND"

    def name(self):
        return "ndvi"

    def displayName(self):
        return tr("NDVI")

    def shortHelpString(self):
        return tr(NDVI_HELP)

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.RED, tr("Red layer")))
        self.addParameter(QgsProcessingParameterBand(self.RED_BAND, tr("Red band"), 1, self.RED))
        self.addParameter(QgsProcessingParameterRasterLayer(self.NIR, tr("Near-infrared layer")))
        self.addParameter(QgsProcessingParameterBand(self.NIR_BAND, tr("Near-infrared band"), 1, self.NIR))
        self.add_scaling_parameters()
        self.add_grid_parameters("default: the red layer")
        self.add_output_parameters("NDVI")

    def processAlgorithm(self, parameters, context, feedback):
        red = self.raster_source(self.parameterAsRasterLayer(parameters, self.RED, context), self.RED)
        nir = self.raster_source(self.parameterAsRasterLayer(parameters, self.NIR, context), self.NIR)
        scene = {"RED": [red, self.parameterAsInt(parameters, self.RED_BAND, context)],
                 "NIR": [nir, self.parameterAsInt(parameters, self.NIR_BAND, context)]}
        params = {"scenes": [scene], "index": "ndvi"}
        params.update(self.scaling_params(parameters, context))
        params.update(self.with_reference(self.grid_params(parameters, context), red))
        params.update(self.output_params(parameters, context))
        report = self.run_job("index", params, feedback)
        return {self.OUTPUT: report["output"]}


INDEX_HELP = """
<p>A spectral index from a catalogue, on one scene or on a whole time series in one run, tile by tile on
every core, written as Cloud-Optimized GeoTIFF (Float32).</p>
<p><b>One scene</b>: give a layer for each band the index needs (BLUE, GREEN, RED, NIR, SWIR1 ~1.6&nbsp;µm,
SWIR2 ~2.2&nbsp;µm) and its band number; layers may differ and lie on other grids.<br>
<b>A time series</b>: give the multi-band <i>Scenes</i> instead and the band number of each role; the
result is one band per scene in one COG, or one COG per scene in a folder (whose layers can feed
<i>Temporal composite</i> in a model).</p>
<p>Scale/offset turn scaled integers into reflectance first (EVI and SAVI expect reflectance).
Nodata in any band, or a zero denominator, gives the output nodata. Normalized differences are clipped
to [-1, 1].</p>
<p>Indices:<br>{indices}</p>
"""


class SpectralIndex(_ScaledInputs):
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
        self.addParameter(QgsProcessingParameterNumber(
            self.CONSTANT_L, tr("SAVI soil factor L"), NUMBER_DOUBLE, defaultValue=0.5, minValue=0.0))
        self.add_scaling_parameters()
        self.addParameter(QgsProcessingParameterEnum(self.OUTPUT_MODE, tr("Output"), self.MODES, defaultValue=0))
        self.add_grid_parameters("default: the first scene or band layer")
        self.add_output_parameters("Index", optional=True)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, tr("Output folder (one COG per scene)"), optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, tr("Index layers, one per scene")))

    def processAlgorithm(self, parameters, context, feedback):
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
        report = self.run_job("index", params, feedback)
        outputs = report.get("outputs", [report["output"]])
        if per_scene:
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


BANDMATH_HELP = """
<p>A free expression over bands of layers, evaluated with numexpr tile by tile on every core, written as
a Cloud-Optimized GeoTIFF. The layers are named <b>A</b>, <b>B</b>, <b>C</b>... in the order given;
<i>Bands</i> picks each one's band (e.g. <code>A=3,B=4</code>; default band 1). To use two bands of one
layer, list the layer twice. Layers on other grids or CRSs are aligned to the reference grid (default:
A's).</p>
<p>Grammar: numbers, + - * / ** %, comparisons (&lt; &lt;= &gt; &gt;= == !=), &amp; | ~ (with
parentheses), <code>where(condition, a, b)</code> and the functions {functions}. Example:
<code>where((B + A) != 0, (B - A) / (B + A), -1)</code>. The expression is checked before any work: it
can only compute with the layers (no other names, attributes or functions, so it cannot run other code or
touch files), and constants too large for numexpr (e.g. <code>10**10**10</code>) or nesting deeper than 200
levels are refused.</p>
<p>A pixel that is nodata in any layer used, or whose result is not finite, gets the output nodata.
Integer inputs are converted to float first (no overflow).</p>
"""


class BandMath(_ScaledInputs):
    LAYERS = "LAYERS"
    BANDS = "BANDS"
    EXPRESSION = "EXPRESSION"

    def name(self):
        return "bandmath"

    def displayName(self):
        return tr("Band math (free expression)")

    def shortHelpString(self):
        return tr(BANDMATH_HELP.format(functions=", ".join(f for f in ELEMENTWISE if f != "where")))

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LAYERS, tr("Layers (named A, B, C... in this order)"), TYPE_RASTER))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Band of each layer, e.g. A=3,B=4 (default 1)"), optional=True))
        self.addParameter(QgsProcessingParameterString(self.EXPRESSION, tr("Expression, e.g. (B - A) / (B + A)")))
        self.add_scaling_parameters()
        self.add_grid_parameters("default: layer A")
        self.add_output_parameters("Result")

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        try:
            n = len(self.parameterAsLayerList(parameters, self.LAYERS, context))
            bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context), LETTERS[:n])
            validate_expression(self.parameterAsString(parameters, self.EXPRESSION, context), bands,
                                functions=set(ELEMENTWISE))
        except (ExpressionError, QgsProcessingException) as exc:
            return False, str(exc)
        return True, ""

    def processAlgorithm(self, parameters, context, feedback):
        sources = self.layer_sources(parameters, self.LAYERS, context)
        if len(sources) > len(LETTERS):
            raise QgsProcessingException(tr(f"At most {len(LETTERS)} layers (A to Z), got {len(sources)}."))
        names = LETTERS[:len(sources)]
        bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context), names)
        params = {"inputs": {n: [src, bands[n]] for n, src in zip(names, sources)},
                  "expression": self.parameterAsString(parameters, self.EXPRESSION, context)}
        params.update(self.scaling_params(parameters, context))
        params.update(self.with_reference(self.grid_params(parameters, context), sources[0]))
        params.update(self.output_params(parameters, context))
        report = self.run_job("bandmath", params, feedback)
        return {self.OUTPUT: report["output"]}


def parse_bands(text, names):
    """``"A=3,B=4"`` -> ``{"A": 3, "B": 4, "C": 1, ...}`` for the given layer names."""
    bands = {n: 1 for n in names}
    for item in filter(None, (t.strip() for t in re.split(r"[,;\s]+", text or ""))):
        m = re.fullmatch(r"([A-Za-z])\s*=\s*(\d+)", item)
        if not m:
            raise QgsProcessingException(tr(f"Bands: '{item}' is not like A=3."))
        name, band = m.group(1).upper(), int(m.group(2))
        if name not in bands:
            raise QgsProcessingException(tr(f"Bands: there is no layer {name} (layers: {', '.join(names)})."))
        if band < 1:
            raise QgsProcessingException(tr(f"Bands: band numbers start at 1 ({item})."))
        bands[name] = band
    return bands

"""``tilewise:bandmath``: a free expression over bands of layers, on the engine."""

import re

from qgis.core import QgsProcessingException, QgsProcessingParameterMultipleLayers, QgsProcessingParameterString

from ..core.errors import ExpressionError
from ..core.operations.expression import ELEMENTWISE, validate_expression
from .base import TilewiseAlgorithm, tr
from .swath import RefusesSwaths
from .compat import TYPE_RASTER
from .parameters import ScalingParameters

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]

BANDMATH_HELP = (
    "<p>A free expression over bands of layers, evaluated with numexpr tile by tile on every core, written as "
    "a Cloud-Optimized GeoTIFF. The layers are named <b>A</b>, <b>B</b>, <b>C</b>... in the order given; "
    "<i>Bands</i> picks each one's band (e.g. <code>A=3,B=4</code>; default band 1). To use two bands of one "
    "layer, list the layer twice. Layers on other grids or CRSs are aligned to the reference grid (default: "
    "A's).</p>"
    "<p>Grammar: numbers, + - * / ** %, comparisons (&lt; &lt;= &gt; &gt;= == !=), &amp; | ~ (with "
    "parentheses), <code>where(condition, a, b)</code> and the functions {functions}. Example: <code>where((B "
    "+ A) != 0, (B - A) / (B + A), -1)</code>. The expression is checked before any work: it can only compute "
    "with the layers (no other names, attributes or functions, so it cannot run other code or touch files), "
    "and constants too large for numexpr (e.g. <code>10**10**10</code>) or nesting deeper than 200 levels are "
    "refused.</p>"
    "<p>A pixel that is nodata in any layer used, or whose result is not finite, gets the output nodata. "
    "Integer inputs are converted to float first (no overflow).</p>"
)


class BandMath(RefusesSwaths, ScalingParameters, TilewiseAlgorithm):
    SWATH_REFUSED = ("LAYERS",)
    OPERATION = "bandmath"
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
        self.addParameter(QgsProcessingParameterString(self.EXPRESSION, tr("Expression, e.g. (B - A) / (B + A)")))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Band of each layer, e.g. A=3,B=4 (default 1)"), optional=True))
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

    def engine_params(self, parameters, context, feedback):
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
        return params


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

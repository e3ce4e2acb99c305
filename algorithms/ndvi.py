"""``tilewise:ndvi``: NDVI of a red and a near-infrared band, on the engine (its ``index`` operation)."""

from qgis.core import QgsProcessingParameterBand, QgsProcessingParameterRasterLayer

from .base import TilewiseAlgorithm, tr
from .parameters import ScalingParameters

NDVI_HELP = (
    "<p>NDVI = (NIR - RED) / (NIR + RED), tile by tile on every core, written as a Cloud-Optimized GeoTIFF "
    "(Float32, values in [-1, 1]).</p>"
    "<p>RED and NIR may be two bands of one multi-band layer (e.g. Landsat 7 bands 3 and 4) or bands of two "
    "layers, even on different grids or CRSs (aligned on the fly to the reference grid, by default RED's). "
    "Integer inputs are converted to float before any arithmetic (no overflow on uint16). <i>Scale</i> and "
    "<i>offset</i> turn scaled integers into reflectance first. A pixel that is nodata in either band, or has "
    "a zero denominator, gets the output nodata.</p>"
    "<p>For a time series of scenes, or other indices, use <i>Spectral index</i>.</p>"
)


class Ndvi(ScalingParameters, TilewiseAlgorithm):
    OPERATION = "index"
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

    def engine_params(self, parameters, context, feedback):
        red = self.raster_source(self.parameterAsRasterLayer(parameters, self.RED, context), self.RED)
        nir = self.raster_source(self.parameterAsRasterLayer(parameters, self.NIR, context), self.NIR)
        scene = {"RED": [red, self.parameterAsInt(parameters, self.RED_BAND, context)],
                 "NIR": [nir, self.parameterAsInt(parameters, self.NIR_BAND, context)]}
        params = {"scenes": [scene], "index": "ndvi"}
        params.update(self.scaling_params(parameters, context))
        params.update(self.with_reference(self.grid_params(parameters, context), red))
        params.update(self.output_params(parameters, context))
        return params

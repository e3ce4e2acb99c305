"""``tilewise:temporalmedian``: per-pixel composite of a time series of rasters."""

from qgis.core import (QgsProcessingParameterEnum, QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from ..core.vocabulary import STATISTICS as ENGINE_STATISTICS
from .base import TilewiseAlgorithm, tr
from .swath import SwathSeries
from .compat import TYPE_RASTER
from .parameters import MASK_HELP, MaskParameters, PERCENTILES_DEFAULT, nodata_parameter, numbers, \
    optional_number

STATISTICS = list(ENGINE_STATISTICS)

HELP = (
    "<p>Per-pixel statistic across a time series of rasters (e.g. Landsat/Sentinel scenes or monthly grids), "
    "computed tile by tile on every core and written as a <b>Cloud-Optimized GeoTIFF</b>.</p>"
    "<p><b>Inputs</b>: every band of the inputs is composited band by band (a stack of 6-band scenes gives a "
    "6-band composite); pick some with <i>Bands</i> (e.g. <code>1,2,3</code>). Each input's nodata is ignored "
    "(or the value in <i>Input nodata</i>).</p>"
    "<p><b>Statistic</b>: median (default), mean, min, max, std (population), count (valid observations) or "
    "percentile (one output band per percentile and input band, e.g. <code>25,50,75</code>; linear "
    "interpolation, as numpy). Pixels with no valid observation get the output nodata (count gives 0).</p>"
    "{mask_help}"
    "<p><b>Output grid</b>: the reference layer's (default: the first input), optionally changed by extent, CRS "
    "and cell size. Inputs on other grids or CRSs are warped on the fly.</p>"
    "<p><b>Swath scenes</b> (Sentinel-3 SAFE folders or their xfdumanifest.xml, netCDF on latitude/longitude "
    "grids) are gridded first onto <i>Extent</i> and <i>Cell size</i> (in <i>Target CRS</i>, default EPSG:4326) "
    "through their geolocation (as <code>gdalwarp -geoloc</code>), with <i>Variables</i> and flags masked by name "
    "(<i>Mask flags</i>), bits or the olci-wfr preset.</p>"
    "<p>The work runs in separate Python processes (numpy, numba, rasterio), so QGIS stays responsive; cancel "
    "stops them at once and writes nothing.</p>"
)


class TemporalComposite(SwathSeries, MaskParameters, TilewiseAlgorithm):
    OPERATION = "composite"
    INPUT = "INPUT"
    BANDS = "BANDS"
    STATISTIC = "STATISTIC"
    PERCENTILES = "PERCENTILES"
    INPUT_NODATA = "INPUT_NODATA"
    VARIABLES = "VARIABLES"
    MASK_FLAGS = "MASK_FLAGS"

    def name(self):
        return "temporalmedian"

    def displayName(self):
        return tr("Temporal composite (median, percentiles, mean...)")

    def shortHelpString(self):
        return tr(HELP.format(mask_help=MASK_HELP))

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, tr("Input rasters (the time series)"), TYPE_RASTER))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Bands to composite (e.g. 1,2,3; empty: all)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.STATISTIC, tr("Statistic"), STATISTICS, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.PERCENTILES, tr("Percentiles (with the percentile statistic)"), defaultValue=PERCENTILES_DEFAULT,
            optional=True))
        self.addParameter(nodata_parameter(self.INPUT_NODATA, "Input nodata (empty: each file's own)"))
        self.addParameter(QgsProcessingParameterString(
            self.VARIABLES, tr("Swath scenes: variables (e.g. CHL_NN; empty: all but flags and *_err)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MASK_FLAGS, tr("Swath scenes: flags to mask by name (e.g. LAND,CLOUD,INVALID)"), optional=True))
        self.add_mask_parameters()
        self.add_grid_parameters("default: the first input")
        self.add_output_parameters("Composite")

    def engine_params(self, parameters, context, feedback):
        statistic = STATISTICS[self.parameterAsEnum(parameters, self.STATISTIC, context)]
        params = {
            "inputs": self.series_sources(parameters, context),
            "statistic": statistic,
            "percentiles": numbers(self.parameterAsString(parameters, self.PERCENTILES, context), float,
                                   self.PERCENTILES) if statistic == "percentile" else [],
            "bands": numbers(self.parameterAsString(parameters, self.BANDS, context), int, self.BANDS) or None,
            "input_nodata": optional_number(self, parameters, self.INPUT_NODATA, context),
            **self.mask_params(parameters, context),
            **self.grid_params(parameters, context),
            **self.output_params(parameters, context),
            **{k: v for k, v in (("variables", self.parameterAsString(parameters, self.VARIABLES, context)),
                                 ("mask_flags", self.parameterAsString(parameters, self.MASK_FLAGS, context))) if v},
        }
        feedback.pushInfo(tr(f"{statistic} of {len(params['inputs'])} rasters"))
        return params

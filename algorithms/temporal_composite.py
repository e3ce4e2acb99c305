"""``tilewise:temporalmedian``: per-pixel composite of a time series of rasters."""

from qgis.core import (QgsProcessingParameterEnum, QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from ..core.vocabulary import COMPOSITE_STATISTICS, SPECTRAL_STATISTICS
from .base import TilewiseAlgorithm, tr
from .swath import SwathSeries
from .compat import NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_RASTER, advanced
from .parameters import MASK_HELP, OUTPUT_TYPES, GeoTiffDestination, MaskParameters, PERCENTILES_DEFAULT, \
    nodata_parameter, numbers, optional_number, with_decimals

#: The enum's statistics: the per-band ones, then (appended: models keep their indices) those that keep bands together.

HELP = (
    "<p>Per-pixel statistic across a time series of rasters (e.g. Landsat/Sentinel scenes or monthly grids), "
    "computed tile by tile on every core and written as a <b>Cloud-Optimized GeoTIFF</b>.</p>"
    "<p><b>Inputs</b>: every band of the inputs is composited band by band (a stack of 6-band scenes gives a "
    "6-band composite); pick some with <i>Bands</i> (e.g. <code>1,2,3</code>). Each input's nodata is ignored "
    "(or the value in <i>Input nodata</i>).</p>"
    "<p><b>Statistic</b>: median (default), mean, min, max, std (population), count (valid observations) or "
    "percentile (one output band per percentile and input band, e.g. <code>25,50,75</code>; linear "
    "interpolation, as numpy). Pixels with no valid observation get the output nodata (count gives 0).</p>"
    "<p><b>Keeping the spectrum</b>: a per-band median takes each band from another date. <b>geomedian</b> "
    "(geometric median: the multi-band point closest, in summed Euclidean distance, to the observations; "
    "Weiszfeld's iteration until a step is below <i>Tolerance</i> times its norm, at most <i>Maximum "
    "iterations</i>), <b>medoid</b> (the observation with the smallest summed distance to the others; equal "
    "sums: the earliest date) and <b>quality</b> (best-available pixel: the whole observation with the highest "
    "score) keep each pixel's bands together; the output has every input band, in order (float32 for "
    "geomedian, the inputs' type for medoid and quality unless an <i>Output data type</i> is chosen). An "
    "observation masked or nodata in any band is left out; distances and scores use each band's scale and "
    "offset (from the first input).</p>"
    "<p><b>Quality score</b>, one of: a <i>Quality band</i> (highest value wins); a <i>Quality expression</i> "
    "over the bands <code>B1</code>, <code>B2</code>... (numexpr, e.g. NDVI "
    "<code>(B8 - B4) / (B8 + B4)</code>); or weights: <i>Day-of-year weight</i> times the closeness of the "
    "date's day of year to the <i>Target date</i>'s (1 on it, 0 half a year away), <i>Cloud weight</i> times "
    "the distance in pixels to the nearest masked or nodata pixel of the same date divided by <i>Cloud "
    "distance</i> (at most 1), <i>Opacity weight</i> times 1 - the <i>Opacity band</i> (haze or aerosol "
    "opacity, 0 clear to 1). Dates come from the file names or metadata (or <i>Dates</i>).</p>"
    "<p><b>Extra outputs</b>: <i>MADs</i>, the median absolute deviations of the observations from the "
    "composite, Euclidean (EMAD), cosine (SMAD) and Bray-Curtis (BCMAD), as in GeoMAD; <i>Count</i> of "
    "complete observations; for medoid and quality, <i>Source date</i> of the chosen observation in days since "
    "1970-01-01 (the input's number for inputs without dates).</p>"
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
    TOLERANCE = "TOLERANCE"
    MAX_ITERATIONS = "MAX_ITERATIONS"
    QUALITY_BAND = "QUALITY_BAND"
    QUALITY_EXPRESSION = "QUALITY_EXPRESSION"
    TARGET_DATE = "TARGET_DATE"
    DOY_WEIGHT = "DOY_WEIGHT"
    CLOUD_WEIGHT = "CLOUD_WEIGHT"
    CLOUD_DISTANCE = "CLOUD_DISTANCE"
    OPACITY_BAND = "OPACITY_BAND"
    OPACITY_WEIGHT = "OPACITY_WEIGHT"
    DATES = "DATES"
    OUTPUT_MADS = "OUTPUT_MADS"
    OUTPUT_COUNT = "OUTPUT_COUNT"
    OUTPUT_SOURCE = "OUTPUT_SOURCE"
    #: The engine's types keep their indices; appended, and the default: each statistic's own type (float32;
    #: the inputs' type for medoid and quality).
    OUTPUT_TYPE_OPTIONS = OUTPUT_TYPES + ["default (float32; the inputs' type for medoid and quality)"]

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
            self.STATISTIC, tr("Statistic"), list(COMPOSITE_STATISTICS), defaultValue=0))
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
        self.parameterDefinition(self.OUTPUT_TYPE).setDefaultValue(len(OUTPUT_TYPES))
        self.add_spectral_parameters()

    def add_spectral_parameters(self):
        """geomedian, medoid and quality: after the older parameters and all optional, so that models and scripts
        saved before them keep their meaning and still validate."""
        # no default shown: QGIS's boxes would show 1e-7 as 0.000000 (empty means 1e-7, as for the engine)
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.TOLERANCE, tr("Tolerance (geomedian: relative step to stop at; empty: 1e-7)"), NUMBER_DOUBLE,
            optional=True, minValue=1e-15, maxValue=0.1)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.MAX_ITERATIONS, tr("Maximum iterations (geomedian)"), NUMBER_INTEGER, defaultValue=500,
            optional=True, minValue=1)))
        self.addParameter(QgsProcessingParameterNumber(
            self.QUALITY_BAND, tr("Quality band (quality: highest value wins)"), NUMBER_INTEGER, optional=True,
            minValue=1))
        self.addParameter(QgsProcessingParameterString(
            self.QUALITY_EXPRESSION, tr("Quality expression (quality: over B1, B2..., e.g. (B8 - B4) / (B8 + B4))"),
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.TARGET_DATE, tr("Target date (quality: its day of year, with the day-of-year weight)"),
            optional=True))
        for key, label in ((self.DOY_WEIGHT, "Day-of-year weight (quality)"),
                           (self.CLOUD_WEIGHT, "Cloud distance weight (quality)")):
            self.addParameter(with_decimals(QgsProcessingParameterNumber(
                key, tr(label), NUMBER_DOUBLE, defaultValue=0.0, optional=True, minValue=0.0), 2))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.CLOUD_DISTANCE, tr("Cloud distance scoring full, in pixels (quality)"), NUMBER_INTEGER,
            defaultValue=50, optional=True, minValue=1, maxValue=1000)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.OPACITY_BAND, tr("Opacity band (quality: 0 clear to 1 opaque)"), NUMBER_INTEGER, optional=True,
            minValue=1)))
        self.addParameter(advanced(with_decimals(QgsProcessingParameterNumber(
            self.OPACITY_WEIGHT, tr("Opacity weight (quality)"), NUMBER_DOUBLE, defaultValue=0.0, optional=True,
            minValue=0.0), 2)))
        self.addParameter(advanced(QgsProcessingParameterString(
            self.DATES, tr("Dates of inputs without a date in their name or metadata (one per input, in order)"),
            optional=True)))
        for key, label in ((self.OUTPUT_MADS, "MADs (EMAD, SMAD, BCMAD)"),
                           (self.OUTPUT_COUNT, "Count of complete observations"),
                           (self.OUTPUT_SOURCE, "Source date (medoid, quality: days since 1970-01-01)")):
            self.addParameter(GeoTiffDestination(key, tr(label), optional=True, createByDefault=False))

    def engine_params(self, parameters, context, feedback):
        statistic = COMPOSITE_STATISTICS[self.parameterAsEnum(parameters, self.STATISTIC, context)]
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
        if statistic in SPECTRAL_STATISTICS:
            params.update(self.spectral_params(statistic, parameters, context))
        feedback.pushInfo(tr(f"{statistic} of {len(params['inputs'])} rasters"))
        return params

    def spectral_params(self, statistic, parameters, context):
        """The engine's options of geomedian, medoid and quality (the quality ones only for quality)."""
        def number(key, kind):
            value = optional_number(self, parameters, key, context)
            return None if value is None else kind(value)

        def output(key):
            return self.parameterAsOutputLayer(parameters, key, context) if parameters.get(key) else None

        params = {"tolerance": number(self.TOLERANCE, float), "max_iterations": number(self.MAX_ITERATIONS, int),
                  "dates": self.parameterAsString(parameters, self.DATES, context) or None,
                  "output_mads": output(self.OUTPUT_MADS), "output_count": output(self.OUTPUT_COUNT),
                  "output_source": output(self.OUTPUT_SOURCE)}
        if statistic == "quality":
            params.update({
                "quality_band": number(self.QUALITY_BAND, int),
                "quality_expression": self.parameterAsString(parameters, self.QUALITY_EXPRESSION, context) or None,
                "target_date": self.parameterAsString(parameters, self.TARGET_DATE, context) or None,
                "doy_weight": number(self.DOY_WEIGHT, float), "cloud_weight": number(self.CLOUD_WEIGHT, float),
                "cloud_distance": number(self.CLOUD_DISTANCE, int), "opacity_band": number(self.OPACITY_BAND, int),
                "opacity_weight": number(self.OPACITY_WEIGHT, float)})
        return {k: v for k, v in params.items() if v is not None}

    def results(self, report, params, parameters, context, feedback):
        result = {self.OUTPUT: report["output"]}
        for key, name in ((self.OUTPUT_MADS, "output_mads"), (self.OUTPUT_COUNT, "output_count"),
                          (self.OUTPUT_SOURCE, "output_source")):
            if params.get(name):
                result[key] = params[name]
        return result

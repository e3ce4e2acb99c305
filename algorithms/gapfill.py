"""``tilewise:gapfill``: the gaps of a time series (clouds, nodata) filled in time, per pixel."""

import os

from qgis.core import (QgsProcessingOutputMultipleLayers, QgsProcessingParameterEnum,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterString)

from ..core.vocabulary import GAPFILL_EDGE_MODES, GAPFILL_METHODS
from .base import TilewiseAlgorithm, tr
from .swath import SwathSeries
from .compat import NUMBER_INTEGER, TYPE_RASTER
from .parameters import MASK_HELP, OUTPUT_TYPES, GeoTiffDestination, MaskParameters, nodata_parameter, optional_number

METHOD_LABELS = ["Linear in time (weighted by days)", "Nearest in time", "Previous valid value",
                 "Next valid value", "Seasonal: median of the same season in other years, then linear"]
EDGE_LABELS = ["Leave leading and trailing gaps empty", "Nearest valid value"]
MODES = ["One COG, one band per date", "One COG per date, in a folder"]

HELP = (
    "<p>Fills the gaps of a time series (masked clouds and shadows, nodata) per pixel, in time, and writes "
    "the filled series as a <b>Cloud-Optimized GeoTIFF</b> with one band per date (band names: the ISO "
    "dates), in date order; or one COG per date in a folder. Observed values pass through unchanged.</p>"
    "<p><b>Dates</b>: from the file names (YYYY-MM-DD, YYYYMMDD, YYYY_MM_DD, YYYY-MM, YYYY_MM; Sentinel, "
    "Landsat and MODIS product names are understood), else the metadata (acquisition date), else <i>Dates</i> "
    "(one per input, in input order; an entry for a file whose name or metadata gives another date is not "
    "used, with a warning). The input order does not matter.</p>"
    "<p><b>Method</b>: 0 linear in time, weighted by the days between the observations; 1 nearest in time "
    "(the earlier at a tie); 2 previous valid value; 3 next valid value; 4 seasonal: the median of the same "
    "season (<i>Season width</i> days, default 30, centred on the date) in other years (within <i>Years "
    "window</i>, 0 for all), then linear for what remains.</p>"
    "<p><b>Maximum gap</b> (days, 0 for no limit): a gap longer than this stays nodata. <b>Edges</b>: gaps "
    "before the first and after the last observation stay empty (0), or take the nearest valid value (1).</p>"
    "<p><b>Target dates</b>: empty for the input dates, or a regular series <code>start,step,end</code> (e.g. "
    "<code>2024-01-01,10,2024-12-31</code>, every 10 days), or a list of dates: the series is resampled in "
    "time.</p>"
    "<p><b>Flags</b> (optional): a uint8 COG with the same bands: 0 observed, 1 interpolated, 2 seasonal, 3 "
    "edge-filled, 255 still missing.</p>"
    "<p><b>Band</b>: the band to fill (default: the only band that is not the mask band).</p>"
    "{mask_help}"
    "<p><b>Swath scenes</b> (Sentinel-3 SAFE folders or their xfdumanifest.xml, netCDF on latitude/longitude "
    "grids) are gridded first onto <i>Extent</i> and <i>Cell size</i> (in <i>Target CRS</i>, default EPSG:4326) "
    "through their geolocation (as <code>gdalwarp -geoloc</code>): name the variable to fill in <i>Variables</i>; "
    "flags are masked by name (<i>Mask flags</i>), bits or the olci-wfr preset. Dates come from the product "
    "names.</p>"
    "<p>Memory is bounded by the tile size times the number of dates; the work runs in separate Python "
    "processes, so QGIS stays responsive, and cancel writes nothing.</p>"
)


class Gapfill(SwathSeries, MaskParameters, TilewiseAlgorithm):
    OPERATION = "gapfill"
    INPUT = "INPUT"
    BAND = "BAND"
    METHOD = "METHOD"
    MAX_GAP = "MAX_GAP"
    EDGES = "EDGES"
    SEASON_DAYS = "SEASON_DAYS"
    YEARS_WINDOW = "YEARS_WINDOW"
    TARGET_DATES = "TARGET_DATES"
    DATES = "DATES"
    INPUT_NODATA = "INPUT_NODATA"
    VARIABLES = "VARIABLES"
    MASK_FLAGS = "MASK_FLAGS"
    OUTPUT_MODE = "OUTPUT_MODE"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_LAYERS = "OUTPUT_LAYERS"
    OUTPUT_FLAGS = "OUTPUT_FLAGS"
    OUTPUT_TYPE_OPTIONS = ["float32 (float64 for 32- and 64-bit inputs)"] + OUTPUT_TYPES

    def name(self):
        return "gapfill"

    def displayName(self):
        return tr("Gap filling in time (linear, nearest, seasonal...)")

    def shortHelpString(self):
        return tr(HELP.format(mask_help=MASK_HELP))

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, tr("Input rasters (the time series, one per date)"), TYPE_RASTER))
        self.addParameter(QgsProcessingParameterNumber(
            self.BAND, tr("Band to fill (empty: the only band besides the mask band)"), NUMBER_INTEGER,
            optional=True, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, tr("Method"), METHOD_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_GAP, tr("Maximum gap to fill, in days (0: no limit)"), NUMBER_INTEGER, defaultValue=0,
            minValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.EDGES, tr("Edges"), EDGE_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEASON_DAYS, tr("Seasonal: season width in days"), NUMBER_INTEGER, defaultValue=30, minValue=1,
            maxValue=360))
        self.addParameter(QgsProcessingParameterNumber(
            self.YEARS_WINDOW, tr("Seasonal: years before and after to use (0: all)"), NUMBER_INTEGER,
            defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.TARGET_DATES, tr("Target dates (empty: the input dates; start,step days,end; or a list)"),
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.DATES, tr("Dates of inputs without a date in their name or metadata (one per input, in order)"),
            optional=True))
        self.addParameter(nodata_parameter(self.INPUT_NODATA, "Input nodata (empty: each file's own)"))
        self.addParameter(QgsProcessingParameterString(
            self.VARIABLES, tr("Swath scenes: the variable to fill (e.g. CHL_NN)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MASK_FLAGS, tr("Swath scenes: flags to mask by name (e.g. LAND,CLOUD,INVALID)"), optional=True))
        self.add_mask_parameters()
        self.add_grid_parameters("default: the first input")
        # last before the outputs, which the dialog shows at its end: the choice sits next to what it chooses
        self.addParameter(QgsProcessingParameterEnum(self.OUTPUT_MODE, tr("Write the filled series as"), MODES,
                                                       defaultValue=0))
        self.add_output_parameters("Filled series", optional=True)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, tr("Output folder (one COG per date)"), optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, tr("Filled layers, one per date")))
        self.addParameter(GeoTiffDestination(
            self.OUTPUT_FLAGS, tr("Flags (0 observed, 1 interpolated, 2 seasonal, 3 edge, 255 missing)"),
            optional=True, createByDefault=False))

    def engine_params(self, parameters, context, feedback):
        method = GAPFILL_METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        per_date = self.parameterAsEnum(parameters, self.OUTPUT_MODE, context) == 1
        flags = self.parameterAsOutputLayer(parameters, self.OUTPUT_FLAGS, context) \
            if parameters.get(self.OUTPUT_FLAGS) else None
        params = {
            "inputs": self.series_sources(parameters, context),
            "method": method,
            # whole days in the dialog, a float for the engine as ever (a model's 10.5 still passes)
            "max_gap": self.parameterAsDouble(parameters, self.MAX_GAP, context),
            "edges": GAPFILL_EDGE_MODES[self.parameterAsEnum(parameters, self.EDGES, context)],
            "season_days": self.parameterAsDouble(parameters, self.SEASON_DAYS, context),
            "years_window": self.parameterAsInt(parameters, self.YEARS_WINDOW, context),
            "target_dates": self.parameterAsString(parameters, self.TARGET_DATES, context) or None,
            "dates": self.parameterAsString(parameters, self.DATES, context) or None,
            "band": self.parameterAsInt(parameters, self.BAND, context)
            if parameters.get(self.BAND) not in (None, "") else None,
            "input_nodata": optional_number(self, parameters, self.INPUT_NODATA, context),
            "per_date": per_date,
            "flags": os.path.abspath(flags) if flags else None,
            **self.mask_params(parameters, context),
            **self.grid_params(parameters, context),
            **{k: v for k, v in (("variables", self.parameterAsString(parameters, self.VARIABLES, context)),
                                 ("mask_flags", self.parameterAsString(parameters, self.MASK_FLAGS, context))) if v},
        }
        params.update(self.output_params(parameters, context, require_output=not per_date))
        if per_date:
            folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
            if not folder:  # e.g. inside a model where only OUTPUT_LAYERS feeds the next step
                folder = self.parameterDefinition(self.OUTPUT_FOLDER).generateTemporaryDestination()
                feedback.pushInfo(tr(f"No output folder given: the per-date COGs go to {folder}"))
            params["output"] = os.path.abspath(folder)
        feedback.pushInfo(tr(f"Gap filling ({method}) of {len(params['inputs'])} rasters"))
        return params

    def results(self, report, params, parameters, context, feedback):
        outputs = list(report.get("outputs", [report["output"]]))
        if params["flags"]:
            outputs = outputs[:-1]
        result = {self.OUTPUT_LAYERS: outputs}
        if params["per_date"]:
            result[self.OUTPUT_FOLDER] = params["output"]
        else:
            result[self.OUTPUT] = report["output"]
        if params["flags"]:
            result[self.OUTPUT_FLAGS] = params["flags"]
        return result

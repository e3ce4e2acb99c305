"""``tilewise:chips``: image chips and fixed-size patches around each feature, one netCDF cube per feature."""

import os

from qgis.core import (QgsProcessing, QgsProcessingOutputMultipleLayers, QgsProcessingParameterCrs,
                       QgsProcessingParameterEnum, QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from ..core.vocabulary import CHIPS_BUFFER_UNITS, CHIPS_FORMATS, CHIPS_MODES, GAPFILL_EDGE_MODES, GAPFILL_METHODS
from .base import TilewiseAlgorithm, tr
from .compat import NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_RASTER
from .extract import Extract, zones_crs
from .swath import RefusesSwaths
from .parameters import CELL_SIZE_DECIMALS, MASK_HELP, RESAMPLING, MaskParameters, nodata_parameter, numbers, \
    optional_number, with_decimals

#: Enum orders are fixed (models store indices): new entries only ever go at the end.
MODE_LABELS = ["Box: the feature's bounding box grown by the buffer",
               "Patch: size x by size y pixels centred on the feature (the same for every feature)"]
BUFFER_UNIT_LABELS = ["Units of the output CRS", "Metres"]
GAPFILL_LABELS = ["None", "Linear in time (weighted by days)", "Nearest in time", "Previous valid value",
                  "Next valid value", "Seasonal: median of the same season in other years, then linear"]
ENGINE_GAPFILL = ("none",) + tuple(GAPFILL_METHODS)
EDGE_LABELS = ["Leave leading and trailing gaps empty", "Nearest valid value"]
FORMAT_LABELS = ["netCDF: one file per feature (time, y, x)", "GeoTIFF: one file per feature and date",
                 "Training set (patch mode): one netCDF of every patch (feature, time, y, x)"]

HELP = (
    "<p>Cuts the pixels around each feature of a vector layer out of a time series of rasters, every date and "
    "band, and writes <b>one netCDF cube per feature</b> (CF-1.8: dimensions time, y, x; one variable per band, "
    "named by the band's description; x/y coordinates in the output CRS, time as dates; the CRS as a "
    "grid_mapping variable; the feature's id and fields as global attributes): the arrays that time-series "
    "classifiers and deep-learning models train on.</p>"
    "<p><b>Mode</b>: 0 <i>box</i>, every pixel the feature's bounding box touches once grown by the "
    "<i>Buffer</i> (in the units of the output CRS, or metres); 1 <i>patch</i>, <i>Size x</i> by <i>Size y</i> "
    "pixels centred on the pixel that holds the feature (a point itself; lines and polygons: a point on them), "
    "the same size for every feature; past the rasters' edges it is nodata.</p>"
    "<p><b>Grid</b>: the first input's CRS and cell size, or the <i>Output CRS</i> and <i>Cell size</i> given "
    "(inputs on another grid are resampled with <i>Resampling</i>). All dates of a feature share its grid.</p>"
    "<p><b>Dates</b> come from the file names, else the metadata, else <i>Dates</i> (one per input); the time "
    "axis is in date order.</p>"
    "{mask_help}"
    "<p><b>Gap filling</b>: none, or a method of <i>Gap filling in time</i> (linear, nearest, previous, next, "
    "seasonal) applied along time inside each chip, with <i>Maximum gap</i> (days, 0: no limit) and "
    "<i>Edges</i>; the values equal that algorithm's on the same box, and its flags (0 observed, 1 "
    "interpolated, 2 seasonal, 3 edge-filled, 255 still missing) become a <code>&lt;band&gt;_flags</code> "
    "variable.</p>"
    "<p><b>Footprints</b> (optional): a layer of the chips' extents with the id, the file, the size and, per "
    "date, the fraction of pixels with a value in every band (<code>valid_d20240512</code>...).</p>"
    "<p><b>Format</b>: netCDF, or GeoTIFF: one file per feature and date (<code>&lt;id&gt;_YYYY-MM-DD.tif</code>, "
    "the bands; the gap-filling flags are in netCDF only), for QGIS users who want layers; or, in patch mode, a "
    "training set: one <code>chips.nc</code> holding every patch, dimensions feature, time, y, x, with "
    "<code>feature_id</code>, each patch's x/y coordinates and the features' fields (the labels).</p>"
    "<p><b>Output folder</b>: one file per feature, named by the <i>ID field</i> (characters other than "
    "letters, digits, <code>._-</code> become <code>_</code>; a repeated or empty id gets a number), listed in "
    "<i>Chips</i>. A file already in the folder is replaced only if an earlier chips run wrote it: the user's "
    "own files are never overwritten. No data is NaN. A feature outside every raster gets no file, with a "
    "warning naming it.</p>"
    "<p>Each window of the rasters is read once however many chips touch it, in separate Python processes, "
    "tile by tile (memory is bounded by the tile size times the dates and bands), so QGIS stays responsive. "
    "QGIS opens a chip as a layer: each band variable, one band per date.</p>"
)


class Chips(RefusesSwaths, MaskParameters, TilewiseAlgorithm):
    OPERATION = "chips"
    UNIT = "tiles"
    INPUT = "INPUT"
    BANDS = "BANDS"
    DATES = "DATES"
    INPUT_NODATA = "INPUT_NODATA"
    ZONES = "ZONES"
    ID_FIELD = "ID_FIELD"
    MODE = "MODE"
    BUFFER = "BUFFER"
    BUFFER_UNITS = "BUFFER_UNITS"
    SIZE_X = "SIZE_X"
    SIZE_Y = "SIZE_Y"
    GAPFILL = "GAPFILL"
    MAX_GAP = "MAX_GAP"
    EDGES = "EDGES"
    FORMAT = "FORMAT"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_LAYERS = "OUTPUT_LAYERS"
    OUTPUT_FOOTPRINTS = "OUTPUT_FOOTPRINTS"

    def name(self):
        return "chips"

    def displayName(self):
        return tr("Image chips and patches per feature (netCDF)")

    def group(self):
        return tr("Raster analysis")

    def groupId(self):
        return "rasteranalysis"

    def shortHelpString(self):
        return tr(HELP.format(mask_help=MASK_HELP))

    def initAlgorithm(self, config=None):
        # What must be given first (the series, the zones), then bands, masks, dates, id, mode, grid, output.
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, tr("Input rasters (the time series; VRTs of STAC search too)"), TYPE_RASTER))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ZONES, tr("Zones: points, lines or polygons"), [QgsProcessing.TypeVectorAnyGeometry]))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Bands (e.g. 1,2,3; empty: all but the mask band)"), optional=True))
        self.add_mask_parameters()
        self.addParameter(QgsProcessingParameterString(
            self.DATES, tr("Dates, one per raster (empty: from the file names or metadata)"), optional=True))
        self.addParameter(nodata_parameter(self.INPUT_NODATA, "Input nodata (empty: each file's own)"))
        self.addParameter(QgsProcessingParameterField(
            self.ID_FIELD, tr("ID field, names the files (empty: the feature id)"), parentLayerParameterName=self.ZONES,
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.MODE, tr("Mode"), MODE_LABELS, defaultValue=0))
        # no default shown: QGIS would show it with the 6 decimals a buffer in degrees needs
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.BUFFER, tr("Box: buffer around the bounding box (empty: none)"), NUMBER_DOUBLE, optional=True,
            minValue=0.0), CELL_SIZE_DECIMALS))
        self.addParameter(QgsProcessingParameterEnum(
            self.BUFFER_UNITS, tr("Box: buffer units"), BUFFER_UNIT_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.SIZE_X, tr("Patch: size x (columns)"), NUMBER_INTEGER, defaultValue=32, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.SIZE_Y, tr("Patch: size y (rows)"), NUMBER_INTEGER, defaultValue=32, minValue=1))
        self.addParameter(QgsProcessingParameterCrs(self.TARGET_CRS, tr("Output CRS (empty: the first input's)"),
                                                    optional=True))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.CELL_SIZE, tr("Output cell size (output CRS units; empty: the first input's)"), NUMBER_DOUBLE,
            optional=True, minValue=0.0), CELL_SIZE_DECIMALS))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESAMPLING, tr("Resampling of inputs on another grid"), RESAMPLING, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.GAPFILL, tr("Gap filling along time"), GAPFILL_LABELS,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_GAP, tr("Gap filling: maximum gap, in days (0: no limit)"), NUMBER_INTEGER, defaultValue=0,
            minValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.EDGES, tr("Gap filling: edges"), EDGE_LABELS,
                                                     defaultValue=0))
        self.add_tiling_parameters()
        self.add_run_parameters()
        self.addParameter(QgsProcessingParameterEnum(self.FORMAT, tr("Format"), FORMAT_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, tr("Output folder (a file per feature, or per feature and date)")))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS, tr("Chips, one file per feature")))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_FOOTPRINTS, tr("Footprints of the chips"), QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=False))

    def engine_params(self, parameters, context, feedback):
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        if not folder:  # e.g. inside a model where only OUTPUT_LAYERS feeds the next step
            folder = self.parameterDefinition(self.OUTPUT_FOLDER).generateTemporaryDestination()
        zones, layer = Extract.zones_file(self, parameters, context, feedback)
        source = self.parameterAsSource(parameters, self.ZONES, context)
        crs = source.sourceCrs() if source is not None else None
        grid = self.grid_params(parameters, context)
        mode = CHIPS_MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        params = {
            "inputs": self.layer_sources(parameters, self.INPUT, context),
            "zones": zones,
            "output": os.path.abspath(folder),
            "mode": mode,
            "layer": layer,
            "zones_crs": zones_crs(crs) if crs is not None and crs.isValid() else None,
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context) or None,
            "buffer": optional_number(self, parameters, self.BUFFER, context) or 0.0,
            "buffer_units": CHIPS_BUFFER_UNITS[self.parameterAsEnum(parameters, self.BUFFER_UNITS, context)],
            "size_x": self.parameterAsInt(parameters, self.SIZE_X, context),
            "size_y": self.parameterAsInt(parameters, self.SIZE_Y, context),
            "bands": numbers(self.parameterAsString(parameters, self.BANDS, context), int, self.BANDS) or None,
            "dates": self.parameterAsString(parameters, self.DATES, context) or None,
            "input_nodata": optional_number(self, parameters, self.INPUT_NODATA, context),
            "crs": grid["crs"],
            "cell_size": grid["cell_size"],
            "resampling": grid["resampling"],
            "gapfill": ENGINE_GAPFILL[self.parameterAsEnum(parameters, self.GAPFILL, context)],
            "max_gap": self.parameterAsDouble(parameters, self.MAX_GAP, context),
            "edges": GAPFILL_EDGE_MODES[self.parameterAsEnum(parameters, self.EDGES, context)],
            "footprints": None,
            "format": CHIPS_FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)],
            **self.mask_params(parameters, context),
            **self.run_params(parameters, context),
        }
        if parameters.get(self.OUTPUT_FOOTPRINTS):
            footprints = self.parameterAsOutputLayer(parameters, self.OUTPUT_FOOTPRINTS, context)
            params["footprints"] = os.path.abspath(footprints) if footprints else None
        feedback.pushInfo(tr(f"Chips ({mode}) of the zones in {len(params['inputs'])} rasters into {folder}"))
        return params

    def results(self, report, params, parameters, context, feedback):
        files = list(report.get("outputs", []))
        result = {self.OUTPUT_FOLDER: params["output"]}
        if params["footprints"]:
            result[self.OUTPUT_FOOTPRINTS] = files.pop()
        result[self.OUTPUT_LAYERS] = files
        feedback.pushInfo(tr(f"{len(files)} chips written to {params['output']}"))
        return result

"""``tilewise:extract``: time series of statistics at points and polygons, every raster in one run."""

import os

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from ..core.vocabulary import EXTRACT_COVERAGES, EXTRACT_GEOMETRY_MODES, EXTRACT_LAYOUTS, EXTRACT_POINT_METHODS, \
    EXTRACT_STATISTICS
from .base import TilewiseAlgorithm, tr
from .swath import SwathSeries
from .compat import NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_RASTER
from .parameters import FRACTION_DECIMALS, PERCENTILES_DEFAULT, MaskParameters, ScalingParameters, numbers, \
    with_decimals

#: Enum orders are fixed (models store indices): new entries only ever go at the end.
COVERAGES = ["centre: pixels whose centre is inside (as QGIS's zonal statistics)", "all touched",
             "fractional: weighted by the covered fraction (as exactextract)"]
POINT_METHODS = ["nearest: the pixel that contains the point", "bilinear (as GDAL)"]
GEOMETRY_MODES = ["zonal statistics", "each vertex as a point"]
LAYOUT_LABELS = ["wide: the features with one field per date x band x statistic",
           "long: one row per feature x raster x band"]

#: Formats the engine writes that the zones layer can be read from directly (else a temporary GeoPackage).
ZONE_FORMATS = ["gpkg", "shp", "geojson", "json", "fgb", "sqlite", "gml", "kml", "tab", "csv"]

HELP = (
    "<p>Values and statistics of every feature of a vector layer in every raster of a time series, in one run "
    "on every core: crop monitoring, water quality, field trials.</p>"
    "<p><b>Points</b> (and, with <i>Geometry mode</i> vertices, the vertices of lines and polygons): the "
    "pixel that contains the point (nearest) or GDAL's bilinear interpolation; <i>Window</i> n reduces the n "
    "x n pixels around each point with the statistics.</p>"
    "<p><b>Polygons and lines</b>: the <i>Statistics</i> of their pixels. <i>Coverage</i>: centre (the pixels "
    "whose centre is inside, as <code>native:zonalstatisticsfb</code>), all touched, or fractional (each "
    "pixel weighted by its covered fraction, as exactextract). Below the <i>Minimum valid fraction</i> of a "
    "feature's footprint with data, its statistics are null.</p>"
    "<p><b>Dates</b> come from the file names (YYYY-MM-DD, YYYYMMDD, YYYY_MM_DD, YYYY-MM, YYYY_MM), else the "
    "metadata (TIFFTAG_DATETIME, ACQUISITIONDATETIME), else <i>Dates</i> (one per raster; given, they win), "
    "else the rasters have none; rows come in date order.</p>"
    "<p><b>Output</b>: <i>Layout</i> wide gives the features with one field per date x band x statistic (like "
    "zonal statistics); long gives a table of one row per feature x raster x band with the id, "
    "<code>source</code>, <code>date</code>, <code>band</code>, <code>value</code> (points) or one column per "
    "statistic and <code>n_valid</code>. No data is NULL, never a number. GeoPackage or CSV (Parquet is "
    "written too, but QGIS 3.22 cannot open it). <i>Plot</i>: an HTML chart of each feature's series.</p>"
    "<p><b>Swath scenes</b> (Sentinel-3 OLCI/SLSTR SAFE folders, netCDF on 2-D latitude/longitude grids): add "
    "each scene's <code>xfdumanifest.xml</code>, its .SEN3 folder or its netCDF files as the input series. A "
    "point takes the nearest pixel by great-circle distance, within <i>Maximum distance</i> (default the "
    "pixel diagonal; farther, it is outside the swath and its values are NULL); polygons the pixels whose "
    "centres are inside. Rows add the swath <code>row</code>, <code>col</code>, <code>distance_m</code>, "
    "<code>pixel_lat</code>, <code>pixel_lon</code> and a <code>reason</code> for NULLs. <i>Variables</i> "
    "(e.g. <code>Oa08_reflectance,CHL_NN</code>; default all but flags and *_err); flags by name in <i>Mask "
    "flags</i> (e.g. <code>LAND,CLOUD,INVALID</code>), <i>Mask bits</i> or the olci-wfr preset, on the "
    "<i>Flag variable</i> (default WQSF). Dates from the product name.</p>"
    "<p>Zones in any CRS are reprojected to each raster's; rasters may be on different grids. The work runs "
    "in separate Python processes, tile by tile (each tile read once per raster, features spanning tiles "
    "merged exactly), so QGIS stays responsive; cancel stops them.</p>"
)


def zones_crs(crs):
    """The zones' CRS as QGIS has it (it may differ from the file's: a CRS set on a shapefile without .prj):
    its EPSG (or ESRI, IGNF) code, else its WKT."""
    authid = crs.authid()
    return authid if authid.upper().startswith(("EPSG:", "ESRI:", "IGNF:")) else crs.toWkt()


class Extract(SwathSeries, MaskParameters, ScalingParameters, TilewiseAlgorithm):
    OPERATION = "extract"
    UNIT = "tiles"
    INPUT = "INPUT"
    BANDS = "BANDS"
    ZONES = "ZONES"
    ID_FIELD = "ID_FIELD"
    POINT_METHOD = "POINT_METHOD"
    GEOMETRY_MODE = "GEOMETRY_MODE"
    WINDOW = "WINDOW"
    STATISTICS = "STATISTICS"
    PERCENTILES = "PERCENTILES"
    COVERAGE = "COVERAGE"
    MIN_VALID_FRACTION = "MIN_VALID_FRACTION"
    DATES = "DATES"
    LAYOUT = "LAYOUT"
    OUTPUT = "OUTPUT"
    OUTPUT_PLOT = "OUTPUT_PLOT"
    VARIABLES = "VARIABLES"
    MAX_DISTANCE = "MAX_DISTANCE"
    FLAG_VARIABLE = "FLAG_VARIABLE"
    MASK_FLAGS = "MASK_FLAGS"
    ANGLES = "ANGLES"

    def name(self):
        return "extract"

    def displayName(self):
        return tr("Extract time series at points and polygons")

    def group(self):
        return tr("Raster analysis")

    def groupId(self):
        return "rasteranalysis"

    def shortHelpString(self):
        return tr(HELP)

    def initAlgorithm(self, config=None):
        # What must be given first (rasters, zones), then what to compute and how, then the optional groups.
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, tr("Input rasters (the time series)"), TYPE_RASTER))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ZONES, tr("Zones: points, lines or polygons"), [QgsProcessing.TypeVectorAnyGeometry]))
        self.addParameter(QgsProcessingParameterField(
            self.ID_FIELD, tr("ID field (empty: the feature id)"), parentLayerParameterName=self.ZONES,
            optional=True))
        statistics = QgsProcessingParameterEnum(self.STATISTICS, tr("Statistics"), list(EXTRACT_STATISTICS),
                                                allowMultiple=True, defaultValue=[0])
        # every statistic as a check box, the chosen ones ticked (not "1 options selected")
        statistics.setMetadata({"widget_wrapper": {"useCheckBoxes": True, "columns": 4}})
        self.addParameter(statistics)
        self.addParameter(QgsProcessingParameterString(
            self.PERCENTILES, tr("Percentiles (with the percentiles statistic)"), defaultValue=PERCENTILES_DEFAULT,
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Bands (e.g. 1,2; empty: all but the mask band)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.POINT_METHOD, tr("Point method"), POINT_METHODS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.WINDOW, tr("Window around points (n x n pixels, reduced with the statistics)"), NUMBER_INTEGER,
            defaultValue=1, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(
            self.GEOMETRY_MODE, tr("Geometry mode of lines and polygons"), GEOMETRY_MODES, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.COVERAGE, tr("Coverage of polygon pixels"), COVERAGES, defaultValue=0))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.MIN_VALID_FRACTION, tr("Minimum valid fraction of a feature's footprint (else null)"),
            NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0, maxValue=1.0), FRACTION_DECIMALS))
        self.addParameter(QgsProcessingParameterString(
            self.DATES, tr("Dates, one per raster (empty: from the file names or metadata)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.LAYOUT, tr("Layout"), LAYOUT_LABELS, defaultValue=0))
        self.add_swath_parameters()
        self.add_scaling_parameters()
        self.add_mask_parameters()
        self.add_tiling_parameters()
        self.add_run_parameters()
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, tr("Time series"), QgsProcessing.TypeVectorAnyGeometry))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_PLOT, tr("Plot of each feature's series"), tr("HTML files (*.html)"), optional=True,
            createByDefault=False))

    def add_swath_parameters(self):
        """Swath scenes only (SAFE folders, netCDF on latitude/longitude grids)."""
        self.addParameter(QgsProcessingParameterString(
            self.VARIABLES, tr("Swath: variables (e.g. Oa08_reflectance,CHL_NN; empty: all but flags and *_err)"),
            optional=True))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.MAX_DISTANCE, tr("Swath: maximum distance from a point to its pixel, metres (0: the pixel "
                                  "diagonal)"), NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0, optional=True), 1))
        self.addParameter(QgsProcessingParameterString(
            self.FLAG_VARIABLE, tr("Swath: flag variable (empty: the product's own, e.g. WQSF)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MASK_FLAGS, tr("Swath: flags to mask by name (e.g. LAND,CLOUD,INVALID)"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.ANGLES, tr("Swath: add the sun and view angles at each point (from the tie points)"),
            defaultValue=False, optional=True))

    def swath_params(self, parameters, context):
        """The swath options that were set (a raster run refuses them)."""
        given = {
            "variables": self.parameterAsString(parameters, self.VARIABLES, context) or None,
            "max_distance": self.parameterAsDouble(parameters, self.MAX_DISTANCE, context) or None
            if parameters.get(self.MAX_DISTANCE) not in (None, "") else None,
            "flag_variable": self.parameterAsString(parameters, self.FLAG_VARIABLE, context) or None,
            "mask_flags": self.parameterAsString(parameters, self.MASK_FLAGS, context) or None,
            "angles": True if self.parameterAsBool(parameters, self.ANGLES, context) else None,
        }
        return {k: v for k, v in given.items() if v is not None}

    def hasHtmlOutputs(self):  # noqa: N802 (QGIS's name)
        """QGIS's dialog asks this after every run and then logs "HTML output has been generated by this
        algorithm" (QgsProcessingAlgorithm's answer: an HTML output is declared, whether or not the run wrote
        one). The plot is optional, so say no: when a plot is made, :meth:`results` says so itself, and the
        dialog still lists the returned plot in the Results Viewer."""
        return False

    def engine_params(self, parameters, context, feedback):
        inputs = self.series_sources(parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not output:
            raise QgsProcessingException(tr("No output table was given."))
        plot = self.parameterAsFileOutput(parameters, self.OUTPUT_PLOT, context) or None
        stats = [EXTRACT_STATISTICS[i] for i in self.parameterAsEnums(parameters, self.STATISTICS, context)]
        if not stats:
            raise QgsProcessingException(tr("Choose at least one statistic."))
        scaling = self.scaling_params(parameters, context)
        if scaling["scale"] == 1.0 and scaling["offset"] == 0.0:
            scaling.update(scale=None, offset=None)          # the values as they are, in their own type
        zones, layer = self.zones_file(parameters, context, feedback)
        source = self.parameterAsSource(parameters, self.ZONES, context)
        crs = source.sourceCrs() if source is not None else None
        params = {
            "inputs": inputs,
            "zones": zones,
            "layer": layer,
            "zones_crs": zones_crs(crs) if crs is not None and crs.isValid() else None,
            "output": os.path.abspath(output),
            "statistics": stats,
            "percentiles": numbers(self.parameterAsString(parameters, self.PERCENTILES, context), float,
                                   self.PERCENTILES) if "percentiles" in stats else [],
            "coverage": EXTRACT_COVERAGES[self.parameterAsEnum(parameters, self.COVERAGE, context)],
            "point_method": EXTRACT_POINT_METHODS[self.parameterAsEnum(parameters, self.POINT_METHOD, context)],
            "geometry_mode": EXTRACT_GEOMETRY_MODES[self.parameterAsEnum(parameters, self.GEOMETRY_MODE, context)],
            "window": self.parameterAsInt(parameters, self.WINDOW, context),
            "min_valid_fraction": self.parameterAsDouble(parameters, self.MIN_VALID_FRACTION, context),
            "bands": numbers(self.parameterAsString(parameters, self.BANDS, context), int, self.BANDS) or None,
            "dates": self.parameterAsString(parameters, self.DATES, context) or None,
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context) or None,
            "layout": EXTRACT_LAYOUTS[self.parameterAsEnum(parameters, self.LAYOUT, context)],
            "output_plot": os.path.abspath(plot) if plot else None,
            **scaling,
            **self.mask_params(parameters, context),
            **self.swath_params(parameters, context),
            **self.run_params(parameters, context),
        }
        feedback.pushInfo(tr(f"{', '.join(stats)} of the zones in {len(inputs)} rasters"))
        return params

    def zones_file(self, parameters, context, feedback):
        """The zones as a file the engine can read: the layer's own file, or (a memory layer, another
        provider, selected features only, a filter) a temporary GeoPackage QGIS writes first."""
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.ZONES, context, ZONE_FORMATS, "gpkg", feedback)
        if not path:
            raise QgsProcessingException(tr("The zones layer could not be read or written to a file."))
        return os.path.abspath(path), layer or None

    def results(self, report, params, parameters, context, feedback):
        feedback.pushInfo(tr(f"{report.get('rows', 0)} rows written to {report['output']}"))
        out = {self.OUTPUT: report["output"]}
        if params.get("output_plot"):
            out[self.OUTPUT_PLOT] = params["output_plot"]
            feedback.pushInfo(tr(f"Plot of each feature's series: {params['output_plot']} (open it in a web "
                                 "browser, or from Processing ▸ Results Viewer)"))
        return out

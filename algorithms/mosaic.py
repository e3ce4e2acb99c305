"""``tilewise:mosaic``: many rasters (layers, or a folder / glob pattern of files) into one COG."""

import glob
import os

from qgis.core import (QgsProcessingException, QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterString)

from ..core.vocabulary import OVERLAP_RULES, OVERVIEW_RESAMPLINGS as ENGINE_OVERVIEW_RESAMPLINGS
from .base import TilewiseAlgorithm, tr
from .swath import SwathSeries
from .compat import FILE_FOLDER, TYPE_RASTER, advanced
from .parameters import OUTPUT_TYPES, nodata_parameter, optional_number

OVERLAPS = list(OVERLAP_RULES)
OVERVIEW_RESAMPLINGS = list(ENGINE_OVERVIEW_RESAMPLINGS)

HELP = (
    "<p>Mosaics many rasters into one <b>Cloud-Optimized GeoTIFF</b> with overviews, keeping all bands.</p>"
    "<p><b>Inputs</b>: layers, and/or a <i>folder</i> with a file <i>pattern</i> (e.g. <code>*.tif</code>, or "
    "<code>**/*.tif</code> for sub-folders): thousands of files work without listing them here, and are "
    "opened a few at a time.</p>"
    "<p><b>Output grid</b>: by default the union of the inputs at the first input's resolution, on its pixel "
    "lattice; or the reference layer's grid, an extent, a CRS and a cell size. Inputs in other CRSs are "
    "warped on the fly.</p>"
    "<p><b>Overlap</b>: where several inputs cover a pixel: first (the earliest input in the list wins), "
    "last, min, max, mean or median of the valid values (nodata ignored).</p>"
    "<p>When every input already lies on the output grid and the rule is first/last, GDAL builds the mosaic "
    "directly (VRT + COG driver); otherwise Tilewise computes it tile by tile on every core.</p>"
    "<p><b>Swath scenes</b> (Sentinel-3 SAFE folders or their xfdumanifest.xml, netCDF on latitude/longitude "
    "grids) as <i>Input layers</i> are gridded first onto <i>Extent</i> and <i>Cell size</i> (in <i>Target "
    "CRS</i>, default EPSG:4326) through their geolocation, with <i>Variables</i> and flags masked by name.</p>"
)


class Mosaic(SwathSeries, TilewiseAlgorithm):
    OPERATION = "mosaic"
    INPUT = "INPUT"
    INPUT_FOLDER = "INPUT_FOLDER"
    PATTERN = "PATTERN"
    OVERLAP = "OVERLAP"
    INPUT_NODATA = "INPUT_NODATA"
    VARIABLES = "VARIABLES"
    MASK_FLAGS = "MASK_FLAGS"
    OVERVIEW_RESAMPLING = "OVERVIEW_RESAMPLING"
    OUTPUT_TYPE_OPTIONS = ["same as inputs"] + OUTPUT_TYPES
    OUTPUT_NODATA_HELP = "Output nodata (empty: the inputs')"

    def name(self):
        return "mosaic"

    def displayName(self):
        return tr("Mosaic to Cloud-Optimized GeoTIFF")

    def shortHelpString(self):
        return tr(HELP)

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, tr("Input layers"), TYPE_RASTER, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT_FOLDER, tr("Or a folder of rasters"), behavior=FILE_FOLDER, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.PATTERN, tr("File pattern in the folder (e.g. *.tif, **/*.tif)"), defaultValue="*.tif"))
        self.addParameter(QgsProcessingParameterEnum(
            self.OVERLAP, tr("Where inputs overlap"), OVERLAPS, defaultValue=0))
        self.addParameter(nodata_parameter(self.INPUT_NODATA, "Input nodata (empty: each file's own)"))
        self.addParameter(QgsProcessingParameterString(
            self.VARIABLES, tr("Swath scenes: variables (e.g. CHL_NN; empty: all but flags and *_err)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MASK_FLAGS, tr("Swath scenes: flags to mask by name (e.g. LAND,CLOUD,INVALID)"), optional=True))
        self.add_grid_parameters("default: the union of the inputs")
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.OVERVIEW_RESAMPLING, tr("Overview resampling"), OVERVIEW_RESAMPLINGS, defaultValue=0)))
        self.add_output_parameters("Mosaic")

    def engine_params(self, parameters, context, feedback):
        sources = self.series_sources(parameters, context) if self.swath_series(parameters) else \
            self.layer_sources(parameters, self.INPUT, context, required=False)
        folder = self.parameterAsFile(parameters, self.INPUT_FOLDER, context)
        if folder:
            sources += folder_files(folder, self.parameterAsString(parameters, self.PATTERN, context))
        if not sources:
            raise QgsProcessingException(tr("No input rasters: select layers or a folder of rasters."))
        params = {
            "inputs": sources,
            "overlap": OVERLAPS[self.parameterAsEnum(parameters, self.OVERLAP, context)],
            "input_nodata": optional_number(self, parameters, self.INPUT_NODATA, context),
            "overview_resampling": OVERVIEW_RESAMPLINGS[
                self.parameterAsEnum(parameters, self.OVERVIEW_RESAMPLING, context)],
        }
        params.update(self.grid_params(parameters, context))
        params.update(self.output_params(parameters, context))
        params.update({k: v for k, v in (("variables", self.parameterAsString(parameters, self.VARIABLES, context)),
                                         ("mask_flags", self.parameterAsString(parameters, self.MASK_FLAGS, context)))
                       if v})
        feedback.pushInfo(tr(f"Mosaic of {len(sources)} rasters, overlap rule {params['overlap']}"))
        return params


def folder_files(folder, pattern):
    """The files in ``folder`` matching ``pattern`` (``**`` recurses), sorted; an error if none."""
    if not os.path.isdir(folder):
        raise QgsProcessingException(tr(f"Input folder not found: {folder}"))
    files = sorted(f for f in glob.glob(os.path.join(glob.escape(folder), pattern or "*.tif"), recursive=True)
                   if os.path.isfile(f))
    if not files:
        raise QgsProcessingException(tr(f"No file matches {pattern} in {folder}."))
    return [os.path.abspath(f) for f in files]

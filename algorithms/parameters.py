"""The parameter groups every Tilewise algorithm shares, defined once, with their value lists from the
engine's vocabulary (:mod:`tilewise.core.vocabulary`): every output type, resampling method and
compression the engine accepts is offered, in the same order everywhere (models store enum indices,
so the lists only ever grow at the end).

Each group is a mixin of a :class:`~qgis.core.QgsProcessingAlgorithm`: ``add_*`` declares its
parameters, ``*_params`` turns their values into the engine's keywords (those of
:mod:`tilewise.core.options`, and the operation's own).
"""

import os

from qgis.core import (QgsProcessingException, QgsProcessingParameterBoolean, QgsProcessingParameterCrs,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.vocabulary import COMPRESSIONS as ENGINE_COMPRESSIONS, DEFAULT_PERCENTILES, MASK_PRESETS, \
    OUTPUT_TYPES as ENGINE_OUTPUT_TYPES, RESAMPLING_METHODS
from ..core.masks import PRESETS
from .compat import FLAG_OPTIONAL, NUMBER_DOUBLE, NUMBER_INTEGER, TYPE_RASTER, advanced
from .settings import LOCAL, configured_scheduler

RESAMPLING = list(RESAMPLING_METHODS)
OUTPUT_TYPES = list(ENGINE_OUTPUT_TYPES)
COMPRESSIONS = list(ENGINE_COMPRESSIONS)
#: The mask presets' enum labels, in the engine's fixed order (0 none, 1 s2-scl, 2 landsat-c2-qa).
MASK_PRESET_LABELS = [PRESETS[name].label for name in MASK_PRESETS]


def tr(text):
    return QCoreApplication.translate("Tilewise", text)


def optional_number(alg, parameters, name, context):
    """A number parameter's value, or None when it is empty."""
    if parameters.get(name) in (None, ""):
        return None
    return alg.parameterAsDouble(parameters, name, context)


#: The percentiles' default, the same in every algorithm: "25,50,75".
PERCENTILES_DEFAULT = ",".join(f"{q:g}" for q in DEFAULT_PERCENTILES)
#: Decimals the dialog shows (QGIS shows 6 by default: 30.000000): what each kind of value needs.
NODATA_DECIMALS = 2        # nodata values are whole in practice; a rare -0.5 still fits
#: Landsat Collection 2's scale factors, 0.0000275 and 0.00341802, need 8 (6 rounded 0.0000275 to 0.000028).
SCALE_DECIMALS = 8
OFFSET_DECIMALS = 4
FRACTION_DECIMALS = 2
#: Cell sizes in degrees (0.00025 is about 27 m).
CELL_SIZE_DECIMALS = 6


def with_decimals(param, places):
    """``param`` (a double) shown with ``places`` decimals in the dialog (the widget reads its metadata)."""
    metadata = dict(param.metadata())
    wrapper = dict(metadata.get("widget_wrapper") or {})
    wrapper["decimals"] = places
    metadata["widget_wrapper"] = wrapper
    param.setMetadata(metadata)
    return param


def nodata_parameter(name, description):
    """An optional nodata value (empty: none given)."""
    return with_decimals(QgsProcessingParameterNumber(name, tr(description), NUMBER_DOUBLE, optional=True),
                         NODATA_DECIMALS)


def numbers(text, kind, name):
    """``"1,2;3"`` -> ``[1, 2, 3]`` (``kind`` of each), or an error naming parameter ``name``."""
    text = (text or "").replace(";", ",").strip()
    if not text:
        return []
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise QgsProcessingException(tr(f"{name}: expected comma-separated numbers, got '{text}'.")) from None


class GeoTiffDestination(QgsProcessingParameterRasterDestination):
    """The output raster: the engine writes Cloud-Optimized GeoTIFFs only, so the file dialog
    offers GeoTIFF names only (QGIS would add "All files")."""

    FILTER = "GeoTIFF (*.tif *.tiff *.TIF *.TIFF)"

    def clone(self):
        copy = GeoTiffDestination(self.name(), self.description(), self.defaultValue(),
                                  bool(self.flags() & FLAG_OPTIONAL),
                                  self.createByDefault())
        copy.setFlags(self.flags())
        return copy

    def createFileFilter(self):  # noqa: N802 (QGIS's name)
        return tr(self.FILTER)

    def defaultFileExtension(self):  # noqa: N802
        return "tif"

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802
        return ["tif", "tiff"]


class GridParameters:
    """The output grid: reference layer, extent, CRS, cell size, resampling
    (:class:`~tilewise.core.options.GridOptions`)."""

    REFERENCE_LAYER = "REFERENCE_LAYER"
    EXTENT = "EXTENT"
    TARGET_CRS = "TARGET_CRS"
    CELL_SIZE = "CELL_SIZE"
    RESAMPLING = "RESAMPLING"

    def add_grid_parameters(self, reference_help):
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_LAYER, tr(f"Reference layer for the output grid ({reference_help})"), optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, tr("Output extent"), optional=True))
        self.addParameter(QgsProcessingParameterCrs(self.TARGET_CRS, tr("Output CRS"), optional=True))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.CELL_SIZE, tr("Output cell size (target CRS units; empty: the reference's)"), NUMBER_DOUBLE,
            optional=True, minValue=0.0), CELL_SIZE_DECIMALS))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESAMPLING, tr("Resampling of inputs on another grid"), RESAMPLING, defaultValue=0))

    def grid_params(self, parameters, context):
        reference = self.parameterAsRasterLayer(parameters, self.REFERENCE_LAYER, context)
        crs = self.parameterAsCrs(parameters, self.TARGET_CRS, context)
        target = crs if crs.isValid() else (reference.crs() if reference else None)
        extent = None
        if parameters.get(self.EXTENT):
            rect = (self.parameterAsExtent(parameters, self.EXTENT, context, target)
                    if target is not None else self.parameterAsExtent(parameters, self.EXTENT, context))
            if not rect.isNull() and not rect.isEmpty():
                extent = [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]
        cell = optional_number(self, parameters, self.CELL_SIZE, context)
        return {
            "reference": self.raster_source(reference, "reference layer") if reference else None,
            "extent": extent,
            "crs": (crs.authid() or crs.toWkt()) if crs.isValid() else None,
            "cell_size": cell or None,
            "resampling": RESAMPLING[self.parameterAsEnum(parameters, self.RESAMPLING, context)],
        }


class RunParameters:
    """Where and how the tiles run: tile size, workers, a Dask cluster, resume
    (:class:`~tilewise.core.options.RunOptions`)."""

    TILE_SIZE = "TILE_SIZE"
    WORKERS = "WORKERS"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    RESUME = "RESUME"

    def add_tiling_parameters(self):
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.TILE_SIZE, tr("Tile size in pixels (0: from a memory budget)"), NUMBER_INTEGER,
            defaultValue=0, minValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.WORKERS, tr("Worker processes (0: all cores)"), NUMBER_INTEGER, defaultValue=0, minValue=0)))

    def add_run_parameters(self):
        """Where the tiles run (a Dask cluster) and resuming an interrupted run."""
        # No default value: an empty value means the Processing setting as it is when the algorithm
        # runs (a default copied here would keep the setting's value at the time QGIS started).
        self.addParameter(advanced(QgsProcessingParameterString(
            self.DASK_SCHEDULER, tr("Dask scheduler address, e.g. tcp://host:8786 (empty: the Processing "
                                    f"setting; '{LOCAL}': this machine)"), optional=True)))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.RESUME, tr("Resume an interrupted run (reuse its finished tiles; keep them if this run stops too)"),
            defaultValue=False, optional=True)))   # optional: models saved before it existed stay valid

    def run_params(self, parameters, context):
        """``tile_size``, ``workers``, ``scheduler`` (a Dask address, or None for this machine) and ``resume``."""
        scheduler = (self.parameterAsString(parameters, self.DASK_SCHEDULER, context) or "").strip()
        if not scheduler:
            scheduler = configured_scheduler()
        params = {"scheduler": None if scheduler.lower() in ("", LOCAL) else scheduler,
                  "resume": self.parameterAsBoolean(parameters, self.RESUME, context)}
        if self.parameterDefinition(self.TILE_SIZE) is not None:
            params["tile_size"] = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
            params["workers"] = self.parameterAsInt(parameters, self.WORKERS, context) or None
        return params


class OutputParameters(RunParameters):
    """The output COG (type, nodata, compression, its size check) and the run
    (:class:`~tilewise.core.options.OutputOptions`)."""

    OUTPUT_NODATA = "OUTPUT_NODATA"
    OUTPUT_TYPE = "OUTPUT_TYPE"
    COMPRESSION = "COMPRESSION"
    OVERVIEWS = "OVERVIEWS"
    ALLOW_LARGE = "ALLOW_LARGE"
    OUTPUT = "OUTPUT"
    #: The output type enum: the engine's types (a subclass may put a choice like "same as inputs" first).
    OUTPUT_TYPE_OPTIONS = OUTPUT_TYPES
    OUTPUT_NODATA_HELP = "Output nodata (empty: -9999, or the type's maximum if unsigned)"

    def add_output_parameters(self, output_label, optional=False):
        self.addParameter(advanced(nodata_parameter(self.OUTPUT_NODATA, self.OUTPUT_NODATA_HELP)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.OUTPUT_TYPE, tr("Output data type"), self.OUTPUT_TYPE_OPTIONS, defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.COMPRESSION, tr("Compression"), COMPRESSIONS, defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.OVERVIEWS, tr("Build overviews (off: a COG without overviews, faster to write; slower to "
                               "view zoomed out)"), defaultValue=True, optional=True)))
        self.add_tiling_parameters()
        self.add_run_parameters()
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.ALLOW_LARGE, tr("Allow an output above 16 GiB before compression (usually a mistake: an input "
                                 "far away, a wrong cell size)"), defaultValue=False, optional=True)))
        self.addParameter(GeoTiffDestination(self.OUTPUT, tr(output_label), optional=optional))

    def output_params(self, parameters, context, require_output=True):
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context) if require_output else ""
        if require_output and not output:
            raise QgsProcessingException(tr("No output file was given."))
        chosen = self.OUTPUT_TYPE_OPTIONS[self.parameterAsEnum(parameters, self.OUTPUT_TYPE, context)]
        return {
            "output": os.path.abspath(output) if output else output,
            "output_type": chosen if chosen in OUTPUT_TYPES else None,   # None: e.g. 'same as inputs'
            "output_nodata": optional_number(self, parameters, self.OUTPUT_NODATA, context),
            "compression": COMPRESSIONS[self.parameterAsEnum(parameters, self.COMPRESSION, context)],
            # absent (a model or script from before the parameter): overviews, as before
            "overviews": self.parameterAsBoolean(parameters, self.OVERVIEWS, context)
            if parameters.get(self.OVERVIEWS) is not None else True,
            "allow_large": self.parameterAsBoolean(parameters, self.ALLOW_LARGE, context),
            **self.run_params(parameters, context),
        }


class ScalingParameters:
    """Input values: a scale and offset (scaled integers to reflectance), and the input nodata."""

    SCALE = "SCALE"
    OFFSET = "OFFSET"
    INPUT_NODATA = "INPUT_NODATA"

    def add_scaling_parameters(self):
        # Optional, so that the dialog shows "Not set" (no scaling) rather than 1.00000000 and 0.0000.
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.SCALE, tr("Scale applied to input values (empty: 1; e.g. 0.0001 for Sentinel-2 L2A, 0.0000275 "
                           "for Landsat Collection 2)"), NUMBER_DOUBLE, optional=True), SCALE_DECIMALS))
        self.addParameter(with_decimals(QgsProcessingParameterNumber(
            self.OFFSET, tr("Offset added after scaling (empty: 0; e.g. -0.1 for Sentinel-2 L2A baseline 04.00)"),
            NUMBER_DOUBLE, optional=True), OFFSET_DECIMALS))
        self.addParameter(nodata_parameter(self.INPUT_NODATA, "Input nodata (empty: each file's own)"))

    def scaling_params(self, parameters, context):
        scale = optional_number(self, parameters, self.SCALE, context)
        offset = optional_number(self, parameters, self.OFFSET, context)
        return {
            "scale": 1.0 if scale is None else scale,
            "offset": 0.0 if offset is None else offset,
            "input_nodata": optional_number(self, parameters, self.INPUT_NODATA, context),
        }

    def with_reference(self, params, fallback):
        """Without a reference layer, the output takes the grid of ``fallback``."""
        if not params.get("reference"):
            params["reference"] = fallback
        return params


def _preset_help():
    items = "".join(f"<li><code>{i}</code> <b>{PRESETS[n].label}</b>: {PRESETS[n].doc}</li>"
                    for i, n in enumerate(MASK_PRESETS))
    return f"<ul>{items}</ul>"


#: The help of the QA mask parameters, shared by every algorithm that takes them.
MASK_HELP = ("<p><b>QA masking</b>: give the <i>Mask band</i> of each input (e.g. a Sentinel-2 SCL or Landsat "
             "QA_PIXEL band) or one <i>Mask layer</i> per input (same order), and what to exclude; these add up: "
             "<i>Mask values</i>, classes (e.g. <code>0,1,3,8,9,10</code>); <i>Mask bits</i>, bit positions "
             "(bit 0 the lowest) masked where set, for bands that pack flags into bits (e.g. <code>1,3,4</code> "
             "for Landsat C2 dilated cloud, cloud and cloud shadow; MODIS QA); a <i>Mask preset</i>:"
             + _preset_help() + "The mask band itself is not processed.</p>")


class MaskParameters:
    """QA masking: a mask band of each input, or mask layers; the classes, bits and preset to exclude
    (:mod:`tilewise.core.masks`)."""

    MASK_BAND = "MASK_BAND"
    MASK_LAYERS = "MASK_LAYERS"
    MASK_VALUES = "MASK_VALUES"
    MASK_BITS = "MASK_BITS"
    MASK_PRESET = "MASK_PRESET"

    def add_mask_parameters(self):
        self.addParameter(QgsProcessingParameterNumber(
            self.MASK_BAND, tr("Mask band of each input (QA / SCL band)"), NUMBER_INTEGER, optional=True,
            minValue=1))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MASK_LAYERS, tr("Mask layers, one per input in the same order"), TYPE_RASTER, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MASK_VALUES, tr("Mask values (classes) to exclude (e.g. 0,1,3,8,9,10)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.MASK_BITS, tr("Mask bits to exclude where set (e.g. 1,3,4; bit 0 the lowest)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.MASK_PRESET, tr("Mask preset (adds its classes or bits)"), MASK_PRESET_LABELS, defaultValue=0,
            optional=True))

    def mask_params(self, parameters, context):
        preset = MASK_PRESETS[self.parameterAsEnum(parameters, self.MASK_PRESET, context)] \
            if parameters.get(self.MASK_PRESET) not in (None, "") else MASK_PRESETS[0]
        return {
            "mask_band": self.parameterAsInt(parameters, self.MASK_BAND, context)
            if parameters.get(self.MASK_BAND) not in (None, "") else None,
            "mask_layers": self.layer_sources(parameters, self.MASK_LAYERS, context, required=False) or None,
            "mask_values": numbers(self.parameterAsString(parameters, self.MASK_VALUES, context), int,
                                   self.MASK_VALUES),
            "mask_bits": numbers(self.parameterAsString(parameters, self.MASK_BITS, context), int, self.MASK_BITS),
            "mask_preset": None if preset == MASK_PRESETS[0] else preset,
        }

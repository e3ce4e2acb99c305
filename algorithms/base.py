"""What every Tilewise algorithm shares: target-grid and output parameters,
turning layers into file sources, and running the engine with QGIS feedback."""

import os

from qgis.core import (QgsMapLayer, QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterBoolean,
                       QgsProcessingParameterCrs, QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString, QgsProcessingUtils)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.vocabulary import COMPRESSIONS as ENGINE_COMPRESSIONS, OUTPUT_TYPES as ENGINE_OUTPUT_TYPES, RESAMPLING_METHODS
from .compat import FLAG_OPTIONAL, LAYER_RASTER, NUMBER_DOUBLE, NUMBER_INTEGER, advanced
from .engine import EngineCancelled, EngineError, find_python, run_engine

#: A DASK_SCHEDULER value that means "this machine", whatever the Processing setting says.
LOCAL = "local"

RESAMPLING = list(RESAMPLING_METHODS)
OUTPUT_TYPES = list(ENGINE_OUTPUT_TYPES)
COMPRESSIONS = list(ENGINE_COMPRESSIONS)


def tr(text):
    return QCoreApplication.translate("Tilewise", text)


def _absolute(source):
    """A relative file path (e.g. given to qgis_process) is relative to QGIS's working folder;
    the engine runs in another one."""
    if source and not os.path.isabs(source) and os.path.exists(source):
        return os.path.abspath(source)
    return source


def _log(feedback, message):
    """An engine log line; its warnings (inputs outside the grid, little disk space...) as warnings."""
    if message.startswith("Warning: ") and hasattr(feedback, "pushWarning"):
        feedback.pushWarning(message)
    else:
        feedback.pushInfo(message)


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


def _known_type(option):
    """An output type name, or None for an option like 'same as inputs'."""
    return option if option in OUTPUT_TYPES else None


class TilewiseAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses declare their own inputs and build the engine job."""

    REFERENCE_LAYER = "REFERENCE_LAYER"
    EXTENT = "EXTENT"
    TARGET_CRS = "TARGET_CRS"
    CELL_SIZE = "CELL_SIZE"
    RESAMPLING = "RESAMPLING"
    OUTPUT_NODATA = "OUTPUT_NODATA"
    OUTPUT_TYPE = "OUTPUT_TYPE"
    COMPRESSION = "COMPRESSION"
    TILE_SIZE = "TILE_SIZE"
    WORKERS = "WORKERS"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    RESUME = "RESUME"
    ALLOW_LARGE = "ALLOW_LARGE"
    OUTPUT = "OUTPUT"
    OUTPUT_TYPE_OPTIONS = OUTPUT_TYPES
    OUTPUT_NODATA_HELP = "Output nodata (empty: -9999, or the type's maximum if unsigned)"

    def group(self):
        return tr("Raster")

    def groupId(self):
        return "raster"

    def createInstance(self):
        return type(self)()

    def icon(self):
        from .provider import TilewiseProvider
        return TilewiseProvider().icon()

    # -- parameters ---------------------------------------------------------------------------------------

    def add_grid_parameters(self, reference_help):
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_LAYER, tr(f"Reference layer for the output grid ({reference_help})"), optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, tr("Output extent"), optional=True))
        self.addParameter(QgsProcessingParameterCrs(self.TARGET_CRS, tr("Output CRS"), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.CELL_SIZE, tr("Output cell size (target CRS units; empty: the reference's)"), NUMBER_DOUBLE,
            optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESAMPLING, tr("Resampling of inputs on another grid"), RESAMPLING, defaultValue=0))

    def add_output_parameters(self, output_label, optional=False):
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.OUTPUT_NODATA, tr(self.OUTPUT_NODATA_HELP), NUMBER_DOUBLE, optional=True)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.OUTPUT_TYPE, tr("Output data type"), self.OUTPUT_TYPE_OPTIONS, defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.COMPRESSION, tr("Compression"), COMPRESSIONS, defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.TILE_SIZE, tr("Tile size in pixels (0: from a memory budget)"), NUMBER_INTEGER,
            defaultValue=0, minValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.WORKERS, tr("Worker processes (0: all cores)"), NUMBER_INTEGER, defaultValue=0, minValue=0)))
        self.add_run_parameters()
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.ALLOW_LARGE, tr("Allow an output above 16 GiB before compression (usually a mistake: an input "
                                 "far away, a wrong cell size)"), defaultValue=False, optional=True)))
        self.addParameter(GeoTiffDestination(self.OUTPUT, tr(output_label), optional=optional))

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

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS's name)
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            return ok, message
        # QGIS only says "Incorrect parameter value for INPUT": name the file and what is wrong with it.
        for definition in self.parameterDefinitions():
            if isinstance(definition, QgsProcessingParameterMultipleLayers):
                try:
                    self.layer_sources(parameters, definition.name(), context, required=False)
                except QgsProcessingException as exc:
                    return False, str(exc)
                except Exception:  # a value this check does not understand: keep QGIS's message
                    pass
        return ok, message

    # -- turning parameters into engine values ------------------------------------------------------------

    def layer_sources(self, parameters, name, context, required=True):
        """File sources of a multiple-layer parameter, each checked: a missing file or a
        non-raster entry is an error naming it (QGIS would otherwise drop it silently)."""
        raw = parameters.get(name) or []
        if not isinstance(raw, (list, tuple)):
            raw = [raw]
        layers = self.parameterAsLayerList(parameters, name, context)
        if required and not raw and not layers:
            raise QgsProcessingException(tr("No input rasters were given; select at least one layer."))
        sources = []
        for value in raw:
            layer = value if isinstance(value, QgsMapLayer) else QgsProcessingUtils.mapLayerFromString(
                str(value), context)
            sources.append(self.raster_source(layer, str(value)))
        if not raw:
            sources = [self.raster_source(layer, layer.name()) for layer in layers]
        return sources

    def raster_source(self, layer, label):
        if layer is None:
            if isinstance(label, str) and label and not os.path.exists(label.split("|")[0]):
                raise QgsProcessingException(tr(f"Input not found: {label}"))
            raise QgsProcessingException(tr(f"Input is not a raster QGIS can read: {label}"))
        if layer.type() != LAYER_RASTER:
            raise QgsProcessingException(tr(f"Input {label} is not a raster layer."))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(tr(
                f"Input {layer.name()} comes from the '{layer.providerType()}' provider; Tilewise reads "
                "file-based rasters (GDAL). Save it as a GeoTIFF first."))
        return _absolute(layer.source())

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
        cell = self.parameterAsDouble(parameters, self.CELL_SIZE, context) if parameters.get(self.CELL_SIZE) \
            is not None else None
        return {
            "reference": self.raster_source(reference, "reference layer") if reference else None,
            "extent": extent,
            "crs": (crs.authid() or crs.toWkt()) if crs.isValid() else None,
            "cell_size": cell or None,
            "resampling": RESAMPLING[self.parameterAsEnum(parameters, self.RESAMPLING, context)],
        }

    def output_params(self, parameters, context, require_output=True):
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context) if require_output else ""
        if require_output and not output:
            raise QgsProcessingException(tr("No output file was given."))
        output = os.path.abspath(output) if output else output
        nodata = parameters.get(self.OUTPUT_NODATA)
        return {
            "output": output,
            "output_type": _known_type(
                self.OUTPUT_TYPE_OPTIONS[self.parameterAsEnum(parameters, self.OUTPUT_TYPE, context)]),
            "output_nodata": self.parameterAsDouble(parameters, self.OUTPUT_NODATA, context)
            if nodata not in (None, "") else None,
            "compression": COMPRESSIONS[self.parameterAsEnum(parameters, self.COMPRESSION, context)],
            "tile_size": self.parameterAsInt(parameters, self.TILE_SIZE, context) or None,
            "workers": self.parameterAsInt(parameters, self.WORKERS, context) or None,
            "allow_large": self.parameterAsBoolean(parameters, self.ALLOW_LARGE, context),
            **self.run_params(parameters, context),
        }

    def run_params(self, parameters, context):
        """``scheduler`` (a Dask address, or None for this machine) and ``resume`` for the engine."""
        from .provider import configured_scheduler
        scheduler = (self.parameterAsString(parameters, self.DASK_SCHEDULER, context) or "").strip()
        if not scheduler:
            scheduler = configured_scheduler()
        return {"scheduler": None if scheduler.lower() in ("", LOCAL) else scheduler,
                "resume": self.parameterAsBoolean(parameters, self.RESUME, context)}

    # -- running -------------------------------------------------------------------------------------------

    def run_job(self, operation, params, feedback):
        """Run a tiled operation in the engine; map progress, cancel and errors to QGIS."""
        report = self.run_operation(operation, params, feedback)
        reused = f" ({report['reused']} reused)" if report.get("reused") else ""
        feedback.pushInfo(tr(f"{report['tiles']} tiles{reused} on {report['workers']} workers in "
                             f"{report['seconds']:.2f} s: {report['output']}"))
        return report

    def run_operation(self, operation, params, feedback, unit="tiles"):
        """Run any engine operation in its own process and return its report; progress counts ``unit``."""
        from .provider import configured_python
        try:
            python = find_python(configured_python())
            feedback.pushInfo(tr(f"Engine interpreter: {python}"))
            return run_engine(
                {"operation": operation, "params": params}, python,
                on_progress=lambda done, total: self._progress(feedback, done, total, unit),
                on_log=lambda message: _log(feedback, message), is_cancelled=feedback.isCanceled)
        except EngineCancelled as exc:
            raise QgsProcessingException(str(exc)) from None
        except EngineError as exc:
            raise QgsProcessingException(str(exc)) from None

    @staticmethod
    def _progress(feedback, done, total, unit="tiles"):
        feedback.setProgress(100.0 * done / max(total, 1))
        feedback.setProgressText(tr(f"{done} / {total} {unit}"))

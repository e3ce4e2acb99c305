"""The thin template of every Tilewise algorithm that runs the engine.

A subclass declares its parameters (``initAlgorithm``, with the shared groups of
:mod:`.parameters`), names its engine operation (:attr:`TilewiseAlgorithm.OPERATION`, an
entry of :mod:`tilewise.core.registry`) and turns its parameter values into the engine's
(:meth:`TilewiseAlgorithm.engine_params`); :meth:`TilewiseAlgorithm.processAlgorithm` runs the
operation in the engine process, with progress, cancel and errors mapped to QGIS, and
:meth:`TilewiseAlgorithm.results` turns the engine's report into the algorithm's outputs.
"""

import logging
import os
import time
from functools import partial

from qgis.core import (QgsMapLayer, QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingParameterMultipleLayers, QgsProcessingUtils, QgsRasterLayer)

from ..core.io.headers import file_key
from ..core.logs import WARNING, lines_to
from ..core.phases import format_phases
from .compat import LAYER_RASTER
from .engine_process import run_engine
from .icon import icon
from .interpreter import EngineError, find_python
from .parameters import GridParameters, OutputParameters, tr
from .settings import configured_python, configured_warm_minutes
from .warm_engine import current, idle_seconds, run_warm

log = logging.getLogger(__name__)

__all__ = ["TilewiseAlgorithm", "tr"]


def _absolute(source):
    """A relative file path (e.g. given to qgis_process) is relative to QGIS's working folder;
    the engine runs in another one."""
    if source and not os.path.isabs(source) and os.path.exists(source):
        return os.path.abspath(source)
    return source


#: Files that QGIS opens as one raster layer of the gdal provider (never a container of subdatasets).
_PLAIN_RASTERS = (".tif", ".tiff", ".vrt", ".img", ".jp2")


def _plain_raster_file(value):
    """``value`` as the engine gets it when it names a local raster file of a kind in :data:`_PLAIN_RASTERS`
    that GDAL opens (QGIS's check of its gdal provider, about 0.1 ms); else None. Loading it as a QGIS
    layer to learn the same takes 1-4 ms a file: 0.2 s of a median of 84 files, before the engine runs."""
    if not isinstance(value, str) or "|" in value or not value.lower().endswith(_PLAIN_RASTERS):
        return None
    if not os.path.isfile(value) or not _gdal_opens(value):
        return None
    return _absolute(value)


#: ``{path: (file_key, GDAL opens it)}`` of the files :func:`_gdal_opens` asked about (at most :data:`_KEPT_MAX`).
_OPENS = {}
_KEPT_MAX = 4096


def _gdal_opens(path):
    """``QgsRasterLayer.isValidRasterFileName(path)``, kept while the file is unchanged (the key of
    :func:`tilewise.core.io.headers.file_key`): a run asks about each input up to four times (QGIS's parameter
    check, then the algorithm's, on two instances), and a session asks again at every run, 0.5 ms a file."""
    key = file_key(path)
    kept = _OPENS.get(path)
    if key is not None and kept is not None and kept[0] == key:
        return kept[1]
    opens = QgsRasterLayer.isValidRasterFileName(path)
    if key is not None:
        if len(_OPENS) >= _KEPT_MAX:
            _OPENS.clear()
        _OPENS[path] = (key, opens)
    return opens


def _plain_raster_files(value):
    """The engine's paths of a list of :func:`_plain_raster_file` values; None unless every value is one."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    paths = [_plain_raster_file(v) for v in value]
    return paths if all(paths) else None


def _debug(context):
    """Debug mode: the Processing log level set to verbose, or TILEWISE_DEBUG set."""
    verbose = getattr(QgsProcessingContext, "Verbose", None)
    level = getattr(context, "logLevel", None)
    return bool(os.environ.get("TILEWISE_DEBUG")) or (verbose is not None and level is not None and level() == verbose)


def phases_line(report, total, engine_wall):
    """The engine's phase breakdown with the QGIS side added: ``qgis`` (this process's time around the
    engine) and, in ``engine start``, the engine process's own start-up and exit."""
    phases = dict(report.get("phases") or {})
    outside = max(engine_wall - float(report.get("engine_seconds", engine_wall)), 0.0)
    phases["engine start"] = phases.get("engine start", 0.0) + outside
    return format_phases({"qgis": max(total - engine_wall, 0.0), **phases}, report.get("tile_seconds"))


def _log(feedback, message):
    """An engine log line (:func:`tilewise.core.logs.line`); its warnings (inputs outside the grid, little
    disk space...) as warnings."""
    if message.startswith(WARNING) and hasattr(feedback, "pushWarning"):
        feedback.pushWarning(message)
    else:
        feedback.pushInfo(message)


def warm_idle_seconds():
    """How long the warm engine may wait for a next run, or 0: no warm engine. qgis_process runs one
    algorithm and exits, so it always takes the cold path."""
    from qgis.core import QgsApplication
    if QgsApplication.platform() == "qgis_process":
        return 0.0
    return idle_seconds(configured_warm_minutes())


def current_engine_pid():
    engine = current()
    return engine.pid if engine else None


class TilewiseAlgorithm(GridParameters, OutputParameters, QgsProcessingAlgorithm):
    """Base class: subclasses declare their own inputs and build the engine job."""

    #: The engine operation the algorithm runs (its name in :data:`tilewise.core.registry.OPERATIONS`).
    OPERATION = ""
    #: What the engine's progress counts.
    UNIT = "tiles"

    def group(self):
        return tr("Raster")

    def groupId(self):
        return "raster"

    def createInstance(self):
        return type(self)()

    def icon(self):
        return icon()

    # -- the template ---------------------------------------------------------------------------------------

    def engine_params(self, parameters, context, feedback):
        """The operation's keywords from the parameter values."""
        raise NotImplementedError

    def results(self, report, params, parameters, context, feedback):
        """The algorithm's outputs from the engine's report (by default the one output raster)."""
        return {self.OUTPUT: report["output"]}

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS's name)
        start = time.perf_counter()
        params = self.engine_params(parameters, context, feedback)
        report = self.run_operation(self.OPERATION, params, feedback)
        if "tiles" in report:
            reused = f" ({report['reused']} reused)" if report.get("reused") else ""
            feedback.pushInfo(tr(f"{report['tiles']} tiles{reused} on {report['workers']} workers in "
                                 f"{report['seconds']:.2f} s: {report['output']}"))
        results = self.results(report, params, parameters, context, feedback)
        if "phases" in report:  # the last line of the log, in debug mode
            line = phases_line(report, time.perf_counter() - start, report.get("engine_wall", 0.0))
            (feedback.pushInfo if _debug(context) else feedback.pushDebugInfo)(line)
        return results

    def run_operation(self, operation, params, feedback):
        """Run an engine operation in its own process and return its report (``engine_wall``: the
        seconds from starting the engine process to its report)."""
        try:
            python = find_python(configured_python())
            feedback.pushInfo(tr(f"Engine interpreter: {python}"))
            started = time.perf_counter()
            job = {"operation": operation, "params": params}
            on_log = partial(_log, feedback)
            callbacks = dict(on_progress=lambda done, total: self._progress(feedback, done, total),
                             on_log=on_log, is_cancelled=feedback.isCanceled)
            idle = warm_idle_seconds()
            # the engine process's log arrives as events (on_log); this process's own records (an output's
            # lock, say) go to the same feedback through the engine's one handler
            with lines_to(on_log, this_thread=True):
                report = run_warm(job, python, idle, **callbacks) if idle else None
                cold = report is None   # qgis_process, the warm engine off or busy with another run
                if cold:
                    report = run_engine(job, python, **callbacks)
            if not cold:
                feedback.pushInfo(tr(f"Ran on the warm engine (process {current_engine_pid()}; it waits "
                                     f"{idle / 60:g} idle minutes for the next run)"))
            if isinstance(report, dict):
                report["engine_wall"] = time.perf_counter() - started
            return report
        except EngineError as exc:   # EngineCancelled too
            raise QgsProcessingException(str(exc)) from None

    def _progress(self, feedback, done, total):
        feedback.setProgress(100.0 * done / max(total, 1))
        feedback.setProgressText(tr(f"{done} / {total} {self.UNIT}"))

    # -- layers ---------------------------------------------------------------------------------------------

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS's name)
        if self._values_acceptable(parameters, context):
            return True, ""
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
                except Exception:  # noqa: BLE001 - a value this check does not understand: keep QGIS's message
                    log.debug("%s: no better message than QGIS's", definition.name(), exc_info=True)
        return ok, message

    def _values_acceptable(self, parameters, context):
        """QGIS's check of each parameter value (``QgsProcessingAlgorithm::checkParameterValues``), without
        loading a QGIS layer for each raster file of a multiple-layer parameter (see :func:`_plain_raster_file`:
        such a list gets the checks that need no layer, its count). False: let QGIS check, for its message."""
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            plain = isinstance(definition, QgsProcessingParameterMultipleLayers) and _plain_raster_files(value)
            if not definition.checkValueIsAcceptable(value, None if plain else context):
                return False
        return True

    def layer_sources(self, parameters, name, context, required=True):
        """File sources of a multiple-layer parameter, each checked: a missing file or a
        non-raster entry is an error naming it (QGIS would otherwise drop it silently)."""
        raw = parameters.get(name) or []
        if not isinstance(raw, (list, tuple)):
            raw = [raw]
        plain = _plain_raster_files(raw)
        if plain:
            return plain
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

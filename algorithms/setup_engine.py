"""``tilewise:setupengine``: give the engine its Python environment, in one step, from the Processing toolbox."""

import os

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingOutputString,
                       QgsProcessingParameterFile)

from .compat import FILE_FOLDER
from .environment import SetupFeedback, read_lock, setup_engine
from .icon import icon
from .interpreter import EngineError, configured_interpreter
from .parameters import tr
from .settings import configured_python

HELP = (
    "<p>Prepares the <b>Tilewise engine</b>, the separate Python process that runs every Tilewise algorithm: "
    "run it once after installing the plugin, and again to repair (it only does what is missing).</p>"
    "<ol>"
    "<li><b>Python environment</b>: the interpreter set in <i>Settings ▸ Options ▸ Processing ▸ Providers ▸ "
    "Tilewise</i>, if any; otherwise Tilewise's own virtual environment, created from this machine's Python (on "
    "Linux in <code>~/.local/share/tilewise/venv</code>).</li>"
    "<li><b>Packages</b>: numpy, numba, rasterio, numexpr and their dependencies, at the exact versions "
    "Tilewise is tested with, installed by pip from the Python Package Index, or offline from a <i>folder of "
    "wheels</i> (made elsewhere with <code>pip download</code>, or with <code>python3 -m "
    "tilewise.algorithms.environment wheelhouse FOLDER</code>).</li>"
    "<li><b>Kernels</b>: compiled once into numba's cache in your user cache folder, so that the first run is "
    "as fast as the next ones.</li> </ol>"
    "<p>The log shows each step and pip's own output; the result says what was done.</p>"
)


class _QgisFeedback(SetupFeedback):
    def __init__(self, feedback):
        self.feedback = feedback

    def step(self, message):
        self.feedback.pushInfo(message)

    def line(self, text):
        self.feedback.pushConsoleInfo(text)

    def progress(self, percent):
        self.feedback.setProgress(percent)

    def cancelled(self):
        return self.feedback.isCanceled()


class SetupEngine(QgsProcessingAlgorithm):
    WHEELHOUSE = "WHEELHOUSE"
    PYTHON = "PYTHON"
    CACHE = "CACHE"
    REPORT = "REPORT"

    def name(self):
        return "setupengine"

    def displayName(self):
        return tr("Set up the Tilewise engine (install or repair)")

    def group(self):
        return tr("Setup")

    def groupId(self):
        return "setup"

    def shortHelpString(self):
        return tr(HELP)

    def createInstance(self):
        return type(self)()

    def icon(self):
        return icon()

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(
            self.WHEELHOUSE, tr("Folder of wheels to install from, offline (empty: download from PyPI)"),
            behavior=FILE_FOLDER, optional=True))
        self.addOutput(QgsProcessingOutputString(self.PYTHON, tr("Engine interpreter")))
        self.addOutput(QgsProcessingOutputString(self.CACHE, tr("Kernel cache folder")))
        self.addOutput(QgsProcessingOutputString(self.REPORT, tr("What was done")))

    def processAlgorithm(self, parameters, context, feedback):
        wheelhouse = self.parameterAsFile(parameters, self.WHEELHOUSE, context) or ""
        try:
            lock = read_lock()
            python = configured_interpreter(configured_python())
            report = setup_engine(python=python, wheelhouse=os.path.abspath(wheelhouse) if wheelhouse else "",
                                  feedback=_QgisFeedback(feedback), lock=lock)
        except EngineError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(tr("\n".join(["", "Done:"] + report.actions)))
        return {self.PYTHON: report.python, self.CACHE: report.cache or "", self.REPORT: report.text()}

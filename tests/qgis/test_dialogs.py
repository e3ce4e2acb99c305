"""Every Tilewise algorithm's dialog, opened in a real QGIS window (QGIS's own ``AlgorithmDialog``, headless:
``QT_QPA_PLATFORM=offscreen``), checked for what a user sees: a help text without line breaks inside its
sentences, the parameters one must fill before the optional ones, numbers without spurious decimals; a run
from the dialog that logs no HTML output when no plot was asked for; a composite drawn on the map.

Screenshots (one per dialog, and the map) go to a temporary folder, or with ``TILEWISE_SCREENSHOTS=docs``
to ``docs/dialogs/<algorithm>.png`` and ``docs/composite_map.png``, the README's pictures::

    cd build/plugins && TILEWISE_SCREENSHOTS=$PWD/tilewise/docs QT_QPA_PLATFORM=offscreen PYTHONPATH=$PWD \\
        python3 -m pytest -q tilewise/tests/qgis/test_dialogs.py
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr, osr
from qgis.core import (QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsProcessingDestinationParameter,
                       QgsProcessingParameterNumber, QgsProject, QgsRasterLayer, QgsStyle)
from qgis.PyQt.QtCore import QEventLoop, QSize, QTimer
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter
from qgis.PyQt.QtWidgets import QCheckBox, QDoubleSpinBox, QSpinBox, QTextBrowser, QTextEdit

from twtest import UTM33_10M, qgis_enum, run, write_raster

SIZE = QSize(800, 700)
#: Where a sentence may end a line of help: a full stop, colon, semicolon, or a closing bracket after one.
SENTENCE_END = ".:;!?"


#: Every algorithm of the provider (the plugin loads after collection, so they are listed here; the first
#: test checks the list against the provider).
ALGORITHMS = ["tilewise:bandmath", "tilewise:chips", "tilewise:extract", "tilewise:gapfill", "tilewise:index",
              "tilewise:mosaic", "tilewise:ndvi", "tilewise:setupengine", "tilewise:stacsearch",
              "tilewise:temporalmedian"]


def test_every_algorithm_is_checked():
    registry = QgsApplication.processingRegistry()
    assert sorted(a.id() for a in registry.algorithms() if a.provider().id() == "tilewise") == ALGORITHMS


def algorithm(alg_id):
    return QgsApplication.processingRegistry().createAlgorithmById(alg_id)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """The screenshots' folder: TILEWISE_SCREENSHOTS (the repository's docs/), else a temporary one."""
    root = Path(os.environ.get("TILEWISE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    (root / "dialogs").mkdir(parents=True, exist_ok=True)
    return root


def qt_enum(owner, name):
    """A Qt enum value by its Qt5 name (``QImage.Format_Indexed8``) or its Qt6 scoped one."""
    value = getattr(owner, name, None)
    if value is None:
        scope = next(getattr(owner, s) for s in dir(owner) if hasattr(getattr(owner, s), name))
        value = getattr(scope, name)
    return value


def save_small(image, path):
    """A screenshot as a PNG of 256 colours (a third of the size; text and widgets stay crisp)."""
    assert image.convertToFormat(qt_enum(QImage, "Format_Indexed8")).save(str(path), "PNG"), path


def open_dialog(alg_id):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    dialog = AlgorithmDialog(algorithm(alg_id), False, None)
    dialog.resize(SIZE)
    dialog.show()
    QgsApplication.processEvents()
    return dialog


@pytest.fixture
def dialog(request):
    shown = open_dialog(request.param)
    yield shown
    shown.close()
    shown.deleteLater()
    QgsApplication.processEvents()


def breaks_inside_sentences(html):
    """The hard line breaks of ``html`` that do not follow a sentence's end or a tag (QGIS's help panel
    keeps them: "gives a ⏎⏎ 6-band composite")."""
    return [html[max(m.start() - 40, 0):m.start() + 40] for m in re.finditer(r"\n", html.strip())
            if html[:m.start()].rstrip()[-1:] not in SENTENCE_END + ">"]


def must_fill(param):
    """A parameter the dialog cannot run without: not optional and nothing filled in by default."""
    return not (param.flags() & qgis_enum("Qgis.ProcessingParameterFlag.Optional",
                                          "QgsProcessingParameterDefinition.FlagOptional")) \
        and param.defaultValue() is None


def shown_parameters(alg):
    """The inputs in the order of the dialog's main part (no advanced ones, no outputs: those come last), but
    a layer's band or field (a parameter that depends on another) stays beside its layer, wherever that is."""
    advanced = qgis_enum("Qgis.ProcessingParameterFlag.Advanced", "QgsProcessingParameterDefinition.FlagAdvanced")
    hidden = qgis_enum("Qgis.ProcessingParameterFlag.Hidden", "QgsProcessingParameterDefinition.FlagHidden")
    return [p for p in alg.parameterDefinitions()
            if not p.flags() & (advanced | hidden) and not isinstance(p, QgsProcessingDestinationParameter)
            and not p.dependsOnOtherParameters()]


@pytest.mark.parametrize("alg_id", ALGORITHMS)
def test_help_has_no_line_break_inside_a_sentence(alg_id):
    """In the algorithm's help as written, and as the dialog's help panel shows it (one paragraph a line)."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    text = algorithm(alg_id).shortHelpString()
    assert text.lstrip().startswith("<p>"), text[:80]
    assert breaks_inside_sentences(text) == []
    dialog = AlgorithmDialog(algorithm(alg_id), False, None)
    try:
        panel = dialog.findChild(QTextBrowser, "textShortHelp")
        lines = [line.strip() for line in panel.toPlainText().splitlines() if line.strip()][1:]  # after the title
        assert len(lines) >= 2, panel.toPlainText()
        cut = [line for line in lines if line[-1] not in SENTENCE_END and not line.endswith(")")]
        assert cut == [], f"help lines that end inside a sentence: {cut}"
    finally:
        dialog.deleteLater()


@pytest.mark.parametrize("alg_id", ALGORITHMS)
def test_parameters_to_fill_come_before_the_optional_ones(alg_id):
    alg = algorithm(alg_id)   # kept: its parameter definitions live as long as it
    params = shown_parameters(alg)
    first_optional = next((i for i, p in enumerate(params) if not must_fill(p)), len(params))
    late = [p.name() for p in params[first_optional:] if must_fill(p)]
    assert late == [], f"{alg_id}: {late} must be filled but come after {params[first_optional].name()}"


@pytest.mark.parametrize("alg_id", ["tilewise:gapfill", "tilewise:index"])
def test_the_output_choice_sits_next_to_the_outputs(alg_id):
    """The dialog shows the outputs at its end: the choice between one COG and a folder comes right before."""
    alg = algorithm(alg_id)
    assert shown_parameters(alg)[-1].name() == "OUTPUT_MODE"


def number_widgets(dialog, name):
    wrapper = dialog.mainWidget().wrappers[name]
    widget = wrapper.wrappedWidget() if hasattr(wrapper, "wrappedWidget") else wrapper.widget
    own = [widget] if isinstance(widget, (QSpinBox, QDoubleSpinBox)) else []
    return own + widget.findChildren(QDoubleSpinBox) + widget.findChildren(QSpinBox)


@pytest.mark.parametrize("dialog", ALGORITHMS, indirect=True)
def test_numbers_show_no_spurious_decimals(dialog, shots):
    """Whole numbers in integer boxes; a default shown with at most 2 decimals (QGIS's own default is 6:
    "30.000000" days, "1.000000" as scale). And the dialog's picture, with its help panel."""
    alg = dialog.algorithm()
    save_small(dialog.grab().toImage(), shots / "dialogs" / f"{alg.name()}.png")
    checked = 0
    for param in alg.parameterDefinitions():
        if not isinstance(param, QgsProcessingParameterNumber):
            continue
        widgets = number_widgets(dialog, param.name())
        assert widgets, param.name()
        integer = param.dataType() == qgis_enum("Qgis.ProcessingNumberParameterType.Integer",
                                                "QgsProcessingParameterNumber.Integer")
        for widget in widgets:
            text = widget.text().strip()
            checked += 1
            if integer:
                assert not isinstance(widget, QDoubleSpinBox) or widget.decimals() == 0, param.name()
                assert "." not in text, f"{param.name()}: {text!r}"
            elif text != widget.specialValueText():    # "Not set" shows no number
                decimals = len(text.split(".")[1]) if "." in text else 0
                assert decimals <= 2, f"{param.name()} shows {text!r}"
    assert checked or not any(isinstance(p, QgsProcessingParameterNumber) for p in alg.parameterDefinitions())


def test_extraction_dialog_shows_its_statistics_and_the_composite_percentiles():
    dialog = open_dialog("tilewise:extract")
    try:
        boxes = {b.text(): b.isChecked() for b in dialog.mainWidget().wrappers["STATISTICS"].wrappedWidget()
                 .findChildren(QCheckBox)}
        assert boxes.get("mean") is True and sum(boxes.values()) == 1, boxes    # not "1 options selected"
        assert len(boxes) == 8, boxes
    finally:
        dialog.close()
    assert algorithm("tilewise:extract").parameterDefinition("PERCENTILES").defaultValue() == \
        algorithm("tilewise:temporalmedian").parameterDefinition("PERCENTILES").defaultValue() == "25,50,75"


# -- a run from the dialog -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """Two dated scenes and a GeoPackage of three points on them."""
    folder = tmp_path_factory.mktemp("dialog-run")
    rng = np.random.default_rng(26)
    paths = [write_raster(folder / f"s_{d}.tif", rng.normal(100, 10, (40, 50)).astype(np.float32), nodata=-9999)
             for d in ("2024-05-01", "2024-06-01")]
    zones = str(folder / "points.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(zones)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    layer = ds.CreateLayer("points", srs, ogr.wkbPoint)
    for i in range(3):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({UTM33_10M[0] + 55 + 100 * i} "
                                                      f"{UTM33_10M[3] - 75 - 90 * i})"))
        layer.CreateFeature(feature)
    ds = None
    return paths, zones, folder


def run_from_dialog(alg_id, parameters, timeout=300):
    """Run as the dialog's Run button does (a task, the dialog's own feedback and log) and return its log."""
    from processing.core.ProcessingConfig import ProcessingConfig
    ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)  # QGIS's default: the log stays
    dialog = open_dialog(alg_id)
    finished = []
    loop = QEventLoop()
    dialog.algorithmFinished.connect(lambda ok, results: (finished.append((ok, results)), loop.quit()))
    dialog.mainWidget().setParameters(parameters)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(timeout * 1000)
    dialog.runAlgorithm()
    if not finished:
        (loop.exec_ if hasattr(loop, "exec_") else loop.exec)()
    timer.stop()
    log = dialog.findChild(QTextEdit, "txtLog").toPlainText()
    dialog.close()
    QgsProject.instance().removeAllMapLayers()    # the outputs it loaded
    assert finished and finished[0][0], log
    return log, finished[0][1]


def test_no_html_output_is_announced_without_a_plot(series, monkeypatch):
    monkeypatch.setenv("TILEWISE_WARM_ENGINE_MINUTES", "0")   # no engine left behind for the next tests
    paths, zones, folder = series
    log, results = run_from_dialog("tilewise:extract", {"INPUT": paths, "ZONES": zones,
                                                        "OUTPUT": str(folder / "no_plot.gpkg")})
    assert "rows written" in log, log
    assert "OUTPUT_PLOT" not in results and "HTML output" not in log, log


def test_a_plot_is_announced_with_its_path(series, monkeypatch):
    monkeypatch.setenv("TILEWISE_WARM_ENGINE_MINUTES", "0")
    paths, zones, folder = series
    plot = folder / "plot.html"
    log, results = run_from_dialog("tilewise:extract", {"INPUT": paths, "ZONES": zones, "OUTPUT_PLOT": str(plot),
                                                        "OUTPUT": str(folder / "with_plot.gpkg")})
    assert results["OUTPUT_PLOT"] == str(plot) and plot.stat().st_size > 0
    assert f"Plot of each feature's series: {plot}" in log, log
    from processing.core.ProcessingResults import resultsList   # QGIS's Results Viewer lists it
    assert str(plot) in [r.filename for r in resultsList.getResults()]


# -- a result on the map ---------------------------------------------------------------------------------------

def fields_and_clouds(rng, shape, dates):
    """A field pattern (a few parcels of different greenness) under clouds that move from date to date."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    parcels = (rows // 48) * 11 + (cols // 64) * 7 + (cols > rows * 0.6 + 90)
    green = np.round(0.15 + 0.7 * ((parcels * 0.618) % 1.0), 2)
    scenes = []
    for _ in range(dates):
        scene = green + np.round(rng.normal(0, 0.01, shape), 2)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        cloud = (rows - cy) ** 2 / 900 + (cols - cx) ** 2 / 2500 < rng.uniform(1, 4)
        scene[cloud] = -9999.0
        scenes.append(scene.astype(np.float32))
    return scenes


def draw(layer, size):
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(size)
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def styled(path, name):
    from qgis.core import QgsColorRampShader, QgsRasterShader, QgsSingleBandPseudoColorRenderer
    layer = QgsRasterLayer(path, name)
    assert layer.isValid(), path
    ramp = QgsStyle.defaultStyle().colorRamp("RdYlGn")
    shader_fn = QgsColorRampShader(0.0, 1.0, ramp)
    shader_fn.classifyColorRamp(11)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader))
    return layer


def test_a_composite_on_the_map(tmp_path, out_dir, shots):
    """One cloudy scene beside the median of eight: the clouds (nodata, white) are gone from the composite."""
    rng = np.random.default_rng(7)
    shape = (240, 320)
    scenes = fields_and_clouds(rng, shape, 8)
    paths = [write_raster(tmp_path / f"ndvi_2024-0{i + 1}-15.tif", s, nodata=-9999.0) for i, s in enumerate(scenes)]
    result = run("tilewise:temporalmedian", {"INPUT": paths, "OUTPUT": str(out_dir / "median.tif")})
    half = QSize(360, 270)
    images = [draw(styled(paths[0], "scene"), half), draw(styled(result["OUTPUT"], "median"), half)]
    white = QColor("white").rgb()

    def blank(image):
        return sum(image.pixel(x, y) == white for x in range(0, image.width(), 4) for y in range(0, image.height(), 4))

    assert blank(images[0]) > 50, "the scene should show its clouds"
    assert blank(images[1]) == 0, "the composite has a value everywhere"
    canvas = QImage(half.width() * 2 + 30, half.height() + 40, qt_enum(QImage, "Format_RGB32"))
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    painter.setFont(QFont("DejaVu Sans", 11))
    for i, (image, title) in enumerate(zip(images, ["One scene (clouds masked)", "Median of 8 scenes (Tilewise)"])):
        x = 10 + i * (half.width() + 10)
        painter.drawText(x, 22, title)
        painter.drawImage(x, 32, image)
    painter.end()
    assert canvas.save(str(shots / "composite_map.png"), "PNG")   # full colour: 256 would dither the map


def test_the_plugin_manager_names_every_kind_of_algorithm():
    """metadata.txt's description, the Plugin Manager's first line, names what the plugin does."""
    import configparser
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(Path(__file__).resolve().parents[2] / "metadata.txt", encoding="utf-8")
    description = meta["general"]["description"].lower()
    for kind in ("composites", "gap filling", "ndvi", "spectral indices", "band math", "mosaics",
                 "time series at points and polygons", "stac search"):
        assert kind in description, kind

"""What a run in a QGIS session pays before the engine starts on it.

QGIS checks a multiple-layer parameter by loading every entry as a QGIS layer (1-4 ms a file: 0.2 s for
the 84 files of a median). Tilewise checks the raster files of such a list with GDAL instead (QGIS's own
``isValidRasterFileName``) and hands the engine the same paths; anything else goes the QGIS way.
"""

import numpy as np
from qgis.core import QgsApplication, QgsProcessingContext

from twtest import read_raster, run, write_raster

ALG_ID = "tilewise:temporalmedian"


def stack(folder, n=5):
    paths = []
    for i in range(n):
        paths.append(str(folder / f"d{i}.tif"))
        write_raster(paths[-1], np.full((9, 11), i + 1, np.float32), nodata=-1)
    return paths


def test_raster_files_are_checked_without_loading_layers(tmp_path):
    paths = stack(tmp_path)
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG_ID)
    context = QgsProcessingContext()
    ok, message = alg.checkParameterValues({"INPUT": paths, "OUTPUT": str(tmp_path / "out.tif")}, context)
    assert ok, message
    assert context.temporaryLayerStore().count() == 0  # QGIS's own check would hold 5 layers here
    assert alg.layer_sources({"INPUT": paths}, "INPUT", context) == paths
    assert context.temporaryLayerStore().count() == 0


def test_other_entries_still_go_through_qgis(tmp_path):
    paths = stack(tmp_path)
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG_ID)
    context = QgsProcessingContext()
    relative_or_layer = paths[:4] + [paths[4] + "|option"]  # not a plain file name: loaded by QGIS
    ok, _ = alg.checkParameterValues({"INPUT": relative_or_layer, "OUTPUT": str(tmp_path / "out.tif")}, context)
    assert not ok or context.temporaryLayerStore().count() > 0


def test_the_median_of_plain_files(tmp_path):
    paths = stack(tmp_path)
    out = tmp_path / "median.tif"
    run(ALG_ID, {"INPUT": paths, "OUTPUT": str(out)})
    assert np.all(read_raster(out).array == 3)


def test_a_file_is_asked_about_once_while_it_is_unchanged(tmp_path, monkeypatch):
    """GDAL's answer for each file (0.5 ms each) is kept while the file is unchanged: a run asked up to four
    times per file (QGIS's check and the algorithm's, on two instances), and every run of a session again."""
    from tilewise.algorithms import base
    from tilewise.core.io import headers
    monkeypatch.setattr(headers, "SETTLE_SECONDS", 0.0)  # the files just written count as settled
    asked = []

    real = base.QgsRasterLayer

    class Spy:  # QGIS's own check, counted
        @staticmethod
        def isValidRasterFileName(path):  # noqa: N802 (QGIS's name)
            asked.append(path)
            return real.isValidRasterFileName(path)

    paths = stack(tmp_path)
    monkeypatch.setattr(base, "_OPENS", {})
    monkeypatch.setattr(base, "QgsRasterLayer", Spy)
    for _ in range(2):
        out = tmp_path / "median.tif"
        run(ALG_ID, {"INPUT": paths, "OUTPUT": str(out)})
        assert np.all(read_raster(out).array == 3)
    assert sorted(asked) == sorted(paths)
    # a file changed is asked about again: a raster no more is an error naming it
    with open(paths[2], "w") as f:
        f.write("not a raster")
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG_ID)
    ok, message = alg.checkParameterValues({"INPUT": paths, "OUTPUT": str(tmp_path / "out.tif")},
                                           QgsProcessingContext())
    assert not ok and "d2.tif" in message, message
    assert asked[len(paths):] == [paths[2]]

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

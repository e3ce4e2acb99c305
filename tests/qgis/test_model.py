"""A Graphical Modeler model chains tilewise:temporalmedian into a QGIS algorithm (native:fillnodata)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsProcessingModelAlgorithm

from twtest import masked_stack, nan_reduce, read_raster, run, write_raster

MODEL = Path(__file__).resolve().parent / "data" / "composite_then_fillnodata.model3"
FILL = 7.0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model-inputs")
    rng = np.random.default_rng(8)
    arrays = []
    for _ in range(4):
        a = rng.integers(10, 900, (120, 170)).astype(np.uint16)
        a[rng.random(a.shape) < 0.3] = 0
        a[50:70, 20:60] = 0  # no observation at all: filled by the second step
        arrays.append(a)
    return [write_raster(folder / f"s{i}.tif", a, nodata=0) for i, a in enumerate(arrays)], arrays


@pytest.fixture(scope="module")
def model_provider(tmp_path_factory):
    """The model installed in a Processing models folder, as a user saves it from the Modeler."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from processing.modeler.ModelerUtils import ModelerUtils
    folder = tmp_path_factory.mktemp("models")
    shutil.copy(MODEL, folder)
    previous = ProcessingConfig.getSetting(ModelerUtils.MODELS_FOLDER)
    ProcessingConfig.setSettingValue(ModelerUtils.MODELS_FOLDER, str(folder))
    provider = QgsApplication.processingRegistry().providerById("model")
    provider.refreshAlgorithms()
    yield provider
    ProcessingConfig.setSettingValue(ModelerUtils.MODELS_FOLDER, previous)
    provider.refreshAlgorithms()


def load_model():
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), MODEL
    return model


def test_model_file_chains_tilewise_into_qgis():
    model = load_model()
    assert model.name() == "composite_then_fillnodata"
    children = model.childAlgorithms()
    assert children["composite"].algorithmId() == "tilewise:temporalmedian"
    assert children["fill"].algorithmId() == "native:fillnodata"
    assert children["fill"].parameterSources()["INPUT"][0].outputChildId() == "composite"
    assert model.dependsOnChildAlgorithms("fill") == {"composite"}
    ok, errors = model.validate()
    assert ok, errors


@pytest.mark.parametrize("how", ["from file", "model provider"])
def test_model_output(how, scenes, out_dir, request):
    paths, arrays = scenes
    if how == "from file":
        algorithm = load_model()
    else:
        request.getfixturevalue("model_provider")
        algorithm = "model:composite_then_fillnodata"
        assert QgsApplication.processingRegistry().algorithmById(algorithm) is not None
    output = str(out_dir / "filled.tif")

    result = run(algorithm, {"scenes": paths, "fill_value": FILL, "fill:filled": output})

    assert result["fill:filled"] == output
    out = read_raster(output)
    median = nan_reduce(np.nanmedian, masked_stack(arrays, 0))
    empty = np.isnan(median)
    assert empty[50:70, 20:60].all()
    np.testing.assert_array_equal(out.array[empty], FILL)
    np.testing.assert_array_equal(out.array[~empty], median[~empty].astype(np.float32))
    assert (out.width, out.height, out.geotransform) == (170, 120, read_raster(paths[0]).geotransform)
    assert [p.name for p in out_dir.iterdir()] == ["filled.tif"]

"""The QGIS process never loads the engine's packages: after a real run here, and (conftest's check after
every test) after every other test, in whatever order they run."""

import sys

import numpy as np

from conftest import engine_packages_in_qgis
from twtest import read_raster, run, write_raster


def test_a_run_leaves_the_engine_packages_out_of_qgis(tmp_path):
    inputs = [write_raster(tmp_path / f"i{i}.tif", np.full((64, 64), 10 * (i + 1), np.uint16), nodata=0)
              for i in range(3)]
    result = run("tilewise:temporalmedian", {"INPUT": inputs, "WORKERS": 2, "TILE_SIZE": 32,
                                            "OUTPUT": str(tmp_path / "out.tif")})
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, 20)  # the engine did run

    assert {"tilewise.algorithms.base", "tilewise.algorithms.engine_process"} <= set(sys.modules)  # QGIS side ...
    assert engine_packages_in_qgis() == []  # ... but none of the engine's packages

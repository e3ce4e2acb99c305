"""Runs last (file name): after everything above, the QGIS process never loaded the engine's packages."""

import os
import sys

import numpy as np

from twtest import read_raster, run, write_raster

ENGINE_ONLY = ("rasterio", "numba", "llvmlite", "dask", "distributed")


def test_qgis_process_never_loaded_the_engine_packages(tmp_path):
    inputs = [write_raster(tmp_path / f"i{i}.tif", np.full((64, 64), 10 * (i + 1), np.uint16), nodata=0)
              for i in range(3)]
    result = run("tilewise:temporalmedian", {"INPUT": inputs, "WORKERS": 2, "TILE_SIZE": 32,
                                            "OUTPUT": str(tmp_path / "out.tif")})
    np.testing.assert_array_equal(read_raster(result["OUTPUT"]).array, 20)  # the engine did run

    assert "tilewise.algorithms.engine" in sys.modules  # the QGIS side is loaded ...
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ENGINE_ONLY)
    assert loaded == []  # ... but none of the engine's packages
    with open(f"/proc/{os.getpid()}/maps", encoding="utf-8", errors="replace") as f:
        libraries = {line.split()[-1] for line in f if "/" in line}
    foreign = sorted(p for p in libraries if any(name in p for name in ENGINE_ONLY + (".venv", "rasterio.libs")))
    assert foreign == []

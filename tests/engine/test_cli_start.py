"""What a command's own process loads before its work: not SciPy, which numba looks for BLAS in (no Tilewise
kernel uses BLAS), and which would cost 0.2 s of CPU on every command where SciPy is installed."""

import subprocess
import sys

import numpy as np
import rasterio
from rasterio.transform import from_origin

PROBE = """
import sys
from tilewise.core.cli import main
code = main(sys.argv[1:])
assert code == 0, code
print("scipy.linalg" in sys.modules, "numba" in sys.modules)
"""


def constant_dates(folder, count: int, width: int, height: int) -> list:
    """``count`` float32 rasters ``d0.tif``... of ``width`` x ``height`` pixels, date i all ``i + 1``."""
    files = []
    for i in range(count):
        files.append(str(folder / f"d{i}.tif"))
        with rasterio.open(files[-1], "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
                           crs="EPSG:32633", transform=from_origin(500000, 5200000, 30, 30), nodata=-1) as dst:
            dst.write(np.full((1, height, width), i + 1, np.float32))
    return files


def test_a_command_runs_its_kernels_without_importing_scipy(tmp_path):
    files = constant_dates(tmp_path, 3, 7, 5)
    out = str(tmp_path / "median.tif")
    done = subprocess.run([sys.executable, "-c", PROBE, "composite", "-q", "-o", out, *files], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", "True"]     # numba ran the kernels, SciPy stayed out
    with rasterio.open(out) as src:
        assert np.all(src.read(1) == 2)


def test_scipy_imported_already_stays_usable():
    code = ("import sys, scipy.linalg; from tilewise.core.cli import skip_blas_probe; skip_blas_probe(); "
            "import scipy.linalg.cython_blas; print(sys.modules['scipy.linalg.cython_blas'] is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


POOL_PROBE = """
import sys
from tilewise.core.operations.composite import composite
composite(sys.argv[2:], sys.argv[1], "median", tile_size=32, workers=2)   # 6 tiles on a pool
print("numba" in sys.modules)
"""


def test_the_parent_of_a_pool_loads_no_kernels(tmp_path):
    # the parent of a pool only plans and assembles: numba (0.2-0.3 s to import) loads where tiles are reduced.
    # The swath route's package, asked whether the inputs are swaths, imported it on every composite once.
    files = constant_dates(tmp_path, 2, 70, 50)
    done = subprocess.run([sys.executable, "-c", POOL_PROBE, str(tmp_path / "median.tif"), *files],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False"
    with rasterio.open(tmp_path / "median.tif") as src:
        assert np.all(src.read(1) == 1.5)

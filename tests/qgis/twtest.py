"""Helpers of the QGIS tests: rasters written and read with osgeo.gdal, engine processes found in /proc."""

import os
import time
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import qgis.core
from osgeo import gdal, osr

# No gdal.UseExceptions() here: it would change osgeo's behaviour for QGIS's own Python code
# in this process. The helpers check what GDAL returns instead.

UTM33_10M = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
_GDAL_TYPES = {np.dtype("uint8"): gdal.GDT_Byte, np.dtype("uint16"): gdal.GDT_UInt16,
               np.dtype("int16"): gdal.GDT_Int16, np.dtype("int32"): gdal.GDT_Int32,
               np.dtype("float32"): gdal.GDT_Float32, np.dtype("float64"): gdal.GDT_Float64}


def qgis_enum(scoped: str, legacy: str):
    """A QGIS enum value by its fully scoped name where this QGIS has that enum, else by its 3.22 name.

    ``qgis_enum("Qgis.ProcessingSourceType.Raster", "QgsProcessing.TypeRaster")``. Only the scoped
    name exists in a Qt6 build (QGIS 4). Where the scoped enum exists, its value must exist too:
    a misspelt value fails instead of falling back.
    """
    head, *path, value = scoped.split(".")
    scope = getattr(qgis.core, head)
    for name in path:
        scope = getattr(scope, name, None)
        if scope is None:   # this QGIS predates the scoped enum
            owner, name = legacy.split(".")
            return getattr(getattr(qgis.core, owner), name)
    return getattr(scope, value)


def srs_wkt(epsg: int) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def write_raster(path, array, nodata=None, geotransform=UTM33_10M, epsg=32633,
                 options=("TILED=YES", "COMPRESS=DEFLATE")) -> str:
    """Write a GeoTIFF from a 2-D array (one band) or a 3-D one (bands, rows, cols); return its path."""
    array = np.asarray(array)
    bands = array if array.ndim == 3 else array[np.newaxis]
    path = str(path)
    ds = gdal.GetDriverByName("GTiff").Create(path, bands.shape[2], bands.shape[1], bands.shape[0],
                                              _GDAL_TYPES[array.dtype], list(options))
    if ds is None:
        raise OSError(f"GDAL could not create {path}: {gdal.GetLastErrorMsg()}")
    ds.SetGeoTransform(geotransform)
    ds.SetProjection(srs_wkt(epsg))
    for i, data in enumerate(bands, start=1):
        band = ds.GetRasterBand(i)
        if nodata is not None:
            band.SetNoDataValue(float(nodata))
        if band.WriteArray(data) != 0:
            raise OSError(f"GDAL could not write {path}: {gdal.GetLastErrorMsg()}")
    band = None
    ds = None
    return path


def warp(destination, source, **options) -> str:
    """``gdal.Warp``, failing loudly; return the destination path."""
    ds = gdal.Warp(str(destination), str(source), **options)
    if ds is None:
        raise OSError(f"gdal.Warp {source} -> {destination} failed: {gdal.GetLastErrorMsg()}")
    ds = None
    return str(destination)


@dataclass
class Raster:
    array: np.ndarray
    nodata: Optional[float]
    geotransform: tuple
    wkt: str
    width: int
    height: int
    count: int

    @property
    def valid(self) -> np.ndarray:
        if self.nodata is None:
            return ~np.isnan(self.array) if self.array.dtype.kind == "f" else np.ones(self.array.shape, bool)
        return self.array != self.nodata

    def same_crs(self, epsg: int) -> bool:
        mine = osr.SpatialReference()
        mine.ImportFromWkt(self.wkt)
        other = osr.SpatialReference()
        other.ImportFromEPSG(epsg)
        return bool(mine.IsSame(other))


def read_raster(path, band=1) -> Raster:
    ds = gdal.Open(str(path))
    if ds is None:
        raise OSError(f"GDAL cannot open {path}: {gdal.GetLastErrorMsg()}")
    b = ds.GetRasterBand(band)
    raster = Raster(b.ReadAsArray(), b.GetNoDataValue(), ds.GetGeoTransform(), ds.GetProjection(),
                    ds.RasterXSize, ds.RasterYSize, ds.RasterCount)
    b = None
    ds = None
    return raster


def masked_stack(arrays: Sequence[np.ndarray], nodata: Optional[float]) -> np.ndarray:
    """The inputs as one float64 stack with nodata as NaN (the expected values are computed from it)."""
    stack = np.stack([np.asarray(a, np.float64) for a in arrays])
    if nodata is not None:
        stack[stack == nodata] = np.nan
    return stack


def nan_reduce(function, stack: np.ndarray) -> np.ndarray:
    """``function(stack, axis=0)`` for a numpy nan-function; pixels with no valid value give NaN, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return function(stack, axis=0)


# -- processes ---------------------------------------------------------------------------------------------

@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    cmdline: str


def processes() -> List[Proc]:
    """Every live (non-zombie) process visible in /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:  # ended meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if state != "Z":
            found.append(Proc(int(entry), int(ppid), state, cmdline))
    return found


def my_engine() -> Optional[Proc]:
    """The engine driver this test process started, if it runs."""
    for p in processes():
        if p.ppid == os.getpid() and "tilewise.core.runtime.driver" in p.cmdline and "--check" not in p.cmdline:
            return p
    return None


def children_of(pid: int) -> List[Proc]:
    return [p for p in processes() if p.ppid == pid]


def still_running(procs: Sequence[Proc], timeout: float = 5.0) -> List[Proc]:
    """Those of ``procs`` still alive after up to ``timeout`` seconds (a killed process needs a
    moment to go). Orphaned workers are re-parented, so they are followed by pid and command line."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {(p.pid, p.cmdline) for p in processes()}
        left = [p for p in procs if (p.pid, p.cmdline) in alive]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_for(predicate, timeout):
    """``predicate()``'s first true value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return None


# -- running algorithms --------------------------------------------------------------------------------------

def messages():
    """A QgsProcessingFeedback that keeps what the algorithm reports: ``lines`` (pushInfo), ``warnings``
    (pushWarning) and ``text`` (the lines joined). Made here, late: QGIS must be up first."""
    from qgis.core import QgsProcessingFeedback

    class Messages(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines, self.warnings = [], []

        def pushInfo(self, info):  # noqa: N802 (QGIS's name)
            self.lines.append(info)
            super().pushInfo(info)

        def pushWarning(self, warning):  # noqa: N802
            self.warnings.append(warning)
            super().pushWarning(warning)

        @property
        def text(self):
            return "\n".join(self.lines)

    return Messages()


def run(algorithm, parameters, feedback=None, context=None):
    """``processing.run`` (imported late: QGIS puts ``processing`` on sys.path when the session starts)."""
    import processing
    return processing.run(algorithm, parameters, feedback=feedback, context=context)


# -- the scenes of the first-run failure report ------------------------------------------------------------

def reported_scenes(folder, seed: int = 349, holes: float = 0.15):
    """Four 6-band uint8 scenes of 349 x 352 pixels, nodata 0 (as in the report of the first-run
    failure); returns (paths, arrays)."""
    rng = np.random.default_rng(seed)
    paths, arrays = [], []
    for i in range(4):
        a = rng.integers(1, 256, (6, 349, 352)).astype(np.uint8)
        a[rng.random(a.shape) < holes] = 0
        arrays.append(a)
        paths.append(write_raster(os.path.join(str(folder), f"scene{i}.tif"), a, nodata=0))
    return paths, arrays


def assert_band_medians(path, arrays, nodata, bands: Sequence[int], rounded: bool = False) -> None:
    """Each of ``bands`` (1-based) of ``path`` is numpy's nanmedian of that band of ``arrays``
    (``rounded``: to the nearest integer, for an integer output)."""
    for b in bands:
        expected = nan_reduce(np.nanmedian, masked_stack([a[b - 1] for a in arrays], nodata))
        out = read_raster(path, b)
        valid = ~np.isnan(expected)
        np.testing.assert_array_equal(out.valid, valid, err_msg=f"band {b}")
        want = np.rint(expected[valid]) if rounded else expected[valid]
        np.testing.assert_allclose(out.array[valid], want, rtol=1e-6, err_msg=f"band {b}")


def locked_engine_packages(lock_path) -> List[str]:
    """``name==version`` of the ``# [engine]`` section of the repository's lock file, read here
    independently of the plugin's own parser."""
    from packaging.markers import Marker   # the lock holds every platform's pins: those of this Python
    pins, inside = [], False
    for line in open(lock_path, encoding="utf-8").read().replace("\\\n", " ").splitlines():
        if line.startswith("# ["):
            inside = line.startswith("# [engine]")
        elif inside and "==" in line and not line.startswith("#"):
            pin, _, marker = line.split(" --hash")[0].partition(";")
            if not marker.strip() or Marker(marker.strip()).evaluate():
                pins.append(pin.strip())
    return pins


def assert_installed_the_lock(report: str, lock_path) -> None:
    """The set-up report names every locked engine package, at its version, and no other count."""
    pins = locked_engine_packages(lock_path)
    assert len(pins) >= 10, pins
    assert f"Installed {len(pins)} package(s) at their locked versions" in report, report
    for pin in pins:
        name, version = pin.split("==")
        assert f"{name} {version}" in report, (pin, report)


class Errors(qgis.core.QgsProcessingFeedback):
    """Keeps the errors a run reports (a model's exception only names the failing step)."""

    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):  # noqa: N802 (QGIS's name)
        self.errors.append(error)

"""Helpers of the engine tests: synthetic rasters, numpy references, leftover checks.

Every test makes its own data; nothing is downloaded. The numpy references
are computed in float64 on the input stack with nodata turned into NaN.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import rasterio
from affine import Affine

import tilewise
from tilewise.core.paths import JOURNAL_NAME, lock_path, partial_path, workdir_for

#: The folder that holds the ``tilewise`` package, for PYTHONPATH of subprocesses.
PLUGINS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(tilewise.__file__)))

UTM_CRS = "EPSG:32633"
UTM_TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)

#: (dtype, nodata) pairs the equivalence tests run over.
DTYPE_NODATA = [("uint8", 0), ("int16", -9999), ("uint16", 65535), ("float32", float("nan")),
                ("float32", -9999.0)]


def write_raster(path, data, *, crs: Optional[str] = UTM_CRS, transform=UTM_TRANSFORM,
                 nodata: Optional[float] = None, descriptions: Optional[Sequence[str]] = None,
                 **profile) -> str:
    """Write a 2-D (one band) or 3-D (bands, rows, cols) array as a GeoTIFF; return the path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    count, height, width = data.shape
    options = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                   crs=crs, transform=transform, nodata=nodata)
    options.update(profile)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data)
        for b, text in enumerate(descriptions or (), start=1):
            dst.set_band_description(b, text)
    return str(path)


def read_raster(path):
    """``(array of all bands, dataset profile)`` of a raster."""
    with rasterio.open(path) as src:
        return src.read(), src.profile


def random_layer(rng: np.random.Generator, dtype: str, shape, nodata: Optional[float],
                 hole_fraction: float = 0.25) -> np.ndarray:
    """Random values of ``dtype`` (with many ties for integers), ``hole_fraction`` of them nodata."""
    if dtype == "uint8":
        a = rng.integers(1, 30, shape).astype(dtype)           # few values: many ties for the median
    elif dtype == "int16":
        a = rng.integers(-3000, 3000, shape).astype(dtype)
    elif dtype == "uint16":
        a = rng.integers(0, 60000, shape).astype(dtype)
    else:
        a = (rng.standard_normal(shape) * 100).astype(dtype)
    if nodata is not None:
        a[rng.random(shape) < hole_fraction] = nodata
    return a


def to_nan_stack(layers: Sequence[np.ndarray], nodata: Optional[float]) -> np.ndarray:
    """float64 copy of the layers with nodata as NaN (the reference's input)."""
    stack = np.stack(layers).astype(np.float64)
    if nodata is not None and not np.isnan(nodata):
        stack[np.stack(layers) == nodata] = np.nan
    return stack


def numpy_reference(stack: np.ndarray, statistic: str, percentiles: Sequence[float] = ()) -> np.ndarray:
    """The numpy answer along axis 0, float64, NaN where no observation; shape (k, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN slices
        if statistic == "median":
            return np.nanmedian(stack, axis=0)[np.newaxis]
        if statistic == "mean":
            return np.nanmean(stack, axis=0)[np.newaxis]
        if statistic == "min":
            return np.nanmin(stack, axis=0)[np.newaxis]
        if statistic == "max":
            return np.nanmax(stack, axis=0)[np.newaxis]
        if statistic == "std":
            return np.nanstd(stack, axis=0, ddof=0)[np.newaxis]
        if statistic == "count":
            return np.sum(~np.isnan(stack), axis=0, dtype=np.float64)[np.newaxis]
        if statistic == "percentile":
            return nanpercentile_by_count(stack, percentiles)
    raise ValueError(statistic)


def nanpercentile_by_count(stack: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``np.nanpercentile(stack, percentiles, axis=0)`` (linear), computed fast.

    ``np.nanpercentile`` loops over pixels in Python when there are NaNs (seconds
    for a 500 x 380 stack), so pixels are grouped by their number of valid
    observations ``k`` and ``np.percentile`` is applied to each NaN-free group.
    """
    flat = stack.reshape(stack.shape[0], -1)
    ordered = np.sort(flat, axis=0)                           # NaN sorts last
    counts = np.sum(~np.isnan(flat), axis=0)
    out = np.full((len(percentiles), flat.shape[1]), np.nan)
    for k in np.unique(counts[counts > 0]):
        cols = counts == k
        out[:, cols] = np.percentile(ordered[:k, cols], list(percentiles), axis=0, method="linear")
    return out.reshape((len(percentiles),) + stack.shape[1:])


def as_output(reference: np.ndarray, nodata: float = -9999.0, dtype: str = "float32") -> np.ndarray:
    """What a float output file should hold for a float64 reference."""
    return np.where(np.isnan(reference), nodata, reference).astype(dtype)


def leftovers(output) -> List[str]:
    """Every file a run may leave beside ``output`` (output, work folder, partial COG, lock file) that exists."""
    names = [str(output), workdir_for(str(output)), partial_path(str(output)), lock_path(str(output))]
    return [n for n in names if os.path.lexists(n)]


class Stack:
    """A time series written as files, with its float64 NaN reference stack."""

    def __init__(self, paths: List[str], stack: np.ndarray, dtype: str, nodata: Optional[float]) -> None:
        self.paths = paths
        self.stack = stack
        self.dtype = dtype
        self.nodata = nodata

    @property
    def shape(self):
        return self.stack.shape


def build_stack(folder: Path, dtype: str, nodata: Optional[float], n_layers: int,
                height: int = 380, width: int = 500, seed: int = 0) -> Stack:
    """``n_layers`` single-band rasters with random holes, plus pixels that are nodata in every
    layer (a block) and pixels with exactly one observation (another block)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    layers = [random_layer(rng, dtype, (height, width), nodata) for _ in range(n_layers)]
    if nodata is not None:
        for i, a in enumerate(layers):
            a[10:30, 20:50] = nodata                          # no observation at all
            if i != 2:
                a[40:60, 20:50] = nodata                      # exactly one observation
    paths = [write_raster(folder / f"{dtype}_{i:02d}.tif", a, nodata=nodata) for i, a in enumerate(layers)]
    return Stack(paths, to_nan_stack(layers, nodata), dtype, nodata)


def subprocess_env() -> Dict[str, str]:
    """Environment for engine subprocesses: the ``tilewise`` package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PLUGINS_DIR, env.get("PYTHONPATH", "")) if p)
    return env


def in_small_disk(command, folder, size="1m"):
    """Run a shell ``command`` where ``folder`` is a fresh tmpfs of ``size`` (a private mount namespace, so
    nothing shows outside and nothing needs unmounting; works for root and, where user namespaces are
    allowed, for any user). Its output ends with a listing of the tmpfs after the command."""
    script = (f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))} && cd {shlex.quote(str(folder))} "
              f"&& {{ {command}; echo \"rc=$?\"; }}; echo LEFT:; ls -A {shlex.quote(str(folder))}")
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


def journal(output) -> List[str]:
    """The tile files the work folder's journal of ``output`` lists, in order (none without a journal)."""
    path = Path(workdir_for(str(output))) / JOURNAL_NAME
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def signals_as_a_terminal_sends_them() -> None:
    """A ``preexec_fn`` for a run that a test stops with Ctrl+C (SIGINT) or a closing terminal (SIGHUP): both
    back to their defaults. A shell starts a background job (``make test &``, ``nohup``) with SIGINT or SIGHUP
    ignored, its children inherit that, and Python then leaves SIGINT ignored: as it should, a run so started
    would not stop on Ctrl+C, and the test would wait out its server instead."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

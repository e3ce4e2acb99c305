"""Byte identity of gap filling: the tiled run writes, byte for byte, the COG (and flags COG) that the
kernel's whole-array result gives through the same sink as one tile.

The reference reads the inputs with rasterio, masks them with numpy, fills the whole (dates, rows, cols)
stack at once with :func:`gapfill_stack`, casts it with :func:`to_output` and hands it to the job's own
sink as a single tile. So a change in how tiles are read, masked, filled, cast or handed to the sink
(a shortcut that skips a copy, a float type, a reordered date) shows as a changed byte, while the
assembly itself, which both sides share, is not what is tested here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
import rasterio

from support import write_raster
from tilewise.core.grid import Tile
from tilewise.core.io.cog import to_output
from tilewise.core.kernels.gapfill import gapfill_stack
from tilewise.core.operations.gapfill import GapfillSettings, gapfill, plan_run
from tilewise.core.options import split_options

SHAPE = (37, 45)          # not a multiple of the tile sizes below: edge tiles are narrower
NODATA = -9999.0
#: Irregular dates over three years (the seasonal method needs other years), shuffled on disk.
DATES = sorted(dt.date(2021, 1, 4) + dt.timedelta(days=int(d))
               for d in np.random.default_rng(1).choice(np.arange(3 * 365), 15, replace=False))
MASKED = (3, 8)           # QA classes masked in the "mask" cases


def _series(folder, dtype):
    """Two-band inputs, values (``dtype``, nodata -9999 with 30 % gaps, a block never observed) and QA
    classes 0..9; returns the paths (newest first) and the values as float64 with NaN, and the QA."""
    rng = np.random.default_rng(5)
    scale = 1000.0 if dtype == "int16" else 1.0
    values = (rng.normal(0.5, 0.2, (len(DATES),) + SHAPE) * scale).astype(dtype)
    gaps = rng.random(values.shape) < 0.3
    gaps[:, 4:7, 9:12] = True
    values[gaps] = NODATA
    qa = rng.integers(0, 10, values.shape).astype(dtype)
    paths = [write_raster(folder / f"v_{d.isoformat()}.tif", np.stack([values[i], qa[i]]), nodata=NODATA)
             for i, d in enumerate(DATES)]
    return paths[::-1]


CASES = {
    # name: (input type, gapfill options)
    "linear": ("float32", dict(method="linear", band=1)),
    "nearest, max gap": ("float32", dict(method="nearest", max_gap=60, band=1)),
    "previous, edges": ("float32", dict(method="previous", edges=1, band=1)),
    "next, flags": ("float32", dict(method="next", band=1, flags="flags.tif")),
    "seasonal, targets": ("float32", dict(method="seasonal", edges=1, season_days=40, band=1, flags="flags.tif",
                                          target_dates="2021-02-01,20,2023-11-30")),
    "mask, NaN nodata": ("float32", dict(method="linear", mask_band=2, mask_values=MASKED, output_nodata=float("nan"),
                                         flags="flags.tif")),
    "int16 in, float64 out": ("int16", dict(method="linear", band=1, output_type="float64", edges=1)),
    "int16 out": ("float32", dict(method="linear", band=1, output_type="int16", flags="flags.tif")),
    "float64 work": ("float64", dict(method="seasonal", years_window=1, band=1, max_gap=200)),
    "uncompressed": ("float32", dict(method="linear", band=1, compression="NONE", overviews=False, flags="flags.tif")),
}


def _reference(paths, out, kwargs, tmp_path):
    """The output of ``kwargs`` written through the job's sink as one tile, from a whole-array fill."""
    options = {k: v for k, v in kwargs.items() if k != "method"}
    own, shared = split_options(options, GapfillSettings, where="test", defaults={"output_type": None},
                                method=kwargs["method"])
    if own.flags:
        own = replace(own, flags=str(tmp_path / "ref_flags.tif"))
    job = plan_run(paths, str(out), own, shared)
    stack = np.empty((len(paths),) + SHAPE, job.work_dtype)
    for i, path in enumerate(paths):
        with rasterio.open(path) as src:
            v, qa = src.read(1).astype(np.float64), src.read(2)
        v[v == NODATA] = np.nan
        if job.mask is not None:
            v[np.isin(qa, MASKED)] = np.nan
        stack[i] = v
    values, flags = gapfill_stack(stack, np.asarray(job.days), job.fill)
    tile = Tile(0, 0, 0, SHAPE[0], SHAPE[1])
    work = tmp_path / "ref_work"
    work.mkdir()
    sink = job.sink
    arrays = (to_output(values, job.outputs[0]),) + ((flags,) if job.flags is not None else ())
    sink.write(sink.target(str(work), tile), tile, *arrays)
    sink.finish(str(work), [tile])
    return job


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("tile_size, workers", [(16, 1), (24, 2)])
def test_tiled_run_writes_the_bytes_of_the_whole_array_fill(case, tile_size, workers, tmp_path):
    dtype, kwargs = CASES[case]
    paths = _series(tmp_path, dtype)
    out, ref = tmp_path / "out.tif", tmp_path / "ref.tif"
    job = _reference(paths, ref, kwargs, tmp_path)
    options = {k: v for k, v in kwargs.items() if k != "method"}
    if options.get("flags"):
        options["flags"] = str(tmp_path / "flags.tif")
    gapfill(paths, str(out), kwargs["method"], tile_size=tile_size, workers=workers, **options)
    with rasterio.open(out) as src:
        assert src.count == len(job.band_names) and src.dtypes[0] == job.outputs[0].dtype
        assert src.count > 1 and src.width == SHAPE[1]
    assert out.read_bytes() == ref.read_bytes()
    if kwargs.get("flags"):
        assert (tmp_path / "flags.tif").read_bytes() == (tmp_path / "ref_flags.tif").read_bytes()

"""The runner's table sink: each tile writes its rows to the work folder, finishing merges every tile's rows
into one table. A small table-producing operation (per zone of a class raster: its pixel count and the
median of a value raster) checks it against numpy on the whole arrays: zones span tiles, and the median of
a zone is only exact when the merge gets every tile's values of it. A failed run resumed reuses the
finished tiles' rows and gives the same table."""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from tilewise.core.errors import TileError
from tilewise.core.grid import Grid, Tile
from tilewise.core.options import RunOptions
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.paths import workdir_for
from tilewise.core.runtime.runner import TileBudget, TiledJob, run_tiles
from tilewise.core.runtime.sinks import TableSink
from tilewise.core.io.vector import Table

SHAPE = (40, 60)      # 16-pixel tiles: 3 x 4 = 12 tiles


def merge_zones(parts, decimals: int = 3) -> Table:
    """Every tile's (zone, value) rows -> one row per zone: count and exact median."""
    zones, values = [], []
    for _tile, part in parts:
        zones.append(part["zone"])
        values.append(part["value"])
    zone = np.concatenate(zones)
    value = np.concatenate(values)
    ids = np.unique(zone)
    return Table({"zone": ids, "count": np.array([(zone == z).sum() for z in ids], np.int64),
                  "median": np.array([round(float(np.median(value[zone == z])), decimals) for z in ids])})


@dataclass(frozen=True)
class ZoneJob(TiledJob):
    grid: Grid
    classes: str
    values: str
    output: str

    @property
    def sink(self) -> TableSink:
        return TableSink(self.output, functools.partial(merge_zones, decimals=3))

    @property
    def budget(self) -> TileBudget:
        return TileBudget(2)


def zone_tile(job: ZoneJob, tile: Tile, target: str) -> int:
    window = Window(tile.col_off, tile.row_off, tile.width, tile.height)
    with rasterio.open(job.classes) as c, rasterio.open(job.values) as v:
        zone = c.read(1, window=window).ravel()
        value = v.read(1, window=window).ravel()
    job.sink.write(target, tile, {"zone": zone.astype(np.int32), "value": value.astype(np.float64)})
    return tile.index


def fail_on_tile_five(job: ZoneJob, tile: Tile, target: str) -> int:
    if tile.index == 5:
        raise TileError(f"{tile.name}: reading {job.values} failed: connection reset")
    return zone_tile(job, tile, target)


def read_csv(path) -> list:
    with open(path, newline="") as f:
        return [(int(r["zone"]), int(r["count"]), float(r["median"])) for r in csv.DictReader(f)]


@pytest.fixture
def job(tmp_path, raster):
    rng = np.random.default_rng(4)
    rows = np.arange(SHAPE[0])[:, None]
    cols = np.arange(SHAPE[1])[None, :]
    classes = (rows // 13) * 10 + cols // 17            # zones of 13 x 17 pixels across the 16-pixel tiles
    values = rng.normal(100, 30, SHAPE).astype("float32")
    c = raster("classes.tif", classes.astype("int16"))
    v = raster("values.tif", values)
    with rasterio.open(c) as src:
        grid = Grid(src.crs.to_wkt(), tuple(src.transform)[:6], src.width, src.height)
    return ZoneJob(grid, c, v, str(tmp_path / "zones.csv")), classes, values


def expected(classes, values) -> list:
    return [(int(z), int((classes == z).sum()), round(float(np.median(values[classes == z].astype(np.float64))), 3))
            for z in np.unique(classes)]


@pytest.mark.parametrize("workers", [1, 2])
def test_rows_of_every_tile_merge_into_the_whole_arrays_table(job, workers):
    job, classes, values = job
    run = RunOptions(tile_size=16, executor=SerialExecutor() if workers == 1 else None, workers=workers)

    report = run_tiles(job, zone_tile, run)

    assert (report.tiles, report.rows, report.outputs) == (12, len(np.unique(classes)), (job.output,))
    assert read_csv(job.output) == expected(classes, values)
    assert not os.path.exists(workdir_for(job.output))


def test_a_failed_table_run_resumed_reuses_the_finished_parts(job):
    job, classes, values = job
    with pytest.raises(TileError, match="connection reset"):
        run_tiles(job, fail_on_tile_five, RunOptions(tile_size=16, executor=SerialExecutor(), resume=True))
    parts = sorted(p.name for p in Path(workdir_for(job.output)).glob("part_*.npz"))
    assert parts == [f"part_{i:07d}.npz" for i in range(5)]
    assert not os.path.exists(job.output)

    report = run_tiles(job, zone_tile, RunOptions(executor=SerialExecutor(), resume=True))

    assert (report.tiles, report.reused) == (12, 5)
    assert read_csv(job.output) == expected(classes, values)

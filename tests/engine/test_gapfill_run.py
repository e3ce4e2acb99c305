"""tilewise gapfill through real files: the API and the CLI against numpy, pandas and xarray per pixel;
QA bit masks against numpy bitwise logic; tiles, workers, resume and a Dask cluster give one output."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from support import PLUGINS_DIR, leftovers, read_raster, subprocess_env, write_raster
from test_gapfill import _interp_reference
from tilewise.core.dates import day_numbers
from tilewise.core.errors import InputError, MaskError
from tilewise.core.kernels.gapfill_plan import (FLAG_EDGE, FLAG_INTERPOLATED, FLAG_MISSING, FLAG_OBSERVED,
                                              FLAG_SEASONAL)
from tilewise.core.operations.gapfill import gapfill, plan_run, gapfill_tile, GapfillSettings
from tilewise.core.options import RunOptions
from tilewise.core.runtime.executor import SerialExecutor
from tilewise.core.runtime.runner import run_tiles

SHAPE = (40, 56)
NODATA = -9999.0
#: Irregular dates (4 to 31 days apart), written in shuffled order: the output must be in date order.
DATES = [dt.date(2024, 1, 3) + dt.timedelta(days=int(d)) for d in np.cumsum([0, 5, 17, 4, 31, 9, 12, 26, 6, 20])]


def _values(seed=3, gap_share=0.35):
    """(dates, rows, cols) float32 with NaN gaps; a block of pixels missing at every date."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0.5, 0.2, (len(DATES),) + SHAPE).astype(np.float32)
    v[rng.random(v.shape) < gap_share] = np.nan
    v[:, 5:8, 10:14] = np.nan
    return v


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """One file per date (ndvi_YYYY-MM-DD.tif, nodata -9999), written in shuffled order."""
    folder = tmp_path_factory.mktemp("series")
    values = _values()
    paths = {}
    for i in np.random.default_rng(0).permutation(len(DATES)):
        data = np.where(np.isnan(values[i]), NODATA, values[i]).astype(np.float32)
        paths[i] = write_raster(folder / f"ndvi_{DATES[i].isoformat()}.tif", data, nodata=NODATA)
    return [paths[i] for i in sorted(paths, key=lambda k: -k)], values   # inputs given newest first


def _read(path):
    with rasterio.open(path) as src:
        data = src.read().astype(np.float64)
        data[data == src.nodata] = np.nan
        return data, src.descriptions, src.profile


def _days():
    return day_numbers(DATES)


def test_linear_equals_numpy_interp_per_pixel_and_bands_are_iso_dates(series, tmp_path):
    paths, values = series
    out, flags = tmp_path / "filled.tif", tmp_path / "flags.tif"
    report = gapfill(paths, str(out), "linear", edges=1, flags=str(flags), tile_size=16, workers=1)
    got, names, profile = _read(out)
    want = _interp_reference(values.reshape(len(DATES), -1), _days(), _days(), 1).reshape(got.shape)
    np.testing.assert_array_equal(got, want.astype(np.float64))
    assert names == tuple(d.isoformat() for d in DATES)
    assert profile["dtype"] == "float32" and report.outputs == (str(out), str(flags))
    observed = ~np.isnan(values)
    np.testing.assert_array_equal(got[observed], values[observed])       # bit for bit
    f, fnames, fprofile = _read(flags)
    assert fprofile["dtype"] == "uint8" and fnames == names
    assert leftovers(out) == [str(out)]                                   # no work folder, no partial COG


def _flags_of(path):
    with rasterio.open(path) as src:
        return src.read()


def test_flags_agree_with_values(series, tmp_path):
    paths, values = series
    out, flags = tmp_path / "f.tif", tmp_path / "flags.tif"
    gapfill(paths, str(out), "nearest", edges=1, max_gap=30, flags=str(flags), tile_size=32, workers=1)
    got, _, _ = _read(out)
    f = _flags_of(flags)
    observed = ~np.isnan(values)
    assert np.array_equal(f == FLAG_OBSERVED, observed)
    assert np.array_equal(f == FLAG_MISSING, np.isnan(got))
    assert set(np.unique(f)) <= {FLAG_OBSERVED, FLAG_INTERPOLATED, FLAG_EDGE, FLAG_MISSING}
    assert (f == FLAG_EDGE).any() and (f == FLAG_INTERPOLATED).any() and (f == FLAG_MISSING).any()
    assert (f[:, 5:8, 10:14] == FLAG_MISSING).all()                       # all-missing pixels stay missing
    assert np.isnan(got[:, 5:8, 10:14]).all()


def _xr(values):
    time = np.datetime64("1970-01-01", "ns") + _days().astype("timedelta64[D]")
    return xr.DataArray(values.astype(np.float64), dims=("time", "y", "x"), coords={"time": time})


@pytest.mark.parametrize("method", ["nearest", "previous", "next"])
def test_nearest_previous_next_equal_xarray(series, tmp_path, method):
    paths, values = series
    out = tmp_path / f"{method}.tif"
    gapfill(paths, str(out), method, tile_size=24, workers=1)
    got, _, _ = _read(out)
    da = _xr(values)
    if method == "nearest":
        want = da.interpolate_na("time", method="nearest")
    elif method == "previous":
        want = da.ffill("time")
    else:
        want = da.bfill("time")
    # EDGES 0: what lies before the first (after the last) valid observation stays missing
    inside = da.ffill("time").notnull() & da.bfill("time").notnull()
    np.testing.assert_array_equal(got, want.where(inside).values.astype(np.float32).astype(np.float64))


def test_max_gap_equals_xarray(series, tmp_path):
    paths, values = series
    out = tmp_path / "gap.tif"
    gapfill(paths, str(out), "linear", max_gap=30, tile_size=16, workers=1)
    got, _, _ = _read(out)
    want = _xr(values).interpolate_na("time", method="linear", max_gap=np.timedelta64(30, "D"))
    np.testing.assert_allclose(got, want.values.astype(np.float32), rtol=2e-7, atol=1e-7)
    np.testing.assert_array_equal(np.isnan(got), want.isnull().values)
    unlimited = _xr(values).interpolate_na("time", method="linear")
    assert np.isnan(got).sum() > unlimited.isnull().sum()                 # the limit left gaps empty


def test_max_gap_and_edges_on_one_pixel(tmp_path):
    """Observations at days 0, 10, 50, 60 of 0..80 with a gap of 40 days: MAX_GAP 30 leaves it empty."""
    days = [0, 10, 20, 30, 40, 50, 60, 70, 80]
    obs = {10: 1.0, 50: 5.0, 60: 6.0}
    paths = []
    for d in days:
        date = dt.date(2024, 1, 1) + dt.timedelta(days=d)
        paths.append(write_raster(tmp_path / f"s_{date:%Y%m%d}.tif",
                                  np.full((8, 8), obs.get(d, NODATA), np.float32), nodata=NODATA))
    results = {}
    for name, kw in {"leave": dict(max_gap=30), "edges": dict(max_gap=30, edges=1), "nolimit": dict(edges=1)}.items():
        out = tmp_path / f"{name}.tif"
        gapfill(paths, str(out), "linear", flags=str(tmp_path / f"{name}_flags.tif"), workers=1, **kw)
        results[name] = (_read(out)[0][:, 0, 0], _flags_of(tmp_path / f"{name}_flags.tif")[:, 0, 0])
    nan = np.nan
    np.testing.assert_array_equal(results["leave"][0], [nan, 1, nan, nan, nan, 5, 6, nan, nan])
    np.testing.assert_array_equal(results["edges"][0], [1, 1, nan, nan, nan, 5, 6, 6, 6])
    np.testing.assert_array_equal(results["edges"][1], [3, 0, 255, 255, 255, 0, 0, 3, 3])
    np.testing.assert_array_equal(results["nolimit"][0], [1, 1, 2, 3, 4, 5, 6, 6, 6])


def test_seasonal_with_a_known_answer(tmp_path):
    """Three years on the same days; a missing date takes the median of the other years' same season."""
    paths = []
    for year, level in ((2021, 1.0), (2022, 3.0), (2023, 2.0)):
        for month in (3, 6, 9):
            date = dt.date(year, month, 15)
            value = level * month
            if (year, month) == (2022, 6):
                value = NODATA
            paths.append(write_raster(tmp_path / f"x_{date}.tif", np.full((8, 8), value, np.float32), nodata=NODATA))
    out, flags = tmp_path / "seasonal.tif", tmp_path / "flags.tif"
    gapfill(paths, str(out), "seasonal", season_days=30, flags=str(flags), workers=1)
    got, names, _ = _read(out)
    k = names.index("2022-06-15")
    assert got[k, 0, 0] == np.median([1.0 * 6, 2.0 * 6])                # 2021-06 and 2023-06
    assert _flags_of(flags)[k, 0, 0] == FLAG_SEASONAL


def test_target_dates_resample_the_series(series, tmp_path):
    paths, values = series
    out = tmp_path / "every10.tif"
    gapfill(paths, str(out), "linear", target_dates="2024-01-05,10,2024-05-30", tile_size=32, workers=1)
    got, names, _ = _read(out)
    targets = day_numbers([dt.date(2024, 1, 5) + dt.timedelta(days=10 * k) for k in range(len(names))])
    assert names[0] == "2024-01-05" and names[-1] == "2024-05-24"
    want = _interp_reference(values.reshape(len(DATES), -1), _days(), targets, 0).reshape(got.shape)
    np.testing.assert_array_equal(got, want.astype(np.float64))


def test_one_cog_per_date_in_a_folder(series, tmp_path):
    paths, _ = series
    single = tmp_path / "single.tif"
    gapfill(paths, str(single), "previous", edges=1, workers=1, tile_size=32)
    folder = tmp_path / "per_date"
    report = gapfill(paths, str(folder), "previous", edges=1, per_date=True, workers=1, tile_size=32)
    assert [Path(p).name for p in report.outputs] == [f"filled_{d}.tif" for d in DATES]
    whole = _read(single)[0]
    for k, p in enumerate(report.outputs):
        data, names, _ = _read(p)
        assert names == (DATES[k].isoformat(),)
        np.testing.assert_array_equal(data[0], whole[k])
    assert sorted(x.name for x in folder.iterdir()) == sorted(Path(p).name for p in report.outputs)


def test_tile_sizes_and_workers_give_one_output(series, tmp_path, pool):
    paths, _ = series
    outs = []
    for k, kw in enumerate([dict(tile_size=8, workers=1), dict(tile_size=24, executor=pool),
                            dict(tile_size=64, workers=2)]):
        out = tmp_path / f"t{k}.tif"
        gapfill(paths, str(out), "seasonal", edges=1, max_gap=40, flags=str(tmp_path / f"f{k}.tif"), **kw)
        outs.append((read_raster(out)[0], read_raster(tmp_path / f"f{k}.tif")[0]))
    for values, flags in outs[1:]:
        np.testing.assert_array_equal(values, outs[0][0])
        np.testing.assert_array_equal(flags, outs[0][1])


def _qa_series(tmp_path, dtype="uint16"):
    """Two-band inputs: values and a Landsat-like QA band of random bits (float32, as GeoTIFF bands share
    one type), and the same QA bands as uint16 files of their own (qa_YYYYMMDD.tif)."""
    rng = np.random.default_rng(9)
    values = rng.normal(0.4, 0.1, (len(DATES),) + SHAPE).astype(np.float32)
    qa = rng.integers(0, 2 ** 16 if dtype == "uint16" else 2 ** 8, (len(DATES),) + SHAPE).astype(dtype)
    qa[rng.random(qa.shape) < 0.5] &= np.array(0b1111111111100001, np.uint16).astype(dtype)  # many clear pixels
    paths = [write_raster(tmp_path / f"lc_{d:%Y%m%d}.tif", np.stack([values[i], qa[i].astype(np.float32)]))
             for i, d in enumerate(DATES)]
    for i, d in enumerate(DATES):
        write_raster(tmp_path / f"qa_{d:%Y%m%d}.tif", qa[i])
    return paths, values, qa


def _qa_layers(tmp_path):
    return [str(tmp_path / f"qa_{d:%Y%m%d}.tif") for d in DATES]


def test_bit_masks_equal_numpy_bitwise_logic(tmp_path):
    paths, values, qa = _qa_series(tmp_path)
    out, flags = tmp_path / "masked.tif", tmp_path / "flags.tif"
    gapfill(paths, str(out), "linear", mask_band=2, mask_preset="landsat-c2-qa", mask_bits="5", mask_values=[7],
            flags=str(flags), workers=1, tile_size=16)
    drop = ((qa & (1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5)) != 0) | (qa == 7)
    f = _flags_of(flags)
    np.testing.assert_array_equal(f == FLAG_OBSERVED, ~drop)
    assert 0.2 < drop.mean() < 0.9
    kept = np.where(drop, np.nan, values)
    want = _interp_reference(kept.reshape(len(DATES), -1), _days(), _days(), 0).reshape(kept.shape)
    np.testing.assert_array_equal(_read(out)[0], want.astype(np.float64))


def test_bit_masks_in_the_composite_too(tmp_path):
    from tilewise.core.operations.composite import composite
    paths, values, qa = _qa_series(tmp_path)
    out = tmp_path / "max.tif"
    composite(paths, str(out), "max", bands=[1], mask_layers=_qa_layers(tmp_path), mask_bits=[1, 3, 4], workers=1,
              tile_size=32)
    drop = (qa & 0b11010) != 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                   # pixels masked at every date
        want = np.nanmax(np.where(drop, np.nan, values), axis=0)
    got, _, _ = _read(out)
    np.testing.assert_array_equal(got[0], np.where(np.isnan(want), np.nan, want))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(band=1, mask_layers="qa", mask_bits="16"), MaskError, r"MASK_BITS \[16\] do not exist .*qa_20240103.tif, "
                                                               "which is uint16"),
    (dict(mask_band=2), MaskError, "no mask values, bits or preset"),
    (dict(band=1, mask_preset="s2-scl"), MaskError, "no mask band or mask layers"),
    (dict(), InputError, "pick the band to fill"),
    (dict(band=3), InputError, "Band 3 does not exist"),
])
def test_mask_and_band_errors_are_explained(tmp_path, kwargs, error, match):
    paths, _, _ = _qa_series(tmp_path)
    if kwargs.get("mask_layers") == "qa":
        kwargs = dict(kwargs, mask_layers=_qa_layers(tmp_path))
    with pytest.raises(error, match=match):
        gapfill(paths, str(tmp_path / "x.tif"), workers=1, **kwargs)
    assert not (tmp_path / "x.tif").exists()


def test_dates_for_undated_files_and_a_warning_for_a_contradicted_entry(tmp_path):
    a = write_raster(tmp_path / "a_2024-05-12.tif", np.full((8, 8), 1.0, np.float32), nodata=NODATA)
    b = write_raster(tmp_path / "b.tif", np.full((8, 8), NODATA, np.float32), nodata=NODATA)
    c = write_raster(tmp_path / "c.tif", np.full((8, 8), 3.0, np.float32), nodata=NODATA)
    logs = []
    gapfill([a, b, c], str(tmp_path / "x.tif"), dates="2024-05-13,2024-05-22,2024-06-01", log=logs.append, workers=1)
    got, names, _ = _read(tmp_path / "x.tif")
    assert names == ("2024-05-12", "2024-05-22", "2024-06-01")
    assert got[1, 0, 0] == np.float32(1 + 2 * 10 / 20)
    warned = [m for m in logs if m.startswith("Warning:") and "a_2024-05-12.tif" in m]
    assert len(warned) == 1 and "DATES gives 2024-05-13" in warned[0]


def test_duplicate_dates_and_undated_seasonal_are_refused(tmp_path):
    a = write_raster(tmp_path / "a_2024-05-12.tif", np.ones((8, 8), np.float32))
    b = write_raster(tmp_path / "b_20240512.tif", np.ones((8, 8), np.float32))
    with pytest.raises(InputError, match="same date 2024-05-12"):
        gapfill([a, b], str(tmp_path / "x.tif"))
    u = [write_raster(tmp_path / f"u{i}.tif", np.ones((8, 8), np.float32)) for i in range(2)]
    with pytest.raises(InputError, match="the seasonal method needs them"):
        gapfill(u, str(tmp_path / "x.tif"), "seasonal")


def test_resume_reuses_finished_tiles_and_gives_the_uninterrupted_output(series, tmp_path):
    paths, _ = series
    fresh = tmp_path / "fresh.tif"
    gapfill(paths, str(fresh), "linear", flags=str(tmp_path / "fresh_flags.tif"), tile_size=16, workers=1)
    out = tmp_path / "out.tif"
    job = plan_run(paths, str(out), GapfillSettings(flags=str(tmp_path / "flags.tif")))

    def fail_on_three(job, tile, target):
        if tile.index == 3:
            raise RuntimeError("tile 3 failed")
        return gapfill_tile(job, tile, target)

    with pytest.raises(Exception, match="tile 3"):
        run_tiles(job, fail_on_three, RunOptions(tile_size=16, executor=SerialExecutor(), resume=True))
    report = gapfill(paths, str(out), "linear", flags=str(tmp_path / "flags.tif"), workers=1, resume=True)
    assert report.reused == 3 and report.tiles == 12
    assert out.read_bytes() == fresh.read_bytes()
    assert (tmp_path / "flags.tif").read_bytes() == (tmp_path / "fresh_flags.tif").read_bytes()


def test_cli_gapfill_with_a_preset_and_bits(tmp_path):
    paths, values, qa = _qa_series(tmp_path)
    out = tmp_path / "cli.tif"
    proc = subprocess.run([sys.executable, "-m", "tilewise", "gapfill", "-q", "--method", "linear", "--max-gap", "60",
                           "--mask-band", "2", "--mask-preset", "landsat-c2-qa", "--mask-bits", "0", "--band", "1",
                           "--flags", str(tmp_path / "cli_flags.tif"), "--tile-size", "16", "-j", "1",
                           "-o", str(out), str(tmp_path / "lc_*.tif")],
                          cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    api = tmp_path / "api.tif"
    gapfill(paths, str(api), "linear", max_gap=60, mask_band=2, mask_preset=2, mask_bits=[0], band=1,
            flags=str(tmp_path / "api_flags.tif"), tile_size=16, workers=1)
    np.testing.assert_array_equal(read_raster(out)[0], read_raster(api)[0])
    drop = (qa & 0b11111) != 0
    np.testing.assert_array_equal(_flags_of(tmp_path / "cli_flags.tif") == FLAG_OBSERVED, ~drop)
    assert "cli.tif" in proc.stdout


def test_driver_runs_the_gapfill_operation(series, tmp_path):
    paths, _ = series
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"operation": "gapfill", "params": {
        "inputs": paths, "output": str(tmp_path / "d.tif"), "method": 3, "edges": 1, "workers": 1}}))
    proc = subprocess.run([sys.executable, "-m", "tilewise.core.runtime.driver", str(job)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300, cwd=PLUGINS_DIR)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "done", proc.stdout + proc.stderr
    ref = tmp_path / "ref.tif"
    gapfill(paths, str(ref), "next", edges="nearest", workers=1)
    np.testing.assert_array_equal(read_raster(tmp_path / "d.tif")[0], read_raster(ref)[0])


def test_python_api_on_a_local_dask_cluster(series, tmp_path):
    from distributed import Client, LocalCluster
    paths, _ = series
    local = tmp_path / "local.tif"
    gapfill(paths, str(local), "linear", edges=1, tile_size=16, workers=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        report = gapfill(paths, str(tmp_path / "dask.tif"), "linear", edges=1, tile_size=16, scheduler=client)
    assert report.workers == 2
    assert (tmp_path / "dask.tif").read_bytes() == local.read_bytes()

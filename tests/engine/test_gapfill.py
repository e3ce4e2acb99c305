"""Gap-filling kernels against numpy.interp, pandas and xarray, and the rules of tilewise.core.kernels.gapfill_plan."""

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from tilewise.core.dates import dates_from_days, day_numbers
from tilewise.core.errors import ParameterError
from tilewise.core.kernels.gapfill_plan import (EDGE_MODES, FLAG_EDGE, FLAG_INTERPOLATED, FLAG_MISSING, FLAG_OBSERVED,
                                   FLAG_SEASONAL, MAX_TARGETS, METHODS, GapfillOptions, RegularDates, output_dates,
                                   parse_target_dates, plan_gapfill, season_offset, season_table, target_days)
from tilewise.core.kernels.gapfill import gapfill_stack

D = dt.date


def _series(seed, n_dates, n_pix, gap_share, dtype="float32", start=19000):
    """Irregular dates (1 to 25 days apart, shuffled), random values, ``gap_share`` of them missing,
    and a few pixels with no observation at all."""
    rng = np.random.default_rng(seed)
    days = start + np.cumsum(rng.integers(1, 26, n_dates)).astype(np.float64)
    stack = rng.normal(100, 30, (n_dates, n_pix)).astype(dtype)
    stack[rng.random(stack.shape) < gap_share] = np.nan
    stack[:, rng.random(n_pix) < 0.02] = np.nan
    return days, stack


def _fill(stack, days, **options):
    return gapfill_stack(stack, days, plan_gapfill(**options))


def _interp_reference(stack, days, targets, edges):
    """Per pixel: numpy.interp through the valid observations (constant beyond them: EDGES 1)."""
    order = np.argsort(days)
    d, s = days[order], stack[order]
    out = np.full((targets.size, s.shape[1]), np.nan)
    for p in range(s.shape[1]):
        ok = ~np.isnan(s[:, p])
        if not ok.any():
            continue
        dv, vv = d[ok], s[ok, p].astype(np.float64)
        out[:, p] = np.interp(targets, dv, vv)
        if edges == 0:
            out[(targets < dv[0]) | (targets > dv[-1]), p] = np.nan
    return out.astype(stack.dtype)


def _xr(stack, days):
    time = np.datetime64("1970-01-01", "ns") + days.astype("timedelta64[D]")
    return xr.DataArray(stack, dims=("time", "pixel"), coords={"time": time})


def _frame(stack):
    return pd.DataFrame(stack.astype(np.float64))


series = dict(seed=st.integers(0, 2**31), n_dates=st.integers(1, 40), n_pix=st.integers(1, 2600),
              gap_share=st.sampled_from([0.0, 0.3, 0.7, 0.95]))


@settings(max_examples=40, deadline=None)
@given(**series, dtype=st.sampled_from(["float32", "float64"]), edges=st.sampled_from([0, 1]))
def test_linear_equals_numpy_interp(seed, n_dates, n_pix, gap_share, dtype, edges):
    days, stack = _series(seed, n_dates, n_pix, gap_share, dtype)
    values, flags = _fill(stack, days, method="linear", edges=edges)
    assert values.dtype == stack.dtype and flags.dtype == np.uint8
    np.testing.assert_array_equal(values, _interp_reference(stack, days, np.sort(days), edges))


def test_linear_equals_xarray_interpolate_na_with_dask():
    days, stack = _series(3, 30, 3000, 0.4)
    values, _ = _fill(stack, days, method="linear")
    expected = _xr(stack, days).chunk({"pixel": 700}).sortby("time").interpolate_na("time", method="linear")
    np.testing.assert_allclose(values, expected.values, rtol=1e-6)
    assert np.array_equal(np.isnan(values), np.isnan(expected.values))


@pytest.mark.parametrize("max_gap", [1, 12, 20, 45])
def test_max_gap_equals_xarray(max_gap):
    days, stack = _series(4, 35, 2000, 0.5)
    values, flags = _fill(stack, days, method="linear", max_gap=max_gap)
    expected = _xr(stack, days).sortby("time").interpolate_na("time", method="linear",
                                                              max_gap=pd.Timedelta(days=max_gap))
    np.testing.assert_allclose(values, expected.values, rtol=1e-6)
    assert np.array_equal(np.isnan(values), np.isnan(expected.values))
    assert (flags == FLAG_MISSING).sum() > (np.isnan(stack)).sum() * 0.05  # the limit did leave some gaps


def test_nearest_equals_xarray_and_takes_the_earlier_at_a_tie():
    days, stack = _series(5, 30, 2500, 0.4)
    values, _ = _fill(stack, days, method="nearest")
    expected = _xr(stack, days).sortby("time").interpolate_na("time", method="nearest")
    np.testing.assert_array_equal(values, expected.values.astype(stack.dtype))
    tie = np.array([[1.0], [np.nan], [3.0]], np.float32)
    assert _fill(tie, [0, 5, 10], method="nearest")[0][:, 0].tolist() == [1.0, 1.0, 3.0]
    assert _fill(tie, [0, 6, 10], method="nearest")[0][:, 0].tolist() == [1.0, 3.0, 3.0]


@pytest.mark.parametrize("method, fill, other", [("previous", "ffill", "bfill"), ("next", "bfill", "ffill")])
def test_previous_and_next_equal_pandas_and_xarray_fills(method, fill, other):
    days, stack = _series(6, 30, 2500, 0.5)
    order = np.argsort(days)
    frame = _frame(stack[order])
    filled = getattr(frame, fill)()
    interior = getattr(frame, fill)().notna() & getattr(frame, other)().notna()
    values, flags = _fill(stack, days, method=method, edges=0)
    np.testing.assert_array_equal(values, filled.where(interior).to_numpy().astype(stack.dtype))
    xr_filled = getattr(_xr(stack, days).sortby("time"), fill)("time").values
    np.testing.assert_array_equal(values[interior.to_numpy()], xr_filled[interior.to_numpy()])
    values, flags = _fill(stack, days, method=method, edges=1)
    both = getattr(getattr(frame, fill)(), other)()
    np.testing.assert_array_equal(values, both.to_numpy().astype(stack.dtype))
    assert np.array_equal(flags == FLAG_EDGE, (~interior & frame.isna() & both.notna()).to_numpy())


def _check_flags(stack, days, targets, values, flags, method):
    """What every flag promises about its value."""
    order = np.argsort(days)
    d, s = days[order], stack[order]
    assert set(np.unique(flags)) <= {FLAG_OBSERVED, FLAG_INTERPOLATED, FLAG_SEASONAL, FLAG_EDGE, FLAG_MISSING}
    assert np.array_equal(np.isnan(values), flags == FLAG_MISSING)
    where = {t: i for i, t in enumerate(d)}
    for j, t in enumerate(targets):
        i = where.get(t)
        observed = np.zeros(s.shape[1], bool) if i is None else ~np.isnan(s[i])
        assert np.array_equal(flags[j] == FLAG_OBSERVED, observed)
        if i is not None:  # bit for bit
            assert np.array_equal(values[j, observed].view(np.uint8), s[i, observed].view(np.uint8))
    valid = ~np.isnan(s)
    first = np.where(valid.any(0), d[np.argmax(valid, 0)], np.inf)
    last = np.where(valid.any(0), d[s.shape[0] - 1 - np.argmax(valid[::-1], 0)], -np.inf)
    inside = (targets[:, None] > first) & (targets[:, None] < last)
    assert not ((flags == FLAG_EDGE) & inside).any()
    assert not ((flags == FLAG_INTERPOLATED) & ~inside).any()
    if method != "seasonal":
        assert not (flags == FLAG_SEASONAL).any()
    if method in ("nearest", "previous", "next"):  # copies of observations of the same pixel
        for p in np.flatnonzero((flags == FLAG_INTERPOLATED).any(0))[:50]:
            assert np.isin(values[flags[:, p] == FLAG_INTERPOLATED, p], s[valid[:, p], p]).all()


@settings(max_examples=40, deadline=None)
@given(**series, method=st.sampled_from(METHODS), edges=st.sampled_from([0, 1]),
       max_gap=st.sampled_from([0, 10, 40]), resample=st.booleans())
def test_flags_agree_with_values(seed, n_dates, n_pix, gap_share, method, edges, max_gap, resample):
    days, stack = _series(seed, n_dates, n_pix, gap_share)
    target = None
    if resample:
        lo, hi = dates_from_days([days.min() - 20, days.max() + 15])
        target = RegularDates(lo, 7, hi)
    options = plan_gapfill(method, max_gap, edges, target_dates=target)
    values, flags = gapfill_stack(stack, days, options)
    targets = target_days(options, days)
    assert values.shape == (targets.size, n_pix)
    _check_flags(stack, days, targets, values, flags, method)


@settings(max_examples=25, deadline=None)
@given(**series, method=st.sampled_from(METHODS), edges=st.sampled_from([0, 1]), max_gap=st.sampled_from([0, 15]))
def test_input_order_does_not_matter(seed, n_dates, n_pix, gap_share, method, edges, max_gap):
    days, stack = _series(seed, n_dates, n_pix, gap_share)
    perm = np.random.default_rng(seed).permutation(n_dates)
    a = _fill(stack, days, method=method, edges=edges, max_gap=max_gap)
    b = _fill(stack[perm], days[perm], method=method, edges=edges, max_gap=max_gap)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("edges", [0, 1])
@pytest.mark.parametrize("max_gap", [0, 9, 30])
def test_every_method_fills_the_same_targets(edges, max_gap):
    """MAX_GAP and EDGES decide what is filled; the method only how (seasonal falls back to linear)."""
    days, stack = _series(8, 30, 2000, 0.5)
    missing = [_fill(stack, days, method=m, edges=edges, max_gap=max_gap)[1] == FLAG_MISSING for m in METHODS]
    for m in missing[1:]:
        assert np.array_equal(m, missing[0])


def test_gap_lengths_on_a_hand_made_series():
    #          day: 0    10   20   30      60   70   80
    s = np.array([np.nan, np.nan, 5, np.nan, 9, np.nan, np.nan], np.float32)[:, None]
    days = [0, 10, 20, 30, 60, 70, 80]
    # interior gap 20 -> 60 is 40 days; leading gap 0 -> 20 is 20; trailing 60 -> 80 is 20
    v, f = _fill(s, days, max_gap=39, edges=1)
    assert f[:, 0].tolist() == [3, 3, 0, 255, 0, 3, 3]
    v, f = _fill(s, days, max_gap=40, edges=1)
    assert f[:, 0].tolist() == [3, 3, 0, 1, 0, 3, 3] and v[3, 0] == 6.0
    v, f = _fill(s, days, max_gap=19, edges=1)
    assert f[:, 0].tolist() == [255, 255, 0, 255, 0, 255, 255]
    v, f = _fill(s, days, max_gap=0, edges=0)
    assert f[:, 0].tolist() == [255, 255, 0, 1, 0, 255, 255]
    assert np.isnan(v[[0, 1, 5, 6], 0]).all() and v[[0, 1, 5, 6], 0].dtype == np.float32
    v, _ = _fill(s, days, method="previous")
    assert v[3, 0] == 5
    v, _ = _fill(s, days, method="next")
    assert v[3, 0] == 9
    v, _ = _fill(s, days, method="nearest")
    assert v[3, 0] == 5  # 10 days from day 20, 30 from day 60


def test_edge_gaps_are_measured_to_the_ends_of_the_target_series_too():
    s = np.array([[np.nan], [4.0], [6.0]], np.float32)
    days = day_numbers([D(2024, 1, 11), D(2024, 1, 21), D(2024, 1, 31)])
    # targets from 2024-01-01: the leading gap runs from 01-01 to 01-21, 20 days; the trailing one to 02-20
    options = plan_gapfill("linear", max_gap=15, edges=1, target_dates="2024-01-01,10,2024-02-20")
    v, f = gapfill_stack(s, days, options)
    assert f[:, 0].tolist() == [255, 255, 0, 0, 255, 255]
    options = plan_gapfill("linear", max_gap=20, edges=1, target_dates="2024-01-01,10,2024-02-20")
    v, f = gapfill_stack(s, days, options)
    assert f[:, 0].tolist() == [3, 3, 0, 0, 3, 3] and v[:, 0].tolist() == [4, 4, 4, 6, 6, 6]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("edges", [0, 1])
def test_all_missing_pixels_stay_missing(method, edges):
    stack = np.full((12, 5, 7), np.nan, np.float32)
    stack[:, 0, 0] = np.arange(12)
    days = np.arange(12) * 30.0 + 18000
    values, flags = _fill(stack, days, method=method, edges=edges, target_dates="2019-04-01,5,2020-01-01")
    assert (flags[:, 1:, :] == FLAG_MISSING).all() and np.isnan(values[:, 1:, :]).all()
    assert (flags[:, 0, 0] != FLAG_MISSING).any()


def test_observed_values_pass_through_bit_for_bit():
    special = np.array([-0.0, 1e-45, 3.4028235e38, -1.17549435e-38, 0.1, np.inf, -np.inf, 7.0], np.float32)
    stack = np.tile(special[:, None], (1, 3))
    stack[2, 1] = np.nan
    values, flags = _fill(stack, np.arange(8.0) * 10, method="linear", edges=1)
    ok = flags == FLAG_OBSERVED
    assert ok.sum() == stack.size - 1
    assert np.array_equal(values[ok].view(np.uint32), stack[ok].view(np.uint32))


def test_infinite_neighbours_leave_nan_as_missing():
    s = np.array([[np.inf], [np.nan], [-np.inf]], np.float32)
    v, f = _fill(s, [0, 1, 2])
    assert np.isnan(v[1, 0]) and f[:, 0].tolist() == [0, 255, 0]


def test_resampling_passes_observations_and_interpolates_between():
    days, stack = _series(9, 25, 1500, 0.3)
    lo, hi = dates_from_days([days.min() - 30, days.max() + 30])
    options = plan_gapfill("linear", edges=1, target_dates=RegularDates(lo, 3, hi))
    targets = target_days(options, days)
    assert np.isin(days, targets).sum() > 0  # some output dates are input dates
    values, flags = gapfill_stack(stack, days, options)
    np.testing.assert_array_equal(values, _interp_reference(stack, days, targets, edges=1))
    on_input = np.isin(targets, days)
    assert (flags[~on_input] != FLAG_OBSERVED).all()
    assert output_dates(options, days)[0] == lo and len(output_dates(options, days)) == targets.size


# -- seasonal ----------------------------------------------------------------------------------------------

YEAR_VALUE = {2019: 10.0, 2020: 40.0, 2021: 20.0, 2022: 30.0}


def _seasonal_series():
    """The 1st, 11th and 21st of every month, 2019-2022; each year's value constant (YEAR_VALUE)."""
    dates = [D(y, m, d) for y in YEAR_VALUE for m in range(1, 13) for d in (1, 11, 21)]
    return dates, day_numbers(dates), np.array([YEAR_VALUE[d.year] for d in dates], np.float32)


def test_seasonal_known_answers():
    dates, days, values = _seasonal_series()
    stack = np.tile(values[:, None], (1, 4))
    june = dates.index(D(2021, 6, 11))
    stack[june, :] = np.nan
    v, f = _fill(stack, days, method="seasonal")
    # 1, 11 and 21 June of 2019, 2020 and 2022 (21 May and 1 July are 20 days away): median of 10, 40, 30
    assert v[june, 0] == 30.0 and f[june, 0] == FLAG_SEASONAL
    v, f = _fill(stack, days, method="seasonal", years_window=1)
    assert v[june, 0] == 35.0  # 2020 and 2022 only: three 40s and three 30s
    v, f = _fill(stack, days, method="seasonal", season_days=2)
    assert v[june, 0] == 30.0  # 11 June of the other years only
    assert (f[np.arange(len(dates)) != june] == FLAG_OBSERVED).all()


def test_seasonal_wraps_at_the_turn_of_the_year():
    dates, days, values = _seasonal_series()
    stack = values[:, None].copy()
    new_year = dates.index(D(2021, 1, 1))
    stack[new_year] = np.nan
    v, f = _fill(stack, days, method="seasonal")
    # within 15 days of 1 January in other years: 1 and 11 January 2019, 2020, 2022; 21 December 2019 (one
    # season before), 2021 (one after) and 2022: 10 10 10 | 40 40 | 30 30 30 | 20 -> median of 9 values: 30
    candidates = [10, 10, 10, 40, 40, 30, 30, 30, 20]
    assert v[new_year, 0] == np.median(candidates) == 30.0 and f[new_year, 0] == FLAG_SEASONAL
    # 21 December 2020 is the target's own season (11 days before it): a neighbour, not a candidate
    ptr, idx = season_table(days, days[new_year:new_year + 1], 30, 0)
    assert dates.index(D(2020, 12, 21)) not in idx and dates.index(D(2021, 12, 21)) in idx


def test_season_offset_definition():
    assert season_offset(D(2022, 1, 5), D(2020, 12, 28)) == (1, 8)
    assert season_offset(D(2022, 6, 1), D(2024, 6, 16)) == (-2, 15)
    assert season_offset(D(2022, 6, 1), D(2022, 6, 16)) == (0, 15)
    assert season_offset(D(2023, 3, 1), D(2020, 2, 29)) == (3, 1)   # 29 February is 28 February in 2023
    assert season_offset(D(2024, 2, 29), D(2021, 2, 28)) == (3, 1)
    assert season_offset(D(2021, 12, 31), D(2023, 1, 1)) == (-1, 1)


def _seasonal_reference(dates, target, season_days, years_window):
    """The inputs in the season of ``target``, the definition coded again with numpy datetime64: each
    observation's month and day put in the target's year and the years either side, the closest kept."""
    t = np.datetime64(target.isoformat())
    out = []
    for i, o in enumerate(dates):
        moved = [(abs(int((np.datetime64(f"{y:04d}-{o.month:02d}-{o.day:02d}") - t).astype(int))), y - o.year)
                 for y in (target.year - 1, target.year, target.year + 1)]
        dist, k = min(moved)
        if k != 0 and (years_window == 0 or abs(k) <= years_window) and dist <= season_days / 2:
            out.append(i)
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), season_days=st.sampled_from([10, 30, 61, 360]),
       years_window=st.sampled_from([0, 1, 2]), gap_share=st.sampled_from([0.2, 0.6, 0.9]))
def test_seasonal_median_against_brute_force(seed, season_days, years_window, gap_share):
    rng = np.random.default_rng(seed)
    start = day_numbers([D(2017, 1, 1)])[0]
    days = np.unique(start + rng.integers(0, 6 * 365, 60)).astype(np.float64)
    dates = dates_from_days(days)
    if any(d.month == 2 and d.day == 29 for d in dates):  # the reference's replace() cannot move them
        keep = [i for i, d in enumerate(dates) if not (d.month == 2 and d.day == 29)]
        days, dates = days[keep], tuple(dates[i] for i in keep)
    stack = rng.normal(0, 1, (days.size, 300)).astype(np.float64)
    stack[rng.random(stack.shape) < gap_share] = np.nan
    values, flags = _fill(stack, days, method="seasonal", season_days=season_days, years_window=years_window,
                          edges=1)
    linear, lflags = _fill(stack, days, method="linear", edges=1)
    for j, t in enumerate(dates):
        cand = _seasonal_reference(dates, t, season_days, years_window)
        observed = ~np.isnan(stack[j])
        assert (flags[j, observed] == FLAG_OBSERVED).all()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(stack[cand], axis=0) if cand else np.full(stack.shape[1], np.nan)
        seasonal = ~observed & (lflags[j] != FLAG_MISSING) & ~np.isnan(median)
        assert (flags[j, seasonal] == FLAG_SEASONAL).all()
        np.testing.assert_array_equal(values[j, seasonal], median[seasonal])
        rest = ~observed & ~seasonal           # no season in other years, or nothing to fill from: as linear
        np.testing.assert_array_equal(flags[j, rest], lflags[j, rest])
        np.testing.assert_array_equal(values[j, rest], linear[j, rest])


def test_seasonal_falls_back_to_linear_and_respects_max_gap_and_edges():
    dates, days, values = _seasonal_series()
    stack = values[:, None].copy()
    june = [i for i, d in enumerate(dates) if d.month == 6]
    stack[june] = np.nan                      # June is missing in every year: 11 June has no season to take
    v, f = _fill(stack, days, method="seasonal")
    lin, lf = _fill(stack, days, method="linear")
    mid = [i for i in june if dates[i].day == 11]
    assert (f[mid, 0] == FLAG_INTERPOLATED).all() and (lf[mid, 0] == FLAG_INTERPOLATED).all()
    np.testing.assert_array_equal(v[mid], lin[mid])
    rest = [i for i in june if dates[i].day != 11]  # 21 May and 1 July of other years are within 15 days
    assert (f[rest, 0] == FLAG_SEASONAL).all()
    stack = values[:, None].copy()
    stack[[dates.index(D(2021, 6, 1)), dates.index(D(2021, 6, 11)), dates.index(D(2021, 6, 21))]] = np.nan
    _, f = _fill(stack, days, method="seasonal", max_gap=39)   # 21 May -> 1 July is 41 days
    assert (f[[dates.index(D(2021, 6, d)) for d in (1, 11, 21)], 0] == FLAG_MISSING).all()
    stack = values[:, None].copy()
    stack[:3] = np.nan                        # 1, 11, 21 January 2019: a leading gap
    v, f = _fill(stack, days, method="seasonal", edges=0)
    assert (f[:3, 0] == FLAG_MISSING).all()
    v, f = _fill(stack, days, method="seasonal", edges=1)
    assert (f[:3, 0] == FLAG_SEASONAL).all()
    # 1 January 2019: 1 and 11 January 2020-2022 (40 40 20 20 30 30), 21 December 2019-2022 (10 40 20 30)
    assert v[0, 0] == np.median([40, 40, 20, 20, 30, 30, 10, 40, 20, 30]) == 30.0


# -- shapes, outputs and checks ----------------------------------------------------------------------------

def test_bands_and_rows_in_one_call_equal_one_call_per_band():
    days, flat = _series(11, 20, 3 * 40 * 50, 0.4)
    stack = flat.reshape(20, 3, 40, 50)
    values, flags = _fill(stack, days, method="nearest", edges=1)
    assert values.shape == (20, 3, 40, 50) and flags.shape == (20, 3, 40, 50)
    for b in range(3):
        vb, fb = _fill(np.ascontiguousarray(stack[:, b]), days, method="nearest", edges=1)
        np.testing.assert_array_equal(values[:, b], vb)
        np.testing.assert_array_equal(flags[:, b], fb)


def test_preallocated_outputs_are_filled():
    days, stack = _series(12, 10, 100, 0.3)
    out = np.empty((10, 100), np.float32)
    fl = np.empty((10, 100), np.uint8)
    values, flags = gapfill_stack(stack, days, plan_gapfill(), out=out, flags_out=fl)
    assert values is out and flags is fl
    np.testing.assert_array_equal(out, _fill(stack, days)[0])
    with pytest.raises(ParameterError, match="out must be a C-contiguous float32 array of shape"):
        gapfill_stack(stack, days, plan_gapfill(), out=np.empty((10, 100), np.float64))


@pytest.mark.parametrize("stack, days, match", [
    (np.zeros((3, 4), np.int16), [1, 2, 3], "float32 or float64"),
    (np.zeros((3, 4), np.float32), [1, 2], "2 day numbers were given for a stack of 3 dates"),
    (np.zeros((3, 4), np.float32), [1, 2, np.nan], "finite"),
    (np.zeros((3, 4), np.float32), [19855, 19860, 19855], r"same date \(2024-05-12\)"),
    (np.zeros((0, 4), np.float32), [], "at least one date"),
])
def test_stack_checks(stack, days, match):
    with pytest.raises(ParameterError, match=match):
        gapfill_stack(stack, days, plan_gapfill())


def test_one_date_and_no_pixels():
    v, f = _fill(np.array([[1.0, np.nan]], np.float32), [5.0], edges=1)
    assert v[0, 0] == 1 and np.isnan(v[0, 1]) and f[0].tolist() == [0, 255]
    v, f = _fill(np.zeros((4, 0), np.float32), [1, 2, 3, 4])
    assert v.shape == (4, 0)


# -- options -----------------------------------------------------------------------------------------------

def test_plan_accepts_indices_and_names_in_fixed_order():
    assert METHODS == ("linear", "nearest", "previous", "next", "seasonal")
    assert EDGE_MODES == ("leave", "nearest")
    for i, name in enumerate(METHODS):
        assert plan_gapfill(i).method == name == plan_gapfill(name).method == plan_gapfill(str(i)).method
        assert plan_gapfill(i).method_code == i
    assert plan_gapfill(edges=1).edges == "nearest" and plan_gapfill(edges="leave").edges_code == 0
    assert plan_gapfill() == GapfillOptions()


@pytest.mark.parametrize("kwargs, match", [
    (dict(method=5), r"gap-filling METHOD 5 does not exist; use 0 linear, 1 nearest, 2 previous, 3 next, 4 seasonal"),
    (dict(method="spline"), "Unknown gap-filling METHOD 'spline'"),
    (dict(method=True), "Unknown gap-filling METHOD"),
    (dict(max_gap=-1), r"MAX_GAP must be between 0 and .* \(days; 0 for no limit\)"),
    (dict(max_gap="a week"), "MAX_GAP must be a number"),
    (dict(max_gap=float("nan")), "MAX_GAP"),
    (dict(edges=2), "EDGES mode 2 does not exist; use 0 leave, 1 nearest"),
    (dict(season_days=0), "SEASON_DAYS must be between 1 and 360"),
    (dict(season_days=361), "SEASON_DAYS"),
    (dict(years_window=-1), "YEARS_WINDOW"),
    (dict(years_window=1.5), "whole number of years"),
    (dict(target_dates="2024-01-01,0,2024-02-01"), "step must be at least 1 day"),
    (dict(target_dates="2024-03-01,10,2024-02-01"), r"ends \(2024-02-01\) before it starts \(2024-03-01\)"),
    (dict(target_dates="1900-01-01,1,2100-01-01"), f"at most {MAX_TARGETS}"),
    (dict(target_dates="2024-01-01,2024-01-01"), "2024-01-01 more than once"),
    (dict(target_dates="2024-01-01,soon"), "entry 2 of TARGET_DATES 'soon' is not a date"),
    (dict(target_dates="2024-01-41,10,2024-02-01"), "TARGET_DATES start"),
])
def test_plan_errors_are_explained(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        plan_gapfill(**kwargs)


def test_target_dates_forms():
    assert parse_target_dates(None) is None and parse_target_dates("  ") is None and parse_target_dates([]) is None
    r = parse_target_dates("2024-01-01;10;2024-01-31")
    assert r == RegularDates(D(2024, 1, 1), 10, D(2024, 1, 31))
    assert r.dates() == (D(2024, 1, 1), D(2024, 1, 11), D(2024, 1, 21), D(2024, 1, 31))
    assert RegularDates(D(2024, 1, 1), 10, D(2024, 1, 30)).dates()[-1] == D(2024, 1, 21)
    assert parse_target_dates(("2024-01-01", 16, D(2024, 2, 2))).step == 16
    assert parse_target_dates("2024-03-01 2024-01-01 2024-02-01") == (D(2024, 1, 1), D(2024, 2, 1), D(2024, 3, 1))
    days = day_numbers([D(2024, 1, 5), D(2024, 1, 1)])
    assert target_days(plan_gapfill(), days).tolist() == sorted(days.tolist())
    assert target_days(plan_gapfill(target_dates=r), days).tolist() == day_numbers(r.dates()).tolist()

"""Composites that keep the spectrum: geometric median, medoid, best-available pixel, MADs.

The references are numpy in float64: a Weiszfeld iteration (with Vardi and Zhang's step, as the
kernel), brute-force medoids and argmax picks, the MADs' definitions, a brute-force distance
to the nearest masked pixel. Independent checks besides: one band gives the median, the result
does not depend on the order of the observations, it lies in their convex hull and no point
near it has a smaller summed distance.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio

from tilewise.core import composite
from tilewise.core.errors import ExpressionError, InputError, OutputError, ParameterError
from tilewise.core.kernels import spectral as K

from support import read_raster, subprocess_env, write_raster

# -- numpy references ----------------------------------------------------------------------------------------


def complete(stack):
    """(observations, pixels): every band finite."""
    return np.all(np.isfinite(stack), axis=1)



def snap(pts, y):
    """The kernel's last step: the observation nearest to ``y``, if Vardi and Zhang's test says it is the median."""
    j = int(np.argmin(((pts - y) ** 2).sum(axis=1)))
    d = np.sqrt(((pts - pts[j]) ** 2).sum(axis=1))
    other = d > 0
    r = ((pts[other] - pts[j]) / d[other][:, None]).sum(axis=0)
    return pts[j] if np.sqrt((r * r).sum()) < np.count_nonzero(~other) - 1e-9 else y

def weiszfeld(stack, tol=1e-7, max_iter=500):
    """float64 numpy Weiszfeld over ``(obs, bands, pixels)``, with the kernel's start (the mean), over-relaxed
    step (Ostresh, 1.5), Vardi and Zhang's step at observations and stopping rule; NaN where no observation
    is complete."""
    x = stack.astype(np.float64)
    ok = complete(x)
    n_obs, n_bands, n_pix = x.shape
    out = np.full((n_bands, n_pix), np.nan)
    for p in range(n_pix):
        pts = x[ok[:, p], :, p]
        if len(pts) == 0:
            continue
        y = pts.mean(axis=0)
        for _ in range(max_iter):
            ynorm = np.sqrt(np.sum(y * y))
            at = 1e-12 * ynorm if ynorm > 0 else 1e-300
            d = np.sqrt(np.sum((pts - y) ** 2, axis=1))
            far = d > at
            eta = np.count_nonzero(~far)
            if not far.any():
                break
            w = 1.0 / d[far]
            t = (w[:, None] * pts[far]).sum(axis=0)
            wsum = w.sum()
            beta = 0.0
            if eta:
                r = np.sqrt(np.sum((t - wsum * y) ** 2))
                if r <= eta:
                    y = pts[np.flatnonzero(~far)[-1]]
                    break
                beta = eta / r
            new = (1 - beta) * (t / wsum) + beta * y
            new = y + (1.5 if eta == 0 else 1.0) * (new - y)          # the kernel's over-relaxed step
            step = np.sqrt(np.sum((new - y) ** 2))
            y = new
            if step <= tol * np.sqrt(np.sum(y * y)):
                break
        out[:, p] = snap(pts, y)
    return out


def summed_distance(points, y):
    return np.sqrt(((points - y) ** 2).sum(axis=1)).sum()


def brute_medoid(stack):
    """Index of the observation with the smallest summed distance (sums in index order; first of equals)."""
    x = stack.astype(np.float64)
    ok = complete(x)
    out = np.full(x.shape[2], -1)
    for p in range(x.shape[2]):
        idx = np.flatnonzero(ok[:, p])
        if len(idx) == 0:
            continue
        pts = x[idx, :, p]
        sums = []
        for i in range(len(idx)):
            s = 0.0
            for j in range(len(idx)):
                if j != i:
                    s += np.sqrt(np.sum((pts[i] - pts[j]) ** 2))
            sums.append(s)
        out[p] = idx[int(np.argmin(sums))]
    return out


def argmax_pick(stack, scores):
    """numpy's argmax (first of equals) of the scores of complete observations; -1 where none."""
    s = np.where(complete(stack) & ~np.isnan(scores), scores, -np.inf)
    best = np.argmax(s, axis=0)
    return np.where(np.isfinite(s).any(axis=0), best, -1)


def numpy_mads(stack, centre):
    x = stack.astype(np.float64)
    x[:, :, ~np.isfinite(centre).all(axis=0)] = np.nan
    x[~np.broadcast_to(complete(x)[:, None], x.shape)] = np.nan
    c = centre[None]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        emad = np.nanmedian(np.sqrt(((x - c) ** 2).sum(axis=1)), axis=0)
        cos = (x * c).sum(axis=1) / (np.sqrt((x ** 2).sum(axis=1)) * np.sqrt((c ** 2).sum(axis=1)))
        smad = np.nanmedian(1 - cos, axis=0)
        bc = np.abs(x - c).sum(axis=1) / np.abs(x + c).sum(axis=1)
        bcmad = np.nanmedian(bc, axis=0)
    return np.stack([emad, smad, bcmad])


def random_stack(rng, n_obs, n_bands, n_pix, holes=0.2, dtype=np.float64):
    """Imagery-like: a per-pixel spectrum, per-date variation, holes in single bands and whole dates."""
    base = rng.random((1, n_bands, n_pix)) * 0.5 + 0.1
    s = base + rng.normal(0, 0.05, (n_obs, n_bands, n_pix))
    s[rng.random(s.shape) < holes / 4] = np.nan                         # one band missing
    s[np.broadcast_to(rng.random((n_obs, 1, n_pix)) < holes, s.shape)] = np.nan  # a whole date (cloud)
    s[:, :, :5] = np.nan                                                # no observation at all
    s[1:, :, 5:10] = np.nan                                             # exactly one
    s[0, :, 5:10] = base[0, :, 5:10]
    return s.astype(dtype)


# -- the geometric median ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_obs,n_bands", [(12, 4), (7, 6), (30, 2)])
def test_geomedian_equals_numpy_weiszfeld(dtype, n_obs, n_bands):
    rng = np.random.default_rng(n_obs * n_bands)
    stack = random_stack(rng, n_obs, n_bands, 400, dtype=dtype)
    got, count = K.geomedian(stack, 1e-9, 1000)
    ref = weiszfeld(stack, 1e-9, 1000)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[:, :5]).all() and (count[:5] == 0).all() and (count[5:10] == 1).all()
    np.testing.assert_array_equal(got[:, 5:10], stack[0, :, 5:10].astype(np.float64))
    np.testing.assert_array_equal(count, complete(stack).sum(axis=0))
    ok = ~np.isnan(ref[0])
    rel = np.linalg.norm(got[:, ok] - ref[:, ok], axis=0) / np.linalg.norm(ref[:, ok], axis=0)
    assert rel.max() < 1e-6


def test_geomedian_minimises_the_summed_distance():
    """Independent of any Weiszfeld: no observation and no nearby point does better."""
    rng = np.random.default_rng(5)
    stack = random_stack(rng, 9, 3, 200, holes=0.1)
    got, _ = K.geomedian(stack, 1e-12, 5000)
    ok = complete(stack)
    for p in range(10, 200):
        pts = stack[ok[:, p], :, p]
        f = summed_distance(pts, got[:, p])
        assert f <= min(summed_distance(pts, q) for q in pts) + 1e-12
        for delta in rng.normal(0, 1e-4, (8, 3)):
            assert f <= summed_distance(pts, got[:, p] + delta) + 1e-12


@pytest.mark.parametrize("n_obs", [1, 3, 7, 21])
def test_one_band_gives_the_median_of_an_odd_count(n_obs):
    rng = np.random.default_rng(n_obs)
    stack = rng.random((n_obs, 1, 500)) * 1000
    got, _ = K.geomedian(stack)
    expected = np.median(stack[:, 0], axis=0)
    np.testing.assert_allclose(got[0], expected, rtol=1e-6, atol=0)


def test_one_band_with_ties_and_float32():
    stack = np.array([3, 3, 3, 9, 1], np.float32).reshape(5, 1, 1)
    assert K.geomedian(stack)[0].ravel().tolist() == [3.0]


def test_geomedian_does_not_depend_on_the_order():
    rng = np.random.default_rng(11)
    stack = random_stack(rng, 15, 5, 300)
    got, _ = K.geomedian(stack, 1e-10, 2000)
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(15)
        again, _ = K.geomedian(stack[perm], 1e-10, 2000)
        ok = ~np.isnan(got[0])
        rel = np.linalg.norm(again[:, ok] - got[:, ok], axis=0) / np.linalg.norm(got[:, ok], axis=0)
        assert rel.max() < 1e-6


def test_geomedian_lies_within_each_band_range():
    rng = np.random.default_rng(2)
    stack = random_stack(rng, 10, 6, 500)
    got, _ = K.geomedian(stack)
    masked = np.where(complete(stack)[:, None], stack, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(masked, axis=0), np.nanmax(masked, axis=0)
    ok = ~np.isnan(got)
    assert (got[ok] >= lo[ok] - 1e-12).all() and (got[ok] <= hi[ok] + 1e-12).all()


def hull(points):
    """Andrew's monotone chain: the convex hull of 2-D points, counter-clockwise."""
    pts = sorted(map(tuple, points))
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def test_geomedian_lies_in_the_convex_hull():
    """Two bands, few observations, often skewed: inside the hull polygon (every edge keeps it on its left)."""
    rng = np.random.default_rng(9)
    stack = rng.random((5, 2, 300)) ** 3
    got, _ = K.geomedian(stack)
    for p in range(300):
        h = hull(stack[:, :, p])
        y = got[:, p]
        for a, b in zip(h, h[1:] + h[:1]):
            cross = (b[0] - a[0]) * (y[1] - a[1]) - (b[1] - a[1]) * (y[0] - a[0])
            assert cross >= -1e-12, (p, h, y)


# -- medoid, best-available pixel, MADs ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_medoid_equals_brute_force_with_ties(dtype):
    rng = np.random.default_rng(4)
    stack = rng.integers(0, 4, (8, 3, 600)).astype(dtype)     # few values: many equal sums
    stack[rng.random(stack.shape) < 0.05] = np.nan
    stack[3, :, :100] = stack[1, :, :100]                     # duplicates: equal sums, index 1 first
    got, count = K.medoid(stack)
    np.testing.assert_array_equal(got, brute_medoid(stack))
    assert ((got[:100] != 3) | ~complete(stack)[1, :100]).all()
    np.testing.assert_array_equal(count, complete(stack).sum(axis=0))


def test_best_equals_numpy_argmax_of_whole_observations():
    rng = np.random.default_rng(6)
    stack = random_stack(rng, 10, 4, 500)
    scores = np.round(rng.random((10, 500)) * 4)              # ties
    scores[rng.random(scores.shape) < 0.1] = np.nan
    got, _ = K.best(stack, scores)
    expected = argmax_pick(stack, scores)
    np.testing.assert_array_equal(got, expected)
    picked = K.take(stack, got)
    np.testing.assert_array_equal(np.isnan(picked[0]), got < 0)
    assert complete(picked[None]).sum() == (got >= 0).sum()   # whole observations, every band


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mads_equal_their_definitions(dtype):
    rng = np.random.default_rng(8)
    stack = random_stack(rng, 11, 5, 400, dtype=dtype)
    centre, _ = K.geomedian(stack)
    got = K.mads(stack, centre)
    expected = numpy_mads(stack, centre)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-9, atol=1e-15)


def test_distance_to_masked_pixels_equals_brute_force():
    rng = np.random.default_rng(3)
    missing = rng.random((2, 23, 31)) < 0.03
    got = K.missing_distance(missing, 6.0)
    rows, cols = np.mgrid[:23, :31]
    for layer in range(2):
        r, c = np.nonzero(missing[layer])
        d = np.sqrt((rows[..., None] - r) ** 2 + (cols[..., None] - c) ** 2).min(axis=-1)
        np.testing.assert_allclose(got[layer], np.minimum(d, 6.0), rtol=1e-6)


# -- through composite(): files, masks, dates, tiles -----------------------------------------------------------

DATES = ["2024-03-05", "2024-01-20", "2024-06-11", "2024-02-14", "2024-08-30", "2024-05-01", "2024-07-04"]


@pytest.fixture
def scenes(tmp_path):
    """7 uint16 4-band scenes (nodata 0, holes in single bands and whole dates) with a QA band 5 (3 =
    cloud), named by date out of date order; returns (paths, raw stack in date order, qa in date order)."""
    rng = np.random.default_rng(21)
    h, w = 37, 45
    base = rng.integers(300, 3000, (4, h, w))
    raw, qa, paths = [], [], []
    for day in DATES:
        a = np.clip(base + rng.normal(0, 150, (4, h, w)), 1, 9000).astype(np.uint16)
        a[rng.random(a.shape) < 0.04] = 0
        a[:, rng.random((h, w)) < 0.15] = 0
        a[:, :4, :6] = 0                                   # never observed
        q = np.where(rng.random((h, w)) < 0.2, 3, 4).astype(np.uint16)
        q[30:, 40:] = 3                                     # always cloudy: all masked
        paths.append(write_raster(tmp_path / f"s2_{day}.tif", np.concatenate([a, q[None]]), nodata=0))
        raw.append(a)
        qa.append(q)
    order = np.argsort(DATES)
    return paths, np.stack(raw)[order], np.stack(qa)[order]


def nan_stack(raw, qa):
    s = raw.astype(np.float64)
    s[raw == 0] = np.nan
    s[np.broadcast_to((qa == 3)[:, None], s.shape)] = np.nan
    return s.reshape(s.shape[0], s.shape[1], -1)


def days(indices):
    ordered = sorted(DATES)
    epoch = dt.date(1970, 1, 1)
    table = np.array([(dt.date.fromisoformat(d) - epoch).days for d in ordered] + [np.iinfo(np.int32).min])
    return table[np.where(indices < 0, len(ordered), indices)]


MASK = dict(mask_band=5, mask_values=[3])


def whole(raw, chosen):
    """(bands, pixels): each pixel's chosen observation of ``raw`` (dates, bands, rows, cols); 0 where none."""
    flat = raw.reshape(raw.shape[0], raw.shape[1], -1)
    return np.where(chosen < 0, 0, flat[np.maximum(chosen, 0), :, np.arange(chosen.size)].T)


@pytest.mark.parametrize("tile_size,workers", [(16, 2), (512, 1)])
def test_medoid_file_is_a_whole_unmasked_observation(scenes, tmp_path, tile_size, workers):
    paths, raw, qa = scenes
    out, src, n = (str(tmp_path / f) for f in ("medoid.tif", "source.tif", "count.tif"))
    composite(paths, out, "medoid", output_source=src, output_count=n, tile_size=tile_size, workers=workers,
              **MASK)
    data, profile = read_raster(out)
    assert profile["dtype"] == "uint16" and profile["nodata"] == 0 and data.shape == (4, 37, 45)
    stack = nan_stack(raw, qa)
    expected = brute_medoid(stack)
    np.testing.assert_array_equal(read_raster(src)[0][0].ravel(), days(expected))
    picked = whole(raw, expected)
    np.testing.assert_array_equal(data.reshape(4, -1), picked)
    assert (data[:, 30:, 40:] == 0).all() and (data[:, :4, :6] == 0).all()         # all masked: nodata
    np.testing.assert_array_equal(read_raster(n)[0][0].ravel(), complete(stack).sum(axis=0))
    chosen_masked = (qa.reshape(7, -1) == 3)[np.maximum(expected, 0), np.arange(expected.size)]
    assert not chosen_masked[expected >= 0].any()


def test_medoid_ties_go_to_the_earliest_date(tmp_path):
    """The same observation on three dates, given latest first: the earliest date is the source."""
    a = np.array([[[10, 20]], [[10, 20]]], np.uint16)
    far = np.array([[[90, 90]], [[90, 90]]], np.uint16)
    paths = [write_raster(tmp_path / f"x_{d}.tif", v, nodata=0)
             for d, v in (("2024-09-01", a), ("2024-05-01", a), ("2024-07-01", far), ("2024-02-01", a))]
    src = str(tmp_path / "src.tif")
    composite(paths, str(tmp_path / "m.tif"), "medoid", output_source=src, workers=1)
    assert read_raster(src)[0][0].ravel().tolist() == [(dt.date(2024, 2, 1) - dt.date(1970, 1, 1)).days] * 2


def test_geomedian_file_equals_numpy(scenes, tmp_path):
    paths, raw, qa = scenes
    out, mads = str(tmp_path / "g.tif"), str(tmp_path / "mads.tif")
    composite(paths, out, "geomedian", tolerance=1e-9, max_iterations=2000, output_mads=mads, tile_size=16,
              workers=2, **MASK)
    data, profile = read_raster(out)
    assert profile["dtype"] == "float32" and profile["nodata"] == -9999
    stack = nan_stack(raw, qa)
    # a tight reference: where the median lies a hundredth of a DN from an observation, Weiszfeld's steps crawl and
    # stop (at 1e-9) 2e-6 short of the median that the kernel's Newton steps reach
    ref = weiszfeld(stack, 1e-12, 100000)
    got = data.reshape(4, -1).astype(np.float64)
    np.testing.assert_array_equal(got[0] == -9999, np.isnan(ref[0]))
    ok = ~np.isnan(ref[0])
    rel = np.linalg.norm(got[:, ok] - ref[:, ok], axis=0) / np.linalg.norm(ref[:, ok], axis=0)
    assert rel.max() < 1e-6
    m = read_raster(mads)[0].reshape(3, -1).astype(np.float64)
    expected = numpy_mads(stack, K.geomedian(stack.astype(np.float32), 1e-9, 2000)[0])
    np.testing.assert_allclose(m[:, ok], expected[:, ok], rtol=2e-5)
    assert (m[:, ~ok] == -9999).all()


def test_quality_band_and_expression_pick_numpy_argmax(scenes, tmp_path):
    paths, raw, qa = scenes
    stack = nan_stack(raw, qa)
    for kw, scores in ((dict(quality_band=2), stack[:, 1]),
                       (dict(quality_expression="(B4 - B3) / (B4 + B3)"),
                        (stack[:, 3] - stack[:, 2]) / (stack[:, 3] + stack[:, 2]))):
        out, src = str(tmp_path / "q.tif"), str(tmp_path / "qs.tif")
        composite(paths, out, "quality", output_source=src, tile_size=16, workers=2, **MASK, **kw)
        expected = argmax_pick(stack, scores)
        np.testing.assert_array_equal(read_raster(src)[0][0].ravel(), days(expected))
        data = read_raster(out)[0].reshape(4, -1)
        picked = whole(raw, expected)
        np.testing.assert_array_equal(data, picked)


def test_quality_weights_day_of_year_and_cloud_distance_do_not_depend_on_tiles(scenes, tmp_path):
    paths, raw, qa = scenes
    kw = dict(doy_weight=1.0, target_date="2023-06-01", cloud_weight=2.0, cloud_distance=5, **MASK)
    one, tiled = str(tmp_path / "one.tif"), str(tmp_path / "tiled.tif")
    composite(paths, one, "quality", output_source=str(tmp_path / "s1.tif"), workers=1, **kw)
    composite(paths, tiled, "quality", output_source=str(tmp_path / "s2.tif"), tile_size=8, workers=2, **kw)
    np.testing.assert_array_equal(read_raster(one)[0], read_raster(tiled)[0])
    # the reference: closeness of the day of year to 1 June, distance to missing pixels (brute force)
    stack = nan_stack(raw, qa)
    doys = np.array([dt.date.fromisoformat(d).timetuple().tm_yday for d in sorted(DATES)])
    gap = np.abs(doys - dt.date(2023, 6, 1).timetuple().tm_yday)
    closeness = 1 - np.minimum(gap, 365 - gap) / 183.0
    missing = ~complete(stack).reshape(7, 37, 45)
    rows, cols = np.mgrid[:37, :45]
    dist = np.empty((7, 37, 45))
    for i in range(7):
        r, c = np.nonzero(missing[i])
        dist[i] = np.minimum(np.sqrt((rows[..., None] - r) ** 2 + (cols[..., None] - c) ** 2).min(axis=-1), 5)
    scores = closeness[:, None] + 2.0 * dist.reshape(7, -1) / 5
    expected = argmax_pick(stack, scores)
    np.testing.assert_array_equal(read_raster(str(tmp_path / "s1.tif"))[0][0].ravel(), days(expected))


def test_scale_and_offset_are_applied_for_distances(tmp_path):
    """Bands with different scales, inputs with different offsets (processing baselines): the geometric median
    is that of the scaled values, written in the first input's units."""
    rng = np.random.default_rng(13)
    raw = rng.integers(100, 5000, (6, 3, 10, 12)).astype(np.uint16)
    scales = np.array([0.0001, 0.001, 0.0001])
    offsets = np.array([[-0.1, 0.0, 0.2] if i % 2 else [0.0, 0.0, 0.0] for i in range(6)])
    paths = []
    for i in range(6):
        p = write_raster(tmp_path / f"r_2024-01-0{i + 1}.tif", raw[i], nodata=0)
        with rasterio.open(p, "r+") as ds:
            ds.scales, ds.offsets = tuple(scales), tuple(offsets[i])
        paths.append(p)
    composite(paths, str(tmp_path / "g.tif"), "geomedian", tolerance=1e-10, workers=1)
    scaled = raw.reshape(6, 3, -1) * scales[:, None] + offsets[:, :, None]
    # 20000 steps: with 6 observations in 3 bands, some pixels' medians lie in long flat valleys where Weiszfeld's
    # steps crawl (500 steps left the reference up to 9e-4 short of the median the kernel's Newton steps reach)
    ref = (weiszfeld(scaled, 1e-10, 20000) - offsets[0][:, None]) / scales[:, None]
    np.testing.assert_allclose(read_raster(str(tmp_path / "g.tif"))[0].reshape(3, -1), ref, rtol=1e-5)
    unscaled = weiszfeld(raw.reshape(6, 3, -1).astype(np.float64), 1e-10, 20000)
    assert np.abs(unscaled - ref).max() > 1.0       # the scales change the answer: the test can fail


# -- through the command line, and wrong inputs ----------------------------------------------------------------

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("statistic", ["geomedian", "medoid", "quality"])
def test_cli_statistics_give_the_api_pixels(scenes, tmp_path, statistic):
    paths, _, _ = scenes
    extra = ["--quality-band", "3"] if statistic == "quality" else []
    api = str(tmp_path / "api.tif")
    composite(paths, api, statistic, workers=1, **MASK, **({"quality_band": 3} if extra else {}))
    proc = cli("composite", "-s", statistic, *paths, "--mask-band", "5", "--mask-values", "3", *extra,
               "--output-count", tmp_path / "n.tif", "-o", tmp_path / "cli.tif", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    a, pa = read_raster(api)
    b, pb = read_raster(tmp_path / "cli.tif")
    assert pa["dtype"] == pb["dtype"] == ("float32" if statistic == "geomedian" else "uint16")
    np.testing.assert_array_equal(a, b)
    assert read_raster(tmp_path / "n.tif")[0].shape == (1, 37, 45)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(statistic="quality"), ParameterError, "scores observations in one way"),
    (dict(statistic="quality", quality_band=2, doy_weight=1.0), ParameterError, "QUALITY_BAND and weights"),
    (dict(statistic="quality", quality_expression="B2 / B9"), ExpressionError, "Unknown name 'B9'"),
    (dict(statistic="quality", quality_band=9), InputError, "QUALITY_BAND 9 does not exist"),
    (dict(statistic="quality", doy_weight=1.0, target_date="2024-02-31"), ParameterError, "TARGET_DATE"),
    (dict(statistic="quality", doy_weight=1.0), ParameterError, "DOY_WEIGHT needs TARGET_DATE"),
    (dict(statistic="quality", opacity_weight=1.0), ParameterError, "OPACITY_WEIGHT needs OPACITY_BAND"),
    (dict(statistic="geomedian", tolerance=0.0), ParameterError, "TOLERANCE must be"),
    (dict(statistic="geomedian", max_iterations=0), ParameterError, "MAX_ITERATIONS must be"),
    (dict(statistic="geomedian", quality_band=2), ParameterError, "only apply to the quality statistic"),
    (dict(statistic="geomedian", output_source="src.tif"), ParameterError, "OUTPUT_SOURCE is for medoid"),
    (dict(statistic="medoid", output_count="out.tif"), OutputError, "OUTPUT_COUNT and OUTPUT are the same"),
])
def test_wrong_options_get_one_clear_message(scenes, tmp_path, kwargs, error, message):
    paths, _, _ = scenes
    kwargs = {k: (str(tmp_path / v) if k.startswith("output_") else v) for k, v in kwargs.items()}
    with pytest.raises(error, match=message):
        composite(paths, str(tmp_path / "out.tif"), workers=1, **MASK, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tif" and not p.name.startswith("s2_")) == []


def test_doy_weight_needs_dates(tmp_path):
    paths = [write_raster(tmp_path / f"plain{i}.tif", np.full((2, 4, 4), i + 1, np.uint16), nodata=0)
             for i in range(3)]
    with pytest.raises(InputError, match="DOY_WEIGHT needs the inputs' dates"):
        composite(paths, str(tmp_path / "o.tif"), "quality", doy_weight=1.0, target_date="2024-06-01")
    # undated inputs: OUTPUT_SOURCE gives the input number
    composite(paths, str(tmp_path / "o.tif"), "quality", quality_band=1, output_source=str(tmp_path / "s.tif"),
              workers=1)
    assert (read_raster(tmp_path / "s.tif")[0] == 3).all()


def test_cli_wrong_option_is_one_line(scenes, tmp_path):
    paths, _, _ = scenes
    proc = cli("composite", "-s", "median", "--tolerance", "1e-3", *paths, "-o", tmp_path / "o.tif")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--tolerance: only with -s geomedian|medoid|quality" in proc.stderr


# -- the tile runner: Dask, resume -------------------------------------------------------------------------------

def test_dask_gives_the_local_pool_outputs(scenes, tmp_path):
    from distributed import Client, LocalCluster
    paths, _, _ = scenes
    kw = dict(output_mads="mads.tif", output_count="n.tif", tile_size=16, **MASK)
    runs = {}
    for name in ("local", "dask"):
        folder = tmp_path / name
        folder.mkdir()
        files = {k: str(folder / v) if k.startswith("output_") else v for k, v in kw.items()}
        if name == "local":
            composite(paths, str(folder / "g.tif"), "geomedian", workers=2, **files)
        else:
            with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                report = composite(paths, str(folder / "g.tif"), "geomedian", scheduler=client, **files)
            assert report.tiles == 9
        runs[name] = [read_raster(folder / f)[0] for f in ("g.tif", "mads.tif", "n.tif")]
    for a, b in zip(runs["local"], runs["dask"]):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_quality_run_resumes(scenes, tmp_path):
    from tilewise.core.errors import TileError
    from tilewise.core.operations.spectral import SpectralOptions, plan_spectral, spectral_tile
    from tilewise.core.options import Options, OutputOptions, RunOptions
    from tilewise.core.runtime.executor import SerialExecutor
    from tilewise.core.runtime.runner import run_tiles
    paths, _, _ = scenes
    kw = dict(cloud_weight=1.0, cloud_distance=4, **MASK)
    out, src = str(tmp_path / "q.tif"), str(tmp_path / "src.tif")

    def fail_on_tile_five(job, tile, target):
        if tile.index == 5:
            raise TileError(f"{tile.name}: reading {job.inputs[1]} failed: connection reset")
        return spectral_tile(job, tile, target)
    job = plan_spectral(paths, out, SpectralOptions("quality", output_source=src, **kw),
                        Options(output=OutputOptions(output_type=None)))     # composite()'s default: the inputs' type
    with pytest.raises(TileError, match="tile 5"):
        run_tiles(job, fail_on_tile_five, RunOptions(tile_size=16, executor=SerialExecutor(), resume=True))
    report = composite(paths, out, "quality", output_source=src, tile_size=16, workers=1, resume=True, **kw)
    assert report.reused == 5
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    composite(paths, str(fresh / "q.tif"), "quality", output_source=str(fresh / "src.tif"), tile_size=16,
              workers=1, **kw)
    for name in ("q.tif", "src.tif"):
        np.testing.assert_array_equal(read_raster(tmp_path / name)[0], read_raster(fresh / name)[0])

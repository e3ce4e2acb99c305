"""The extraction's HTML plot: round ticks on both axes (numbers 1, 2 or 5 x 10^k apart; round dates),
a title that says what is plotted and for which feature, a y axis named after the band and its unit; and
the page itself in headless Chromium: it loads with no console message and draws those axes."""

from __future__ import annotations

import datetime as dt
import html
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tilewise.core.operations.extract import ExtractSpec, extract_stats
from tilewise.core.operations.extract.plot import Y_TICKS, date_ticks, nice_ticks, plot_data

from support import UTM_CRS, write_raster

DOCS = Path(__file__).resolve().parents[2] / "docs"


# -- y ticks ------------------------------------------------------------------------------------------------

def nice_step(ticks):
    """The step between ``ticks``, which must be even and 1, 2 or 5 x 10^k."""
    steps = np.diff(ticks)
    error = 1e-14 * np.max(np.abs(ticks)) / steps[0] + 1e-9   # a difference of large values has their rounding
    assert np.allclose(steps, steps[0], rtol=error, atol=0), ticks            # evenly spaced
    exponent = math.floor(math.log10(steps[0]) + 1e-9)
    mantissa = steps[0] / 10.0 ** exponent
    nearest = min((1, 2, 5, 10), key=lambda m: abs(mantissa - m))
    assert abs(mantissa - nearest) < 10 * error, (steps[0], ticks)              # 1, 2 or 5 x 10^k apart
    return nearest * 10.0 ** exponent


def assert_nice(ticks, lo, hi, max_ticks=Y_TICKS):
    step = nice_step(ticks)
    assert all(abs(t - round(t / step) * step) <= 1e-9 * max(abs(t), step) for t in ticks), ticks  # multiples
    slack = 1e-9 * max(abs(lo), abs(hi), step)
    assert ticks[0] <= lo + slack and ticks[-1] >= hi - slack, (lo, hi, ticks)  # they cover the range
    assert 2 <= len(ticks) <= max_ticks, ticks
    assert ticks[1] > lo - slack and ticks[-2] < hi + slack, (lo, hi, ticks)   # no tick wasted beyond it
    assert all(len(repr(t)) <= 24 for t in ticks), ticks                       # round, not 0.30000000000000004


def test_the_ticks_of_the_issue_are_round():
    """The range of the report (ticks at 2.985, 8.567, 14.15, 19.73, 25.31 before)."""
    assert nice_ticks(2.985, 25.31) == [0, 5, 10, 15, 20, 25, 30]


@pytest.mark.parametrize("lo, hi, expected", [
    (0.12, 0.87, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0.3, 0.7, [0.3, 0.4, 0.5, 0.6, 0.7]),
    (-0.0123, 0.0456, [-0.02, 0, 0.02, 0.04, 0.06]),
    (-5, -1, [-5, -4, -3, -2, -1]),
    (1.0e6, 3.4e6, [1.0e6, 1.5e6, 2.0e6, 2.5e6, 3.0e6, 3.5e6]),
    (123456.7, 123457.2, [123456.7, 123456.8, 123456.9, 123457.0, 123457.1, 123457.2]),
    (25.31, 2.985, [0, 5, 10, 15, 20, 25, 30]),                               # either order
])
def test_nice_ticks(lo, hi, expected):
    ticks = nice_ticks(lo, hi)
    assert ticks == pytest.approx(expected, rel=0, abs=1e-12)
    assert_nice(ticks, min(lo, hi), max(lo, hi))


def test_one_value_and_no_value():
    ticks = nice_ticks(100, 100)                                               # a range around it: 5 %
    assert_nice(ticks, 95, 105)
    assert 100 in ticks
    assert nice_ticks(0, 0) == [-1, -0.5, 0, 0.5, 1]
    assert nice_ticks(math.nan, math.nan) == [0, 1]                            # a series of nulls only
    assert_nice(nice_ticks(2.0 ** 32, 2.0 ** 32 + 1e-6), 0.95 * 2 ** 32, 1.05 * 2 ** 32)   # below 9 digits


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e12, 1e12), st.floats(1e-6, 1e12), st.integers(3, 12))
def test_nice_ticks_everywhere(lo, span, max_ticks):
    hi = lo + span
    assume(hi - lo > 1e-9 * max(abs(lo), abs(hi)))  # a span of 9 digits at least (the test above: less)
    ticks = nice_ticks(lo, hi, max_ticks)
    assert_nice(ticks, lo, hi, max_ticks)


# -- x ticks: dates -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("first, last, expected", [
    ("2021-01-05", "2021-12-20", ["Mar 2021", "May 2021", "Jul 2021", "Sep 2021", "Nov 2021"]),
    ("2021-03-03", "2021-04-20", ["2021-03-11", "2021-03-21", "2021-04-01", "2021-04-11"]),
    ("2021-03-03", "2021-03-05", ["2021-03-03", "2021-03-04", "2021-03-05"]),
    ("2021-03-03", "2021-03-03", ["2021-03-03"]),
    ("2015-06-01", "2023-02-01", [str(y) for y in range(2016, 2024)]),
    ("1950-01-01", "2024-01-01", [str(y) for y in range(1950, 2030, 10)]),
    ("2019-01-01", "2022-12-31", ["Jan 2019", "Jul 2019", "Jan 2020", "Jul 2020", "Jan 2021", "Jul 2021",
                                  "Jan 2022", "Jul 2022"]),
])
def test_date_ticks(first, last, expected):
    assert [label for _, label in date_ticks(first, last)] == expected


@settings(max_examples=300, deadline=None)
@given(st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)), st.integers(0, 30000), st.integers(2, 10))
def test_date_ticks_are_round_dates_within_the_range(first, days, max_ticks):
    last = first + dt.timedelta(days=days)
    ticks = date_ticks(first, last, max_ticks)
    dates = [dt.date.fromisoformat(iso) for iso, _ in ticks]
    assert 1 <= len(dates) <= max_ticks and dates == sorted(dates)
    assert all(first <= d <= last for d in dates), (first, last, ticks)
    if days >= 2 * max_ticks:      # room for more than one tick: round ones, not the data's own dates
        assert all(d.day in (1, 6, 11, 16, 21, 26) or d.day % 2 for d in dates), ticks
        assert len(dates) >= 2 or max_ticks < 6, ticks
        gaps = [(b - a).days for a, b in zip(dates, dates[1:])]
        assert not gaps or max(gaps) <= 3 * min(gaps), ticks                      # about evenly spaced
    for (iso, label), d in zip(ticks, dates):
        assert label in (iso, d.strftime("%b %Y"), str(d.year))
        if label == str(d.year):
            assert (d.month, d.day) == (1, 1)
        elif label != iso:
            assert d.day == 1


# -- the page's data: title, axis name, ticks ---------------------------------------------------------------

MONTHS = [f"2021-{m:02d}-{d:02d}" for m, d in zip(range(1, 13), (5, 9, 3, 14, 2, 20, 8, 13, 1, 19, 4, 12))]
NAMES = ["North meadow", "Oak wood", "Riverside", "Barley 7", "Old orchard", "Fallow"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A year of monthly 2-band scenes (band descriptions and a unit set) and six named fields:
    an extraction's plot."""
    folder = tmp_path_factory.mktemp("plot")
    rng = np.random.default_rng(5)
    season = np.sin(np.linspace(0, np.pi, 12))
    amplitude = np.linspace(12, 24, 60)[None, :]            # a field further east has a higher summer peak
    paths = []
    for k, date in enumerate(MONTHS):
        a = np.empty((2, 60, 60), np.float32)
        a[0] = 3 + amplitude * season[k] + rng.normal(0, 2, (60, 60))
        a[1] = 0.2 + 0.5 * season[k] + rng.normal(0, 0.05, (60, 60))
        path = write_raster(folder / f"S2_{date}.tif", a, nodata=-9999, descriptions=["Red", "NDVI"])
        with rasterio.open(path, "r+") as dst:
            dst.units = ("%", "")
        paths.append(path)
    x0, y1 = 500000, 5000000
    geoms = [shapely.box(x0 + 20 + 90 * (i % 3), y1 - 100 - 250 * (i // 3), x0 + 90 + 90 * (i % 3),
                         y1 - 20 - 250 * (i // 3)) for i in range(6)]
    zones = folder / "fields.gpkg"
    pyogrio.raw.write(str(zones), shapely.to_wkb(geoms), [np.array(NAMES, dtype=object)], ["name"],
                      crs=UTM_CRS, geometry_type="Polygon", driver="GPKG")
    result = extract_stats(paths, str(zones), ExtractSpec(["mean", "std"]), id_field="name", tile_size=32)
    return result, result.plot(str(folder / "plot.html"))


def test_the_title_says_what_is_plotted(page):
    data = plot_data(page[0])
    assert data["title"] == "Mean ± std of Red (band 1), NDVI (band 2) per feature"
    assert "time series" not in data["title"] and "name" not in data["title"]
    assert data["bands"] == [{"band": 1, "name": "Red (band 1)", "unit": "%"},
                             {"band": 2, "name": "NDVI (band 2)", "unit": ""}]
    assert data["id_name"] == "name" and [f["id"] for f in data["features"]] == NAMES


def test_every_series_has_round_ticks_that_cover_it(page):
    data = plot_data(page[0])
    assert data["x_ticks"] == [(f"2021-{m:02d}-01", f"{name} 2021") for m, name in
                               ((3, "Mar"), (5, "May"), (7, "Jul"), (9, "Sep"), (11, "Nov"))]
    for feature in data["features"]:
        for series in feature["b"]:
            m, e = np.array(series["m"], float), np.array(series["e"], float)
            assert_nice(series["t"], float(np.min(m - e)), float(np.max(m + e)))


def test_bands_without_a_description_are_numbered(tmp_path):
    from tilewise.core.operations.extract.plot import band_info
    path = write_raster(tmp_path / "plain.tif", np.zeros((3, 4, 4), np.uint8))
    assert [b["name"] for b in band_info(path, [1, 3])] == ["band 1", "band 3"]
    assert band_info(str(tmp_path / "gone.tif"), [2]) == [{"band": 2, "name": "band 2", "unit": ""}]


# -- the page in headless Chromium ----------------------------------------------------------------------------

def chromium(*args, timeout=180):
    """Headless Chromium on a page: ``(stdout, stderr)``; its console messages are on stderr."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        raise RuntimeError("chromium is not installed: `make system-deps` installs it (apt package chromium)")
    with tempfile.TemporaryDirectory(prefix="tilewise-chromium-") as profile:
        proc = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                               f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def console(stderr, page):
    """The console messages (errors, warnings, logs) of ``page``."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and Path(page).name in line]


def test_a_page_with_an_error_shows_in_the_console(tmp_path):
    """The check below can fail: a script error is seen."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, stderr = chromium("--dump-dom", bad.as_uri())
    assert any("undefinedFunction" in line for line in console(stderr, bad)), stderr[-2000:]


def svg_texts(dom, svg_id):
    svg = re.search(rf'<svg id="{svg_id}"[^>]*>(.*?)</svg>', dom, re.S).group(1)
    return [html_text(t) for t in re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)]


def html_text(text):
    return html.unescape(text)


def test_the_page_loads_with_no_console_message_and_draws_round_axes(page, tmp_path):
    result, path = page
    dom, stderr = chromium("--dump-dom", Path(path).as_uri())
    assert console(stderr, path) == [], console(stderr, path)
    data = plot_data(result)
    first = data["features"][0]["b"][0]
    texts = svg_texts(dom, "main")
    assert texts[:len(first["t"])] == [f"{t:g}" for t in first["t"]]                      # round y ticks
    assert texts[len(first["t"]):-1] == ["Mar 2021", "May 2021", "Jul 2021", "Sep 2021", "Nov 2021"]
    assert texts[-1] == "mean ± std of Red (band 1), in %"                                 # the y axis
    title = html_text(re.search(r'<h1 id="title">(.*?)</h1>', dom).group(1))
    assert title == "Mean ± std of Red (band 1) — North meadow"
    assert html_text(re.search(r'<div id="note">(.*?)</div>', dom).group(1)).startswith("name = North meadow")
    assert dom.count('class="cell') == len(NAMES) and dom.count("<polygon") >= len(NAMES) + 1   # ± std bands
    shot = tmp_path / "plot.png"
    chromium("--window-size=1200,580", f"--screenshot={shot}", Path(path).as_uri())
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    if os.environ.get("TILEWISE_SAVE_SCREENSHOTS"):  # the picture in docs/extract.md
        shutil.copyfile(shot, DOCS / "extract_plot.png")

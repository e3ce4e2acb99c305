"""OUTPUT_PLOT: one self-contained HTML page with each feature's time series.

The page carries its data as JSON and draws with a few lines of inline
JavaScript into SVG: no CDN, no network, opens from disk in any browser. For
polygons (and point windows) it shows the mean with a band of +/- one standard
deviation and the number of valid pixels on hover; for points, the value.
A list with a filter, previous/next buttons and pages of small multiples make
thousands of features browsable; beyond ``max_features`` the first ones are
kept and the page says so.

The axes are worked out here, not in the browser: round y ticks (1, 2 or 5 x 10^k apart, :func:`nice_ticks`)
for each feature and band, round dates on the x axis (:func:`date_ticks`), and the y axis named after the
band (its description and unit in the first raster's metadata, else its number).
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import OutputError
from ...io.atomic import atomic_write
from .layout import date_order

log = logging.getLogger(__name__)

DEFAULT_MAX_FEATURES = 10000
#: The most ticks on the main chart's y axis, and on its x axis of dates (900 pixels wide).
Y_TICKS, X_TICKS = 7, 8

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Days of the month that carry a tick, for ticks 1, 2, 5, 10 and 15 days apart (a month's end is skipped
#: rather than put a tick one day before the next month's first).
_DAY_STEPS = ((1, tuple(range(1, 32))), (2, tuple(range(1, 30, 2))), (5, (1, 6, 11, 16, 21, 26)),
              (10, (1, 11, 21)), (15, (1, 16)))
_MONTH_STEPS = (1, 2, 3, 6)


def nice_ticks(lo: float, hi: float, max_ticks: int = Y_TICKS) -> List[float]:
    """Round ticks 1, 2 or 5 x 10^k apart, from at or below ``lo`` to at or above ``hi``: the
    smallest such step that needs at most ``max_ticks`` (at least 3) ticks. A single value (to 9
    digits) gets a range of +/- 5 % around it; no finite value gets ``[0, 1]``.

    >>> nice_ticks(2.985, 25.31)
    [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    >>> nice_ticks(0.12, 0.87, 5)
    [0.0, 0.5, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # one value, give or take its rounding
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    max_ticks = max(int(max_ticks), 3)
    exponent = math.floor(math.log10((hi - lo) / max_ticks)) - 1
    while True:
        for m in (1, 2, 5):
            step = m * 10.0 ** exponent
            # a hair of slack, so that 0.3 / 0.1 = 2.9999999999999996 starts at 0.3, not at 0.2
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if last - first + 1 <= max_ticks:
                decimals = max(0, -exponent)
                return [round(k * step, decimals) + 0.0 for k in range(first, last + 1)]
        exponent += 1


def date_ticks(first: Any, last: Any, max_ticks: int = X_TICKS) -> List[Tuple[str, str]]:
    """Round dates from ``first`` to ``last`` (dates or ISO strings), at most ``max_ticks`` of them:
    days (1, 2, 5, 10 or 15 apart, from the first of the month), first days of months (1, 2, 3 or 6
    apart, from January) or of years (1, 2, 5, 10... apart); the finest that fits. Each is
    ``(ISO date, label)``: ``2021-03-11``, ``Mar 2021`` or ``2021``.

    >>> date_ticks("2021-01-05", "2021-12-20")  # doctest: +NORMALIZE_WHITESPACE
    [('2021-03-01', 'Mar 2021'), ('2021-05-01', 'May 2021'), ('2021-07-01', 'Jul 2021'),
     ('2021-09-01', 'Sep 2021'), ('2021-11-01', 'Nov 2021')]
    """
    lo, hi = sorted((np.datetime64(first, "D"), np.datetime64(last, "D")))
    for ticks, fmt in _date_candidates(lo, hi):
        if 0 < len(ticks) <= max_ticks:
            return [(str(t), fmt(t)) for t in ticks]
    return [(str(lo), str(lo))]


def _date_candidates(lo: np.datetime64, hi: np.datetime64):
    """``(ticks, label format)`` from the finest step to the coarsest."""
    if hi - lo <= np.timedelta64(500, "D"):
        days = np.arange(lo, hi + np.timedelta64(1, "D"))
        day_of_month = (days - days.astype("datetime64[M]")).astype(int) + 1
        for _, allowed in _DAY_STEPS:
            yield days[np.isin(day_of_month, allowed)], str
    months = np.arange(lo.astype("datetime64[M]"), hi.astype("datetime64[M]") + np.timedelta64(1, "M"))
    starts = months.astype("datetime64[D]")
    starts, months = starts[starts >= lo], months[starts >= lo]
    month_index = months.astype(int) % 12
    for step in _MONTH_STEPS:
        yield starts[month_index % step == 0], _month_label
    first_year, last_year = int(str(lo)[:4]), int(str(hi)[:4])
    step = 1
    while True:
        years = [y for y in range(first_year + (-first_year) % step, last_year + 1, step)
                 if np.datetime64(f"{y:04d}-01-01") >= lo]
        yield np.array([np.datetime64(f"{y:04d}-01-01") for y in years], "datetime64[D]"), lambda t: str(t)[:4]
        if len(years) <= 1:
            return
        step = _next_nice(step)


def _next_nice(step: int) -> int:
    """1, 2, 5, 10, 20, 50, ..."""
    lead = int(str(step)[0])
    return step * 2 if lead in (1, 5) else step * 5 // 2


def _month_label(t: np.datetime64) -> str:
    text = str(t)
    return f"{_MONTHS[int(text[5:7]) - 1]} {text[:4]}"


def band_info(path: str, bands: Sequence[int]) -> List[Dict[str, Any]]:
    """Per band: its number, a name for the axis (``NIR (band 4)`` from the raster's band description, else
    ``band 4``) and its unit (GDAL's unit type), from the raster at ``path``; numbers only if it cannot be read."""
    descriptions: Sequence[Optional[str]] = ()
    units: Sequence[Optional[str]] = ()
    try:
        from ...io.sources import open_raster
        with open_raster(path) as src:
            descriptions, units = src.descriptions, src.units
    except Exception:  # noqa: BLE001 (labels only: the page is still written with band numbers)
        log.debug("No band names read from %s for the plot", path, exc_info=True)
    out = []
    for b in bands:
        text = (descriptions[b - 1] or "").strip() if b - 1 < len(descriptions) else ""
        unit = (units[b - 1] or "").strip() if b - 1 < len(units) else ""
        out.append({"band": int(b), "name": f"{text} (band {b})" if text else f"band {b}", "unit": unit})
    return out


def y_ticks(mean: List[Optional[float]], std: Optional[List[Optional[float]]]) -> List[float]:
    """The ticks of a series' y axis: round values that cover mean +/- std."""
    m = np.array([np.nan if v is None else v for v in mean], np.float64)
    e = np.zeros_like(m) if std is None else np.nan_to_num(np.array([np.nan if v is None else v for v in std],
                                                                    np.float64))
    finite = np.isfinite(m)
    if not finite.any():
        return nice_ticks(math.nan, math.nan)
    return nice_ticks(float(np.min((m - e)[finite])), float(np.max((m + e)[finite])))


def plot_data(result: Any, max_features: int = DEFAULT_MAX_FEATURES) -> Dict[str, Any]:
    """The page's data: x axis and its ticks, bands, and per sample its label and series (mean, std,
    n_valid per layer, and the y ticks)."""
    plan = result.plan
    stats = result.stats
    order = date_order(plan.dates)
    n_b = len(plan.bands)
    dates = np.asarray(plan.dates, dtype="datetime64[D]")[order]
    dated = bool(len(dates)) and not np.any(np.isnat(dates))
    samples = plan.samples
    n_show = min(len(samples), int(max_features))
    ids = plan.zones.ids[samples.feature]
    features: List[Dict[str, Any]] = []
    for s in range(n_show):
        label = label_text(ids[s])
        if samples.vertex is not None:
            label += f" / vertex {int(samples.vertex[s])}"
        series = []
        for b in range(n_b):
            layers = order * n_b + b
            entry = {"m": plot_numbers(stats.mean[s, layers]), "v": plot_numbers(stats.n_valid[s, layers])}
            if not samples.as_values:
                entry["e"] = plot_numbers(stats.std[s, layers])
            entry["t"] = y_ticks(entry["m"], entry.get("e"))
            series.append(entry)
        features.append({"id": label, "b": series})
    bands = band_info(plan.rasters[0].path, plan.bands) if plan.rasters else []
    statistic = "value" if samples.as_values else "mean ± std"
    return {
        "title": f"{statistic.capitalize()} of {', '.join(b['name'] for b in bands)} per feature",
        "id_name": plan.zones.id_name,
        "x": [str(d) for d in dates] if dated else list(range(1, len(order) + 1)),
        "dated": dated,
        "x_ticks": date_ticks(dates.min(), dates.max()) if dated else [],
        "sources": [plan.rasters[i].source for i in order],
        "bands": bands,
        "points": bool(samples.as_values),
        "statistic": statistic,
        "total": len(samples),
        "features": features,
    }


def write_plot(result: Any, path: str, max_features: int = DEFAULT_MAX_FEATURES) -> str:
    """Write the HTML chart of ``result`` (an :class:`.pipeline.ExtractResult`) to ``path``; return it."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"The folder of OUTPUT_PLOT does not exist: {folder}")
    return write_page(plot_data(result, max_features), path)


def write_page(data: Dict[str, Any], path: str) -> str:
    """Write the page of ``data`` (:func:`plot_data`'s, or a swath extraction's) to ``path``; return it."""
    page = _PAGE.replace("__TITLE__", html.escape(data["title"])).replace(
        "__DATA__", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    with atomic_write(path) as f:
        f.write(page)
    return os.path.abspath(path)


def plot_numbers(values: np.ndarray) -> List[Optional[float]]:
    """``values`` as the page's JSON numbers: 6 significant digits, None where not finite."""
    return [None if not math.isfinite(v) else float(f"{v:.6g}") for v in np.asarray(values, np.float64).tolist()]


def label_text(value: Any) -> str:
    """A feature id or label as the page shows it: bytes decoded, whole floats without their .0."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px}#note{color:#666;margin-bottom:10px}
#bar{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
#list{width:260px}#main{border:1px solid #ddd;background:#fff}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:6px;margin-top:10px}
.cell{border:1px solid #ddd;cursor:pointer;padding:2px}.cell.on{border-color:#1f77b4;box-shadow:0 0 0 1px #1f77b4}
.cell div{font-size:11px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;font-size:12px;
display:none}
</style></head><body>
<h1 id="title"></h1><div id="note"></div>
<div id="bar"><input id="filter" placeholder="filter ids" size="14">
<select id="list"></select><button id="prev">&#9664;</button><button id="next">&#9654;</button>
<label id="bandbox">band <select id="band"></select></label>
<span id="pageinfo"></span><button id="pprev">page &#9664;</button><button id="pnext">page &#9654;</button></div>
<svg id="main" width="900" height="360"></svg><div id="grid"></div><div id="tip"></div>
<script>
const D = __DATA__;
const NS = "http://www.w3.org/2000/svg", PAGE = 24;
let shown = D.features.map((f, i) => i), cur = 0, band = 0, page = 0;
const $ = id => document.getElementById(id);
$("title").textContent = D.title;
const STAT = D.statistic.charAt(0).toUpperCase() + D.statistic.slice(1);
function note(f) { return (f ? D.id_name + " = " + f.id + " \u00b7 " : "") + D.total + " features, " +
  D.x.length + " rasters" +
  (D.dated ? " from " + D.x[0] + " to " + D.x[D.x.length - 1] : "") +
  (D.features.length < D.total ? " - the first " + D.features.length + " features are shown" : ""); }
$("note").textContent = note(null);
D.bands.forEach((b, i) => { const o = document.createElement("option"); o.value = i; o.textContent = b.name;
  $("band").appendChild(o); });
if (D.bands.length < 2) $("bandbox").style.display = "none";
const xs = D.dated ? D.x.map(d => Date.parse(d)) : D.x;
function el(tag, attrs, parent) { const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
function range(f) { const t = f.b[band].t; return [t[0], t[t.length - 1]]; }
function draw(svg, f, small) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = small ? 4 : 70, R = small ? 4 : 20, T = small ? 4 : 14, B = small ? 4 : 40;
  const x0 = Math.min(...xs), x1 = Math.max(...xs), [y0, y1] = range(f), s = f.b[band];
  const X = v => L + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (W - L - R);
  const Y = v => H - B - (v - y0) / (y1 - y0) * (H - T - B);
  if (!small) axes(svg, X, Y, s.t, W, H, L, B);
  let seg = [];
  const flush = () => { if (seg.length && s.e) { const up = seg.map(i => X(xs[i]) + "," + Y(s.m[i] + (s.e[i] || 0)));
      const dn = seg.slice().reverse().map(i => X(xs[i]) + "," + Y(s.m[i] - (s.e[i] || 0)));
      el("polygon", {points: up.concat(dn).join(" "), fill: "#1f77b4", "fill-opacity": 0.18}, svg); }
    if (seg.length) el("polyline", {points: seg.map(i => X(xs[i]) + "," + Y(s.m[i])).join(" "), fill: "none",
      stroke: "#1f77b4", "stroke-width": small ? 1 : 1.8}, svg); seg = []; };
  s.m.forEach((m, i) => { if (m === null) flush(); else seg.push(i); }); flush();
  if (small) return;
  s.m.forEach((m, i) => { if (m === null) return;
    const c = el("circle", {cx: X(xs[i]), cy: Y(m), r: 3.5, fill: "#1f77b4"}, svg);
    c.addEventListener("mousemove", ev => tip(ev, i, s));
    c.addEventListener("mouseleave", () => $("tip").style.display = "none"); });
}
function axes(svg, X, Y, ticks, W, H, L, B) {
  ticks.forEach(v => { el("line", {x1: L, y1: Y(v), x2: W - 20, y2: Y(v), stroke: "#eee"}, svg);
    el("text", {x: L - 6, y: Y(v) + 4, "text-anchor": "end", "font-size": 11}, svg).textContent = v; });
  el("line", {x1: L, y1: H - B, x2: W - 20, y2: H - B, stroke: "#999"}, svg);
  el("line", {x1: L, y1: 14, x2: L, y2: H - B, stroke: "#999"}, svg);
  if (D.dated) D.x_ticks.forEach(([iso, label]) => { const x = X(Date.parse(iso));
    el("line", {x1: x, y1: H - B, x2: x, y2: H - B + 5, stroke: "#999"}, svg);
    el("text", {x: x, y: H - B + 18, "text-anchor": "middle", "font-size": 11}, svg).textContent = label; });
  else { const step = Math.max(1, Math.ceil(xs.length / 8));
    for (let i = 0; i < xs.length; i += step) {
      const anchor = xs.length > 1 && i === 0 ? "start" : (i + step >= xs.length && xs.length > 1 ? "end" : "middle");
      el("text", {x: X(xs[i]), y: H - B + 16, "text-anchor": anchor, "font-size": 11}, svg).textContent =
        D.sources[i]; } }
  const b = D.bands[band], lab = el("text", {x: 14, y: (H - B + 14) / 2, "font-size": 12,
    transform: "rotate(-90 14 " + (H - B + 14) / 2 + ")", "text-anchor": "middle"}, svg);
  lab.textContent = D.statistic + " of " + b.name + (b.unit ? ", in " + b.unit : "");
}
function tip(ev, i, s) { const t = $("tip"); t.style.display = "block";
  t.style.left = ev.clientX + 12 + "px"; t.style.top = ev.clientY + 12 + "px";
  t.textContent = (D.dated ? D.x[i] + " " : "") + D.sources[i] + ": " + s.m[i] +
    (s.e ? " \u00b1 " + s.e[i] + " (" + s.v[i] + " valid pixels)" : ""); }
function fillList() { const l = $("list"); l.innerHTML = "";
  shown.forEach(i => { const o = document.createElement("option");
    o.value = i; o.textContent = D.features[i].id; l.appendChild(o); }); }
function select(i) { cur = i; $("list").value = i; draw($("main"), D.features[i], false);
  $("title").textContent = STAT + " of " + D.bands[band].name + " \u2014 " + D.features[i].id;
  $("note").textContent = note(D.features[i]);
  document.querySelectorAll(".cell").forEach(c => c.classList.toggle("on", +c.dataset.i === i)); }
function grid() { const g = $("grid"); g.innerHTML = ""; const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  page = Math.min(page, pages - 1); $("pageinfo").textContent = "page " + (page + 1) + " / " + pages;
  shown.slice(page * PAGE, page * PAGE + PAGE).forEach(i => { const c = document.createElement("div");
    c.className = "cell"; c.dataset.i = i;
    const cap = document.createElement("div"); cap.textContent = D.features[i].id; c.appendChild(cap);
    const svg = el("svg", {width: 176, height: 60}, c); draw(svg, D.features[i], true);
    c.onclick = () => select(i); g.appendChild(c); }); }
function step(d) { const k = shown.indexOf(cur);
  if (shown.length) select(shown[(k + d + shown.length) % shown.length]); }
$("filter").oninput = () => { const q = $("filter").value.toLowerCase();
  shown = D.features.map((f, i) => i).filter(i => D.features[i].id.toLowerCase().includes(q));
  page = 0; fillList(); grid();
  if (shown.length) select(shown[0]); };
$("list").onchange = () => select(+$("list").value);
$("prev").onclick = () => step(-1); $("next").onclick = () => step(1);
$("pprev").onclick = () => { page = Math.max(0, page - 1); grid(); }; $("pnext").onclick = () => { page++; grid(); };
$("band").onchange = () => { band = +$("band").value; grid(); select(cur); };
fillList(); grid(); if (D.features.length) select(0);
</script></body></html>
"""

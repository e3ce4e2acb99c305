"""OUTPUT_PLOT: one self-contained HTML page with each feature's time series.

The page carries its data as JSON and draws with a few lines of inline
JavaScript into SVG: no CDN, no network, opens from disk in any browser. For
polygons (and point windows) it shows the mean with a band of +/- one standard
deviation and the number of valid pixels on hover; for points, the value.
A list with a filter, previous/next buttons and pages of small multiples make
thousands of features browsable; beyond ``max_features`` the first ones are
kept and the page says so.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

from ...errors import OutputError
from .layout import date_order

DEFAULT_MAX_FEATURES = 10000


def plot_data(result: Any, max_features: int = DEFAULT_MAX_FEATURES) -> Dict[str, Any]:
    """The page's data: x axis, bands, and per sample its label and series (mean, std, n_valid per layer)."""
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
        label = _text(ids[s])
        if samples.vertex is not None:
            label += f" / vertex {int(samples.vertex[s])}"
        series = []
        for b in range(n_b):
            layers = order * n_b + b
            entry = {"m": _numbers(stats.mean[s, layers]), "v": _numbers(stats.n_valid[s, layers])}
            if not samples.as_values:
                entry["e"] = _numbers(stats.std[s, layers])
            series.append(entry)
        features.append({"id": label, "b": series})
    return {
        "title": f"{plan.zones.id_name} time series",
        "x": [str(d) for d in dates] if dated else list(range(1, len(order) + 1)),
        "dated": dated,
        "sources": [plan.rasters[i].source for i in order],
        "bands": list(plan.bands),
        "points": bool(samples.as_values),
        "statistic": "value" if samples.as_values else "mean ± std",
        "total": len(samples),
        "features": features,
    }


def write_plot(result: Any, path: str, max_features: int = DEFAULT_MAX_FEATURES) -> str:
    """Write the HTML chart of ``result`` (an :class:`.pipeline.ExtractResult`) to ``path``; return it."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"The folder of OUTPUT_PLOT does not exist: {folder}")
    data = plot_data(result, max_features)
    page = _PAGE.replace("__TITLE__", html.escape(data["title"])).replace(
        "__DATA__", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tilewise-partial.html")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return os.path.abspath(path)


def _numbers(values: np.ndarray) -> List[Optional[float]]:
    return [None if not math.isfinite(v) else float(f"{v:.6g}") for v in np.asarray(values, np.float64).tolist()]


def _text(value: Any) -> str:
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
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;font-size:12px;display:none}
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
$("note").textContent = D.total + " features, " + D.x.length + " rasters, " + D.statistic +
  (D.features.length < D.total ? " - the first " + D.features.length + " features are shown" : "");
D.bands.forEach((b, i) => { const o = document.createElement("option"); o.value = i; o.textContent = b; $("band").appendChild(o); });
if (D.bands.length < 2) $("bandbox").style.display = "none";
const xs = D.dated ? D.x.map(d => Date.parse(d)) : D.x;
function el(tag, attrs, parent) { const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
function range(f) { let lo = Infinity, hi = -Infinity; const s = f.b[band];
  s.m.forEach((m, i) => { if (m === null) return; const e = s.e ? (s.e[i] || 0) : 0;
    lo = Math.min(lo, m - e); hi = Math.max(hi, m + e); });
  if (lo === Infinity) return [0, 1]; if (lo === hi) { lo -= 1; hi += 1; } return [lo, hi]; }
function draw(svg, f, small) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = small ? 4 : 70, R = small ? 4 : 20, T = small ? 4 : 14, B = small ? 4 : 40;
  const x0 = Math.min(...xs), x1 = Math.max(...xs), [y0, y1] = range(f), s = f.b[band];
  const X = v => L + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (W - L - R);
  const Y = v => H - B - (v - y0) / (y1 - y0) * (H - T - B);
  if (!small) axes(svg, X, Y, y0, y1, W, H, L, B);
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
    c.addEventListener("mousemove", ev => tip(ev, i, s)); c.addEventListener("mouseleave", () => $("tip").style.display = "none"); });
}
function axes(svg, X, Y, y0, y1, W, H, L, B) {
  el("line", {x1: L, y1: H - B, x2: W - 20, y2: H - B, stroke: "#999"}, svg);
  el("line", {x1: L, y1: 14, x2: L, y2: H - B, stroke: "#999"}, svg);
  for (let k = 0; k <= 4; k++) { const v = y0 + (y1 - y0) * k / 4, t = el("text", {x: L - 6, y: Y(v) + 4, "text-anchor": "end", "font-size": 11}, svg);
    t.textContent = +v.toPrecision(4); el("line", {x1: L, y1: Y(v), x2: W - 20, y2: Y(v), stroke: "#eee"}, svg); }
  const step = Math.max(1, Math.ceil(xs.length / 8));
  for (let i = 0; i < xs.length; i += step) {
    const anchor = xs.length > 1 && i === 0 ? "start" : (i + step >= xs.length && xs.length > 1 ? "end" : "middle");
    const t = el("text", {x: X(xs[i]), y: H - B + 16, "text-anchor": anchor, "font-size": 11}, svg);
    t.textContent = D.dated ? D.x[i] : D.sources[i]; }
  const lab = el("text", {x: 12, y: (H - B + 14) / 2, "font-size": 12, transform: "rotate(-90 12 " + (H - B + 14) / 2 + ")",
    "text-anchor": "middle"}, svg);
  lab.textContent = D.statistic + (D.bands.length > 1 ? ", band " + D.bands[band] : "");
}
function tip(ev, i, s) { const t = $("tip"); t.style.display = "block"; t.style.left = ev.clientX + 12 + "px"; t.style.top = ev.clientY + 12 + "px";
  t.textContent = (D.dated ? D.x[i] + " " : "") + D.sources[i] + ": " + s.m[i] + (s.e ? " \u00b1 " + s.e[i] + " (" + s.v[i] + " valid pixels)" : ""); }
function fillList() { const l = $("list"); l.innerHTML = ""; shown.forEach(i => { const o = document.createElement("option");
  o.value = i; o.textContent = D.features[i].id; l.appendChild(o); }); }
function select(i) { cur = i; $("list").value = i; draw($("main"), D.features[i], false);
  document.querySelectorAll(".cell").forEach(c => c.classList.toggle("on", +c.dataset.i === i)); }
function grid() { const g = $("grid"); g.innerHTML = ""; const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  page = Math.min(page, pages - 1); $("pageinfo").textContent = "page " + (page + 1) + " / " + pages;
  shown.slice(page * PAGE, page * PAGE + PAGE).forEach(i => { const c = document.createElement("div"); c.className = "cell"; c.dataset.i = i;
    const cap = document.createElement("div"); cap.textContent = D.features[i].id; c.appendChild(cap);
    const svg = el("svg", {width: 176, height: 60}, c); draw(svg, D.features[i], true);
    c.onclick = () => select(i); g.appendChild(c); }); }
function step(d) { const k = shown.indexOf(cur); if (shown.length) select(shown[(k + d + shown.length) % shown.length]); }
$("filter").oninput = () => { const q = $("filter").value.toLowerCase();
  shown = D.features.map((f, i) => i).filter(i => D.features[i].id.toLowerCase().includes(q)); page = 0; fillList(); grid();
  if (shown.length) select(shown[0]); };
$("list").onchange = () => select(+$("list").value);
$("prev").onclick = () => step(-1); $("next").onclick = () => step(1);
$("pprev").onclick = () => { page = Math.max(0, page - 1); grid(); }; $("pnext").onclick = () => { page++; grid(); };
$("band").onchange = () => { band = +$("band").value; grid(); select(cur); };
fillList(); grid(); if (D.features.length) select(0);
</script></body></html>
"""

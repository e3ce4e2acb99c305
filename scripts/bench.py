"""``make bench``: Tilewise side by side with QGIS, GDAL, numpy and exactextract on the same files, in one run.

Every tool runs end to end, from files on disk to a finished output file, as a
separate process; wall time (median of --runs, with min and max) and the peak
memory of its whole process tree are recorded. Every case runs on noise and on
inputs that look like imagery (smooth fields; a coarse scene disaggregated x20).
Each case also has a floor per output kind (scripts/bench_floor.py): the
shortest honest program that decodes the same inputs, does the same arithmetic
and writes the same kind of output on all cores, as its own process (against
the CLI and qgis_process) and in a pre-started process (against the QGIS
session's runs). The goals of issue 21 are checked at the end, and the DEFLATE
level x predictor trade of the NDVI COG is measured. Tilewise runs in debug mode (``--debug``, ``TILEWISE_DEBUG``) and
its phase breakdown (the log's last line) is kept: the chart stacks each Tilewise bar by phase,
with what lies outside the engine's and the algorithm's clocks (the process's own start and exit,
qgis_process loading QGIS) as "outside". Writes bench-output/bench.md and bench.png.

    python3 scripts/bench.py --engine-python .venv/bin/python [--quick] [--runs 3]
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Bench, KINDS, PAGE, ROOT, floor_of  # noqa: E402


#: Goal of issue 21: every case at most this many times its floor, in a session and from the CLI ...
FLOOR_GOAL = 1.25
#: ... but for the two cases the issue gives a goal of their own: gap filling and extraction at points.
OWN_FLOOR_GOAL = 1.5


def floor_goal(row):
    """The most times its floor ``row`` may take: :data:`OWN_FLOOR_GOAL` for gap filling and extraction at
    points (the issue's own goals for them), else :data:`FLOOR_GOAL`."""
    own = row["tool"] == "tilewise gapfill (CLI)" or row["tool"].startswith("tilewise extract")
    return OWN_FLOOR_GOAL if own else FLOOR_GOAL


def is_measured_tilewise(row):
    """Tilewise's CLI rows and its rows in a QGIS session: the ones the floor goal is about. The scaling
    rows held to fewer workers than the machine has cores (``tilewise CLI, 1 worker(s)``) measure the
    parallel efficiency, not a case: the floor runs on every core."""
    tool = row["tool"]
    held = re.search(r", (\d+) worker\(s\)$", tool)
    if held and int(held.group(1)) < (os.cpu_count() or 1):
        return False
    return not row["floor"] and (row.get("where") == "session" and tool.startswith("tilewise")
                                 or "(CLI)" in tool or tool.startswith("tilewise CLI")
                                 or tool.startswith("tilewise extract"))


def goals(rows, firsts=()):
    """The goals of issue 21, each measured (session figures: medians of the warm runs), one line each."""
    lines = []

    def goal(text, value, ok):
        lines.append(f"- {text}: {value} -> {'met' if ok else 'not met'}")

    ratios = [(r, r["median"] / f["median"]) for r in rows if is_measured_tilewise(r)
              for f in [floor_of(rows, r)] if f]
    if ratios:
        worst = max(ratios, key=lambda rr: rr[1] / floor_goal(rr[0]))     # the furthest over (or nearest) its goal
        goal(f"every case <= {FLOOR_GOAL}x its floor, in a session and from the CLI (gap filling and extraction "
             f"at points: <= {OWN_FLOOR_GOAL}x, their own goals below)",
             f"{sum(x <= floor_goal(r) for r, x in ratios)} of {len(ratios)} within; worst {worst[1]:.2f}x "
             f"({worst[0]['case']}: {worst[0]['tool']})", all(x <= floor_goal(r) for r, x in ratios))
        for r, x in ratios:
            lines.append(f"  - {r['case']}: {r['tool']}: {x:.2f}x its floor"
                         f"{'' if x <= floor_goal(r) else f' (over {floor_goal(r)}x)'}")
    session = [r for r in rows if r.get("where") == "session" and not r["floor"]]

    def med(key, kind, tool):
        return next((r["median"] for r in session if r["key"] == key and r["kind"] == kind and r["tool"] == tool), None)

    for kind in dict.fromkeys(r["kind"] for r in session):
        label = KINDS[kind]
        raw, cog = (med("ndvi", kind, t) for t in ("tilewise:ndvi NONE, no overviews (warm engine)",
                                                   "tilewise:ndvi default COG (warm engine)"))
        rc, rc_cog = (med("ndvi", kind, t) for t in ("qgis:rastercalculator", "qgis:rastercalculator + GDAL COG"))
        if raw and rc:
            goal(f"NDVI, same output (uncompressed, no overviews), >= 1.5x faster than qgis:rastercalculator in a "
                 f"session ({label})", f"{rc / raw:.2f}x", rc >= 1.5 * raw)
        if cog and rc_cog:
            goal(f"NDVI default COG >= 1x qgis:rastercalculator + GDAL's COG driver in a session ({label})",
                 f"{rc_cog / cog:.2f}x", rc_cog >= cog)
        tw = med("median", kind, "tilewise:temporalmedian (warm engine)")
        cs = med("median", kind, "native:cellstatistics")
        if tw and cs:
            goal(f"median of the stack >= 3x faster than native:cellstatistics in a session ({label})",
                 f"{cs / tw:.2f}x", cs >= 3 * tw)
        tw, cs = med("tiny", kind, "tilewise:temporalmedian (warm engine)"), med("tiny", kind, "native:cellstatistics")
        if tw and cs:
            goal(f"tiny job <= 1.5x native:cellstatistics in a session ({label})", f"{tw / cs:.2f}x its time",
                 tw <= 1.5 * cs)
    for r in rows:  # issue 21's own goals for gap filling and extraction at points, from the CLI
        f = floor_of(rows, r)
        if f and r["tool"] == "tilewise gapfill (CLI)":
            goal(f"gap filling <= {OWN_FLOOR_GOAL}x its floor ({r['case']})", f"{r['median'] / f['median']:.2f}x",
                 r["median"] <= OWN_FLOOR_GOAL * f["median"])
            xa = next((x["median"] for x in rows if x["case"] == r["case"] and x["tool"].startswith("xarray")), None)
            if xa:
                goal(f"gap filling faster than the xarray script ({r['case']})", f"{xa / r['median']:.2f}x",
                     r["median"] < xa)
        if f and r["tool"].startswith("tilewise extract") and f["output"] == "parquet":
            goal(f"extraction at points <= {OWN_FLOOR_GOAL}x its floor ({r['case']})",
                 f"{r['median'] / f['median']:.2f}x", r["median"] <= OWN_FLOOR_GOAL * f["median"])
    for first in firsts:
        pairs = [("tilewise:temporalmedian", first["after set-up"], first["warm"])]
        pairs += [(label, first[f"{label} first"], first[f"{label} second"]) for label in first.get("others", ())]
        for label, one, two in pairs:
            goal(f"first run after set-up within 20% of the second (qgis_process, {label}, {KINDS[first['kind']]})",
                 f"{one:.2f} s against {two:.2f} s, {(one / two - 1) * 100:+.0f}%", one <= 1.2 * two)
    return "\n".join(lines)


def trade_table(rows):
    """The DEFLATE level x predictor table (file size against encode time), against today's default
    (level 6, predictor 3: the COG driver's PREDICTOR=YES on float32)."""
    lines = ["| input | DEFLATE level | predictor | encode s | size MiB | time x default | size x default |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        d = next(x for x in rows if x["input"] == r["input"] and x["level"] == 6 and x["predictor"] == 3)
        tag = " (today's default)" if r is d else ""
        lines.append(f"| {r['input']}{tag} | {r['level']} | {r['predictor']} | {r['seconds']:.2f} | "
                     f"{r['bytes'] / 2**20:.2f} | {r['seconds'] / d['seconds']:.2f} | {r['bytes'] / d['bytes']:.2f} |")
    return "\n".join(lines)


def phase_table(rows):
    """Each Tilewise run's phases (seconds of the run nearest the median)."""
    order = ["qgis", "engine start", "planning", "read", "compute", "tile writes", "overviews", "assembly", "cleanup",
             "outside"]
    names = [n for n in order if any(n in r.get("phases", {}) for r in rows)]
    lines = ["| case | tool | " + " | ".join(names) + " |", "| --- | --- |" + " ---: |" * len(names)]
    for r in rows:
        if r.get("phases"):
            lines.append(f"| {r['case']} | {r['tool']} | " +
                         " | ".join(f"{r['phases'].get(n, 0.0):.2f}" for n in names) + " |")
    return "\n".join(lines)


def table(rows):
    lines = ["| case | tool | median s | min | max | peak MB | x tilewise CLI | x floor |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by_case = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    for case, rs in by_case.items():
        ref = next((r["median"] for r in rs if "(CLI)" in r["tool"] or "1 worker" in r["tool"]), None)
        for r in rs:
            vs_tw = f"{r['median'] / ref:.2f}" if ref else ""
            floor = floor_of(rows, r)
            vs_floor = f"{r['median'] / floor['median']:.2f}" if floor else ""
            tool = r["tool"] + (f" ({r['note']})" if r["note"] else "")
            lines.append(f"| {case} | {tool} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                         f"{r['peak_mb']:.0f} | {vs_tw} | {vs_floor} |")
    return "\n".join(lines)


CHART = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows, path = json.load(open(sys.argv[1])), sys.argv[2]
cases = list(dict.fromkeys(r["case"] for r in rows))
PHASE_COLORS = {"outside": "#bdbdbd", "qgis": "#8d6e63", "engine start": "#ef6c00", "planning": "#fdd835",
                "read": "#42a5f5", "compute": "#2e7d32", "tile writes": "#7e57c2", "overviews": "#ec407a",
                "assembly": "#26a69a", "cleanup": "#9e9e9e"}
seen = set()
fig, axes = plt.subplots(len(cases), 1, figsize=(10, 2.2 * len(cases)), squeeze=False)
for ax, case in zip(axes[:, 0], cases):
    rs = [r for r in rows if r["case"] == case]
    colors = ["#888" if r["floor"] else ("#2e7d32" if "tilewise" in r["tool"] else "#1f77b4") for r in rs]
    ax.barh([r["tool"] for r in rs], [0 if r.get("phases") else r["median"] for r in rs], color=colors)
    for i, r in enumerate(rs):  # Tilewise: one segment per phase, scaled to the median run
        ph = r.get("phases") or {}
        total, left = sum(ph.values()) or 1.0, 0.0
        for name, seconds in ph.items():
            width = seconds / total * r["median"]
            ax.barh(i, width, left=left, color=PHASE_COLORS.get(name, "#ccc"),
                    label=name if name not in seen else None)
            seen.add(name)
            left += width
    for i, r in enumerate(rs):
        ax.text(r["median"], i, f" {r['median']:.2f} s", va="center", fontsize=8)
    ax.invert_yaxis(); ax.set_title(case, fontsize=10, loc="left"); ax.tick_params(labelsize=8)
    ax.set_xlabel("seconds (median)", fontsize=8)
if seen:
    fig.legend(loc="lower center", ncol=min(len(seen), 6), fontsize=7, frameon=False)
fig.tight_layout(rect=(0, 0.03 if seen else 0, 1, 1)); fig.savefig(path, dpi=110)
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-python", required=True)
    p.add_argument("--out", default=os.path.join(ROOT, "bench-output"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small inputs, one run: a CI smoke test")
    p.add_argument("--peer-memory-gb", type=float, help="address-space limit of the exactextract run (extraction)")
    p.add_argument("--only", default="", help="comma-separated cases to run (median84, median24, bands6, ndvi, "
                                              "mosaic, gapfill, scaling, tiny, session, first, kernel, extract, "
                                              "spectral); default "
                                              "all (ndvi also measures the DEFLATE level x predictor trade)")
    args = p.parse_args()
    if args.quick:
        args.runs = 1
    b = Bench(args)
    start = time.perf_counter()
    q = args.quick
    only = set(filter(None, args.only.split(",")))

    def wanted(name):
        return not only or name in only

    # Every case on noise and on imagery (smooth fields for stacks, the x20 scene for single images);
    # --quick keeps the costly cases (first run, gap filling, extraction) on imagery only.
    both = ("noise", "smooth")
    for kind in both:
        extra = kind != "noise"
        if wanted("median84"):
            b.median_case("Median 84 x 1000^2 uint8" if not q else "Median 12 x 300^2 uint8", 12 if q else 84,
                          300 if q else 1000, 1, "uint8", kind, peers="some" if extra else True)
        if wanted("tiny"):
            b.median_case("Tiny: median 12 x 81 x 33 float32", 12, "33x81", 1, "float32", kind, peers="some")
        if wanted("median24"):
            b.median_case("Median 24 x 4000^2 uint16" if not q else "Median 6 x 600^2 uint16", 6 if q else 24,
                          600 if q else 4000, 1, "uint16", kind, peers=False if q else "some" if extra else True)
        if wanted("bands6"):
            b.median_case("Median 24 x 1500^2 x 6 bands" if not q else "Median 6 x 300^2 x 6 bands", 6 if q else 24,
                          300 if q else 1500, 6, "uint8", kind)
    images = {"noise": (1000, 1000) if q else (7000, 7000), "scene": (1000, 1000) if q else (6980, 7040)}
    trade_inputs = []
    for kind, (width, height) in images.items():
        if wanted("ndvi"):
            image, like = b.ndvi_case(kind, width, height, peers=kind == "noise")
            trade_inputs.append((f"NDVI {width} x {height}, {KINDS[kind]}", image, like))
        if wanted("mosaic"):
            b.mosaic_case(kind, width, height)
    trade = b.deflate_trade(trade_inputs) if trade_inputs else None
    kernels = None
    if wanted("gapfill"):
        runs, args.runs = args.runs, 1  # one run per tool: minutes each at 48 x 2000^2
        try:
            for i, kind in enumerate(both[1:] if q else both):
                k = b.gapfill_case(12 if q else 48, 300 if q else 2000, kind, kernels=i == 0)
                kernels = kernels or k
        finally:
            args.runs = runs
    scaling = {}
    if wanted("scaling"):
        for kind in both:
            scaling[kind] = b.scaling(6 if q else 24, 600 if q else 4000, "uint16", kind)
    session = b.session((12, 300) if q else (84, 1000), images) if wanted("session") else None
    firsts = [b.first_run(kind) for kind in (both[1:] if q else both)] if wanted("first") else []
    kernel = b.kernel() if wanted("kernel") else None
    if wanted("spectral"):  # issue 25 (scripts/bench_spectral.py); hdstats/odc-algo from their own venv, if given
        from bench_spectral import spectral_case
        spectral_case(b, 12 if q else 36, 400 if q else 2000, 6, 0.3, os.environ.get("TILEWISE_BENCH_PEER_PYTHON"))
    extract_title = None
    if wanted("extract"):
        from bench_extract import extract_cases, ratios
        extract_title = extract_cases(b, q, kinds=both[1:] if q else both)
        extract_rows = [r for r in b.rows if " x " in r["case"] and ("polygons" in r["case"] or "points" in r["case"])]
    total = time.perf_counter() - start
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB, {platform.platform()}"
    load = os.getloadavg()
    md = [f"# Tilewise benchmark{' (quick)' if q else ''}{f' (cases: {args.only})' if only else ''}", "",
          f"Machine: {machine}; load average at the end {load[0]:.1f} (1 min), {load[2]:.1f} (15 min)  ",
          f"Runs per tool: {args.runs} (median shown); total bench time {total:.0f} s.", "",
          "Inputs: noise (per-pixel noise, scattered nodata: decoding dominates) and imagery: smooth fields "
          "(stacks; a little noise, clustered nodata) or a coarse scene disaggregated x20 by nearest neighbour "
          "(single images, tiled DEFLATE). `x floor`: the time over the floor of the same case and output kind "
          "(scripts/bench_floor.py: threads decode row strips, numexpr or the same numba kernel computes, one write; "
          "from the CLI and qgis_process against the floor as its own process, in the session against the floor in "
          "a pre-started process).", "", table(b.rows), "",
          "Where Tilewise's time goes (seconds per phase, the run nearest the median; outside: the process's "
          "own start and exit, and qgis_process loading QGIS):", "", phase_table(b.rows), ""]
    for kind, times in scaling.items():
        eff = {w: times[1] / (w * t) for w, t in times.items()}
        md += [f"Parallel efficiency (tilewise CLI, median case, {KINDS[kind]}): " +
               ", ".join(f"{w} worker(s) {e * 100:.0f}%" for w, e in eff.items()), ""]
    if session or firsts or any(is_measured_tilewise(r) for r in b.rows):
        md += ["Goals of issue 21 (session figures: Tilewise on its warm engine, medians of the runs after the "
               "first):", "", goals(b.rows, firsts), ""]
    if trade:
        md += ["DEFLATE level and predictor of the NDVI default COG (float32): GDAL's COG driver on all cores from "
               "the NDVI array in memory, overviews included; encode time (best of the runs) and file size:", "",
               trade_table(trade), ""]
    if kernel:
        int_k, gen_k, bn_k = kernel
        md += [f"Kernel alone, one thread, median of 84 x 512 x 512 (10% NaN): tilewise {int_k:.3f} s on 8-bit "
               f"values ({bn_k / int_k:.1f}x faster than bottleneck.nanmedian's {bn_k:.3f} s), {gen_k:.3f} s on "
               f"float values ({bn_k / gen_k:.2f}x).", ""]
    for first in firsts:
        cold = f"{first['cold']:.2f} s with an empty numba cache, " if "cold" in first else ""
        md += [f"First run (qgis_process, median of 4 x 352^2 x 6 bands uint8, {KINDS[first['kind']]}): {cold}"
               f"{first['after set-up']:.2f} s right after the set-up (whose warm-up took "
               f"{first['set-up warm-up']:.2f} s), {first['warm']:.2f} s the second run: "
               "first run after set-up / second "
               f"{first['after set-up'] / first['warm']:.2f}x.", ""]
    if extract_title:
        md += [f"Extraction ({extract_title}; tilewise extract on 2 workers against the QGIS loops and "
               "exactextract; goal: at least 10x the QGIS loop, no slower than exactextract):", "",
               ratios(extract_rows)]
    if kernels:
        md += ["", "Gap-filling kernels alone, in memory (scripts/bench_gapfill.py; all cores each): " + "; ".join(
               f"{k['case']} ({k['what']}): tilewise {min(k['tilewise']['times']):.2f} s, xarray+dask "
               f"{min(k['xarray']['times']):.2f} s, {k['ratio']:.1f}x" for k in kernels) + "."]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(b.rows, f, indent=1)
    chart = subprocess.run(b.engine("-c", CHART, os.path.join(args.out, "bench.json"),
                                    os.path.join(args.out, "bench.png")), env=b.env, capture_output=True, text=True)
    if chart.returncode:
        print("chart not drawn (matplotlib missing?):", chart.stderr[-500:])
    print("\n" + "\n".join(md))
    print(f"\nwritten: {args.out}/bench.md, bench.png")


if __name__ == "__main__":
    main()

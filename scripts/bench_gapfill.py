"""Gap filling side by side: Tilewise's kernel against xarray's ``interpolate_na`` / ``ffill`` on Dask.

Both sides get the same in-memory stack (dates x rows x cols, float32, NaN for
gaps, irregular dates) and use every core: Tilewise one process with numba's
threads, xarray Dask's threaded scheduler over spatial chunks (the time axis in
one chunk, as ``interpolate_na`` needs). Each case runs in a fresh process, so
its peak memory (VmHWM) is its own. Wall and CPU time (all threads; steadier
on a busy machine) exclude making the data and, for Tilewise, compiling (the
compile or cache load is timed apart). Before timing, both sides are checked to
give the same values on a small stack.

Run with the engine's Python (phase 2 folds it into ``make bench``):

    .venv/bin/python scripts/bench_gapfill.py [--dates 48] [--size 2000] [--gaps 0.3] [--runs 1]

``--files FOLDER [-- CLI options]`` runs ``tilewise gapfill`` end to end on a folder of dated files
instead, with the phase breakdown and the CPU time of the engine and its workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "build", "plugins")

CASES = {
    # name: (tilewise method and EDGES, xarray call, what it is); both sides give the same values
    "linear": (("linear", 0), "interpolate_na", "linear in time (weighted by days), edges left empty"),
    "previous": (("previous", 1), "ffill+bfill", "previous valid value, leading gap from the first one"),
}


def make_series(n_dates: int, size: int, gap_share: float, seed: int = 48):
    """Irregular dates (3 to 12 days apart) and a smooth seasonal float32 field with ``gap_share`` NaN."""
    import numpy as np
    rng = np.random.default_rng(seed)
    days = 19000.0 + np.cumsum(rng.integers(3, 13, n_dates)).astype(np.float64)
    stack = np.empty((n_dates, size, size), np.float32)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = (np.sin(6 * x) * np.cos(5 * y) + 1) / 2
    for i, d in enumerate(days):
        stack[i] = base * (0.5 + 0.4 * np.sin(2 * np.pi * d / 365.25)) + rng.normal(0, 0.02, (size, size))
        stack[i][rng.random((size, size)) < gap_share] = np.nan
    return days, stack


def _xarray(stack, days, call: str, chunk: int):
    import numpy as np
    import xarray as xr
    time_ = np.datetime64("1970-01-01", "ns") + days.astype("timedelta64[D]")
    da = xr.DataArray(stack, dims=("time", "y", "x"), coords={"time": time_})
    da = da.chunk({"time": -1, "y": chunk, "x": chunk})
    lazy = da.interpolate_na("time", method="linear") if call == "interpolate_na" else da.ffill("time").bfill("time")
    return lazy.compute()


def _tilewise(stack, days, method):
    from tilewise.core.kernels.gapfill_plan import plan_gapfill
    from tilewise.core.kernels.gapfill import gapfill_stack
    name, edges = method
    return gapfill_stack(stack, days, plan_gapfill(name, edges=edges))


def run_case(tool: str, case: str, n_dates: int, size: int, gap_share: float, runs: int, chunk: int) -> Dict:
    """One tool on one case in this process: times of each run, compile time, peak RSS."""
    import numpy as np
    days, stack = make_series(n_dates, size, gap_share)
    method, call, _ = CASES[case]
    compile_s = 0.0
    if tool == "tilewise":
        t0 = time.perf_counter()
        _tilewise(stack[:, :4, :4].copy(), days, method)  # compile, or load numba's cache
        compile_s = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = _tilewise(stack, days, method)[0] if tool == "tilewise" else _xarray(stack, days, call, chunk).values
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        filled = int(np.count_nonzero(~np.isnan(out))) - int(np.count_nonzero(~np.isnan(stack)))
        del out
    threads = _threads(tool)
    return {"tool": tool, "case": case, "times": times, "cpu_s": cpu, "compile_s": compile_s, "threads": threads,
            "filled": filled, "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _threads(tool: str) -> int:
    if tool == "tilewise":
        import numba
        return numba.get_num_threads()
    return os.cpu_count() or 1


def check_agreement(n_dates: int = 48, size: int = 200, gap_share: float = 0.3, chunk: int = 100) -> Dict[str, float]:
    """Largest difference between the two tools on a small stack, per case (NaN where they differ on gaps)."""
    import numpy as np
    days, stack = make_series(n_dates, size, gap_share)
    out = {}
    for case, (method, call, _) in CASES.items():
        a = _tilewise(stack, days, method)[0]
        b = _xarray(stack, days, call, chunk).values
        same_gaps = np.array_equal(np.isnan(a), np.isnan(b))
        out[case] = float(np.nanmax(np.abs(a.astype(np.float64) - b))) if same_gaps else float("nan")
    return out


def _child(tool: str, case: str, args) -> Dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", tool, case, "--dates", str(args.dates),
           "--size", str(args.size), "--gaps", str(args.gaps), "--runs", str(args.runs), "--chunk", str(args.chunk)]
    env = dict(os.environ, PYTHONPATH=PLUGINS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{tool} {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_gapfill(args) -> List[Dict]:
    """Every case with both tools, each in its own process; prints a table with ratios and returns the rows."""
    print(f"gap filling: {args.dates} dates x {args.size} x {args.size} float32, {args.gaps:.0%} gaps, "
          f"best of {args.runs} run(s), {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    agreement = check_agreement()
    print("agreement on 48 x 200 x 200 (largest difference): "
          + ", ".join(f"{c} {d:.2e}" for c, d in agreement.items()), flush=True)
    rows = []
    for case in CASES:
        pair = {tool: _child(tool, case, args) for tool in ("tilewise", "xarray")}
        tw, xa = (min(pair[t]["times"]) for t in ("tilewise", "xarray"))
        rows.append({"case": case, "what": CASES[case][2], "tilewise": pair["tilewise"], "xarray": pair["xarray"],
                     "ratio": xa / tw})
        tc, xc = (min(pair[t]["cpu_s"]) for t in ("tilewise", "xarray"))
        print(f"  {case:9s} tilewise {tw:7.2f} s, cpu {tc:6.1f} s ({pair['tilewise']['threads']} threads, "
              f"compile/cache {pair['tilewise']['compile_s']:.1f} s, peak {pair['tilewise']['peak_rss_mib']:.0f} MiB)"
              f"   xarray+dask {xa:7.2f} s, cpu {xc:6.1f} s (peak {pair['xarray']['peak_rss_mib']:.0f} MiB)"
              f"   -> {xa / tw:.1f}x faster (cpu {xc / tc:.1f}x)", flush=True)
    return rows


def run_pipeline(folder: str, output: str, *extra: str) -> Dict:
    """Tilewise end to end on the files of ``folder`` (``tilewise gapfill --debug``): wall time, the CPU
    time of the engine and its workers (steadier than wall time on a busy machine) and the phase line,
    which says where the time goes (read, compute, tile writes, assembly of the COG)."""
    import resource
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tif"))
    env = dict(os.environ, PYTHONPATH=PLUGINS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tilewise", "gapfill", "-q", "--debug", "-o", output, *extra, *files],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"tilewise gapfill failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    phases = next((line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Phases")), "")
    return {"wall_s": wall, "cpu_s": cpu, "phases": phases}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dates", type=int, default=48)
    p.add_argument("--size", type=int, default=2000, help="rows and columns")
    p.add_argument("--gaps", type=float, default=0.3, help="share of missing observations")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--chunk", type=int, default=500, help="xarray/Dask spatial chunk side")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--files", metavar="FOLDER", help="instead: tilewise gapfill end to end on the .tif files of "
                   "FOLDER (one per date), with its phases and CPU time; extra CLI options after --")
    p.add_argument("--child", nargs=2, metavar=("TOOL", "CASE"), help=argparse.SUPPRESS)
    args, extra = p.parse_known_args(argv)
    if args.files:
        row = run_pipeline(args.files, os.path.normpath(args.files) + "_filled.tif", *[a for a in extra if a != "--"])
        print(f"tilewise gapfill {args.files}: {row['wall_s']:.2f} s, cpu {row['cpu_s']:.2f} s\n{row['phases']}")
        return 0
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.child:
        print(json.dumps(run_case(args.child[0], args.child[1], args.dates, args.size, args.gaps, args.runs,
                                  args.chunk)))
        return 0
    sys.path.insert(0, PLUGINS)
    rows = bench_gapfill(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: a realistic sample time series composited by tilewise:temporalmedian through qgis_process.

Writes into the output folder: the sample scenes, ``ndvi_median.tif`` (a COG),
``ndvi_median.png`` (a quicklook) and ``one_scene.png`` (a single cloudy
scene, for comparison), and prints tiles, workers, time and paths.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qgis_process import run_algorithm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "build", "plugins")


def engine(python, *args):
    env = dict(os.environ, PYTHONPATH=PLUGINS)
    subprocess.run([python, "-m", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--engine-python", required=True)
    p.add_argument("--out", default=os.path.join(ROOT, "demo-output"))
    p.add_argument("--dates", type=int, default=36)
    p.add_argument("--size", type=int, default=2048)
    args = p.parse_args()
    scenes = os.path.join(args.out, "scenes")
    t0 = time.perf_counter()
    print(f"1/3 sample time series: {args.dates} monthly scenes of {args.size} x {args.size} px "
          "(NDVI x 10000 + SCL band; clouds, shadows, nodata stripes)")
    engine(args.engine_python, "tilewise.core.sampledata", scenes, "--dates", str(args.dates),
           "--size", str(args.size))
    inputs = sorted(glob.glob(os.path.join(scenes, "ndvi_*.tif")))
    output = os.path.join(args.out, "ndvi_median.tif")
    print("2/3 qgis_process run tilewise:temporalmedian (median of band 1, SCL classes 0,3,8,9,10 masked)")
    params = [("INPUT", f) for f in inputs] + [("BANDS", "1"), ("MASK_BAND", "2"), ("MASK_VALUES", "0,3,8,9,10"),
                                              ("OUTPUT", output)]
    with tempfile.TemporaryDirectory(prefix="tilewise-demo-profile-") as profile:
        t1 = time.perf_counter()
        proc = run_algorithm("tilewise:temporalmedian", params, PLUGINS, profile)
        wall = time.perf_counter() - t1
    if proc.returncode != 0 or not os.path.exists(output):
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        sys.exit(f"demo failed: qgis_process exited with {proc.returncode}")
    summary = re.search(r"(\d+) tiles on (\d+) workers in ([\d.]+) s", proc.stdout)
    print("3/3 quicklooks")
    engine(args.engine_python, "tilewise.core.sampledata", "-", "--quicklook", output,
           os.path.join(args.out, "ndvi_median.png"))
    engine(args.engine_python, "tilewise.core.sampledata", "-", "--quicklook", inputs[len(inputs) // 2],
           os.path.join(args.out, "one_scene.png"))
    print()
    if summary:
        print(f"tiles:    {summary.group(1)}")
        print(f"workers:  {summary.group(2)}")
        print(f"engine:   {float(summary.group(3)):.2f} s")
    print(f"qgis_process wall time: {wall:.2f} s for {len(inputs)} x {args.size} x {args.size} px")
    print(f"output:   {output}")
    print(f"quicklook: {os.path.join(args.out, 'ndvi_median.png')} (one cloudy scene: one_scene.png)")
    print(f"demo total: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

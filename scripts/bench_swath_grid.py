"""A median of swath scenes over a small lake (issue 23, swath to grid): seconds of ``tilewise.core.composite``.

    cd build/plugins && PYTHONPATH=$PWD /work/main/.venv/bin/python ../../scripts/bench_swath_grid.py \\
        --folder /path/to/data [--scenes 12] [--rows 4091 --cols 4865] [--variables 2] [--workers 2]

The scenes are ``bench_swath.py``'s (Sentinel-3 OLCI WFR SAFE folders of the issue's size, each with its own
geolocation; written once into ``--folder`` and reused). The median of ``--variables`` reflectances runs
over a ``--box``-degree square around the first scene's centre (a lake of about 20 km at the default),
at ``--cell`` degrees. Run it with another ``PYTHONPATH`` to time another version of the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv=None) -> int:
    import bench_swath as bs
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", required=True)
    p.add_argument("--scenes", type=int, default=12)
    p.add_argument("--rows", type=int, default=bs.FULL["rows"])
    p.add_argument("--cols", type=int, default=bs.FULL["cols"])
    p.add_argument("--variables", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--box", type=float, default=0.2, help="side of the lake's square, degrees (default 0.2)")
    p.add_argument("--cell", type=float, default=0.003, help="cell size, degrees (default 0.003, about 300 m)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", help="write the timings here")
    a = p.parse_args(argv)
    os.makedirs(a.folder, exist_ok=True)
    size = dict(scenes=a.scenes, rows=a.rows, cols=a.cols, variables=a.variables, points=1, lakes=1)
    started = time.perf_counter()
    paths, _, names = bs.write_inputs(a.folder, size, a.workers)
    print(f"inputs: {len(paths)} scenes of {a.rows} x {a.cols} x {a.variables} ({time.perf_counter() - started:.1f} s)")
    from tilewise.core import composite
    import tilewise
    lat0, lon0, _ = bs.scene_orbit(0, a.rows, a.cols)
    half = a.box / 2
    extent = tuple(round(v / a.cell) * a.cell for v in (lon0 - half, lat0 - half, lon0 + half, lat0 + half))
    seconds = []
    with tempfile.TemporaryDirectory(dir=a.folder) as out:
        for k in range(a.repeat):
            t = time.perf_counter()
            report = composite(paths, os.path.join(out, f"median{k}.tif"), "median", variables=",".join(names),
                               extent=extent, cell_size=a.cell, workers=a.workers)
            seconds.append(time.perf_counter() - t)
            print(f"run {k + 1}: {seconds[-1]:.2f} s ({report.tiles} tiles)")
    print(f"engine {os.path.dirname(tilewise.__file__)}: median of {len(paths)} scenes, {len(names)} variables, "
          f"extent {extent}: {statistics.median(seconds):.2f} s (min {min(seconds):.2f}); "
          f"load {os.getloadavg()[0]:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(seconds=seconds, scenes=len(paths), variables=len(names), extent=extent,
                           engine=os.path.dirname(tilewise.__file__)), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tilewise and QGIS's own algorithms in one QGIS session (QGIS's Python, headless), as an analyst runs them.

``make bench`` calls it (``bench.py``'s session cases) with a JSON spec: a list of cases, each a list of tools
``{"tool": label, "alg": algorithm id, "params": {...}}``, with ``"cog": path`` when the algorithm's output is
then made a COG by GDAL's COG driver (DEFLATE, all cores), timed with it. In one QgsApplication with Processing and the
Tilewise plugin loaded, each tool runs ``1 + runs`` times, interleaved with the others: the first run of
each is kept apart (for Tilewise it starts the warm engine), the median of the others is the figure.
Tilewise's phase breakdown (debug mode) of the run nearest the median is kept. Prints one JSON list of rows.

    python3 scripts/bench_session.py SPEC.json RUNS
"""

import json
import os
import statistics
import sys
import time


def to_cog(source, path):
    """What a QGIS user does next for a COG: GDAL's COG driver, DEFLATE, on all cores."""
    from osgeo import gdal
    options = gdal.TranslateOptions(format="COG", creationOptions=["COMPRESS=DEFLATE", "NUM_THREADS=ALL_CPUS",
                                                                   "BIGTIFF=IF_SAFER"])
    ds = gdal.Translate(path, source, options=options)
    if ds is None:
        raise RuntimeError(f"GDAL could not write {path} from {source}")
    ds = None  # closes the file: the COG is complete


def main():
    spec_path, runs = sys.argv[1], int(sys.argv[2])
    with open(spec_path) as f:
        spec = json.load(f)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["TILEWISE_DEBUG"] = "1"
    from qgis.core import QgsApplication, QgsProcessingFeedback
    app = QgsApplication([], False)
    app.initQgis()
    qgis_python = os.path.join(QgsApplication.pkgDataPath(), "python")
    sys.path[:0] = [qgis_python, os.path.join(qgis_python, "plugins")]
    from processing.core.Processing import Processing
    Processing.initialize()
    import processing
    import qgis.utils
    qgis.utils.plugin_paths.insert(0, spec["plugins"])
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.loadPlugin("tilewise") and qgis.utils.startProcessingPlugin("tilewise")

    class Lines(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def pushInfo(self, info):  # noqa: N802 (QGIS's name)
            self.lines.append(info)

    rows = []
    for case in spec["cases"]:
        times = {t["tool"]: [] for t in case["tools"]}
        phases = {t["tool"]: [] for t in case["tools"]}
        for _ in range(1 + runs):
            for tool in case["tools"]:
                feedback = Lines()
                for path in (tool["params"]["OUTPUT"], tool.get("cog")):
                    if path and os.path.exists(path):
                        os.remove(path)
                t0 = time.perf_counter()
                processing.run(tool["alg"], tool["params"], feedback=feedback)
                if tool.get("cog"):
                    to_cog(tool["params"]["OUTPUT"], tool["cog"])
                times[tool["tool"]].append(time.perf_counter() - t0)
                found = [ln.split("Phases (s): ", 1)[1] for ln in feedback.lines if "Phases (s): " in ln]
                phases[tool["tool"]].append(found[-1] if found else None)
        for tool in case["tools"]:
            first, rest = times[tool["tool"]][0], times[tool["tool"]][1:]
            median = statistics.median(rest)
            nearest = min(range(len(rest)), key=lambda i: abs(rest[i] - median))
            rows.append(dict(case=case["case"], tool=tool["tool"], first=first, median=median, min=min(rest),
                             max=max(rest), phases=phases[tool["tool"]][1 + nearest]))
    from tilewise.algorithms import warm_engine
    warm_engine.shutdown()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

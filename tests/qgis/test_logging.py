"""The engine's log (Python's logging, issue 22) reaches QGIS's feedback through ``processing.run``: the
records of the engine process as lines (pushInfo), its warnings as warnings (pushWarning), on the warm
engine and the cold one; with TILEWISE_DEBUG, the cause of a failure (its traceback) as well."""

import json
import os

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from twtest import messages, run, write_raster

MEDIAN = "tilewise:temporalmedian"
SHAPE = (20, 30)
FAR = (900000.0, 10.0, 0.0, 3000000.0, 0.0, -10.0)     # 2,000 km south-east of the other
WARM_ENV = "TILEWISE_WARM_ENGINE_MINUTES"
WARM = "Ran on the warm engine"


@pytest.fixture(autouse=True)
def no_engine_left():
    from tilewise.algorithms import warm_engine
    warm_engine.shutdown()
    yield
    warm_engine.shutdown()


@pytest.fixture
def scenes(tmp_path):
    rng = np.random.default_rng(7)
    near = [write_raster(tmp_path / f"a{i}.tif", rng.integers(1, 200, SHAPE).astype(np.uint16), nodata=0)
            for i in range(2)]
    return near + [write_raster(tmp_path / "far.tif", np.full(SHAPE, 7, np.uint16), nodata=0, geotransform=FAR)]


@pytest.mark.parametrize("minutes", ["0", "5"], ids=["cold", "warm"])
def test_engine_records_reach_the_feedback(scenes, out_dir, monkeypatch, minutes):
    monkeypatch.setenv(WARM_ENV, minutes)
    feedback = messages()
    result = run(MEDIAN, {"INPUT": scenes, "TILE_SIZE": 16, "WORKERS": 1, "OUTPUT": str(out_dir / "m.tif")},
                 feedback=feedback)
    assert os.path.exists(result["OUTPUT"])
    assert (WARM in feedback.text) is (minutes != "0"), feedback.text
    outside = f"1 of 3 inputs do not overlap the output grid and add nothing to it: {scenes[2]}"
    assert [w for w in feedback.warnings if outside in w] == [f"Warning: {outside}"], feedback.warnings
    assert not any(outside in line for line in feedback.lines), feedback.lines     # a warning, not a line
    # INFO records of the engine's runner and sink, in the order the engine logged them
    tiles = [i for i, line in enumerate(feedback.lines) if line == "4 tiles of up to 16 x 16 pixels on 1 worker(s)"]
    assembled = feedback.lines.index("Assembling the Cloud-Optimized GeoTIFF")
    assert len(tiles) == 1 and tiles[0] < assembled, feedback.lines


def test_a_failure_s_cause_reaches_the_feedback_in_debug_mode(tmp_path, out_dir, monkeypatch):
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "a", "links": [], "collection": "sentinel-2-l2a",
            "geometry": {"type": "Point", "coordinates": [15, 45]}, "bbox": [15, 45, 15, 45],
            "properties": {"datetime": "2024-05-01T10:00:00Z"},
            "assets": {"red": {"href": "https://127.0.0.1:9/red.tif", "type": "image/tiff; application=geotiff"}}}
    items = tmp_path / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    (tmp_path / "badsign.py").write_text("def sign(href):\n    raise KeyError('no token for ' + href)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv(WARM_ENV, "0")
    params = {"STAC_API": str(items), "ASSETS": "red", "SIGN": "badsign:sign", "OUTPUT_FOLDER": str(out_dir / "s")}
    for debug in ("", "1"):
        monkeypatch.setenv("TILEWISE_DEBUG", debug)
        feedback = messages()
        with pytest.raises(QgsProcessingException, match="The URL signing hook failed on https://127.0.0.1:9/red.tif"):
            run("tilewise:stacsearch", params, feedback=feedback)
        causes = [line for line in feedback.lines if "was caused by" in line]
        if debug:
            assert len(causes) == 1 and causes[0].startswith("CatalogError was caused by:\nTraceback"), feedback.lines
            assert 'badsign.py", line 2, in sign' in causes[0], causes
        else:
            assert causes == [], feedback.lines

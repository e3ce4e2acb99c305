"""``tilewise extract`` on swath scenes from the command line: the table, and one-line errors."""

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely

import swathdata as sd
from support import leftovers, subprocess_env

pytest.importorskip("netCDF4")


def tilewise_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3")
    paths = [sd.write_olci_product(str(folder), stamp=s, seed=k) for k, s in
             enumerate(["20240514T134512", "20240520T101010"])]
    tlat, tlon = sd.geolocation_truth(paths[0])
    pts = shapely.points([tlon[10, 12], tlon[27, 30], 20.0], [tlat[10, 12], tlat[27, 30], 10.0])
    import pyarrow as pa
    table = pa.table({"station": ["a", "b", "far"], "geometry": shapely.to_wkb(pts)})
    pyogrio.write_arrow(table, str(folder / "stations.gpkg"), geometry_name="geometry", geometry_type="Point",
                        crs="EPSG:4326", driver="GPKG")
    return folder, paths


def test_cli_extracts_swath_scenes(scenes):
    folder, paths = scenes
    proc = tilewise_cli("extract", "-z", "stations.gpkg", "--id-field", "station", "--variables", "CHL_NN",
                        "--mask-flags", "CLOUD", "--max-distance", "500", "-o", "ts.parquet", "-q",
                        *[p.rsplit("/", 1)[1] for p in paths], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "ts.parquet: 6 rows, 2 tiles" in proc.stdout
    t = pq.read_table(folder / "ts.parquet").to_pandas()
    assert t.station.tolist() == ["a", "a", "b", "b", "far", "far"]
    assert t.date.astype(str).tolist()[:2] == ["2024-05-14", "2024-05-20"]
    assert t.row.tolist()[:4] == [10, 10, 27, 27] and t.col.tolist()[:4] == [12, 12, 30, 30]
    assert np.isfinite(t.value[0]) and t.reason[2] == "flagged" and t.reason[4] == "outside the swath"


def test_cli_swath_error_is_one_line(scenes, tmp_path):
    folder, paths = scenes
    (folder / "plain").mkdir(exist_ok=True)
    proc = tilewise_cli("extract", "-z", "stations.gpkg", "-o", "bad.csv", "-q", "plain", cwd=folder)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "plain is not a SAFE product" in lines[0], proc.stderr
    assert leftovers(folder / "bad.csv") == []

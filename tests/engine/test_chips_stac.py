"""``tilewise chips --stac``: chips of the layers a STAC search (rustac, assets over nginx) finds, equal to
the chips of the search's VRTs given as files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import shapely
from pyogrio.raw import write

from tilewise.core import chips, stac_search

from stacdata import INSIDE_A, SCL_MASKED, search_ids
from support import subprocess_env
from test_stac import api, catalogue, nginx, www  # noqa: F401 (the fixtures)

SEASON = "2024-05-01/2024-09-30"


def test_chips_of_a_stac_search_equal_those_of_its_vrts(api, catalogue, tmp_path):  # noqa: F811
    points = tmp_path / "points.gpkg"
    geoms = np.array([shapely.Point(500_205, 4_999_795), shapely.Point(500_405, 4_999_605)], dtype=object)
    write(str(points), shapely.to_wkb(geoms), geometry_type="Point", field_data=[np.array(["a", "b"], object)],
          fields=["pid"], crs="EPSG:32633")
    search = ["--collections", "s2-test", "--bbox", *map(str, INSIDE_A), "--datetime", SEASON, "--max-cloud", "40"]
    proc = subprocess.run([sys.executable, "-m", "tilewise", "chips", "--stac", api.url, *search, "--assets",
                           "red,nir,scl", "--mask-asset", "scl", "--mask-values", ",".join(map(str, SCL_MASKED)),
                           "-z", str(points), "--id-field", "pid", "--mode", "patch", "--size", "6", "6", "-q",
                           "-o", "chips"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    ids = search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30", max_cloud=40)
    assert sorted(p.name for p in (tmp_path / "chips_stac").glob("*.vrt")) == sorted(f"{i}.vrt" for i in ids)
    report = stac_search(api.url, tmp_path / "items", "red,nir,scl", collections="s2-test", bbox=INSIDE_A,
                         datetime=SEASON, max_cloud=40)
    chips(report.layers, str(points), str(tmp_path / "files"), "patch", size_x=6, size_y=6, id_field="pid",
          bands=[1, 2], mask_band=3, mask_values=SCL_MASKED, workers=1)
    for name in ("a.nc", "b.nc"):
        assert (tmp_path / "chips" / name).read_bytes() == (tmp_path / "files" / name).read_bytes()
    import xarray as xr
    with xr.open_dataset(tmp_path / "files" / "a.nc") as ds:
        assert ds.sizes["time"] == len(ids) and ds["red"].shape == (len(ids), 6, 6)
        assert list(ds.data_vars) == ["crs", "red", "nir"]              # named by the VRTs' band descriptions
        assert np.isnan(ds["red"].values).any() and np.isfinite(ds["red"].values).any()

"""Swath extraction near the poles: a polygon around a pole takes the pixels poleward of its ring, however
it is written (a ring at one latitude closed along the pole's line, from -180 to 180 or from 0 to 360; a circle
drawn in a polar projection), in the north and the south; points near a pole and across the
antimeridian are in ``test_swath_extract``."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

import swathdata as sd
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.operations.extract.run import extract

pytest.importorskip("netCDF4")
CAP = 89.8          # the ring's latitude (the scenes reach from about 89.7 to 89.9)


def cap_polygons(pole):
    """The cap poleward of CAP as GIS layers in longitude/latitude hold it: a ring at CAP from -180 to 180
    closed along the pole's line, and the same from 0 to 360."""
    lat, top = pole * CAP, pole * 90.0
    ring = [(-180, lat), (-90, lat), (0, lat), (90, lat), (180, lat), (180, top), (-180, top)]
    return [shapely.Polygon(ring[::pole]), shapely.Polygon([(x + 180, y) for x, y in ring])]


@pytest.mark.parametrize("pole", [1, -1])
def test_a_polygon_around_a_pole_takes_the_pixels_poleward_of_it(tmp_path, pole):
    product = sd.write_olci_product(str(tmp_path), lat0=pole * 89.8, lon0=25.0, rotation=30.0, fill_cols=3)
    tlat, tlon = sd.geolocation_truth(product)
    values = sd.read_truth(product, "chl_nn.nc", "CHL_NN")
    inside = np.isfinite(tlat) & (pole * tlat > CAP)
    assert 200 < inside.sum() < 0.8 * np.isfinite(tlat).sum()          # a part of the scene, not all of it
    near_ring = np.isfinite(tlat) & (np.abs(pole * tlat - CAP) < 2e-6)    # stored in steps of 1e-6
    assert near_ring.sum() < 5
    # and a small box near the pole that does not go around it, with the pixels inside it in longitude/latitude
    r, c = np.argwhere(np.isfinite(tlat))[len(np.argwhere(np.isfinite(tlat))) // 2]
    box = shapely.box(tlon[r, c] - 2.0, tlat[r, c] - 0.01, tlon[r, c] + 2.0, tlat[r, c] + 0.01)
    in_box = np.isfinite(tlat) & shapely.contains_xy(box, tlon, tlat)
    zones = zones_from_geometries(cap_polygons(pole) + [box], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([product], zones, out, "mean,count", variables="CHL_NN", workers=1)
    t = pq.read_table(out).to_pandas()
    want = values[inside & np.isfinite(values)]
    for fid in range(2):
        row = t[t.feature_id == fid].iloc[0]
        assert abs(row["count"] - len(want)) <= near_ring.sum(), fid
        if not near_ring.any():
            assert row["count"] == len(want) and row["mean"] == pytest.approx(want.mean(), rel=1e-9), fid
    row = t[t.feature_id == 2].iloc[0]
    assert row["count"] == np.isfinite(values[in_box]).sum() > 5


def test_a_circle_around_the_pole_in_a_polar_projection(tmp_path):
    from rasterio.warp import transform
    product = sd.write_olci_product(str(tmp_path), lat0=89.8, lon0=-100.0, rotation=-20.0, fill_cols=0)
    tlat, tlon = sd.geolocation_truth(product)
    values = sd.read_truth(product, "chl_nn.nc", "CHL_NN")
    (x,), (y,) = transform("EPSG:4326", "EPSG:3413", [0.0], [CAP])
    circle = shapely.Point(0.0, 0.0).buffer(np.hypot(x, y), quad_segs=32)   # the parallel at CAP, in metres
    x, y = (np.reshape(v, tlat.shape) for v in transform("EPSG:4326", "EPSG:3413", tlon.ravel(), tlat.ravel()))
    inside = shapely.contains_xy(circle, x, y)
    assert 200 < inside.sum() < 0.8 * tlat.size
    zones = zones_from_geometries([circle], "EPSG:3413")
    out = str(tmp_path / "ts.parquet")
    extract([product], zones, out, "mean,count", variables="CHL_NN", workers=1)
    t = pq.read_table(out).to_pandas()
    want = values[inside & np.isfinite(values)]
    # the circle's 128 vertices joined in longitude/latitude follow the parallel, not the chords in metres:
    # the pixels between the two are within a few metres of the ring
    ring = np.abs(tlat - CAP) < 2e-4
    assert abs(t["count"][0] - len(want)) <= ring.sum()
    assert t["count"][0] == (np.isfinite(values) & (tlat > CAP)).sum()

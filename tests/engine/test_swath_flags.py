"""Flag masks on swath products: by name (flag_masks/flag_meanings, uint64 WQSF with masks above 2**32),
by bit, by class, and the olci-wfr preset. By default nothing is masked."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

import swathdata as sd
from tilewise.core.errors import MaskError
from tilewise.core.io.swath import SwathVariable, open_swath
from tilewise.core.io.vector import zones_from_geometries
from tilewise.core.masks import OLCI_WFR, plan_qa_mask
from tilewise.core.operations.extract.run import extract
from tilewise.core.operations.swath.flags import SceneFlags, flag_request, resolve_flags

pytest.importorskip("netCDF4")
ROWS, COLS = 80, 60


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return sd.write_olci_product(str(tmp_path_factory.mktemp("olci")), rows=ROWS, cols=COLS, seed=3)


@pytest.fixture(scope="module")
def grid_points(product):
    """A point on every pixel centre of a block of rows that holds the CLOUD band (rows 26-28)."""
    tlat, tlon = sd.geolocation_truth(product)
    rr, cc = np.meshgrid(np.arange(20, 34), np.arange(5, 45), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    zones = zones_from_geometries(shapely.points(tlon[rr, cc], tlat[rr, cc]), "EPSG:4326")
    return zones, rr, cc


def run(product, zones, tmp_path, **options):
    out = str(tmp_path / "ts.parquet")
    extract([product], zones, out, "mean", variables="CHL_NN", workers=1, **options)
    return pq.read_table(out).to_pandas()


def masked_rows(product, grid_points, tmp_path, **options):
    zones, rr, cc = grid_points
    t = run(product, zones, tmp_path, **options)
    assert (t.row.to_numpy() == rr).all() and (t.col.to_numpy() == cc).all()
    return t.value.isna().to_numpy(), t.reason.to_numpy(), rr, cc


def test_no_flags_by_default(product, grid_points, tmp_path):
    null, _, rr, cc = masked_rows(product, grid_points, tmp_path)
    assert not null.any()


@pytest.mark.parametrize("options, mask", [
    (dict(mask_flags="CLOUD"), 8),
    (dict(mask_flags="rwneg_o2"), 2 ** 41),                  # above 2**32, by name (any case)
    (dict(mask_bits="41"), 2 ** 41),
    (dict(mask_flags="LAND, CLOUD", flag_variable="WQSF"), 4 | 8),
    (dict(mask_preset="olci-wfr"), None),
])
def test_flags_mask_exactly_the_flagged_pixels(product, grid_points, tmp_path, options, mask):
    flags = sd.wqsf(ROWS, COLS, seed=3)
    if mask is None:
        names = dict(sd.WQSF_FLAGS)
        mask = sum(names[n] for n in OLCI_WFR.flags if n in names)
    null, reason, rr, cc = masked_rows(product, grid_points, tmp_path, **options)
    want = (flags[rr, cc] & np.uint64(mask)) != 0
    assert want.any() and not want.all()
    np.testing.assert_array_equal(null, want)
    assert set(reason[null]) == {"flagged"} and all(r is None or r != r for r in reason[~null])


def test_polygon_statistics_leave_flagged_pixels_out(product, tmp_path):
    tlat, tlon = sd.geolocation_truth(product)
    poly = shapely.Point(tlon[27, 30], tlat[27, 30]).buffer(0.04)
    zones = zones_from_geometries([poly], "EPSG:4326")
    out = str(tmp_path / "ts.parquet")
    extract([product], zones, out, "mean,count", variables="CHL_NN", mask_flags="CLOUD,RWNEG_O2", workers=1)
    t = pq.read_table(out).to_pandas()
    ok = np.isfinite(tlat)
    inside = np.zeros(tlat.shape, bool)
    inside[ok] = shapely.contains_xy(poly, tlon[ok], tlat[ok])
    flags = sd.wqsf(ROWS, COLS, seed=3)
    keep = inside & ((flags & np.uint64(8 | 2 ** 41)) == 0)
    values = sd.read_truth(product, "chl_nn.nc", "CHL_NN")[keep]
    assert 0 < t.n_valid[0] == len(values) < inside.sum()
    assert t["mean"][0] == pytest.approx(values.mean(), rel=1e-9)


def test_flag_values_and_masks_semantics():
    v = SwathVariable("Q", "q.nc", "uint8", flag_masks=(3, 3, 4), flag_values=(1, 2, 4),
                      flag_meanings=("ONE", "TWO", "FOUR"))
    scene = type("S", (), {"source": "q.nc", "variable": lambda self, n: v, "flag_variables": lambda self: [v]})()
    sf = resolve_flags(flag_request("TWO"), scene)
    raw = np.array([0, 1, 2, 3, 6], np.uint8)
    assert sf.masked(raw).tolist() == [False, False, True, False, True]      # value & 3 == 2
    only_values = SceneFlags(v, ((255, 2),), ())
    assert only_values.masked(raw).tolist() == [False, False, True, False, False]
    assert SceneFlags(v, (), (3,)).masked(raw).tolist() == [False, False, False, True, False]
    top = SceneFlags(v, ((2 ** 63, -1),), ())
    assert top.masked(np.array([2 ** 63, 2 ** 62], np.uint64)).tolist() == [True, False]


def test_unknown_flag_names_the_products_flags(product, grid_points, tmp_path):
    zones, _, _ = grid_points
    out = tmp_path / "ts.parquet"
    with pytest.raises(MaskError, match=r"WQSF of .* has no flag CLOUDY; its flags are: INVALID, WATER, LAND"):
        extract([product], zones, str(out), variables="CHL_NN", mask_flags="CLOUDY")
    with pytest.raises(MaskError, match=r"MASK_BITS \[64\]|0 \(the lowest bit\) to 63"):
        extract([product], zones, str(out), variables="CHL_NN", mask_bits="64")
    with pytest.raises(MaskError, match="not an integer flag variable"):
        extract([product], zones, str(out), variables="CHL_NN", flag_variable="CHL_NN", mask_bits="1")
    with pytest.raises(MaskError, match="is for raster QA bands"):
        extract([product], zones, str(out), variables="CHL_NN", mask_preset="s2-scl")
    assert not out.exists()


def test_olci_preset_is_refused_on_raster_qa_bands():
    with pytest.raises(MaskError, match="olci-wfr names the flags of a swath product"):
        plan_qa_mask(preset="olci-wfr")


def test_flag_variable_found_by_itself(product):
    scene = open_swath(product)
    sf = resolve_flags(flag_request("INVALID"), scene)
    assert sf.variable.name == "WQSF" and sf.pairs == ((1, -1),)

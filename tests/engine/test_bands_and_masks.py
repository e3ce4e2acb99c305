"""Multi-band inputs, band subsets, percentile band order, QA masks."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilewise.core import composite
from tilewise.core.errors import InputError, MaskError

from support import UTM_TRANSFORM, as_output, leftovers, numpy_reference, read_raster

SHAPE = (60, 90)
N_LAYERS = 5
SCL_CLOUD = (3, 8, 9)  # classes to exclude, as for Sentinel-2 SCL shadows / clouds


@pytest.fixture
def multiband(raster):
    """Five 4-band uint16 layers: bands 1-3 reflectance-like (each band its own range), band 4 QA classes.

    Returns the paths and the (layers, 4, rows, cols) float64 stack, nodata (0) as NaN.
    """
    rng = np.random.default_rng(42)
    paths, arrays = [], []
    for i in range(N_LAYERS):
        a = np.empty((4,) + SHAPE, "uint16")
        for b in range(3):
            a[b] = rng.integers(1 + 1000 * b, 1000 * (b + 1), SHAPE)
        a[:3, rng.random(SHAPE) < 0.2] = 0          # nodata in every band of a pixel
        a[1, rng.random(SHAPE) < 0.1] = 0           # and in band 2 alone
        a[3] = rng.integers(1, 12, SHAPE)           # QA class, never 0 (0 is nodata)
        paths.append(raster(f"s2_{i}.tif", a, nodata=0,
                            descriptions=["B02", "B03", "B04", "SCL"]))
        arrays.append(a)
    stack = np.stack(arrays).astype(np.float64)
    stack[:, :3][stack[:, :3] == 0] = np.nan
    return paths, stack


def expected_bands(stack, statistic, bands, percentiles=()):
    """Band-major reference: for each input band, each percentile."""
    return np.concatenate([numpy_reference(stack[:, b - 1], statistic, percentiles) for b in bands])


@pytest.mark.parametrize("workers", [1, 2])
def test_every_band_is_composited_band_by_band(multiband, tmp_path, pool, workers):
    paths, stack = multiband
    out = str(tmp_path / "out.tif")
    report = composite(paths, out, "median", tile_size=32, bands=[1, 2, 3], workers=1,
                       executor=pool if workers == 2 else None)
    data, profile = read_raster(out)
    assert profile["count"] == report.bands == 3
    np.testing.assert_array_equal(data, as_output(expected_bands(stack, "median", [1, 2, 3])))
    # the bands really differ: a band mix-up cannot pass
    assert data[0].max() < 1000 <= data[1][data[1] > 0].min()


def test_all_bands_by_default(raster, tmp_path):
    rng = np.random.default_rng(1)
    layers = [rng.integers(1, 100, (3,) + SHAPE).astype("uint8") for _ in range(3)]
    paths = [raster(f"rgb{i}.tif", a) for i, a in enumerate(layers)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "max", tile_size=40, workers=1)
    data, _ = read_raster(out)
    np.testing.assert_array_equal(data, np.max(np.stack(layers), axis=0).astype("float32"))
    with rasterio.open(out) as src:
        assert src.descriptions == ("max of band 1", "max of band 2", "max of band 3")


def test_band_subset_in_the_given_order(multiband, tmp_path):
    paths, stack = multiband
    out = str(tmp_path / "out.tif")
    composite(paths, out, "mean", tile_size=32, workers=1, bands=[3, 1])
    data, _ = read_raster(out)
    np.testing.assert_allclose(data, as_output(expected_bands(stack, "mean", [3, 1])), rtol=1e-6)
    with rasterio.open(out) as src:
        assert src.descriptions == ("mean of band 3", "mean of band 1")


def test_percentile_bands_are_band_major(multiband, tmp_path):
    paths, stack = multiband
    out = str(tmp_path / "out.tif")
    composite(paths, out, "percentile", [10, 90, 50], tile_size=32, workers=1, bands=[1, 2])
    data, _ = read_raster(out)
    expected = expected_bands(stack, "percentile", [1, 2], [10, 90, 50])
    assert data.shape == (6,) + SHAPE
    np.testing.assert_allclose(data, as_output(expected), rtol=1e-6)
    with rasterio.open(out) as src:
        assert src.descriptions == ("p10 of band 1", "p90 of band 1", "p50 of band 1",
                                    "p10 of band 2", "p90 of band 2", "p50 of band 2")


def test_band_subset_allows_different_band_counts(raster, tmp_path):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 50, (3,) + SHAPE).astype("int16")
    b = rng.integers(0, 50, (4,) + SHAPE).astype("int16")
    paths = [raster("three.tif", a), raster("four.tif", b)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "min", tile_size=64, workers=1, bands=[2])
    data, _ = read_raster(out)
    np.testing.assert_array_equal(data[0], np.minimum(a[1], b[1]))


def test_band_beyond_the_inputs_is_an_input_error(multiband, tmp_path):
    paths, _ = multiband
    out = tmp_path / "out.tif"
    with pytest.raises(InputError, match="Band 5 does not exist"):
        composite(paths, str(out), bands=[1, 5])
    assert leftovers(out) == []


# --- QA masks ------------------------------------------------------------------------------

def masked(stack, qa, values):
    """The stack with pixels whose QA class is in ``values`` set to NaN (every band)."""
    out = stack.copy()
    hit = np.isin(qa, values)                     # (layers, rows, cols)
    out[np.broadcast_to(hit[:, None], out.shape)] = np.nan
    return out


@pytest.mark.parametrize("statistic", ["median", "count", "percentile"])
def test_mask_band_excludes_its_classes_and_is_not_composited(multiband, tmp_path, statistic):
    paths, stack = multiband
    out = str(tmp_path / "out.tif")
    qs = [20, 80] if statistic == "percentile" else []
    composite(paths, out, statistic, qs, tile_size=32, workers=1, mask_band=4, mask_values=SCL_CLOUD)
    data, _ = read_raster(out)
    clean = masked(stack[:, :3], stack[:, 3], SCL_CLOUD)
    expected = as_output(expected_bands(clean, statistic, [1, 2, 3], qs))
    assert data.shape == expected.shape                        # 3 bands (x percentiles), not 4
    np.testing.assert_allclose(data, expected, rtol=1e-6)
    unmasked = as_output(expected_bands(stack[:, :3], statistic, [1, 2, 3], qs))
    assert not np.array_equal(data, unmasked)                   # the mask changed something


def test_mask_band_with_a_band_subset(multiband, tmp_path):
    paths, stack = multiband
    out = str(tmp_path / "out.tif")
    composite(paths, out, "max", tile_size=32, workers=1, bands=[2], mask_band=4, mask_values=[1, 2, 3, 4, 5])
    data, _ = read_raster(out)
    clean = masked(stack[:, :3], stack[:, 3], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(data, as_output(expected_bands(clean, "max", [2])))


@pytest.mark.parametrize("workers", [1, 2])
def test_mask_layers_are_paired_with_inputs(multiband, raster, tmp_path, pool, workers):
    """One mask file per input, each different: a mix-up of the pairs changes the answer."""
    paths, stack = multiband
    rng = np.random.default_rng(9)
    qa = rng.integers(0, 4, (N_LAYERS,) + SHAPE).astype("uint8")
    qa[0] = 1                                           # layer 0 entirely masked
    masks = [raster(f"qa_{i}.tif", q) for i, q in enumerate(qa)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "mean", tile_size=32, workers=1, bands=[1, 2, 3], mask_layers=masks,
              mask_values=[1], executor=pool if workers == 2 else None)
    data, _ = read_raster(out)
    clean = masked(stack[:, :3], qa, [1])
    np.testing.assert_allclose(data, as_output(expected_bands(clean, "mean", [1, 2, 3])), rtol=1e-6)
    shuffled = masked(stack[:, :3], qa[::-1], [1])
    assert not np.allclose(data, as_output(expected_bands(shuffled, "mean", [1, 2, 3])), rtol=1e-6)


def test_coarser_mask_layer_is_read_on_the_input_grid(multiband, raster, tmp_path):
    """A 20 m QA layer (as Sentinel-2 SCL) masks the 10 m pixels it covers."""
    paths, stack = multiband
    rng = np.random.default_rng(4)
    coarse = rng.integers(0, 3, (N_LAYERS, SHAPE[0] // 2, SHAPE[1] // 2)).astype("uint8")
    t = UTM_TRANSFORM
    transform20 = Affine(2 * t.a, 0, t.c, 0, 2 * t.e, t.f)
    masks = [raster(f"scl20_{i}.tif", q, transform=transform20) for i, q in enumerate(coarse)]
    out = str(tmp_path / "out.tif")
    composite(paths, out, "median", tile_size=32, workers=1, bands=[1, 2, 3], mask_layers=masks,
              mask_values=[0])
    data, _ = read_raster(out)
    fine = coarse.repeat(2, axis=1).repeat(2, axis=2)
    clean = masked(stack[:, :3], fine, [0])
    np.testing.assert_array_equal(data, as_output(expected_bands(clean, "median", [1, 2, 3])))


@pytest.mark.parametrize("n_masks", [1, N_LAYERS - 1, N_LAYERS + 1])
def test_wrong_number_of_mask_layers_is_a_mask_error(multiband, raster, tmp_path, n_masks):
    paths, _ = multiband
    masks = [raster(f"qa_{i}.tif", np.zeros(SHAPE, "uint8")) for i in range(n_masks)]
    out = tmp_path / "out.tif"
    with pytest.raises(MaskError, match=f"{n_masks} mask layers were given for {N_LAYERS} inputs"):
        composite(paths, str(out), mask_layers=masks, mask_values=[1])
    assert leftovers(out) == []


@pytest.mark.parametrize("options,message", [
    (dict(mask_band=4), "no mask values"),
    (dict(mask_values=[3]), "no mask band or mask layers"),
    (dict(mask_band=5, mask_values=[3]), "Mask band 5 does not exist"),
    (dict(mask_band=4, mask_layers="same", mask_values=[3]), "either a mask band"),
])
def test_inconsistent_mask_options_are_mask_errors(multiband, tmp_path, options, message):
    paths, _ = multiband
    if options.get("mask_layers") == "same":
        options = dict(options, mask_layers=paths)
    out = tmp_path / "out.tif"
    with pytest.raises(MaskError, match=message):
        composite(paths, str(out), **options)
    assert leftovers(out) == []


def test_only_band_is_the_mask_band(raster, tmp_path):
    paths = [raster(f"qa{i}.tif", np.ones(SHAPE, "uint8")) for i in range(2)]
    out = tmp_path / "out.tif"
    with pytest.raises(InputError, match="No band is left"):
        composite(paths, str(out), mask_band=1, mask_values=[1])
    assert leftovers(out) == []

"""QA masks from classes and bits, against plain numpy bitwise logic on synthetic QA bands."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilewise.core.errors import MaskError
from tilewise.core.masks import (LANDSAT_C2_QA, PRESET_NAMES, PRESETS, S2_SCL, QaMask, parse_codes, plan_qa_mask,
                                 preset_by_name, qa_mask)

# Landsat Collection 2 QA_PIXEL values of common pixels, and whether the preset (bits 1-4) drops them
LANDSAT_PIXELS = {
    1: False,      # fill (bit 0): the bands' nodata takes care of it
    21824: False,  # clear, low confidences (bits 6, 8, 10, 12, 14)
    21952: False,  # clear water (bit 7)
    22280: True,   # cloud (bit 3), high cloud confidence
    23888: True,   # cloud shadow (bit 4)
    22018: True,   # dilated cloud (bit 1)
    54596: True,   # cirrus (bit 2)
    30048: False,  # snow (bit 5)
}


def _reference(qa, values, bits):
    """Masked pixels by numpy's own operators in the band's dtype (a right shift keeps the bits of negatives)."""
    out = np.zeros(qa.shape, bool)
    for v in values:
        out |= qa == v
    for b in bits:
        out |= ((qa >> qa.dtype.type(b)) & qa.dtype.type(1)) == 1
    return out


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(["uint8", "uint16", "int16", "uint32", "int32", "int64"]), seed=st.integers(0, 2**31),
       n_values=st.integers(0, 5), n_bits=st.integers(0, 5))
def test_mask_equals_numpy_bitwise(dtype, seed, n_values, n_bits):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    width = np.dtype(dtype).itemsize * 8
    qa = rng.integers(info.min, info.max, (37, 53), dtype=dtype, endpoint=True)
    qa.flat[:20] = rng.integers(0, 12, 20)          # small classes present too
    values = tuple(int(v) for v in rng.integers(0, 12, n_values))
    bits = tuple(int(b) for b in rng.integers(0, width, n_bits))
    mask = plan_qa_mask(values, bits, dtype=dtype)
    got = qa_mask(qa, mask)
    assert got.dtype == bool and got.shape == qa.shape
    np.testing.assert_array_equal(got, _reference(qa, mask.values, mask.bits))


def test_landsat_preset_on_documented_values():
    qa = np.array(list(LANDSAT_PIXELS), np.uint16)
    got = qa_mask(qa, plan_qa_mask(preset="landsat-c2-qa", dtype="uint16"))
    assert got.tolist() == list(LANDSAT_PIXELS.values())
    assert got.tolist() == _reference(qa, (), (1, 2, 3, 4)).tolist()


def test_s2_scl_preset_drops_its_classes_only():
    scl = np.arange(12, dtype=np.uint8).reshape(3, 4)
    got = qa_mask(scl, plan_qa_mask(preset="s2-scl", dtype="uint8"))
    assert np.flatnonzero(got).tolist() == [0, 1, 3, 8, 9, 10]


def test_int16_sign_bit_is_bit_15():
    qa = np.array([-32768, -1, 0, 32767, 1 << 14], np.int16)
    assert qa_mask(qa, QaMask(bits=(15,))).tolist() == [True, True, False, False, False]
    assert qa_mask(qa, QaMask(bits=(14,))).tolist() == [False, True, False, True, True]


def test_int64_tile_read_as_the_band_width():
    """``read_categories`` gives int64 with -1 outside the input: with the band's width, bit 15 of -1 is
    set (as everywhere outside: those pixels have no values anyway) and bit 20 does not exist."""
    qa = np.array([-1, 1 << 15, 1 << 20], np.int64)
    assert qa_mask(qa, QaMask(bits=(15,)), width=16).tolist() == [True, True, False]
    assert qa_mask(qa, QaMask(bits=(20,)), width=16).tolist() == [False, False, False]
    assert qa_mask(qa, QaMask(bits=(20,))).tolist() == [True, False, True]


def test_float_qa_band():
    qa = np.array([8.0, 2.0, np.nan, 0.0, 16.0], np.float32)
    assert qa_mask(qa, QaMask(values=(0,), bits=(3,))).tolist() == [True, False, False, True, False]
    with pytest.raises(MaskError, match="fractional"):
        qa_mask(np.array([1.5]), QaMask(values=(1,)))


def test_empty_mask_masks_nothing():
    assert not qa_mask(np.arange(100, dtype=np.uint16), plan_qa_mask()).any()
    assert plan_qa_mask(preset="none").empty
    assert plan_qa_mask(preset=None, values="").empty


def test_preset_adds_to_given_values_and_bits():
    m = plan_qa_mask(values="2", bits="5", preset="s2-scl")
    assert m.values == (0, 1, 2, 3, 8, 9, 10) and m.bits == (5,)
    m = plan_qa_mask(bits=[5, 1], preset=2)
    assert m.bits == (1, 2, 3, 4, 5) and m.bit_mask == 0b111110
    assert m.describe() == "bits 1,2,3,4,5"
    assert plan_qa_mask(values="0,1", bits="3").describe() == "classes 0,1 and bits 3"


def test_presets_in_fixed_enum_order():
    assert PRESET_NAMES == ("none", "s2-scl", "landsat-c2-qa", "olci-wfr")
    assert [preset_by_name(i).name for i in range(4)] == list(PRESET_NAMES)
    assert preset_by_name("Landsat_C2_QA") is LANDSAT_C2_QA and preset_by_name("s2-scl") is S2_SCL
    assert S2_SCL.values == (0, 1, 3, 8, 9, 10) and LANDSAT_C2_QA.bits == (1, 2, 3, 4)
    for p in PRESETS.values():
        assert p.doc and p.label


@pytest.mark.parametrize("preset, match", [(4, "0..3"), (-1, "0..3"),
                                           ("fmask", "none, s2-scl, landsat-c2-qa, olci-wfr")])
def test_unknown_preset(preset, match):
    with pytest.raises(MaskError, match=match):
        preset_by_name(preset)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits="64"), r"0 \(the lowest bit\) to 63"),
    (dict(bits="-1"), "63"),
    (dict(bits="8", dtype="uint8"), r"\[8\] do not exist in the mask band, which is uint8 \(8 bits: 0..7\)"),
    (dict(bits="16", dtype="int16", layer="band 7 of a.tif"), "band 7 of a.tif, which is int16"),
    (dict(values="300", dtype="uint8"), r"\[300\] cannot occur .* uint8 \(0..255\)"),
    (dict(values="-1", dtype="uint16"), "cannot occur"),
    (dict(bits="1", dtype="complex64"), "not an integer band"),
    (dict(bits="24", dtype="float32"), r"cannot be read from .* float32 \(whole numbers are exact up to bit 23\)"),
    (dict(values="cloud"), "not a whole number"),
    (dict(values="1.5"), "not a whole number"),
    (dict(bits="9-8"), "runs backwards"),
])
def test_bad_masks_are_explained(kwargs, match):
    with pytest.raises(MaskError, match=match):
        plan_qa_mask(**kwargs)


def test_bits_up_to_the_dtype_width_are_fine():
    assert plan_qa_mask(bits="0,7", dtype="uint8").bits == (0, 7)
    assert plan_qa_mask(bits="63", dtype="uint64").bit_mask == 1 << 63
    assert plan_qa_mask(values="255", dtype="uint8").values == (255,)
    assert plan_qa_mask(values="3", dtype="float32").values == (3,)


def test_parse_codes():
    assert parse_codes("8-10, 1;3 0") == (8, 9, 10, 1, 3, 0)
    assert parse_codes([1.0, 3]) == (1, 3)
    assert parse_codes(None) == () and parse_codes("  ") == ()


def test_uint64_high_bit():
    qa = np.array([1 << 63, 1, 0], np.uint64)
    assert qa_mask(qa, QaMask(bits=(63,))).tolist() == [True, False, False]
    assert qa_mask(qa, QaMask(bits=(0,))).tolist() == [False, True, False]


def test_vocabulary_modules_load_no_numba_or_rasterio():
    code = ("import sys; import tilewise.core.masks, tilewise.core.kernels.gapfill_plan, tilewise.core.dates; "
            "print(sorted(m for m in ('numba', 'rasterio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""QA masks: which pixels of a QA band mark an observation to drop (cloud, shadow, no data...).

Two ways to say it, which add up:

- ``MASK_VALUES``: classes, for bands that hold one class per pixel
  (Sentinel-2 SCL, Fmask, a land-cover or cloud mask). A pixel equal to one of
  them is masked.
- ``MASK_BITS``: bit positions, for bands that pack flags into bits (Landsat
  Collection 2 ``QA_PIXEL``, MODIS ``state_1km``). Bit 0 is the least significant;
  a pixel with any of the bits set is masked.

A preset (``MASK_PRESET``, :data:`PRESETS`, in the fixed order of
:data:`PRESET_NAMES` since QGIS models store the index) adds its classes and
bits to the ones given. Plain Python and numpy: no numba, no rasterio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .errors import MaskError
from .vocabulary import MASK_PRESETS

MAX_BIT = 63


@dataclass(frozen=True)
class MaskPreset:
    """Classes and bits that one kind of QA band marks as unusable."""

    name: str
    label: str
    values: Tuple[int, ...] = ()
    bits: Tuple[int, ...] = ()
    doc: str = ""
    #: flag names of a swath product's flag variable (``flag_meanings``), e.g. Sentinel-3 WQSF
    flags: Tuple[str, ...] = ()


#: Sentinel-2 L2A Scene Classification (SCL) classes: 0 no data, 1 saturated or defective,
#: 2 dark area / topographic shadow, 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water,
#: 7 unclassified, 8 cloud (medium probability), 9 cloud (high probability), 10 thin cirrus, 11 snow or ice.
S2_SCL = MaskPreset(
    "s2-scl", "Sentinel-2 SCL (classes 0,1,3,8,9,10)", values=(0, 1, 3, 8, 9, 10),
    doc="Sentinel-2 L2A Scene Classification band (SCL, 20 m): drops classes 0 no data, 1 saturated or "
        "defective, 3 cloud shadow, 8 cloud medium probability, 9 cloud high probability and 10 thin cirrus. "
        "Keeps 2 dark area, 4 vegetation, 5 not vegetated, 6 water, 7 unclassified and 11 snow.")

#: Landsat Collection 2 QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow,
#: 5 snow, 6 clear, 7 water, 8-9 cloud confidence, 10-11 cloud shadow confidence,
#: 12-13 snow/ice confidence, 14-15 cirrus confidence.
LANDSAT_C2_QA = MaskPreset(
    "landsat-c2-qa", "Landsat Collection 2 QA_PIXEL (bits 1,2,3,4)", bits=(1, 2, 3, 4),
    doc="Landsat Collection 2 Level-2 QA_PIXEL band (16-bit): drops pixels with bit 1 dilated cloud, "
        "2 cirrus, 3 cloud or 4 cloud shadow set. Fill (bit 0) is the bands' nodata already; add bit 5 "
        "to drop snow too.")

#: Sentinel-3 OLCI Level-2 WFR: the WQSF flags EUMETSAT recommends for the water reflectances.
OLCI_WFR = MaskPreset(
    "olci-wfr", "Sentinel-3 OLCI WFR WQSF (recommended reflectance flags)",
    flags=("INVALID", "LAND", "CLOUD", "CLOUD_AMBIGUOUS", "CLOUD_MARGIN", "SNOW_ICE", "SUSPECT", "HISOLZEN",
           "SATURATED", "HIGHGLINT", "WHITECAPS", "AC_FAIL", "ANNOT_TAU06", "RWNEG_O2", "RWNEG_O3", "RWNEG_O4",
           "RWNEG_O5", "RWNEG_O6", "RWNEG_O7", "RWNEG_O8"),
    doc="Sentinel-3 OLCI Level-2 WFR swath products, by flag name on WQSF (uint64): drops INVALID, LAND, CLOUD, "
        "CLOUD_AMBIGUOUS, CLOUD_MARGIN, SNOW_ICE, SUSPECT, HISOLZEN, SATURATED, HIGHGLINT, WHITECAPS, AC_FAIL, "
        "ANNOT_TAU06 and RWNEG_O2..O8 (EUMETSAT's recommended flags for the reflectances). Swath inputs only.")

NO_MASK = MaskPreset("none", "None", doc="No preset: only MASK_VALUES and MASK_BITS, if given.")

#: Presets in their fixed enum order (QGIS models store the index): 0 none, 1 s2-scl, 2 landsat-c2-qa, 3 olci-wfr.
PRESET_NAMES = MASK_PRESETS
PRESETS = {p.name: p for p in (NO_MASK, S2_SCL, LANDSAT_C2_QA, OLCI_WFR)}


@dataclass(frozen=True)
class QaMask:
    """The classes and bits to mask, resolved and checked. Empty means no masking."""

    values: Tuple[int, ...] = ()
    bits: Tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.values and not self.bits

    @property
    def bit_mask(self) -> int:
        """The bits as one integer (bits 1,3,4 -> 0b11010 = 26)."""
        return sum(1 << b for b in self.bits)

    def describe(self) -> str:
        """A short text for logs, e.g. ``classes 0,1,3 and bits 1,3,4``."""
        parts = []
        if self.values:
            parts.append("classes " + ",".join(str(v) for v in self.values))
        if self.bits:
            parts.append("bits " + ",".join(str(b) for b in self.bits))
        return " and ".join(parts) or "nothing"


def parse_codes(text: Union[str, Sequence[int], None], what: str = "MASK_VALUES") -> Tuple[int, ...]:
    """Whole numbers from ``"1,3,4"`` (commas, semicolons or spaces), ranges ``"8-9"`` included, or a sequence.

    >>> parse_codes("0, 1;3 8-10")
    (0, 1, 3, 8, 9, 10)
    >>> parse_codes("")
    ()
    """
    if text is None:
        return ()
    if not isinstance(text, str):
        return tuple(_whole(v, what) for v in text)
    out = []
    for item in (t for t in re.split(r"[,;\s]+", text.strip()) if t):
        m = re.fullmatch(r"(-?\d+)-(-?\d+)", item)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise MaskError(f"{what}: the range {item!r} runs backwards; write it low-high, e.g. 8-9.")
            out.extend(range(lo, hi + 1))
        else:
            out.append(_whole(item, what))
    return tuple(out)


def _whole(value, what: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise MaskError(f"{what}: {value!r} is not a whole number; list them like 0,1,3,8,9,10.") from None
    if not f.is_integer():
        raise MaskError(f"{what}: {value!r} is not a whole number; list them like 0,1,3,8,9,10.")
    return int(f)


def preset_by_name(preset: Union[str, int, None]) -> MaskPreset:
    """A preset from its name (``"s2-scl"``) or enum index (1); None is ``"none"``.

    >>> preset_by_name(2).bits
    (1, 2, 3, 4)
    """
    if preset is None or preset == "":
        return NO_MASK
    if isinstance(preset, (int, np.integer)) and not isinstance(preset, bool):
        if not 0 <= int(preset) < len(PRESET_NAMES):
            raise MaskError(f"Mask preset {preset} does not exist; use 0..{len(PRESET_NAMES) - 1} "
                            f"({', '.join(f'{i} {n}' for i, n in enumerate(PRESET_NAMES))}).")
        return PRESETS[PRESET_NAMES[int(preset)]]
    key = str(preset).strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise MaskError(f"Unknown mask preset {preset!r}; use one of {', '.join(PRESET_NAMES)}.")
    return PRESETS[key]


def plan_qa_mask(values: Union[str, Sequence[int], None] = (), bits: Union[str, Sequence[int], None] = (),
                 preset: Union[str, int, None] = None, dtype: Optional[str] = None,
                 layer: str = "the mask band") -> QaMask:
    """Resolve and check a QA mask: the preset's classes and bits plus the given ones.

    ``dtype`` is the QA band's data type; when given, classes must be values it
    can hold and bits must fit its width (bits 0..7 for ``uint8``, 0..15 for
    ``uint16``/``int16``), else a :class:`MaskError` says so for ``layer``.
    Bits are 0..63 in any case.

    >>> plan_qa_mask(values="8,9", preset="s2-scl")
    QaMask(values=(0, 1, 3, 8, 9, 10), bits=())
    >>> plan_qa_mask(bits="1,3,4", dtype="uint16").bit_mask
    26
    """
    p = preset_by_name(preset)
    if p.flags:
        raise MaskError(f"The mask preset {p.name} names the flags of a swath product's flag variable "
                        "(Sentinel-3 WQSF); it applies to swath inputs (SAFE folders, netCDF), not to raster QA bands.")
    vals = tuple(sorted(set(p.values) | set(parse_codes(values, "MASK_VALUES"))))
    bs = tuple(sorted(set(p.bits) | set(parse_codes(bits, "MASK_BITS"))))
    bad = [b for b in bs if not 0 <= b <= MAX_BIT]
    if bad:
        raise MaskError(f"MASK_BITS: bit positions are 0 (the lowest bit) to {MAX_BIT}; got {bad}.")
    if dtype is not None:
        _check_against_dtype(vals, bs, np.dtype(dtype), layer)
    return QaMask(vals, bs)


def _check_against_dtype(values: Tuple[int, ...], bits: Tuple[int, ...], dt: np.dtype, layer: str) -> None:
    if dt.kind == "f":
        # a QA band stacked with float bands (GeoTIFF bands share one type): whole numbers up to the
        # mantissa are exact, so its bits can be read; a fractional value is refused when read (qa_mask)
        exact = np.finfo(dt).nmant
        wide = [b for b in bits if b > exact]
        if wide:
            raise MaskError(f"MASK_BITS {wide} cannot be read from {layer}, which is {dt.name} (whole numbers "
                            f"are exact up to bit {exact}); use the QA band in its own integer type.")
        return
    if dt.kind not in "iu":
        if bits:
            raise MaskError(f"{layer} is {dt.name}, not an integer band, so it holds no bit flags; "
                            "pick the QA band (e.g. QA_PIXEL) or use MASK_VALUES.")
        return
    width = dt.itemsize * 8
    wide = [b for b in bits if b >= width]
    if wide:
        raise MaskError(f"MASK_BITS {wide} do not exist in {layer}, which is {dt.name} ({width} bits: 0..{width - 1}).")
    info = np.iinfo(dt)
    outside = [v for v in values if not info.min <= v <= info.max]
    if outside:
        raise MaskError(f"MASK_VALUES {outside} cannot occur in {layer}, which is {dt.name} "
                        f"({info.min}..{info.max}); check the mask band and values.")


def qa_mask(qa: np.ndarray, mask: QaMask, width: Optional[int] = None) -> np.ndarray:
    """Boolean array, True where ``qa`` is one of ``mask.values`` or has any of ``mask.bits`` set.

    ``qa`` is an integer array (a QA band tile; float arrays must hold whole
    numbers, NaN is never masked). Negative values are read in two's complement
    on ``width`` bits (the QA band's own width, default the array's), so an int16
    band's bit 15 is its sign bit, as in the file.

    >>> qa = np.array([0, 2, 8, 16, 32, 10], np.uint16)
    >>> qa_mask(qa, QaMask(bits=(1, 3, 4))).tolist()
    [False, True, True, True, False, True]
    >>> qa_mask(np.array([[4, 8], [9, 11]], np.uint8), QaMask(values=(8, 9))).tolist()
    [[False, True], [True, False]]
    """
    qa = np.asarray(qa)
    if qa.dtype.kind == "f":
        return _float_qa_mask(qa, mask, width)
    if qa.dtype.kind not in "iub":
        raise MaskError(f"A QA band must hold integers, not {qa.dtype}.")
    out = np.isin(qa, mask.values) if mask.values else np.zeros(qa.shape, bool)
    if mask.bits:
        w = width or qa.dtype.itemsize * 8
        low = (1 << w) - 1 if w < 64 else (1 << 64) - 1
        as_bits = qa.astype(np.int64).astype(np.uint64) & np.uint64(low)
        out |= (as_bits & np.uint64(mask.bit_mask)) != 0
    return out


def _float_qa_mask(qa: np.ndarray, mask: QaMask, width: Optional[int]) -> np.ndarray:
    finite = np.isfinite(qa)
    if not np.array_equal(qa[finite], np.floor(qa[finite])):
        raise MaskError("The QA band holds fractional values; QA classes and bits are whole numbers "
                        "(was the band resampled with other than nearest neighbour?).")
    ints = np.where(finite, qa, 0).astype(np.int64)
    return qa_mask(ints, mask, width or 64) & finite


@dataclass(frozen=True)
class MaskSpec:
    """Where an operation's QA mask comes from and what it drops: band ``band`` of each input, or the
    first band of ``layers[i]`` for input ``i``; ``mask`` the classes and bits; ``width`` the QA band's
    width in bits (two's complement of negative values, :func:`qa_mask`). Plain values (jobs carry it)."""

    mask: QaMask
    band: Optional[int] = None
    layers: Tuple[str, ...] = ()
    width: int = 64

    def source(self, i: int, inputs: Sequence[str]) -> Tuple[str, int]:
        """``(path, band)`` of the QA band of input ``i``."""
        return (self.layers[i], 1) if self.layers else (inputs[i], int(self.band))  # type: ignore[arg-type]


def plan_mask(n_inputs: int, band: Optional[int] = None, layers: Optional[Sequence[str]] = None,
              values: Union[str, Sequence[int], None] = (), bits: Union[str, Sequence[int], None] = (),
              preset: Union[str, int, None] = None, dtype: Optional[str] = None,
              layer: str = "the mask band") -> Optional[MaskSpec]:
    """Check the mask options every masking operation takes; None when nothing is masked.

    ``band`` (of every input) or ``layers`` (one per input), and what to drop: ``values``
    (classes, ``MASK_VALUES``), ``bits`` (``MASK_BITS``) and a ``preset`` (``MASK_PRESET``).
    ``dtype``: the QA band's type (of the first input or mask layer), to check the classes
    and bits against it. Raises :class:`MaskError` saying what is missing or wrong.

    >>> plan_mask(3, band=4, preset="s2-scl").mask.values
    (0, 1, 3, 8, 9, 10)
    >>> plan_mask(3) is None
    True
    """
    layers = tuple(layers or ())
    if layers and len(layers) != n_inputs:
        raise MaskError(f"{len(layers)} mask layers were given for {n_inputs} inputs; "
                        "give one mask layer per input, in the same order.")
    if band is not None and layers:
        raise MaskError("Give either a mask band of the inputs or a list of mask layers, not both.")
    mask = plan_qa_mask(values, bits, preset, dtype, layer)
    where = band is not None or bool(layers)
    if where and mask.empty:
        raise MaskError("A mask is set but no mask values, bits or preset: list the mask classes to exclude "
                        "(e.g. 0,1,3,8,9,10), the QA bits (e.g. 1,2,3,4) or pick a preset (s2-scl, landsat-c2-qa).")
    if not mask.empty and not where:
        raise MaskError(f"Mask {mask.describe()} were given but no mask band or mask layers to read them from.")
    if not where:
        return None
    width = np.dtype(dtype).itemsize * 8 if dtype is not None and np.dtype(dtype).kind in "iu" else 64
    return MaskSpec(mask, band, layers, width)

"""Flag masks of swath products: bits, classes and flags by name (``flag_masks`` / ``flag_meanings``).

A flag variable (Sentinel-3 ``WQSF``, uint64, with masks above 2**32) declares its flags as CF
does: ``flag_meanings`` names them, ``flag_masks`` (bits) and/or ``flag_values`` say how each is
set. A pixel is masked where any chosen flag is set:

* ``flag_masks`` alone: ``value & mask != 0``;
* ``flag_values`` alone: ``value == flag_value``;
* both: ``value & mask == flag_value``.

``MASK_BITS`` (bit positions) and ``MASK_VALUES`` (classes) apply to the flag variable as to a QA
band. By default nothing is masked. Plain numpy; the integers stay uint64 throughout.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Sequence, Tuple

import numpy as np

from ...errors import MaskError, TilewiseWarning
from ...io.swath import SwathScene, SwathVariable
from ...masks import MAX_BIT, parse_codes, preset_by_name


@dataclass(frozen=True)
class FlagRequest:
    """What to mask, as asked: flag names, bits, classes, a preset (plain values)."""

    names: Tuple[str, ...] = ()
    bits: Tuple[int, ...] = ()
    values: Tuple[int, ...] = ()
    preset: str = "none"
    variable: str = ""

    @property
    def empty(self) -> bool:
        return not (self.names or self.bits or self.values or self.preset_names)

    @property
    def preset_names(self) -> Tuple[str, ...]:
        return tuple(getattr(preset_by_name(self.preset), "flags", ()))


def flag_request(names: Any = (), bits: Any = (), values: Any = (), preset: Any = None,
                 variable: Any = None) -> FlagRequest:
    """Checked flag options: ``names`` as ``"LAND,CLOUD,INVALID"`` or a list; bits 0-63.

    >>> flag_request("land, cloud", bits="41").names
    ('LAND', 'CLOUD')
    """
    if isinstance(names, str):
        names = [n for n in re.split(r"[,;\s]+", names) if n]
    chosen = tuple(dict.fromkeys(str(n).strip().upper() for n in (names or ()) if str(n).strip()))
    bs = tuple(sorted(set(parse_codes(bits, "MASK_BITS"))))
    bad = [b for b in bs if not 0 <= b <= MAX_BIT]
    if bad:
        raise MaskError(f"MASK_BITS: bit positions are 0 (the lowest bit) to {MAX_BIT}; got {bad}.")
    p = preset_by_name(preset)
    if (p.values or p.bits) and not getattr(p, "flags", ()):
        raise MaskError(f"The mask preset {p.name} is for raster QA bands; swath products are masked by flag "
                        "names (MASK_FLAGS), bits or the olci-wfr preset.")
    return FlagRequest(chosen, bs, tuple(sorted(set(parse_codes(values, "MASK_VALUES")))), p.name,
                       str(variable or ""))


@dataclass(frozen=True)
class SceneFlags:
    """The request resolved on one scene's flag variable: ``(mask, value)`` pairs (value -1: any bit of
    the mask), whole-value classes."""

    variable: SwathVariable
    pairs: Tuple[Tuple[int, int], ...]
    classes: Tuple[int, ...]

    def masked(self, raw: np.ndarray) -> np.ndarray:
        """True where ``raw`` (the flag variable's stored values) has a chosen flag set."""
        flags = np.asarray(raw).astype(np.int64, copy=False).view(np.uint64) if np.asarray(raw).dtype.kind == "i" \
            else np.asarray(raw).astype(np.uint64, copy=False)
        out = np.isin(flags, np.asarray(self.classes, np.uint64)) if self.classes else np.zeros(flags.shape, bool)
        any_bits = np.uint64(0)
        for mask, value in self.pairs:
            if value < 0:
                any_bits |= np.uint64(mask)
            else:
                out |= (flags & np.uint64(mask)) == np.uint64(value)
        if any_bits:
            out |= (flags & any_bits) != 0
        return out


def resolve_flags(request: FlagRequest, scene: SwathScene) -> SceneFlags:
    """The request on ``scene``: its flag variable (``request.variable``, else the only one it has), each
    name looked up in its ``flag_meanings``. Unknown names are an error listing the scene's flags; names
    of the preset the product does not declare are skipped (older processing baselines lack some)."""
    variable = _flag_variable(request, scene)
    meanings = [m.upper() for m in variable.flag_meanings]
    pairs = [(1 << b, -1) for b in request.bits]
    width = np.dtype(variable.dtype).itemsize * 8
    wide = [b for b in request.bits if b >= width]
    if wide:
        raise MaskError(f"MASK_BITS {wide} do not exist in {variable.name} of {scene.source}, which is "
                        f"{variable.dtype} ({width} bits: 0..{width - 1}).")
    unknown = [n for n in request.names if n not in meanings]
    if unknown:
        raise MaskError(f"{variable.name} of {scene.source} has no flag {', '.join(unknown)}; its flags are: "
                        f"{', '.join(variable.flag_meanings) or '(none: it declares no flag_meanings)'}.")
    missing = [n for n in request.preset_names if n not in meanings]
    if missing:
        warnings.warn(TilewiseWarning(f"{variable.name} of {scene.source} does not declare the flags "
                                      f"{', '.join(missing)} of the {request.preset} preset; they are not "
                                      "masked in it."), stacklevel=3)
    for name in dict.fromkeys(request.names + request.preset_names):
        if name not in meanings:
            continue
        i = meanings.index(name)
        mask = variable.flag_masks[i] if variable.flag_masks else -1
        value = variable.flag_values[i] if variable.flag_values else -1
        if mask >= 0:
            pairs.append((mask, value))
        else:
            pairs.append(((1 << width) - 1 if width < 64 else (1 << 64) - 1, value))
    return SceneFlags(variable, tuple(pairs), request.values)


def _flag_variable(request: FlagRequest, scene: SwathScene) -> SwathVariable:
    if request.variable:
        v = scene.variable(request.variable)
        if request.names or request.preset_names:
            if not v.is_flags:
                raise MaskError(f"{v.name} of {scene.source} declares no flag_meanings with flag_masks or "
                                "flag_values: give its bits (MASK_BITS) or classes (MASK_VALUES) instead of names.")
        if np.dtype(v.dtype).kind not in "iu":
            raise MaskError(f"{v.name} of {scene.source} is {v.dtype}, not an integer flag variable.")
        return v
    found = scene.flag_variables()
    if len(found) == 1:
        return found[0]
    if not found:
        raise MaskError(f"{scene.source} has no flag variable (one with flag_meanings and flag_masks or "
                        "flag_values); name the variable to read the flags from (FLAG_VARIABLE).")
    raise MaskError(f"{scene.source} has several flag variables ({', '.join(v.name for v in found)}); choose "
                    "one (FLAG_VARIABLE).")


def flag_names(scene: SwathScene) -> Sequence[str]:
    """The flags the scene's flag variables declare (for messages and the dialog's help)."""
    return [m for v in scene.flag_variables() for m in v.flag_meanings]

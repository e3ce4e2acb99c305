"""A catalogue of spectral indices, each an expression over named bands.

Band roles: ``BLUE``, ``GREEN``, ``RED``, ``NIR``, ``SWIR1`` (~1.6 um), ``SWIR2`` (~2.2 um).
Inputs are reflectances (apply the product's scale/offset first for integer
products: e.g. Landsat Collection 2 L2 scale 0.0000275 offset -0.2,
Sentinel-2 L2A scale 0.0001 offset -0.1 from baseline 04.00).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..errors import ParameterError

ROLES = ("BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2")


@dataclass(frozen=True)
class SpectralIndex:
    key: str
    name: str
    formula: str
    bands: Tuple[str, ...]
    reference: str
    clip: Optional[Tuple[float, float]] = None
    constants: Dict[str, float] = field(default_factory=dict)

    def expression(self, **constants: float) -> str:
        """The formula with its constants (e.g. SAVI's L) filled in."""
        values = {**self.constants, **{k: v for k, v in constants.items() if v is not None}}
        unknown = set(constants) - set(self.constants)
        if unknown:
            raise ParameterError(f"{self.key.upper()} has no constant {', '.join(sorted(unknown))}.")
        text = self.formula
        for name, value in values.items():
            text = re.sub(rf"\b{name}\b", f"({float(value)!r})", text)
        return text

    def describe(self) -> str:
        consts = "".join(f", {k} = {v:g}" for k, v in self.constants.items())
        return f"{self.key.upper()}: {self.name} = {self.formula}{consts} ({self.reference})"


_ND = (-1.0, 1.0)

INDICES: Dict[str, SpectralIndex] = {i.key: i for i in (
    SpectralIndex("ndvi", "Normalized Difference Vegetation Index", "(NIR - RED) / (NIR + RED)",
                  ("NIR", "RED"), "Rouse et al. 1974", _ND),
    SpectralIndex("ndwi", "Normalized Difference Water Index", "(GREEN - NIR) / (GREEN + NIR)",
                  ("GREEN", "NIR"), "McFeeters 1996", _ND),
    SpectralIndex("mndwi", "Modified Normalized Difference Water Index", "(GREEN - SWIR1) / (GREEN + SWIR1)",
                  ("GREEN", "SWIR1"), "Xu 2006", _ND),
    SpectralIndex("nbr", "Normalized Burn Ratio", "(NIR - SWIR2) / (NIR + SWIR2)",
                  ("NIR", "SWIR2"), "Key & Benson 2006", _ND),
    SpectralIndex("ndbi", "Normalized Difference Built-up Index", "(SWIR1 - NIR) / (SWIR1 + NIR)",
                  ("SWIR1", "NIR"), "Zha et al. 2003", _ND),
    SpectralIndex("evi", "Enhanced Vegetation Index", "2.5 * (NIR - RED) / (NIR + 6 * RED - 7.5 * BLUE + 1)",
                  ("NIR", "RED", "BLUE"), "Huete et al. 2002"),
    SpectralIndex("savi", "Soil Adjusted Vegetation Index", "(1 + L) * (NIR - RED) / (NIR + RED + L)",
                  ("NIR", "RED"), "Huete 1988", constants={"L": 0.5}),
    SpectralIndex("evi2", "Two-band Enhanced Vegetation Index", "2.5 * (NIR - RED) / (NIR + 2.4 * RED + 1)",
                  ("NIR", "RED"), "Jiang et al. 2008"),
)}


def get_index(key: str) -> SpectralIndex:
    try:
        return INDICES[key.lower()]
    except KeyError:
        raise ParameterError(f"Unknown index {key!r}; available: {', '.join(k.upper() for k in INDICES)}.") from None

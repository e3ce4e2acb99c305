"""The series of rasters a composite reads: the composite's own options, the bands to composite and the QA
mask, shared by the per-band composite, the spectral composites, gap filling and chips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ..errors import InputError, MaskError
from ..masks import MaskSpec, plan_mask
from ..vocabulary import PER_BAND_STATISTICS


@dataclass(frozen=True)
class CompositeOptions:
    """The composite's own options (the grid, output and run options are shared: :mod:`tilewise.core.options`).

    ``statistic`` (one of :data:`~tilewise.core.vocabulary.PER_BAND_STATISTICS`) with ``percentiles`` for
    ``"percentile"``; ``bands`` to composite (default all but the mask band); ``input_nodata``
    overriding the files'; a QA mask: ``mask_band`` of each input, or ``mask_layers`` (one per
    input), and what to exclude: ``mask_values`` (classes), ``mask_bits`` (QA bits) and a
    ``mask_preset`` (:data:`~tilewise.core.vocabulary.MASK_PRESETS`; see :mod:`tilewise.core.masks`).
    """

    statistic: str = PER_BAND_STATISTICS[0]
    percentiles: Sequence[float] = ()
    bands: Optional[Sequence[int]] = None
    input_nodata: Optional[float] = None
    mask_band: Optional[int] = None
    mask_layers: Optional[Sequence[str]] = None
    mask_values: Sequence[int] = ()
    mask_bits: Sequence[int] = ()
    mask_preset: Optional[str] = None


def plan_input_mask(infos, mask_infos, own) -> Optional[MaskSpec]:
    """The QA mask of ``own`` (``mask_band`` / ``mask_layers`` / ``mask_values`` / ``mask_bits`` /
    ``mask_preset``), checked against the QA band's type; None when nothing is masked."""
    first = mask_infos[0] if mask_infos else infos[0]
    band = 1 if mask_infos else own.mask_band
    dtype = first.dtypes[band - 1] if band is not None and 1 <= band <= first.count else None
    layer = f"band {band} of {first.path}" if band is not None else "the mask band"
    return plan_mask(len(infos), own.mask_band, [m.path for m in mask_infos], own.mask_values, own.mask_bits,
                     own.mask_preset, dtype, layer)


def choose_bands(infos, bands, mask_band) -> Tuple[int, ...]:
    fewest = min(infos, key=lambda i: i.count)
    if mask_band is not None and not 1 <= mask_band <= fewest.count:
        raise MaskError(f"Mask band {mask_band} does not exist in {fewest.path}, which has {fewest.count} band(s).")
    if bands:
        chosen = tuple(int(b) for b in bands)
    else:
        counts = {i.count for i in infos}
        if len(counts) > 1:
            raise InputError(f"The inputs have different band counts ({band_counts(infos)}); "
                             "pick the bands to composite (e.g. --bands 1,2,3; BANDS in QGIS).")
        chosen = tuple(b for b in range(1, fewest.count + 1) if b != mask_band)
    for b in chosen:
        if b < 1 or b > fewest.count:
            raise InputError(f"Band {b} does not exist in {fewest.path}, which has {fewest.count} band(s).")
    if not chosen:
        raise InputError("No band is left to composite (the only band is the mask band).")
    return chosen


def band_counts(infos, limit: int = 3) -> str:
    """``"1 band: a.tif, b.tif; 3 bands: rgb.tif"``: which files have how many bands."""
    groups: dict = {}
    for info in infos:
        groups.setdefault(info.count, []).append(info.path)
    parts = []
    for count, paths in sorted(groups.items()):
        more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
        parts.append(f"{count} band{'s' if count != 1 else ''}: {', '.join(paths[:limit])}{more}")
    return "; ".join(parts)

"""Result tables of an extraction, as pure functions of the statistics: long and wide layouts.

Long (LAYOUT 1): one row per feature (or vertex) x raster x band, features in
input order, and for each feature its rows in date order (rasters without a
date after the dated ones, in the order given), bands ascending. Columns:

* the id, under the ID_FIELD's own name (``feature_id`` for the feature id);
  ``vertex_index`` (0-based) when a feature gives several points;
* ``source`` (the raster's file name without extension), ``date`` (a date, or
  null), ``band`` (1-based);
* points: ``value``; zones (polygons, lines, point windows): one column per
  statistic (``mean``, ``median``, ``min``, ``max``, ``std``, ``count``, ``sum``,
  ``p10``, ``p2_5``...) and always ``n_valid``.

Wide (LAYOUT 0): the input features with their geometry and fields, plus one
field per raster x band x statistic named ``<raster>_b<band>_<statistic>``:

* ``<raster>`` is ``d`` and the date as ``YYYYMMDD`` (``d20200105``) when the
  raster has a date no other raster shares; else ``d<date>_<source>``, or the
  source name alone when it has no date. Source names keep letters, digits
  and ``_`` (others become ``_``), are cut to 40 characters and start with a
  letter (``r`` is put in front otherwise); a name already taken gets ``_2``...
* ``<statistic>`` is the long layout's column name (``value`` for points).

Every name is a plain identifier (letters, digits, ``_``), so it needs no
quoting in QGIS expressions or SQL, and is well within GeoPackage's limits.
"""

from __future__ import annotations

import re
from typing import Dict, List, Sequence

import numpy as np

from .spec import ExtractSpec, percentile_column
from ...io.vector import VERTEX_INDEX, Samples, Table, Zones, tiled_strings
from ...kernels.zonal import ZoneStats
from ...vocabulary import EXTRACT_LAYOUTS

_MAX_SOURCE = 40


def date_order(dates: np.ndarray) -> np.ndarray:
    """Raster order for output: dated rasters by date (ties in the order given), then undated ones.

    >>> date_order(np.array(["2020-03-01", "NaT", "2020-01-01"], dtype="datetime64[D]")).tolist()
    [2, 0, 1]
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    missing = np.isnat(dates)
    key = np.where(missing, np.iinfo(np.int64).max, dates.astype(np.int64))
    return np.lexsort((np.arange(len(dates)), key))


def statistic_arrays(stats: ZoneStats, spec: ExtractSpec, as_values: bool) -> Dict[str, np.ndarray]:
    """Output columns of the statistics, ``name -> (n_samples, n_layers)``, in the fixed order."""
    if as_values:
        return {"value": stats.mean}
    out: Dict[str, np.ndarray] = {}
    q = 1 if "median" in spec.statistics else 0
    for name in spec.statistics:
        if name == "mean":
            out["mean"] = stats.mean
        elif name == "median":
            out["median"] = stats.quantiles[..., 0]
        elif name == "min":
            out["min"] = stats.vmin
        elif name == "max":
            out["max"] = stats.vmax
        elif name == "std":
            out["std"] = stats.std
        elif name == "count":
            out["count"] = stats.count
        elif name == "sum":
            out["sum"] = stats.total
        elif name == "percentiles":
            for i, p in enumerate(spec.percentiles):
                out[percentile_column(p)] = stats.quantiles[..., q + i]
    out["n_valid"] = stats.n_valid.astype(np.int32)
    return out


def long_table(zones: Zones, samples: Samples, stats: ZoneStats, spec: ExtractSpec, sources: Sequence[str],
               dates: np.ndarray, bands: Sequence[int], arrow: bool = False) -> Table:
    """The long layout (see the module's docstring). Layer ``r * len(bands) + b`` is raster ``r``, band ``bands[b]``.
    ``arrow``: the ``source`` column as an Arrow string column (:func:`~tilewise.core.io.vector.tiled_strings`,
    for a file), not a numpy array of Python strings."""
    n_s = len(samples)
    n_b = len(bands)
    order = date_order(dates)
    layer_order = (order[:, None] * n_b + np.arange(n_b)[None, :]).ravel()
    n_l = len(layer_order)
    raster = layer_order // n_b
    # row i is sample i // n_l, layer layer_order[i % n_l]: repeats and tiles of short arrays (no index
    # arrays of every row, which cost as much as the columns)
    cols: Dict[str, np.ndarray] = {zones.id_name: np.repeat(zones.ids[samples.feature], n_l)}
    if samples.vertex is not None:
        cols[_unique(VERTEX_INDEX, cols)] = np.repeat(samples.vertex.astype(np.int32), n_l)
    names = np.asarray(list(sources), dtype=object)[raster]
    cols[_unique("source", cols)] = tiled_strings(names, n_s) if arrow else np.tile(names, n_s)
    cols[_unique("date", cols)] = np.tile(np.asarray(dates, dtype="datetime64[D]")[raster], n_s)
    cols[_unique("band", cols)] = np.tile(np.asarray(bands, dtype=np.int32)[layer_order % n_b], n_s)
    in_order = np.array_equal(layer_order, np.arange(n_l))
    for name, values in statistic_arrays(stats, spec, samples.as_values).items():
        cols[_unique(name, cols)] = (values if in_order else values[:, layer_order]).reshape(-1)
    return Table(cols)


def feature_columns(zones: Zones, samples: Samples) -> Dict[str, np.ndarray]:
    """The first columns of a wide table, one row per sample: the feature's id (unless a field holds it),
    its fields, and the vertex index in vertices mode."""
    rows = samples.feature
    cols: Dict[str, np.ndarray] = {}
    if zones.id_name not in zones.fields:
        cols[zones.id_name] = zones.ids[rows]
    for name, values in zones.fields.items():
        cols[name] = np.asarray(values)[rows] if not isinstance(values, np.ma.MaskedArray) else values[rows]
    if samples.vertex is not None:
        cols[_unique(VERTEX_INDEX, cols)] = samples.vertex.astype(np.int32)
    return cols


def wide_table(zones: Zones, samples: Samples, stats: ZoneStats, spec: ExtractSpec, sources: Sequence[str],
               dates: np.ndarray, bands: Sequence[int]) -> Table:
    """The wide layout (see the module's docstring): one row per feature (per vertex in vertices mode)."""
    n_b = len(bands)
    cols = feature_columns(zones, samples)
    keys = raster_keys(sources, dates)
    arrays = statistic_arrays(stats, spec, samples.as_values)
    for r in date_order(dates):
        for b, band in enumerate(bands):
            layer = r * n_b + b
            for stat, values in arrays.items():
                cols[_unique(f"{keys[r]}_b{band}_{stat}", cols)] = values[:, layer]
    geometry = samples.geometry if samples.vertex is not None else zones.geometry
    return Table(cols, np.asarray(geometry, dtype=object), zones.crs)


def raster_keys(sources: Sequence[str], dates: np.ndarray) -> List[str]:
    """The ``<raster>`` part of wide field names, one per raster (see the module's docstring).

    >>> d = np.array(["2020-01-05", "2020-01-05", "NaT"], dtype="datetime64[D]")
    >>> raster_keys(["S2A_T33_x", "S2B_T32_x", "2019 mosaic"], d)
    ['d20200105_S2A_T33_x', 'd20200105_S2B_T32_x', 'r2019_mosaic']
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    text = [None if np.isnat(d) else str(d).replace("-", "") for d in dates]
    shared = {t for t in text if t is not None and text.count(t) > 1}
    keys: List[str] = []
    for t, source in zip(text, sources):
        clean = _identifier(source)
        key = clean if t is None else (f"d{t}_{clean}" if t in shared else f"d{t}")
        base, i = key, 2
        while key in keys:
            key = f"{base}_{i}"
            i += 1
        keys.append(key)
    return keys


def _identifier(text: str) -> str:
    clean = re.sub(r"[^0-9A-Za-z_]", "_", text)[:_MAX_SOURCE] or "r"
    return clean if clean[0].isalpha() else "r" + clean


def _unique(name: str, taken: Dict[str, np.ndarray]) -> str:
    out, i = name, 2
    while out in taken:
        out = f"{name}_{i}"
        i += 1
    return out


def build_table(layout: str, zones: Zones, samples: Samples, stats: ZoneStats, spec: ExtractSpec,
                sources: Sequence[str], dates: np.ndarray, bands: Sequence[int], arrow: bool = False) -> Table:
    """:func:`wide_table` or :func:`long_table` by ``layout`` (``"wide"``/0 or ``"long"``/1); ``arrow``: see
    :func:`long_table`."""
    from .spec import choose
    if choose(layout, EXTRACT_LAYOUTS, "layout") == "wide":
        return wide_table(zones, samples, stats, spec, sources, dates, bands)
    return long_table(zones, samples, stats, spec, sources, dates, bands, arrow)

"""OUTPUT_PLOT of a swath extraction: the HTML page of :mod:`..extract.plot`, its series read from the long
table of the extraction (whatever the layout of the table written), its dates from the scenes.

A feature's series is, per variable, the value of its nearest pixel (points), or for polygons the mean
(with +/- one standard deviation when ``std`` is among the statistics) and else the first statistic asked,
in date order; the tooltips name the scene.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import TilewiseWarning
from ...grid import Tile
from ...io.vector import VERTEX_INDEX, Table
from ...runtime.sinks import MergeFn, TableSink, read_part
from ..extract.plot import DEFAULT_MAX_FEATURES, plot_numbers, label_text, y_ticks, date_ticks, write_page

#: The columns of the long table that are not a statistic.
_KEYS = ("source", "date", "time", "variable")


@dataclass(frozen=True)
class SwathPlotSink(TableSink):
    """The table of a swath extraction, and its plot (``plot``: the page's path, or None for none). ``long``
    turns the parts into the long table, which the page is drawn from; ``id_name``: the features' id column."""

    plot: Optional[str] = None
    long: Optional[MergeFn] = None
    id_name: str = "id"

    @property
    def outputs(self) -> Tuple[str, ...]:
        return (self.path,) + ((self.plot,) if self.plot else ())

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        summary = super().finish(workdir, tiles)
        if self.plot and self.long is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TilewiseWarning)     # said once already, by the table
                table = self.long((t, read_part(self.target(workdir, t))) for t in tiles)
            write_swath_plot(table, self.id_name, self.plot)
        return summary


def swath_plot_data(table: Table, id_name: str, max_features: int = DEFAULT_MAX_FEATURES) -> Dict[str, Any]:
    """The page's data (as :func:`..extract.plot.plot_data`'s) from the long table of a swath extraction: one
    series per feature (and vertex) and variable, over the scenes in date order."""
    c = table.columns
    names = list(c)
    points = "value" in c
    stats = names[names.index("variable") + 1:names.index("n_valid")] if not points else ["value"]
    shown = "value" if points else ("mean" if "mean" in stats else stats[0])
    vertex = c.get(VERTEX_INDEX)
    keys = list(zip(c[id_name].tolist(), vertex.tolist() if vertex is not None else [None] * len(table)))
    features = list(dict.fromkeys(keys))
    scenes = list(dict.fromkeys(zip(c["source"].tolist(), c["date"].astype("datetime64[D]").astype(str).tolist())))
    variables = list(dict.fromkeys(c["variable"].tolist()))
    where = ({k: i for i, k in enumerate(features)}, {k: i for i, k in enumerate(scenes)},
             {k: i for i, k in enumerate(variables)})
    f = np.fromiter((where[0][k] for k in keys), np.int64, len(keys))
    s = np.fromiter((where[1][k] for k in zip(c["source"].tolist(), c["date"].astype("datetime64[D]").astype(str)
                                              .tolist())), np.int64, len(keys))
    v = np.fromiter((where[2][k] for k in c["variable"].tolist()), np.int64, len(keys))

    def cube(column: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if column is None:
            return None
        out = np.full((len(features), len(variables), len(scenes)), np.nan)
        out[f, v, s] = np.ma.filled(np.ma.asarray(column, np.float64), np.nan)
        return out

    m = cube(c[shown])
    e = cube(c["std"]) if shown == "mean" and "std" in c else None
    n = cube(c["n_valid"]) if "n_valid" in c else np.isfinite(m).astype(np.float64)
    dates = np.asarray([d for _, d in scenes], "datetime64[D]")
    dated = bool(len(dates)) and not np.any(np.isnat(dates))
    out: List[Dict[str, Any]] = []
    for i, (ident, k) in enumerate(features[:int(max_features)]):
        series = []
        for j in range(len(variables)):
            entry = {"m": plot_numbers(m[i, j]), "v": plot_numbers(n[i, j])}
            if e is not None:
                entry["e"] = plot_numbers(e[i, j])
            entry["t"] = y_ticks(entry["m"], entry.get("e"))
            series.append(entry)
        out.append({"id": label_text(ident) + ("" if k is None else f" / vertex {int(k)}"), "b": series})
    label = "mean ± std" if e is not None else shown
    return {
        "title": f"{label.capitalize()} of {', '.join(variables)} per feature",
        "id_name": id_name,
        "x": [str(d) for d in dates] if dated else list(range(1, len(scenes) + 1)),
        "dated": dated,
        "x_ticks": date_ticks(dates.min(), dates.max()) if dated else [],
        "sources": [name for name, _ in scenes],
        "bands": [{"band": j + 1, "name": name, "unit": ""} for j, name in enumerate(variables)],
        "points": points,
        "statistic": label,
        "total": len(features),
        "features": out,
    }


def write_swath_plot(table: Table, id_name: str, path: str, max_features: int = DEFAULT_MAX_FEATURES) -> str:
    """Write the HTML chart of the long table of a swath extraction to ``path``; return it."""
    return write_page(swath_plot_data(table, id_name, max_features), path)

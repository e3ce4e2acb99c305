"""Time series at points and polygons: the extraction engine behind ``tilewise:extract``.

Every feature, every raster, every band, in one pass over the tiles of each
grid: features are assigned to tiles by a spatial index, covered once per tile
(pixel centres, all touched, or exact covered fractions), and each tile window
is read once per raster however many features it holds. Statistics of features
that span tiles are merged exactly (medians and percentiles from their values).

Modules, by stage: :mod:`.spec` (what to compute), :mod:`.io.vector` (zones in,
tables out), :mod:`.kernels.footprints` (pixel space, spatial index),
:mod:`.kernels.pixel_cover` (the pixels under each feature) and :mod:`.kernels.zonal`
(the numba kernels and the merge), :mod:`.layout` (long and wide tables),
:mod:`.plot` (HTML chart), :mod:`.pipeline` (plan, one tile, a single-process run).

>>> from tilewise.core.operations.extract import ExtractSpec, extract_stats          # doctest: +SKIP
>>> result = extract_stats(scenes, "fields.gpkg", ExtractSpec(["mean", "count"]), id_field="pid")  # doctest: +SKIP
>>> result.write("ts.parquet", layout="long")                       # doctest: +SKIP
"""

from .spec import ExtractSpec
from .pipeline import ExtractPlan, ExtractResult, extract_stats, extract_tile, plan_extraction, run_plan
from ...io.vector import Table, TableWriter, Zones, read_zones, write_table, zones_from_geometries
from ...kernels.zonal import TilePart, ZoneMerger, ZoneStats

__all__ = ["ExtractSpec", "ExtractPlan",
           "ExtractResult", "extract_stats", "extract_tile", "plan_extraction", "run_plan", "Table", "TableWriter",
           "Zones", "read_zones", "write_table", "zones_from_geometries", "TilePart", "ZoneMerger", "ZoneStats"]

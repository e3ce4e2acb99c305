"""Vector input and table output of the extraction, with pyogrio and shapely (no QGIS, no osgeo).

* :func:`read_zones` reads points, lines or polygons (multi-part, holes, any CRS)
  from any vector format GDAL reads, with an id field or the feature id.
* :func:`make_samples` turns features into what is measured: one sample per
  feature (zonal), per vertex (vertices mode) or per point of a multi-point.
* :func:`reproject` moves geometries to a raster's CRS.
* :class:`TableWriter` writes a result table in chunks to GeoPackage (or another
  OGR vector format), CSV or Parquet (GeoParquet when there is geometry), with
  real nulls in every format. It writes to a hidden partial file and renames it
  when closed, so a failed run leaves no half table under the output's name.

pyogrio's wheels carry GDAL without the Arrow/Parquet driver, so Parquet is
written with pyarrow, as GeoParquet 1.1 (WKB geometry, PROJJSON CRS).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import shapely

from ..errors import InputError, OutputError, ParameterError, TilewiseWarning
from ..paths import partial_name
from ..kernels.footprints import KIND_EMPTY, KIND_LINE, KIND_POINT, KIND_POLYGON, kind_of

log = logging.getLogger(__name__)

#: Name of the id column when no ID_FIELD is given (the feature id, as QGIS shows it).
FEATURE_ID = "feature_id"
#: Name of the vertex column (0-based, as QGIS's "Extract vertices" vertex_index).
VERTEX_INDEX = "vertex_index"
#: GeoPackage (SQLite) tables hold at most 2000 columns.
GPKG_MAX_COLUMNS = 1999
#: GeoPackage version written: 1.2 opens without warnings in GDAL 3.6 (QGIS 3.22 on Debian 12).
GPKG_VERSION = "1.2"
SHAPEFILE_MAX_NAME = 10


@dataclass
class Zones:
    """Features read from a vector layer: geometries in ``crs``, ids, attributes."""

    geometry: np.ndarray
    crs: Optional[str]
    ids: np.ndarray
    id_name: str = FEATURE_ID
    fields: Dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "zones"

    def __len__(self) -> int:
        return len(self.geometry)

    @property
    def kinds(self) -> np.ndarray:
        return kind_of(self.geometry)


def zones_from_geometries(geometry: Sequence, crs: Optional[str] = None, ids: Optional[Sequence] = None,
                          id_name: Optional[str] = None, fields: Optional[Dict[str, Sequence]] = None,
                          source: str = "zones") -> Zones:
    """:class:`Zones` from shapely geometries (the Python API's way in, and the tests').

    >>> z = zones_from_geometries([shapely.Point(0, 0), shapely.box(0, 0, 1, 1)], "EPSG:32633")
    >>> z.ids.tolist(), z.id_name
    ([0, 1], 'feature_id')
    """
    geoms = np.asarray(list(geometry), dtype=object)
    out_ids = np.arange(len(geoms), dtype=np.int64) if ids is None else np.asarray(ids)
    if len(out_ids) != len(geoms):
        raise ParameterError(f"{len(out_ids)} ids for {len(geoms)} geometries.")
    cols = {k: np.asarray(v) for k, v in (fields or {}).items()}
    zones = Zones(geoms, crs, out_ids, id_name or FEATURE_ID, cols, source)
    _repair(zones)
    return zones


def read_zones(path: str, layer: Optional[str] = None, id_field: Optional[str] = None) -> Zones:
    """Read the features of ``path`` (``layer`` of a multi-layer source).

    ``id_field`` names the attribute carried into the output as the feature's
    id; by default it is the feature id (GeoPackage ``fid``, 0-based for a
    shapefile, as QGIS shows it), in a column named ``feature_id``. Curved
    geometries are linearised, Z and M dropped, invalid polygons repaired
    (with a warning).
    """
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    label = f"{path}|layername={layer}" if layer else path
    if not path.startswith("/vsi") and not os.path.exists(path):
        raise InputError(f"Zones layer not found: {path}")
    try:
        meta, fids, wkb, data = pyogrio.raw.read(path, layer=layer, return_fids=True, force_2d=True)
    except DataLayerError as exc:
        raise InputError(f"Cannot read layer {layer!r} of {path}: {exc}") from None
    except DataSourceError as exc:
        raise InputError(f"Not a vector layer GDAL can read: {path} ({exc})") from None
    if wkb is None:
        raise InputError(f"The zones layer {label} has no geometry; give a layer of points, lines or polygons.")
    geoms = shapely.from_wkb(wkb)
    names = [str(n) for n in meta["fields"]]
    fields = dict(zip(names, data))
    if id_field:
        if id_field not in fields:
            raise InputError(f"The zones layer {label} has no field {id_field!r}; its fields are: "
                             f"{', '.join(names) or '(none)'}.")
        ids, id_name = fields[id_field], id_field
    else:
        ids, id_name = np.asarray(fids, dtype=np.int64), FEATURE_ID
    zones = Zones(np.asarray(geoms, dtype=object), meta.get("crs"), ids, id_name, fields, label)
    _check_ids(zones)
    _repair(zones)
    return zones


def _check_ids(zones: Zones) -> None:
    ids = zones.ids
    if ids.dtype == object:
        missing = np.array([v is None for v in ids])
    elif ids.dtype.kind == "f":
        missing = np.isnan(ids)
    elif ids.dtype.kind == "M":
        missing = np.isnat(ids)
    else:
        missing = np.zeros(len(ids), bool)
    if np.any(missing):
        warnings.warn(f"{int(missing.sum())} features of {zones.source} have no {zones.id_name}; their rows "
                      "cannot be told apart by id.", TilewiseWarning, stacklevel=3)
    present = ids[~missing]
    try:
        unique = len(np.unique(present.astype(str) if present.dtype == object else present))
    except TypeError:
        unique = len(set(present.tolist()))
    if unique < len(present):
        warnings.warn(f"{zones.id_name} of {zones.source} is not unique ({len(present) - unique} repeated "
                      "values); rows of different features share ids. Choose a unique ID_FIELD.",
                      TilewiseWarning, stacklevel=3)


def _repair(zones: Zones) -> None:
    """Make invalid polygons valid (keeping their polygonal parts), warning once."""
    geoms = zones.geometry
    polygonal = zones.kinds == KIND_POLYGON
    bad = np.flatnonzero(polygonal & ~shapely.is_valid(geoms))
    if len(bad) == 0:
        return
    fixed = shapely.make_valid(geoms[bad])
    for i, g in zip(bad, fixed):
        if shapely.get_type_id(g) == 7:
            parts = shapely.get_parts(g)
            g = shapely.union_all(parts[np.isin(shapely.get_type_id(parts), (3, 6))])
        geoms[i] = g
    shown = ", ".join(str(v) for v in zones.ids[bad[:5]])
    warnings.warn(f"{len(bad)} invalid polygons of {zones.source} were repaired before extraction "
                  f"({zones.id_name} {shown}{'...' if len(bad) > 5 else ''}).", TilewiseWarning, stacklevel=3)


# -- samples ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Samples:
    """What is measured: ``geometry[s]`` belongs to feature ``feature[s]``.

    ``vertex[s]`` is the vertex (or point) index within the feature when a
    feature gives several samples, else None. ``as_values``: every sample is a
    point read as one value (no WINDOW), so the result has ``value`` instead of
    statistic columns.
    """

    geometry: np.ndarray
    feature: np.ndarray
    vertex: Optional[np.ndarray]
    as_values: bool

    def __len__(self) -> int:
        return len(self.geometry)


def make_samples(zones: Zones, geometry_mode: str = "zonal", window: int = 1) -> Samples:
    """Samples of ``zones``: each polygon or line as a zone (``zonal``), or each vertex as a point
    (``vertices``); points one sample each, the points of a multi-point each on its own.

    >>> z = zones_from_geometries([shapely.box(0, 0, 1, 1), shapely.MultiPoint([(0, 0), (2, 2)])])
    >>> s = make_samples(z, "vertices")
    >>> s.feature.tolist(), s.vertex.tolist(), s.as_values
    ([0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 0, 1], True)
    """
    geoms = zones.geometry
    kinds = zones.kinds
    explode = (kinds == KIND_POINT) & (shapely.get_num_geometries(geoms) > 1)
    if geometry_mode == "vertices":
        explode |= (kinds == KIND_POLYGON) | (kinds == KIND_LINE)
    if not np.any(explode):
        as_values = window == 1 and bool(np.all((kinds == KIND_POINT) | (kinds == KIND_EMPTY)))
        return Samples(geoms.copy(), np.arange(len(geoms), dtype=np.int64), None, as_values)
    parts: List[Any] = []
    feature: List[int] = []
    vertex: List[int] = []
    for i, g in enumerate(geoms):
        if not explode[i]:
            parts.append(g)
            feature.append(i)
            vertex.append(0)
            continue
        points = _vertices(g)
        parts.extend(points)
        feature.extend([i] * len(points))
        vertex.extend(range(len(points)))
    sample_geoms = np.asarray(parts, dtype=object)
    sample_kinds = kind_of(sample_geoms)
    as_values = window == 1 and bool(np.all((sample_kinds == KIND_POINT) | (sample_kinds == KIND_EMPTY)))
    return Samples(sample_geoms, np.asarray(feature, np.int64), np.asarray(vertex, np.int64), as_values)


def _vertices(g) -> List[Any]:
    """The vertices of a geometry as points, without the closing vertex of each ring."""
    if shapely.get_type_id(g) in (0, 4):
        return list(shapely.get_parts(g))
    pieces = []
    for part in shapely.get_parts(g):
        rings = shapely.get_rings(part) if shapely.get_type_id(part) == 3 else [part]
        for ring in rings:
            xy = shapely.get_coordinates(ring)
            if shapely.get_type_id(ring) == 2 or (len(xy) > 1 and shapely.get_type_id(part) == 3):
                xy = xy[:-1]
            pieces.append(xy)
    xy = np.concatenate(pieces) if pieces else np.zeros((0, 2))
    return list(shapely.points(xy))


# -- reprojection -------------------------------------------------------------------------------------------

def same_crs(a: Optional[str], b: Optional[str]) -> bool:
    """True if the two CRS definitions (WKT, ``EPSG:n``, PROJ) are the same, or either is unknown."""
    if not a or not b:
        return True
    if a == b:
        return True
    from rasterio.crs import CRS
    try:
        return CRS.from_user_input(a) == CRS.from_user_input(b)
    except Exception:                                   # noqa: BLE001 - an unparsable CRS is not the same
        log.debug("The CRS %r and %r cannot be compared", a, b, exc_info=True)
        return False


def reproject(geoms: np.ndarray, src_crs: Optional[str], dst_crs: Optional[str],
              source: str = "zones") -> np.ndarray:
    """Geometries from ``src_crs`` to ``dst_crs`` (vertex by vertex, with GDAL through rasterio).

    Vertices outside the range of a geographic ``src_crs`` (:func:`out_of_range`), and those PROJ
    cannot transform, become non-finite: the features holding them are treated as outside every
    raster (rasterio 1.4 raises for the whole batch when one latitude is out of range, so those are
    left out of the call). An error names ``source`` if no vertex can be transformed.
    """
    if same_crs(src_crs, dst_crs):
        return np.asarray(geoms, dtype=object)
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform
    try:
        src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    except CRSError as exc:
        raise InputError(f"Cannot reproject the zones {source} from {src_crs!r} to {dst_crs!r}: {exc}") from None

    def move(xy: np.ndarray) -> np.ndarray:
        out = np.full(xy.shape, np.nan)
        ok = np.all(np.isfinite(xy), axis=1)
        if src.is_geographic:
            ok &= ~out_of_range(xy)
        if not ok.any():
            return out
        try:
            out[ok] = transformed(xy[ok])
        except Exception:                               # noqa: BLE001 - PROJ refuses the batch: vertex by vertex
            failure = None
            for i in np.flatnonzero(ok):
                try:
                    out[i] = transformed(xy[i:i + 1])
                except Exception as exc:                # noqa: BLE001
                    failure = failure or exc
            if not np.isfinite(out).any():
                raise InputError(f"Cannot move the zones {source} from their CRS ({crs_label(src)}) to the "
                                 f"rasters' ({crs_label(dst)}): {failure}. {coordinate_range(xy[ok])} Check "
                                 "that the zones layer has the right CRS.") from None
        return out

    def transformed(xy: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            xs, ys = transform(src, dst, xy[:, 0], xy[:, 1])
        return np.column_stack([np.asarray(xs, np.float64), np.asarray(ys, np.float64)])
    return shapely.transform(np.asarray(geoms, dtype=object), move)


#: Geographic coordinates beyond these are outside any geographic CRS (longitudes 0-360 are accepted).
MAX_LONGITUDE, MAX_LATITUDE = 360.0, 90.0
GEOGRAPHIC_RANGE = "a geographic CRS, of longitudes -180 to 180 and latitudes -90 to 90"


def out_of_range(xy: np.ndarray) -> np.ndarray:
    """True for ``(longitude, latitude)`` rows that no geographic CRS holds.

    >>> out_of_range(np.array([[15.0, 45.0], [500000.0, 4999950.0]])).tolist()
    [False, True]
    """
    with np.errstate(invalid="ignore"):
        return (np.abs(xy[:, 0]) > MAX_LONGITUDE) | (np.abs(xy[:, 1]) > MAX_LATITUDE)


def check_zone_coordinates(zones: Zones, crs: Optional[str] = None) -> None:
    """Refuse zones whose coordinates are all outside the range of their CRS (``crs``, else their own):
    e.g. metres in a layer whose .prj says WGS 84. Warn when only some features are."""
    crs = crs or zones.crs
    if not crs or len(zones) == 0:
        return
    from rasterio.crs import CRS
    try:
        parsed = CRS.from_user_input(crs)
    except Exception:                                   # noqa: BLE001 - an unknown CRS is reported on reprojection
        log.debug("The zones' CRS %r cannot be parsed", crs, exc_info=True)
        return
    if not parsed.is_geographic:
        return
    xy, index = shapely.get_coordinates(zones.geometry, return_index=True)
    finite = np.all(np.isfinite(xy), axis=1)
    bad = out_of_range(xy) & finite
    if not bad.any():
        return
    if bad.sum() == finite.sum():
        raise InputError(f"The coordinates of the zones layer {zones.source} are outside the range of its CRS "
                         f"({crs_label(parsed)}: {GEOGRAPHIC_RANGE}): {coordinate_range(xy[finite])} "
                         "They look like metres or feet: the layer's CRS (e.g. its "
                         ".prj file) is probably wrong. Check it and assign the right CRS (in QGIS: Layer "
                         "Properties > Source > Assigned Coordinate Reference System; on the command line: "
                         "--zones-crs EPSG:...).")
    features = np.unique(index[bad])
    warnings.warn(TilewiseWarning(
        f"{len(features)} of {len(zones)} features of the zones layer {zones.source} have coordinates outside the "
        f"range of its CRS ({crs_label(parsed)}, geographic): they are treated as outside every raster "
        f"({zones.id_name} {', '.join(str(v) for v in zones.ids[features[:5]])}"
        f"{'...' if len(features) > 5 else ''})."), stacklevel=3)


def crs_label(crs) -> str:
    """``EPSG:4326, WGS 84``: the code (if any) and the name of the CRS."""
    import re
    try:
        epsg = crs.to_epsg()
        found = re.match(r'\s*\w+\[\s*"([^"]+)"', crs.to_wkt())
    except Exception:                                   # noqa: BLE001 - a name is only for the message
        log.debug("No name for a CRS", exc_info=True)
        return "an unnamed CRS"
    parts = ([f"EPSG:{epsg}"] if epsg else []) + ([found.group(1)] if found else [])
    return ", ".join(parts) or "an unnamed CRS"


def coordinate_range(xy: np.ndarray) -> str:
    if len(xy) == 0:
        return ""
    return (f"x from {xy[:, 0].min():.10g} to {xy[:, 0].max():.10g}, "
            f"y from {xy[:, 1].min():.10g} to {xy[:, 1].max():.10g}.")


# -- tables -------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """Columns of equal length; nulls are NaN (floats), NaT (dates), None (objects) or masked entries.

    ``geometry`` (shapely, optional) makes it a vector layer in ``crs``.
    """

    columns: Dict[str, np.ndarray]
    geometry: Optional[np.ndarray] = None
    crs: Optional[str] = None

    def __len__(self) -> int:
        if self.columns:
            return len(next(iter(self.columns.values())))
        return 0 if self.geometry is None else len(self.geometry)

    def take(self, rows: np.ndarray) -> "Table":
        return Table({k: v[rows] for k, v in self.columns.items()},
                     None if self.geometry is None else self.geometry[rows], self.crs)


def output_format(path: str) -> str:
    """``"csv"``, ``"parquet"`` or the name of the OGR driver for ``path``'s extension.

    >>> output_format("ts.gpkg"), output_format("ts.CSV"), output_format("ts.parquet")
    ('GPKG', 'csv', 'parquet')
    """
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return "csv"
    if ext in (".parquet", ".geoparquet", ".pq"):
        return "parquet"
    if ext in (".gpkg", ""):
        return "GPKG"
    import pyogrio
    try:
        return pyogrio.detect_write_driver(path)
    except ValueError:
        raise OutputError(f"Cannot tell the format of {path} from its extension; use .gpkg, .csv or .parquet."
                          ) from None


class TableWriter:
    """Write a table in chunks: ``with TableWriter(path) as w: w.write(chunk)``.

    Every chunk must have the same columns (and geometry or not) as the first.
    The file appears under ``path`` only when the writer closes without error.
    All formats go through Arrow tables: GDAL's Arrow path for GeoPackage and
    other OGR formats (about 3x faster than feature by feature), pyarrow's
    writers for Parquet and CSV.
    """

    def __init__(self, path: str, layer: Optional[str] = None) -> None:
        self.path = os.path.abspath(path)
        self.format = output_format(path)
        self.layer = layer or os.path.splitext(os.path.basename(path))[0]
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise OutputError(f"The output folder does not exist: {folder}")
        self.partial = partial_name(self.path)
        self._remove_partial()
        self._columns: Optional[List[str]] = None
        self._spatial = False
        self._writer = None                # pyarrow's Parquet or CSV writer, once open
        self._schema = None
        self.rows = 0

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def write(self, table: Table) -> None:
        """Append the rows of ``table``."""
        names = list(table.columns)
        if self._columns is None:
            self._columns = names
            self._spatial = table.geometry is not None
            self._check_schema(table)
        elif names != self._columns or (table.geometry is not None) != self._spatial:
            raise OutputError(f"A chunk for {self.path} has other columns than the first one.")
        if self.format in ("csv", "parquet"):
            self._write_arrow(table)
        else:
            self._write_ogr(table)
        self.rows += len(table)

    def close(self) -> None:
        """Finish the file and move it to its name."""
        if self._columns is None:
            raise OutputError(f"Nothing was written to {self.path}.")
        self._close_writer()
        self._replace_output()

    def abort(self) -> None:
        """Drop the partial file."""
        self._close_writer()
        self._remove_partial()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- formats ---------------------------------------------------------------------------------------

    def _check_schema(self, table: Table) -> None:
        n_fields = len(table.columns)
        if self.format == "GPKG" and n_fields > GPKG_MAX_COLUMNS:
            raise OutputError(f"{n_fields} fields do not fit in a GeoPackage table (at most {GPKG_MAX_COLUMNS}); "
                              "use the long layout (LAYOUT 1), fewer statistics, or a CSV or Parquet output.")
        if self.format == "ESRI Shapefile":
            long = [n for n in table.columns if len(n) > SHAPEFILE_MAX_NAME]
            if long:
                raise OutputError(f"Shapefile field names are limited to {SHAPEFILE_MAX_NAME} characters, and "
                                  f"{long[0]!r} is longer; write a GeoPackage (.gpkg) instead.")
            if n_fields > 255:
                raise OutputError(f"{n_fields} fields do not fit in a shapefile (at most 255); write a GeoPackage.")

    def _write_ogr(self, table: Table) -> None:
        import pyogrio
        from pyogrio.errors import DataSourceError, FieldError, GeometryError
        geometry_type = crs = None
        if table.geometry is not None:
            geoms, geometry_type = _uniform_geometries(table.geometry)
            table, crs = Table(table.columns, geoms, table.crs), table.crs
        arrow, geometry_name = _arrow_table(table, "wkb")
        options = {"VERSION": GPKG_VERSION} if self.format == "GPKG" and self.rows == 0 else None
        try:
            pyogrio.write_arrow(arrow, self.partial, layer=self.layer, driver=self.format,
                                geometry_name=geometry_name, geometry_type=geometry_type, crs=crs,
                                append=self.rows > 0, dataset_options=options)
        except (DataSourceError, FieldError, GeometryError, OSError) as exc:
            raise OutputError(f"Cannot write {self.path}: {exc}") from None

    def _write_arrow(self, table: Table) -> None:
        try:
            import pyarrow.csv as pcsv
            import pyarrow.parquet as pq
        except ImportError:
            raise OutputError(f"Writing {self.format} needs the pyarrow package in the engine's environment "
                              "(pip install pyarrow); or write a GeoPackage (.gpkg).") from None
        parquet = self.format == "parquet"
        # without the Arrow schema, pyarrow drops the schema's metadata too (GeoParquet's "geo"): a layer with
        # geometries has its dictionaries decoded
        arrow, _ = _arrow_table(table, "wkb" if parquet else "wkt", dictionaries=parquet and not self._spatial)
        if self._writer is None:
            schema = arrow.schema
            if parquet:
                if self._spatial:
                    schema = schema.with_metadata({b"geo": json.dumps(_geo_metadata(table)).encode()})
                self._writer = pq.ParquetWriter(self.partial, schema, store_schema=not _plain_schema(schema))
            else:
                self._writer = pcsv.CSVWriter(self.partial, schema,
                                              write_options=pcsv.WriteOptions(quoting_style="needed"))
            self._schema = schema
        # a later chunk whose column is all null (Arrow type null) takes the first chunk's types
        self._writer.write_table(arrow.cast(self._schema))

    # -- files -----------------------------------------------------------------------------------------

    def _remove_partial(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.remove(self.partial + suffix)
            except FileNotFoundError:
                pass
        if self.format == "ESRI Shapefile":
            stem = os.path.splitext(self.partial)[0]
            for ext in (".shx", ".dbf", ".prj", ".cpg"):
                try:
                    os.remove(stem + ext)
                except FileNotFoundError:
                    pass

    def _replace_output(self) -> None:
        if self.format == "ESRI Shapefile":
            src, dst = os.path.splitext(self.partial)[0], os.path.splitext(self.path)[0]
            for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                if os.path.exists(src + ext):
                    os.replace(src + ext, dst + ext)
            return
        os.replace(self.partial, self.path)


def write_table(table: Table, path: str, layer: Optional[str] = None) -> str:
    """Write ``table`` to ``path`` (format from the extension); return the path."""
    with TableWriter(path, layer) as writer:
        writer.write(table)
    return writer.path


def write_chunks(chunks: Iterable[Table], path: str, layer: Optional[str] = None) -> int:
    """Write the tables ``chunks`` (the same columns each, at least one) one after another to ``path``;
    return the rows written. A thread writes each chunk while the next one is made (the writers release
    the GIL)."""
    from concurrent.futures import ThreadPoolExecutor
    with TableWriter(path, layer) as writer:
        with ThreadPoolExecutor(1, thread_name_prefix="tilewise-table") as pool:
            pending = None
            try:
                for table in chunks:
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(writer.write, table)
            finally:
                if pending is not None:
                    pending.result()
    return writer.rows


def tiled_strings(values: Sequence[str], reps: int):
    """``np.tile(values, reps)`` as an Arrow string column, its buffers made by numpy from the few ``values``:
    a long table's ``source`` column as numpy's Python strings costs Arrow a conversion per row (0.6 s at 5
    million rows; Arrow's own take, 0.2-0.4 s in a fresh process; this, 0.015 s). The column is the plain
    string column the writers would have made of the numpy array, so the files are the same byte for byte.
    It is chunked, one chunk referenced again and a slice of it last, so that no chunk holds 1 GiB of text
    (Arrow's string offsets are 32-bit).

    >>> tiled_strings(["a", "bc"], 2).to_pylist()
    ['a', 'bc', 'a', 'bc']
    """
    import pyarrow as pa
    encoded = [str(v).encode() for v in values]
    n, per_rep = len(encoded), sum(len(e) for e in encoded)
    if n == 0 or reps <= 0:
        return pa.chunked_array([], pa.string())
    k = max(1, min(reps, (1 << 30) // max(per_rep, 1), (1 << 22) // n))      # repeats a chunk
    starts = np.cumsum([0] + [len(e) for e in encoded[:-1]], dtype=np.int64)
    offsets = np.empty(n * k + 1, np.int32)
    offsets[:-1].reshape(k, n)[:] = starts + (np.arange(k, dtype=np.int64) * per_rep)[:, None]
    offsets[-1] = per_rep * k
    text = np.tile(np.frombuffer(b"".join(encoded), np.uint8), k)
    chunk = pa.StringArray.from_buffers(n * k, pa.py_buffer(offsets), pa.py_buffer(text))
    chunks = [chunk] * (reps // k)
    if reps % k:
        chunks.append(chunk.slice(0, n * (reps % k)))
    return pa.chunked_array(chunks, pa.string())


def _arrow_table(table: Table, geometry: str, dictionaries: bool = False):
    """``(pyarrow table, geometry column name or None)``; geometry as ``"wkb"`` (binary) or ``"wkt"`` (text).
    Arrow dictionary columns are kept with ``dictionaries`` (Parquet: see :func:`_plain_schema`), else decoded:
    OGR would make them integer fields with a coded domain, the CSV writer codes."""
    import pyarrow as pa
    arrays = [_arrow_column(v) for v in table.columns.values()]
    if not dictionaries:
        arrays = [_decoded(a) for a in arrays]
    names = list(table.columns)
    name = None
    if table.geometry is not None:
        name = _unique_name("geometry", names)
        if geometry == "wkb":
            arrays.append(pa.array(shapely.to_wkb(table.geometry), type=pa.binary()))
        else:
            arrays.append(pa.array(shapely.to_wkt(table.geometry, rounding_precision=-1), type=pa.string()))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names), name


def _arrow_column(values: np.ndarray):
    """One column as an Arrow array: NaN, NaT, None and masked entries become nulls."""
    import pyarrow as pa
    if isinstance(values, (pa.Array, pa.ChunkedArray)):     # built as Arrow by its operation (swath's long table)
        return values
    data = np.ma.getdata(values)
    mask = np.ma.getmaskarray(values) if isinstance(values, np.ma.MaskedArray) else None
    if data.dtype.kind == "f":
        nan = np.isnan(data)
        mask = nan if mask is None else mask | nan
    if data.dtype.kind == "M":
        nat = np.isnat(data)
        mask = nat if mask is None else mask | nat
        if mask.all():                             # rasters without dates: no values to convert
            return pa.nulls(len(data), pa.date32())
        return pa.array(data.astype("datetime64[D]"), type=pa.date32(), mask=mask)
    if data.dtype == object:                       # None is null already
        arr = pa.array(data, mask=mask, from_pandas=True)
        return arr.cast(pa.string()) if pa.types.is_null(arr.type) else arr
    return pa.array(data, mask=mask if mask is not None and mask.any() else None)


def _decoded(array):
    """``array`` with an Arrow dictionary type decoded to its values' type; any other as it is."""
    import pyarrow as pa
    if pa.types.is_dictionary(array.type):
        return array.cast(array.type.value_type)
    return array


def _plain_schema(schema) -> bool:
    """True when ``schema`` has dictionary columns: the Parquet file then does not store the Arrow schema, so
    its readers (pyarrow, GDAL's Parquet driver, hence QGIS) see plain string columns, not Arrow
    dictionaries (which OGR shows as integer codes). The column chunks are dictionary-encoded either way."""
    import pyarrow as pa
    return any(pa.types.is_dictionary(f.type) for f in schema)


def _unique_name(name: str, taken: Sequence[str]) -> str:
    out, i = name, 2
    while out in taken:
        out = f"{name}_{i}"
        i += 1
    return out


_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
_MULTI = {"Polygon": ("MultiPolygon", shapely.multipolygons),
          "LineString": ("MultiLineString", shapely.multilinestrings),
          "Point": ("MultiPoint", shapely.multipoints)}


def _uniform_geometries(geoms: np.ndarray):
    """Geometries and the layer's geometry type; single parts promoted to multi where the two are mixed."""
    ids = shapely.get_type_id(geoms)
    present = sorted({_TYPE_NAMES[int(i)] for i in ids if i >= 0})
    if len(present) == 1:
        return geoms, present[0]
    for single, (multi, build) in _MULTI.items():
        if set(present) == {single, multi}:
            out = np.asarray(geoms, dtype=object).copy()
            which = np.flatnonzero(ids == {"Polygon": 3, "LineString": 1, "Point": 0}[single])
            out[which] = build(out[which], indices=np.arange(len(which)))
            return out, multi
    return geoms, "Unknown"


def _geo_metadata(table: Table) -> dict:
    """GeoParquet 1.1 file metadata for the WKB ``geometry`` column."""
    column: Dict[str, Any] = {"encoding": "WKB", "geometry_types": []}
    if table.crs:
        from rasterio.crs import CRS
        try:
            column["crs"] = CRS.from_user_input(table.crs).to_dict(projjson=True)
        except Exception:                               # noqa: BLE001 - unknown CRS: say so rather than guess
            log.debug("The CRS %r has no PROJJSON for GeoParquet", table.crs, exc_info=True)
            column["crs"] = None
    else:
        column["crs"] = None
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def to_date64(dates: Sequence[Any]) -> np.ndarray:
    """Dates (``datetime.date``, ``datetime``, ISO strings or None) as ``datetime64[D]`` with NaT for None.

    >>> to_date64([_dt.date(2020, 1, 5), "2020-02-01", None]).astype(str).tolist()
    ['2020-01-05', '2020-02-01', 'NaT']
    """
    out = []
    for d in dates:
        if d is None or (isinstance(d, float) and math.isnan(d)):
            out.append(np.datetime64("NaT", "D"))
        elif isinstance(d, _dt.datetime):
            out.append(np.datetime64(d.date(), "D"))
        else:
            out.append(np.datetime64(d, "D"))
    return np.array(out, dtype="datetime64[D]")

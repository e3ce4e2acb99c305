"""netCDF files of small cubes (image chips), written with numpy alone: the classic format, CF conventions.

:func:`write_netcdf` writes one file in netCDF's classic 64-bit offset format (CDF-2, the format
every netCDF reader opens: xarray, GDAL and QGIS, netCDF4-python, ncdump). It is a header of
dimensions, attributes and variables, then each variable's values, big-endian, one after the
other (the format's specification: https://docs.unidata.ucar.edu/netcdf-c/current/file_format_specifications.html).
The file is written under a temporary name beside its path and renamed when complete
(:func:`~tilewise.core.io.atomic.atomic_write`), so a reader never sees half a file under its name.

:func:`cf_grid_mapping` gives a CRS's CF grid-mapping attributes (``grid_mapping_name`` and its
parameters, ``crs_wkt``, ``spatial_ref``) and the attributes of its x/y coordinates, as GDAL's
netCDF driver writes them (it is the one that knows every projection's CF names).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import OutputError
from .atomic import atomic_write, remove_if_there

_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
#: numpy type -> netCDF classic type code (big-endian storage)
_TYPES = {np.dtype("int8"): 1, np.dtype("S1"): 2, np.dtype("int16"): 3, np.dtype("int32"): 4,
          np.dtype("float32"): 5, np.dtype("float64"): 6}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@+-]*$")


@dataclass(frozen=True)
class Variable:
    """One variable: its name, its dimensions (names), its values and its attributes."""

    name: str
    dims: Tuple[str, ...]
    values: np.ndarray
    attrs: Mapping[str, Any]


def nc_name(text: str, taken: Sequence[str] = ()) -> str:
    """A valid netCDF name from ``text`` (letters, digits, ``_.@+-``; a letter or ``_`` first), not in ``taken``.

    >>> nc_name("B04"), nc_name("2020 mean"), nc_name("x", ["x", "x_2"])
    ('B04', '_2020_mean', 'x_3')
    """
    name = re.sub(r"[^A-Za-z0-9_.@+-]", "_", str(text)) or "_"
    if not _NAME.match(name):
        name = "_" + name
    base, i = name, 2
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    return name


def write_netcdf(path: str, dims: Mapping[str, int], variables: Sequence[Variable],
                 attrs: Mapping[str, Any]) -> str:
    """Write a netCDF classic (CDF-2) file at ``path``, atomically; return ``path``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.nc")
    >>> v = Variable("v", ("y", "x"), np.arange(6, dtype="float32").reshape(2, 3), {"units": "1"})
    >>> write_netcdf(p, {"y": 2, "x": 3}, [v], {"Conventions": "CF-1.8"}) == p
    True
    """
    return write_netcdf_records(path, dims, variables, attrs)


@dataclass(frozen=True)
class RecordVariable:
    """A variable along the record (first, unlimited) dimension: its dimensions after that one, its type."""

    name: str
    dims: Tuple[str, ...]
    dtype: str
    attrs: Mapping[str, Any]


def write_netcdf_records(path: str, dims: Mapping[str, int], variables: Sequence[Variable],
                         attrs: Mapping[str, Any], record_dim: Optional[str] = None,
                         record_variables: Sequence[RecordVariable] = (),
                         records: Iterable[Mapping[str, np.ndarray]] = (), n_records: int = 0) -> str:
    """Write a netCDF classic (CDF-2) file at ``path``, atomically: ``variables`` whole, then ``n_records``
    records of ``record_variables`` along ``record_dim``, taken one at a time from ``records`` (each a
    mapping of name to the record's values): a file larger than memory is written record by record."""
    all_dims = dict(dims)
    if record_dim:
        all_dims = {record_dim: 0, **all_dims}        # length 0 marks the record (unlimited) dimension
    for v in variables:
        if tuple(dims[d] for d in v.dims) != v.values.shape:
            raise ValueError(f"variable {v.name}: shape {v.values.shape} is not that of its dimensions {v.dims}")
    fixed = [(v.name, v.dims, v.values.dtype, v.attrs, _padded(v.values.nbytes)) for v in variables]
    shapes = [tuple(dims[d] for d in r.dims) for r in record_variables]
    sizes = [_padded(int(np.prod(shape, dtype=np.int64)) * np.dtype(r.dtype).itemsize)
             for r, shape in zip(record_variables, shapes)]
    recs = [(r.name, (record_dim,) + tuple(r.dims), np.dtype(r.dtype), r.attrs, size)
            for r, size in zip(record_variables, sizes)]
    entries = fixed + recs
    header_size = len(_header(all_dims, entries, attrs, [0] * len(entries), n_records))
    begins, offset = [], header_size
    for entry in fixed:
        begins.append(offset)
        offset += entry[4]
    for size in sizes:
        begins.append(offset)
        offset += size
    header = _header(all_dims, entries, attrs, begins, n_records)
    try:
        with atomic_write(path, "wb") as f:
            f.write(header)
            for v in variables:
                f.write(_data(v.values, v.values.dtype))
            written = 0
            for record in records:
                for r, shape in zip(record_variables, shapes):
                    values = np.asarray(record[r.name])
                    if values.shape != shape:
                        raise ValueError(f"record {written} of {r.name}: shape {values.shape}, not {shape}")
                    f.write(_data(values, np.dtype(r.dtype)))
                written += 1
            if written != n_records:
                raise ValueError(f"{written} records given for the {n_records} announced")
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror or exc}") from None
    return path


def _data(values: np.ndarray, dtype: np.dtype) -> bytes:
    data = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder(">")).tobytes()
    return data + b"\0" * (_padded(len(data)) - len(data))


def _header(dims: Mapping[str, int], entries: Sequence[Tuple[str, Tuple[str, ...], np.dtype, Mapping[str, Any], int]],
            attrs: Mapping[str, Any], begins: Sequence[int], n_records: int = 0) -> bytes:
    names = list(dims)
    out: List[bytes] = [b"CDF\x02", struct.pack(">i", int(n_records))]
    out.append(struct.pack(">ii", _NC_DIMENSION, len(names)) if names else b"\0" * 8)
    for d in names:
        out.append(_name(d) + struct.pack(">i", int(dims[d])))
    out.append(_attributes(attrs))
    out.append(struct.pack(">ii", _NC_VARIABLE, len(entries)) if entries else b"\0" * 8)
    for (name, var_dims, dtype, var_attrs, size), begin in zip(entries, begins):
        out.append(_name(name) + struct.pack(">i", len(var_dims)))
        out.append(b"".join(struct.pack(">i", names.index(d)) for d in var_dims))
        out.append(_attributes(var_attrs))
        out.append(struct.pack(">iIq", _type_code(dtype, name), min(size, 2**32 - 1), begin))
    return b"".join(out)


def _attributes(attrs: Mapping[str, Any]) -> bytes:
    items = [(k, _attribute_values(v)) for k, v in attrs.items() if v is not None]
    if not items:
        return b"\0" * 8
    out = [struct.pack(">ii", _NC_ATTRIBUTE, len(items))]
    for key, values in items:
        data = values.tobytes()
        out.append(_name(key) + struct.pack(">ii", _type_code(values.dtype, key), len(values)))
        out.append(data + b"\0" * (_padded(len(data)) - len(data)))
    return b"".join(out)


def _attribute_values(value: Any) -> np.ndarray:
    """An attribute's values, big-endian: text as characters (UTF-8), whole numbers as int32 where they
    fit (else double), other numbers as double; numpy values keep their type."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return np.frombuffer(value.encode("utf-8", "replace") or b" ", dtype="S1")
    arr = np.atleast_1d(np.asarray(value))
    if arr.dtype == bool:
        arr = arr.astype(np.int8)
    if arr.dtype.kind in "iu":
        fits = arr.size and np.all((arr >= -2**31) & (arr < 2**31))
        arr = arr.astype(np.int32 if fits else np.float64)
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64)
    else:
        return _attribute_values(str(value))
    return arr.astype(arr.dtype.newbyteorder(">"))


def _type_code(dtype: np.dtype, what: str) -> int:
    code = _TYPES.get(np.dtype(dtype).newbyteorder("="))
    if code is None:
        raise ValueError(f"{what}: netCDF classic files cannot hold {dtype} values")
    return code


def _name(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">i", len(data)) + data + b"\0" * (_padded(len(data)) - len(data))


def _padded(n: int) -> int:
    return (n + 3) // 4 * 4


# -- CF coordinates and grid mapping ------------------------------------------------------------------------

@lru_cache(maxsize=16)
def cf_grid_mapping(crs_wkt: str) -> Tuple[Tuple[Tuple[str, Any], ...], Tuple[Tuple[str, Any], ...],
                                            Tuple[Tuple[str, Any], ...]]:
    """``(grid mapping, x, y)`` attributes of ``crs_wkt``, as GDAL's netCDF driver writes them: each a
    tuple of ``(name, value)`` (numbers as numbers; no ``GeoTransform``, which is the chip's own)."""
    import tempfile

    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.io import MemoryFile

    if not crs_wkt:
        return (), (("long_name", "x coordinate"),), (("long_name", "y coordinate"),)
    folder = tempfile.mkdtemp(prefix="tilewise-cf-")
    path = os.path.join(folder, "crs.nc")
    try:
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=2, height=2, count=1, dtype="uint8", crs=crs_wkt,
                          transform=Affine(1.0, 0.0, 0.0, 0.0, -1.0, 1.0)) as dst:
                dst.write(np.zeros((1, 2, 2), np.uint8))
            with mem.open() as src:
                rasterio.shutil.copy(src, path, driver="netCDF")
        with rasterio.open(path) as src:
            tags = src.tags()
    finally:
        remove_if_there(path)
        os.rmdir(folder)
    prefix = next((k.split("#")[0] for k in tags if k.endswith("#grid_mapping_name")), None)
    mapping = [(k.split("#", 1)[1], _number(v)) for k, v in tags.items()
               if prefix and k.startswith(prefix + "#") and not k.endswith("#GeoTransform")]
    if not mapping:
        mapping = [("crs_wkt", crs_wkt), ("spatial_ref", crs_wkt)]
    geographic = any(k.startswith("lon#") for k in tags)
    x, y = ("lon", "lat") if geographic else ("x", "y")
    x_attrs = tuple((k.split("#", 1)[1], v) for k, v in tags.items() if k.startswith(x + "#"))
    y_attrs = tuple((k.split("#", 1)[1], v) for k, v in tags.items() if k.startswith(y + "#"))
    return tuple(sorted(mapping)), x_attrs, y_attrs


def _number(text: str) -> Any:
    """GDAL's text of a netCDF attribute back to a number where it is one (``{1,2}`` lists too)."""
    t = text.strip()
    items = t[1:-1].split(",") if t.startswith("{") and t.endswith("}") else [t]
    try:
        values = [float(i) for i in items]
    except ValueError:
        return text
    return values[0] if len(values) == 1 else values


def geotransform_text(transform: Sequence[float]) -> str:
    """GDAL's ``GeoTransform`` attribute (``c a b f d e``) of an affine ``(a, b, c, d, e, f)``.

    >>> geotransform_text((10.0, 0.0, 500000.0, 0.0, -10.0, 4e6))
    '500000 10 0 4000000 0 -10'
    """
    a, b, c, d, e, f = transform[:6]
    return " ".join(f"{v:.17g}" for v in (c, a, b, f, d, e))


def cf_attribute_value(value: Any) -> Optional[Any]:
    """A feature attribute as a netCDF attribute value: text, a number, or None (left out)."""
    if value is None:
        return None
    if isinstance(value, (np.datetime64,)):
        return None if np.isnat(value) else str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


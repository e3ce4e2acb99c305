"""Swath inputs: scenes on 2-D latitude/longitude grids (Sentinel-3 OLCI/SLSTR, MODIS, VIIRS swaths).

A swath scene is read through GDAL's netCDF driver (rasterio's wheels carry it, and its HDF5
driver): no other reader is needed. What makes a scene:

* a SAFE folder (``*.SEN3`` with ``xfdumanifest.xml``) or its manifest: every netCDF of the
  folder, the geolocation in ``geo_coordinates.nc`` (``latitude``, ``longitude``);
* a netCDF (or HDF5) file, or one variable of it (``NETCDF:"file.nc":CHL_NN``): its 2-D
  variables, the geolocation found through the CF ``coordinates`` attribute (which in real
  products names variables of sibling files: ``geo_coordinates.nc``), GDAL's ``GEOLOCATION``
  metadata, or a ``geo_coordinates.nc`` beside the file.

Rows and columns are the netCDF file's own indexes (row 0 is the file's first row): every read
runs with ``GDAL_NETCDF_BOTTOMUP=NO``, which GDAL otherwise applies to variables without
coordinate variables. Values are unpacked with ``scale_factor`` and ``add_offset``; ``_FillValue``
(and NaN) are no data. Flag variables (``flag_masks``/``flag_values`` with ``flag_meanings``) are
read as the integers they are (WQSF is uint64, with masks above 2**32).

>>> scene = open_swath("S3A_OL_2_WFR____20240514T134512_..._003.SEN3")          # doctest: +SKIP
>>> scene.date, scene.shape, [v.name for v in scene.variables][:2]            # doctest: +SKIP
(datetime.date(2024, 5, 14), (4091, 4865), ['Oa01_reflectance', 'Oa02_reflectance'])
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError

MANIFEST = "xfdumanifest.xml"
#: The geolocation file of Sentinel-3 products, looked for beside a variable without a usable ``coordinates``.
GEO_FILES = ("geo_coordinates.nc",)
LAT_NAMES = ("latitude", "lat", "Latitude", "LATITUDE", "nav_lat")
LON_NAMES = ("longitude", "lon", "Longitude", "LONGITUDE", "nav_lon")
#: Files of a SAFE folder that hold no measured variable on the image grid.
_NOT_MEASURED = ("geo_coordinates", "tie_", "time_coordinates", "instrument_data", "qualityflags")
_EXTENSIONS = (".nc", ".nc4", ".h5", ".hdf5", ".he5", ".hdf")
_S3_NAME = re.compile(r"(S3[ABCD]_[A-Z]{2}_\d_[A-Z0-9_]{6}_{1,4})(\d{8}T\d{6})")
_GDAL_PATH = re.compile(r'^(NETCDF|HDF5):"?(.+?)"?:([^:"]+)$', re.IGNORECASE)
_ENV = dict(GDAL_NETCDF_BOTTOMUP="NO")


@dataclass(frozen=True)
class SwathVariable:
    """One variable of a scene: where it is, how its values are packed, its flags if it is a flag variable."""

    name: str
    path: str
    dtype: str
    scale: float = 1.0
    offset: float = 0.0
    fill: Optional[Union[int, float]] = None
    flag_masks: Tuple[int, ...] = ()
    flag_values: Tuple[int, ...] = ()
    flag_meanings: Tuple[str, ...] = ()
    driver: str = "NETCDF"
    shape: Tuple[int, int] = (0, 0)
    #: the variable's path in an HDF5 file (``//group/name``; its name is the last part), else empty
    key: str = ""

    @property
    def gdal_path(self) -> str:
        return f'{self.driver}:"{self.path}":{self.key or self.name}'

    @property
    def is_flags(self) -> bool:
        return bool(self.flag_meanings) and bool(self.flag_masks or self.flag_values)


@dataclass(frozen=True)
class SwathScene:
    """A swath scene: its geolocation (``lat``, ``lon``), the variables on the same grid, its date."""

    source: str
    name: str
    shape: Tuple[int, int]
    lat: SwathVariable
    lon: SwathVariable
    variables: Tuple[SwathVariable, ...]
    date: Optional[_dt.date] = None
    start_time: Optional[str] = None
    #: False for a scene described from another SAFE folder of the same files (its headers unread yet)
    opened: bool = True

    @property
    def files(self) -> Tuple[str, ...]:
        """The files the scene reads (for a resumed run's fingerprint)."""
        return tuple(dict.fromkeys([self.lat.path, self.lon.path] + [v.path for v in self.variables]))

    def variable(self, name: str) -> SwathVariable:
        """The variable ``name`` (case does not matter: ``chl_nn`` is ``CHL_NN``)."""
        for v in self.variables:
            if v.name == name:
                return v
        for v in self.variables:
            if v.name.lower() == name.lower():
                return v
        raise InputError(f"The swath scene {self.source} has no variable {name!r}; its variables are: "
                         f"{', '.join(v.name for v in self.variables) or '(none)'}.")

    def flag_variables(self) -> List[SwathVariable]:
        return [v for v in self.variables if v.is_flags]

    def measured(self) -> List[SwathVariable]:
        """The variables extracted by default: all but flags, uncertainties (``*_err``) and detector indexes."""
        return [v for v in self.variables if not v.is_flags and not v.name.lower().endswith("_err")
                and v.name.lower() != "detector_index"]


# -- what is a swath input --------------------------------------------------------------------------------

def safe_folder(path: str) -> Optional[str]:
    """The SAFE folder of ``path`` (the folder, or its ``xfdumanifest.xml``), else None."""
    p = path.rstrip("/\\")
    if os.path.basename(p).lower() == MANIFEST and os.path.isfile(p):
        return os.path.dirname(os.path.abspath(p))
    if os.path.isdir(p) and os.path.isfile(os.path.join(p, MANIFEST)):
        return os.path.abspath(p)
    return None


def looks_like_swath(path: str) -> bool:
    """True for inputs that are read as swaths: a SAFE folder or manifest, any folder (it is then
    refused with a message saying it is not a SAFE product), and netCDF/HDF5 files or variables that
    carry no geotransform. Cheap: only netCDF/HDF5 files are opened."""
    p = str(path)
    if safe_folder(p) is not None or os.path.basename(p.rstrip("/\\")).lower() == MANIFEST:
        return True
    if os.path.isdir(p):
        return True
    m = _GDAL_PATH.match(p)
    if m is None and not p.lower().endswith(_EXTENSIONS):
        return False
    if m is None and not os.path.isfile(p):
        return False
    return not _georeferenced(p)


def _georeferenced(path: str) -> bool:
    """True if GDAL gives ``path`` (or its first variable) a CRS and a geotransform: a regular grid."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    try:
        with rasterio.Env(**_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if not src.count and src.subdatasets:
                    with rasterio.open(src.subdatasets[0]) as sub:
                        return sub.crs is not None and not sub.transform.is_identity
                return src.crs is not None and not src.transform.is_identity
    except RasterioIOError:
        return False


# -- opening a scene --------------------------------------------------------------------------------------

def open_swath(path: str) -> SwathScene:
    """The scene of ``path``: a SAFE folder or manifest, a netCDF/HDF5 file, or ``NETCDF:"file":variable``.

    Raises :class:`~tilewise.core.errors.InputError` naming the input for a folder that is not a SAFE
    product, a file GDAL cannot read, variables without geolocation.
    """
    p = str(path)
    folder = safe_folder(p)
    if folder is None and os.path.isdir(p):
        raise InputError(f"The folder {p} is not a SAFE product: it has no {MANIFEST}. Give the scene's .SEN3 "
                         "folder (or its xfdumanifest.xml), or its netCDF files.")
    if folder is None and os.path.basename(p.rstrip("/\\")).lower() == MANIFEST:
        raise InputError(f"Input not found: {p}")
    if folder is not None:
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(_EXTENSIONS))
        if not files:
            raise InputError(f"The SAFE product {folder} holds no netCDF files.")
        measured = [f for f in files if not os.path.basename(f).lower().startswith(_NOT_MEASURED)]
        headers: Dict = {}
        variables = [v for f in measured for v in _file_variables(f, headers=headers)]
        lat, lon = _geolocation(variables, folder, p, headers)
        name = os.path.basename(folder)
    else:
        m = _GDAL_PATH.match(p)
        file, only = (m.group(2), m.group(3)) if m else (p, None)
        if not os.path.isfile(file):
            raise InputError(f"Input file not found: {file}")
        headers = {}
        everything = variables = _file_variables(file, m.group(1).upper() if m else None, headers)
        if only is not None:   # a netCDF variable's name, or an HDF5 dataset's path (HDF5:"f.h5"://group/sst)
            variables = [v for v in variables if only in (v.name, v.key)]
            if not variables:
                raise InputError(f"{file} has no variable {only!r}.")
        lat, lon = _geolocation(variables, os.path.dirname(os.path.abspath(file)), p, headers, everything)
        parent = os.path.dirname(os.path.abspath(file))
        name = os.path.basename(parent) if safe_folder(parent) else os.path.splitext(os.path.basename(file))[0]
        folder = parent if safe_folder(parent) else None
    shape = _shape(lat)
    same = tuple(v for v in variables if _shape(v) == shape and v.name not in (lat.name, lon.name, "altitude"))
    if not same:
        raise InputError(f"{p} has no variable on its {shape[0]} x {shape[1]} latitude/longitude grid.")
    date, start = scene_date(name, folder, same[0])
    return SwathScene(p, name, shape, lat, lon, same, date, start)


def _shape(v: SwathVariable) -> Tuple[int, int]:
    return v.shape


def _file_variables(path: str, driver: Optional[str] = None, headers: Optional[Dict] = None) -> List[SwathVariable]:
    """The 2-D variables of a netCDF/HDF5 file, with their packing and flags. ``headers`` (a dict) receives,
    for each variable (``(path, name)``), what :func:`_geolocation` looks at: its ``coordinates`` names and
    its GEOLOCATION metadata, so a scene's files are opened once each."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    out: List[SwathVariable] = []

    def take(v, sub, drv):
        if v.count != 1:
            return
        tags = v.tags(1)
        key = sub.split(":")[-1] if sub else ""
        # an HDF5 dataset's name is the last part of its path (//geolocation_data/latitude: latitude)
        name = tags.get("NETCDF_VARNAME") or (key.rstrip("/").split("/")[-1] if sub else
                                              os.path.splitext(os.path.basename(path))[0])
        out.append(_variable(name, path, v.dtypes[0], v.scales[0], v.offsets[0], _fill(v, tags), tags,
                             drv, (v.height, v.width), key if drv == "HDF5" and key != name else ""))
        if headers is not None:
            headers[(path, name)] = (tags.get("coordinates", "").split(), v.tags(ns="GEOLOCATION"))

    try:
        with rasterio.Env(**_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                subs = list(src.subdatasets)
                drv = src.driver.upper() if driver is None else driver
                drv = "HDF5" if drv.startswith("HDF5") else "NETCDF"
                if not subs:                   # the file is its one variable: read from this opening
                    take(src, None, drv)
            for sub in subs:
                with rasterio.open(sub) as v:
                    take(v, sub, drv)
    except RasterioIOError as exc:
        raise InputError(f"Not a netCDF/HDF5 file GDAL can read: {path} ({exc})") from None
    return out


def _variable(name: str, path: str, dtype: str, scale, offset, nodata, tags: Dict[str, str],
              driver: str, shape: Tuple[int, int], key: str = "") -> SwathVariable:
    meanings = tuple(tags.get("flag_meanings", "").split())
    return SwathVariable(name, path, dtype, float(scale if scale is not None else 1.0),
                         float(offset if offset is not None else 0.0), nodata,
                         _integers(tags.get("flag_masks")), _integers(tags.get("flag_values")), meanings, driver, shape,
                         key)


def _fill(src, tags: Dict[str, str]):
    """The variable's fill value, exact: a whole number for integer variables (uint64 fills are above
    2**53, which GDAL's double nodata only approximates), from the ``_FillValue`` attribute."""
    text = tags.get("_FillValue")
    if text is not None:
        try:
            return int(text) if np.dtype(src.dtypes[0]).kind in "iu" else float(text)
        except ValueError:
            pass
    if np.dtype(src.dtypes[0]).itemsize == 8 and np.dtype(src.dtypes[0]).kind in "iu":
        return None
    return src.nodata


def _integers(text: Optional[str]) -> Tuple[int, ...]:
    """``"{1,2,8589934592}"`` -> (1, 2, 8589934592): exact, also above 2**53 (GDAL writes them whole)."""
    if not text:
        return ()
    out = []
    for t in re.split(r"[{},\s]+", text):
        if t:
            try:
                out.append(int(t))
            except ValueError:
                out.append(int(float(t)))
    return tuple(out)


def _geolocation(variables: Sequence[SwathVariable], folder: str, source: str, headers: Optional[Dict] = None,
                 others: Sequence[SwathVariable] = ()) -> Tuple[SwathVariable, SwathVariable]:
    """Latitude and longitude of ``variables``: the ``coordinates`` attribute (in the file, then in the
    sibling files), GDAL's GEOLOCATION metadata, then ``geo_coordinates.nc`` in ``folder``; ``headers`` are
    the variables' attributes as :func:`_file_variables` read them (else each variable is opened again);
    ``others``: the other variables of their file (one variable was asked for: its latitude may be beside it)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    candidates: List[SwathVariable] = list(dict.fromkeys([*variables, *others]))
    siblings = [os.path.join(folder, f) for f in GEO_FILES if os.path.isfile(os.path.join(folder, f))]
    for f in siblings:
        if f not in {v.path for v in variables}:
            candidates.extend(_file_variables(f))
    named = []
    with rasterio.Env(**_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for v in variables:
            known = (headers or {}).get((v.path, v.name))
            if known is None:
                with rasterio.open(v.gdal_path) as src:
                    known = (src.tags(1).get("coordinates", "").split(), src.tags(ns="GEOLOCATION"))
            named.extend(known[0])
            geo = known[1]
            if geo.get("X_DATASET") and geo.get("Y_DATASET"):
                return _from_geolocation_metadata(geo, v, source)
    order = [n for n in named if n in LAT_NAMES + LON_NAMES] + list(LAT_NAMES + LON_NAMES)
    lat = next((c for n in order if n in LAT_NAMES for c in candidates if c.name == n), None)
    lon = next((c for n in order if n in LON_NAMES for c in candidates if c.name == n), None)
    if lat is None or lon is None:
        shown = ", ".join(dict.fromkeys(v.name for v in variables)) or "(none)"
        raise InputError(f"{source} has no geolocation: its variables ({shown}) name no 2-D latitude/longitude "
                         "in a 'coordinates' attribute, GDAL gives them no GEOLOCATION metadata, and there is no "
                         f"{GEO_FILES[0]} beside it. Give the whole SAFE folder, or a raster with a CRS.")
    if _shape(lat) != _shape(lon):
        raise InputError(f"The latitude and longitude of {source} differ in size ({_shape(lat)} and {_shape(lon)}).")
    return lat, lon


def _from_geolocation_metadata(geo: Dict[str, str], v: SwathVariable, source: str
                               ) -> Tuple[SwathVariable, SwathVariable]:
    if any(float(geo.get(k, d)) != d for k, d in (("LINE_OFFSET", 0), ("PIXEL_OFFSET", 0),
                                                   ("LINE_STEP", 1), ("PIXEL_STEP", 1))):
        raise InputError(f"The geolocation of {source} is subsampled (GEOLOCATION LINE_STEP/PIXEL_STEP); only "
                         "geolocation arrays of the variable's own size are read.")
    out = []
    for key in ("Y_DATASET", "X_DATASET"):
        m = _GDAL_PATH.match(geo[key])
        if m is None:
            raise InputError(f"Cannot read the geolocation dataset {geo[key]} of {source}.")
        found = [c for c in _file_variables(m.group(2)) if c.name == m.group(3)]
        if not found:
            raise InputError(f"The geolocation variable {m.group(3)} of {source} is not in {m.group(2)}.")
        out.append(found[0])
    return out[0], out[1]


# -- dates ------------------------------------------------------------------------------------------------

def scene_date(name: str, folder: Optional[str], first: SwathVariable) -> Tuple[Optional[_dt.date], Optional[str]]:
    """The scene's date and start time: from the product name (``S3A_OL_2_WFR____20240514T134512_...``),
    else the manifest's ``startTime``, else the netCDF's ``start_time``/``time_coverage_start``, else
    a date in the name.

    >>> scene_date("S3B_OL_2_WFR____20240514T134512_20240514T134812_X.SEN3", None, None)
    (datetime.date(2024, 5, 14), '2024-05-14T13:45:12')
    """
    m = _S3_NAME.search(name)
    if m:
        t = _dt.datetime.strptime(m.group(2), "%Y%m%dT%H%M%S")
        return t.date(), t.isoformat()
    text = _manifest_start(folder) if folder else None
    if text is None and first is not None:
        text = _global_start(first)
    if text:
        m2 = re.match(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):?(\d{2}):?(\d{2}))?", text.strip())
        if m2:
            d = _dt.date(int(m2.group(1)), int(m2.group(2)), int(m2.group(3)))
            clock = f"T{m2.group(4)}:{m2.group(5)}:{m2.group(6)}" if m2.group(4) else ""
            return d, d.isoformat() + clock
    from ..dates import date_from_name
    d = date_from_name(name)
    return d, d.isoformat() if d else None


def _manifest_start(folder: str) -> Optional[str]:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"<[\w-]*:?startTime>\s*([^<]+)<", text)
    return m.group(1) if m else None


def _global_start(v: SwathVariable) -> Optional[str]:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    with rasterio.Env(**_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(v.gdal_path) as src:
            tags = src.tags()
    for key in ("NC_GLOBAL#start_time", "NC_GLOBAL#time_coverage_start", "start_time", "time_coverage_start"):
        if tags.get(key):
            return tags[key]
    return None


# -- reading ----------------------------------------------------------------------------------------------

def read_geolocation(scene: SwathScene) -> Tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of every pixel (float64 degrees, NaN where filled or out of range;
    longitudes wrapped to -180..180)."""
    from ..kernels.swath import unpack_geolocation
    lat, lon = scene.lat, scene.lon
    return unpack_geolocation(read_raw(lat), read_raw(lon), (lat.fill, lat.scale, lat.offset),
                              (lon.fill, lon.scale, lon.offset))


def read_variable(v: SwathVariable, window=None) -> np.ndarray:
    """A variable (or a window of it) unpacked to float64, NaN where it holds its fill value."""
    raw = read_raw(v, window)
    return unpack(raw, v)


def unpack(raw: np.ndarray, v: SwathVariable) -> np.ndarray:
    """``raw * scale_factor + add_offset`` as float64, NaN at ``_FillValue`` (and NaN)."""
    out = raw.astype(np.float64)
    if v.fill is not None and np.isfinite(v.fill):
        if raw.dtype.kind in "iu":
            info = np.iinfo(raw.dtype)
            if info.min <= int(v.fill) <= info.max:
                out[raw == raw.dtype.type(int(v.fill))] = np.nan
        else:
            out[raw == raw.dtype.type(v.fill)] = np.nan
    if v.scale != 1.0:
        out *= v.scale
    if v.offset != 0.0:
        out += v.offset
    return out


def read_raw(v: SwathVariable, window=None) -> np.ndarray:
    """The variable's stored values (a :class:`rasterio.windows.Window` of them), in the file's type."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    try:
        with rasterio.Env(**_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(v.gdal_path) as src:
                return src.read(1, window=window)
    except RasterioIOError as exc:
        raise InputError(f"Cannot read {v.name} of {v.path}: {exc}") from None


def read_pixels(v: SwathVariable, rows: np.ndarray, cols: np.ndarray, raw: bool = False) -> np.ndarray:
    """The values of the pixels ``(rows[i], cols[i])``, reading only the blocks of the file that hold
    them (each once). Unpacked float64 (NaN for fill values), or the stored integers with ``raw``."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.windows import Window
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    dtype = np.dtype(v.dtype)
    out = np.zeros(len(rows), dtype)
    if len(rows) == 0:
        return out if raw else unpack(out, v)
    try:
        with rasterio.Env(**_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(v.gdal_path) as src:
                bh, bw = src.block_shapes[0]
                bh, bw = _read_block(bh, bw, src.height, src.width)
                key = (rows // bh) * (src.width // bw + 1) + cols // bw
                order = np.argsort(key, kind="stable")
                bounds = np.flatnonzero(np.diff(key[order])) + 1
                for chunk in np.split(order, bounds):
                    r0 = int(rows[chunk[0]] // bh) * bh
                    c0 = int(cols[chunk[0]] // bw) * bw
                    h, w = min(bh, src.height - r0), min(bw, src.width - c0)
                    block = src.read(1, window=Window(c0, r0, w, h))
                    out[chunk] = block[rows[chunk] - r0, cols[chunk] - c0]
    except RasterioIOError as exc:
        raise InputError(f"Cannot read {v.name} of {v.path}: {exc}") from None
    return out if raw else unpack(out, v)


def _read_block(bh: int, bw: int, height: int, width: int) -> Tuple[int, int]:
    """The read unit: the file's chunk, widened from a one-row chunk (an unchunked variable) to
    256-row strips, so a scattered read is not one call per pixel row."""
    if bh == 1 and bw >= width:
        return min(256, height), width
    return max(bh, 1), max(bw, 1)


# -- angles -----------------------------------------------------------------------------------------------

#: The sun and view angles of the tie-point grid (Sentinel-3 ``tie_geometries.nc``), in the table's order.
ANGLES = ("SZA", "OZA", "SAA", "OAA")
TIE_FILE = "tie_geometries.nc"


def read_angles(scene: SwathScene, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(pixels, 4)`` SZA, OZA, SAA, OAA in degrees at the pixels ``(rows, cols)``, bilinear from the
    scene's tie-point grid (``ac_subsampling_factor`` columns and ``al_subsampling_factor`` rows apart);
    azimuths through their sine and cosine, so 359 and 1 give 0, not 180."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    path = os.path.join(os.path.dirname(scene.lat.path), TIE_FILE)
    if not os.path.isfile(path):
        raise InputError(f"{scene.source} has no {TIE_FILE} beside its geolocation: the angles cannot be "
                         "interpolated (leave ANGLES off).")
    found = {v.name.upper(): v for v in _file_variables(path)}
    with rasterio.Env(**_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(next(iter(found.values())).gdal_path) as src:
            tags = src.tags()
    try:
        ac = float(tags.get("NC_GLOBAL#ac_subsampling_factor", 64))
        al = float(tags.get("NC_GLOBAL#al_subsampling_factor", 1))
    except ValueError:
        raise InputError(f"{path} has no readable ac/al_subsampling_factor.") from None
    out = np.full((len(rows), len(ANGLES)), np.nan)
    if len(rows) == 0:
        return out
    for k, name in enumerate(ANGLES):
        if name not in found:
            continue
        grid = read_variable(found[name])
        tr = np.clip(np.asarray(rows, np.float64) / al, 0, grid.shape[0] - 1)
        tc = np.clip(np.asarray(cols, np.float64) / ac, 0, grid.shape[1] - 1)
        if name.endswith("AA"):
            s = _bilinear(np.sin(np.radians(grid)), tr, tc)
            c = _bilinear(np.cos(np.radians(grid)), tr, tc)
            out[:, k] = np.degrees(np.arctan2(s, c)) % 360.0
        else:
            out[:, k] = _bilinear(grid, tr, tc)
    return out


def _bilinear(grid: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    r0 = np.clip(np.floor(r).astype(np.int64), 0, max(grid.shape[0] - 2, 0))
    c0 = np.clip(np.floor(c).astype(np.int64), 0, max(grid.shape[1] - 2, 0))
    r1 = np.minimum(r0 + 1, grid.shape[0] - 1)
    c1 = np.minimum(c0 + 1, grid.shape[1] - 1)
    fr, fc = r - r0, c - c0
    return (grid[r0, c0] * (1 - fr) * (1 - fc) + grid[r0, c1] * (1 - fr) * fc + grid[r1, c0] * fr * (1 - fc)
            + grid[r1, c1] * fr * fc)

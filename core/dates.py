"""Acquisition dates of a time series: from file names, metadata, or an explicit list.

A pure part (:func:`date_from_name`, :func:`date_from_tags`, :func:`parse_date`,
:func:`resolve_dates`) works on names and tag dictionaries only; the reader
(:func:`read_date_tags`, :func:`read_dates`) opens the rasters with rasterio,
and imports it only when called.

Where a date comes from, per input (the first that gives one):

1. The file name (:func:`date_from_name`): YYYY-MM-DD, YYYY_MM_DD, YYYYMMDD,
   then YYYY-MM and YYYY_MM (the first of the month). Product names are understood:
   the *leftmost* full date is taken, which in Sentinel-1/-2 and Landsat Collection 2
   names is the acquisition (sensing) date, the later ones being processing dates.
   MODIS (``.A2024133.``, year and day of year) and pre-collection Landsat scene ids
   (``LC81930272024133LGN00``) are read too.
2. Else the metadata (:func:`date_from_tags`), in the order of :data:`DATE_TAGS`.
3. Else ``DATES``, when given: one entry per input, in input order. An entry for
   an input whose name or metadata gives another date is not used; those inputs
   are listed in :attr:`SeriesDates.overridden` (the operations log a warning
   naming the file). The TIFF ``DateTime`` tag is the exception: it is usually the
   time the file was written, not taken, so a ``DATES`` entry wins over it.
4. Else, when no input has a date at all, the series is undated: the order given.
   Some inputs with a date and some without is an error that names the undated ones.

Dates have day precision; a time of day is dropped. Day numbers (for kernels) are
days since 1970-01-01 as float64 (:func:`day_numbers`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import InputError, ParameterError

DateLike = Union[str, _dt.date, np.datetime64]

#: Years accepted as dates; an 8-digit number outside them (12345678) is not a date.
YEARS = (1900, 2100)

_EPOCH = _dt.date(1970, 1, 1)

#: Metadata items read for a date, most specific first, matched case-insensitively on the
#: last component of the key (``NC_GLOBAL#time_coverage_start``,
#: ``L1_METADATA_FILE.PRODUCT_METADATA.DATE_ACQUIRED``):
DATE_TAGS = (
    "ACQUISITIONDATETIME",                  # GDAL's IMAGERY domain (DigitalGlobe, Pleiades, SPOT, Landsat MTL, ...)
    "DATATAKE_1_DATATAKE_SENSING_START",    # GDAL's SENTINEL2 driver (SAFE products)
    "SENSING_TIME",                         # Sentinel-2 granule metadata
    "PRODUCT_START_TIME",                   # GDAL's SENTINEL2 driver
    "ACQUISITION_START_TIME",               # GDAL's SAFE (Sentinel-1) driver
    "DATE_ACQUIRED",                        # Landsat MTL (GDAL's IMD domain)
    "ACQUISITION_DATE",                     # older Landsat MTL, many writers
    "ACQUISITION_DATETIME",
    "RANGEBEGINNINGDATE",                   # MODIS / HDF-EOS core metadata
    "DATETIME",                             # STAC ``datetime`` copied into tags
    "START_DATETIME",                       # STAC ``start_datetime``
    "TIME_COVERAGE_START",                  # netCDF attribute convention (ACDD)
    "ACQUISITION_TIME",                     # ENVI header ``acquisition time``
    "TIFFTAG_DATETIME",                     # TIFF DateTime "YYYY:MM:DD HH:MM:SS": when the file was made
)

#: GDAL metadata domains the reader looks in, besides the default one.
DATE_DOMAINS = ("IMAGERY", "IMD", "ENVI")

_SOURCES = ("DATES", "name", "metadata", "order")

# A full date in a file name. Digits may not touch it (so a longer number is not cut into a date);
# letters may ("20240512T101031", "S2A20240512").
_NAME_FULL = (
    re.compile(r"(?<![0-9])(\d{4})-(\d{2})-(\d{2})(?![0-9])"),
    re.compile(r"(?<![0-9])(\d{4})_(\d{2})_(\d{2})(?![0-9])"),
    re.compile(r"(?<![0-9])(\d{4})(\d{2})(\d{2})(?![0-9])"),
)
_NAME_DOY = (
    re.compile(r"(?:^|[._])A(\d{4})(\d{3})(?=[._]|$)"),                            # MODIS .AYYYYDDD.
    re.compile(r"(?<![A-Za-z0-9])L[COTEM]\d\d{6}(\d{4})(\d{3})[A-Z]{3}\d{2}(?![0-9])"),  # LC81930272024133LGN00
)
# A year and month: no digit before, nothing alphanumeric after (not "2019_10m"), and no day after it.
_NAME_MONTH = (
    re.compile(r"(?<![0-9])(\d{4})-(\d{2})(?![0-9A-Za-z])(?!-\d)"),
    re.compile(r"(?<![0-9])(\d{4})_(\d{2})(?![0-9A-Za-z])(?!_\d)"),
)
# A date at the start of a metadata value or a DATES entry.
_TEXT_FULL = re.compile(r"^(\d{4})([-:/._]?)(\d{2})\2(\d{2})(?![0-9])")
_TEXT_MONTH = re.compile(r"^(\d{4})[-_/](\d{2})$")
_TEXT_DOY = re.compile(r"^(\d{4})-(\d{3})$")


def _make_date(year: int, month: int, day: int) -> Optional[_dt.date]:
    if not YEARS[0] <= year <= YEARS[1]:
        return None
    try:
        return _dt.date(year, month, day)
    except ValueError:
        return None


def _make_doy(year: int, doy: int) -> Optional[_dt.date]:
    first = _make_date(year, 1, 1)
    if first is None or not 1 <= doy <= _make_date(year, 12, 31).timetuple().tm_yday:  # type: ignore[union-attr]
        return None
    return first + _dt.timedelta(days=doy - 1)


def _leftmost(text: str, patterns, build) -> Optional[Tuple[int, _dt.date]]:
    """``(position, date)`` of the leftmost match of ``patterns`` that is a real date, or None."""
    found = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            d = build(*(int(g) for g in m.groups()))
            if d is not None:
                found.append((m.start(), d))
    return min(found, key=lambda f: f[0]) if found else None


def date_from_name(name: str) -> Optional[_dt.date]:
    """The acquisition date in a file name, or None.

    Only the last path component is read (folders are not). Full dates come
    first, leftmost wins; a year and month only when there is no full date.

    >>> date_from_name("/data/S2A_MSIL2A_20240512T101031_N0510_R022_T32TQM_20240512T142103.SAFE")
    datetime.date(2024, 5, 12)
    >>> date_from_name("LC09_L2SP_193027_20240512_20240513_02_T1_SR_B4.TIF")
    datetime.date(2024, 5, 12)
    >>> date_from_name("MOD13Q1.A2024129.h18v04.061.2024146011512.hdf")
    datetime.date(2024, 5, 8)
    >>> date_from_name("ndvi_2024_05.tif"), date_from_name("S2_2019_10m_B04.tif"), date_from_name("id_12345678.tif")
    (datetime.date(2024, 5, 1), None, None)
    """
    base = re.split(r"[/\\]", name.rstrip("/\\"))[-1]
    full = [f for f in (_leftmost(base, _NAME_FULL, _make_date), _leftmost(base, _NAME_DOY, _make_doy)) if f]
    if full:
        return min(full, key=lambda f: f[0])[1]
    month = _leftmost(base, _NAME_MONTH, lambda y, m: _make_date(y, m, 1))
    return month[1] if month else None


def parse_date(value: DateLike, what: str = "date") -> _dt.date:
    """One date from text (YYYY-MM-DD, YYYYMMDD, YYYY_MM_DD, YYYY/MM/DD, YYYY:MM:DD, with an optional
    time after it; YYYY-MM or YYYY_MM for the first of the month; YYYY-DDD for a day of the year),
    a :class:`datetime.date` or a :class:`numpy.datetime64`.

    Raises :class:`ParameterError` saying what ``what`` was and what is expected.

    >>> parse_date("2024-05-12"), parse_date("2024:05:12 10:10:31"), parse_date("2024-05")
    (datetime.date(2024, 5, 12), datetime.date(2024, 5, 12), datetime.date(2024, 5, 1))
    """
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ParameterError(f"The {what} is not a date (NaT).")
        return _from_day(int(value.astype("datetime64[D]").astype(np.int64)))
    d = _date_from_text(str(value))
    if d is None:
        raise ParameterError(f"The {what} {str(value)!r} is not a date: write it as YYYY-MM-DD "
                             f"(or YYYYMMDD, YYYY_MM_DD, YYYY-MM), with a year in {YEARS[0]}..{YEARS[1]}.")
    return d


def _date_from_text(text: str) -> Optional[_dt.date]:
    text = text.strip().strip("\"'").strip()
    m = _TEXT_FULL.match(text)
    if m:
        rest = text[m.end():]
        if rest and not re.match(r"^[T ]\d|^Z?$|^[T ]?$", rest):
            return None
        return _make_date(int(m.group(1)), int(m.group(3)), int(m.group(4)))
    m = _TEXT_MONTH.match(text)
    if m:
        return _make_date(int(m.group(1)), int(m.group(2)), 1)
    m = _TEXT_DOY.match(text)
    if m:
        return _make_doy(int(m.group(1)), int(m.group(2)))
    return None


def date_from_tags(tags: Mapping[str, str]) -> Optional[Tuple[_dt.date, str]]:
    """The acquisition date in a raster's metadata and the key it came from, or None.

    Keys are matched case-insensitively on their last component (after the last
    ``#`` or ``.``), in the order of :data:`DATE_TAGS`. A value that is not a date
    is passed over, and so is ``1970-01-01 00:00:00``, which GDAL's imagery
    readers write when they could not read the acquisition time.

    >>> date_from_tags({"TIFFTAG_DATETIME": "2024:05:12 10:10:31", "AREA_OR_POINT": "Area"})
    (datetime.date(2024, 5, 12), 'TIFFTAG_DATETIME')
    >>> date_from_tags({"ACQUISITIONDATETIME": "1970-01-01 00:00:00",
    ...                 "NC_GLOBAL#time_coverage_start": "2024-05-12T10:10:31Z"})
    (datetime.date(2024, 5, 12), 'NC_GLOBAL#time_coverage_start')
    """
    by_name: Dict[str, List[str]] = {}
    for key in tags:
        by_name.setdefault(re.split(r"[#.]", str(key))[-1].upper(), []).append(str(key))
    for name in DATE_TAGS:
        for key in by_name.get(name, ()):
            text = str(tags[key]).strip().strip("\"'")
            if name == "ACQUISITIONDATETIME" and text.startswith("1970-01-01 00:00:00"):
                continue
            d = _date_from_text(text)
            if d is not None:
                return d, key
    return None


def day_numbers(dates: Iterable[_dt.date]) -> np.ndarray:
    """Days since 1970-01-01, as float64 (what the gap-filling kernels take).

    >>> day_numbers([parse_date("1970-01-02"), parse_date("2024-05-12")]).tolist()
    [1.0, 19855.0]
    """
    return np.asarray([(d - _EPOCH).days for d in dates], np.float64)


def _from_day(day: int) -> _dt.date:
    return _EPOCH + _dt.timedelta(days=int(day))


def dates_from_days(days: Iterable[float]) -> Tuple[_dt.date, ...]:
    """The inverse of :func:`day_numbers` (whole days).

    >>> dates_from_days([19855.0])
    (datetime.date(2024, 5, 12),)
    """
    return tuple(_from_day(int(round(float(d)))) for d in days)


def parse_dates(dates: Union[str, Sequence[DateLike]], what: str = "DATES") -> Tuple[_dt.date, ...]:
    """A list of dates: a sequence, or text separated by commas, semicolons or white space.

    >>> parse_dates("2024-05-12, 2024-05-22;20240601")
    (datetime.date(2024, 5, 12), datetime.date(2024, 5, 22), datetime.date(2024, 6, 1))
    """
    items = [t for t in re.split(r"[,;\s]+", dates.strip()) if t] if isinstance(dates, str) else list(dates)
    return tuple(parse_date(v, f"entry {i + 1} of {what}") for i, v in enumerate(items))


@dataclass(frozen=True)
class SeriesDates:
    """The dates of a series of inputs, in input order, and where each came from.

    ``dates`` is all None for an undated series (source ``"order"``).
    ``overridden`` lists ``(input index, DATES entry not used, where the date came from)``
    for inputs whose name or metadata gave another date than their ``DATES`` entry.
    """

    names: Tuple[str, ...]
    dates: Tuple[Optional[_dt.date], ...]
    sources: Tuple[str, ...]
    overridden: Tuple[Tuple[int, _dt.date, str], ...] = field(default=())

    @property
    def dated(self) -> bool:
        return all(d is not None for d in self.dates)

    @property
    def days(self) -> np.ndarray:
        """Day numbers in input order (:func:`day_numbers`); an undated series has none."""
        if not self.dated:
            raise InputError("The inputs have no dates (none in their names or metadata, and no DATES list).")
        return day_numbers(self.dates)  # type: ignore[arg-type]

    @property
    def order(self) -> Tuple[int, ...]:
        """Input indices in date order (stable: equal dates keep their input order); the input order if undated."""
        if not self.dated:
            return tuple(range(len(self.dates)))
        return tuple(sorted(range(len(self.dates)), key=lambda i: self.dates[i]))  # type: ignore[arg-type,return-value]

    @property
    def iso(self) -> Tuple[str, ...]:
        """ISO dates (YYYY-MM-DD) in input order, e.g. for band descriptions; empty strings if undated."""
        return tuple(d.isoformat() if d is not None else "" for d in self.dates)

    def duplicates(self) -> List[Tuple[int, ...]]:
        """Groups of input indices that share a date (empty if all dates differ or the series is undated)."""
        groups: Dict[_dt.date, List[int]] = {}
        for i, d in enumerate(self.dates):
            if d is not None:
                groups.setdefault(d, []).append(i)
        return [tuple(g) for g in groups.values() if len(g) > 1]

    def require_distinct(self) -> None:
        """Raise :class:`InputError` naming the inputs that share a date (a series needs one raster per date)."""
        dup = self.duplicates()
        if dup:
            first = dup[0]
            files = ", ".join(_short(self.names[i]) for i in first)
            more = f" (and {len(dup) - 1} more date(s) like it)" if len(dup) > 1 else ""
            raise InputError(f"{len(first)} inputs have the same date {self.dates[first[0]]}: {files}{more}. "
                             "A time series needs one raster per date: mosaic the scenes of the same day first "
                             "(e.g. with tilewise:mosaic), or fix the dates with DATES.")


def _short(name: str) -> str:
    return os.path.basename(name.rstrip("/\\")) or name


def resolve_dates(names: Sequence[str], tags: Optional[Sequence[Mapping[str, str]]] = None,
                  dates: Optional[Union[str, Sequence[DateLike]]] = None) -> SeriesDates:
    """The dates of ``names`` (in input order) from ``DATES``, the names, or ``tags`` (one mapping per name).

    See the module documentation for the rules. Raises :class:`ParameterError`
    for a ``DATES`` list of the wrong length or with an entry that is not a date,
    and :class:`InputError` when some inputs have a date and others none.

    >>> s = resolve_dates(["ndvi_2024-05-22.tif", "ndvi_2024-05-12.tif"])
    >>> s.iso, s.order, s.sources
    (('2024-05-22', '2024-05-12'), (1, 0), ('name', 'name'))
    >>> resolve_dates(["a.tif", "b.tif"]).sources
    ('order', 'order')
    """
    names = tuple(str(n) for n in names)
    if tags is not None and len(tags) != len(names):
        raise ParameterError(f"{len(tags)} tag sets were given for {len(names)} inputs.")
    found = [found_date(n, tags[i] if tags is not None else {}) for i, n in enumerate(names)]
    if _given(dates):
        return _with_explicit(names, found, parse_dates(dates))
    if all(f is not None for f in found):
        return SeriesDates(names, tuple(f[0] for f in found), tuple(f[1] for f in found))  # type: ignore[index]
    if all(f is None for f in found):
        return SeriesDates(names, (None,) * len(names), ("order",) * len(names))
    missing = [_short(n) for n, f in zip(names, found) if f is None]
    listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise InputError(f"{len(missing)} of {len(names)} inputs have no date in their file name or metadata: {listed}. "
                     "Name the files with their dates (e.g. ndvi_2024-05-12.tif) or give DATES, one per input "
                     "in input order (e.g. 2024-05-12,2024-05-22).")


def _given(dates) -> bool:
    """Whether a DATES value says anything (None, "" and [] do not)."""
    if dates is None:
        return False
    return bool(dates.strip()) if isinstance(dates, str) else len(dates) > 0


def found_date(name: str, tags: Mapping[str, str]) -> Optional[Tuple[_dt.date, str, str]]:
    """``(date, source, metadata key)`` of one input, or None."""
    d = date_from_name(name)
    if d is not None:
        return d, "name", ""
    hit = date_from_tags(tags)
    return (hit[0], "metadata", hit[1]) if hit is not None else None


#: Metadata that says when a file was written rather than taken: a DATES entry wins over it.
_WEAK_TAGS = ("TIFFTAG_DATETIME",)


def weak_date(found: Optional[Tuple[_dt.date, str, str]]) -> bool:
    return found is None or re.split(r"[#.]", found[2])[-1].upper() in _WEAK_TAGS


def _with_explicit(names: Tuple[str, ...], found, given: Tuple[_dt.date, ...]) -> SeriesDates:
    """Names and metadata first, then the ``DATES`` entries (see the module's rules)."""
    if len(given) != len(names):
        raise ParameterError(f"DATES has {len(given)} date(s) for {len(names)} inputs; give one date per input, "
                             "in input order, or leave DATES empty to read the dates from the file names or metadata.")
    return SeriesDates(names, *merge_given(found, given))


def merge_given(found, given: Sequence[Optional[_dt.date]]):
    """``(dates, sources, overridden)`` of inputs whose name or metadata gave ``found`` (see
    :func:`found_date`) and whose ``DATES`` entries are ``given`` (None: no entry for that input).
    The name and the metadata come first; a written-at tag (:data:`_WEAK_TAGS`) yields to an entry;
    an input with neither has no date (source ``"order"``)."""
    dates, sources, overridden = [], [], []
    for i, (f, entry) in enumerate(zip(found, given)):
        if entry is not None and weak_date(f):
            dates.append(entry)
            sources.append("DATES")
        elif f is not None:
            dates.append(f[0])
            sources.append(f[1])
            if entry is not None and f[0] != entry:
                overridden.append((i, entry, f"{f[1]} {f[2]}".strip()))
        else:
            dates.append(None)
            sources.append("order")
    return tuple(dates), tuple(sources), tuple(overridden)


def overridden_message(name: str, entry: _dt.date, date: _dt.date, where: str) -> str:
    """Why the ``DATES`` entry of ``name`` was not used: its ``where`` (name, metadata key) gives ``date``."""
    return (f"{_short(name)}: DATES gives {entry.isoformat()} but its {where} says {date.isoformat()}; "
            f"using {date.isoformat()} (the file name, then the metadata, come before DATES; rename the "
            "file to change its date).")


def overridden_warnings(series: SeriesDates) -> List[str]:
    """One message per input whose ``DATES`` entry was not used (its name or metadata gives another date)."""
    return [overridden_message(series.names[i], entry, series.dates[i], where)  # type: ignore[arg-type]
            for i, entry, where in series.overridden]


def read_date_tags(path: str) -> Dict[str, str]:
    """The metadata items of ``path`` that can hold a date: the default domain, then :data:`DATE_DOMAINS`.

    Only keys whose last component is in :data:`DATE_TAGS` are kept; a key met
    again in a later domain keeps its first value. Raises :class:`InputError`
    if the raster cannot be opened.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    wanted = set(DATE_TAGS)
    out: Dict[str, str] = {}
    try:
        with rasterio.open(path) as src:
            for ns in (None,) + DATE_DOMAINS:  # GDAL lists IMAGERY in no namespace list: ask each
                for key, value in (src.tags(ns=ns) if ns else src.tags()).items():
                    if re.split(r"[#.]", key)[-1].upper() in wanted and key not in out:
                        out[key] = value
    except RasterioIOError as exc:
        raise InputError(f"Cannot open {path} to read its date: {exc}") from None
    return out


def read_dates(paths: Sequence[str], dates: Optional[Union[str, Sequence[DateLike]]] = None) -> SeriesDates:
    """:func:`resolve_dates` for raster files; the metadata is read only for inputs whose name has no date."""
    return resolve_dates(paths, [tags_unless_named(p) for p in paths], dates)


def tags_unless_named(path: str) -> Dict[str, str]:
    """:func:`read_date_tags` of ``path``, or nothing when its file name already gives the date."""
    return {} if date_from_name(path) is not None else read_date_tags(path)

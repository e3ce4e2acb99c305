"""From STAC items to raster bands: asset lookup, hrefs GDAL can open, offsets, grouping by solar day.

Pure functions of the item JSON (no I/O but the optional signing hook).

- An asset is found by its key (``B04``, ``red``), case-insensitively if need be, or by
  the ``common_name`` (``red``, ``nir``) or ``name`` of one of its ``eo:bands`` (STAC 1.1
  ``bands``), so one list of assets works on catalogues that name them differently.
- Remote hrefs become ``/vsicurl?`` paths that carry the engine's retry settings, so any
  GDAL reader of the VRT (QGIS too) retries transient errors and lists no directory.
- Sentinel-2 processing baseline 04.00 and later adds 1000 to the reflectance digital
  numbers: ``HARMONIZE`` subtracts it again (as the Planetary Computer recommends), else
  the item's ``raster:bands`` scale and offset are recorded for the reader.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ...errors import CatalogError, ParameterError
from .client import resolve
from .query import item_bbox, item_time

#: Added to Sentinel-2 L2A reflectances from processing baseline 04.00 on (25 January 2022).
HARMONIZE_OFFSET = 1000
HARMONIZE_BASELINE = 4.0
#: Assets that are not reflectances (never harmonized), whatever bands they declare.
NOT_REFLECTANCE = {"scl", "aot", "wvp", "visual", "tci", "qa", "cloud", "snow", "mask"}
_TIFF = ("image/tiff", "image/geotiff", "application/x-geotiff")

Signer = Callable[[str], str]


@dataclass(frozen=True)
class AssetBand:
    """One requested band of one item: where it is and how to read it."""

    name: str                   # as requested, e.g. "red"
    key: str                    # the asset key in the item, e.g. "B04"
    href: str                   # resolved, unsigned
    band: int                   # band of the asset file, from 1
    scale: Optional[float]
    offset: Optional[float]
    nodata: Optional[float]
    reflectance: bool


def parse_assets(text: Union[str, Sequence[str], None]) -> Tuple[str, ...]:
    """``"red, nir,scl"`` or a list -> ``("red", "nir", "scl")``.

    >>> parse_assets("B04, B08,SCL")
    ('B04', 'B08', 'SCL')
    """
    names = text.replace(";", ",").split(",") if isinstance(text, str) else list(text or ())
    out = tuple(n.strip() for n in names if n and n.strip())
    if not out:
        raise ParameterError("No assets were given: list the asset keys or common names to read, in band "
                             "order, e.g. red,nir,scl or B04,B08,SCL.")
    if len(set(out)) != len(out):
        raise ParameterError(f"An asset is listed twice in {', '.join(out)}.")
    return out


def _bands_of(asset: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The band descriptions of an asset: ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1)."""
    bands = asset.get("eo:bands") or asset.get("bands") or []
    return [b for b in bands if isinstance(b, dict)]


def _common_name(band: Mapping[str, Any]) -> str:
    return str(band.get("common_name") or band.get("eo:common_name") or "")


def _preference(key: str, asset: Mapping[str, Any]) -> Tuple[int, int, int, str]:
    """Sort key among assets that match a name: COGs and GeoTIFFs first, data role, fewer bands."""
    media = str(asset.get("type") or "").lower()
    tiff = 0 if any(t in media for t in _TIFF) else 1
    data = 0 if "data" in (asset.get("roles") or []) else 1
    return (tiff, data, len(_bands_of(asset)), key)


def find_asset(item: Mapping[str, Any], name: str) -> Optional[Tuple[str, int]]:
    """``(asset key, band from 1)`` for ``name``: by key, then by ``eo:bands`` common name or name.

    >>> item = {"assets": {"B04": {"href": "B04.tif", "type": "image/tiff",
    ...                            "eo:bands": [{"name": "B04", "common_name": "red"}]},
    ...                    "red-jp2": {"href": "B04.jp2", "type": "image/jp2", "eo:bands": [{"common_name": "red"}]}}}
    >>> find_asset(item, "red"), find_asset(item, "b04"), find_asset(item, "nir")
    (('B04', 1), ('B04', 1), None)
    """
    assets = {k: a for k, a in (item.get("assets") or {}).items() if isinstance(a, dict) and a.get("href")}
    if name in assets:
        return (name, 1)
    folded = [k for k in assets if k.lower() == name.lower()]
    if len(folded) == 1:
        return (folded[0], 1)
    matches = []
    for key, asset in assets.items():
        for i, band in enumerate(_bands_of(asset), start=1):
            if name.lower() in (_common_name(band).lower(), str(band.get("name") or "").lower()):
                matches.append((_preference(key, asset), key, i))
                break
    if not matches:
        return None
    _, key, band = min(matches)
    return (key, band)


def describe_assets(item: Mapping[str, Any]) -> str:
    """``B04 (red), B08 (nir), SCL`` for a message."""
    parts = []
    for key, asset in sorted((item.get("assets") or {}).items()):
        names = [n for n in (_common_name(b) for b in _bands_of(asset)) if n] if isinstance(asset, dict) else []
        parts.append(f"{key} ({', '.join(names)})" if names else key)
    return ", ".join(parts) or "none"


def _raster_band(asset: Mapping[str, Any], band: int) -> Dict[str, Any]:
    bands = asset.get("raster:bands") or asset.get("bands") or []
    if 0 < band <= len(bands) and isinstance(bands[band - 1], dict):
        return bands[band - 1]
    return {}


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:                 # e.g. "nan" is fine, "none" is not
        return None


def is_reflectance(key: str, asset: Mapping[str, Any], band: int) -> bool:
    """A spectral band (it has a common name or a wavelength) that is not a classification or a quicklook."""
    if key.lower() in NOT_REFLECTANCE or (asset.get("roles") and "data" not in asset["roles"]
                                          and "reflectance" not in asset["roles"]):
        return False
    bands = _bands_of(asset)
    info = bands[band - 1] if 0 < band <= len(bands) else {}
    return bool(_common_name(info) or info.get("center_wavelength") or info.get("eo:center_wavelength"))


def asset_bands(found_item: Mapping[str, Any], base: str, names: Sequence[str]) -> Tuple[List[AssetBand], List[str]]:
    """The requested bands of an item, and the names it lacks."""
    bands, missing = [], []
    for name in names:
        hit = find_asset(found_item, name)
        if hit is None:
            missing.append(name)
            continue
        key, band = hit
        asset = found_item["assets"][key]
        raster = _raster_band(asset, band)
        bands.append(AssetBand(name, key, resolve(str(asset["href"]), base), band, _number(raster.get("scale")),
                               _number(raster.get("offset")), _number(raster.get("nodata")),
                               is_reflectance(key, asset, band)))
    return bands, missing


def needs_harmonizing(item: Mapping[str, Any]) -> bool:
    """A Sentinel-2 item of processing baseline 04.00 or later whose offset was not already removed.

    >>> needs_harmonizing({"properties": {"s2:processing_baseline": "04.00"}})
    True
    >>> needs_harmonizing({"properties": {"s2:processing_baseline": "03.01"}})
    False
    >>> needs_harmonizing({"properties": {"s2:processing_baseline": "05.10", "earthsearch:boa_offset_applied": True}})
    False
    """
    props = item.get("properties") or {}
    if props.get("earthsearch:boa_offset_applied") is True:
        return False
    baseline = _number(props.get("s2:processing_baseline"))
    return baseline is not None and baseline >= HARMONIZE_BASELINE


def harmonized_offset(band: AssetBand) -> Optional[float]:
    """The band's ``raster:bands`` offset once 1000 DN are subtracted: -0.1 at scale 1e-4 becomes 0.

    >>> harmonized_offset(AssetBand("red", "B04", "x", 1, 0.0001, -0.1, 0, True))
    0.0
    """
    if band.offset is None:
        return None
    return round(band.offset + HARMONIZE_OFFSET * (band.scale if band.scale is not None else 1.0), 12)


# -- hrefs GDAL opens -------------------------------------------------------------------------------------

def vsicurl(url: str, retries: int, delay: float) -> str:
    """A ``/vsicurl?`` path with the retry settings and no directory listing.

    >>> vsicurl("https://example.com/a b.tif?sig=1&x=2", 5, 1.0)
    '/vsicurl?max_retry=5&retry_delay=1&list_dir=no&url=https%3A%2F%2Fexample.com%2Fa%20b.tif%3Fsig%3D1%26x%3D2'
    """
    return (f"/vsicurl?max_retry={retries}&retry_delay={delay:g}&list_dir=no&url="
            + urllib.parse.quote(url, safe=""))


def gdal_source(href: str, retries: int, delay: float) -> str:
    """What GDAL opens for an asset href: ``/vsicurl?`` for HTTP(S), ``/vsis3/`` for ``s3://``...

    >>> gdal_source("s3://bucket/key/B04.tif", 5, 1)
    '/vsis3/bucket/key/B04.tif'
    >>> gdal_source("/data/B04.tif", 5, 1)
    '/data/B04.tif'
    """
    scheme = href.split("://", 1)[0].lower() if "://" in href else ""
    if scheme in ("http", "https"):
        return vsicurl(href, retries, delay)
    prefixes = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "abfs": "/vsiadls/"}
    if scheme in prefixes:
        return prefixes[scheme] + href.split("://", 1)[1]
    if scheme == "file":
        return urllib.parse.unquote(urllib.parse.urlparse(href).path)
    return href if href.startswith("/vsi") else os.path.abspath(href)


def load_signer(sign: Union[None, str, Signer]) -> Optional[Signer]:
    """The URL signing hook: a callable ``href -> signed href``, or its ``module:function`` name.

    ``planetary_computer:sign`` signs Planetary Computer hrefs (``pip install planetary-computer``
    in the engine's Python); nothing else needs that package.
    """
    if sign is None or sign == "":
        return None
    if callable(sign):
        return sign
    module, sep, name = str(sign).strip().partition(":")
    if not sep or not module or not name:
        raise ParameterError(f"The URL signing hook {sign!r} is not like module:function "
                             "(e.g. planetary_computer:sign).")
    try:
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except ImportError as exc:
        raise ParameterError(f"The URL signing hook {sign} cannot be loaded: {exc}. Install its package in the "
                             "engine's Python (for the Planetary Computer: pip install planetary-computer).") from None
    except AttributeError:
        raise ParameterError(f"The URL signing hook {sign}: {module} has no {name}.") from None
    if not callable(target):
        raise ParameterError(f"The URL signing hook {sign} is not a function.")
    return target


def signed(href: str, signer: Optional[Signer], cache: Dict[str, str]) -> str:
    """``href`` through the signing hook (remote hrefs only, each once)."""
    if signer is None or "://" not in href:
        return href
    if href not in cache:
        try:
            value = signer(href)
        except Exception as exc:
            raise CatalogError(f"The URL signing hook failed on {href}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, str) or not value:
            raise CatalogError(f"The URL signing hook returned {type(value).__name__}, not a URL, for {href}.")
        cache[href] = value
    return cache[href]


# -- grouping ---------------------------------------------------------------------------------------------

def solar_day(item: Mapping[str, Any]) -> Optional[dt.date]:
    """The local solar date of an item: its UTC time shifted by its longitude (15 degrees an hour).

    >>> solar_day({"bbox": [170, 0, 172, 1], "properties": {"datetime": "2024-05-01T22:30:00Z"}})
    datetime.date(2024, 5, 2)
    """
    when = item_time(item)
    if when is None:
        return None
    box = item_bbox(item)
    lon = 0.0
    if box is not None:
        west, east = box[0], box[2] if box[2] >= box[0] else box[2] + 360.0
        lon = ((west + east) / 2 + 180.0) % 360.0 - 180.0
    return (when.astimezone(dt.timezone.utc) + dt.timedelta(hours=lon / 15.0)).date()


def group_key(item: Mapping[str, Any]) -> Tuple[str, str, str, str]:
    """Items of one collection, solar day, platform and relative orbit are one pass: one layer."""
    props = item.get("properties") or {}
    orbit = props.get("sat:relative_orbit", props.get("s2:relative_orbit", ""))
    day = solar_day(item)
    return (str(item.get("collection") or ""), day.isoformat() if day else "", str(props.get("platform") or ""),
            str(orbit))


#: Longest layer file name (without ``.vrt``): far below the 255 bytes file systems allow.
MAX_NAME = 120


def layer_name(parts: Sequence[str]) -> str:
    """A file name from item ids or group keys: safe characters only, a long one cut and told apart by a hash.

    >>> layer_name(["sentinel-2-l2a", "2024-05-03", "sentinel-2a", "22"])
    'sentinel-2-l2a_2024-05-03_sentinel-2a_22'
    >>> layer_name(["S2A T33/UVP"])
    'S2A_T33_UVP'
    >>> name = layer_name(["x" * 400]); len(name), name[-13:]
    (120, '_7b0bd700ce06')
    """
    text = "_".join(p for p in parts if p)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "item"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = name[:MAX_NAME - len(digest) - 1].rstrip("._-") + "_" + digest
    return name

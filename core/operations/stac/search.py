"""STAC catalogues as input: search, then one VRT per item (or per pass) whose bands are the assets.

    >>> from tilewise.core import stac_search, composite                     # doctest: +SKIP
    >>> found = stac_search("https://earth-search.aws.element84.com/v1", "items/", ["red", "nir", "scl"],
    ...                     collections=["sentinel-2-l2a"], bbox=[15.9, 45.7, 16.1, 45.9],
    ...                     datetime="2024-05-01/2024-09-30", max_cloud=20)   # doctest: +SKIP
    >>> composite(found.layers, "median.tif", mask_band=3, mask_values=[0, 1, 3, 8, 9, 10])  # doctest: +SKIP

The search runs in the engine (:mod:`.stac.client`: a STAC API through pystac-client, static catalogues
crawled there, over :mod:`.stac.transport`); asset lookup, offsets and grouping are in :mod:`.stac.assets`,
the VRTs in :mod:`.stac.vrt`, the files recorded beside them in :mod:`tilewise.core.io.stac_record`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ...runtime.lock import output_locks
from ...errors import CatalogError, OutputError, ParameterError, TilewiseWarning
from ...vocabulary import STAC_GROUPINGS
from .assets import (AssetBand, Signer, asset_bands, describe_assets, gdal_source, group_key,
                     harmonized_offset, layer_name, load_signer, needs_harmonizing, parse_assets, signed)
from .client import MAX_PAGES, Found, SearchResult, collection_ids, search
from .query import Search, check_bbox, cloud_cover, item_time, normalize_datetime
from .hrefs import refusal
from ...io.stac_record import (FOOTPRINTS, FORMAT, ITEMS, MARKER, RECORD, SIDE_FILES, Staged, footprint, json_text,
                     own_files, read_record, recorded_layers)
from .transport import HeaderPolicy, Http, origin, parse_header_hosts, retry_settings
from ...logs import forwarding, log_option
from ...options import LogFn, ProgressFn

log = logging.getLogger(__name__)

GROUPINGS = STAC_GROUPINGS


@dataclass(frozen=True)
class StacReport:
    """What a search wrote: ``layers`` (VRT paths in date order) and the files beside them."""

    output: str
    layers: List[str]
    items: List[str]
    footprints: str
    record: str
    seconds: float
    pages: int
    cloud_filter: Optional[str]
    truncated: bool
    skipped: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Entry:
    """One item with its bands and (once read) the headers of their assets."""

    found: Found
    bands: List[AssetBand]
    sources: List[str]

    @property
    def item(self) -> Dict[str, Any]:
        return self.found.item


def parse_headers(headers: Union[None, str, Sequence[str], Mapping[str, str]]) -> Dict[str, str]:
    """Extra HTTP headers: a mapping, ``"Name: value"`` strings, or such lines in one text.

    >>> parse_headers("Authorization: Bearer abc\\nX-Key: 1")
    {'Authorization': 'Bearer abc', 'X-Key': '1'}
    """
    if not headers:
        return {}
    if isinstance(headers, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in headers.items()}
    lines = headers.splitlines() if isinstance(headers, str) else list(headers)
    out = {}
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise ParameterError(f"The HTTP header {line!r} is not like 'Name: value'.")
        out[name.strip()] = value.strip()
    return out


def _collections(value: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
    items = value.replace(";", ",").split(",") if isinstance(value, str) else list(value or ())
    return tuple(c.strip() for c in items if c and c.strip())


def _grouping(group_by: Optional[str]) -> str:
    value = (group_by or "none").strip().lower().replace("-", "_").replace(" ", "_")
    if value not in GROUPINGS:
        raise ParameterError(f"Unknown grouping {group_by!r}; use none or solar_day.")
    return value


def _check_request(url: str, output: str, max_cloud: Optional[float], limit: Optional[int],
                   resampling: str) -> None:
    from .vrt import VRT_RESAMPLING
    if not url or not str(url).strip():
        raise ParameterError("No STAC catalogue was given: the URL of a STAC API, or the path or URL of a "
                             "static catalogue or ItemCollection JSON.")
    if not output:
        raise ParameterError("No output folder was given for the search's layers.")
    if max_cloud is not None and not 0 <= float(max_cloud) <= 100:
        raise ParameterError(f"The maximum cloud cover is a percentage (0 to 100), got {max_cloud}.")
    if limit is not None and int(limit) < 0:
        raise ParameterError(f"The item limit must be 0 (no limit) or more, got {limit}.")
    if resampling not in VRT_RESAMPLING:
        raise ParameterError(f"Unknown resampling {resampling!r} for assets at another resolution; use one of "
                             f"{', '.join(VRT_RESAMPLING)}.")


def _check_folder(output: str) -> str:
    folder = os.path.abspath(output)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"The output of a search is a folder, and {folder} is a file.")
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise OutputError(f"The output folder {folder} cannot be written ({parent} is not writable).")
    return folder


def _make_folder(folder: str) -> bool:
    """Create ``folder`` if need be; whether this run created it."""
    if os.path.isdir(folder):
        return False
    try:
        os.makedirs(folder)
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder {folder}: {exc.strerror or exc}") from None
    return True


def _check_replacements(folder: str, names: Sequence[str], overwrite: bool) -> None:
    """Refuse to replace files of ``folder`` that no Tilewise search of it wrote, unless asked to."""
    if overwrite or not os.path.isdir(folder):
        return
    ours = own_files(folder)
    theirs = [n for n in names if n not in ours and os.path.lexists(os.path.join(folder, n))]
    if theirs:
        listed = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        raise OutputError(f"The output folder {folder} already holds {listed}, which no Tilewise search there "
                          "wrote (its search.json does not list them): choose another (or a new) folder, or "
                          "allow replacing them (--overwrite, or --stac-overwrite with composite --stac; OVERWRITE "
                          "in QGIS; overwrite=True in Python).")


@log_option
def stac_search(url: str, output: str, assets: Union[str, Sequence[str]], *,
                collections: Union[None, str, Sequence[str]] = None, bbox: Optional[Sequence[float]] = None,
                datetime: Optional[str] = None, max_cloud: Optional[float] = None, limit: Optional[int] = 100,
                group_by: Optional[str] = None, harmonize: bool = False,
                headers: Union[None, str, Sequence[str], Mapping[str, str]] = None,
                header_hosts: Union[None, str, Sequence[str]] = None, overwrite: bool = False,
                sign: Union[None, str, Signer] = None, resampling: str = "nearest", page_size: int = 100,
                progress: Optional[ProgressFn] = None, log: Optional[LogFn] = None,
                workers: Optional[int] = None) -> StacReport:
    """Search a STAC catalogue and write one VRT per item (or per pass) into ``output``.

    Parameters
    ----------
    url : str
        A STAC API (e.g. ``https://earth-search.aws.element84.com/v1``), or the path or URL
        of a static catalogue, a collection or an ItemCollection JSON.
    output : str
        The folder for the VRTs, ``search.json``, ``items.json`` and ``footprints.geojson``. Files
        there that no earlier search wrote are not replaced unless ``overwrite``.
    assets : str or list of str
        The bands, in order: asset keys (``B04``) or ``eo:bands`` common names (``red``).
    collections, bbox, datetime
        Collection ids; ``(west, south, east, north)`` in EPSG:4326; an RFC 3339 interval
        such as ``2024-05-01/2024-09-30`` (dates are whole days, ``..`` an open end).
    max_cloud : float, optional
        Keep items with ``eo:cloud_cover`` at most this (items without one are left out).
    limit : int, optional
        At most this many items (default 100; 0 or None: all). Paging is followed.
    group_by : {None, "none", "solar_day"}
        ``solar_day``: the items of one collection, solar day, platform and orbit make one
        layer (their assets mosaicked; the least cloudy on top).
    harmonize : bool
        Subtract the 1000 DN offset of Sentinel-2 processing baseline 04.00 and later from
        the reflectance bands of the items that have it; the other items are unchanged.
        Without it the items' ``raster:bands`` scale and offset are written into the VRT.
    headers : mapping or list of "Name: value", optional
        Extra HTTP headers (credentials) for the catalogue's origin (scheme, host, port) only, and
        for reading the asset headers on that origin (the VRTs do not keep them: give readers
        ``GDAL_HTTP_HEADERS``, or use signed URLs). Redirects to another origin drop them.
    header_hosts : str or list of str, optional
        More hosts that get the headers (``host``, ``host:port`` or ``https://host``), e.g. the
        asset hosts of a catalogue that needs them there too.
    overwrite : bool
        Replace files in ``output`` that Tilewise did not write (default: refuse).
    sign : callable or "module:function", optional
        Signs each asset href, e.g. ``"planetary_computer:sign"`` (its package installed).
    resampling : str
        For assets at another resolution than the first asset (default nearest, which
        keeps classes such as SCL intact).
    page_size : int
        Items asked for per page of an API search.
    progress, log
        Callbacks: ``progress(done, total)`` over the asset headers read, ``log(message)``: the search's
        log lines (see :mod:`tilewise.core.logs`).
    workers
        Accepted for the engine's job format; the headers are read by a few threads.

    Returns
    -------
    StacReport
    """
    start = time.perf_counter()
    names = parse_assets(assets)
    grouping = _grouping(group_by)
    _check_request(url, output, max_cloud, limit, resampling)
    query = Search(_collections(collections), check_bbox(bbox), normalize_datetime(datetime),
                   None if max_cloud is None else float(max_cloud), int(limit) if limit else None)
    location = str(url).strip()
    policy = HeaderPolicy(parse_headers(headers), location, parse_header_hosts(header_hosts))
    signer = load_signer(sign)
    folder = _check_folder(output)
    with _folder_lock(folder):
        return _search_into(folder, location, query, names, grouping, harmonize, resampling, policy, signer, sign,
                            url, page_size, overwrite, progress, start)


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """One search writes ``folder`` at a time (the lock file is beside it: its parent folders are made
    first, and removed again if still empty when the search fails)."""
    parent = os.path.dirname(folder)
    missing = parent
    while missing and not os.path.exists(missing):
        missing = os.path.dirname(missing)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder {parent}: {exc.strerror or exc}") from None
    ok = False
    try:
        with output_locks([folder], "stac search"):
            yield
        ok = True
    finally:
        made = parent
        while not ok and made != missing:   # only the folders this search made, while empty
            try:
                os.rmdir(made)
            except OSError:
                break
            made = os.path.dirname(made)


def _search_into(folder, location, query, names, grouping, harmonize, resampling, policy, signer, sign, url,
                 page_size, overwrite, progress, start) -> "StacReport":
    _check_replacements(folder, SIDE_FILES, overwrite)
    http = Http(policy)
    try:
        result = search(location, query, http, max(1, int(page_size)))
        _warn_trail(result)
        if not result.items:
            raise _nothing_found(result, query, http)
        entries, skipped = _entries(result, names, signer)
        headers_by_source = _read_headers(entries, policy, http, progress)
        layers = _plan_layers(entries, headers_by_source, names, grouping, harmonize)
        _check_replacements(folder, [layer.name + ".vrt" for layer in layers], overwrite)
        record = _record(url, query, names, grouping, harmonize, resampling, policy, sign, result, layers,
                         skipped)
        paths = _write_folder(folder, entries, layers, record, resampling)
    except RecursionError:
        raise CatalogError(f"The STAC catalogue {location} gave JSON nested too deeply to be read (a document "
                           "of items, links or geometries hundreds of levels deep).") from None
    ids = record["items"]
    log.info(f"{len(ids)} items in {len(paths)} layers written to {folder}")
    return StacReport(folder, paths, ids, os.path.join(folder, FOOTPRINTS), os.path.join(folder, RECORD),
                      time.perf_counter() - start, result.pages, result.cloud_filter, result.truncated,
                      [s["id"] for s in skipped])


def _warn(message: str) -> None:
    """A warning: a warning record when the log is heard (:func:`~tilewise.core.logs.forwarding`: the CLI
    shows it even when quiet, QGIS as a warning), else a Python warning."""
    if forwarding():
        log.warning(message)
    else:
        warnings.warn(TilewiseWarning(message), stacklevel=3)


def _warn_trail(result: SearchResult) -> None:
    if result.page_cap:
        _warn(f"The search stopped after {MAX_PAGES} pages of {result.url} while the catalogue links more: "
              f"the {len(result.items)} items found are not all there are. Narrow the search (collections, "
              "bbox, dates) or ask for bigger pages (--page-size; page_size in Python).")
    if result.refused:
        more = f" (and {len(result.refused) - 1} more)" if len(result.refused) > 1 else ""
        _warn(f"{len(result.refused)} links of the catalogue were not followed: {result.refused[0]}{more}.")


# -- items and their assets -------------------------------------------------------------------------------

def _nothing_found(result: SearchResult, query: Search, http: Http) -> CatalogError:
    if result.kind == "api" and query.collections:
        known = collection_ids(result.url, http)
        unknown = [c for c in query.collections if known is not None and c not in known]
        if unknown:
            listed = ", ".join(sorted(known)[:30]) + (", ..." if len(known) > 30 else "")
            return CatalogError(f"The STAC API {result.url} has no collection {', '.join(unknown)}; its collections "
                                f"are: {listed or 'none'}.")
    what = [f"collections {', '.join(query.collections)}" if query.collections else "any collection"]
    if query.bbox:
        what.append("bbox " + ", ".join(f"{v:g}" for v in query.bbox))
    if query.datetime:
        what.append(f"datetime {query.datetime}")
    if query.max_cloud is not None:
        what.append(f"cloud cover <= {query.max_cloud:g}%")
    cloudy = (f" ({result.excluded_by_cloud} items matched but were too cloudy or have no eo:cloud_cover)"
              if result.excluded_by_cloud else "")
    return CatalogError(f"No STAC item matches the search in {result.url} ({'; '.join(what)}){cloudy}. "
                        "Check the collection ids, widen the area or the dates, or raise the cloud limit.")


def _entries(result: SearchResult, names: Sequence[str],
             signer: Optional[Signer]) -> Tuple[List[_Entry], List[Dict[str, Any]]]:
    retries, delay = retry_settings()
    cache: Dict[str, str] = {}
    entries, skipped, refused = [], [], []
    for found in result.items:
        bands, missing = asset_bands(found.item, found.base, names)
        if missing:
            skipped.append({"id": found.item.get("id"), "missing": missing,
                            "assets": describe_assets(found.item)})
            continue
        why = next(((b, w) for b in bands for w in [refusal(b.href, found.base)] if w), None)
        if why:
            band, reason = why
            refused.append({"id": found.item.get("id"), "refused": band.href[:300], "why": reason})
            continue
        sources = [gdal_source(signed(b.href, signer, cache), retries, delay) for b in bands]
        entries.append(_Entry(found, bands, sources))
    if refused:
        first = refused[0]
        what = (f"item {str(first['id'])[:120]}: asset {first['refused']} ({first['why']})"
                + (f", and {len(refused) - 1} more items" if len(refused) > 1 else ""))
        if not entries and not skipped:
            raise CatalogError(f"No item of {result.url} can be used: their assets point at addresses the catalogue "
                               f"may not make Tilewise read ({what}).")
        _warn(f"{len(refused)} items were left out: their assets point at addresses the catalogue may not "
              f"make Tilewise read ({what}).")
        skipped.extend(refused)
    if not entries:
        first = next(s for s in skipped if "missing" in s)
        raise CatalogError(f"No item found has the assets {', '.join(names)}: item {first['id']} lacks "
                           f"{', '.join(first['missing'])} (by key or eo:bands common name); its assets are "
                           f"{first['assets']}.")
    return entries, skipped


def _read_headers(entries: Sequence[_Entry], policy: HeaderPolicy, http: Http,
                  progress: Optional[ProgressFn]) -> Dict[str, Any]:
    from .vrt import HeaderRequest, read_headers
    requests = {}
    for e in entries:
        for band, source in zip(e.bands, e.sources):
            requests.setdefault(source, (band, e))
    log.info(f"Reading the headers of {len(requests)} assets")
    _log_header_scope(policy, [band.href for band, _ in requests.values()])
    plans = _header_plans(list(requests), policy, http)
    out = [HeaderRequest(source, band.href, f"asset {band.name} ({band.key}) of item {e.item.get('id')}",
                         headers=plans[source][1], open_as=plans[source][0])
           for source, (band, e) in requests.items()]
    return read_headers(out, {}, progress)


def _log_header_scope(policy: HeaderPolicy, hrefs: Sequence[str]) -> None:
    if not policy.headers:
        return
    elsewhere = sorted({"{}://{}:{}".format(*o) for o in (origin(h) for h in hrefs if not policy.allows(h)) if o})
    if elsewhere:
        home = "{}://{}:{}".format(*policy.home) if policy.home else "no host (the catalogue is a local file)"
        log.info(f"The extra HTTP headers go to {home} only, not to the assets on {', '.join(elsewhere[:3])}"
                 f"{' ...' if len(elsewhere) > 3 else ''}: name those hosts with --header-hosts (HEADER_HOSTS in QGIS) "
                 "if they need them")


def _header_plans(sources: Sequence[str], policy: HeaderPolicy,
                  http: Http) -> Dict[str, Tuple[str, Tuple[Tuple[str, str], ...]]]:
    """Per GDAL source: what to open for its header and with which headers. A trusted asset is opened
    with the headers unless it redirects elsewhere: then that address is opened without them."""
    from .vrt import source_url

    def plan(source: str) -> Tuple[str, Tuple[Tuple[str, str], ...]]:
        url = source_url(source)
        if not url or not policy.allows(url):
            return "", ()
        final, keep = http.final_url(url)
        if keep:
            return "", tuple(policy.for_url(url).items())
        retries, delay = retry_settings()
        return gdal_source(final, retries, delay), ()

    trusted = [s for s in sources if policy.allows(source_url(s) or "")]
    plans = {s: ("", ()) for s in sources if s not in trusted}
    if trusted:
        pool = ThreadPoolExecutor(max_workers=min(8, len(trusted)))
        try:
            plans.update(zip(trusted, pool.map(plan, trusted)))
        except BaseException:
            http.abort()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return plans  # type: ignore[return-value]


# -- layers -----------------------------------------------------------------------------------------------

@dataclass
class _Layer:
    name: str
    entries: List[_Entry]            # in drawing order: the last on top
    grid: Any = None
    bands: List[Any] = field(default_factory=list)
    dtype: str = ""

    @property
    def when(self) -> str:
        times = [item_time(e.item) for e in self.entries]
        known = [t.astimezone(dt.timezone.utc) for t in times if t is not None]
        return min(known).strftime("%Y-%m-%dT%H:%M:%SZ") if known else ""


def _plan_layers(entries: Sequence[_Entry], headers: Mapping[str, Any], names: Sequence[str], grouping: str,
                 harmonize: bool) -> List["_Layer"]:
    from .vrt import same_crs
    groups: Dict[tuple, List[_Entry]] = {}
    for e in entries:
        first = headers[e.sources[0]]
        for band, source in zip(e.bands[1:], e.sources[1:]):
            if not same_crs(headers[source].crs, first.crs):
                raise CatalogError(f"Item {e.item.get('id')}: asset {band.name} ({band.key}) is in another CRS "
                                   f"than {e.bands[0].name} ({e.bands[0].key}); list assets of one CRS.")
        key = (*group_key(e.item), _crs_key(first.crs)) if grouping == "solar_day" else (str(e.item.get("id")),)
        groups.setdefault(key, []).append(e)
    layers = [_layer(key, members, headers, names, grouping, harmonize) for key, members in groups.items()]
    layers.sort(key=lambda layer: (layer.when, layer.name))
    _unique_names(layers)
    if grouping == "solar_day":
        log.info(f"{len(entries)} items grouped into {len(layers)} passes (solar day, platform and orbit)")
    return layers


def _crs_key(crs: str) -> str:
    try:
        from rasterio.crs import CRS
        epsg = CRS.from_wkt(crs).to_epsg()
        return f"EPSG{epsg}" if epsg else ""
    except Exception:  # noqa: BLE001 - unknown: the layers are not grouped by it
        log.debug("No EPSG code for a CRS of the assets", exc_info=True)
        return ""


def _layer(key: tuple, members: List[_Entry], headers: Mapping[str, Any], names: Sequence[str], grouping: str,
           harmonize: bool) -> "_Layer":
    from .vrt import Band, Piece, common_dtype, layer_grid, pieces_dtypes
    if grouping == "solar_day":
        # drawn last is on top: the least cloudy item wins where items overlap
        members = sorted(members, key=lambda e: (-(cloud_cover(e.item) or 0.0), str(e.item.get("id"))))
        name = layer_name(key[:4])
        label = f"the pass {name}"
    else:
        name = layer_name([str(members[0].item.get("id"))])
        label = f"item {members[0].item.get('id')}"
    layer = _Layer(name, list(members))
    layer.grid = layer_grid([headers[e.sources[0]] for e in members], label)
    for i, asked in enumerate(names):
        pieces = []
        for e in members:
            band, header = e.bands[i], headers[e.sources[i]]
            nodata = band.nodata if band.nodata is not None else header.nodata
            shift = harmonize and band.reflectance and needs_harmonizing(e.item)
            pieces.append((band, Piece(header, band.band, nodata, shift)))
        band0, piece0 = pieces[-1]
        offset = harmonized_offset(band0) if piece0.harmonize else band0.offset
        keys = sorted({b.key for b, _ in pieces})
        layer.bands.append(Band(asked, tuple(p for _, p in pieces), piece0.nodata, band0.scale, offset,
                                (("STAC_ASSET", ",".join(keys)), ("HARMONIZED", "YES" if piece0.harmonize else "NO"))))
    layer.dtype = common_dtype([d for b in layer.bands for d in pieces_dtypes(b.pieces)])
    return layer


def _unique_names(layers: Sequence["_Layer"]) -> None:
    seen: Dict[str, int] = {}
    for layer in layers:
        n = seen.get(layer.name, 0)
        seen[layer.name] = n + 1
        if n:
            layer.name = f"{layer.name}_{n + 1}"


def _layer_metadata(layer: "_Layer") -> List[Tuple[str, str]]:
    items = [e.item for e in layer.entries]
    covers = [c for c in (cloud_cover(i) for i in items) if c is not None]
    md = [("STAC_ITEMS", ",".join(str(i.get("id")) for i in items)), ("DATETIME", layer.when),
          ("STAC_COLLECTION", ",".join(sorted({str(i.get("collection") or "") for i in items})))]
    if covers:
        md.append(("CLOUD_COVER", f"{min(covers):g}" if len(covers) == 1 else f"{min(covers):g}-{max(covers):g}"))
    return md


def _write_folder(folder: str, entries: Sequence[_Entry], layers: Sequence["_Layer"], record: Dict[str, Any],
                  resampling: str) -> List[str]:
    """Write the layers and side files into ``folder`` all at once: an error leaves no new file (and no
    folder this run created); then remove the layers of an earlier search there that are gone now."""
    from .vrt import vrt_xml
    previous = read_record(folder)
    created = _make_folder(folder)
    staged = Staged(folder)
    try:
        paths, kept = [], 0
        for layer in layers:
            path = os.path.join(folder, layer.name + ".vrt")
            text = vrt_xml(layer.grid, layer.bands, layer.dtype, resampling, _layer_metadata(layer))
            paths.append(path)
            if _holds(path, text):           # a search run again keeps its files: a composite of them resumes
                kept += 1
            else:
                staged.add(layer.name + ".vrt", text)
        for name, value in _side_files(entries, layers, record):
            staged.add(name, json_text(value))
        staged.commit()                      # search.json last: a folder with it is complete
    except OSError as exc:
        staged.discard()
        _remove_if_empty(folder, created)
        raise OutputError(f"Cannot write the search's files into {folder}: {exc.strerror or exc}") from None
    except BaseException:
        staged.discard()
        _remove_if_empty(folder, created)
        raise
    if previous is not None:                 # layers of an earlier search in this folder that are gone now
        keep = {os.path.basename(p) for p in paths}
        for name in recorded_layers(previous):
            stale = os.path.join(folder, name)
            if name not in keep and os.path.isfile(stale) and os.path.dirname(os.path.abspath(stale)) == folder:
                os.remove(stale)
    if kept:
        log.info(f"{kept} layers were already there unchanged and were kept as they are")
    return paths


def _holds(path: str, text: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(len(text) + 1) == text
    except (OSError, UnicodeDecodeError):
        return False


def _remove_if_empty(folder: str, created: bool) -> None:
    if created:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _record(url: str, query: Search, names: Sequence[str], grouping: str, harmonize: bool, resampling: str,
            policy: HeaderPolicy, sign: Any, result: SearchResult, layers: Sequence["_Layer"],
            skipped: List[Dict[str, Any]]) -> Dict[str, Any]:
    sign_name = sign if isinstance(sign, str) or sign is None else getattr(sign, "__qualname__", "a function")
    return {
        MARKER: FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "search": {"url": str(url).strip(), **query.to_dict(), "assets": list(names), "group_by": grouping,
                   "harmonize": bool(harmonize), "resampling": resampling, "header_names": sorted(policy.headers),
                   "header_hosts": [r.host + (f":{r.port}" if r.port else "") for r in policy.hosts],
                   "sign": sign_name},
        "result": result.record(),
        "items": [str(e.item.get("id")) for layer in layers for e in sorted(layer.entries, key=_time_key)],
        "skipped": skipped,
        "layers": [{"file": layer.name + ".vrt", "datetime": layer.when,
                    "items": [str(e.item.get("id")) for e in layer.entries]} for layer in layers],
    }


def _time_key(e: _Entry) -> Tuple[str, str]:
    t = item_time(e.item)
    return (t.isoformat() if t else "", str(e.item.get("id")))


def _side_files(entries: Sequence[_Entry], layers: Sequence["_Layer"],
                record: Dict[str, Any]) -> List[Tuple[str, Any]]:
    layer_of = {id(e): layer.name + ".vrt" for layer in layers for e in layer.entries}
    ordered = sorted(entries, key=_time_key)
    features = [footprint(e.item, layer_of[id(e)], {b.name: b.href for b in e.bands}) for e in ordered]
    return [(FOOTPRINTS, {"type": "FeatureCollection", "name": "footprints", "features": features}),
            (ITEMS, {"type": "FeatureCollection", "features": [e.item for e in ordered]}),
            (RECORD, record)]

"""Searching a STAC catalogue with plain ``urllib`` and ``json`` (no STAC package needed).

Three kinds of source, told apart by what the document at the given address is:

- a **STAC API** (its landing page declares item search, or links to ``/search``): one
  search request, then its ``next`` links are followed page by page;
- a **static catalogue** (a Catalog or Collection JSON, path or URL): its ``child`` and
  ``item`` links are crawled and the items filtered here;
- an **ItemCollection** (a GeoJSON FeatureCollection of items, e.g. a saved search) or a
  single item: filtered here.

The filters mean the same everywhere: collections, a bbox in EPSG:4326, an RFC 3339
datetime interval and a maximum ``eo:cloud_cover``. The cloud filter is sent to an API
with its query or filter extension only when the API declares it in its conformance
classes; it is applied to every result in any case, so every server gives the same answer.

HTTP is :mod:`.transport`'s (a deadline per request, retries of transient errors with the engine's
retry settings, extra headers for trusted origins only); anything else is a
:class:`~tilewise.core.errors.CatalogError` saying what went wrong with which address. A catalogue
read over HTTP may link to http(s) documents only (:mod:`.hrefs`): a link elsewhere is left out
with a warning. Paging stops after ``MAX_PAGES`` pages, and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ...errors import CatalogError, ParameterError
from .hrefs import refusal
from .transport import Http, is_url, retry_settings  # noqa: F401  (retry_settings: for callers of this module)

Bbox = Tuple[float, float, float, float]
LogFn = Callable[[str], None]

MAX_PAGES = 10_000
FETCH_THREADS = 8

_QUERY = re.compile(r"/item-search#query$")
_FILTER = re.compile(r"/item-search#filter$")
_CQL2_JSON = re.compile(r"/cql2/[^/]+/conf/cql2-json$")
_CQL2_TEXT = re.compile(r"/cql2/[^/]+/conf/cql2-text$")
_ITEM_SEARCH = re.compile(r"/item-search$")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$")


# -- what to look for -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Search:
    """A search, the same on every kind of catalogue.

    ``datetime`` is a normalized RFC 3339 interval (see :func:`normalize_datetime`);
    ``limit`` None or 0 means every matching item.
    """

    collections: Tuple[str, ...] = ()
    bbox: Optional[Bbox] = None
    datetime: Optional[str] = None
    max_cloud: Optional[float] = None
    limit: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"collections": list(self.collections), "bbox": list(self.bbox) if self.bbox else None,
                "datetime": self.datetime, "max_cloud": self.max_cloud, "limit": self.limit}


@dataclass
class Found:
    """One item and the address it was read from (relative asset hrefs are resolved against it)."""

    item: Dict[str, Any]
    base: str


@dataclass
class SearchResult:
    """The items found, in the catalogue's order, and how they were found (for the record)."""

    items: List[Found]
    kind: str                              # "api", "static" or "item-collection"
    url: str
    endpoint: Optional[str] = None         # the API's search address
    method: Optional[str] = None           # GET or POST
    request: Optional[Dict[str, Any]] = None
    cloud_filter: Optional[str] = None     # "query", "filter" or "client" (applied here only)
    pages: int = 0
    matched: Optional[int] = None          # the server's numberMatched, if it says
    truncated: bool = False                # more items matched than the limit
    excluded_by_cloud: int = 0
    notes: List[str] = field(default_factory=list)
    refused: List[str] = field(default_factory=list)      # links left out, each "href (why)"
    page_cap: bool = False                 # paging stopped at MAX_PAGES with more pages linked

    def record(self) -> Dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "endpoint": self.endpoint, "method": self.method,
                "request": self.request, "cloud_filter": self.cloud_filter, "pages": self.pages,
                "matched": self.matched, "truncated": self.truncated, "excluded_by_cloud": self.excluded_by_cloud,
                "page_cap": self.page_cap, "refused_links": list(self.refused)}


def parse_datetime(text: str) -> dt.datetime:
    """An RFC 3339 date or date-time as an aware datetime (UTC when no offset is given).

    >>> parse_datetime("2024-05-01T10:30:00Z").isoformat()
    '2024-05-01T10:30:00+00:00'
    >>> parse_datetime("2024-05-01").isoformat()
    '2024-05-01T00:00:00+00:00'
    """
    m = _DATETIME.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 date or date-time: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int(round(float(frac) * 1e6)) if frac else 0
    if zone in (None, "Z", "z"):
        tz = dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                       min(micro, 999999), tzinfo=tz)


def normalize_datetime(text: Optional[str]) -> Optional[str]:
    """An RFC 3339 interval every STAC API accepts: dates become whole days, open ends ``..``.

    >>> normalize_datetime("2024-05-01/2024-09-30")
    '2024-05-01T00:00:00Z/2024-09-30T23:59:59.999Z'
    >>> normalize_datetime("2024-05-01")
    '2024-05-01T00:00:00Z/2024-05-01T23:59:59.999Z'
    >>> normalize_datetime("2024-05-01T10:00:00Z/..")
    '2024-05-01T10:00:00Z/..'
    """
    if text is None or not text.strip():
        return None
    parts = [p.strip() for p in text.strip().split("/")]
    if len(parts) == 1:
        parts = [parts[0], parts[0]] if _is_date(parts[0]) else parts
    if len(parts) > 2 or all(p in ("", "..") for p in parts):
        raise ParameterError(f"Datetime {text!r} is not an RFC 3339 date, date-time or interval such as "
                             "2024-05-01/2024-09-30 (open ends: .., e.g. 2024-05-01/..).")
    out = [_normalize_end(p, i == 1, text) for i, p in enumerate(parts)]
    if len(out) == 2 and ".." not in out and parse_datetime(out[0]) > parse_datetime(out[1]):
        raise ParameterError(f"Datetime {text!r}: the interval ends before it starts.")
    return "/".join(out)


def _is_date(text: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


def _normalize_end(part: str, is_end: bool, text: str) -> str:
    if part in ("", ".."):
        return ".."
    try:
        parse_datetime(part)
    except ValueError:
        raise ParameterError(f"Datetime {text!r}: {part!r} is not an RFC 3339 date or date-time "
                             "(e.g. 2024-05-01 or 2024-05-01T10:00:00Z).") from None
    if _is_date(part):
        return part + ("T23:59:59.999Z" if is_end else "T00:00:00Z")
    return part


def check_bbox(bbox: Optional[Sequence[float]]) -> Optional[Bbox]:
    """``(west, south, east, north)`` in degrees; west > east crosses the antimeridian.

    >>> check_bbox([10, 45, 11, 46])
    (10.0, 45.0, 11.0, 46.0)
    """
    if bbox is None:
        return None
    values = [float(v) for v in bbox]
    if len(values) != 4:
        raise ParameterError(f"A bbox is four numbers west, south, east, north (EPSG:4326); got {list(bbox)}.")
    w, s, e, n = values
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise ParameterError(f"The bbox {values} is not west, south, east, north in degrees "
                             "(longitudes -180..180, latitudes -90..90, south <= north).")
    return (w, s, e, n)


# -- links --------------------------------------------------------------------------------------------------

def resolve(href: str, base: str) -> str:
    """``href`` (absolute, or relative to the document at ``base``) as a URL or an absolute local path.

    >>> resolve("items/a.json", "https://example.com/stac/catalog.json")
    'https://example.com/stac/items/a.json'
    >>> resolve("../b.tif", "/data/stac/items/a.json")
    '/data/stac/b.tif'
    """
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", href) or href.startswith("/vsi"):
        return href
    if is_url(base):
        return urllib.parse.urljoin(base, href)
    if base.startswith("file://"):
        base = urllib.request.url2pathname(base[7:])
    if os.path.isabs(href):
        return href
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base)), href))


def follow(href: str, base: str) -> str:
    """``href`` resolved against ``base`` (where the linking document was read), if a catalogue may link
    there (:func:`.hrefs.refusal`); else a :class:`CatalogError` naming the link and why."""
    target = resolve(href, base)
    why = refusal(target, base, "link")
    if why:
        raise RefusedLink(f"{_short(target)} (linked from {_short(base)}): {why}")
    return target


class RefusedLink(CatalogError):
    """A catalogue links to an address it may not make Tilewise read."""


def _short(location: str) -> str:
    return location.split("?")[0][:300]


def links(doc: Mapping[str, Any], rel: str) -> List[Dict[str, Any]]:
    return [link for link in doc.get("links") or [] if isinstance(link, dict) and link.get("rel") == rel
            and isinstance(link.get("href"), str)]


def self_href(doc: Mapping[str, Any], fallback: str) -> str:
    """Where a document says it lives (its ``self`` link), else where it was read from."""
    own = links(doc, "self")
    return own[0]["href"] if own and is_url(own[0]["href"]) and is_url(fallback) else fallback


# -- the kind of catalogue ----------------------------------------------------------------------------------

def conformance(root: Mapping[str, Any], base: str, http: Http) -> List[str]:
    """The conformance classes of an API: in its landing page, or at its ``conformance`` link."""
    classes = root.get("conformsTo")
    if isinstance(classes, list) and classes:
        return [str(c) for c in classes]
    for link in links(root, "conformance"):
        try:
            value = http.get(follow(link["href"], base)).get("conformsTo")
        except CatalogError:
            continue
        if isinstance(value, list):
            return [str(c) for c in value]
    return []


def is_api(root: Mapping[str, Any]) -> bool:
    """A landing page that offers item search."""
    classes = [str(c) for c in root.get("conformsTo") or []]
    return any(_ITEM_SEARCH.search(c) for c in classes) or bool(links(root, "search"))


def cloud_filter_mode(classes: Sequence[str], method: str) -> Optional[str]:
    """How an API can filter on ``eo:cloud_cover`` itself: ``"query"``, ``"filter"`` or None.

    >>> cloud_filter_mode(["https://api.stacspec.org/v1.0.0/item-search#query"], "POST")
    'query'
    >>> cloud_filter_mode(["https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    ...                    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json"], "POST")
    'filter'
    >>> cloud_filter_mode(["https://api.stacspec.org/v1.0.0/item-search"], "POST") is None
    True
    """
    if any(_QUERY.search(c) for c in classes):
        return "query"
    if any(_FILTER.search(c) for c in classes):
        language = _CQL2_JSON if method == "POST" else _CQL2_TEXT
        if any(language.search(c) for c in classes):
            return "filter"
    return None


def search_body(search: Search, cloud: Optional[str], page_size: int) -> Dict[str, Any]:
    """The item-search request (POST body; GET parameters are made from it).

    >>> search_body(Search(("s2",), (10, 45, 11, 46), None, 20.0), "query", 50)
    {'limit': 50, 'collections': ['s2'], 'bbox': [10, 45, 11, 46], 'query': {'eo:cloud_cover': {'lte': 20.0}}}
    >>> search_body(Search(("s2",), None, None, 20.0), None, 50)
    {'limit': 50, 'collections': ['s2']}
    """
    body: Dict[str, Any] = {"limit": page_size}
    if search.collections:
        body["collections"] = list(search.collections)
    if search.bbox:
        body["bbox"] = list(search.bbox)
    if search.datetime:
        body["datetime"] = search.datetime
    if search.max_cloud is not None and cloud == "query":
        body["query"] = {"eo:cloud_cover": {"lte": search.max_cloud}}
    elif search.max_cloud is not None and cloud == "filter":
        body["filter"] = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, search.max_cloud]}
        body["filter-lang"] = "cql2-json"
    return body


def search_params(body: Mapping[str, Any]) -> Dict[str, str]:
    """GET parameters of an item search.

    >>> search_params({"limit": 10, "collections": ["a", "b"], "bbox": [1, 2, 3, 4]})
    {'limit': '10', 'collections': 'a,b', 'bbox': '1,2,3,4'}
    """
    params: Dict[str, str] = {}
    for key, value in body.items():
        if key in ("collections", "bbox"):
            params[key] = ",".join(str(v) for v in value)
        elif key == "query":
            params[key] = json.dumps(value)
        elif key == "filter":
            prop, bound = value["args"]
            params[key] = f"{prop['property']} <= {bound}"
            params["filter-lang"] = "cql2-text"
        elif key != "filter-lang":
            params[key] = str(value)
    return params


def collection_ids(location: str, http: Http) -> Optional[List[str]]:
    """The ids of an API's collections (its ``data`` link), or None if it does not say."""
    try:
        root = http.get(location)
        data = links(root, "data")
        href = follow(data[0]["href"], location) if data else location.rstrip("/") + "/collections"
        listing = http.get(href).get("collections")
    except CatalogError:
        return None
    if not isinstance(listing, list):
        return None
    return [str(c.get("id")) for c in listing if isinstance(c, dict) and c.get("id")]


# -- searching ----------------------------------------------------------------------------------------------

@dataclass
class Trail:
    """What a search left out on its way: refused links, and whether paging stopped at ``MAX_PAGES``."""

    refused: List[str] = field(default_factory=list)
    page_cap: bool = False

    def refuse(self, exc: CatalogError) -> None:
        self.refused.append(str(exc))


def search(location: str, query: Search, http: Http, page_size: int = 100,
           log: Optional[LogFn] = None) -> SearchResult:
    """Find the items of ``location`` (a STAC API, a static catalogue, an ItemCollection) that match ``query``."""
    say = log or (lambda m: None)
    trail = Trail()
    root = http.get(location)
    kind = root.get("type")
    if kind == "FeatureCollection":
        found = _item_collection(root, location, http, trail)
        return _filtered(found, query, "item-collection", location, trail, say)
    if kind == "Feature":
        return _filtered([Found(root, location)], query, "item-collection", location, trail, say)
    if kind not in ("Catalog", "Collection") and not is_api(root):
        raise CatalogError(f"{_short(location)} is not a STAC API, catalogue, collection or ItemCollection "
                           f"(its type is {str(kind)[:40]!r}).")
    if is_api(root):
        return _api_search(root, location, query, http, page_size, trail, say)
    say(f"{location} is a static catalogue: crawling its links")
    return _filtered(_crawl(root, location, query, http, trail), query, "static", location, trail, say)


def _search_link(root: Mapping[str, Any], base: str) -> Tuple[str, str]:
    found = links(root, "search")
    for method in ("POST", "GET"):
        for link in found:
            if str(link.get("method", "GET")).upper() == method:
                return follow(link["href"], base), method
    return follow("search", base.rstrip("/") + "/"), "GET"


def _api_search(root: Mapping[str, Any], base: str, query: Search, http: Http, page_size: int, trail: Trail,
                say: LogFn) -> SearchResult:
    endpoint, method = _search_link(root, base)
    classes = conformance(root, base, http)
    cloud = cloud_filter_mode(classes, method) if query.max_cloud is not None else None
    limit = query.limit or None
    # a cloud filter applied here drops items from the pages: ask for full pages then
    size = max(1, min(page_size, limit) if limit and (query.max_cloud is None or cloud) else page_size)
    body = search_body(query, cloud, size)
    result = SearchResult([], "api", base, endpoint, method, body,
                          cloud or ("client" if query.max_cloud is not None else None))
    if query.max_cloud is not None and cloud is None:
        say(f"The API does not declare the query or filter extension: eo:cloud_cover <= {query.max_cloud:g} is "
            "applied to the results here")
    seen = set()
    for page in _pages(endpoint, method, body, http, trail):
        result.pages += 1
        if result.matched is None and isinstance(page.get("numberMatched"), int):
            result.matched = page["numberMatched"]
        features = [f for f in page.get("features") or [] if isinstance(f, dict)]
        for n, item in enumerate(features):
            if item.get("id") in seen:
                continue
            seen.add(item.get("id"))
            if not _cloud_ok(item, query.max_cloud):
                result.excluded_by_cloud += 1
                continue
            result.items.append(Found(item, self_href(item, endpoint)))
            if limit and len(result.items) >= limit:
                result.truncated = n + 1 < len(features) or bool(links(page, "next"))
                return _said(result, trail, say)
    return _said(result, trail, say)


def _said(result: SearchResult, trail: Trail, say: LogFn) -> SearchResult:
    result.refused, result.page_cap = list(trail.refused), trail.page_cap
    result.truncated = result.truncated or trail.page_cap
    matched = f" ({result.matched} match on the server)" if result.matched is not None else ""
    say(f"{len(result.items)} items found in {result.pages} page(s){matched}")
    if result.excluded_by_cloud:
        say(f"{result.excluded_by_cloud} items left out for their cloud cover (or for having none)")
    if result.truncated and not trail.page_cap:
        say(f"More items match than the limit ({len(result.items)}); raise the limit to get them all")
    return result


def _pages(endpoint: str, method: str, body: Dict[str, Any], http: Http, trail: Trail) -> Iterator[Dict[str, Any]]:
    """Every page of a search, following ``next`` links (POST links with their body, and merge), at most
    ``MAX_PAGES`` (``trail.page_cap`` says when more were linked)."""
    if method == "POST":
        page = http.post(endpoint, body)
    else:
        page = http.get(_with_params(endpoint, search_params(body)))
    visited = set()
    count = 0
    while True:
        yield page
        count += 1
        nxt = links(page, "next")
        if not nxt or not page.get("features"):
            return
        link = nxt[0]
        try:
            href = follow(link["href"], endpoint)
        except RefusedLink as exc:
            trail.refuse(exc)
            return
        link_method = str(link.get("method", "GET")).upper()
        if link_method == "POST":
            merged = link.get("body") if isinstance(link.get("body"), dict) else {}
            body = {**body, **merged} if link.get("merge") else dict(merged or body)
            key = (href, json.dumps(body, sort_keys=True))
        else:
            key = (href, "")
        if key in visited:
            return                                       # a server that links a page to itself
        if count >= MAX_PAGES:
            trail.page_cap = True
            return
        visited.add(key)
        extra = link.get("headers") if isinstance(link.get("headers"), dict) else None
        page = http.post(href, body, extra) if link_method == "POST" else http.get(href)


def _with_params(url: str, params: Mapping[str, str]) -> str:
    query = urllib.parse.urlencode(params, safe=",:/")
    return url + ("&" if "?" in url else "?") + query


def _item_collection(doc: Mapping[str, Any], base: str, http: Http, trail: Trail) -> List[Found]:
    """The items of a FeatureCollection, and of its ``next`` pages if it has any (at most ``MAX_PAGES``)."""
    found: List[Found] = []
    visited, ids = {base}, set()
    for count in range(1, MAX_PAGES + 1):
        for f in doc.get("features") or []:
            key = f.get("id") if isinstance(f, dict) else None
            if isinstance(f, dict) and (key is None or key not in ids):     # pages that repeat an item
                ids.add(key)
                found.append(Found(f, self_href(f, base)))
        nxt = links(doc, "next")
        if not nxt:
            break
        try:
            target = follow(nxt[0]["href"], base)
        except RefusedLink as exc:
            trail.refuse(exc)
            break
        if target in visited:
            break
        if count == MAX_PAGES:
            trail.page_cap = True
            break
        visited.add(target)
        base, doc = target, http.get(target)
    return found


def _crawl(root: Mapping[str, Any], base: str, query: Search, http: Http, trail: Trail) -> List[Found]:
    """Every item under a static catalogue or collection whose collection is wanted."""
    queue: List[Tuple[Mapping[str, Any], str]] = [(root, base)]
    item_hrefs: List[Tuple[str, Optional[str]]] = []
    found: List[Found] = []
    visited = {base}

    def targets(doc: Mapping[str, Any], rel: str, where: str) -> Iterator[str]:
        for link in links(doc, rel):
            try:
                yield follow(link["href"], where)
            except RefusedLink as exc:
                trail.refuse(exc)

    while queue:
        doc, where = queue.pop(0)
        collection = doc.get("id") if doc.get("type") == "Collection" else None
        if collection and query.collections and collection not in query.collections:
            continue
        if collection and not _extent_meets(doc, query.bbox):
            continue
        for href in targets(doc, "child", where):
            if href not in visited:
                visited.add(href)
                queue.append((http.get(href), href))
        item_hrefs.extend((href, collection) for href in targets(doc, "item", where))
        for href in targets(doc, "items", where):
            if href not in visited:
                visited.add(href)
                found.extend(_with_collection(f, collection)
                             for f in _item_collection(http.get(href), href, http, trail))
    items = _fetch_all(http, [href for href, _ in item_hrefs])
    # relative hrefs are resolved against where the item was read: a copied catalogue keeps old self links
    found.extend(_with_collection(Found(item, href), collection) for item, (href, collection) in zip(items, item_hrefs))
    return found


def _fetch_all(http: Http, hrefs: Sequence[str]) -> List[Dict[str, Any]]:
    """The documents at ``hrefs``, a few at a time; on any error (Ctrl+C too) the others are shut down."""
    if len(hrefs) <= 1:
        return [http.get(h) for h in hrefs]
    pool = ThreadPoolExecutor(max_workers=FETCH_THREADS)
    try:
        return list(pool.map(http.get, hrefs))
    except BaseException:
        http.abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _with_collection(found: Found, collection: Optional[str]) -> Found:
    if collection and not found.item.get("collection"):
        found.item["collection"] = collection
    return found


def _extent_meets(collection: Mapping[str, Any], bbox: Optional[Bbox]) -> bool:
    try:
        boxes = collection["extent"]["spatial"]["bbox"]
        return bbox is None or _bbox_meets(_flat_bbox(boxes[0]), bbox)
    except (KeyError, TypeError, IndexError):
        return True


def _filtered(found: List[Found], query: Search, kind: str, location: str, trail: Trail,
              say: LogFn) -> SearchResult:
    """Filter items read from a file or a static catalogue: every criterion is applied here."""
    result = SearchResult([], kind, location, request=query.to_dict(),
                          cloud_filter="client" if query.max_cloud is not None else None, pages=1)
    kept = []
    for f in found:
        if not item_matches(f.item, query):
            continue
        if not _cloud_ok(f.item, query.max_cloud):
            result.excluded_by_cloud += 1
            continue
        kept.append(f)
    kept.sort(key=lambda f: (item_time(f.item) or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                             str(f.item.get("id"))))
    if query.limit and len(kept) > query.limit:
        result.truncated = True
        kept = kept[:query.limit]
    result.items = kept
    return _said(result, trail, say)


# -- matching items ----------------------------------------------------------------------------------------

def item_time(item: Mapping[str, Any]) -> Optional[dt.datetime]:
    """The item's datetime (or the start of its interval)."""
    props = item.get("properties") or {}
    for key in ("datetime", "start_datetime"):
        value = props.get(key)
        if isinstance(value, str):
            try:
                return parse_datetime(value)
            except ValueError:
                continue
    return None


def _item_interval(item: Mapping[str, Any]) -> Tuple[Optional[dt.datetime], Optional[dt.datetime]]:
    props = item.get("properties") or {}
    start = item_time(item)
    end_text = props.get("end_datetime") if props.get("datetime") is None else None
    try:
        end = parse_datetime(end_text) if isinstance(end_text, str) else start
    except ValueError:
        end = start
    return start, end


def item_bbox(item: Mapping[str, Any]) -> Optional[Bbox]:
    """The item's bbox, or the bounds of its geometry's coordinates."""
    box = item.get("bbox")
    if isinstance(box, list) and len(box) in (4, 6):
        return _flat_bbox(box)
    coords = list(_coordinates((item.get("geometry") or {}).get("coordinates")))
    if not coords:
        return None
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return (min(xs), min(ys), max(xs), max(ys))


def _flat_bbox(box: Sequence[float]) -> Bbox:
    """A 2-D bbox from a 4- or 6-number one (``[w, s, zmin, e, n, zmax]``)."""
    w, s, e, n = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box[:4]
    return (float(w), float(s), float(e), float(n))


def _coordinates(value: Any) -> Iterator[Tuple[float, float]]:
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2]):
        yield (float(value[0]), float(value[1]))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _coordinates(v)


def _bbox_meets(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two bboxes meet (touching counts, as STAC's intersects); west > east wraps."""
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(x0 <= y1 and y0 <= x1 for x0, x1 in _spans(a[0], a[2]) for y0, y1 in _spans(b[0], b[2]))


def _spans(west: float, east: float) -> List[Tuple[float, float]]:
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def _time_meets(item: Mapping[str, Any], interval: Optional[str]) -> bool:
    if not interval:
        return True
    start, end = _item_interval(item)
    if start is None:
        return False
    lo, _, hi = interval.partition("/") if "/" in interval else (interval, "", interval)
    if lo not in ("", "..") and (end or start) < parse_datetime(lo):
        return False
    return not (hi not in ("", "..") and start > parse_datetime(hi))


def item_matches(item: Mapping[str, Any], query: Search) -> bool:
    """Whether an item meets the collections, bbox and datetime of ``query`` (not the cloud cover)."""
    if query.collections and item.get("collection") not in query.collections:
        return False
    if query.bbox is not None:
        box = item_bbox(item)
        if box is None or not _bbox_meets(box, query.bbox):
            return False
    return _time_meets(item, query.datetime)


def cloud_cover(item: Mapping[str, Any]) -> Optional[float]:
    value = (item.get("properties") or {}).get("eo:cloud_cover")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cloud_ok(item: Mapping[str, Any], max_cloud: Optional[float]) -> bool:
    if max_cloud is None:
        return True
    cover = cloud_cover(item)
    return cover is not None and cover <= max_cloud

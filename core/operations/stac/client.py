"""Searching a STAC catalogue: a STAC API through pystac-client (:mod:`.api`), static catalogues and
ItemCollections crawled here.

Three kinds of source, told apart by what the document at the given address is:

- a **STAC API** (its landing page declares item search, or links to ``/search``): pystac-client
  makes the search and follows its ``next`` links page by page;
- a **static catalogue** (a Catalog or Collection JSON, path or URL): its ``child`` and
  ``item`` links are crawled (the items a few at a time) and the items filtered here;
- an **ItemCollection** (a GeoJSON FeatureCollection of items, e.g. a saved search) or a
  single item: filtered here.

The filters mean the same everywhere (:mod:`.query`). The cloud filter is sent to an API with its
query or filter extension only when the API declares it in its conformance classes; it is applied
to every result in any case, so every server gives the same answer.

HTTP is :mod:`.transport`'s (a deadline per request, retries of transient errors with the engine's
retry settings, extra headers for trusted origins only); anything else is a
:class:`~tilewise.core.errors.CatalogError` saying what went wrong with which address. A catalogue
read over HTTP may link to http(s) documents only (:mod:`.hrefs`): a link elsewhere is left out
with a warning. Paging stops after ``MAX_PAGES`` pages, and says so.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ...errors import CatalogError
from .hrefs import refusal
from .query import Search, cloud_ok, extent_meets, item_matches, item_time
from .transport import Http, is_url

log = logging.getLogger(__name__)


MAX_PAGES = 10_000
FETCH_THREADS = 8
_ITEM_SEARCH = re.compile(r"/item-search$")


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

def is_api(root: Mapping[str, Any]) -> bool:
    """A landing page that offers item search."""
    classes = [str(c) for c in root.get("conformsTo") or []]
    return any(_ITEM_SEARCH.search(c) for c in classes) or bool(links(root, "search"))


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

    def refuse(self, exc: Exception) -> None:
        self.refused.append(str(exc))

    def cap(self) -> None:
        self.page_cap = True


def search(location: str, query: Search, http: Http, page_size: int = 100) -> SearchResult:
    """Find the items of ``location`` (a STAC API, a static catalogue, an ItemCollection) that match ``query``."""
    trail = Trail()
    root = http.get(location)
    kind = root.get("type")
    if kind == "FeatureCollection":
        found = _item_collection(root, location, http, trail)
        return _filtered(found, query, "item-collection", location, trail)
    if kind == "Feature":
        return _filtered([Found(root, location)], query, "item-collection", location, trail)
    if kind not in ("Catalog", "Collection") and not is_api(root):
        raise CatalogError(f"{_short(location)} is not a STAC API, catalogue, collection or ItemCollection "
                           f"(its type is {str(kind)[:40]!r}).")
    if is_api(root):
        return _api_search(root, location, query, http, page_size, trail)
    log.info(f"{location} is a static catalogue: crawling its links")
    return _filtered(_crawl(root, location, query, http, trail), query, "static", location, trail)


def _search_link(root: Mapping[str, Any], base: str) -> Tuple[str, str]:
    found = links(root, "search")
    for method in ("POST", "GET"):
        for link in found:
            if str(link.get("method", "GET")).upper() == method:
                return follow(link["href"], base), method
    return follow("search", base.rstrip("/") + "/"), "GET"


def _api_search(root: Mapping[str, Any], base: str, query: Search, http: Http, page_size: int,
                trail: Trail) -> SearchResult:
    try:
        from . import api     # pystac-client: imported for API searches only
    except ImportError as exc:
        raise CatalogError(f"Searching the STAC API at {base} needs pystac-client, which the engine's Python lacks "
                           f"({exc}): run tilewise:setupengine again (QGIS), or pip install pystac-client.") from None
    endpoint, method = _search_link(root, base)
    io = api.TransportIO(http, follow, trail.refuse, trail.cap, MAX_PAGES)
    classes = api.conformance_classes(root, links(root, "conformance"), lambda href: http.get(follow(href, base)))
    client = api.open_client(root, base, io, classes)
    cloud = api.cloud_filter_mode(client, method) if query.max_cloud is not None else None
    limit = query.limit or None
    # a cloud filter applied here drops items from the pages: ask for full pages then
    size = max(1, min(page_size, limit) if limit and (query.max_cloud is None or cloud) else page_size)
    search = api.item_search(client, endpoint, method, query, cloud, size)
    result = SearchResult([], "api", base, endpoint, method, api.request_record(search),
                          cloud or ("client" if query.max_cloud is not None else None))
    if query.max_cloud is not None and cloud is None:
        log.info(f"The API does not declare the query or filter extension: eo:cloud_cover <= {query.max_cloud:g} is "
                 "applied to the results here")
    seen = set()
    for page in api.pages(search):
        result.pages += 1
        if result.matched is None and isinstance(page.get("numberMatched"), int):
            result.matched = page["numberMatched"]
        features = [f for f in page.get("features") or [] if isinstance(f, dict)]
        for n, item in enumerate(features):
            if item.get("id") in seen:
                continue
            seen.add(item.get("id"))
            if not cloud_ok(item, query.max_cloud):
                result.excluded_by_cloud += 1
                continue
            result.items.append(Found(item, self_href(item, endpoint)))
            if limit and len(result.items) >= limit:
                result.truncated = n + 1 < len(features) or bool(links(page, "next"))
                return _said(result, trail)
    return _said(result, trail)


def _said(result: SearchResult, trail: Trail) -> SearchResult:
    result.refused, result.page_cap = list(trail.refused), trail.page_cap
    result.truncated = result.truncated or trail.page_cap
    matched = f" ({result.matched} match on the server)" if result.matched is not None else ""
    log.info(f"{len(result.items)} items found in {result.pages} page(s){matched}")
    if result.excluded_by_cloud:
        log.info(f"{result.excluded_by_cloud} items left out for their cloud cover (or for having none)")
    if result.truncated and not trail.page_cap:
        log.info(f"More items match than the limit ({len(result.items)}); raise the limit to get them all")
    return result


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
        if collection and not extent_meets(doc, query.bbox):
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


def _filtered(found: List[Found], query: Search, kind: str, location: str, trail: Trail) -> SearchResult:
    """Filter items read from a file or a static catalogue: every criterion is applied here."""
    result = SearchResult([], kind, location, request=query.to_dict(),
                          cloud_filter="client" if query.max_cloud is not None else None, pages=1)
    kept = []
    for f in found:
        if not item_matches(f.item, query):
            continue
        if not cloud_ok(f.item, query.max_cloud):
            result.excluded_by_cloud += 1
            continue
        kept.append(f)
    kept.sort(key=lambda f: (item_time(f.item) or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                             str(f.item.get("id"))))
    if query.limit and len(kept) > query.limit:
        result.truncated = True
        kept = kept[:query.limit]
    result.items = kept
    return _said(result, trail)

"""The item search of a STAC API, by pystac-client over Tilewise's transport.

pystac-client builds the request (GET parameters or POST body, the query and filter extensions),
reads the conformance classes and follows the ``next`` links (GET links, and POST links with their
body, merged or not, and headers). Every request goes through :class:`TransportIO`, a ``StacApiIO``
on :class:`.transport.Http`: a deadline per request with retries, the header origin policy, no
address but http(s) (a link elsewhere is refused, :mod:`.hrefs`), one message for a document that
is not JSON or nested too deeply, and the 10,000-page cap. pystac-client's own errors become
:class:`~tilewise.core.errors.CatalogError` naming the API.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import pystac
from pystac.link import Link
from pystac_client import Client, ItemSearch
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from pystac_client.warnings import PystacClientWarning

from ...errors import CatalogError
from .query import Search
from .transport import Http, decode, is_url

_CQL2_JSON, _CQL2_TEXT = "/conf/cql2-json", "/conf/cql2-text"


class _EndOfPages(Exception):
    """Paging stops here (a refused, repeated or capped ``next`` link)."""


class TransportIO(StacApiIO):
    """pystac-client's I/O over :class:`.transport.Http`.

    ``follow(href, base)`` resolves and checks a link (raising on a refused one), ``refused(exc)``
    notes one, and ``capped()`` is called when paging stops at ``max_pages`` with more linked.
    """

    def __init__(self, http: Http, follow: Callable[[str, str], str], refused: Callable[[Exception], None],
                 capped: Callable[[], None], max_pages: int) -> None:
        super().__init__(max_retries=None)
        self.http, self.follow, self.refused, self.capped, self.max_pages = http, follow, refused, capped, max_pages
        self.where, self.base, self.pages, self.seen = "", "", 0, set()

    def request(self, href: str, method: Optional[str] = None, headers: Optional[Dict[str, str]] = None,
                parameters: Optional[Dict[str, Any]] = None) -> str:
        if (method or "GET").upper() == "POST":
            raw = self.http.fetch(href, parameters or {}, headers)
        else:
            raw = self.http.fetch(with_params(href, parameters or {}), None, headers)
        self.where = href
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            decode(href, raw)       # its message: not JSON
            raise

    def json_loads(self, txt: str, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        return decode(self.where, txt)

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        if isinstance(source, Link):             # a next page: checked before pystac-client follows it
            link = source.to_dict()
            try:
                link["href"] = self.follow(str(link["href"]), self.base)
            except CatalogError as exc:
                self.refused(exc)
                raise _EndOfPages() from None
            key = json.dumps(link, sort_keys=True, default=str)
            if key in self.seen:
                raise _EndOfPages()             # a server that links a page to itself
            if self.pages >= self.max_pages:
                self.capped()
                raise _EndOfPages()
            self.seen.add(key)
            source = Link.from_dict(link)
        elif not is_url(str(source)):            # pystac-client would open it as a local file
            raise CatalogError(f"The search address of the STAC API, {str(source)[:300]}, is not an http(s) "
                               "address: a STAC API is searched over HTTP.")
        return super().read_json(source, *args, **kwargs)

    def get_pages(self, url: str, method: Optional[str] = None,
                  parameters: Optional[Dict[str, Any]] = None) -> Iterator[Dict[str, Any]]:
        self.base, self.pages, self.seen = url, 0, set()
        try:
            for page in super().get_pages(url, method, parameters):
                self.pages += 1
                yield page
        except _EndOfPages:
            return


def with_params(url: str, params: Mapping[str, Any]) -> str:
    """``url`` with GET parameters (commas, colons and slashes kept, as STAC APIs expect)."""
    import urllib.parse
    if not params:
        return url
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, safe=",:/")
    return url + ("&" if "?" in url else "?") + query


def open_client(root: Mapping[str, Any], base: str, io: TransportIO, conformance: Sequence[str]) -> Client:
    """pystac-client's Client of a landing page already read, with its conformance classes as found.
    Only what the search needs is taken from the page, so a landing page PySTAC would not parse
    (no ``type`` or ``description``, as some older APIs) is searched all the same."""
    client = Client(str(root.get("id") or "api"), str(root.get("description") or ""), href=base)
    client._stac_io = io
    client.set_conforms_to(list(conformance))
    return client


def cloud_filter_mode(client: Client, method: str) -> Optional[str]:
    """How an API can filter on ``eo:cloud_cover`` itself: ``"query"``, ``"filter"`` (CQL2 in the
    language of the method declared too) or None."""
    if client.conforms_to(ConformanceClasses.QUERY):
        return "query"
    language = _CQL2_JSON if method == "POST" else _CQL2_TEXT
    if client.conforms_to(ConformanceClasses.FILTER) and any(c.endswith(language) for c in client.get_conforms_to()):
        return "filter"
    return None


def item_search(client: Client, endpoint: str, method: str, query: Search, cloud: Optional[str],
                page_size: int) -> ItemSearch:
    """pystac-client's search of ``query`` (the cloud filter sent when the API can apply it)."""
    cover = query.max_cloud
    options: Dict[str, Any] = {}
    if cover is not None and cloud == "query":
        options["query"] = {"eo:cloud_cover": {"lte": cover}}
    elif cover is not None and cloud == "filter":
        options["filter"] = ({"op": "<=", "args": [{"property": "eo:cloud_cover"}, cover]} if method == "POST"
                             else f"eo:cloud_cover <= {cover}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PystacClientWarning)   # conformance is checked here, not warned
            return ItemSearch(endpoint, method=method, stac_io=client._stac_io, client=client, limit=page_size,
                              collections=list(query.collections) or None, bbox=query.bbox,
                              datetime=query.datetime, **options)
    except (APIError, pystac.STACError, ValueError) as exc:
        raise CatalogError(f"The search of the STAC API at {endpoint} cannot be made: {exc}") from exc


def pages(search: ItemSearch) -> Iterator[Dict[str, Any]]:
    """The pages of a search as dicts; pystac-client's errors as :class:`CatalogError`."""
    try:
        yield from search.pages_as_dicts()
    except APIError as exc:
        raise CatalogError(f"The STAC API at {search.url} answered: {exc}") from None


def request_record(search: ItemSearch) -> Dict[str, Any]:
    """The search request as sent (POST) or as its parameters (GET), for search.json."""
    return json.loads(json.dumps(search.get_parameters(), default=list))


def conformance_classes(root: Mapping[str, Any], links: List[Dict[str, Any]], read: Callable[[str], Any],
                        ) -> List[str]:
    """The conformance classes of an API: in its landing page, or at its ``conformance`` link."""
    classes = root.get("conformsTo")
    if isinstance(classes, list) and classes:
        return [str(c) for c in classes]
    for link in links:
        try:
            value = read(link["href"]).get("conformsTo")
        except CatalogError:
            continue
        if isinstance(value, list):
            return [str(c) for c in value]
    return []

"""Which addresses a catalogue may make Tilewise read.

A document read over http(s) is someone else's: its links and asset hrefs may only point at remote
addresses (http, https, s3, gs, az, abfs, and GDAL's network files ``/vsicurl/``, ``/vsis3/``...
of those, also inside ``/vsizip/`` and the like). A local catalogue is the user's own: it may point
at local files and GDAL special files too, but no catalogue may make Tilewise read standard input
or a device (``/vsistdin/``, ``/dev/stdin``, ``/proc/self/fd/0``...), which block or never end.

:func:`refusal` says why an address is refused (the address only: never what a file holds), or None.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from typing import Optional

from .transport import is_url

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "az", "abfs")
#: GDAL network file systems: the rest of the path is a bucket/key (or, for /vsicurl, a URL).
NETWORK_VSI = ("/vsis3/", "/vsis3_streaming/", "/vsigs/", "/vsigs_streaming/", "/vsiaz/", "/vsiaz_streaming/",
               "/vsiadls/", "/vsioss/", "/vsioss_streaming/", "/vsiswift/", "/vsiswift_streaming/")
CURL_VSI = ("/vsicurl/", "/vsicurl_streaming/")
ARCHIVE_VSI = ("/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/", "/vsirar/")
#: Never read, whatever the catalogue: standard input, devices, a process's open files.
_NEVER = re.compile(r"/vsistd(in|out)|^/dev/(?!shm/)|^/proc/|/dev/(std|fd/|tty|zero|random|urandom)|/proc/(self|\d+)/",
                    re.IGNORECASE)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_remote(href: str) -> bool:
    """An address on a network, as GDAL or the catalogue client reads it.

    >>> [is_remote(h) for h in ("https://a/b.tif", "s3://b/k.tif", "/vsicurl/https://a/b.tif",
    ...                         "/vsizip//vsis3/b/k.zip/x.tif", "file:///etc/passwd", "/data/x.tif",
    ...                         "/vsicurl/file:///etc/passwd", "/vsistdin/")]
    [True, True, True, True, False, False, False, False]
    """
    scheme = _SCHEME.match(href)
    if scheme:
        return scheme.group(1).lower() in REMOTE_SCHEMES
    lower = href.lower()
    for prefix in ARCHIVE_VSI:
        if lower.startswith(prefix):
            inner = href[len(prefix):]
            return is_remote(inner[1:] if inner.startswith("{") else inner)
    if lower.startswith(CURL_VSI):
        return is_url(href[href.index("/", 2) + 1:])
    if lower.startswith("/vsicurl?"):
        urls = urllib.parse.parse_qs(href[len("/vsicurl?"):]).get("url") or []
        return len(urls) == 1 and is_url(urls[0])
    return lower.startswith(NETWORK_VSI)


def local_path(href: str) -> str:
    """The file a local href names (``file://`` URLs decoded)."""
    if href.lower().startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlsplit(href).path)
    return href


def refusal(href: str, base: str, what: str = "asset") -> Optional[str]:
    """Why ``href`` (already resolved against ``base``, where the document was read) may not be read,
    or None.

    >>> refusal("file:///etc/passwd", "https://example.com/items.json")
    'it is not a remote address, and the catalogue was read over HTTP'
    >>> refusal("/data/b04.tif", "/data/catalog.json") is None
    True
    >>> refusal("/vsistdin/", "/data/catalog.json")
    'it reads standard input or a device'
    """
    if not is_url(href) and (_NEVER.search(href) or _NEVER.search(local_path(href))):
        return "it reads standard input or a device"
    if is_url(base) or is_remote(base):
        if what == "link" and not is_url(href):
            return "a catalogue read over HTTP may link to http(s) addresses only"
        if not is_remote(href):
            return "it is not a remote address, and the catalogue was read over HTTP"
        return None
    if (not _SCHEME.match(href) or href.lower().startswith("file://")) and not href.lower().startswith("/vsi"):
        try:
            real = os.path.realpath(local_path(href))
        except (OSError, ValueError):
            return None
        if _NEVER.search(real):
            return "it reads standard input or a device"
    return None

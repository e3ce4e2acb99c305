"""What a job reads, as it is now: the fingerprint that tells a resumed run whether its inputs changed.

A resumed run may reuse the tiles of an interrupted run only if it is the same job on the same data.
The job's parameters are in its value; its data is what its input paths point at, which can change
under the same name. :func:`fingerprint` hashes both, with for every input:

- a local file: its size, modification and change times (ns) and inode. The change time (ctime)
  moves on any write, also when the modification time is set back (``touch -d``);
- a VRT: the VRT file and, recursively, every file it reads (``SourceFilename``, ``SourceDataset``,
  relative to the VRT where it says so);
- an archive read through ``/vsizip/``, ``/vsigzip/``, ``/vsitar/``, ``/vsisubfile/``: the archive;
- an HTTP(S) input (a URL, ``/vsicurl/``, ``/vsicurl?...url=``): its ``ETag``, ``Last-Modified`` and
  ``Content-Length``, from a ``HEAD`` request (or a one-byte ranged ``GET`` where ``HEAD`` is refused)
  with the ``GDAL_HTTP_HEADERS`` / ``GDAL_HTTP_HEADER_FILE`` / ``GDAL_HTTP_USERPWD`` /
  ``GDAL_HTTP_USERAGENT`` the run's reads use, and a short timeout.

An input that cannot be fingerprinted (a server that gives neither ``ETag`` nor ``Last-Modified``, a
request that fails, an object store path such as ``/vsis3/``) makes the fingerprint unknown: a resumed
run then starts afresh and says which input and why.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import queue
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

__all__ = ["Fingerprint", "fingerprint", "job_strings"]

#: Seconds one HEAD request may take (GDAL_HTTP_TIMEOUT or GDAL_HTTP_LOW_SPEED_TIME, if shorter, wins).
HTTP_TIMEOUT = 10.0
#: HEAD requests at once, for a job of many remote inputs.
HTTP_THREADS = 8
_RETRY_STATUSES = (429, 500, 502, 503, 504)
_LOCAL_VSI = ("/vsizip/", "/vsigzip/", "/vsitar/", "/vsisubfile/", "/vsi7z/", "/vsirar/")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_VRT_SOURCES = ("SourceFilename", "SourceDataset")


@dataclass(frozen=True)
class Fingerprint:
    """A job's fingerprint: ``digest`` (None when an input could not be fingerprinted: ``reason`` says
    which one and why)."""

    digest: Optional[str]
    reason: str = ""


class _Unknown(Exception):
    """An input whose present state cannot be known; the message says which and why."""


def fingerprint(job: Any, skip: Tuple[str, ...] = ("output", "outputs")) -> Fingerprint:
    """The fingerprint of ``job`` (a dataclass of plain values): its value, and the state of every file
    or URL among its strings (fields named in ``skip``, the outputs, aside).

    >>> from tilewise.core.grid import Grid
    >>> g = Grid("", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 10, 10)
    >>> fingerprint(g) == fingerprint(Grid("", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 10, 10))
    True
    """
    signatures: Set[Tuple] = set()
    urls: List[str] = []
    try:
        for text in dict.fromkeys(job_strings(job, skip)):
            _collect(text, signatures, urls, set())
        signatures.update(_remote_signatures(urls))
    except _Unknown as exc:
        return Fingerprint(None, str(exc))
    text = repr((type(job).__name__, job, sorted(signatures, key=repr)))
    return Fingerprint(hashlib.sha256(text.encode("utf-8")).hexdigest())


def job_strings(value: Any, skip: Tuple[str, ...] = (), top: bool = True) -> Iterator[str]:
    """Every string in ``value`` (dataclass fields, tuples, lists, dict values), but for the fields of the
    outer dataclass named in ``skip``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if not (top and f.name in skip):
                yield from job_strings(getattr(value, f.name), skip, False)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from job_strings(item, skip, False)
    elif isinstance(value, dict):
        for item in value.values():
            yield from job_strings(item, skip, False)
    elif isinstance(value, str) and value:
        yield value


def _collect(path: str, signatures: Set[Tuple], urls: List[str], seen: Set[str]) -> None:
    """Add the signature of ``path`` (and of what it reads) to ``signatures``, or its URL to ``urls``;
    strings that name no file are parameters, not inputs, and add nothing."""
    url = http_url(path)
    if url is not None:
        urls.append(url)
        return
    if path.lower().startswith("file://"):
        path = urllib.parse.unquote(path[7:])
    if path.startswith("/vsi"):
        path = _local_vsi(path)
    elif _SCHEME.match(path):
        raise _Unknown(f"the input {path} is read over {_SCHEME.match(path).group(1)}://, whose changes "
                       "Tilewise cannot see")
    if not os.path.isfile(path):
        return
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    st = os.stat(real)
    signatures.add((real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    if _is_vrt(real):
        for source in vrt_sources(real):
            _collect(source, signatures, urls, seen)


def _local_vsi(path: str) -> str:
    """The local archive a GDAL virtual path reads; :class:`_Unknown` for an object store or other scheme."""
    from ..io.outputs import local_file
    if path.startswith(_LOCAL_VSI) and not any(p in path for p in ("/vsis3", "/vsigs", "/vsiaz", "/vsiadls",
                                                                    "/vsioss", "/vsiswift", "/vsihdfs",
                                                                    "/vsiwebhdfs")):
        return local_file(path) or path
    if path.startswith("/vsimem/"):
        return path                                  # in this process only: nothing to resume from
    scheme = path[1:].split("/", 1)[0].split("?", 1)[0]
    raise _Unknown(f"the input {path} is read through /{scheme}/, whose changes Tilewise cannot see")


def http_url(path: str) -> Optional[str]:
    """The HTTP(S) URL an input reads: itself, or the URL of a ``/vsicurl/`` or ``/vsicurl?...url=`` path
    (also inside a chain such as ``/vsizip//vsicurl/...``, whose archive is what is fetched).

    >>> http_url("/vsicurl?max_retry=5&list_dir=no&url=https%3A%2F%2Fh%2Fa%20b.tif"), http_url("/data/a.tif")
    ('https://h/a b.tif', None)
    """
    if path[:8].lower().startswith(("http://", "https://")):
        return path
    at = path.find("/vsicurl")
    if at < 0:
        return None
    rest = path[at + len("/vsicurl"):]
    if rest.startswith("?"):
        found = urllib.parse.parse_qs(rest[1:]).get("url")
        return found[0] if found else None
    if rest.startswith("_streaming/"):
        rest = rest[len("_streaming"):]
    rest = rest.lstrip("/")
    match = re.match(r"https?://\S+?\.(?:zip|gz|tar|tgz|7z)(?=/|$)", rest, re.IGNORECASE) \
        if path[:at] else None                        # /vsizip//vsicurl/URL.zip/inner.tif: the archive's URL
    return match.group(0) if match else (rest if rest.lower().startswith(("http://", "https://")) else None)


def _is_vrt(path: str) -> bool:
    if path.lower().endswith(".vrt"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(64).lstrip().startswith(b"<VRTDataset")
    except OSError:
        return False


def vrt_sources(path: str) -> List[str]:
    """The files and URLs a VRT reads, as GDAL would open them (relative ones from the VRT's folder)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise _Unknown(f"the VRT {path} cannot be read to see what it reads ({exc})") from None
    folder = os.path.dirname(path)
    found = []
    for element in root.iter():
        if element.tag not in _VRT_SOURCES or not (element.text or "").strip():
            continue
        source = element.text.strip()
        if element.get("relativeToVRT", element.get("relativetoVRT", "0")) == "1" and not source.startswith("/vsi") \
                and not _SCHEME.match(source):
            source = os.path.join(folder, source)
        found.append(source)
    return found


# -- remote inputs ------------------------------------------------------------------------------------------------

def _remote_signatures(urls: List[str]) -> List[Tuple]:
    """``(url, etag, last-modified, length)`` of each URL, asked a few at a time in daemon threads (a slow
    server holds none of this process's exit); :class:`_Unknown` for the first that cannot be known."""
    urls = list(dict.fromkeys(urls))
    if not urls:
        return []
    config = http_config()
    todo: "queue.Queue[str]" = queue.Queue()
    for url in urls:
        todo.put(url)
    done: "queue.Queue[Tuple[str, Any]]" = queue.Queue()

    def work() -> None:
        while True:
            try:
                url = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((url, remote_signature(url, config)))
            except _Unknown as exc:
                done.put((url, exc))

    for _ in range(min(HTTP_THREADS, len(urls))):
        threading.Thread(target=work, name="tilewise-fingerprint", daemon=True).start()
    results: Dict[str, Any] = dict(done.get() for _ in urls)
    for url in urls:
        if isinstance(results[url], _Unknown):
            raise results[url]
    return [results[url] for url in urls]


def http_config() -> Dict[str, str]:
    """The ``GDAL_HTTP_*`` settings the run's reads use: the environment, under an active ``rasterio.Env``."""
    config = {k: v for k, v in os.environ.items() if k.startswith(("GDAL_HTTP_", "CPL_CURL_"))}
    try:
        import rasterio.env
        if rasterio.env.hasenv():
            config.update({k: str(v) for k, v in rasterio.env.getenv().items()
                           if k.startswith(("GDAL_HTTP_", "CPL_CURL_"))})
    except ImportError:     # pragma: no cover - the engine has rasterio
        pass
    return config


def _headers(config: Dict[str, str]) -> Dict[str, str]:
    lines: List[str] = []
    if config.get("GDAL_HTTP_HEADER_FILE"):
        try:
            with open(config["GDAL_HTTP_HEADER_FILE"], encoding="utf-8") as f:
                lines += f.read().splitlines()
        except OSError as exc:
            raise _Unknown(f"the header file {config['GDAL_HTTP_HEADER_FILE']} (GDAL_HTTP_HEADER_FILE) cannot be "
                           f"read ({exc.strerror})") from None
    lines += re.split(r"\r?\n", config.get("GDAL_HTTP_HEADERS", ""))
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    if config.get("GDAL_HTTP_USERPWD") and config.get("GDAL_HTTP_AUTH", "BASIC").upper() in ("BASIC", "ANY"):
        token = base64.b64encode(config["GDAL_HTTP_USERPWD"].encode("utf-8")).decode("ascii")
        headers.setdefault("Authorization", f"Basic {token}")
    headers.setdefault("User-Agent", config.get("GDAL_HTTP_USERAGENT", "tilewise"))
    return headers


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows redirects; the request's headers (credentials) go along only to the same origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's interface)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) == _origin(req.full_url):
            for name, value in req.unredirected_hdrs.items():
                new.add_unredirected_header(name, value)
        return new


def _origin(url: str) -> Tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def remote_signature(url: str, config: Optional[Dict[str, str]] = None) -> Tuple[str, str, str, str]:
    """``(url, ETag, Last-Modified, size)`` of a remote input; :class:`_Unknown` if the server gives neither
    ``ETag`` nor ``Last-Modified``, or cannot be asked."""
    config = http_config() if config is None else config
    headers = _headers(config)
    timeout = min(HTTP_TIMEOUT, _float(config.get("GDAL_HTTP_TIMEOUT"), HTTP_TIMEOUT),
                  _float(config.get("GDAL_HTTP_LOW_SPEED_TIME"), HTTP_TIMEOUT))   # the silence the reads allow
    context = ssl._create_unverified_context() if config.get("GDAL_HTTP_UNSAFESSL", "").upper() in (
        "YES", "ON", "TRUE", "1") else None
    opener = urllib.request.build_opener(_SameOrigin(), urllib.request.HTTPSHandler(context=context))
    answer = _ask(opener, url, "HEAD", headers, timeout)
    if answer[0] in (403, 405, 501):                  # HEAD refused (a URL signed for GET): one byte of GET
        answer = _ask(opener, url, "GET", dict(headers, Range="bytes=0-0"), timeout)
    status, got = answer
    if status not in (200, 206):
        raise _Unknown(f"the input {url} cannot be checked for changes (HTTP {status} to a HEAD request)")
    etag, modified = got.get("ETag", ""), got.get("Last-Modified", "")
    if not etag and not modified:
        raise _Unknown(f"the server of the input {url} gives neither an ETag nor a Last-Modified date")
    size = got.get("Content-Range", "").rpartition("/")[2] if status == 206 else got.get("Content-Length", "")
    return (url, etag, modified, size)


def _ask(opener, url: str, method: str, headers: Dict[str, str], timeout: float) -> Tuple[int, Any]:
    """``(status, headers)`` of one request, retried on 429 and 5xx (a few times: a short wait at most)."""
    request = urllib.request.Request(url, method=method)
    for name, value in headers.items():
        request.add_unredirected_header(name, value)
    for attempt in range(3):
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as exc:
            if exc.code not in _RETRY_STATUSES or attempt == 2:
                return exc.code, exc.headers
        except (OSError, ValueError) as exc:   # URLError, timeouts, resets; a malformed URL
            # a server silent for the whole timeout has used up what the user's HTTP timeout allows it: once
            timed_out = isinstance(exc, socket.timeout) or isinstance(getattr(exc, "reason", None), socket.timeout)
            if attempt == 2 or timed_out or isinstance(exc, ValueError):
                reason = getattr(exc, "reason", exc)
                raise _Unknown(f"the input {url} cannot be checked for changes ({reason})") from None
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _float(text: Optional[str], default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default

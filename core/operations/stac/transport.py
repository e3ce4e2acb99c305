"""HTTP for the STAC search: JSON documents within a deadline, extra headers for trusted origins only.

- **A deadline per request**, retries included: ``TILEWISE_HTTP_TIMEOUT`` (seconds, default 30, the
  setting GDAL's remote reads use too) is how long a catalogue may stay silent, and one request
  (retries included) may take twice that. A watchdog shuts the connection down when the deadline
  passes, so a server that never answers, or trickles a byte now and then, ends in one message
  naming the address and the setting; the body is read in chunks and the clock checked between them. A
  request in the main thread stops at once on Ctrl+C or SIGTERM; requests in helper threads are
  shut down by :meth:`Http.abort`.
- **Headers stay with their origin**: the extra headers (credentials) go to the catalogue's own
  origin (scheme, host and port) and to the hosts the user names (:class:`HeaderPolicy`), never
  elsewhere; a redirect to another origin drops them, as ``requests`` does. Redirects go to
  http(s) addresses only, and no other scheme (``file:``, ``ftp:``) is ever opened.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ...errors import CatalogError, ParameterError
from ...io.network import DEFAULT_HTTP_TIMEOUT, HTTP_TIMEOUT_ENV, timeout_seconds

log = logging.getLogger(__name__)


USER_AGENT = "tilewise (STAC search; +https://github.com/tilewise)"
TIMEOUT_SETTING = HTTP_TIMEOUT_ENV        # one setting with GDAL's remote reads (tilewise.core.io.network)
DEADLINE_FACTOR = 2.0                     # a whole request, retries included: twice the silence allowed
TRANSIENT = {429, 500, 502, 503, 504}
MAX_DOCUMENT = 512 * 1024 * 1024          # bytes of one JSON document
CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = Tuple[str, str, int]


def http_timeout() -> float:
    """How long a server may stay silent: ``TILEWISE_HTTP_TIMEOUT`` seconds (default 30, fractions kept); a bad
    value is a :class:`ParameterError` naming the setting."""
    text = os.environ.get(TIMEOUT_SETTING, "").strip()
    return timeout_seconds(text, TIMEOUT_SETTING) if text else float(DEFAULT_HTTP_TIMEOUT)


def retry_settings() -> Tuple[int, float]:
    """The engine's retry settings for remote data, so that one setting governs every request."""
    from ...io.sources import HTTP_DEFAULTS
    tries = os.environ.get("GDAL_HTTP_MAX_RETRY", HTTP_DEFAULTS["GDAL_HTTP_MAX_RETRY"])
    delay = os.environ.get("GDAL_HTTP_RETRY_DELAY", HTTP_DEFAULTS["GDAL_HTTP_RETRY_DELAY"])
    try:
        return max(0, int(tries)), max(0.0, float(delay))
    except ValueError:
        return int(HTTP_DEFAULTS["GDAL_HTTP_MAX_RETRY"]), float(HTTP_DEFAULTS["GDAL_HTTP_RETRY_DELAY"])


def is_url(location: str) -> bool:
    return location[:8].lower().startswith(("http://", "https://"))


# -- where the headers may go -------------------------------------------------------------------------------

def origin(url: str) -> Optional[Origin]:
    """``(scheme, host, port)`` of an http(s) URL, else None.

    >>> origin("https://Example.com/stac?x=1"), origin("http://127.0.0.1:8080/a"), origin("/data/c.json")
    (('https', 'example.com', 443), ('http', '127.0.0.1', 8080), None)
    """
    if not is_url(url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        return (scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS[scheme])
    except (ValueError, KeyError):
        return None


@dataclass(frozen=True)
class HostRule:
    """A host the user trusts with the headers: any port and scheme unless given."""

    host: str
    port: Optional[int] = None
    scheme: Optional[str] = None

    def admits(self, where: Origin) -> bool:
        return (where[1] == self.host and (self.port is None or self.port == where[2])
                and (self.scheme is None or self.scheme == where[0]))


def parse_header_hosts(value: Union[None, str, Sequence[str]]) -> Tuple[HostRule, ...]:
    """``"data.example.com, 127.0.0.1:8081, https://cdn.example.org"`` as host rules.

    >>> parse_header_hosts("data.example.com, 127.0.0.1:8081")
    (HostRule(host='data.example.com', port=None, scheme=None), HostRule(host='127.0.0.1', port=8081, scheme=None))
    """
    items = value.replace(";", ",").replace("\n", ",").split(",") if isinstance(value, str) else list(value or ())
    rules = []
    for text in (str(t).strip() for t in items):
        if not text:
            continue
        scheme = None
        if "://" in text:
            scheme, _, text = text.partition("://")
            scheme = scheme.lower()
            text = text.split("/", 1)[0]
        try:
            parts = urllib.parse.urlsplit("//" + text)
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            host, port = "", None
        if not host or scheme not in (None, "http", "https") or "/" in text or "@" in text:
            raise ParameterError(f"The header host {text!r} is not a host name, host:port or http(s)://host[:port] "
                                 "(e.g. data.example.com or 127.0.0.1:8081).")
        rules.append(HostRule(host, port, scheme))
    return tuple(rules)


class HeaderPolicy:
    """The extra headers, and the origins that may receive them: the catalogue's and the hosts named."""

    def __init__(self, headers: Optional[Mapping[str, str]] = None, catalogue: Optional[str] = None,
                 hosts: Sequence[HostRule] = ()) -> None:
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        self.home = origin(catalogue) if catalogue else None
        self.hosts = tuple(hosts)

    def allows(self, url: str) -> bool:
        where = origin(url)
        if where is None or not self.headers:
            return False
        return where == self.home or any(rule.admits(where) for rule in self.hosts)

    def for_url(self, url: str) -> Dict[str, str]:
        """The headers to send to ``url``: all of them to a trusted origin, none elsewhere."""
        return dict(self.headers) if self.allows(url) else {}


# -- one request within its deadline ------------------------------------------------------------------------

class _Expired(Exception):
    pass


class _Attempt:
    """One try of a request: its sockets, shut down when its deadline passes or the search is aborted."""

    def __init__(self) -> None:
        self.expired = False
        self.hops: List[str] = []           # redirects followed, in order
        self._socks: List[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if not self.expired:
                return
        _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)       # unblocks a recv in another thread at once
    except OSError:
        pass


def _watched(base: type, attempt: _Attempt) -> type:
    """``base`` (HTTPConnection or HTTPSConnection) whose new sockets ``attempt`` can shut down."""

    class Connection(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create = self._create_connection

            def create_watched(*a: Any, **kw: Any) -> socket.socket:
                sock = create(*a, **kw)
                attempt.watch(sock)
                return sock

            self._create_connection = create_watched

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, attempt: _Attempt) -> None:
        super().__init__()
        self.attempt = attempt

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self.attempt), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, attempt: _Attempt) -> None:
        super().__init__()
        self.attempt = attempt

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection, self.attempt), req, context=self._context)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only; the extra headers go along only to a trusted origin."""

    max_redirections = 10

    def __init__(self, policy: HeaderPolicy, attempt: _Attempt) -> None:
        super().__init__()
        self.policy = policy
        self.attempt = attempt

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Optional[urllib.request.Request]:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise CatalogError(f"{req.full_url.split('?')[0]} redirects to {newurl.split('?')[0]}, which is not an "
                               "http(s) address: refused.")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            self.attempt.hops.append(newurl)
            # the extra headers were added unredirected: urllib carried none of them; add them back if trusted
            for key, value in self.policy.for_url(newurl).items():
                new.add_unredirected_header(key, value)
        return new


class Http:
    """JSON over HTTP(S), or from local files, with extra headers for trusted origins and a deadline per
    request (retries of transient errors included)."""

    def __init__(self, headers: Union[None, Mapping[str, str], HeaderPolicy] = None,
                 timeout: Optional[float] = None) -> None:
        self.policy = headers if isinstance(headers, HeaderPolicy) else HeaderPolicy(headers)
        self.timeout = http_timeout() if timeout is None else float(timeout)
        self.retries, self.delay = retry_settings()
        self._aborted = threading.Event()
        self._live: List[_Attempt] = []
        self._lock = threading.Lock()

    @property
    def headers(self) -> Dict[str, str]:
        return self.policy.headers

    def abort(self) -> None:
        """Shut down every request under way (in any thread); later requests fail at once."""
        self._aborted.set()
        with self._lock:
            live = list(self._live)
        for attempt in live:
            attempt.expire()

    def get(self, location: str) -> Dict[str, Any]:
        """The JSON document at a URL or local path."""
        if not is_url(location):
            return read_local(location)
        return decode(location, self._request(location, None, {})[0])

    def post(self, url: str, body: Mapping[str, Any], headers: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        return decode(url, self.fetch(url, body, headers))

    def fetch(self, url: str, body: Optional[Mapping[str, Any]] = None,
              headers: Optional[Mapping[str, str]] = None) -> bytes:
        """The raw answer of a GET to an http(s) URL, or with ``body`` of a JSON POST."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        return self._request(url, data, dict(headers or {}))[0]

    def final_url(self, url: str) -> Tuple[str, bool]:
        """Where GDAL should open ``url`` and whether with the headers: ``(url, True)`` unless a redirect
        leaves the trusted origins, then ``(first untrusted address, False)`` (curl would send custom
        headers along). Asks for one byte; any failure leaves the answer to GDAL's own open."""
        try:
            _, hops = self._request(url, None, {"Range": "bytes=0-0"}, body=False)
        except CatalogError:
            return url, True
        for hop in hops:
            if not self.policy.allows(hop):
                return hop, False
        return url, True

    @property
    def deadline(self) -> float:
        """Seconds one request may take, retries included."""
        return DEADLINE_FACTOR * self.timeout

    def _request(self, url: str, data: Optional[bytes], extra: Dict[str, str],
                 body: bool = True) -> Tuple[bytes, List[str]]:
        deadline = time.monotonic() + self.deadline
        wait = self.delay
        for attempt_no in range(self.retries + 1):
            try:
                return self._attempt(url, data, extra, deadline, body)
            except urllib.error.HTTPError as exc:
                if exc.code not in TRANSIENT or attempt_no == self.retries:
                    raise http_error(url, exc) from None
                pause = _retry_after(exc, wait)
                last = http_error(url, exc)
            except _Expired:
                raise self._late(url) from None
            except (socket.timeout, TimeoutError, ConnectionResetError, http.client.HTTPException) as exc:
                last = CatalogError(f"The STAC catalogue at {_short(url)} did not answer ({exc or 'timed out'}); "
                                    "try again later.")
                if attempt_no == self.retries:
                    raise last from None
                pause = wait
            except urllib.error.URLError as exc:
                raise CatalogError(f"Cannot reach the STAC catalogue at {url}: {_reason(exc)}. Check the address, "
                                   "the network and any proxy setting (HTTPS_PROXY).") from None
            if time.monotonic() + pause >= deadline:
                raise self._late(url, last) from None
            log.info(f"{_short(url)}: busy or failing, trying again in {pause:g} s")
            if self._aborted.wait(pause):
                raise CatalogError("The search was stopped.")
            wait *= 2
        raise AssertionError("unreachable")

    def _late(self, url: str, last: Optional[CatalogError] = None) -> CatalogError:
        why = f" (last answer: {last})" if last is not None else ""
        return CatalogError(f"The STAC catalogue at {_short(url)} gave no complete answer within {self.deadline:g} s"
                            f"{why}. Try again later, or give a slow catalogue more time with the setting "
                            f"{TIMEOUT_SETTING} (now {self.timeout:g}: seconds a server may stay silent; a "
                            "catalogue request may take twice that, retries included).")

    def _attempt(self, url: str, data: Optional[bytes], extra: Dict[str, str], deadline: float,
                 body: bool) -> Tuple[bytes, List[str]]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Expired()
        if self._aborted.is_set():
            raise CatalogError("The search was stopped.")
        attempt = _Attempt()
        request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        request.add_header("Accept", "application/geo+json, application/json")
        request.add_header("User-Agent", USER_AGENT)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for key, value in extra.items():
            request.add_header(key, value)
        for key, value in self.policy.for_url(url).items():
            request.add_unredirected_header(key, value)
        opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), _HTTPHandler(attempt), _HTTPSHandler(attempt),
                        _Redirects(self.policy, attempt), urllib.request.HTTPDefaultErrorHandler(),
                        urllib.request.HTTPErrorProcessor()):
            opener.add_handler(handler)
        watchdog = threading.Timer(left, attempt.expire)
        watchdog.daemon = True
        with self._lock:
            self._live.append(attempt)
        watchdog.start()
        try:
            with opener.open(request, timeout=min(left, self.timeout)) as response:
                raw = _read_body(url, response, deadline, attempt) if body else b""
            return raw, attempt.hops
        except urllib.error.HTTPError as exc:
            if attempt.expired:
                raise _Expired() from None
            exc.tilewise_detail = _server_message(exc)       # type: ignore[attr-defined]  # within the deadline
            raise
        except (OSError, http.client.HTTPException):
            if attempt.expired or time.monotonic() >= deadline:
                raise _Expired() from None
            raise
        finally:
            watchdog.cancel()
            with self._lock:
                self._live.remove(attempt)


def _read_body(url: str, response: Any, deadline: float, attempt: _Attempt) -> bytes:
    chunks, size = [], 0
    while True:
        if time.monotonic() >= deadline or attempt.expired:
            raise _Expired()
        chunk = response.read1(CHUNK)
        if not chunk:
            if attempt.expired:
                raise _Expired()
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_DOCUMENT:
            raise CatalogError(f"{_short(url)} sent more than {MAX_DOCUMENT // 2**20} MB: not a STAC document.")
        chunks.append(chunk)


def _short(url: str) -> str:
    return url.split("?")[0]


def read_local(location: str) -> Dict[str, Any]:
    path = urllib.request.url2pathname(location[7:]) if location.startswith("file://") else location
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DOCUMENT + 1)
    except FileNotFoundError:
        raise CatalogError(f"STAC catalogue file not found: {path}") from None
    except OSError as exc:
        raise CatalogError(f"Cannot read the STAC catalogue file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_DOCUMENT:
        raise CatalogError(f"{path} is larger than {MAX_DOCUMENT // 2**20} MB: not a STAC document.")
    return decode(path, raw)


def decode(where: str, raw: Union[bytes, str], kind: str = "") -> Dict[str, Any]:
    """A JSON object, or one clear message (not JSON, not an object, nested too deeply)."""
    try:
        value = json.loads(raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise CatalogError(f"{_short(where)} is JSON nested too deeply to be a STAC document.") from None
    except (ValueError, UnicodeDecodeError):
        what = f" ({kind.split(';')[0]})" if kind else ""
        raise CatalogError(f"{_short(where)} did not give JSON{what}: is it the address of a STAC API, catalogue or "
                           "ItemCollection?") from None
    if not isinstance(value, dict):
        raise CatalogError(f"{_short(where)} is JSON but not a STAC object (a {type(value).__name__}).")
    return value


def _reason(exc: urllib.error.URLError) -> str:
    reason = exc.reason
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def _retry_after(exc: urllib.error.HTTPError, default: float) -> float:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return min(60.0, max(0.0, float(value))) if value else default
    except ValueError:
        return default


def http_error(url: str, exc: urllib.error.HTTPError) -> CatalogError:
    try:
        reason = HTTPStatus(exc.code).phrase
    except ValueError:
        reason = exc.reason or ""
    detail = getattr(exc, "tilewise_detail", None)
    detail = _server_message(exc) if detail is None else detail
    where = _short(url)
    if exc.code in (401, 403):
        return CatalogError(f"The STAC catalogue at {where} refused access (HTTP {exc.code} {reason}){detail}; "
                            "check the credentials (extra HTTP headers, e.g. an API key, and the hosts they may "
                            "go to).")
    if exc.code == 404:
        return CatalogError(f"Not found: {where} (HTTP 404 {reason}); check the address of the STAC catalogue.")
    return CatalogError(f"The STAC catalogue at {where} answered HTTP {exc.code} {reason}{detail}.")


def _server_message(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(4096).decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - the status says enough without the body
        log.debug("The body of the HTTP %s answer cannot be read", exc.code, exc_info=True)
        return ""
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            text = str(value.get("description") or value.get("detail") or value.get("message") or text)
    except (ValueError, RecursionError):
        pass
    text = " ".join(text.split())
    return f": {text[:300]}" if text else ""

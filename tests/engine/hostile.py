"""Hostile servers the tests start on 127.0.0.1 and stop: one that accepts connections and never answers,
one that trickles a byte at a time, and a scripted HTTP server (fixed answers per path, redirects, a log of
the headers each request carried) to stand for "another host" on another port.

Each binds an ephemeral port on 127.0.0.1, runs in daemon threads and stops on ``close()`` (or as a
context manager). Importable from QGIS's Python too: standard library only."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union


class _Acceptor:
    """Accepts connections on 127.0.0.1 in a thread and hands each to ``self.serve`` in a thread of its own."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: List[socket.socket] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._guard, args=(conn,), daemon=True).start()

    def _guard(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except OSError:
            pass

    def serve(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stopped(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True once the server is closing."""
        return self._stop.wait(seconds)

    def close(self) -> None:
        self._stop.set()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self._sock.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


    def drain(self, conn: socket.socket) -> None:
        """Read what ``conn`` sends, answer nothing, until it closes or the server does."""
        conn.settimeout(0.2)
        while not self.stopped(0):
            try:
                if conn.recv(65536) == b"":
                    return
            except socket.timeout:
                continue


class SilentServer(_Acceptor):
    """Accepts every connection, reads what is sent and never answers a byte."""

    def serve(self, conn: socket.socket) -> None:
        self.drain(conn)


class TrickleServer(_Acceptor):
    """Answers 200 with a JSON body that never ends, one byte every ``every`` seconds."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
        conn.sendall(b"{")
        while not self.stopped(self.every):
            conn.sendall(b" ")


Answer = Union[Tuple[int, Dict[str, str], bytes], Callable[[str], Tuple[int, Dict[str, str], bytes]]]


@dataclass
class Seen:
    """One request a :class:`ScriptedServer` received."""

    method: str
    path: str
    headers: Dict[str, str] = field(default_factory=dict)


class ScriptedServer:
    """An HTTP server on 127.0.0.1 with fixed answers per path (``answers[path] = (status, headers, body)``,
    or a function of the path), 404 elsewhere, and a log of every request and the headers it carried
    (``seen``). Supports GET, HEAD and POST; HEAD answers the GET's headers with no body; a GET with a
    ``Range: bytes=a-b`` header gets 206 and that slice."""

    def __init__(self, answers: Optional[Dict[str, Answer]] = None, port: int = 0) -> None:
        self.answers: Dict[str, Answer] = dict(answers or {})
        self.seen: List[Seen] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body_wanted: bool) -> None:
                path = self.path.split("?", 1)[0]
                owner.seen.append(Seen(self.command, self.path, {k: v for k, v in self.headers.items()}))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer = owner.answers.get(path)
                if callable(answer):
                    answer = answer(self.path)
                status, headers, body = answer if answer is not None else (404, {}, b"not found")
                rng = self.headers.get("Range", "")
                if status == 200 and rng.startswith("bytes="):
                    start_s, _, end_s = rng[6:].partition("-")
                    start = int(start_s)
                    end = min(int(end_s) if end_s else len(body) - 1, len(body) - 1)
                    headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(body)}"}
                    body, status = body[start:end + 1], 206
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body_wanted:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_POST(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    def headers_sent_to(self, path_prefix: str) -> List[Dict[str, str]]:
        """The headers of every request whose path starts with ``path_prefix``."""
        return [s.headers for s in self.seen if s.path.startswith(path_prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "ScriptedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()

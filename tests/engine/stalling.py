"""A server that answers the header of a file and never its pixels, on 127.0.0.1 (standard library only:
the engine tests and QGIS's Python import it)."""

from __future__ import annotations

import socket

from hostile import _Acceptor


class StallingServer(_Acceptor):
    """Serves one file over HTTP/1.1 (HEAD, GET with ``Range``) but never answers a request for bytes at or
    beyond ``cutoff``: the header of a GeoTIFF is read, its pixels never come. ``stalled`` counts the
    requests it left unanswered."""

    def __init__(self, data: bytes, cutoff: int) -> None:
        self.data, self.cutoff, self.stalled = data, cutoff, 0
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        while not self.stopped(0):
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                if not self._answer(conn, head.decode("latin-1")):
                    self.stalled += 1
                    self.drain(conn)
                    return

    def _answer(self, conn: socket.socket, head: str) -> bool:
        lines = head.split("\r\n")
        method = lines[0].split(" ")[0]
        ranges = [line.split("=", 1)[1] for line in lines[1:] if line.lower().startswith("range:")]
        size = len(self.data)
        if method == "HEAD" or not ranges:
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nAccept-Ranges: bytes\r\n\r\n".encode()
                         + (self.data if method != "HEAD" else b""))
            return True
        first, _, last = ranges[0].partition("-")
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start >= self.cutoff:
            return False
        body = self.data[start:end + 1]
        conn.sendall(f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n"
                     f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n".encode() + body)
        return True

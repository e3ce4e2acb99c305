"""Real servers the tests start on 127.0.0.1 and stop: nginx (HTTP range requests), a STAC API
(``rustac serve``, memory backend) and a Dask cluster (``dask scheduler`` + ``dask worker`` processes).

Importable from QGIS's Python too (the QGIS tests use nginx and rustac): no rasterio here."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def stop(proc: Optional[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop one process this test started, by its id."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


# -- nginx ---------------------------------------------------------------------------------------------------

def nginx_binary() -> Optional[str]:
    for name in NGINX_CANDIDATES:
        found = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


@dataclass
class Request:
    method: str
    path: str
    status: int
    range: Optional[str]        # the Range header, e.g. "bytes=0-16383"
    sent: int                   # body bytes sent
    user_agent: str
    marker: str                 # the X-Tilewise-Test request header

    def byte_range(self) -> Optional[tuple]:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.range or "")
        return (int(m.group(1)), int(m.group(2))) if m else None


_LOG_FORMAT = ('$request_method $uri $status "$http_range" $body_bytes_sent "$http_user_agent" '
               '"$http_x_tilewise_test"')
_LOG_LINE = re.compile(r'(\S+) (\S+) (\d+) "([^"]*)" (\d+) "([^"]*)" "([^"]*)"')


class Nginx:
    """nginx serving ``root`` on a free 127.0.0.1 port, with its own config, prefix and access log in
    ``folder``. ``/forbidden/`` answers 403; ``/busy/`` serves ``root`` too, but at most a few requests a
    second (more get 503, as an overloaded server would)."""

    def __init__(self, root: Path, folder: Path) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed: `make system-deps` installs it (apt package nginx)")
        self.root, self.folder, self.binary = Path(root), Path(folder), binary
        self.port = free_port()
        self.access_log = self.folder / "access.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        f = self.folder
        user = "user root;\n" if os.geteuid() == 0 else ""   # as root the workers would drop to nobody
        return f"""daemon off;
worker_processes 1;
{user}pid {f}/nginx.pid;
error_log {f}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format ranges '{_LOG_FORMAT}';
    access_log {self.access_log} ranges;
    client_body_temp_path {f}/body; proxy_temp_path {f}/proxy; fastcgi_temp_path {f}/fastcgi;
    uwsgi_temp_path {f}/uwsgi; scgi_temp_path {f}/scgi;
    default_type application/octet-stream;
    limit_req_zone $binary_remote_addr zone=busy:1m rate=10r/s;
    limit_req_status 503;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location /forbidden/ {{ deny all; }}
        location /busy/ {{ alias {self.root}/; limit_req zone=busy; }}
    }}
}}
"""

    def start(self) -> "Nginx":
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        conf.write_text(self._config())
        args = [self.binary, "-p", str(self.folder), "-c", str(conf)]
        if _nginx_has_error_log_option(self.binary):
            args += ["-e", str(self.folder / "error.log")]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_for_port(self.port, self.proc, "nginx")
        return self

    def stop(self) -> None:
        stop(self.proc, signal.SIGQUIT)        # graceful: the master waits for its worker

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def clear_log(self) -> None:
        self.access_log.write_text("")

    def requests(self) -> List[Request]:
        out = []
        for line in self.access_log.read_text().splitlines():
            m = _LOG_LINE.fullmatch(line.strip())
            if m:
                method, path, status, rng, sent, ua, marker = m.groups()
                out.append(Request(method, path, int(status), None if rng == "-" else rng, int(sent), ua,
                                   "" if marker == "-" else marker))
        return out


def _nginx_has_error_log_option(binary: str) -> bool:
    """``-e`` (error log before the config is read) exists since nginx 1.19.5."""
    out = subprocess.run([binary, "-h"], capture_output=True, text=True).stderr
    return "-e filename" in out


# -- STAC API ------------------------------------------------------------------------------------------------

def rustac_binary(python: Optional[str] = None) -> str:
    """The ``rustac`` command installed beside ``python`` (the engine's environment: ``make venv``)."""
    folder = os.path.dirname(python or sys.executable)
    path = os.path.join(folder, "rustac")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"rustac is not installed in {folder}: `make venv` installs it (the test extra)")
    return path


class Rustac:
    """``rustac serve`` (memory backend) on a free 127.0.0.1 port, loaded with ``hrefs`` (collections,
    items and ItemCollections, collections first) at start."""

    def __init__(self, hrefs: Sequence[Path], folder: Path, binary: Optional[str] = None) -> None:
        self.hrefs = [str(h) for h in hrefs]
        self.folder = Path(folder)
        self.binary = binary or rustac_binary()
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Rustac":
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "rustac.log", "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "serve", "--addr", f"127.0.0.1:{self.port}", *self.hrefs],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.folder)
        finally:
            log.close()
        wait_for_port(self.port, self.proc, "rustac serve", timeout=60)
        return self

    def stop(self) -> None:
        stop(self.proc)

    def log(self) -> str:
        return (self.folder / "rustac.log").read_text(errors="replace")

    def __enter__(self) -> "Rustac":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- Dask ----------------------------------------------------------------------------------------------------

def dask_command() -> List[str]:
    """The ``dask`` command of this interpreter's environment."""
    return [os.path.join(os.path.dirname(sys.executable), "dask")]


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (one thread each, no nanny: a
    killed worker stays dead), the engine importable on them through PYTHONPATH."""

    def __init__(self, folder: Path, n_workers: int = 2) -> None:
        self.folder = Path(folder)
        self.n_workers = n_workers
        self.scheduler: Optional[subprocess.Popen] = None
        self.workers: List[subprocess.Popen] = []
        self.address = ""

    def _spawn(self, args: List[str], log_name: str) -> subprocess.Popen:
        from support import subprocess_env
        log = open(self.folder / log_name, "ab")
        try:
            return subprocess.Popen(dask_command() + args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=subprocess_env(), cwd=self.folder)
        finally:
            log.close()

    def start(self) -> "DaskCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--dashboard-address", "127.0.0.1:0"], "scheduler.log")
        wait_for_port(port, self.scheduler, "dask scheduler")
        self.address = f"tcp://127.0.0.1:{port}"
        for _ in range(self.n_workers):
            self.add_worker()
        self.wait_for_workers(self.n_workers)
        return self

    def add_worker(self) -> subprocess.Popen:
        i = len(self.workers)
        proc = self._spawn(["worker", self.address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                            "--dashboard-address", "127.0.0.1:0", "--name", f"w{i}", "--memory-limit", "4GiB"],
                           f"worker{i}.log")
        self.workers.append(proc)
        return proc

    def live_workers(self) -> List[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        from distributed import Client
        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)

    def ensure_workers(self) -> None:
        """Replace workers a test killed, so that the next test has the whole cluster."""
        missing = self.n_workers - len(self.live_workers())
        for _ in range(missing):
            self.add_worker()
        if missing:
            self.wait_for_workers(self.n_workers)

    def stop(self) -> None:
        for w in self.workers:
            stop(w)
        stop(self.scheduler)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")))

    def __enter__(self) -> "DaskCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

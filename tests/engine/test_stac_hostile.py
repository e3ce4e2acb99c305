"""The STAC search against hostile or broken catalogues (issue 26, A3-A8), through the command line: silent and
trickling catalogues end within the deadline and on SIGTERM / Ctrl+C, credentials stay with their origin,
a remote catalogue reads no local file nor stdin, the output folder keeps the user's files, and long ids,
deep JSON and endless paging give one message or warning each. Servers: :mod:`hostile` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from tilewise.core.operations.stac import client as stac_client

from hostile import ScriptedServer, SilentServer, TrickleServer, wait_until
from support import signals_as_a_terminal_sends_them, subprocess_env

SECRET = "Bearer SECRET-26"
KEY = "KEY-26"
HEADERS = ["--header", f"Authorization: {SECRET}", "--header", f"X-Api-Key: {KEY}"]
JSON = {"Content-Type": "application/json"}


def tiff_bytes(value: int = 7) -> bytes:
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=16, height=16, count=1, dtype="uint16", crs="EPSG:32633",
                      transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000), nodata=0) as dst:
            dst.write(np.full((1, 16, 16), value, np.uint16))
        return mem.read()


def item(item_id: str, red: str, when: str = "2024-05-03T10:00:00Z") -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "c",
            "geometry": {"type": "Polygon",
                         "coordinates": [[[15, 45], [15.1, 45], [15.1, 45.1], [15, 45.1], [15, 45]]]},
            "bbox": [15, 45, 15.1, 45.1], "properties": {"datetime": when}, "links": [],
            "assets": {"red": {"href": red, "type": "image/tiff; application=geotiff", "roles": ["data"]}}}


def collection(*items: dict, links: Optional[List[dict]] = None) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(items), "links": links or []}).encode()


def answer(body: bytes, status: int = 200, headers: Optional[Dict[str, str]] = None):
    return (status, {**JSON, **(headers or {})}, body)


def cli(*args, cwd, env: Optional[Dict[str, str]] = None, timeout: float = 120, **kwargs):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd,
                          env={**subprocess_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilewise: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0][len("tilewise: error: "):]


def sent(server: ScriptedServer, prefix: str) -> List[set]:
    """The credential headers each request under ``prefix`` carried (lower-case names)."""
    return [{k.lower() for k in h if k.lower() in ("authorization", "x-api-key")}
            for h in server.headers_sent_to(prefix)]


@pytest.fixture
def two_hosts():
    with ScriptedServer() as home, ScriptedServer() as other:
        yield home, other


# -- A3: a deadline per catalogue request; SIGTERM and Ctrl+C end a request at once ------------------------------

@pytest.mark.parametrize("kind", ["trickle", "silent"])
def test_a_slow_or_silent_catalogue_ends_at_the_deadline_with_one_message(tmp_path, kind):
    server = TrickleServer(every=0.5) if kind == "trickle" else SilentServer()
    with server:
        url = f"{server.url}/stac/items.json"
        start = time.monotonic()
        proc = cli("stac", "search", url, "--assets", "red", "-q", "-o", "out", cwd=tmp_path,
                   env={"TILEWISE_HTTP_TIMEOUT": "2", "GDAL_HTTP_MAX_RETRY": "5", "GDAL_HTTP_RETRY_DELAY": "0.5"})
        took = time.monotonic() - start
        accepted = server.accepted
    assert error_line(proc) == (f"The STAC catalogue at {url} gave no complete answer within 4 s. Try again later, "
                                "or give a slow catalogue more time with the setting TILEWISE_HTTP_TIMEOUT (now 2: "
                                "seconds a server may stay silent; a catalogue request may take twice that, retries "
                                "included).")
    assert 4 <= took < 40                       # not 6 tries x 60 s; the margin is for a loaded machine
    # a trickle is never silent: one try to the deadline; silence ends a try, and the deadline the retries
    assert accepted == 1 if kind == "trickle" else 1 < accepted <= 3
    assert not (tmp_path / "out").exists()


def test_a_bad_timeout_setting_is_one_message(tmp_path):
    proc = cli("stac", "search", "http://127.0.0.1:9/x.json", "--assets", "red", "-q", "-o", "out", cwd=tmp_path,
               env={"TILEWISE_HTTP_TIMEOUT": "soon"})
    assert error_line(proc) == "TILEWISE_HTTP_TIMEOUT='soon' is not a number of seconds above 0 (default 30)."


def _stopped_while_waiting(tmp_path, server, url: str, signum: int, until) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "tilewise", "stac", "search", url, "--assets", "red", "-o", "out"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=signals_as_a_terminal_sends_them)
    try:
        assert wait_until(until, 60), "the catalogue was never asked"
        time.sleep(0.3)
        sent_at = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 15, took                      # within seconds, not at the deadline (30 s of silence)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum, how, code", [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "Ctrl+C", 130)])
def test_sigterm_and_ctrl_c_end_a_catalogue_request_within_seconds(tmp_path, signum, how, code):
    with SilentServer() as server:
        proc = _stopped_while_waiting(tmp_path, server, f"{server.url}/stac", signum, lambda: server.accepted >= 1)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"tilewise: stopped ({how})"), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("signum, how, code", [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "Ctrl+C", 130)])
def test_sigterm_and_ctrl_c_end_the_wait_before_a_retry_within_seconds(tmp_path, signum, how, code):
    with ScriptedServer() as busy:
        busy.answers["/stac"] = answer(b'{"message": "busy"}', 503, {"Retry-After": "40"})
        proc = _stopped_while_waiting(tmp_path, busy, f"{busy.url}/stac", signum, lambda: len(busy.seen) >= 1)
    assert "busy or failing, trying again in 40 s" in proc.stderr and len(busy.seen) == 1, proc.stderr
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"tilewise: stopped ({how})"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_ends_item_requests_of_a_static_catalogue_in_helper_threads(tmp_path):
    with SilentServer() as silent, ScriptedServer() as home:
        catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "cat", "description": "d",
                   "links": [{"rel": "item", "href": f"{silent.url}/items/{i}.json"} for i in range(4)]}
        home.answers["/catalog.json"] = answer(json.dumps(catalog).encode())
        proc = _stopped_while_waiting(tmp_path, silent, f"{home.url}/catalog.json", signal.SIGTERM,
                                      lambda: silent.accepted >= 4)
    assert proc.returncode == 143 and "tilewise: stopped (SIGTERM)" in proc.stderr, proc.stderr


# -- A4: credentials go to the catalogue's origin only ----------------------------------------------------------

def test_headers_stay_with_the_catalogue_origin(tmp_path, two_hosts):
    """Assets on another host:port, a static catalogue's item on another host, a 302 to another host: none
    gets the headers; the catalogue's own origin does."""
    home, other = two_hosts
    tif = tiff_bytes()
    other.answers["/b.tif"] = (200, {"Content-Type": "image/tiff"}, tif)
    home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tif)
    other.answers["/items/it2.json"] = answer(json.dumps(item("it2", f"{home.url}/a.tif")).encode())
    home.answers["/ic.json"] = answer(collection(item("it1", f"{other.url}/b.tif"), item("it0", f"{home.url}/a.tif",
                                                                                            "2024-05-01T10:00:00Z")))
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "cat", "description": "d",
               "links": [{"rel": "item", "href": f"{other.url}/items/it2.json"}]}
    home.answers["/catalog.json"] = answer(json.dumps(catalog).encode())
    home.answers["/moved.json"] = (302, {"Location": f"{other.url}/ic2.json"}, b"")
    other.answers["/ic2.json"] = answer(collection(item("it3", f"{other.url}/b.tif")))

    proc = cli("stac", "search", f"{home.url}/ic.json", "--assets", "red", *HEADERS, "-o", "ic", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"The extra HTTP headers go to http://127.0.0.1:{home.port} only, not to the assets on " \
           f"http://127.0.0.1:{other.port}" in proc.stderr
    assert sent(home, "/ic.json") == [{"authorization", "x-api-key"}]
    assert sent(home, "/a.tif") and all(s == {"authorization", "x-api-key"} for s in sent(home, "/a.tif"))
    assert sent(other, "/b.tif") and all(s == set() for s in sent(other, "/b.tif"))

    proc = cli("stac", "search", f"{home.url}/catalog.json", "--assets", "red", *HEADERS, "-q", "-o", "static",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sent(home, "/catalog.json") == [{"authorization", "x-api-key"}]
    assert sent(other, "/items/it2.json") == [set()]

    proc = cli("stac", "search", f"{home.url}/moved.json", "--assets", "red", *HEADERS, "-q", "-o", "moved",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sent(home, "/moved.json") == [{"authorization", "x-api-key"}]
    assert sent(other, "/ic2.json") == [set()]
    for folder in ("ic", "static", "moved"):
        for path in (tmp_path / folder).iterdir():
            assert SECRET not in path.read_text() and KEY not in path.read_text()


def test_named_header_hosts_get_the_headers_and_a_redirected_asset_does_not(tmp_path, two_hosts):
    home, other = two_hosts
    tif = tiff_bytes(3)
    other.answers["/b.tif"] = (200, {"Content-Type": "image/tiff"}, tif)
    with ScriptedServer() as third:
        third.answers["/c.tif"] = (200, {"Content-Type": "image/tiff"}, tif)
        home.answers["/a.tif"] = (302, {"Location": f"{third.url}/c.tif"}, b"")
        home.answers["/ic.json"] = answer(collection(item("it1", f"{other.url}/b.tif"),
                                                     item("it2", f"{home.url}/a.tif", "2024-06-01T10:00:00Z")))
        proc = cli("stac", "search", f"{home.url}/ic.json", "--assets", "red", *HEADERS, "--header-hosts",
                   f"127.0.0.1:{other.port}", "-q", "-o", "out", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert sent(other, "/b.tif") and all(s == {"authorization", "x-api-key"} for s in sent(other, "/b.tif"))
        # the asset on the catalogue's origin redirects to a third host: GDAL reads it there without them
        assert sent(home, "/a.tif") and all(s == {"authorization", "x-api-key"} for s in sent(home, "/a.tif"))
        assert sent(third, "/c.tif") and all(s == set() for s in sent(third, "/c.tif"))
    text = Path(proc.stdout.split()[1]).read_text()     # the VRT keeps the asset's own href
    assert urllib.parse.quote(f"{home.url}/a.tif", safe="") in text and str(third.port) not in text
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    assert record["search"]["header_hosts"] == [f"127.0.0.1:{other.port}"]


def test_bad_header_hosts_are_one_message(tmp_path):
    proc = cli("stac", "search", "http://127.0.0.1:9/x.json", "--assets", "red", "--header-hosts", "ftp://x",
               "-q", "-o", "out", cwd=tmp_path)
    assert error_line(proc).startswith("The header host 'x' is not a host name, host:port or http(s)://host[:port]")


# -- A5: a remote catalogue may point at remote addresses only ---------------------------------------------------

def test_a_remote_catalogue_cannot_make_tilewise_read_local_files(tmp_path, two_hosts):
    home, _ = two_hosts
    local = tmp_path / "local.tif"
    local.write_bytes(tiff_bytes(9))
    home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tiff_bytes())
    home.answers["/ic.json"] = answer(collection(item("good", f"{home.url}/a.tif"),
                                                 item("bad", local.as_uri(), "2024-05-04T10:00:00Z")))
    proc = cli("stac", "search", f"{home.url}/ic.json", "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (f"Warning: 1 items were left out: their assets point at addresses the catalogue "
                                   f"may not make Tilewise read (item bad: asset {local.as_uri()} (it is not a "
                                   "remote address, and the catalogue was read over HTTP)).")
    assert [Path(p).name for p in proc.stdout.split()] == ["good.vrt"]
    assert "local.tif" not in (tmp_path / "out" / "good.vrt").read_text()

    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRET-LINE\n")
    home.answers["/only.json"] = answer(collection(item("bad", secret.as_uri())))
    proc = cli("stac", "search", f"{home.url}/only.json", "--assets", "red", "-q", "-o", "only", cwd=tmp_path)
    assert error_line(proc) == (f"No item of {home.url}/only.json can be used: their assets point at addresses the "
                                f"catalogue may not make Tilewise read (item bad: asset {secret.as_uri()} (it is not "
                                "a remote address, and the catalogue was read over HTTP)).")
    assert "SECRET-LINE" not in proc.stderr


def test_a_remote_static_catalogue_cannot_link_to_a_local_item(tmp_path, two_hosts):
    home, _ = two_hosts
    home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tiff_bytes())
    planted = tmp_path / "hostname.json"
    planted.write_text(json.dumps(item("local-item", f"{home.url}/a.tif")))
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "cat", "description": "d",
               "links": [{"rel": "item", "href": planted.as_uri()}, {"rel": "item", "href": "/vsistdin/"},
                         {"rel": "item", "href": "items/ok.json"}]}
    home.answers["/catalog.json"] = answer(json.dumps(catalog).encode())
    home.answers["/items/ok.json"] = answer(json.dumps(item("ok", f"{home.url}/a.tif")).encode())
    proc = cli("stac", "search", f"{home.url}/catalog.json", "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (f"Warning: 2 links of the catalogue were not followed: {planted.as_uri()} (linked "
                                   f"from {home.url}/catalog.json): a catalogue read over HTTP may link to http(s) "
                                   "addresses only (and 1 more).")
    assert [Path(p).name for p in proc.stdout.split()] == ["ok.vrt"]


@pytest.mark.parametrize("where, href", [("remote", "/vsistdin/"), ("remote", "file:///dev/stdin"),
                                         ("local", "/vsistdin/"), ("local", "file:///dev/stdin"),
                                         ("local", "/proc/self/fd/0"), ("local", "/vsigzip//dev/stdin")])
def test_no_catalogue_makes_tilewise_read_stdin(tmp_path, two_hosts, where, href):
    home, _ = two_hosts
    home.answers["/ic.json"] = answer(collection(item("stdin", href)))
    (tmp_path / "ic.json").write_bytes(collection(item("stdin", href)))
    location = f"{home.url}/ic.json" if where == "remote" else str(tmp_path / "ic.json")
    read_end, write_end = os.pipe()                 # a stdin that stays open: reading it would block
    try:
        proc = cli("stac", "search", location, "--assets", "red", "-q", "-o", "out", cwd=tmp_path, stdin=read_end,
                   timeout=60)
    finally:
        os.close(read_end)
        os.close(write_end)
    why = "it reads standard input or a device"
    assert error_line(proc) == (f"No item of {location} can be used: their assets point at addresses the catalogue "
                                f"may not make Tilewise read (item stdin: asset {href} ({why})).")


# -- A6: the output folder keeps the user's files -----------------------------------------------------------------

@pytest.fixture
def one_item(two_hosts):
    home, _ = two_hosts
    home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tiff_bytes())
    home.answers["/ic.json"] = answer(collection(item("it1", f"{home.url}/a.tif")))
    return f"{home.url}/ic.json"


def test_files_tilewise_did_not_write_are_not_replaced(tmp_path, one_item):
    out = tmp_path / "out"
    out.mkdir()
    mine = {"it1.vrt": "my own VRT", "items.json": "my items", "search.json": '{"mine": true}', "notes.txt": "keep"}
    for name, text in mine.items():
        (out / name).write_text(text)
    proc = cli("stac", "search", one_item, "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert error_line(proc) == (f"The output folder {out} already holds search.json, items.json, which no Tilewise "
                                "search there wrote (its search.json does not list them): choose another (or a new) "
                                "folder, or allow replacing them (--overwrite, or --stac-overwrite with composite "
                                "--stac; OVERWRITE in QGIS; overwrite=True in Python).")
    (out / "items.json").unlink()
    (out / "search.json").unlink()
    proc = cli("stac", "search", one_item, "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert error_line(proc).startswith(f"The output folder {out} already holds it1.vrt, which no Tilewise search")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"it1.vrt": "my own VRT", "notes.txt": "keep"}

    proc = cli("stac", "search", one_item, "--assets", "red", "-q", "-o", "out", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["footprints.geojson", "it1.vrt", "items.json", "notes.txt",
                                                     "search.json"]
    assert (out / "notes.txt").read_text() == "keep"
    # Tilewise's own files now: the same search again needs no flag
    assert cli("stac", "search", one_item, "--assets", "red", "-q", "-o", "out", cwd=tmp_path).returncode == 0


def test_a_planted_record_cannot_delete_outside_the_folder(tmp_path, one_item):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "victim.vrt").write_text("precious too")
    (out / "search.json").write_text(json.dumps({"tilewise_stac_search": 1, "layers": [
        {"file": "../victim.txt"}, {"file": "../victim.vrt"}, {"file": str(victim)}, {"file": "old.vrt"}]}))
    (out / "old.vrt").write_text("an earlier layer")
    proc = cli("stac", "search", one_item, "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious" and (tmp_path / "victim.vrt").read_text() == "precious too"
    assert sorted(p.name for p in out.iterdir()) == ["footprints.geojson", "it1.vrt", "items.json", "search.json"]


# -- A7 and A8: long ids, deep JSON, endless paging ------------------------------------------------------------------

def test_a_400_character_item_id_gets_a_safe_file_name(tmp_path, two_hosts):
    home, _ = two_hosts
    home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tiff_bytes())
    long_a, long_b = "A" * 399 + "1", "A" * 399 + "2"             # cut to the same 107 characters
    home.answers["/ic.json"] = answer(collection(item(long_a, f"{home.url}/a.tif"),
                                                 item(long_b, f"{home.url}/a.tif", "2024-05-04T10:00:00Z")))
    proc = cli("stac", "search", f"{home.url}/ic.json", "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [Path(p).name for p in proc.stdout.split()]
    assert len(names) == 2 and len(set(names)) == 2 and all(len(n) == 124 for n in names)
    assert all(n.startswith("A" * 107 + "_") for n in names)
    with rasterio.open(proc.stdout.split()[0]) as src:
        assert src.tags()["STAC_ITEMS"] == long_a and src.read(1)[0, 0] == 7
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".part") or p.name.startswith(".")]


def test_a_failed_write_leaves_no_partial_files(tmp_path, one_item):
    out = tmp_path / "out"
    out.mkdir()
    (out / "it1.vrt").mkdir()                          # the layer's name is taken by a folder: its rename fails
    proc = cli("stac", "search", one_item, "--assets", "red", "-q", "-o", "out", "--overwrite", cwd=tmp_path)
    message = error_line(proc)
    assert message.startswith(f"Cannot write the search's files into {out}: "), message
    assert [p.name for p in out.iterdir()] == ["it1.vrt"]


@pytest.mark.parametrize("where", ["remote", "local"])
def test_deeply_nested_json_is_one_message(tmp_path, two_hosts, where):
    home, _ = two_hosts
    deep = b'{"type": "FeatureCollection", "features": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    home.answers["/deep.json"] = answer(deep)
    (tmp_path / "deep.json").write_bytes(deep)
    location = f"{home.url}/deep.json" if where == "remote" else str(tmp_path / "deep.json")
    proc = cli("stac", "search", location, "--assets", "red", "-q", "-o", "out", cwd=tmp_path)
    assert error_line(proc) == f"{location} is JSON nested too deeply to be a STAC document."


def test_paging_that_never_ends_stops_at_10000_pages_with_a_warning(tmp_path, two_hosts):
    home, _ = two_hosts
    home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tiff_bytes())
    one = item("it1", f"{home.url}/a.tif")

    def page(path: str):
        n = int(path.rpartition("=")[2]) if "=" in path else 0
        return answer(collection(one, links=[{"rel": "next", "href": f"{home.url}/ic.json?page={n + 1}"}]))

    home.answers["/ic.json"] = page
    assert stac_client.MAX_PAGES == 10_000
    proc = cli("stac", "search", f"{home.url}/ic.json", "--assets", "red", "-q", "-o", "out", cwd=tmp_path,
               timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert len([s for s in home.seen if s.path.startswith("/ic.json")]) == 10_000
    assert proc.stderr.strip() == (f"Warning: The search stopped after 10000 pages of {home.url}/ic.json while the "
                                   "catalogue links more: the 1 items found are not all there are. Narrow the search "
                                   "(collections, bbox, dates) or ask for bigger pages (--page-size; page_size in "
                                   "Python).")
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    assert record["result"]["page_cap"] is True and record["result"]["truncated"] is True


def test_composite_stac_keeps_the_users_files_in_its_search_folder(tmp_path, one_item):
    folder = tmp_path / "median_stac"
    folder.mkdir()
    (folder / "items.json").write_text("my items")
    proc = cli("composite", "--stac", one_item, "--assets", "red", "-q", "-o", "median.tif", cwd=tmp_path)
    assert error_line(proc).startswith(f"The output folder {folder} already holds items.json, which no Tilewise")
    assert (folder / "items.json").read_text() == "my items" and not (tmp_path / "median.tif").exists()
    proc = cli("composite", "--stac", one_item, "--assets", "red", "--stac-overwrite", "-q", "-o", "median.tif",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(tmp_path / "median.tif") as src:
        assert src.read(1)[0, 0] == 7

"""STAC catalogues as input, against real servers on 127.0.0.1: ``rustac serve`` (a STAC API, memory
backend, no query or filter extension) and nginx (the COG assets over HTTP range requests, and a
static catalogue). The catalogue is built by ``stacdata``; the expected ids come from its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.shutil import copy as gdal_copy

from tilewise.core import composite, stac_search
from tilewise.core.errors import CatalogError, ParameterError
from tilewise.core.paths import workdir_for

import stacdata
from servers import Nginx, Rustac, free_port
from stacdata import INSIDE_A, SCL_MASKED, build_catalogue, median_reference, search_ids
from support import subprocess_env

ALL = "2000-01-01/2030-12-31"
SEASON = "2024-05-01/2024-09-30"


def write_cog(path, data, transform, epsg, nodata) -> None:
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
                   crs=f"EPSG:{epsg}", transform=rasterio.Affine(*transform), nodata=nodata)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        with mem.open() as src:
            gdal_copy(src, str(path), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=32)


@pytest.fixture(scope="module")
def www(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("www")


@pytest.fixture(scope="module")
def nginx(www, tmp_path_factory):
    with Nginx(www, tmp_path_factory.mktemp("nginx")) as srv:
        yield srv


@pytest.fixture(scope="module")
def catalogue(www, nginx):
    return build_catalogue(www, nginx.url, write_cog)


@pytest.fixture(scope="module")
def api(catalogue, tmp_path_factory):
    start = time.perf_counter()
    with Rustac(catalogue.api_files, tmp_path_factory.mktemp("rustac")) as srv:
        print(f"\nrustac serve started in {time.perf_counter() - start:.2f} s")
        yield srv


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def scene_bands(catalogue, item_id) -> np.ndarray:
    s = catalogue.scenes[item_id]
    return np.stack([s.red, s.nir, s.scl_10m().astype(np.uint16)])


def fresh_copy(catalogue, item_ids, folder: str) -> str:
    """An ItemCollection of ``item_ids`` whose assets are hard links under ``/folder/``: URLs this
    process has not read yet (GDAL caches what it fetched, per URL)."""
    (catalogue.root / folder).mkdir()
    features = []
    for item_id in item_ids:
        item = json.loads(json.dumps(catalogue.items[item_id]))
        for asset in item["assets"].values():
            name = asset["href"].rsplit("/", 1)[1]
            if (catalogue.root / "assets" / name).exists():
                os.link(catalogue.root / "assets" / name, catalogue.root / folder / name)
            asset["href"] = f"{catalogue.base_url}/{folder}/{name}"
        features.append(item)
    (catalogue.root / folder / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return f"{catalogue.base_url}/{folder}/items.json"


# -- the search: paging, datetime, bbox, clouds ---------------------------------------------------------------

def test_paging_follows_the_next_links(api, tmp_path):
    report = stac_search(api.url, tmp_path / "all", "red,nir,scl", collections="s2-test", page_size=2, limit=0)
    assert report.items == search_ids()                             # all 8, in date order
    assert report.pages == 4 and not report.truncated
    assert [Path(p).name for p in report.layers] == [f"{i}.vrt" for i in search_ids()]

    limited = stac_search(api.url, tmp_path / "three", "red", collections="s2-test", page_size=2, limit=3)
    assert len(limited.items) == 3 and limited.pages == 2 and limited.truncated


def test_datetime_and_bbox(api, tmp_path):
    report = stac_search(api.url, tmp_path / "a", "red", collections=["s2-test"], bbox=INSIDE_A,
                         datetime="2024-05-01/2024-06-30")
    assert report.items == search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-06-30")
    assert report.items == ["s2-20240503-A", "s2-20240513-A", "s2-20240602-A", "s2-20240622-A"]
    one_day = stac_search(api.url, tmp_path / "b", "red", collections="s2-test", datetime="2024-07-12")
    assert one_day.items == ["s2-20240712-A", "s2-20240712-C"]
    open_end = stac_search(api.url, tmp_path / "c", "red", collections="s2-test", datetime="2024-06-10/..")
    assert open_end.items == search_ids(start="2024-06-10")
    record = json.loads(Path(report.record).read_text())
    assert record["result"]["request"]["datetime"] == "2024-05-01T00:00:00Z/2024-06-30T23:59:59.999Z"
    assert record["result"]["request"]["bbox"] == list(INSIDE_A)


def test_cloud_filter_on_a_server_without_the_query_extension(api, tmp_path):
    report = stac_search(api.url, tmp_path / "a", "red", collections="s2-test", max_cloud=10, limit=0, page_size=2)
    assert report.items == search_ids(max_cloud=10)
    assert report.cloud_filter == "client"
    record = json.loads(Path(report.record).read_text())
    assert "query" not in record["result"]["request"] and "filter" not in record["result"]["request"]
    assert record["result"]["excluded_by_cloud"] == len(search_ids()) - len(search_ids(max_cloud=10))
    # the limit counts matching items, however many pages the cloudy ones take
    two = stac_search(api.url, tmp_path / "b", "red", collections="s2-test", max_cloud=16, limit=2, page_size=1)
    assert two.items == ["s2-20240503-A", "s2-20240503-B"] and two.truncated


class Recorder:
    """A pass-through in front of rustac that declares an extension rustac lacks, records the search
    requests, and drops what rustac does not understand (its answer is filtered by the client anyway)."""

    def __init__(self, upstream: str, declare: List[str]) -> None:
        self.upstream, self.declare, self.bodies = upstream, declare, []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, data: bytes) -> None:
                data = data.replace(recorder.upstream.encode(), recorder.url.encode())
                if self.path == "/":
                    root = json.loads(data)
                    root["conformsTo"] += recorder.declare
                    data = json.dumps(root).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with urllib.request.urlopen(recorder.upstream + self.path) as r:
                    self._answer(r.read())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.bodies.append(body)
                forward = {k: v for k, v in body.items() if k not in ("query", "filter", "filter-lang")}
                req = urllib.request.Request(recorder.upstream + self.path, json.dumps(forward).encode(),
                                             {"Content-Type": "application/json"})
                with urllib.request.urlopen(req) as r:
                    self._answer(r.read())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Recorder":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("declared, sent", [
    (["https://api.stacspec.org/v1.0.0/item-search#query"], {"query": {"eo:cloud_cover": {"lte": 10.0}}}),
    (["https://api.stacspec.org/v1.0.0-rc.2/item-search#filter", "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json"],
     {"filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 10.0]}, "filter-lang": "cql2-json"}),
])
def test_cloud_filter_is_sent_when_the_api_declares_it(api, tmp_path, declared, sent):
    with Recorder(api.url, declared) as proxy:
        report = stac_search(proxy.url, tmp_path / "a", "red", collections="s2-test", max_cloud=10, page_size=3)
    assert report.cloud_filter == list(sent)[0]
    assert report.items == search_ids(max_cloud=10)
    assert len(proxy.bodies) == report.pages >= 2
    for key, value in sent.items():
        assert proxy.bodies[0][key] == value
    assert proxy.bodies[0]["limit"] == 3 and proxy.bodies[1]["skip"] == 3     # rustac's next body, merged


# -- assets: names, resolutions, offsets, groups ---------------------------------------------------------

@pytest.mark.parametrize("collection, assets, keys", [
    ("s2-test", "red,nir,scl", ["red", "nir", "scl"]),
    ("s2-pc", "red,nir,scl", ["B04", "B08", "SCL"]),          # common names, and a key in another case
    ("s2-test", "B04,B08,SCL", ["red", "nir", "scl"]),         # eo:bands names, and a key in another case
    ("s2-pc", "B04,B08,SCL", ["B04", "B08", "SCL"]),
])
def test_assets_by_key_or_common_name(api, catalogue, tmp_path, collection, assets, keys):
    report = stac_search(api.url, tmp_path / "a", assets, collections=collection, bbox=INSIDE_A,
                         datetime="2024-06-01/2024-06-05")
    assert len(report.layers) == 1
    with rasterio.open(report.layers[0]) as src:
        assert [src.tags(b)["STAC_ASSET"] for b in (1, 2, 3)] == keys
        assert list(src.descriptions) == assets.split(",")
        data = src.read()
    np.testing.assert_array_equal(data, scene_bands(catalogue, "s2-20240602-A"))


def test_mixed_resolutions_are_resampled_in_the_vrt_and_read_by_ranges(catalogue, nginx, tmp_path):
    url = fresh_copy(catalogue, ["s2-20240712-A"], "mixed")
    nginx.clear_log()
    report = stac_search(url, tmp_path / "a", "red,scl")
    scene = catalogue.scenes["s2-20240712-A"]
    with rasterio.open(report.layers[0]) as src:
        assert (src.width, src.height, src.res, src.dtypes) == (64, 64, (10.0, 10.0), ("uint16", "uint16"))
        np.testing.assert_array_equal(src.read(1), scene.red)
        np.testing.assert_array_equal(src.read(2), scene.scl_10m())
    requests = [r for r in nginx.requests() if r.path.endswith(".tif")]
    assert {r.path for r in requests} == {"/mixed/s2-20240712-A_red.tif", "/mixed/s2-20240712-A_scl.tif"}
    assert all(r.status == 206 and r.byte_range() for r in requests if r.method == "GET")   # ranges, no side-car

    report = stac_search(url, tmp_path / "b", "scl,red")
    with rasterio.open(report.layers[0]) as src:
        # the first asset's grid: SCL's 20 m; red is read at 20 m, from its COG's overview as GDAL does
        assert (src.width, src.height, src.res) == (32, 32, (20.0, 20.0))
        scl, red = src.read()
    np.testing.assert_array_equal(scl, scene.scl)
    with rasterio.open(catalogue.root / "assets" / "s2-20240712-A_red.tif", overview_level=0) as overview:
        assert overview.shape == (32, 32)
        np.testing.assert_array_equal(red, overview.read(1))


def test_group_by_solar_day_mosaics_a_pass(catalogue, tmp_path):
    report = stac_search(catalogue.static_url, tmp_path / "a", "red,nir,scl", collections="s2-test",
                         datetime=SEASON, max_cloud=10, group_by="solar_day")
    names = [Path(p).name for p in report.layers]
    assert names == ["s2-test_2024-05-03_sentinel-2a_22.vrt", "s2-test_2024-07-12_sentinel-2a_22.vrt",
                     "s2-test_2024-07-12_sentinel-2a_79.vrt"]
    with rasterio.open(report.layers[0]) as src:
        assert (src.width, src.height) == (128, 64) and src.transform.c == 500000.0
        assert src.tags()["STAC_ITEMS"] == "s2-20240503-B,s2-20240503-A"   # drawn last: the least cloudy
        data = src.read()
    np.testing.assert_array_equal(data[:, :, :64], scene_bands(catalogue, "s2-20240503-A"))
    np.testing.assert_array_equal(data[:, :, 64:], scene_bands(catalogue, "s2-20240503-B"))
    record = json.loads(Path(report.record).read_text())
    assert record["layers"][0]["items"] == ["s2-20240503-B", "s2-20240503-A"]


def test_harmonize_and_raster_band_offsets(api, catalogue, tmp_path):
    """Baseline 05.10 items lose their 1000 DN offset, the 03.01 item is unchanged; SCL never changes."""
    kwargs = dict(collections="s2-test", bbox=INSIDE_A, max_cloud=3, datetime=ALL)
    plain = stac_search(api.url, tmp_path / "plain", "red,nir,scl", **kwargs)
    harmonized = stac_search(api.url, tmp_path / "harmonized", "red,nir,scl", harmonize=True, **kwargs)
    assert plain.items == harmonized.items == ["s2-20210701-A", "s2-20240712-A"]
    old, new = harmonized.layers
    np.testing.assert_array_equal(read(old), scene_bands(catalogue, "s2-20210701-A"))
    expected = scene_bands(catalogue, "s2-20240712-A")
    for b in (0, 1):
        expected[b] = np.where(expected[b] == 0, 0, np.clip(expected[b], 1000, None) - 1000)
    np.testing.assert_array_equal(read(new), expected)
    with rasterio.open(plain.layers[1]) as src:
        assert (src.scales, src.offsets) == ((0.0001, 0.0001, 1.0), (-0.1, -0.1, 0.0))
    with rasterio.open(new) as src:
        assert (src.scales, src.offsets) == ((0.0001, 0.0001, 1.0), (0.0, 0.0, 0.0))
        assert [src.tags(b)["HARMONIZED"] for b in (1, 2, 3)] == ["YES", "YES", "NO"]
    with rasterio.open(old) as src:
        assert [src.tags(b)["HARMONIZED"] for b in (1, 2, 3)] == ["NO", "NO", "NO"]


# -- the same answer from every kind of catalogue --------------------------------------------------------

@pytest.mark.parametrize("source", ["static over HTTP", "static on disk", "ItemCollection file", "ItemCollection URL"])
def test_static_catalogues_and_item_collections_give_the_api_answer(api, catalogue, tmp_path, source):
    location = {"static over HTTP": catalogue.static_url,
                "static on disk": str(catalogue.root / "static" / "catalog.json"),
                "ItemCollection file": str(catalogue.root / "api" / "s2-test.items.json"),
                "ItemCollection URL": f"{catalogue.base_url}/api/s2-test.items.json"}[source]
    kwargs = dict(collections="s2-test", bbox=INSIDE_A, datetime=SEASON, max_cloud=40)
    expected = stac_search(api.url, tmp_path / "api", "red,nir,scl", **kwargs)
    report = stac_search(location, tmp_path / "other", "red,nir,scl", **kwargs)
    assert report.items == expected.items == search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30",
                                                        max_cloud=40)
    for a, b in zip(report.layers, expected.layers):
        np.testing.assert_array_equal(read(a), read(b))
    if source == "static on disk":                       # relative hrefs resolved against the item file
        assert str(catalogue.root / "assets") in Path(report.layers[0]).read_text()


def test_the_output_of_a_search_is_itself_an_input(api, tmp_path):
    first = stac_search(api.url, tmp_path / "a", "red", collections="s2-test", datetime=SEASON)
    again = stac_search(str(tmp_path / "a" / "items.json"), tmp_path / "b", "red", max_cloud=10)
    assert again.items == [i for i in first.items if i in search_ids(max_cloud=10)]
    footprints = json.loads(Path(first.footprints).read_text())
    assert [f["properties"]["id"] for f in footprints["features"]] == first.items
    props = footprints["features"][0]["properties"]
    assert props["layer"] == Path(first.layers[0]).name and props["cloud_cover"] == 5.0
    assert props["asset_red"].endswith("/assets/s2-20240503-A_red.tif")


def test_same_search_keeps_its_files_and_a_narrower_one_removes_stale_layers(api, tmp_path):
    folder = tmp_path / "items"
    first = stac_search(api.url, folder, "red", collections="s2-test", datetime=SEASON)
    stamps = {p: os.stat(p).st_mtime_ns for p in first.layers}
    time.sleep(0.05)
    again = stac_search(api.url, folder, "red", collections="s2-test", datetime=SEASON)
    assert {p: os.stat(p).st_mtime_ns for p in again.layers} == stamps
    (folder / "mine.vrt").write_text("not from a search")
    narrow = stac_search(api.url, folder, "red", collections="s2-test", datetime="2024-07-12")
    assert sorted(p.name for p in folder.glob("*.vrt")) == sorted([Path(p).name for p in narrow.layers] + ["mine.vrt"])


# -- authentication ----------------------------------------------------------------------------------------

def test_extra_headers_reach_the_catalogue_and_the_assets(catalogue, nginx, tmp_path):
    url = fresh_copy(catalogue, ["s2-20240712-A"], "headers")
    nginx.clear_log()
    stac_search(url, tmp_path / "a", "red,scl", headers=["X-Tilewise-Test: token-1"])
    requests = nginx.requests()
    assert [r.path for r in requests if r.path.endswith(".json")] == ["/headers/items.json"]
    assets = {r.path for r in requests if r.method == "GET" and r.byte_range()}
    assert assets == {"/headers/s2-20240712-A_red.tif", "/headers/s2-20240712-A_scl.tif"}
    assert {r.marker for r in requests} == {"token-1"}
    record = json.loads((tmp_path / "a" / "search.json").read_text())
    assert record["search"]["header_names"] == ["X-Tilewise-Test"]
    assert "token-1" not in (tmp_path / "a" / "search.json").read_text()


def test_signing_hook(api, catalogue, nginx, tmp_path):
    signed = []

    def sign(href: str) -> str:
        signed.append(href)
        return href + "?sig=abc&se=2030"

    report = stac_search(api.url, tmp_path / "a", "red,scl", collections="s2-test", datetime="2024-07-12",
                         bbox=INSIDE_A, sign=sign)
    assert sorted(signed) == [catalogue.asset_url("s2-20240712-A_red.tif"),
                              catalogue.asset_url("s2-20240712-A_scl.tif")]
    assert "s2-20240712-A_red.tif%3Fsig%3Dabc%26se%3D2030" in Path(report.layers[0]).read_text()
    np.testing.assert_array_equal(read(report.layers[0])[0], catalogue.scenes["s2-20240712-A"].red)
    by_name = stac_search(api.url, tmp_path / "b", "red", collections="s2-test", datetime="2024-07-12",
                          bbox=INSIDE_A, sign="builtins:str")
    assert json.loads(Path(by_name.record).read_text())["search"]["sign"] == "builtins:str"
    with pytest.raises(ParameterError, match=r"The URL signing hook no_such_signer:sign cannot be loaded: "
                                             r"No module named 'no_such_signer'\. Install"):
        stac_search(api.url, tmp_path / "c", "red", collections="s2-test", sign="no_such_signer:sign")


# -- failures: one clear message each --------------------------------------------------------------------

def tilewise_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


def one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilewise: error: "), proc.stderr
    return lines[0][len("tilewise: error: "):]


def test_missing_asset_is_one_clear_message(api, catalogue, tmp_path):
    proc = tilewise_cli("stac", "search", api.url, "--collections", "s2-broken", "--assets", "red,nir,scl", "-q",
                        "-o", "items", cwd=tmp_path)
    assert one_error_line(proc) == (f"The asset red (red) of item {stacdata.BROKEN} cannot be read. Input not found: "
                                    f"{catalogue.asset_url('no_such_file_red.tif')} (HTTP 404 Not Found).")
    assert not (tmp_path / "items").exists()


def test_unreachable_api_is_one_clear_message(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.perf_counter()
    proc = tilewise_cli("stac", "search", url, "--assets", "red", "-o", "items", cwd=tmp_path)
    assert one_error_line(proc) == (f"Cannot reach the STAC catalogue at {url}: Connection refused. Check the "
                                    "address, the network and any proxy setting (HTTPS_PROXY).")
    assert time.perf_counter() - start < 30                          # no retries of a refused connection


def test_empty_result_is_one_clear_message(api, tmp_path):
    proc = tilewise_cli("stac", "search", api.url, "--collections", "s2-test", "--datetime", "2010-01-01/2010-12-31",
                        "--max-cloud", "20", "--assets", "red", "-q", "-o", "items", cwd=tmp_path)
    assert one_error_line(proc) == (
        f"No STAC item matches the search in {api.url} (collections s2-test; datetime "
        "2010-01-01T00:00:00Z/2010-12-31T23:59:59.999Z; cloud cover <= 20%). Check the collection ids, widen the "
        "area or the dates, or raise the cloud limit.")


def test_an_unknown_collection_names_the_collections_there_are(api, tmp_path):
    with pytest.raises(CatalogError) as info:
        stac_search(api.url, tmp_path / "a", "red", collections="sentinel-2-l2a")
    assert str(info.value) == (f"The STAC API {api.url} has no collection sentinel-2-l2a; its collections are: "
                               "s2-broken, s2-pc, s2-test.")


def test_an_asset_no_item_has_names_the_assets_there_are(api, tmp_path):
    with pytest.raises(CatalogError, match=r"No item found has the assets red, swir22: item s2-20240503-A lacks "
                                           r"swir22 \(by key or eo:bands common name\); its assets are nir \(nir\), "
                                           r"red \(red\), scl, thumbnail\."):
        stac_search(api.url, tmp_path / "a", "red,swir22", collections="s2-test")


@pytest.mark.parametrize("kwargs, message", [
    (dict(datetime="2024-13-01"), "Datetime '2024-13-01': '2024-13-01' is not an RFC 3339 date"),
    (dict(datetime="2024-06-01/2024-05-01"), "the interval ends before it starts"),
    (dict(bbox=[15, 46, 16, 45]), "is not west, south, east, north in degrees"),
    (dict(max_cloud=120), "percentage"),
    (dict(group_by="month"), "Unknown grouping"),
    (dict(headers=["no colon"]), "is not like 'Name: value'"),
])
def test_bad_parameters_are_refused_before_any_request(tmp_path, kwargs, message):
    url = f"http://127.0.0.1:{free_port()}"                           # nothing listens: nothing is asked
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stac_search(url, tmp_path / "a", "red", **kwargs)
    assert not (tmp_path / "a").exists()


# -- into a composite: the CLI shortcut, the Python API, the resume manifest ---------------------------------

def test_composite_of_a_search_equals_numpy_and_records_the_search(api, catalogue, tmp_path):
    found = stac_search(api.url, tmp_path / "items", "red,nir,scl", collections="s2-test", bbox=INSIDE_A,
                        datetime=SEASON, max_cloud=40)
    ids = search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30", max_cloud=40)
    assert found.items == ids and len(ids) == 4
    out = tmp_path / "median.tif"
    composite(found.layers, str(out), mask_band=3, mask_values=list(SCL_MASKED), keep_workdir=True, workers=1,
              tile_size=32)
    expected = median_reference([catalogue.scenes[i] for i in ids])
    with rasterio.open(out) as src:
        data = src.read(masked=True)
        assert src.count == 2 and src.nodata == -9999.0
    np.testing.assert_array_equal(data.mask, np.isnan(expected))
    np.testing.assert_array_equal(data.filled(np.nan), expected.astype(np.float32))
    manifest = json.loads((Path(workdir_for(str(out))) / "manifest.json").read_text())
    (entry,) = manifest["stac_searches"]
    assert entry["folder"] == str(tmp_path / "items")
    assert entry["search"]["items"] == ids and entry["search"]["search"]["max_cloud"] == 40.0


def test_cli_stac_search_and_composite_shortcut(api, catalogue, tmp_path):
    search = tilewise_cli("stac", "search", api.url, "--collections", "s2-test", "--bbox", *INSIDE_A, "--datetime",
                          SEASON, "--max-cloud", "40", "--assets", "red,nir,scl", "-o", "items", cwd=tmp_path)
    assert search.returncode == 0, search.stderr
    ids = search_ids(bbox=INSIDE_A, start="2024-05-01", end="2024-09-30", max_cloud=40)
    assert search.stdout.splitlines() == [str(tmp_path / "items" / f"{i}.vrt") for i in ids]
    assert "4 items in 4 layers written to" in search.stderr

    proc = tilewise_cli("composite", "--stac", api.url, "--collections", "s2-test", "--bbox", *INSIDE_A,
                        "--datetime", SEASON, "--max-cloud", "40", "--assets", "red,nir,scl", "--mask-asset", "scl",
                        "--mask-values", ",".join(map(str, SCL_MASKED)), "-q", "-o", "median.tif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "median_stac").glob("*.vrt")) == sorted(f"{i}.vrt" for i in ids)
    expected = median_reference([catalogue.scenes[i] for i in ids])
    with rasterio.open(tmp_path / "median.tif") as src:
        np.testing.assert_array_equal(src.read(masked=True).filled(np.nan), expected.astype(np.float32))


def test_composite_needs_inputs_or_a_catalogue(tmp_path):
    proc = tilewise_cli("composite", "-o", "out.tif", cwd=tmp_path)
    assert one_error_line(proc) == "Give input rasters, or --stac URL to search a STAC catalogue for them."

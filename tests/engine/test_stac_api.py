"""The STAC API search on pystac-client keeps Tilewise's transport: GET parameters as STAC APIs read them,
next links checked before they are followed (no local file, no loop, the page cap), credentials with their
origin only, HTTP errors and silent endpoints as one message each. Servers: :mod:`hostile` on 127.0.0.1."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from tilewise.core import stac_search
from tilewise.core.errors import CatalogError
from tilewise.core.operations.stac import client as stac_client

from hostile import ScriptedServer, SilentServer

JSON = {"Content-Type": "application/geo+json"}
SECRET = "Bearer API-SECRET"


def tiff_bytes() -> bytes:
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=8, height=8, count=1, dtype="uint16", crs="EPSG:32633",
                      transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000), nodata=0) as dst:
            dst.write(np.full((1, 8, 8), 7, np.uint16))
        return mem.read()


def item(item_id: str, red: str) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "c",
            "geometry": {"type": "Polygon",
                         "coordinates": [[[15, 45], [15.1, 45], [15.1, 45.1], [15, 45.1], [15, 45]]]},
            "bbox": [15, 45, 15.1, 45.1], "properties": {"datetime": "2024-05-03T10:00:00Z"}, "links": [],
            "assets": {"red": {"href": red, "type": "image/tiff; application=geotiff", "roles": ["data"]}}}


def page(*items: dict, next_href: str = "") -> tuple:
    links = [{"rel": "next", "href": next_href, "type": "application/geo+json"}] if next_href else []
    return 200, JSON, json.dumps({"type": "FeatureCollection", "features": list(items), "links": links}).encode()


@pytest.fixture
def api():
    """A STAC API landing page (item search by GET) on one host, a second host beside it."""
    with ScriptedServer() as home, ScriptedServer() as other:
        home.answers["/"] = (200, {"Content-Type": "application/json"}, json.dumps({
            "type": "Catalog", "id": "api", "stac_version": "1.0.0", "description": "a test API",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": f"{home.url}/"},
                      {"rel": "search", "href": f"{home.url}/search", "type": "application/geo+json",
                       "method": "GET"}]}).encode())
        home.answers["/a.tif"] = (200, {"Content-Type": "image/tiff"}, tiff_bytes())
        yield home, other


def searches(server: ScriptedServer, path: str = "/search") -> list:
    return [s for s in server.seen if s.path.split("?")[0] == path]


def test_get_parameters_reach_the_api_as_stac_apis_read_them(api, tmp_path):
    home, _ = api
    home.answers["/search"] = page(item("it1", f"{home.url}/a.tif"))
    report = stac_search(f"{home.url}/", tmp_path / "out", "red", collections="c,d", bbox=[15, 45, 15.2, 45.2],
                         datetime="2024-05-01/2024-05-31", limit=10, page_size=5)
    assert report.items == ["it1"] and report.pages == 1
    (request,) = searches(home)
    assert request.method == "GET"
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
    assert params == {"limit": "5", "collections": "c,d", "bbox": "15.0,45.0,15.2,45.2",
                      "datetime": "2024-05-01T00:00:00Z/2024-05-31T23:59:59.999Z"}
    record = json.loads(Path(report.record).read_text())["result"]
    assert (record["kind"], record["method"], record["endpoint"]) == ("api", "GET", f"{home.url}/search")


def test_a_next_link_to_a_local_file_is_not_followed(api, tmp_path):
    home, _ = api
    home.answers["/search"] = page(item("it1", f"{home.url}/a.tif"), next_href="file:///etc/passwd")
    said = []
    report = stac_search(f"{home.url}/", tmp_path / "out", "red", log=said.append)
    assert report.items == ["it1"] and report.pages == 1
    warning = [s for s in said if s.startswith("Warning: 1 links of the catalogue were not followed")]
    assert warning and "file:///etc/passwd" in warning[0], said
    record = json.loads(Path(report.record).read_text())["result"]
    assert record["refused_links"][0].startswith("file:///etc/passwd (linked from")


def test_a_next_link_back_to_the_same_page_ends_the_paging(api, tmp_path):
    home, _ = api
    home.answers["/search"] = page(item("it1", f"{home.url}/a.tif"), next_href=f"{home.url}/search?token=same")
    report = stac_search(f"{home.url}/", tmp_path / "out", "red", limit=0)
    assert report.items == ["it1"]
    assert len(searches(home)) == 2          # the first page, the linked one once, then no more


def test_paging_that_never_ends_stops_at_the_page_cap(api, tmp_path, monkeypatch):
    home, _ = api
    monkeypatch.setattr(stac_client, "MAX_PAGES", 5)

    def endless(path: str) -> tuple:
        n = int(path.rpartition("=")[2]) if "token=" in path else 0
        return page(item(f"it{n}", f"{home.url}/a.tif"), next_href=f"{home.url}/search?token={n + 1}")

    home.answers["/search"] = endless
    said = []
    report = stac_search(f"{home.url}/", tmp_path / "out", "red", limit=0, log=said.append)
    assert len(searches(home)) == 5 and report.pages == 5 and report.truncated
    assert len(report.items) == 5
    assert any(s.startswith("Warning: The search stopped after") for s in said), said
    assert json.loads(Path(report.record).read_text())["result"]["page_cap"] is True


def test_credentials_stay_with_the_api_s_origin(api, tmp_path):
    home, other = api
    home.answers["/search"] = page(item("it1", f"{home.url}/a.tif"), next_href=f"{other.url}/search?page=2")
    other.answers["/search"] = page(item("it2", f"{home.url}/a.tif"))
    report = stac_search(f"{home.url}/", tmp_path / "out", "red", limit=0, headers={"Authorization": SECRET})
    assert report.items == ["it1", "it2"]
    assert [s.headers.get("Authorization") for s in searches(home)] == [SECRET]
    assert [s.headers.get("Authorization") for s in searches(other)] == [None]


@pytest.mark.parametrize("status, message", [
    (500, "The STAC catalogue at {url}/search answered HTTP 500 Internal Server Error: the index is down."),
    (403, "The STAC catalogue at {url}/search refused access (HTTP 403 Forbidden): the index is down; check "
          "the credentials"),
])
def test_an_api_error_is_one_message_naming_the_address(api, tmp_path, monkeypatch, status, message):
    home, _ = api
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    home.answers["/search"] = (status, {"Content-Type": "application/json"},
                               json.dumps({"description": "the index is down"}).encode())
    with pytest.raises(CatalogError) as info:
        stac_search(f"{home.url}/", tmp_path / "out", "red")
    assert str(info.value).startswith(message.format(url=home.url)), str(info.value)


def test_a_silent_search_endpoint_ends_at_the_deadline(api, tmp_path, monkeypatch):
    home, _ = api
    monkeypatch.setenv("TILEWISE_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "3")
    with SilentServer() as silent:
        root = json.loads(home.answers["/"][2])
        root["links"][1]["href"] = f"{silent.url}/search"
        home.answers["/"] = (200, {"Content-Type": "application/json"}, json.dumps(root).encode())
        start = time.monotonic()
        with pytest.raises(CatalogError, match=r"The STAC catalogue at .*/search gave no complete answer within 2 s"):
            stac_search(f"{home.url}/", tmp_path / "out", "red")
        assert time.monotonic() - start < 30       # two seconds, with a wide margin for a loaded machine


def test_an_older_landing_page_without_type_or_description_is_searched(api, tmp_path):
    home, _ = api
    root = json.loads(home.answers["/"][2])
    del root["type"], root["description"], root["conformsTo"]           # conformance at its own link instead
    root["links"].append({"rel": "conformance", "href": f"{home.url}/conformance"})
    home.answers["/"] = (200, {"Content-Type": "application/json"}, json.dumps(root).encode())
    home.answers["/conformance"] = (200, {"Content-Type": "application/json"}, json.dumps({"conformsTo": [
        "https://api.stacspec.org/v1.0.0/item-search", "https://api.stacspec.org/v1.0.0/item-search#query"]}).encode())
    clear, cloudy = item("it1", f"{home.url}/a.tif"), item("it2", f"{home.url}/a.tif")
    clear["properties"]["eo:cloud_cover"], cloudy["properties"]["eo:cloud_cover"] = 10, 90
    home.answers["/search"] = page(clear, cloudy)
    report = stac_search(f"{home.url}/", tmp_path / "out", "red", max_cloud=50)
    assert report.items == ["it1"] and report.cloud_filter == "query"      # sent to the API, applied here too
    (request,) = searches(home)
    assert json.loads(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))["query"]) == {
        "eo:cloud_cover": {"lte": 50.0}}


def test_a_local_landing_page_whose_search_is_a_local_file_is_one_message(tmp_path):
    secret = tmp_path / "search"
    secret.write_text(json.dumps({"type": "FeatureCollection", "features": [], "links": []}))
    landing = tmp_path / "api.json"
    landing.write_text(json.dumps({"type": "Catalog", "id": "api", "description": "",
                                   "conformsTo": ["https://api.stacspec.org/v1.0.0/item-search"],
                                   "links": [{"rel": "search", "href": "search", "method": "GET"}]}))
    with pytest.raises(CatalogError, match=r"The search address of the STAC API, .*search, is not an http\(s\) "):
        stac_search(str(landing), tmp_path / "out", "red")

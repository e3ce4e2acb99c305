"""A small Sentinel-2-like STAC catalogue for the tests: COG assets, items, and three ways to serve them.

Plain Python and numpy: the engine tests write the COGs with rasterio, the QGIS tests with
osgeo.gdal (``write_cog`` is given). Everything lands under one folder that nginx serves:

- ``assets/``: the COGs (red and nir at 10 m, SCL at 20 m), read through HTTP range requests;
- ``api/``: collections and ItemCollections for ``rustac serve`` (absolute asset hrefs);
- ``static/``: a static catalogue (catalog -> collection -> item files, relative hrefs).

Two Sentinel-2 tiles touch (A and B, one pass on 2024-05-03) and a third lies far away (C,
same pixels elsewhere). Collection ``s2-test`` names its assets ``red``, ``nir``, ``scl``
(as Earth Search); ``s2-pc`` names them ``B04``, ``B08``, ``SCL`` with eo:bands common names
(as the Planetary Computer); ``s2-broken`` has an item whose red asset is not there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

SIDE = 64                   # pixels of a 10 m band; SCL has SIDE // 2 at 20 m
EPSG = 32633
ORIGINS = {"A": (500000.0, 5000000.0), "B": (500640.0, 5000000.0), "C": (500000.0, 5000000.0)}
LONLAT = {"A": (15.000, 45.134, 15.008, 45.140), "B": (15.008, 45.134, 15.016, 45.140),
          "C": (16.000, 48.000, 16.008, 48.006)}
INSIDE_A = (15.002, 45.136, 15.006, 45.138)    # a bbox inside tile A only
SCL_MASKED = (0, 1, 3, 8, 9, 10)

# id, datetime, tile, cloud cover, processing baseline, relative orbit, platform
ITEMS = [
    ("s2-20240503-A", "2024-05-03T10:00:00Z", "A", 5.0, "05.10", 22, "sentinel-2a"),
    ("s2-20240503-B", "2024-05-03T10:00:04Z", "B", 7.0, "05.10", 22, "sentinel-2a"),
    ("s2-20240513-A", "2024-05-13T10:00:00Z", "A", 60.0, "05.10", 22, "sentinel-2a"),
    ("s2-20240602-A", "2024-06-02T10:00:00Z", "A", 15.0, "05.10", 22, "sentinel-2b"),
    ("s2-20240622-A", "2024-06-22T10:00:00Z", "A", 30.0, "05.10", 22, "sentinel-2b"),
    ("s2-20240712-A", "2024-07-12T10:00:00Z", "A", 2.0, "05.10", 22, "sentinel-2a"),
    ("s2-20240712-C", "2024-07-12T10:01:00Z", "C", 1.0, "05.10", 79, "sentinel-2a"),
    ("s2-20210701-A", "2021-07-01T10:00:00Z", "A", 3.0, "03.01", 22, "sentinel-2a"),
]
PC_ITEMS = [("pc-20240602-A", "s2-20240602-A"), ("pc-20240712-A", "s2-20240712-A")]
BROKEN = "broken-20240603-A"

WriteCog = Callable[[Path, np.ndarray, Tuple[float, ...], int, Optional[float]], None]


@dataclass
class Scene:
    """One item's pixels, for the expected values."""

    id: str
    red: np.ndarray
    nir: np.ndarray
    scl: np.ndarray                   # at 20 m

    def scl_10m(self) -> np.ndarray:
        return np.repeat(np.repeat(self.scl, 2, axis=0), 2, axis=1)


@dataclass
class Catalogue:
    root: Path
    base_url: str
    scenes: Dict[str, Scene] = field(default_factory=dict)
    items: Dict[str, dict] = field(default_factory=dict)        # id -> the item as served by the API
    api_files: List[Path] = field(default_factory=list)        # collections, then ItemCollections

    @property
    def static_url(self) -> str:
        return f"{self.base_url}/static/catalog.json"

    def asset_url(self, name: str) -> str:
        return f"{self.base_url}/assets/{name}"


def _pixels(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    red = rng.integers(1000, 9000, (SIDE, SIDE)).astype(np.uint16)
    nir = rng.integers(1000, 9000, (SIDE, SIDE)).astype(np.uint16)
    red[rng.random(red.shape) < 0.08] = 0
    nir[rng.random(nir.shape) < 0.08] = 0
    classes = np.array([4, 5, 6, 7, 0, 3, 8, 9, 10, 1, 11])
    weights = np.array([30, 20, 8, 6, 3, 6, 8, 6, 4, 2, 2], float)
    scl = rng.choice(classes, (SIDE // 2, SIDE // 2), p=weights / weights.sum()).astype(np.uint8)
    no_data = np.repeat(np.repeat(scl == 0, 2, axis=0), 2, axis=1)    # SCL 0 is NO_DATA: no reflectance there
    red[no_data] = 0
    nir[no_data] = 0
    return red, nir, scl


def _bands(name: str, common: str, wavelength: float) -> dict:
    return {"eo:bands": [{"name": name, "common_name": common, "center_wavelength": wavelength}]}


def _raster(scale: Optional[float], offset: Optional[float], nodata: int, dtype: str) -> dict:
    band = {"nodata": nodata, "data_type": dtype, "spatial_resolution": 10 if dtype == "uint16" else 20}
    if scale is not None:
        band.update(scale=scale, offset=offset)
    return {"raster:bands": [band]}


def _assets(style: str, files: Dict[str, str], new_baseline: bool) -> dict:
    offset = -0.1 if new_baseline else 0.0
    cog = "image/tiff; application=geotiff; profile=cloud-optimized"
    keys = {"red": "B04", "nir": "B08", "scl": "SCL"} if style == "pc" else {"red": "red", "nir": "nir", "scl": "scl"}
    return {
        keys["red"]: {"href": files["red"], "type": cog, "roles": ["data", "reflectance"],
                      **_bands("B04", "red", 0.665), **_raster(0.0001, offset, 0, "uint16")},
        keys["nir"]: {"href": files["nir"], "type": cog, "roles": ["data", "reflectance"],
                      **_bands("B08", "nir", 0.842), **_raster(0.0001, offset, 0, "uint16")},
        keys["scl"]: {"href": files["scl"], "type": cog, "roles": ["data"], **_raster(None, None, 0, "uint8")},
        "thumbnail": {"href": files["red"].replace(".tif", ".jpg"), "type": "image/jpeg", "roles": ["thumbnail"]},
    }


def _item(item_id: str, collection: str, when: str, tile: str, cloud: float, baseline: str, orbit: int,
          platform: str, assets: dict) -> dict:
    w, s, e, n = LONLAT[tile]
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "bbox": [w, s, e, n],
        "properties": {"datetime": when, "eo:cloud_cover": cloud, "platform": platform,
                       "sat:relative_orbit": orbit, "s2:processing_baseline": baseline,
                       "proj:epsg": EPSG, "mgrs:tile": f"33T{tile}"},
        "links": [], "assets": assets,
    }


def _collection(cid: str) -> dict:
    return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": f"Test collection {cid}",
            "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[14.9, 45.0, 16.1, 48.1]]},
                       "temporal": {"interval": [["2021-01-01T00:00:00Z", None]]}}}


def _write_json(path: Path, value: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))
    return path


def build_catalogue(root: Path, base_url: str, write_cog: WriteCog, seed: int = 13) -> Catalogue:
    """Write the COGs, the API's files and the static catalogue under ``root`` (served at ``base_url``)."""
    cat = Catalogue(Path(root), base_url.rstrip("/"))
    rng = np.random.default_rng(seed)
    (cat.root / "assets").mkdir(parents=True, exist_ok=True)
    by_collection: Dict[str, List[dict]] = {"s2-test": [], "s2-pc": [], "s2-broken": []}
    static_items: List[dict] = []
    for item_id, when, tile, cloud, baseline, orbit, platform in ITEMS:
        red, nir, scl = _pixels(rng)
        cat.scenes[item_id] = Scene(item_id, red, nir, scl)
        x0, y0 = ORIGINS[tile]
        for band, data, res in (("red", red, 10.0), ("nir", nir, 10.0), ("scl", scl, 20.0)):
            write_cog(cat.root / "assets" / f"{item_id}_{band}.tif", data, (res, 0.0, x0, 0.0, -res, y0), EPSG, 0)
        files = {b: cat.asset_url(f"{item_id}_{b}.tif") for b in ("red", "nir", "scl")}
        new = float(baseline) >= 4
        item = _item(item_id, "s2-test", when, tile, cloud, baseline, orbit, platform, _assets("es", files, new))
        by_collection["s2-test"].append(item)
        relative = {b: f"../../../assets/{item_id}_{b}.tif" for b in ("red", "nir", "scl")}
        static_items.append(_item(item_id, "s2-test", when, tile, cloud, baseline, orbit, platform,
                                  _assets("es", relative, new)))
    for pc_id, source in PC_ITEMS:
        row = next(r for r in ITEMS if r[0] == source)
        files = {b: cat.asset_url(f"{source}_{b}.tif") for b in ("red", "nir", "scl")}
        by_collection["s2-pc"].append(_item(pc_id, "s2-pc", *row[1:], _assets("pc", files, True)))
        cat.scenes[pc_id] = cat.scenes[source]
    files = {b: cat.asset_url(f"{ITEMS[0][0]}_{b}.tif") for b in ("red", "nir", "scl")}
    files["red"] = cat.asset_url("no_such_file_red.tif")
    by_collection["s2-broken"].append(_item(BROKEN, "s2-broken", "2024-06-03T10:00:00Z", "A", 1.0, "05.10", 22,
                                            "sentinel-2a", _assets("es", files, True)))
    for cid in by_collection:
        cat.api_files.append(_write_json(cat.root / "api" / f"{cid}.collection.json", _collection(cid)))
    for cid, items in by_collection.items():
        cat.api_files.append(_write_json(cat.root / "api" / f"{cid}.items.json",
                                         {"type": "FeatureCollection", "features": items}))
        cat.items.update({i["id"]: i for i in items})
    _write_static(cat.root / "static", static_items)
    return cat


def _write_static(folder: Path, items: List[dict]) -> None:
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "static-test", "description": "Static test catalogue",
               "links": [{"rel": "root", "href": "./catalog.json"},
                         {"rel": "child", "href": "./s2-test/collection.json"}]}
    collection = _collection("s2-test")
    collection["links"] = [{"rel": "root", "href": "../catalog.json"}, {"rel": "parent", "href": "../catalog.json"}]
    for item in items:
        collection["links"].append({"rel": "item", "href": f"./items/{item['id']}.json"})
        item = dict(item, links=[{"rel": "collection", "href": "../collection.json"}])
        _write_json(folder / "s2-test" / "items" / f"{item['id']}.json", item)
    _write_json(folder / "catalog.json", catalog)
    _write_json(folder / "s2-test" / "collection.json", collection)


def search_ids(collection: str = "s2-test", bbox=None, start: str = "", end: str = "9999",
               max_cloud: Optional[float] = None) -> List[str]:
    """The ids a search should find, in date order (computed from the table, not by the client)."""
    rows = ITEMS if collection == "s2-test" else [(pc,) + next(r for r in ITEMS if r[0] == src)[1:]
                                                  for pc, src in PC_ITEMS]
    out = []
    for item_id, when, tile, cloud, *_ in rows:
        w, s, e, n = LONLAT[tile]
        if bbox is not None and (w > bbox[2] or e < bbox[0] or s > bbox[3] or n < bbox[1]):
            continue
        if not start <= when[:10] <= end or (max_cloud is not None and cloud > max_cloud):
            continue
        out.append((when, item_id))
    return [i for _, i in sorted(out)]


def median_reference(scenes: List[Scene], masked=SCL_MASKED) -> np.ndarray:
    """numpy's median of red and nir over the scenes, nodata 0 and masked SCL classes left out."""
    import warnings
    out = []
    for band in ("red", "nir"):
        stack = np.stack([getattr(s, band).astype(np.float64) for s in scenes])
        mask = np.stack([(getattr(s, band) == 0) | np.isin(s.scl_10m(), masked) for s in scenes])
        stack[mask] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out.append(np.nanmedian(stack, axis=0))
    return np.stack(out)

"""What a STAC search leaves in its output folder besides the VRTs, and how a later run finds it.

- ``search.json``: the search (catalogue, collections, bbox, datetime, cloud limit, assets...,
  never the values of HTTP headers), how it ran (endpoint, request, pages, where the cloud
  filter was applied), the item ids in date order and which items make which layer;
- ``items.json``: the items found, as a STAC ItemCollection (itself a valid input of a search);
- ``footprints.geojson``: one polygon per item (EPSG:4326) with its id, datetime, cloud cover,
  layer and asset hrefs, for a map or an attribute table.

A run over layers of such a folder (e.g. a composite) records the search in its resume
manifest (:func:`searches_for`), so the inputs of a result can be traced to their search.
Plain ``json`` and ``os`` only: cheap to import anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional

RECORD = "search.json"
ITEMS = "items.json"
FOOTPRINTS = "footprints.geojson"
FORMAT = 1
MARKER = "tilewise_stac_search"


def write_json(path: str, value: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def read_record(folder: str) -> Optional[Dict[str, Any]]:
    """The ``search.json`` of a folder, if it holds a Tilewise search."""
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and value.get(MARKER) == FORMAT else None


def recorded_layers(record: Mapping[str, Any]) -> List[str]:
    """The file names of the layers a record lists."""
    return [str(layer.get("file")) for layer in record.get("layers") or [] if isinstance(layer, dict)]


def footprint(item: Mapping[str, Any], layer: str, hrefs: Mapping[str, str]) -> Dict[str, Any]:
    """One GeoJSON feature for an item: flat attributes, as a GIS attribute table wants them."""
    props = item.get("properties") or {}
    cover = props.get("eo:cloud_cover")
    attributes: Dict[str, Any] = {
        "id": item.get("id"), "collection": item.get("collection"),
        "datetime": props.get("datetime") or props.get("start_datetime"),
        "cloud_cover": float(cover) if isinstance(cover, (int, float)) and not isinstance(cover, bool) else None,
        "platform": props.get("platform"), "layer": layer}
    attributes.update({f"asset_{name}": href for name, href in hrefs.items()})
    # no top-level "id": OGR would read it as a second id field beside the attribute
    return {"type": "Feature", "geometry": item.get("geometry"), "properties": attributes}


def _strings(value: Any) -> Iterator[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def searches_for(job: Any) -> List[Dict[str, Any]]:
    """The searches whose layers a job reads: one entry per output folder of a search.

    >>> searches_for(("/no/such/folder/a.vrt",))
    []
    """
    found: Dict[str, Dict[str, Any]] = {}
    for path in _strings(job):
        if not path.lower().endswith(".vrt") or not os.path.isfile(path):
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if folder in found:
            continue
        record = read_record(folder)
        if record is not None and os.path.basename(path) in recorded_layers(record):
            found[folder] = {"folder": folder, "search": record}
    return list(found.values())

"""What a STAC search leaves in its output folder besides the VRTs, and how a later run finds it.

- ``search.json``: the search (catalogue, collections, bbox, datetime, cloud limit, assets...,
  never the values of HTTP headers), how it ran (endpoint, request, pages, where the cloud
  filter was applied), the item ids in date order and which items make which layer;
- ``items.json``: the items found, as a STAC ItemCollection (itself a valid input of a search);
- ``footprints.geojson``: one polygon per item (EPSG:4326) with its id, datetime, cloud cover,
  layer and asset hrefs, for a map or an attribute table.

A run over layers of such a folder (e.g. a composite) records the search in its resume
manifest (:func:`searches_for`), so the inputs of a result can be traced to their search.

Tilewise's own files in a folder are the ones a ``search.json`` with the marker lists (and the
three side files): only those are replaced or removed by a later search without being asked
(:func:`own_files`); a listed name that is not a plain ``.vrt`` file name of the folder is ignored.
The files of one search are written beside their final names and renamed at the end
(:class:`Staged`), so an error leaves no partial file. Standard library only: cheap to import anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from .atomic import atomic_write, new_partial

RECORD = "search.json"
ITEMS = "items.json"
FOOTPRINTS = "footprints.geojson"
FORMAT = 1
MARKER = "tilewise_stac_search"
SIDE_FILES = (RECORD, ITEMS, FOOTPRINTS)
_LAYER_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.vrt$")


def json_text(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def write_json(path: str, value: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    with atomic_write(path, unique=True) as f:
        f.write(json_text(value))


class Staged:
    """Files written under temporary names in ``folder`` (created exclusively: a planted link is never
    followed), then renamed in the order added; :meth:`discard` removes what was not renamed."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.pending: List[Tuple[str, str]] = []

    def add(self, name: str, text: str) -> None:
        final = os.path.join(self.folder, name)
        tmp = new_partial(final)
        self.pending.append((tmp, final))
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    def commit(self) -> None:
        while self.pending:
            tmp, final = self.pending[0]
            os.replace(tmp, final)
            self.pending.pop(0)

    def discard(self) -> None:
        for tmp, _ in self.pending:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        self.pending = []


def read_record(folder: str) -> Optional[Dict[str, Any]]:
    """The ``search.json`` of a folder, if it holds a Tilewise search."""
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value.get(MARKER) == FORMAT else None


def recorded_layers(record: Mapping[str, Any]) -> List[str]:
    """The file names of the layers a record lists: plain ``.vrt`` names only (never a path).

    >>> recorded_layers({"layers": [{"file": "a.vrt"}, {"file": "../victim.txt"}, {"file": "../b.vrt"}]})
    ['a.vrt']
    """
    layers = record.get("layers")
    return [layer["file"] for layer in layers if isinstance(layer, dict) and isinstance(layer.get("file"), str)
            and _LAYER_FILE.match(layer["file"])] if isinstance(layers, list) else []


def own_files(folder: str) -> Set[str]:
    """The files of ``folder`` a Tilewise search wrote, by its ``search.json`` (none without one)."""
    record = read_record(folder)
    return set(SIDE_FILES) | set(recorded_layers(record)) if record is not None else set()


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

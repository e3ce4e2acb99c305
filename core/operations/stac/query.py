"""What a STAC search looks for, the same on every kind of catalogue, and the client-side filters.

:class:`Search` holds collections, a bbox in EPSG:4326, an RFC 3339 datetime interval (normalized so
that every STAC API accepts it: dates are whole days, open ends ``..``) and a maximum
``eo:cloud_cover``. The filters here (:func:`item_matches`, :func:`cloud_ok`) give items read from a
static catalogue or an ItemCollection the answer an API gives, and check what an API sends back.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ...errors import ParameterError

Bbox = Tuple[float, float, float, float]

_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$")


@dataclass(frozen=True)
class Search:
    """A search, the same on every kind of catalogue.

    ``datetime`` is a normalized RFC 3339 interval (see :func:`normalize_datetime`);
    ``limit`` None or 0 means every matching item.
    """

    collections: Tuple[str, ...] = ()
    bbox: Optional[Bbox] = None
    datetime: Optional[str] = None
    max_cloud: Optional[float] = None
    limit: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"collections": list(self.collections), "bbox": list(self.bbox) if self.bbox else None,
                "datetime": self.datetime, "max_cloud": self.max_cloud, "limit": self.limit}


def parse_datetime(text: str) -> dt.datetime:
    """An RFC 3339 date or date-time as an aware datetime (UTC when no offset is given).

    >>> parse_datetime("2024-05-01T10:30:00Z").isoformat()
    '2024-05-01T10:30:00+00:00'
    >>> parse_datetime("2024-05-01").isoformat()
    '2024-05-01T00:00:00+00:00'
    """
    m = _DATETIME.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 date or date-time: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int(round(float(frac) * 1e6)) if frac else 0
    if zone in (None, "Z", "z"):
        tz = dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                       min(micro, 999999), tzinfo=tz)


def normalize_datetime(text: Optional[str]) -> Optional[str]:
    """An RFC 3339 interval every STAC API accepts: dates become whole days, open ends ``..``.

    >>> normalize_datetime("2024-05-01/2024-09-30")
    '2024-05-01T00:00:00Z/2024-09-30T23:59:59.999Z'
    >>> normalize_datetime("2024-05-01")
    '2024-05-01T00:00:00Z/2024-05-01T23:59:59.999Z'
    >>> normalize_datetime("2024-05-01T10:00:00Z/..")
    '2024-05-01T10:00:00Z/..'
    """
    if text is None or not text.strip():
        return None
    parts = [p.strip() for p in text.strip().split("/")]
    if len(parts) == 1:
        parts = [parts[0], parts[0]] if _is_date(parts[0]) else parts
    if len(parts) > 2 or all(p in ("", "..") for p in parts):
        raise ParameterError(f"Datetime {text!r} is not an RFC 3339 date, date-time or interval such as "
                             "2024-05-01/2024-09-30 (open ends: .., e.g. 2024-05-01/..).")
    out = [_normalize_end(p, i == 1, text) for i, p in enumerate(parts)]
    if len(out) == 2 and ".." not in out and parse_datetime(out[0]) > parse_datetime(out[1]):
        raise ParameterError(f"Datetime {text!r}: the interval ends before it starts.")
    return "/".join(out)


def _is_date(text: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


def _normalize_end(part: str, is_end: bool, text: str) -> str:
    if part in ("", ".."):
        return ".."
    try:
        parse_datetime(part)
    except ValueError:
        raise ParameterError(f"Datetime {text!r}: {part!r} is not an RFC 3339 date or date-time "
                             "(e.g. 2024-05-01 or 2024-05-01T10:00:00Z).") from None
    if _is_date(part):
        return part + ("T23:59:59.999Z" if is_end else "T00:00:00Z")
    return part


def check_bbox(bbox: Optional[Sequence[float]]) -> Optional[Bbox]:
    """``(west, south, east, north)`` in degrees; west > east crosses the antimeridian.

    >>> check_bbox([10, 45, 11, 46])
    (10.0, 45.0, 11.0, 46.0)
    """
    if bbox is None:
        return None
    values = [float(v) for v in bbox]
    if len(values) != 4:
        raise ParameterError(f"A bbox is four numbers west, south, east, north (EPSG:4326); got {list(bbox)}.")
    w, s, e, n = values
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise ParameterError(f"The bbox {values} is not west, south, east, north in degrees "
                             "(longitudes -180..180, latitudes -90..90, south <= north).")
    return (w, s, e, n)


# -- matching items ----------------------------------------------------------------------------------------

def extent_meets(collection: Mapping[str, Any], bbox: Optional[Bbox]) -> bool:
    try:
        boxes = collection["extent"]["spatial"]["bbox"]
        return bbox is None or _bbox_meets(_flat_bbox(boxes[0]), bbox)
    except (KeyError, TypeError, IndexError):
        return True


def item_time(item: Mapping[str, Any]) -> Optional[dt.datetime]:
    """The item's datetime (or the start of its interval)."""
    props = item.get("properties") or {}
    for key in ("datetime", "start_datetime"):
        value = props.get(key)
        if isinstance(value, str):
            try:
                return parse_datetime(value)
            except ValueError:
                continue
    return None


def _item_interval(item: Mapping[str, Any]) -> Tuple[Optional[dt.datetime], Optional[dt.datetime]]:
    props = item.get("properties") or {}
    start = item_time(item)
    end_text = props.get("end_datetime") if props.get("datetime") is None else None
    try:
        end = parse_datetime(end_text) if isinstance(end_text, str) else start
    except ValueError:
        end = start
    return start, end


def item_bbox(item: Mapping[str, Any]) -> Optional[Bbox]:
    """The item's bbox, or the bounds of its geometry's coordinates."""
    box = item.get("bbox")
    if isinstance(box, list) and len(box) in (4, 6):
        return _flat_bbox(box)
    coords = list(_coordinates((item.get("geometry") or {}).get("coordinates")))
    if not coords:
        return None
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    return (min(xs), min(ys), max(xs), max(ys))


def _flat_bbox(box: Sequence[float]) -> Bbox:
    """A 2-D bbox from a 4- or 6-number one (``[w, s, zmin, e, n, zmax]``)."""
    w, s, e, n = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box[:4]
    return (float(w), float(s), float(e), float(n))


def _coordinates(value: Any) -> Iterator[Tuple[float, float]]:
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2]):
        yield (float(value[0]), float(value[1]))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _coordinates(v)


def _bbox_meets(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two bboxes meet (touching counts, as STAC's intersects); west > east wraps."""
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(x0 <= y1 and y0 <= x1 for x0, x1 in _spans(a[0], a[2]) for y0, y1 in _spans(b[0], b[2]))


def _spans(west: float, east: float) -> List[Tuple[float, float]]:
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def _time_meets(item: Mapping[str, Any], interval: Optional[str]) -> bool:
    if not interval:
        return True
    start, end = _item_interval(item)
    if start is None:
        return False
    lo, _, hi = interval.partition("/") if "/" in interval else (interval, "", interval)
    if lo not in ("", "..") and (end or start) < parse_datetime(lo):
        return False
    return not (hi not in ("", "..") and start > parse_datetime(hi))


def item_matches(item: Mapping[str, Any], query: Search) -> bool:
    """Whether an item meets the collections, bbox and datetime of ``query`` (not the cloud cover)."""
    if query.collections and item.get("collection") not in query.collections:
        return False
    if query.bbox is not None:
        box = item_bbox(item)
        if box is None or not _bbox_meets(box, query.bbox):
            return False
    return _time_meets(item, query.datetime)


def cloud_cover(item: Mapping[str, Any]) -> Optional[float]:
    value = (item.get("properties") or {}).get("eo:cloud_cover")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def cloud_ok(item: Mapping[str, Any], max_cloud: Optional[float]) -> bool:
    if max_cloud is None:
        return True
    cover = cloud_cover(item)
    return cover is not None and cover <= max_cloud

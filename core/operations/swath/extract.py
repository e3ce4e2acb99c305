"""``extract`` on swath scenes: time series at points and polygons from 2-D latitude/longitude grids.

The sen3r job (Sentinel-3 OLCI WFR water quality) in one run: every feature, every scene, every
variable. :func:`extract_swath` plans a :class:`SwathJob` whose tasks are the scenes; the tile
runner runs them on local workers, a Dask cluster or this process, with resume. One task
(:func:`extract_scene`) reads its scene's geolocation once, for every feature:

* points (and, with ``geometry_mode`` vertices, the vertices of lines and polygons, as sen3r): the
  nearest pixel by great-circle distance (:mod:`~tilewise.core.kernels.swath`), within
  ``max_distance`` metres (default: the scene's pixel diagonal); beyond it the point is outside
  the swath, and its row is kept with null values;
* polygons: the pixels whose centres fall inside (in longitude/latitude, across the antimeridian),
  reduced with the extraction's statistics (numpy's definitions: population std, linear percentiles);

then reads, for each variable, only the file blocks that hold those pixels, unpacked
(``scale_factor``, ``add_offset``; ``_FillValue`` is no data), and masks flagged pixels
(:mod:`.flags`; none by default). Rows carry the swath ``row`` and ``col`` (the netCDF file's own
indexes), ``distance_m``, the pixel's ``pixel_lat``/``pixel_lon``, and a ``reason`` when a value is null.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import shapely

from ...dates import parse_date
from ...errors import InputError, ParameterError, TilewiseWarning
from ...grid import Grid, Tile
from ...io.swath import ANGLES, SwathScene, looks_like_swath, open_swath, read_angles, read_geolocation, \
    read_pixels, safe_folder, scene_date
from ...io.vector import VERTEX_INDEX, Table, Zones, check_zone_coordinates, make_samples, read_zones, \
    reproject, to_date64
from ...kernels.footprints import KIND_EMPTY, KIND_LINE, KIND_POINT, KIND_POLYGON, kind_of
from ...kernels.swath import build_index, build_near_index, chord_of, metres_of, near_mask, nearest, pixel_spacing, \
    unit_vectors
from ...options import GridOptions, OutputOptions, split_options
from ...logs import logging_to
from ...runtime.runner import RunReport, TileBudget, TiledJob, run_tiles
from ...runtime.sinks import TableSink, write_part
from ..extract.layout import date_order, feature_columns, raster_keys
from ..extract.spec import ExtractSpec, choose
from .flags import FlagRequest, flag_request, resolve_flags

WGS84 = "EPSG:4326"
LAYOUTS = ("wide", "long")
#: Why a value is null (the ``reason`` column); 0: it is not.
REASONS = ("", "outside the swath", "fill value", "flagged", "no pixel centre inside",
           "every pixel filled or flagged", "lines are measured by their vertices (GEOMETRY_MODE vertices)",
           "no geometry")
OK, OUTSIDE, FILLED, FLAGGED, NO_PIXEL, ALL_INVALID, LINE, EMPTY = range(8)
#: Options only swath runs take (a raster run refuses them when set).
SWATH_ONLY = ("variables", "max_distance", "flag_variable", "mask_flags", "angles")


@dataclass(frozen=True)
class SwathOptions:
    """The options of an extraction from swath scenes.

    As :class:`~tilewise.core.operations.extract.run.ExtractOptions` for ``statistics``,
    ``percentiles``, ``geometry_mode``, ``min_valid_fraction``, ``dates``, ``id_field``, ``layer``,
    ``zones_crs``, ``layout``; ``mask_values``, ``mask_bits`` and ``mask_preset`` (``olci-wfr``) apply
    to the flag variable. Swath-only: ``variables`` (names; default every measured variable: not flags,
    not ``*_err``), ``max_distance`` (metres; default the scene's pixel diagonal), ``flag_variable``
    (default the product's only flag variable), ``mask_flags`` (names of ``flag_meanings``:
    ``"LAND,CLOUD,INVALID"``), ``angles`` (the sun and view angles at each point's pixel, from the tie
    points). The raster options that have no meaning on a swath must stay unset.
    """

    statistics: Union[str, Sequence[Any]] = ("mean",)
    percentiles: Sequence[float] = ()
    geometry_mode: Union[int, str] = "zonal"
    min_valid_fraction: float = 0.0
    variables: Any = None
    max_distance: Optional[float] = None
    flag_variable: Optional[str] = None
    mask_flags: Any = ()
    angles: bool = False
    mask_values: Any = ()
    mask_bits: Any = ()
    mask_preset: Any = None
    dates: Optional[Any] = None
    id_field: Optional[str] = None
    layer: Optional[str] = None
    zones_crs: Optional[str] = None
    layout: Union[int, str] = "long"
    coverage: Union[int, str] = "centre"
    point_method: Union[int, str] = "nearest"
    window: int = 1
    bands: Optional[Sequence[int]] = None
    input_nodata: Optional[float] = None
    scale: Optional[float] = None
    offset: Optional[float] = None
    mask_band: Optional[int] = None
    mask_layers: Optional[Sequence[str]] = None
    output_plot: Optional[str] = None

    def __post_init__(self) -> None:
        spec = ExtractSpec(self.statistics, tuple(self.percentiles), self.coverage, self.point_method, self.window,
                           self.geometry_mode, self.min_valid_fraction)
        _refuse_raster_options(self, spec)
        variables = self.variables
        if isinstance(variables, str):
            variables = [v for v in variables.replace(";", ",").replace(" ", ",").split(",") if v.strip()]
        distance = self.max_distance
        if distance is not None and distance != 0:
            distance = float(distance)
            if not (math.isfinite(distance) and distance > 0):
                raise ParameterError(f"MAX_DISTANCE is a distance in metres above 0; got {self.max_distance}.")
        flags = flag_request(self.mask_flags, self.mask_bits, self.mask_values, self.mask_preset, self.flag_variable)
        values = dict(statistics=spec.statistics, percentiles=spec.percentiles, geometry_mode=spec.geometry_mode,
                      min_valid_fraction=spec.min_valid_fraction, coverage=spec.coverage,
                      point_method=spec.point_method, window=spec.window,
                      variables=tuple(str(v).strip() for v in variables) if variables else None,
                      max_distance=distance or None, angles=bool(self.angles),
                      flag_variable=flags.variable or None, mask_flags=flags.names,
                      mask_bits=flags.bits, mask_values=flags.values, mask_preset=flags.preset,
                      layout=choose(self.layout, LAYOUTS, "layout"),
                      dates=tuple(self.dates) if self.dates is not None and not isinstance(self.dates, str)
                      else (self.dates or None))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def spec(self) -> ExtractSpec:
        return ExtractSpec(self.statistics, tuple(self.percentiles), "centre", "nearest", 1, self.geometry_mode,
                           self.min_valid_fraction)

    @property
    def flags(self) -> FlagRequest:
        return flag_request(self.mask_flags, self.mask_bits, self.mask_values, self.mask_preset, self.flag_variable)


def _refuse_raster_options(o: SwathOptions, spec: ExtractSpec) -> None:
    """One clear message for each raster option that has no meaning on a swath."""
    if spec.coverage != "centre":
        raise ParameterError("On swath inputs, polygons take the pixels whose centres fall inside (COVERAGE centre): "
                             "a swath pixel has no square footprint to touch or cover in part.")
    if spec.point_method != "nearest" or spec.window != 1:
        raise ParameterError("On swath inputs, a point takes its nearest pixel (POINT_METHOD nearest, WINDOW 1); "
                             "draw a polygon around it to reduce the pixels near it.")
    if o.bands:
        raise ParameterError("Swath inputs have variables, not bands: name them in VARIABLES (--variables), "
                             "e.g. Oa08_reflectance,CHL_NN.")
    if o.input_nodata is not None or o.scale is not None or o.offset is not None:
        raise ParameterError("Swath variables are unpacked with their own scale_factor, add_offset and _FillValue: "
                             "INPUT_NODATA, SCALE and OFFSET do not apply to them.")
    if o.mask_band is not None or o.mask_layers:
        raise ParameterError("Swath flags come from the product's flag variable (FLAG_VARIABLE, e.g. WQSF), not "
                             "from a mask band or mask layers.")


# -- the plan -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwathPlan:
    """What a scene task needs: the scenes, the variables, the samples in longitude/latitude."""

    scenes: Tuple[SwathScene, ...]
    variables: Tuple[str, ...]
    spec: ExtractSpec
    max_distance: Optional[float]
    flags: FlagRequest
    kind: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    shapes: np.ndarray
    angles: bool = False

    @property
    def n_columns(self) -> int:
        return len(self.spec.columns)


def is_swath_run(inputs: Sequence[str], options: Dict[str, Any]) -> bool:
    """True when ``inputs`` are swath scenes (SAFE folders, manifests, netCDF/HDF5 without a geotransform).
    For a raster run, the swath-only options are taken out of ``options`` if unset, refused if set; a
    series that mixes swaths and rasters is refused."""
    swath = [looks_like_swath(str(p)) for p in inputs]
    if any(swath) and not all(swath):
        first = next(p for p, s in zip(inputs, swath) if not s)
        raise InputError(f"The inputs mix swath scenes (SAFE folders, netCDF on latitude/longitude grids) and "
                         f"rasters with a geotransform ({first}); extract them in two runs.")
    if any(swath):
        return True
    for key in SWATH_ONLY:
        value = options.pop(key, None)
        if value not in (None, "", (), [], False):
            raise ParameterError(f"{key} applies to swath inputs (SAFE folders, netCDF on latitude/longitude "
                                 "grids); the inputs are rasters.")
    return False


def plan_swath(inputs: Sequence[str], zones: Union[str, Zones], own: SwathOptions) -> Tuple[SwathPlan, Zones, Any]:
    """Open the scenes' headers, check variables and flags, move the samples to longitude/latitude."""
    if not inputs:
        raise InputError("Give at least one swath scene to extract from.")
    first = open_swath(str(inputs[0]))
    scenes = (first,) + tuple(_described(first, str(p)) for p in inputs[1:])
    variables = _variables(scenes, own.variables)
    flags = own.flags
    if not flags.empty:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TilewiseWarning)    # said once below, for the first scene
            for s in scenes[1:]:
                resolve_flags(flags, s)
        resolve_flags(flags, scenes[0])
    dates = _dates(scenes, own.dates)
    scenes = tuple(_with_date(s, d) for s, d in zip(scenes, dates))
    if isinstance(zones, str):
        zones = read_zones(zones, layer=own.layer, id_field=own.id_field)
    if own.zones_crs:
        zones = replace(zones, crs=own.zones_crs)
    if not zones.crs:
        warnings.warn(TilewiseWarning(f"The zones layer {zones.source} has no CRS; its coordinates are taken to be "
                                      "longitudes and latitudes (WGS 84)."), stacklevel=2)
    check_zone_coordinates(zones, zones.crs or WGS84)
    samples = make_samples(zones, own.spec.geometry_mode, 1)
    moved = reproject(samples.geometry, zones.crs or WGS84, WGS84, zones.source)
    kind = kind_of(moved)
    lon = np.full(len(moved), np.nan)
    lat = np.full(len(moved), np.nan)
    points = np.flatnonzero(kind == KIND_POINT)
    if len(points):
        xy = shapely.get_coordinates(moved[points])
        lon[points], lat[points] = xy[:, 0], xy[:, 1]
    shapes = np.asarray([_unwrapped(g) if k == KIND_POLYGON else None for g, k in zip(moved, kind)], dtype=object)
    plan = SwathPlan(scenes, variables, own.spec, own.max_distance, flags, kind, lon, lat, shapes, own.angles)
    return plan, zones, samples


def _described(template: SwathScene, path: str) -> SwathScene:
    """The scene of ``path``: when it is a SAFE folder holding the same files as ``template``'s, described from
    it (the same variables in its own files; its name and date its own) without opening its files, which
    takes ~0.3 s a scene (17 netCDF files); its task opens it, in a worker, and checks it
    (:func:`_opened`). Any other input is opened here."""
    folder, model = safe_folder(path), safe_folder(template.source)
    if folder is None or model is None:
        return open_swath(path)
    try:
        mine = sorted(f for f in os.listdir(folder) if f.lower().endswith(_NETCDF))
        theirs = sorted(f for f in os.listdir(model) if f.lower().endswith(_NETCDF))
    except OSError:
        return open_swath(path)
    moved = [v for v in (template.lat, template.lon) + template.variables]
    if mine != theirs or any(os.path.dirname(v.path) != model for v in moved):
        return open_swath(path)

    def move(v):
        return replace(v, path=os.path.join(folder, os.path.basename(v.path)))

    variables = tuple(move(v) for v in template.variables)
    name = os.path.basename(folder)
    date, start = scene_date(name, folder, variables[0])
    return SwathScene(path, name, template.shape, move(template.lat), move(template.lon), variables, date, start,
                      opened=False)


_NETCDF = (".nc", ".nc4", ".h5", ".hdf5", ".he5", ".hdf")


def _opened(scene: SwathScene, plan: SwathPlan) -> SwathScene:
    """A described scene opened (in its task): its own headers (variables, packing, size), checked to hold
    the plan's variables and flags; the plan's date kept."""
    real = open_swath(scene.source)
    for v in plan.variables:
        real.variable(v)                          # an InputError naming the scene when it lacks one
    if not plan.flags.empty:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TilewiseWarning)    # said in planning, for the first scene
            resolve_flags(plan.flags, real)
    return replace(real, date=scene.date, start_time=scene.start_time)


def _variables(scenes: Sequence[SwathScene], asked: Optional[Tuple[str, ...]]) -> Tuple[str, ...]:
    if asked:
        return tuple(scenes[0].variable(v).name for v in asked if all(s.variable(v) for s in scenes))
    names = [v.name for v in scenes[0].measured()]
    for s in scenes[1:]:
        other = [v.name for v in s.measured()]
        if other != names:
            raise InputError(f"The scenes hold different variables ({scenes[0].source}: {', '.join(names)}; "
                             f"{s.source}: {', '.join(other)}); choose VARIABLES all of them have.")
    if not names:
        raise InputError(f"{scenes[0].source} holds only flags and uncertainties; name the VARIABLES to extract.")
    return tuple(names)


def _dates(scenes: Sequence[SwathScene], dates: Any) -> List[Any]:
    if isinstance(dates, str):
        dates = [t for t in dates.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    if not dates:
        return [s.date for s in scenes]
    if len(dates) != len(scenes):
        raise ParameterError(f"{len(dates)} dates for {len(scenes)} scenes: give one date per scene (or none).")
    try:
        return [parse_date(d, f"entry {i + 1} of DATES") if isinstance(d, str) else d for i, d in enumerate(dates)]
    except ValueError as exc:
        raise ParameterError(f"Cannot read a date: {exc}") from None


def _with_date(scene: SwathScene, date: Any) -> SwathScene:
    return replace(scene, date=date)


def _unwrapped(g):
    """A polygon in longitude/latitude that crosses the antimeridian, moved to run past 180 (its vertices
    at -179 become 181) so it is one shape."""
    xy = shapely.get_coordinates(g)
    if len(xy) and np.nanmax(xy[:, 0]) - np.nanmin(xy[:, 0]) > 180.0:
        return shapely.transform(g, lambda c: np.column_stack([np.where(c[:, 0] < 0, c[:, 0] + 360.0, c[:, 0]),
                                                               c[:, 1]]))
    return g


# -- one scene ----------------------------------------------------------------------------------------------

def extract_scene(plan: SwathPlan, i: int, samples: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """The values of the samples ``samples`` (ascending indexes; default every sample) in scene ``i``:
    statistics ``(samples, variables, columns)``, ``n_valid``, ``reason`` ``(samples, variables)``, the
    point's pixel: ``row``, ``col``, ``distance``, ``plat``, ``plon``, and ``samples`` itself."""
    scene = plan.scenes[i] if plan.scenes[i].opened else _opened(plan.scenes[i], plan)
    geo = scene_geolocation(scene)            # once per scene and process, for every feature chunk
    lat, lon = geo.lat, geo.lon
    chosen = np.arange(len(plan.kind)) if samples is None else np.asarray(samples, np.int64)
    sub = plan if samples is None else replace(plan, kind=plan.kind[chosen], lon=plan.lon[chosen],
                                               lat=plan.lat[chosen], shapes=plan.shapes[chosen])
    n_s, n_v = len(sub.kind), len(sub.variables)
    width = scene.shape[1]
    pixel_of = np.full(n_s, -1, np.int64)
    distance = np.full(n_s, np.nan)
    members: Dict[int, np.ndarray] = {}
    points = np.flatnonzero((sub.kind == KIND_POINT) & np.isfinite(sub.lat) & np.isfinite(sub.lon))
    limit = plan.max_distance or geo.diagonal
    if len(points) and math.isfinite(limit):
        radius = chord_of(limit)
        index = geo.point_index(plan, limit, radius)
        found, chord = nearest(index, sub.lat[points], sub.lon[points], radius)
        pixel_of[points] = found
        distance[points] = np.where(found >= 0, metres_of(chord), np.nan)
    hit = np.flatnonzero(pixel_of >= 0)                  # the points' one pixel each
    polygons = np.flatnonzero(sub.kind == KIND_POLYGON)
    if len(polygons):
        members.update(_polygon_pixels(sub, polygons, lat, lon))
    wanted = np.unique(np.concatenate([pixel_of[hit]] + [m for m in members.values()]))
    rows, cols = wanted // width, wanted % width
    values = np.column_stack([read_pixels(scene.variable(v), rows, cols) for v in sub.variables]) if n_v else \
        np.zeros((len(wanted), 0))
    flagged = np.zeros(len(wanted), bool)
    if not sub.flags.empty:
        sf = resolve_flags(sub.flags, scene)
        flagged = sf.masked(read_pixels(sf.variable, rows, cols, raw=True))
    part = _reduce(sub, members, (hit, pixel_of[hit]), wanted, values, flagged)
    ok = pixel_of >= 0
    part["row"] = np.where(ok, pixel_of // width, -1)
    part["col"] = np.where(ok, pixel_of % width, -1)
    part["distance"] = distance
    flat_lat, flat_lon = lat.ravel(), lon.ravel()
    part["plat"] = np.where(ok, flat_lat[np.maximum(pixel_of, 0)], np.nan)
    part["plon"] = np.where(ok, flat_lon[np.maximum(pixel_of, 0)], np.nan)
    if sub.angles:
        part["angles"] = np.full((n_s, len(ANGLES)), np.nan)
        part["angles"][ok] = read_angles(scene, part["row"][ok], part["col"][ok])
    part["samples"] = chosen
    return part


# -- a scene's geolocation, once per process --------------------------------------------------------------

#: The bytes of geolocation (and point indexes) a process keeps for the next feature chunk of the same
#: scene; the last scene read is always kept, older ones while they fit.
GEO_CACHE_BYTES = 512 * 2 ** 20
_GEO_CACHE: "Dict[Tuple, SceneGeolocation]" = {}


@dataclass
class SceneGeolocation:
    """A scene's latitude and longitude (:func:`~tilewise.core.io.swath.read_geolocation`), its pixel
    diagonal, and the voxel indexes of the points of the plans that searched it (one per plan and
    search radius: built for every point of the plan, so each chunk of its features reuses it)."""

    lat: np.ndarray
    lon: np.ndarray
    diagonal: float
    indexes: Dict[Tuple, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return self.lat.nbytes + self.lon.nbytes + sum(a.nbytes for i in self.indexes.values()
                                                       for a in vars(i).values() if isinstance(a, np.ndarray))

    def point_index(self, plan: SwathPlan, limit: float, radius: float):
        points = np.flatnonzero((plan.kind == KIND_POINT) & np.isfinite(plan.lat) & np.isfinite(plan.lon))
        qlat, qlon = plan.lat[points], plan.lon[points]
        key = (hashlib.sha1(qlat.tobytes() + qlon.tobytes()).hexdigest(), limit)
        index = self.indexes.get(key)
        if index is None:
            # the pixels near the points by latitude/longitude cell (no sort); near a pole or across the
            # antimeridian, the cubes of their unit vectors
            index = build_near_index(self.lat, self.lon, qlat, qlon, radius)
            if index is None:
                cell = max(radius / 4.0, chord_of(self.diagonal or limit))
                index = build_index(self.lat, self.lon, cell, near=(qlat, qlon), radius=radius)
            self.indexes.clear()           # one plan at a time: an older run's index is not kept
            self.indexes[key] = index
        return index


def scene_geolocation(scene: SwathScene) -> SceneGeolocation:
    """The scene's geolocation, read once per process while its files are unchanged (keyed by their path,
    size, modification time and inode): the feature chunks of one scene that a worker runs read it once."""
    key = _geo_key(scene)
    geo = _GEO_CACHE.pop(key, None) if key is not None else None
    if geo is None:
        lat, lon = read_geolocation(scene)
        geo = SceneGeolocation(lat, lon, _diagonal(lat, lon))
    if key is not None:
        _GEO_CACHE[key] = geo                       # the newest last
        while len(_GEO_CACHE) > 1 and sum(g.nbytes for g in _GEO_CACHE.values()) > GEO_CACHE_BYTES:
            _GEO_CACHE.pop(next(iter(_GEO_CACHE)))
    return geo


def _geo_key(scene: SwathScene) -> Optional[Tuple]:
    try:
        state = tuple((s.st_size, s.st_mtime_ns, s.st_ino) for s in map(os.stat, (scene.lat.path, scene.lon.path)))
    except OSError:
        return None                                 # not a local file: not kept
    return (scene.lat.path, scene.lat.name, scene.lon.path, scene.lon.name, state)


def _diagonal(lat: np.ndarray, lon: np.ndarray) -> float:
    dr, dc = pixel_spacing(lat, lon)
    return float(math.hypot(dr, dc)) if math.isfinite(dr) and math.isfinite(dc) else float("nan")


def _polygon_pixels(plan: SwathPlan, polygons: np.ndarray, lat: np.ndarray, lon: np.ndarray
                    ) -> Dict[int, np.ndarray]:
    """The flat indexes of the pixels whose centres fall inside each polygon (longitudes taken around the
    polygon's own, so a polygon across the antimeridian finds the pixels on both sides; a polygon around a
    pole is tested in polar coordinates, :func:`_around_pole`)."""
    flat_lat, flat_lon = lat.ravel(), lon.ravel()
    # only the pixels near a polygon are sorted: those of the cubes around each polygon's centre that hold
    # every point within its farthest vertex (a point inside is within the hull, so no farther)
    shapes = plan.shapes[polygons]
    poles = [_around_pole(g) for g in shapes]
    centre = shapely.get_coordinates(shapely.centroid(shapes))
    centre[:, 1] = np.where(poles, 90.0 * np.asarray(poles, float), centre[:, 1])   # a pole: the centre
    radius = 0.0
    for g, (x, y) in zip(shapes, centre):
        xy = shapely.get_coordinates(g)
        chord = np.linalg.norm(unit_vectors(xy[:, 1], xy[:, 0]) - unit_vectors([y], [x]), axis=1)
        radius = max(radius, float(chord.max()) * 1.01 + 1e-9)
    valid = np.flatnonzero(near_mask(flat_lat, flat_lon, radius, centre[:, 1], centre[:, 0], radius))
    by_lat = valid[np.argsort(flat_lat[valid], kind="stable")]
    sorted_lat = flat_lat[by_lat]
    out = {}
    for s, pole in zip(polygons, poles):
        g = plan.shapes[s]
        x0, y0, x1, y1 = shapely.bounds(g)
        a, b = np.searchsorted(sorted_lat, y0, "left"), np.searchsorted(sorted_lat, y1, "right")
        if pole:   # every pixel poleward of the polygon's farthest vertex from the pole
            cand = by_lat[a:] if pole > 0 else by_lat[:b]
            inside = shapely.contains_xy(_polar(g, pole), *_polar_xy(flat_lon[cand], flat_lat[cand], pole))
            out[int(s)] = np.sort(cand[inside])
            continue
        cand = by_lat[a:b]
        centre = (x0 + x1) / 2.0
        cx = (flat_lon[cand] - centre + 180.0) % 360.0 - 180.0 + centre
        near = (cx >= x0) & (cx <= x1)
        cand, cx = cand[near], cx[near]
        inside = shapely.contains_xy(g, cx, flat_lat[cand])
        out[int(s)] = np.sort(cand[inside])
    return out


def _around_pole(g) -> int:
    """1 (-1) when a ring of the longitude/latitude polygon ``g`` goes around the North (South) pole: its
    longitude turns a whole circle (the pole is then inside it), else 0. Such a polygon is no shape in
    longitude/latitude (a ring at 80 degrees north from -180 to 180; the same ring with its vertices past 180,
    or closed along the pole's line)."""
    for part in getattr(g, "geoms", [g]):
        for ring in [part.exterior, *part.interiors]:
            xy = np.asarray(ring.coords)
            turn = float(np.sum((np.diff(xy[:, 0]) + 180.0) % 360.0 - 180.0))
            if abs(turn) > 180.0:
                return 1 if np.mean(xy[:, 1]) > 0 else -1
    return 0


def _polar_xy(lon: np.ndarray, lat: np.ndarray, pole: int) -> Tuple[np.ndarray, np.ndarray]:
    """Polar coordinates about the ``pole`` (azimuthal equidistant: the distance from it in degrees of
    latitude, along the meridian's direction): no seam, unlike longitude."""
    r, t = 90.0 - pole * np.asarray(lat, float), np.radians(lon)
    return r * np.sin(t), -pole * r * np.cos(t)


def _polar(g, pole: int):
    """``g`` in :func:`_polar_xy`'s coordinates, its edges (straight in longitude/latitude, the short way
    across the antimeridian) followed every 0.25 degree."""
    def ring(coords) -> np.ndarray:
        xy = np.asarray(coords, float)
        step = (np.diff(xy[:, 0]) + 180.0) % 360.0 - 180.0
        pieces = [xy[:1]]
        for (x, y), dx, dy in zip(xy[:-1], step, np.diff(xy[:, 1])):
            t = np.linspace(0.0, 1.0, max(2, int(math.ceil(max(abs(dx), abs(dy)) / 0.25)) + 1))[1:]
            pieces.append(np.column_stack([x + t * dx, y + t * dy]))
        line = np.concatenate(pieces)
        return np.column_stack(_polar_xy(line[:, 0], line[:, 1], pole))

    parts = [shapely.Polygon(ring(p.exterior.coords), [ring(h.coords) for h in p.interiors])
             for p in getattr(g, "geoms", [g])]
    return shapely.make_valid(parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts))


def _reduce(plan: SwathPlan, members: Dict[int, np.ndarray], points: Tuple[np.ndarray, np.ndarray],
            wanted: np.ndarray, values: np.ndarray, flagged: np.ndarray) -> Dict[str, np.ndarray]:
    """Statistics of the samples: ``points`` (samples, their pixel) all at once, the polygons' ``members``
    (sample: pixels) one by one."""
    n_s, n_v, n_c = len(plan.kind), len(plan.variables), plan.n_columns
    stats = np.full((n_s, n_v, n_c), np.nan)
    n_valid = np.zeros((n_s, n_v), np.int64)
    reason = np.zeros((n_s, n_v), np.int8)
    reason[plan.kind == KIND_POINT] = OUTSIDE
    reason[plan.kind == KIND_POLYGON] = NO_PIXEL
    reason[plan.kind == KIND_LINE] = LINE
    reason[plan.kind == KIND_EMPTY] = EMPTY
    names = plan.spec.columns
    single, pixels_of = points
    if len(single):
        _reduce_points(plan, single, pixels_of, wanted, values, flagged, stats, n_valid, reason)
    for s, pixels in members.items():
        pos = np.searchsorted(wanted, pixels)
        vals = values[pos]
        bad = flagged[pos]
        for v in range(n_v):
            x = vals[:, v]
            good = np.isfinite(x) & ~bad
            n_valid[s, v] = int(good.sum())
            if not good.any():
                if len(x) == 0:
                    continue
                if plan.kind[s] == KIND_POINT:
                    reason[s, v] = FLAGGED if bad.all() and np.isfinite(x).all() else FILLED
                else:
                    reason[s, v] = ALL_INVALID
                continue
            if len(x) and good.sum() / len(x) < plan.spec.min_valid_fraction:
                reason[s, v] = ALL_INVALID
                continue
            reason[s, v] = OK
            stats[s, v] = _statistics(x[good], names, plan.spec)
    return dict(stats=stats, n_valid=n_valid, reason=reason)


def _reduce_points(plan: SwathPlan, samples: np.ndarray, pixels: np.ndarray, wanted: np.ndarray,
                   values: np.ndarray, flagged: np.ndarray, stats: np.ndarray, n_valid: np.ndarray,
                   reason: np.ndarray) -> None:
    """Points of one pixel each, all at once: every statistic of one value is that value (std 0, count 1)."""
    pos = np.searchsorted(wanted, pixels)
    x = values[pos]                                        # (points, variables)
    bad = flagged[pos][:, None]
    finite = np.isfinite(x)
    good = finite & ~bad
    n_valid[samples] = good.astype(np.int64)
    reason[samples] = np.where(good, OK, np.where(finite, FLAGGED, FILLED)).astype(np.int8)
    for c, name in enumerate(plan.spec.columns):
        fill = np.zeros_like(x) if name == "std" else (np.ones_like(x) if name == "count" else x)
        stats[samples, :, c] = np.where(good, fill, np.nan)


def _statistics(x: np.ndarray, names: Sequence[str], spec: ExtractSpec) -> np.ndarray:
    """The statistic columns of the valid values ``x`` (numpy's definitions)."""
    out = np.empty(len(names))
    percentiles = dict(zip([c for c in names if c.startswith("p") and c[1:2].isdigit()], spec.percentiles))
    for i, name in enumerate(names):
        if name == "mean":
            out[i] = x.mean()
        elif name == "median":
            out[i] = np.median(x)
        elif name == "min":
            out[i] = x.min()
        elif name == "max":
            out[i] = x.max()
        elif name == "std":
            out[i] = x.std()
        elif name == "count":
            out[i] = float(len(x))
        elif name == "sum":
            out[i] = x.sum()
        else:
            out[i] = np.percentile(x, percentiles[name])
    return out


# -- the job ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwathJob(TiledJob):
    """An extraction from swath scenes for the runner: one task per scene and chunk of features
    (``chunks`` per scene: enough for one scene to keep every worker busy, one when the scenes are as
    many as the workers). The plain fields identify it (with the state of every file the scenes read,
    for resume); ``plan`` goes to the workers; ``zones`` and ``samples`` stay in this process for the table."""

    inputs: Tuple[str, ...]
    files: Tuple[str, ...]
    zones_source: str
    zones_digest: str
    options: SwathOptions
    outputs: Tuple[str, ...]
    grid: Grid
    plan: SwathPlan = field(repr=False, compare=False)
    zones: Optional[Zones] = field(default=None, repr=False, compare=False)
    samples: Any = field(default=None, repr=False, compare=False)
    chunks: int = 1

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["zones"] = None
        state["samples"] = None
        return state

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def sink(self) -> TableSink:
        from functools import partial
        from .plot import SwathPlotSink     # the plot (OUTPUT_PLOT) is drawn from the long table
        plot = os.path.abspath(self.options.output_plot) if self.options.output_plot else None
        table = partial(swath_table, self.plan, self.zones, self.samples)
        return SwathPlotSink(self.output, partial(table, self.options.layout), plot=plot,
                             long=partial(table, "long", arrow=False),
                             id_name=self.zones.id_name if self.zones is not None else "id")

    @property
    def budget(self) -> TileBudget:
        return TileBudget(len(self.plan.variables) + 3, 8)

    @property
    def tile_size(self) -> Optional[int]:
        return 1

    def tiles(self, tile_size: int) -> List[Tile]:
        n = len(self.plan.scenes) * self.chunks
        return [Tile(i, 0, i, 1, 1) for i in range(n)]


def feature_chunks(plan: SwathPlan, chunks: int) -> List[np.ndarray]:
    """The samples in ``chunks`` groups (ascending indexes each) of neighbours: ordered by latitude (a
    swath's rows run about north-south), so each chunk reads its own band of the variables' blocks."""
    n = len(plan.kind)
    if chunks <= 1:
        return [np.arange(n)]
    lat, lon = plan.lat.copy(), plan.lon.copy()
    polygons = np.flatnonzero(plan.kind == KIND_POLYGON)
    if len(polygons):
        centre = shapely.get_coordinates(shapely.centroid(plan.shapes[polygons]))
        lon[polygons], lat[polygons] = centre[:, 0], centre[:, 1]
    order = np.lexsort((lon, lat))               # lines and empty geometries (NaN) last
    return [np.sort(part) for part in np.array_split(order, chunks)]


def chunks_for(n_scenes: int, n_samples: int, run: Any) -> int:
    """Feature chunks per scene: the scenes times the chunks cover the workers (the local ones, an
    executor's, or for a Dask scheduler the local cores: its size is known only once connected)."""
    from ...runtime.executor import resolve_workers
    workers = getattr(run.executor, "workers", None)
    if not isinstance(workers, int) or workers < 1:
        workers = resolve_workers(run.workers)
    return max(1, min(-(-workers // max(n_scenes, 1)), n_samples))


def swath_scene_tile(job: SwathJob, tile: Tile, target: str) -> int:
    """Runner task ``tile``: one chunk of the features in one scene, written as a part of named arrays."""
    scene, chunk = divmod(tile.index, job.chunks)
    samples = None if job.chunks == 1 else feature_chunks(job.plan, job.chunks)[chunk]
    part = extract_scene(job.plan, scene, samples)
    part["scene"] = np.int64(scene)
    write_part(target, part)
    return tile.index


def _digest(zones: Zones) -> str:
    h = hashlib.sha256()
    h.update(repr((zones.crs, zones.id_name, len(zones))).encode())
    h.update(b"".join(w or b"" for w in shapely.to_wkb(zones.geometry, hex=False)))
    h.update(repr(np.asarray(zones.ids).tolist()).encode())
    return h.hexdigest()


def extract_swath(inputs: Sequence[str], zones: Union[str, Zones], output: str,
                  statistics: Union[str, Sequence[Any]] = ("mean",), **options) -> RunReport:
    """Statistics of every feature of ``zones`` in every swath scene of ``inputs``, written to a table.

    ``inputs`` are SAFE folders (or their ``xfdumanifest.xml``), netCDF/HDF5 files or variables on
    2-D latitude/longitude; the options are :class:`SwathOptions`' and the run options. Called by
    :func:`tilewise.core.extract` when its inputs are swaths.

    >>> extract(["S3A_OL_2_WFR____20240514T134512_..._003.SEN3"], "lakes.gpkg", "ts.parquet", "mean,count",
    ...         variables="CHL_NN,Oa08_reflectance", mask_preset="olci-wfr")               # doctest: +SKIP
    """
    own, shared = split_options(options, SwathOptions, where="extract()", statistics=statistics)
    if shared.grid != GridOptions() or shared.output != OutputOptions():
        raise ParameterError("extract() reads every scene on its own swath and writes a table: it takes no "
                             "target grid or output raster options.")
    with logging_to(shared.run.log):
        outputs = check_output(output, [str(p) for p in inputs], zones if isinstance(zones, str) else None)
        plan, zone_set, samples = plan_swath(inputs, zones, own)
    chunks = chunks_for(len(plan.scenes), len(plan.kind), shared.run)
    grid = Grid("", (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), len(plan.scenes) * chunks, 1)
    files = tuple(dict.fromkeys(f for s in plan.scenes for f in s.files))
    source = zones if isinstance(zones, str) else zone_set.source
    job = SwathJob(tuple(str(p) for p in inputs), files, source, _digest(zone_set), own, outputs, grid, plan,
                   zone_set, samples, chunks)
    with logging_to(shared.run.log):
        return run_tiles(job, swath_scene_tile, shared.run)


def check_output(output: str, inputs: Sequence[str], zones: Optional[str]) -> Tuple[str]:
    """The output table's absolute path; errors for an unknown format, an output that is an input or
    inside a SAFE product, a folder that does not exist or cannot be written."""
    from ...errors import OutputError
    from ...io.vector import output_format
    if not output:
        raise OutputError("No output table was given (.gpkg, .csv or .parquet).")
    output_format(output)
    path = os.path.abspath(output)
    taken = [os.path.abspath(p) for p in list(inputs) + ([zones] if zones else []) if "://" not in p]
    if any(path == p or path.startswith(p.rstrip("/") + "/") and os.path.isdir(p) for p in taken):
        raise OutputError(f"The output {path} is an input, or inside one; write it elsewhere.")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"Cannot write into {folder}: permission denied.")
    return (path,)


# -- the table ----------------------------------------------------------------------------------------------

def swath_table(plan: SwathPlan, zones: Zones, samples: Any, layout: str,
                parts: Iterator[Tuple[Tile, Dict[str, np.ndarray]]], arrow: bool = True) -> Table:
    """The parts of every scene as the long or wide table; warns of features no scene covers. The long
    table's string columns are Arrow arrays (for the writer), or with ``arrow`` False numpy object arrays."""
    n_scenes = len(plan.scenes)
    n_samples = len(plan.kind)
    stacked: Dict[str, np.ndarray] = {}
    for _tile, part in parts:                 # each scene's samples come in one or more chunks
        at = (int(part["scene"]), part["samples"])
        for k, v in part.items():
            if k not in ("scene", "samples"):
                if k not in stacked:
                    stacked[k] = np.empty((n_scenes, n_samples) + v.shape[1:], v.dtype)
                stacked[k][at] = v
    _warn_uncovered(zones, samples, stacked, n_scenes)
    dates = to_date64([s.date for s in plan.scenes])
    if layout == "wide":
        return _wide(plan, zones, samples, stacked, dates)
    if not arrow:
        return _long(plan, zones, samples, stacked, dates, arrow)
    return _long_chunks(plan, zones, samples, stacked, dates)


#: Rows of the long table built and written at a time (a Parquet row group each; the writer writes one
#: while the next is built).
LONG_CHUNK_ROWS = 2 ** 20


def _long_chunks(plan: SwathPlan, zones: Zones, samples: Any, st: Dict[str, np.ndarray], dates: np.ndarray,
                 rows: Optional[int] = None) -> Iterator[Table]:
    """The long table (as :func:`_long`'s, Arrow strings) in chunks of whole samples, about ``rows`` rows
    each (at least one chunk): the table of 13 million rows is never whole in memory."""
    per = max(len(plan.scenes) * len(plan.variables), 1)
    n_s = len(plan.kind)
    step = max(1, (rows or LONG_CHUNK_ROWS) // per)
    for a in range(0, max(n_s, 1), step):
        yield _long(plan, zones, samples, st, dates, True, a, min(a + step, n_s))


def _warn_uncovered(zones: Zones, samples: Any, stacked: Dict[str, np.ndarray], n_scenes: int) -> None:
    covered = np.zeros(len(zones), bool)
    hit = (stacked["reason"] == OK).any(axis=(0, 2)) | (stacked["n_valid"] > 0).any(axis=(0, 2)) | \
        (stacked["row"] >= 0).any(axis=0)
    covered[samples.feature[hit]] = True
    shaped = zones.kinds != KIND_EMPTY
    outside = np.flatnonzero(~covered & shaped)
    if len(outside) == 0:
        return
    scenes = "the scene" if n_scenes == 1 else f"any of the {n_scenes} scenes"
    shown = ", ".join(str(v) for v in zones.ids[outside[:5]])
    warnings.warn(TilewiseWarning(
        f"{len(outside)} of {int(shaped.sum())} features of the zones layer {zones.source} have no value in "
        f"{scenes}: their rows are null, with the reason ({zones.id_name} {shown}"
        f"{'...' if len(outside) > 5 else ''})."), stacklevel=2)


def _value_columns(plan: SwathPlan, samples: Any) -> List[str]:
    return ["value"] if samples.as_values else list(plan.spec.columns) + ["n_valid"]


def _long(plan: SwathPlan, zones: Zones, samples: Any, st: Dict[str, np.ndarray], dates: np.ndarray,
          arrow: bool = True, start: int = 0, stop: Optional[int] = None) -> Table:
    """Rows per sample (of samples ``start`` to ``stop``; default all), then scene (in date order), then
    variable: the arrays of ``st`` (scene, sample[, variable]) moved into that order by transposes and
    repeats, not by a gather over every row."""
    n_v = len(plan.variables)
    stop = len(plan.kind) if stop is None else stop
    n_s = max(stop - start, 0)
    taken = slice(start, stop)
    order = date_order(dates)
    n_r = len(order)
    ordered = bool(np.array_equal(order, np.arange(n_r)))

    def scenes_first(x):                                # (scenes, samples, ...) -> (samples, scenes, ...)
        return np.swapaxes(x[:, taken] if ordered else x[order][:, taken], 0, 1)

    def per_sample(x):                                  # (samples,) -> rows
        return np.repeat(np.asarray(x)[taken], n_r * n_v)

    def per_pixel(x):                                   # (scenes, samples[, k]) -> rows[, k]
        return np.repeat(scenes_first(x).reshape((n_s * n_r,) + x.shape[2:]), n_v, axis=0)

    def per_value(x):                                   # (scenes, samples, variables[, k]) -> rows[, k]
        return np.ascontiguousarray(scenes_first(x)).reshape((n_s * n_r * n_v,) + x.shape[3:])

    scene = np.tile(np.repeat(order, n_v), n_s)
    strings = _strings if arrow else _objects
    cols: Dict[str, np.ndarray] = {zones.id_name: per_sample(zones.ids[samples.feature])}
    if samples.vertex is not None:
        cols[VERTEX_INDEX] = per_sample(samples.vertex.astype(np.int32))
    cols["source"] = strings([s.name for s in plan.scenes], scene)
    cols["date"] = np.tile(np.repeat(dates[order], n_v), n_s)
    cols["time"] = strings([s.start_time for s in plan.scenes], scene)
    cols["variable"] = strings(plan.variables, np.tile(np.arange(n_v), n_s * n_r))
    _stat_columns(cols, plan, samples, per_value(st["stats"]), per_value(st["n_valid"]))
    cols["row"] = _nullable_int(per_pixel(st["row"]))
    cols["col"] = _nullable_int(per_pixel(st["col"]))
    cols["distance_m"] = per_pixel(st["distance"])
    cols["pixel_lat"] = per_pixel(st["plat"])
    cols["pixel_lon"] = per_pixel(st["plon"])
    if plan.angles:
        angles = per_pixel(st["angles"])
        for k, name in enumerate(ANGLES):
            cols[name.lower()] = angles[:, k]
    cols["reason"] = strings([None] + list(REASONS[1:]), per_value(st["reason"]))
    return Table(cols)


def _objects(names: Sequence[Optional[str]], codes: np.ndarray) -> np.ndarray:
    """The column ``names[codes]`` as a numpy array of Python strings (None: null)."""
    return np.asarray(list(names), dtype=object)[np.asarray(codes, np.int64)]


def _strings(names: Sequence[Optional[str]], codes: np.ndarray):
    """The column ``names[codes]`` (None: null) as an Arrow dictionary array: the few names once, and a code
    per row. A long table repeats each name millions of times (13 million rows: 1.3 GB as plain strings);
    the Parquet writer stores the dictionary and the codes as they are, and the file's column stays a plain
    string column to its readers (:class:`~tilewise.core.io.vector.TableWriter` decodes the dictionary for
    the other formats). The codes are the indexes themselves when the names are distinct (but for nulls first).
    """
    import pyarrow as pa
    codes = np.asarray(codes).ravel()
    lead = next((k for k, n in enumerate(names) if n is not None), len(names))     # leading nulls
    values = [str(n) for n in names[lead:] if n is not None]
    if len(values) == len(names) - lead and len(set(values)) == len(values):
        index = codes.astype(np.int32) - np.int32(lead)                 # the codes, shifted past the nulls
    else:                                               # nulls among names, or repeated: each name once
        unique = list(dict.fromkeys(str(n) for n in names if n is not None))
        code_of = np.array([-1 if n is None else unique.index(str(n)) for n in names], np.int32)
        index = code_of[codes.astype(np.int64)]
        values = unique
    missing = index < 0
    indices = pa.array(index, pa.int32(), mask=missing if missing.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


def _stat_columns(cols: Dict[str, np.ndarray], plan: SwathPlan, samples: Any, stats: np.ndarray,
                  n_valid: np.ndarray) -> None:
    """The statistic columns of ``stats`` (rows, statistics) and ``n_valid`` (rows)."""
    if samples.as_values:
        cols["value"] = stats[:, 0]          # a point's one pixel: every statistic is its value
        return
    for c, name in enumerate(plan.spec.columns):
        cols[name] = stats[:, c]
    cols["n_valid"] = n_valid.astype(np.int32)


def _nullable_int(values: np.ndarray) -> np.ndarray:
    """Row and column indexes with null (a masked array) where there is no pixel."""
    return np.ma.masked_array(values.astype(np.int32), mask=values < 0)


def _wide(plan: SwathPlan, zones: Zones, samples: Any, st: Dict[str, np.ndarray], dates: np.ndarray) -> Table:
    rows = samples.feature
    cols = feature_columns(zones, samples)
    keys = raster_keys([s.name for s in plan.scenes], dates)
    n_s = len(rows)
    names = _value_columns(plan, samples)
    everyone = np.arange(n_s)
    for r in date_order(dates):
        for v, variable in enumerate(plan.variables):
            sub: Dict[str, np.ndarray] = {}
            _stat_columns(sub, plan, samples, st["stats"][r, everyone, v], st["n_valid"][r, everyone, v])
            for stat in names:
                cols[f"{keys[r]}_{_identifier(variable)}_{stat}"] = sub[stat]
        if np.any(plan.kind == KIND_POINT):
            cols[f"{keys[r]}_row"] = _nullable_int(st["row"][r])
            cols[f"{keys[r]}_col"] = _nullable_int(st["col"][r])
            cols[f"{keys[r]}_distance_m"] = st["distance"][r]
            if plan.angles:
                for k, name in enumerate(ANGLES):
                    cols[f"{keys[r]}_{name.lower()}"] = st["angles"][r][:, k]
    geometry = samples.geometry if samples.vertex is not None else zones.geometry
    return Table(cols, np.asarray(geometry, dtype=object), zones.crs)


def _identifier(text: str) -> str:
    import re
    return re.sub(r"[^0-9A-Za-z_]", "_", text)


"""The chips' files: one CF-1.8 netCDF cube per feature, its pieces across tiles, the footprints layer.

A task writes the chips wholly inside its tile as finished files in the work folder (:func:`write_chip`)
and, in its part (:func:`~tilewise.core.runtime.sinks.write_part`), the pieces of chips that span tiles
and every chip's count of valid pixels per date. :class:`ChipSink` then assembles the spanning chips
one at a time, moves every file into the output folder under its feature's name (each atomically:
a hard link to a temporary name, then a rename), writes the footprints layer if asked, lists the
files in the folder's marker and removes the files of an earlier run there that this run did not
write again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...grid import Tile
from ...io.netcdf import Variable, geotransform_text, write_netcdf
from ...io.atomic import remove_if_there, staged_path
from ...io.diskspace import SpaceNeed
from ...runtime.sinks import Sink
from ...kernels.gapfill_plan import FLAG_MEANINGS, FLAG_MISSING
from .plan import TRAINING_FILE, chip_bytes, chip_file_names, write_marker

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from .run import ChipsJob

#: The flags of gap-filled chips are int16 (netCDF classic has no unsigned bytes); 255 is still missing.
FLAGS_TYPE = "int16"


@dataclass
class Chip:
    """A chip's values ``(dates, bands, rows, cols)`` (NaN: no data) and, when gap-filled, its flags."""

    values: np.ndarray
    flags: Optional[np.ndarray] = None

    def valid_per_date(self) -> np.ndarray:
        """Pixels with a value in every band, per date."""
        return np.count_nonzero(np.all(~np.isnan(self.values), axis=1), axis=(1, 2)).astype(np.int64)


def chip_files(job: "ChipsJob", z: int) -> List[str]:
    """The file names of chip ``z``: ``<name>.nc``, or for GeoTIFF ``<name>_<date>.tif`` per date."""
    return chip_file_names(str(job.plan.names[z]), job.format, job.time_keys)


def staged_paths(job: "ChipsJob", folder: str, z: int) -> List[str]:
    """Where a task leaves the finished files of chip ``z`` (in the work folder)."""
    return [os.path.join(folder, f"chip_{z:07d}_{k}{os.path.splitext(name)[1]}")
            for k, name in enumerate(chip_files(job, z))]


def write_chip_files(job: "ChipsJob", z: int, chip: Chip, paths: Sequence[str]) -> None:
    """Chip ``z`` in the job's format: one netCDF file, or one GeoTIFF per date."""
    if job.format == "geotiff":
        write_geotiffs(job, z, chip, paths)
    else:
        write_chip(job, z, chip, paths[0])


def write_geotiffs(job: "ChipsJob", z: int, chip: Chip, paths: Sequence[str]) -> None:
    """One GeoTIFF per date of chip ``z``: its bands (described by the variables' names), NaN nodata, the
    date as ``TIFFTAG_DATETIME``; each written under a temporary name and renamed."""
    import rasterio
    from affine import Affine
    _, _, h, w = (int(v) for v in job.plan.windows[z])
    profile = dict(driver="GTiff", width=w, height=h, count=len(job.bands), dtype=job.work_dtype,
                   crs=job.grid.crs or None, transform=Affine(*chip_transform(job, z)), nodata=float("nan"),
                   compress="deflate", interleave="band")
    for t, path in enumerate(paths):
        with staged_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(chip.values[t])
            for k, variable in enumerate(job.variables, start=1):
                dst.set_band_description(k, variable)
            if job.dated:
                dst.update_tags(TIFFTAG_DATETIME=job.time_keys[t].replace("-", ":")[:10] + " 00:00:00")
            dst.update_tags(**{k: str(v) for k, v in job.plan.attrs[z]})


def part_path(workdir: str, task: int) -> str:
    return os.path.join(workdir, f"part_{task:07d}.npz")


def chip_transform(job: "ChipsJob", z: int) -> Tuple[float, ...]:
    r, c = (int(v) for v in job.plan.windows[z][:2])
    a, _, x0, _, e, y0 = job.grid.transform
    return (a, 0.0, x0 + a * c, 0.0, e, y0 + e * r)


def write_chip(job: "ChipsJob", z: int, chip: Chip, path: str) -> str:
    """Write chip ``z`` as a CF-1.8 netCDF file at ``path`` (atomically)."""
    _, _, h, w = (int(v) for v in job.plan.windows[z])
    transform = chip_transform(job, z)
    mapping, x_attrs, y_attrs = job.cf
    a, e = transform[0], transform[4]
    xs = transform[2] + a * (np.arange(w) + 0.5)
    ys = transform[5] + e * (np.arange(h) + 0.5)
    variables = [Variable("time", ("time",), np.asarray(job.times, np.float64), _time_attrs(job)),
                 Variable("y", ("y",), ys, {**dict(y_attrs), "axis": "Y"}),
                 Variable("x", ("x",), xs, {**dict(x_attrs), "axis": "X"}),
                 Variable("crs", (), np.array(0, np.int32),
                          {**dict(mapping), "GeoTransform": geotransform_text(transform)})]
    fill = np.asarray(np.nan, job.work_dtype)
    for k, (name, band) in enumerate(zip(job.variables, job.bands)):
        variables.append(Variable(name, ("time", "y", "x"), chip.values[:, k],
                                  {"_FillValue": fill, "long_name": f"band {band}", "grid_mapping": "crs"}))
    if chip.flags is not None:
        for k, name in enumerate(job.variables):
            variables.append(Variable(f"{name}_flags", ("time", "y", "x"), chip.flags[:, k].astype(FLAGS_TYPE),
                                      _flag_attrs(name)))
    dims = {"time": len(job.times), "y": h, "x": w}
    return write_netcdf(path, dims, variables, dict(job.plan.attrs[z]))


def cut_chips(job: "ChipsJob", tile: Tile, tile_chip: Chip, folder: str) -> Dict[str, np.ndarray]:
    """The task's chips cut from ``tile_chip`` (the task's rectangle): the whole ones written to their
    files in ``folder``; returns the part: the pieces of the others, every chip's valid pixels per date."""
    plan = job.plan
    part: Dict[str, np.ndarray] = {"chips": plan.of_task(tile.index)}
    for z in plan.of_task(tile.index):
        r, c, h, w = (int(v) for v in plan.windows[z])
        r0, c0 = max(r, tile.row_off), max(c, tile.col_off)
        r1, c1 = min(r + h, tile.row_off + tile.height), min(c + w, tile.col_off + tile.width)
        cut = (slice(None), slice(None), slice(r0 - tile.row_off, r1 - tile.row_off),
               slice(c0 - tile.col_off, c1 - tile.col_off))
        piece = Chip(tile_chip.values[cut], None if tile_chip.flags is None else tile_chip.flags[cut])
        part[f"n{z}"] = piece.valid_per_date()
        if plan.parts[z] == 1 and job.format != "training":
            write_chip_files(job, int(z), piece, staged_paths(job, folder, int(z)))
            continue
        part[f"p{z}"] = piece.values
        part[f"o{z}"] = np.array([r0 - r, c0 - c], np.int64)
        if piece.flags is not None:
            part[f"f{z}"] = piece.flags
    return part


def assemble(job: "ChipsJob", z: int, tasks: Sequence[int], workdir: str) -> Chip:
    """Chip ``z`` from its pieces in the parts of ``tasks`` (NaN, flag missing, where no piece lies)."""
    _, _, h, w = (int(v) for v in job.plan.windows[z])
    shape = (len(job.times), len(job.bands), h, w)
    chip = Chip(np.full(shape, np.nan, job.work_dtype),
                np.full(shape, FLAG_MISSING, np.uint8) if job.fill is not None else None)
    for k in tasks:
        with np.load(part_path(workdir, k), allow_pickle=False) as part:
            (r, c) = part[f"o{z}"]
            values = part[f"p{z}"]
            where = (slice(None), slice(None), slice(r, r + values.shape[2]), slice(c, c + values.shape[3]))
            chip.values[where] = values
            if chip.flags is not None:
                chip.flags[where] = part[f"f{z}"]
    return chip


@dataclass(frozen=True)
class ChipSink(Sink):
    """Tasks' files -> one netCDF file per chip in ``folder`` (see the module's description), and the
    footprints layer at ``footprints``."""

    folder: str
    chip_files: Tuple[str, ...]
    stale: Tuple[str, ...]
    footprints: Optional[str]
    job: "ChipsJob" = field(repr=False, compare=False)

    @property
    def home(self) -> str:
        return self.folder

    @property
    def outputs(self) -> Tuple[str, ...]:
        return self.chip_files + ((self.footprints,) if self.footprints else ())

    def target(self, workdir: str, tile: Tile) -> str:
        return part_path(workdir, tile.index)

    def journal_entries(self, workdir: str, tile: Tile) -> List[Tuple[str, str]]:
        plan = self.job.plan
        whole = [int(z) for z in plan.of_task(tile.index) if plan.parts[z] == 1 and self.job.format != "training"]
        paths = [self.target(workdir, tile)] + [p for z in whole for p in staged_paths(self.job, workdir, z)]
        return [(os.path.basename(p), p) for p in paths]

    def space_needed(self, tiles: Sequence[Tile]) -> SpaceNeed:
        plan = self.job.plan
        kept = plan.windows[:, 2] > 0
        layers = len(self.job.times) * len(self.job.bands) * (2 if self.job.fill is not None else 1)
        total = int(chip_bytes(plan.windows[kept], layers, np.dtype(self.job.work_dtype).itemsize).sum())
        return SpaceNeed(os.path.dirname(os.path.abspath(self.folder)), total, total)

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        job, plan = self.job, self.job.plan
        os.makedirs(self.folder, exist_ok=True)
        if job.format == "training":
            log.info(f"Writing {int(np.count_nonzero(plan.windows[:, 2] > 0))} patches into {self.chip_files[0]}")
            write_training(job, self.chip_files[0], workdir)
            return self._done(workdir, tiles, [os.path.basename(self.chip_files[0])])
        spanning = plan.tasks_of()
        log.info(f"Writing {len(self.chip_files)} chips into {self.folder}")
        written = []
        for z in np.flatnonzero(plan.windows[:, 2] > 0):
            names = chip_files(job, int(z))
            finals = [os.path.join(self.folder, n) for n in names]
            if z in spanning:
                write_chip_files(job, int(z), assemble(job, int(z), spanning[int(z)], workdir), finals)
            else:
                for staged, final in zip(staged_paths(job, workdir, int(z)), finals):
                    _move(staged, final)
            written.extend(names)
        return self._done(workdir, tiles, written)

    def _done(self, workdir: str, tiles: Sequence[Tile], written: List[str]) -> Dict[str, Any]:
        """The footprints, the folder's marker, the earlier run's files removed; the report's fields."""
        job, plan = self.job, self.job.plan
        if self.footprints:
            write_footprints(job, self.footprints, valid_counts(job, tiles, workdir))
        write_marker(self.folder, written)
        for name in self.stale:
            remove_if_there(os.path.join(self.folder, name))
        r = plan.windows[plan.windows[:, 2] > 0]
        return dict(rows=len(r), width=int(r[:, 3].max()), height=int(r[:, 2].max()), bands=len(job.bands))

    def abort(self) -> None:
        pass    # every file is renamed into place whole; nothing partial is left under an output's name


def write_training(job: "ChipsJob", path: str, workdir: str) -> None:
    """FORMAT training: every patch in one netCDF file, ``feature`` its first (record) dimension, written
    patch by patch (memory: one patch). ``feature_id`` (text), ``x(feature, x)`` and ``y(feature, y)``
    (each patch's pixel centres), one ``(feature, time, y, x)`` variable per band (and its flags), and
    the features' fields as ``(feature)`` variables."""
    from ...io.netcdf import RecordVariable, Variable, write_netcdf_records
    plan = job.plan
    kept = np.flatnonzero(plan.windows[:, 2] > 0)
    h, w = (int(v) for v in plan.windows[kept[0]][2:])
    ids = [str(plan.ids[z]).encode("utf-8") for z in kept]
    width = max(1, max(len(i) for i in ids))
    mapping, x_attrs, y_attrs = job.cf
    fixed = [Variable("time", ("time",), np.asarray(job.times, np.float64), _time_attrs(job)),
             Variable("crs", (), np.array(0, np.int32), dict(mapping))]
    records = [RecordVariable("feature_id", ("id_length",), "S1", {"long_name": job.id_name, "_Encoding": "utf-8"}),
               RecordVariable("y", ("y",), "float64", dict(y_attrs)),
               RecordVariable("x", ("x",), "float64", dict(x_attrs))]
    fill = np.asarray(np.nan, job.work_dtype)
    for name, band in zip(job.variables, job.bands):
        records.append(RecordVariable(name, ("time", "y", "x"), job.work_dtype,
                                      {"_FillValue": fill, "long_name": f"band {band}", "grid_mapping": "crs",
                                       "coordinates": "feature_id"}))
    if job.fill is not None:
        records.extend(RecordVariable(f"{name}_flags", ("time", "y", "x"), FLAGS_TYPE, _flag_attrs(name))
                       for name in job.variables)
    dims = {"time": len(job.times), "y": h, "x": w, "id_length": width}
    fields = _field_records(job, kept, [r.name for r in records] + ["time", "crs"], dims)
    records.extend(f[0] for f in fields)
    tasks = plan.tasks_of(every=True)

    def patches():
        for j, (z, text) in enumerate(zip(kept, ids)):
            chip = assemble(job, int(z), tasks[int(z)], workdir)
            a, _, x0, _, e, y0 = chip_transform(job, int(z))
            record = {"feature_id": np.frombuffer(text.ljust(width, b"\0"), dtype="S1"),
                      "x": x0 + a * (np.arange(w) + 0.5), "y": y0 + e * (np.arange(h) + 0.5)}
            for k, name in enumerate(job.variables):
                record[name] = chip.values[:, k]
                if chip.flags is not None:
                    record[f"{name}_flags"] = chip.flags[:, k]
            for variable, values in fields:
                record[variable.name] = values[j]
            yield record
    attrs = {"Conventions": "CF-1.8", "title": f"Tilewise training set: {len(kept)} patches of {w} x {h} pixels",
             "source": "tilewise chips", "id_field": job.id_name}
    write_netcdf_records(path, dims, fixed, attrs, "feature", records, patches(), len(kept))


_FIXED_ATTRIBUTES = ("Conventions", "title", "source", "feature_id", "id_field")


def _field_records(job: "ChipsJob", kept: np.ndarray, taken: List[str], dims: Dict[str, int]) -> List[Tuple[Any, list]]:
    """The features' fields as variables along ``feature`` (labels for training): numbers as double (NaN
    where missing; int32 when all are whole and present), other values as text; ``dims`` gets each text
    field's length dimension."""
    from ...io.netcdf import RecordVariable, nc_name
    plan = job.plan
    rows = [dict(plan.attrs[z]) for z in kept]
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in _FIXED_ATTRIBUTES))
    out = []
    for key in keys:
        values = [row.get(key) for row in rows]
        name = nc_name(key, taken)
        taken.append(name)
        present = [v for v in values if v is not None]
        if all(isinstance(v, (int, float)) for v in present):
            whole = len(present) == len(values) and all(isinstance(v, int) and -2**31 <= v < 2**31 for v in values)
            dtype = "int32" if whole else "float64"
            data = [np.asarray(np.nan if v is None else v, dtype) for v in values]
            attrs = {"long_name": key} if whole else {"long_name": key, "_FillValue": np.nan}
            out.append((RecordVariable(name, (), dtype, attrs), data))
            continue
        texts = [("" if v is None else str(v)).encode("utf-8") for v in values]
        length = nc_name(f"{name}_length", taken + list(dims))
        dims[length] = max(1, max(len(t) for t in texts))
        data = [np.frombuffer(t.ljust(dims[length], b"\0"), dtype="S1") for t in texts]
        out.append((RecordVariable(name, (length,), "S1", {"long_name": key, "_Encoding": "utf-8"}), data))
    return out


def _time_attrs(job: "ChipsJob") -> Dict[str, Any]:
    if job.dated:
        return {"standard_name": "time", "long_name": "time", "axis": "T", "units": "days since 1970-01-01",
                "calendar": "standard"}
    return {"long_name": "step (the inputs have no dates)"}


def _flag_attrs(name: str) -> Dict[str, Any]:
    codes = sorted(FLAG_MEANINGS)
    return {"long_name": f"gap filling of {name}", "flag_values": np.array(codes, FLAGS_TYPE),
            "flag_meanings": " ".join(FLAG_MEANINGS[c].replace(" ", "_").replace("-", "_") for c in codes),
            "grid_mapping": "crs"}


def valid_counts(job: "ChipsJob", tiles: Sequence[Tile], workdir: str) -> np.ndarray:
    """``(chips, dates)``: each chip's pixels with a value in every band, summed over its pieces."""
    counts = np.zeros((len(job.plan.windows), len(job.times)), np.int64)
    for tile in tiles:
        with np.load(part_path(workdir, tile.index), allow_pickle=False) as part:
            for z in part["chips"]:
                counts[z] += part[f"n{z}"]
    return counts


def write_footprints(job: "ChipsJob", path: str, counts: np.ndarray) -> None:
    """The footprints layer: per chip its id, file, extent (the geometry, in the output CRS), size, and
    the fraction of its pixels with a value in every band on each date (``valid_d20240512``...)."""
    import shapely

    from ...io.vector import Table, write_table
    from ..extract.layout import raster_keys
    plan = job.plan
    kept = np.flatnonzero(plan.windows[:, 2] > 0)
    boxes = []
    for z in kept:
        a, _, x0, _, e, y0 = chip_transform(job, int(z))
        h, w = (int(v) for v in plan.windows[z][2:])
        boxes.append(shapely.box(x0, y0 + e * h, x0 + a * w, y0))
    files = np.array([f"{plan.names[z]}_<date>.tif" if job.format == "geotiff" else
                      TRAINING_FILE if job.format == "training" else chip_files(job, int(z))[0] for z in kept],
                     dtype=object)
    cols: Dict[str, np.ndarray] = {job.id_name: plan.ids[kept], "file": files,
                                   "width": plan.windows[kept, 3].astype(np.int32),
                                   "height": plan.windows[kept, 2].astype(np.int32)}
    dates = np.asarray(job.times, np.int64).astype("datetime64[D]") if job.dated else \
        np.full(len(job.times), np.datetime64("NaT", "D"))
    keys = raster_keys([f"step{t}" for t in range(len(job.times))], dates)
    area = (plan.windows[kept, 2] * plan.windows[kept, 3]).astype(np.float64)
    for t, key in enumerate(keys):
        cols[f"valid_{key}"] = counts[kept, t] / area
    write_table(Table(cols, np.asarray(boxes, dtype=object), job.grid.crs or None), path)


def _move(src: str, dst: str) -> None:
    """``src`` to ``dst`` atomically, leaving ``src`` for a resumed run (a hard link, else a copy)."""
    with staged_path(dst) as tmp:
        remove_if_there(tmp)          # left by a run that was killed here
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

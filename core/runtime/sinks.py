"""Sinks: what turns a run's tile results into its output(s).

The runner (:mod:`.runner`) asks a job for its sink and drives it:

1. the work folder is named after :attr:`Sink.home` (``.NAME.tilewise-work`` beside it);
2. :meth:`Sink.planned` is the sink for the run's tile size and workers (e.g. one that writes in
   place), and :meth:`Sink.begin` prepares what the tiles write into, once the work folder is ready;
3. for each tile, :meth:`Sink.target` is what the tile function writes to (in a worker),
   and :meth:`Sink.journal_entries` what it leaves, made durable and listed in the journal
   (so a resumed run reuses them);
4. :meth:`Sink.finish` assembles the output(s) from every tile's files and returns
   what the report says of them; :meth:`Sink.abort` removes partial outputs after a failure.

Sinks:

- :class:`CogSink`: raster tiles -> VRT -> Cloud-Optimized GeoTIFF, for one or several
  outputs from one run (band groups split into one COG each, e.g. one per scene or
  date; or a second tile file of another type, e.g. flags beside values); uncompressed
  outputs without overviews, with local workers, are written in place instead: the workers
  write straight into the blocks of the final file (:mod:`tilewise.core.io.inplace`); compressed
  outputs are assembled from the workers' compressed blocks (:mod:`tilewise.core.io.packed`);
- :class:`GdalSink`: no tiles; the inputs laid out in a VRT that GDAL's COG driver
  writes (the mosaic of inputs already on the output grid);
- :class:`TableSink`: each tile writes its rows (arrays) to a part file; finishing
  merges all the parts, in tile order (a feature spanning tiles gets all its partial
  results at once), into one table.

A new kind of output is a new sink here; the runner does not change.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import OutputError
from ..grid import Grid, Tile
from ..options import OutputSpec
from ..io.atomic import atomic_write, remove_if_there, remove_with_sidecar
from ..io.diskspace import SpaceNeed
from ..paths import partial_path, workdir_for
from ..phases import timed

log = logging.getLogger(__name__)

#: Overviews add up to a third to a COG's pixels.
_OVERVIEWS = 4 / 3


class Sink:
    """The interface the runner drives (see the module's description)."""

    #: False: the sink makes its output without tiles (the runner computes nothing).
    tiled = True

    @property
    def home(self) -> str:
        """The path the work folder is named after: the output, or the folder of the outputs."""
        raise NotImplementedError

    @property
    def outputs(self) -> Tuple[str, ...]:
        raise NotImplementedError

    def workdir(self) -> str:
        return workdir_for(self.home)

    @property
    def uses_workdir(self) -> bool:
        """Whether the sink puts files in the work folder (False: a run that journals nothing needs none)."""
        return True

    def target(self, workdir: str, tile: Tile) -> Any:
        """What the tile function writes ``tile`` to (a path, or a tuple of paths)."""
        raise NotImplementedError

    def task_target(self, workdir: str, tile: Tile, tile_size: int) -> Any:
        """What the runner hands the tile function for ``tile`` of a plan of ``tile_size`` tiles (by
        default :meth:`target`)."""
        return self.target(workdir, tile)

    def files(self, workdir: str, tile: Tile) -> List[str]:
        """The files a finished ``tile`` leaves in the work folder."""
        target = self.target(workdir, tile)
        return list(target) if isinstance(target, tuple) else [target]

    def journal_entries(self, workdir: str, tile: Tile) -> List[Tuple[str, str]]:
        """What the journal lists for a finished ``tile``: ``(name, file)``, the file made durable first and
        listed with its size under ``name`` (by default each of :meth:`files` under its own name)."""
        return [(os.path.basename(path), path) for path in self.files(workdir, tile)]

    def planned(self, tile_size: int, local: bool) -> "Sink":
        """The sink for a run in tiles of ``tile_size`` on ``local`` workers (processes of this machine,
        which see the files of this one) or not; by default itself."""
        return self

    def alone(self, tile: Tile) -> "Sink":
        """The sink for a run whose one tile is ``tile`` and whose work folder is not kept (nothing to resume:
        see :func:`.workdir.is_durable`); by default itself."""
        return self

    def begin(self, workdir: str, finished: bool) -> "Sink":
        """Prepare what the tiles write into, in the ready work folder (``finished``: a resumed run's
        finished tiles are in it); return the sink that hands out the targets. By default itself."""
        return self

    def tile_finished(self, workdir: str, tile: Tile) -> None:
        """``tile`` of this run is finished and journaled: a sink may take its files in now, while the
        workers compute the next tiles (the runner counts that time as assembly). By default nothing."""

    def space_needed(self, tiles: Sequence[Tile]) -> SpaceNeed:
        """Bytes the run needs beside its output: ``tiles`` still to compute, then the output(s)."""
        return SpaceNeed(os.path.dirname(self.outputs[0]), 0, 0)

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        """Make the output(s) from the files of ``tiles``; return the report's fields (width, height,
        bands for rasters; rows for tables)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Remove what a failed run left of the outputs (never an output that was there before)."""
        for path in self.outputs:
            remove_if_there(partial_path(path))


# -- rasters -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CogOutput:
    """One COG of a run: ``spec`` (path, type, nodata...), its band names, and where its bands come
    from: tile file ``layer`` (0, or another file per tile of another type), bands ``bands``
    (1-based; by default all of that file, in order)."""

    spec: OutputSpec
    band_names: Tuple[str, ...]
    bands: Tuple[int, ...] = ()
    layer: int = 0

    @property
    def source_bands(self) -> Tuple[int, ...]:
        return self.bands or tuple(range(1, len(self.band_names) + 1))


@dataclass(frozen=True)
class TileTarget:
    """A :class:`CogSink` tile's files (one per layer) and the overview levels its worker builds for
    each layer beside them in ``workdir`` (see :mod:`tilewise.core.io.overviews`)."""

    paths: Tuple[str, ...]
    workdir: str
    levels: Tuple[int, ...]


@dataclass(frozen=True)
class InPlaceTarget:
    """A tile written in place: for each COG, the layouts of its file's images (full resolution, then the
    overview levels) and which bands of which tile layer go in it; for each tile layer, how many overview
    levels the worker builds and writes."""

    cogs: Tuple[Tuple[Tuple[Any, ...], int, Tuple[int, ...]], ...]   # (layouts, layer, 1-based bands)
    levels: Tuple[int, ...]


def _bands(data: np.ndarray, bands: Tuple[int, ...]) -> np.ndarray:
    """The ``bands`` (1-based) of ``data`` (bands, rows, cols) that an output takes, in that order."""
    return data if bands == tuple(range(1, data.shape[0] + 1)) else data[[b - 1 for b in bands]]


@dataclass(frozen=True)
class PackedTarget:
    """A tile written as its outputs' compressed blocks (:mod:`tilewise.core.io.packed`): one file per output and
    level (:meth:`CogSink.packed_path`) in ``workdir``; for each tile layer, how many overview levels the worker
    builds (``levels``) and how many of those it writes compressed (``packed``: the others, uncompressed)."""

    workdir: str
    levels: Tuple[int, ...]
    packed: Tuple[int, ...]


@dataclass(frozen=True)
class DirectTarget:
    """The one tile of a run that keeps no work folder (:meth:`CogSink.alone`): its worker writes each of ``cogs``
    straight as its COG, at the output's partial name (renamed by :meth:`CogSink.finish`): no tile file, no VRT."""

    cogs: Tuple[CogOutput, ...]


@dataclass(frozen=True)
class CogSink(Sink):
    """Raster tiles -> VRT -> COG, for each of ``outputs``. The tiles of one layer are one file per tile
    whose type and nodata are those of its outputs (which must agree). ``folder``: the folder the
    outputs are written to as a set (the work folder is named after it), if any.

    ``in_place`` (:meth:`planned`): no tile files; the workers write into each output's final file, made in
    the work folder by :meth:`begin` (``layouts``) and renamed to the output by :meth:`finish`.

    ``packed`` (:meth:`planned`): each tile file holds an output's blocks, compressed as the output is; the
    output is assembled by copying them (:mod:`tilewise.core.io.packed`).

    ``direct`` (:meth:`alone`): one tile, the whole grid, no work folder kept; its worker writes the COGs
    (:class:`DirectTarget`)."""

    grid: Grid
    cogs: Tuple[CogOutput, ...]
    folder: str = ""
    in_place: bool = False
    layouts: Tuple[Any, ...] = ()
    direct: bool = False
    packed: bool = False

    def __post_init__(self) -> None:
        for layer in self.layers:
            specs = {(c.spec.dtype, c.spec.nodata) for c in self.cogs if c.layer == layer}
            if len(specs) > 1:
                raise OutputError(f"The outputs of tile layer {layer} differ in type or nodata: {sorted(specs)}.")

    @classmethod
    def single(cls, grid: Grid, spec: OutputSpec, band_names: Sequence[str]) -> "CogSink":
        """One COG of every band."""
        return cls(grid, (CogOutput(spec, tuple(band_names)),))

    @classmethod
    def per_band(cls, grid: Grid, specs: Sequence[OutputSpec], band_names: Sequence[str], folder: str = "",
                 extra: Sequence[CogOutput] = ()) -> "CogSink":
        """One COG of every band (one spec), or one COG per band (one spec each, e.g. per scene or date, in
        ``folder``); then the ``extra`` outputs (e.g. flags from another tile layer)."""
        if len(specs) == 1:
            cogs = [CogOutput(specs[0], tuple(band_names))]
        else:
            cogs = [CogOutput(spec, (name,), (k + 1,)) for k, (spec, name) in enumerate(zip(specs, band_names))]
        return cls(grid, tuple(cogs) + tuple(extra), folder)

    @property
    def home(self) -> str:
        return self.folder or self.cogs[0].spec.path

    @property
    def outputs(self) -> Tuple[str, ...]:
        return tuple(c.spec.path for c in self.cogs)

    @property
    def layers(self) -> Tuple[int, ...]:
        return tuple(sorted({c.layer for c in self.cogs}))

    def layer_spec(self, layer: int) -> OutputSpec:
        """The type, nodata and compression of the tile files of ``layer``."""
        return next(c.spec for c in self.cogs if c.layer == layer)

    def layer_bands(self, layer: int) -> int:
        return max(b for c in self.cogs if c.layer == layer for b in c.source_bands)

    def target(self, workdir: str, tile: Tile) -> Any:
        """The tile file's path (one layer), or one path per layer."""
        from ..io.cog import tile_path
        paths = tuple(tile_path(workdir, tile, layer) for layer in self.layers)
        return paths[0] if len(paths) == 1 else paths

    def overview_levels(self, layer: int, tile_size: int) -> int:
        """The overview levels the workers build for the outputs of tile ``layer`` (0: GDAL builds them all,
        or there are none): only when that layer's outputs all have overviews of one resampling."""
        from ..io.overviews import worker_levels
        cogs = [c for c in self.cogs if c.layer == layer]
        if not all(c.spec.overviews for c in cogs) or len({c.spec.overview_resampling for c in cogs}) > 1:
            return 0
        spec = cogs[0].spec
        size = min(tile_size, max(self.grid.width, self.grid.height))  # what finish() sees of the plan
        return worker_levels(self.grid.width, self.grid.height, size, spec.overview_resampling, spec.dtype,
                             has_nodata=spec.nodata is not None)

    def packed_levels(self, layer: int, tile_size: int) -> Tuple[int, int]:
        """Packed (:mod:`tilewise.core.io.packed`): how many overview levels the workers build for tile ``layer``
        (of :meth:`overview_levels`, those on the output's blocks and the one after them), and how many of those
        they write as the output's compressed blocks (the others are written uncompressed, for GDAL)."""
        from ..io.packed import aligned_levels
        side = max(self.grid.width, self.grid.height)
        levels = self.overview_levels(layer, tile_size)
        packed = aligned_levels(min(tile_size, side), levels, side)
        return min(levels, packed + 1), packed

    def planned(self, tile_size: int, local: bool) -> "CogSink":
        """Written in place when the workers are local and every output is uncompressed, without overviews or
        with overview levels the workers build (:func:`~tilewise.core.io.inplace.fits`); else through tile
        files (e.g. Dask workers on other machines, which may not see the same files): of the outputs'
        compressed blocks when every output is compressed and the tiles are on its blocks
        (:func:`~tilewise.core.io.packed.fits`; :meth:`packed_levels` says at which overview levels)."""
        from ..io import packed
        from ..io.inplace import fits
        from ..io.overviews import overview_sizes
        sizes = len(overview_sizes(self.grid.width, self.grid.height))
        if local and all(fits(c.spec, tile_size, self.overview_levels(c.layer, tile_size), sizes) for c in self.cogs):
            return replace(self, in_place=True)
        side = max(self.grid.width, self.grid.height)
        if all(packed.fits(c.spec, tile_size, self.overview_levels(c.layer, tile_size), sizes, side)
               for c in self.cogs):
            return replace(self, packed=True)
        return self

    def alone(self, tile: Tile) -> "CogSink":
        """Direct (the worker writes each COG from its array, the bytes the tile file and VRT route makes)
        when ``tile`` is the whole grid, GDAL builds every overview level (none by the worker) and each
        output has a nodata (the route's VRT declares one); else as planned (e.g. written in place)."""
        whole = (tile.row_off, tile.col_off, tile.height, tile.width) == (0, 0, self.grid.height, self.grid.width)
        size = max(self.grid.width, self.grid.height)
        if self.in_place or not whole or any(self.overview_levels(layer, size) for layer in self.layers) \
                or any(c.spec.nodata is None for c in self.cogs):
            return self
        return replace(self, direct=True, packed=False)

    @property
    def uses_workdir(self) -> bool:
        return not self.direct

    def packed_path(self, workdir: str, tile: Tile, k: int, level: int = 0) -> str:
        """The file of ``tile``'s blocks of output ``k`` at overview ``level`` (0: full resolution), when packed."""
        from ..io.cog import tile_path
        from ..io.overviews import overview_tile_path
        return overview_tile_path(workdir, tile, level, f"p{k}") if level else tile_path(workdir, tile, f"p{k}")

    def in_place_path(self, workdir: str, k: int) -> str:
        """The file written in place for output ``k``, until :meth:`finish` renames it."""
        return os.path.join(workdir, f"output_{k}.tif")

    def begin(self, workdir: str, finished: bool) -> "CogSink":
        """Written in place: each output's file laid out in the work folder (GDAL's COG layout, every block
        allocated), or, for a resumed run with finished tiles, the file it left reopened."""
        if not self.in_place:
            return self
        from ..io.cog import cog_options
        from ..io.inplace import open_layout, plan_layout
        layouts = []
        for k, cog in enumerate(self.cogs):
            path = self.in_place_path(workdir, k)
            if finished:
                try:
                    layouts.append(open_layout(path, cog.spec))
                except (OSError, OutputError) as exc:
                    raise OutputError(f"The partial output {path} of the interrupted run is damaged ({exc}): "
                                      "run again without resume.") from None
                continue
            vrt, mode = self._empty_vrt(workdir, k)
            try:
                layouts.append(plan_layout(vrt, path, cog.spec, cog_options(cog.spec, overviews=mode)))
            except OutputError:     # GDAL laid it out otherwise (another version?): the tile route, as before
                return replace(self, in_place=False)
        return replace(self, layouts=tuple(layouts))

    def _empty_vrt(self, workdir: str, k: int) -> Tuple[str, str]:
        """An empty VRT of output ``k`` (no pixel), with empty overview levels declared as the tile route
        declares the workers' (and the COG driver's ``OVERVIEWS`` that route gives: see :meth:`finish`)."""
        from ..io.cog import write_vrt
        from ..io.overviews import declare_overviews, level_grid, overview_sizes
        cog = self.cogs[k]
        vrt = write_vrt(os.path.join(workdir, f"layout_{k}.vrt"), self.grid, cog.spec, cog.band_names, [])
        levels = len(overview_sizes(self.grid.width, self.grid.height)) if cog.spec.overviews else 0
        if not levels:
            return vrt, "IGNORE_EXISTING"         # cog_options() gives NONE for a spec without overviews
        names = [os.path.basename(write_vrt(os.path.join(workdir, f"layout_{k}_ovr{level}.vrt"),
                                            level_grid(self.grid, level), cog.spec, cog.band_names, []))
                 for level in range(1, levels + 1)]
        declare_overviews(vrt, names)
        return vrt, "FORCE_USE_EXISTING"

    def files(self, workdir: str, tile: Tile) -> List[str]:
        if self.packed:      # each output's full resolution (written after its levels)
            return [self.packed_path(workdir, tile, k) for k in range(len(self.cogs))]
        return [] if self.in_place or self.direct else super().files(workdir, tile)

    def journal_entries(self, workdir: str, tile: Tile) -> List[Tuple[str, str]]:
        """Written in place: the tile, under its own name, with the file(s) it wrote into."""
        if self.direct:
            return []
        if not self.in_place:
            return super().journal_entries(workdir, tile)
        return [(f"inplace{k}_{tile.row_off:07d}_{tile.col_off:07d}", self.in_place_path(workdir, k))
                for k in range(len(self.cogs))]

    def task_target(self, workdir: str, tile: Tile, tile_size: int) -> Any:
        """:meth:`target`, a :class:`TileTarget` when the workers build overview levels, or an
        :class:`InPlaceTarget`, a :class:`PackedTarget` or a :class:`DirectTarget`."""
        if self.direct:
            return DirectTarget(self.cogs)
        if self.packed:
            levels = [self.packed_levels(layer, tile_size) for layer in self.layers]
            return PackedTarget(workdir, tuple(top for top, _ in levels), tuple(packed for _, packed in levels))
        if self.in_place:
            if len(self.layouts) != len(self.cogs):
                raise RuntimeError("CogSink.begin() must lay out the outputs before the tiles run")
            cogs = tuple((layouts, c.layer, c.source_bands) for layouts, c in zip(self.layouts, self.cogs))
            return InPlaceTarget(cogs, tuple(self.overview_levels(layer, tile_size) for layer in self.layers))
        levels = tuple(self.overview_levels(layer, tile_size) for layer in self.layers)
        target = self.target(workdir, tile)
        if not any(levels):
            return target
        return TileTarget(target if isinstance(target, tuple) else (target,), workdir, levels)

    def write(self, target: Any, tile: Tile, *arrays: np.ndarray) -> None:
        """Write ``tile``'s arrays (bands, rows, cols), one per layer and in the layers' types, to ``target``
        (in a worker), after the overview levels a :class:`TileTarget` asks for (so a finished tile,
        which a resumed run reuses, always has them)."""
        if isinstance(target, InPlaceTarget):
            self._write_in_place(target, tile, arrays)
            return
        if isinstance(target, DirectTarget):
            self._write_direct(target, arrays)
            return
        if isinstance(target, PackedTarget):
            self._write_packed(target, tile, arrays)
            return
        from ..io.cog import write_tile
        from ..io.overviews import write_tile_overviews
        overviews = target if isinstance(target, TileTarget) else None
        paths = overviews.paths if overviews else target if isinstance(target, tuple) else (target,)
        if len(arrays) != len(paths):
            raise ValueError(f"{len(arrays)} arrays for {len(paths)} tile layers")
        for i, (layer, path, data) in enumerate(zip(self.layers, paths, arrays)):
            if overviews and overviews.levels[i]:
                with timed("overviews"):
                    write_tile_overviews(overviews.workdir, data, self.grid, tile, self.layer_spec(layer),
                                         overviews.levels[i], layer)
            with timed("tile writes"):
                write_tile(path, data, self.grid, tile, self.layer_spec(layer))

    def _write_direct(self, target: DirectTarget, arrays: Sequence[np.ndarray]) -> None:
        """Each output's COG from its layer's array (the grid's one tile), at the output's partial name."""
        from ..io.cog import write_array_cog
        if len(arrays) != len(self.layers):
            raise ValueError(f"{len(arrays)} arrays for {len(self.layers)} tile layers")
        with timed("tile writes"):
            for cog in target.cogs:
                data = _bands(arrays[self.layers.index(cog.layer)], cog.source_bands)
                write_array_cog(data, self.grid, cog.spec, cog.band_names, partial_path(cog.spec.path))

    def _pyramids(self, arrays: Sequence[np.ndarray], levels: Sequence[int]) -> Iterator[Tuple[int, List[np.ndarray]]]:
        """Each tile layer and its pyramid: the layer's array, then the ``levels[i]`` overview levels of it that
        its worker builds."""
        from ..io.overviews import tile_overviews
        if len(arrays) != len(self.layers):
            raise ValueError(f"{len(arrays)} arrays for {len(self.layers)} tile layers")
        for i, (layer, data) in enumerate(zip(self.layers, arrays)):
            pyramid = [data]
            if levels[i]:
                spec = self.layer_spec(layer)
                with timed("overviews"):
                    pyramid += tile_overviews(data, spec.nodata, spec.overview_resampling, levels[i])
            yield layer, pyramid

    def _write_packed(self, target: PackedTarget, tile: Tile, arrays: Sequence[np.ndarray]) -> None:
        """Each output's blocks of the tile, compressed, at full resolution and at the overview levels its worker
        builds on the output's blocks; the next level, if the worker builds it, uncompressed (GDAL compresses it at
        the end); the levels first, so that a finished tile (what a resumed run reuses) has them."""
        from ..io.cog import write_tile
        from ..io.overviews import level_grid, level_tile
        for i, (layer, pyramid) in enumerate(self._pyramids(arrays, target.levels)):
            with timed("tile writes"):
                for k, cog in enumerate(self.cogs):
                    if cog.layer != layer:
                        continue
                    for level in reversed(range(len(pyramid))):
                        path = self.packed_path(target.workdir, tile, k, level)
                        if level:
                            os.makedirs(os.path.dirname(path), exist_ok=True)
                        write_tile(path, _bands(pyramid[level], cog.source_bands), level_grid(self.grid, level),
                                   level_tile(tile, level), cog.spec, packed=level <= target.packed[i])

    def _write_in_place(self, target: InPlaceTarget, tile: Tile, arrays: Sequence[np.ndarray]) -> None:
        """Each layer's pixels, and the overview levels its worker builds, into the blocks of its outputs."""
        from ..io.inplace import write_tile_in_place
        from ..io.overviews import level_tile
        for layer, pyramid in self._pyramids(arrays, target.levels):
            with timed("tile writes"):
                for layouts, cog_layer, bands in target.cogs:
                    if cog_layer != layer:
                        continue
                    for level, pixels in enumerate(pyramid):
                        write_tile_in_place(layouts[level], level_tile(tile, level), _bands(pixels, bands))

    def space_needed(self, tiles: Sequence[Tile]) -> SpaceNeed:
        pixels = sum(t.width * t.height for t in tiles)
        tile_bytes = sum(pixels * self.layer_bands(layer) * np.dtype(self.layer_spec(layer).dtype).itemsize
                         for layer in self.layers)
        output = sum(int(self.grid.width * self.grid.height * len(c.band_names) * np.dtype(c.spec.dtype).itemsize
                         * (_OVERVIEWS if c.spec.overviews else 1)) for c in self.cogs)
        if any(c.spec.overviews for c in self.cogs):
            tile_bytes = int(tile_bytes * _OVERVIEWS)  # the workers' overview levels beside the tiles
        if self.in_place or self.direct:
            tile_bytes = 0                             # the tiles go straight into the outputs
        return SpaceNeed(os.path.dirname(self.outputs[0]), tile_bytes, output)

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        """Each COG from its tile VRT; the workers' overview levels (and GDAL's above them) declared as its
        overviews. The report's ``phases`` count laying out those levels as ``overviews``."""
        tile_size = max((max(t.width, t.height) for t in tiles), default=0)
        if self.in_place:
            return self._finish_in_place(workdir, tiles, tile_size)
        log.info("Assembling the Cloud-Optimized GeoTIFF" if len(self.cogs) == 1 else
                 f"Assembling {len(self.cogs)} Cloud-Optimized GeoTIFFs")
        if self.packed:
            return self._finish_packed(workdir, tiles, tile_size)
        if self.direct:  # the worker wrote the COGs (the tile route's message, as its bytes)
            from ..io.cog import replace_output
            for cog in self.cogs:
                replace_output(partial_path(cog.spec.path), cog.spec.path)
            return self._summary()
        seconds = sum(self._assemble_through_vrt(workdir, tiles, k, self.overview_levels(cog.layer, tile_size),
                                                 cog.layer, cog.bands) for k, cog in enumerate(self.cogs))
        # without the workers' levels GDAL builds every level, within the assembly
        return self._summary(seconds if any(self.overview_levels(layer, tile_size) for layer in self.layers) else None)

    def _summary(self, overviews: Optional[float] = None) -> Dict[str, Any]:
        """The outputs' size and bands for the run's report; ``overviews``: the seconds spent on the overview
        levels, the report's ``overviews`` phase."""
        summary: Dict[str, Any] = dict(width=self.grid.width, height=self.grid.height,
                                       bands=sum(len(c.band_names) for c in self.cogs))
        if overviews is not None:
            summary["phases"] = {"overviews": overviews}
        return summary

    def _assemble_through_vrt(self, workdir: str, tiles: Sequence[Tile], k: int, levels: int, layer: Any,
                              bands: Tuple[int, ...]) -> float:
        """Output ``k`` by GDAL's COG driver from a VRT of its tile files (of tile ``layer``, taking ``bands``:
        all if empty) and of the ``levels`` overview levels the workers wrote; return the seconds spent on the
        overview levels."""
        from ..io.cog import build_vrt, write_cog
        from ..io.overviews import prepare_overviews
        cog = self.cogs[k]
        vrt = build_vrt(self.grid, tiles, workdir, cog.spec, cog.band_names, bands, layer,
                        name=f"tiles_{k}.vrt" if k else "tiles.vrt")
        start = time.perf_counter()
        mode = prepare_overviews(self.grid, tiles, workdir, cog.spec, cog.band_names, levels, vrt, bands, layer,
                                 name=f"c{k}_") if cog.spec.overviews else "NONE"
        seconds = time.perf_counter() - start
        write_cog(vrt, cog.spec, overviews=mode)
        return seconds

    def _finish_packed(self, workdir: str, tiles: Sequence[Tile], tile_size: int) -> Dict[str, Any]:
        """Each output from its tiles' compressed blocks (:func:`~tilewise.core.io.packed.assemble`), or, if they
        are not the layout copied there, through a VRT of the same tile files. The report's ``phases`` count
        GDAL's levels above the workers' as ``overviews``."""
        from ..io import packed
        from ..io.cog import replace_output, write_failed
        seconds = 0.0
        for k, cog in enumerate(self.cogs):
            partial = partial_path(cog.spec.path)
            levels, aligned = self.packed_levels(cog.layer, tile_size)
            try:
                start = time.perf_counter()
                images = self._packed_images(workdir, tiles, k, levels, aligned)
                seconds += time.perf_counter() - start
                vrt, mode = self._empty_vrt(workdir, k)
                packed.assemble(vrt, partial, cog.spec, mode, images)
            except packed.NotPacked as exc:
                remove_with_sidecar(partial)
                log.info(f"The compressed blocks of {cog.spec.path} are assembled by GDAL: {exc}")
                seconds += self._assemble_through_vrt(workdir, tiles, k, levels, f"p{k}", ())
                continue
            except Exception as exc:
                write_failed(exc, cog.spec, partial, 0)
                raise
            replace_output(partial, cog.spec.path)
        return self._summary(seconds or None)

    def _packed_images(self, workdir: str, tiles: Sequence[Tile], k: int, levels: int, aligned: int) -> List[Any]:
        """The blocks of output ``k``'s images, full resolution first: the tiles' up to level ``aligned``, then
        GDAL's, compressed into a COG from the last of the ``levels`` levels the workers wrote (which is
        one of them when it is above ``aligned``) with the levels above it."""
        from ..io import packed
        from ..io.overviews import build_upper_levels, level_grid, level_tile, level_vrt, overview_sizes, upper_path
        cog = self.cogs[k]
        bands = len(cog.band_names)
        images = []
        for level in range(aligned + 1):
            grid = level_grid(self.grid, level)
            images.append(packed.tile_blocks([(self.packed_path(workdir, t, k, level), level_tile(t, level))
                                              for t in tiles], grid.width, grid.height, cog.spec, bands))
        if cog.spec.overviews and len(overview_sizes(self.grid.width, self.grid.height)) > aligned:
            vrt = level_vrt(workdir, self.grid, tiles, cog.spec, cog.band_names, levels, None, f"p{k}", name=f"c{k}_")
            names = build_upper_levels(vrt, workdir, cog.spec, name=f"c{k}_", compressed=True)
            upper = upper_path(workdir, f"c{k}_")
            first = 0 if levels > aligned else 1           # that level itself, or only those above it
            images += [packed.file_blocks(upper, i, cog.spec, bands) for i in range(first, len(names) + 1)]
        return images

    def _finish_in_place(self, workdir: str, tiles: Sequence[Tile], tile_size: int) -> Dict[str, Any]:
        """Every tile is in the outputs' files: the overview levels above the workers' computed by GDAL from
        the last of theirs (as the tile route does) and written in; then each file renamed to its output.
        The report's ``phases`` count those levels as ``overviews``."""
        from ..io.cog import replace_output
        log.info("Putting the Cloud-Optimized GeoTIFF in place" if len(self.cogs) == 1 else
                 f"Putting {len(self.cogs)} Cloud-Optimized GeoTIFFs in place")
        seconds = 0.0
        for k, cog in enumerate(self.cogs):
            levels = self.overview_levels(cog.layer, tile_size)
            if len(self.layouts[k]) > levels + 1:
                start = time.perf_counter()
                self._write_upper_levels(workdir, k, levels)
                seconds += time.perf_counter() - start
            replace_output(self.in_place_path(workdir, k), cog.spec.path)
        return self._summary(seconds or None)

    def _write_upper_levels(self, workdir: str, k: int, levels: int) -> None:
        """Output ``k``'s overview levels above ``levels`` (the workers'), by GDAL from level ``levels`` of the
        file (a VRT of it with the output's nodata, like the tile route's VRT of that level)."""
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning
        from rasterio.windows import Window
        from ..io.cog import BLOCK_SIZE, Placement, write_vrt
        from ..io.inplace import write_tile_in_place
        from ..io.overviews import build_upper_levels, level_grid
        cog, path = self.cogs[k], self.in_place_path(workdir, k)
        below = self.layouts[k][levels]
        source = Placement(f"GTIFF_DIR:{levels + 1}:{path}", 0, 0, below.height, below.width)
        vrt = write_vrt(os.path.join(workdir, f"c{k}_level{levels}.vrt"), level_grid(self.grid, levels), cog.spec,
                        cog.band_names, [source], tuple(range(1, len(cog.band_names) + 1)))
        for layout, name in zip(self.layouts[k][levels + 1:], build_upper_levels(vrt, workdir, cog.spec,
                                                                                 name=f"c{k}_")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)   # an overview image has no georeferencing
                src = rasterio.open(name)
            with src:
                if (src.width, src.height) != (layout.width, layout.height):
                    raise OutputError(f"Overviews of {cog.spec.path}: GDAL made a level of {src.width} x "
                                      f"{src.height} pixels, {layout.width} x {layout.height} expected.")
                for row in range(0, src.height, BLOCK_SIZE):      # a row of blocks at a time: bounded memory
                    height = min(BLOCK_SIZE, src.height - row)
                    data = src.read(window=Window(0, row, src.width, height))
                    write_tile_in_place(layout, Tile(0, row, 0, height, src.width), data)


@dataclass(frozen=True)
class GdalSink(Sink):
    """No tiles: ``placements`` (source files on the grid) laid out in a VRT, written by GDAL's COG driver."""

    grid: Grid
    spec: OutputSpec
    band_names: Tuple[str, ...]
    placements: Tuple[Any, ...]

    tiled = False

    @property
    def home(self) -> str:
        return self.spec.path

    @property
    def outputs(self) -> Tuple[str, ...]:
        return (self.spec.path,)

    def target(self, workdir: str, tile: Tile) -> Any:
        raise TypeError("A GdalSink has no tiles.")

    def space_needed(self, tiles: Sequence[Tile]) -> SpaceNeed:
        output = self.grid.width * self.grid.height * len(self.band_names) * np.dtype(self.spec.dtype).itemsize
        return SpaceNeed(os.path.dirname(self.spec.path), 0, int(output * _OVERVIEWS))

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        from ..io.cog import write_cog, write_vrt
        vrt = write_vrt(os.path.join(workdir, "mosaic.vrt"), self.grid, self.spec, self.band_names, self.placements)
        write_cog(vrt, self.spec)
        return dict(width=self.grid.width, height=self.grid.height, bands=len(self.band_names))


# -- tables ------------------------------------------------------------------------------------------------------

Part = Dict[str, np.ndarray]
#: ``merge(parts)`` -> a :class:`~tilewise.core.io.vector.Table`: ``parts`` yields ``(tile, part)`` in tile order.
MergeFn = Callable[[Iterator[Tuple[Tile, Part]]], Any]


def write_part(path: str, part: Mapping[str, np.ndarray]) -> None:
    """Write one tile's part (named arrays, no Python objects) to ``path``, atomically."""
    with atomic_write(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in part.items()})


def read_part(path: str) -> Part:
    """The arrays :func:`write_part` wrote (never unpickles anything).

    The archive's entries are stored, not compressed: each array is read straight into its own
    buffer (``readinto``), not through zipfile's reader, which copies it in small chunks and
    checksums every byte (for the 300 MB of parts of 100,000 points x 50 rasters, about a second
    of the parent's time in a profile of a loaded run, while the workers need both cores). The
    parts are written atomically, so a part is whole; any other entry (compressed) goes through
    :func:`numpy.load`.
    """
    import zipfile
    out: Part = {}
    with open(path, "rb") as f, zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                with np.load(path, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
            out[name] = _stored_array(f, info, path)
    return out


def _stored_array(f: Any, info: Any, path: str) -> np.ndarray:
    """The ``.npy`` array of the stored zip entry ``info`` of the open file ``f``."""
    from numpy.lib import format as npy
    f.seek(info.header_offset)
    local = f.read(30)                                  # the entry's local header: its name and extra field follow
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: entry {info.filename} is damaged")
    f.seek(int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"), os.SEEK_CUR)
    version = npy.read_magic(f)
    shape, fortran, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(f)
    if dtype.hasobject:
        raise ValueError(f"{path}: entry {info.filename} holds Python objects, which are not read")
    array = np.empty(shape, dtype, order="F" if fortran else "C")
    if array.nbytes and f.readinto(memoryview(array.reshape(-1, order="A")).cast("B")) != array.nbytes:
        raise ValueError(f"{path}: entry {info.filename} is cut short")
    return array


@dataclass(frozen=True)
class TableSink(Sink):
    """Rows per tile -> one table at ``path`` (.gpkg, .csv, .parquet...; layer ``layer``).

    Each tile function writes its part with :meth:`write` (named arrays, durably in the work
    folder, so a resumed run reuses them); :meth:`finish` reads every part in tile order and
    hands them to ``merge`` (a module-level function, or a ``functools.partial`` of one), which
    returns the table (or an iterator of its chunks, written as they come): it gets all the partial
    results of a feature that spans tiles, so it can merge them exactly.
    """

    path: str
    merge: MergeFn
    layer: Optional[str] = None

    @property
    def home(self) -> str:
        return self.path

    @property
    def outputs(self) -> Tuple[str, ...]:
        return (self.path,)

    def target(self, workdir: str, tile: Tile) -> str:
        return os.path.join(workdir, f"part_{tile.index:07d}.npz")

    def write(self, target: str, tile: Tile, part: Mapping[str, np.ndarray]) -> None:
        with timed("tile writes"):
            write_part(target, part)

    def finish(self, workdir: str, tiles: Sequence[Tile]) -> Dict[str, Any]:
        from ..io.vector import Table, write_chunks, write_table
        log.info(f"Merging the rows of {len(tiles)} tiles into {self.path}")
        parts = ((t, read_part(self.target(workdir, t))) for t in tiles)
        table = self.merge(parts)
        if not isinstance(table, Table):           # chunks of the table, written as they are made
            return dict(rows=write_chunks(table, self.path, self.layer))
        write_table(table, self.path, self.layer)
        return dict(rows=len(table))

    def abort(self) -> None:
        pass    # the table writer removes its partial file itself when a write fails

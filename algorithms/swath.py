"""Swath scenes as an algorithm's input series: SAFE folders, their manifests and netCDF files, which QGIS cannot
load as one raster layer each, are handed to the engine as paths (it reads them as swaths)."""

import os

from .base import tr

SWATH_EXTENSIONS = (".nc", ".nc4", ".h5", ".hdf5")
MANIFEST = "xfdumanifest.xml"


def swath_path(value):
    """True for a path QGIS cannot load as a raster layer but the engine reads as a swath scene."""
    path = value.split("|")[0]
    return os.path.isdir(path) or os.path.basename(path).lower() == MANIFEST or \
        (path.lower().endswith(SWATH_EXTENSIONS) and os.path.isfile(path))


def safe_path(value):
    """True for a Sentinel SAFE folder (with its xfdumanifest.xml) or its manifest: a swath scene for sure (a
    netCDF may be a raster layer, a folder an ArcInfo grid)."""
    path = value.split("|")[0] if isinstance(value, str) else ""
    return bool(path) and (os.path.basename(path.rstrip("/\\")).lower() == MANIFEST or
                           os.path.isfile(os.path.join(path, MANIFEST)))


class SwathSeries:
    """For an algorithm whose ``INPUT`` is a series of rasters: every entry may instead be a swath scene path."""

    def swath_series(self, parameters):
        raw = parameters.get(self.INPUT) or []
        raw = raw if isinstance(raw, (list, tuple)) else [raw]
        return bool(raw) and all(isinstance(v, str) and swath_path(v) for v in raw)

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS's name)
        """QGIS refuses an INPUT entry it cannot load as a layer: a SAFE folder, its manifest, a netCDF of
        several variables. Those are swath scenes the engine reads; every other parameter is checked as usual.
        A series that mixes them with raster layers is refused with one message."""
        if not self.swath_series(parameters):
            raw = parameters.get(self.INPUT) or []
            raw = raw if isinstance(raw, (list, tuple)) else [raw]
            scenes = [v for v in raw if safe_path(v)]
            if scenes and raw:
                return False, tr(f"The inputs mix swath scenes ({scenes[0]}) and raster layers: give one kind per "
                                 "run (swath scenes are gridded onto the Extent and Cell size first).")
            return super().checkParameterValues(parameters, context)
        for definition in self.parameterDefinitions():
            if definition.name() != self.INPUT and \
                    not definition.checkValueIsAcceptable(parameters.get(definition.name()), context):
                return False, tr(f"Incorrect parameter value for {definition.description()}")
        return True, ""

    def series_sources(self, parameters, context):
        """The input series: swath scene paths as they are, else the raster layers (checked)."""
        if self.swath_series(parameters):
            raw = parameters[self.INPUT]
            return [os.path.abspath(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
        return self.layer_sources(parameters, self.INPUT, context)


class RefusesSwaths:
    """For an algorithm that reads bands of rasters (band math, the indices): a SAFE folder or manifest in one of
    its ``SWATH_REFUSED`` inputs gets one message naming it and saying how to grid it first (QGIS alone would
    only say the value is incorrect)."""

    SWATH_REFUSED = ("INPUT",)

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS's name)
        for name in self.SWATH_REFUSED:
            raw = parameters.get(name) or []
            for value in raw if isinstance(raw, (list, tuple)) else [raw]:
                if safe_path(value):
                    return False, tr(
                        f"{value} is a swath scene (a SAFE product on a latitude/longitude grid); {self.displayName()} "
                        "reads bands of rasters. Grid it first with the Temporal composite of that one scene (its "
                        "Variables, Extent and Cell size): the variables become the bands of a raster.")
        return super().checkParameterValues(parameters, context)

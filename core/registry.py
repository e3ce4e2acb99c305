"""The operations, registered once: each name with its API function, its commands and its QGIS algorithms.

The engine process (``python -m tilewise.core.runtime.driver``) runs an operation by
its name, the ``tilewise`` command line builds its commands from here, the QGIS
provider loads its algorithms from here, and :mod:`tilewise.core` exposes the API
functions. Entries are ``"module:attribute"`` paths, so importing this module
imports nothing else (QGIS reads it too).

Adding an operation: its module in :mod:`tilewise.core.operations` (options, job,
tile function, sink), its command in :mod:`tilewise.core.cli`, its algorithm in
:mod:`tilewise.algorithms`, and one entry in :data:`OPERATIONS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from .errors import ParameterError


@dataclass(frozen=True)
class Operation:
    """One operation: ``name`` is its name for the engine process, its command and its API function.

    ``api``: the function (in :mod:`tilewise.core`); ``cli``: a function that adds the
    operation's subcommand(s) to the ``tilewise`` parser's subparsers; ``qgis``: its
    Processing algorithm classes (their ids are kept in the classes: models store them).
    """

    name: str
    api: str = ""
    cli: str = ""
    qgis: Tuple[str, ...] = ()

    @property
    def function_name(self) -> str:
        """The API function's name in :mod:`tilewise.core`."""
        return self.api.rpartition(":")[2]


_CORE = "tilewise.core."
_QGIS = "tilewise.algorithms."

OPERATIONS: Tuple[Operation, ...] = (
    Operation("composite", _CORE + "operations.composite:composite", _CORE + "cli.composite:add_commands",
              (_QGIS + "temporal_composite:TemporalComposite",)),
    Operation("index", _CORE + "operations.bandmath:index", _CORE + "cli.bandmath:add_index_commands",
              (_QGIS + "ndvi:Ndvi", _QGIS + "spectral_index:SpectralIndex")),
    Operation("bandmath", _CORE + "operations.bandmath:bandmath", _CORE + "cli.bandmath:add_bandmath_command",
              (_QGIS + "band_math:BandMath",)),
    Operation("gapfill", _CORE + "operations.gapfill:gapfill", _CORE + "cli.gapfill:add_commands",
              (_QGIS + "gapfill:Gapfill",)),
    Operation("mosaic", _CORE + "operations.mosaic:mosaic", _CORE + "cli.mosaic:add_commands",
              (_QGIS + "mosaic:Mosaic",)),
    Operation("extract", _CORE + "operations.extract.run:extract", _CORE + "cli.extract:add_commands",
              (_QGIS + "extract:Extract",)),
    Operation("stacsearch", _CORE + "operations.stac.search:stac_search", _CORE + "cli.stac:add_commands",
              (_QGIS + "stac_search:StacSearch",)),
    Operation("warmup", _CORE + "operations.warmup:warmup"),
    Operation("chips", _CORE + "operations.chips.run:chips", _CORE + "cli.chips:add_commands",
              (_QGIS + "chips:Chips",)),
    Operation("setupengine", qgis=(_QGIS + "setup_engine:SetupEngine",)),
)

_BY_NAME: Dict[str, Operation] = {op.name: op for op in OPERATIONS}


def load(path: str) -> Any:
    """The object a ``"module:attribute"`` path names, imported now."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def operation(name: str) -> Operation:
    """The registered operation ``name``, or a :class:`ParameterError` listing the known ones."""
    op = _BY_NAME.get(name)
    if op is None or not op.api:
        known = ", ".join(o.name for o in OPERATIONS if o.api)
        raise ParameterError(f"Unknown operation {name!r}; known: {known}.")
    return op


def api_function(name: str) -> Any:
    """The API function of the operation ``name``, imported only now."""
    return load(operation(name).api)

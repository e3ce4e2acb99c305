"""Fixtures of the engine tests: small synthetic rasters written with rasterio in tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

from tilewise.core.runtime.executor import LocalExecutor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/readonly.py, shared with the QGIS tests

from support import Stack, build_stack, write_raster


#: The inner loop, ``make test-fast`` (``pytest -m fast``, under a minute on 2 cores): the modules that test
#: pure parts against numpy and the layers' contracts, with no server, engine process, Dask or QGIS.
FAST_MODULES = {"test_dates", "test_expression", "test_gapfill", "test_grid_alignment", "test_kernels", "test_layout",
                "test_masks", "test_tiling_geometry"}


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "fast: in the inner loop, make test-fast (see FAST_MODULES)")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rpartition(".")[2] in FAST_MODULES:
            item.add_marker(pytest.mark.fast)


@pytest.fixture
def raster(tmp_path) -> Callable[..., str]:
    """``raster(name, data, **profile)`` writes ``tmp_path/name`` and returns its path."""
    def make(name: str, data, **kwargs) -> str:
        return write_raster(tmp_path / name, data, **kwargs)
    return make


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> Callable[..., Stack]:
    """Module-wide cache of written stacks: ``stacks(dtype, nodata, n_layers)``."""
    cache: Dict[tuple, Stack] = {}

    def get(dtype: str, nodata: Optional[float], n_layers: int, **kwargs) -> Stack:
        key = (dtype, repr(nodata), n_layers, tuple(sorted(kwargs.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"stack_{dtype}_{n_layers}")
            cache[key] = build_stack(folder, dtype, nodata, n_layers, **kwargs)
        return cache[key]
    return get


@pytest.fixture(scope="session")
def pool():
    """One pool of two worker processes for the whole session (starting a pool costs ~1 s)."""
    ex = LocalExecutor(2)
    yield ex
    ex.close()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A real Dask cluster on 127.0.0.1: ``dask scheduler`` and two ``dask worker`` processes (one
    thread each), started once for the session, stopped at its end."""
    from servers import DaskCluster
    with DaskCluster(tmp_path_factory.mktemp("dask"), n_workers=2) as cluster:
        yield cluster

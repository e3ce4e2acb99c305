"""Remote inputs: COGs served over HTTP (with range support) by a real nginx on 127.0.0.1.

The access log (method, path, status, Range header, bytes sent, a request header) shows what
GDAL fetched: only the blocks a small extent needs, never the overviews, never side-car files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import pytest
import rasterio
from rasterio.shutil import copy as gdal_copy
from rasterio.windows import Window, from_bounds

from tilewise.core import composite
from tilewise.core.errors import InputError

from support import leftovers, random_layer, read_raster, subprocess_env, write_raster
from servers import Nginx, free_port

SIDE = 1024
BLOCK = 256
N_SCENES = 4
# 160 x 100 pixels in the middle of the scenes: 1 of the 16 full-resolution blocks of each file
EXTENT = (505600.0, 4993000.0, 507200.0, 4994000.0)
COPIES = ("bytes", "dask", "busy", "cli")   # one URL path per test: GDAL caches what it fetched per URL


@dataclass
class Cogs:
    root: Path
    names: List[str]
    local: List[str]

    def urls(self, server: Nginx, folder: str) -> List[str]:
        return [f"{server.url}/{folder}/{name}" for name in self.names]


@pytest.fixture(scope="module")
def cogs(tmp_path_factory) -> Cogs:
    """Four uint16 COGs (1024 x 1024, 256-pixel blocks, DEFLATE, 2 overview levels), random values
    (they hardly compress: bytes fetched mean blocks fetched), hard-linked into one folder per test."""
    root = tmp_path_factory.mktemp("www")
    plain = tmp_path_factory.mktemp("plain")
    rng = np.random.default_rng(5)
    names, local = [], []
    for i in range(N_SCENES):
        name = f"scene_{i}.tif"
        src = write_raster(plain / name, random_layer(rng, "uint16", (SIDE, SIDE), 0, 0.1), nodata=0)
        gdal_copy(src, str(root / name), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK)
        names.append(name)
        local.append(str(root / name))
        for folder in COPIES:
            (root / folder).mkdir(exist_ok=True)
            os.link(root / name, root / folder / name)
    with rasterio.open(local[0]) as src:
        assert src.overviews(1) == [2, 4] and src.block_shapes == [(BLOCK, BLOCK)]
    return Cogs(root, names, local)


@pytest.fixture(scope="module")
def server(cogs, tmp_path_factory):
    with Nginx(cogs.root, tmp_path_factory.mktemp("nginx")) as srv:
        yield srv


@pytest.fixture(scope="module")
def local_result(cogs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "median.tif"
    composite(cogs.local, str(out), extent=EXTENT, workers=1)
    return out


def block_ranges(path, overview_level=None, window=None):
    """Byte ranges ``(first, last)`` of the blocks of band 1 (those meeting ``window``, or all)."""
    kwargs = {} if overview_level is None else {"overview_level": overview_level}
    ranges = []
    with rasterio.open(path, **kwargs) as src:
        for (row, col), block in src.block_windows(1):
            if window is not None and not _meets(block, window):
                continue
            offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
            size = int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
            ranges.append((offset, offset + size - 1))
    return ranges


def _meets(a: Window, b: Window) -> bool:
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def _overlaps(r, ranges) -> bool:
    return any(r[0] <= hi and lo <= r[1] for lo, hi in ranges)


def same_file(a, b) -> None:
    data_a, profile_a = read_raster(a)
    data_b, profile_b = read_raster(b)
    np.testing.assert_array_equal(data_a, data_b)
    assert profile_a == profile_b
    assert Path(a).read_bytes() == Path(b).read_bytes()


def test_small_extent_reads_only_the_blocks_it_needs(cogs, server, local_result, tmp_path):
    server.clear_log()
    out = tmp_path / "remote.tif"
    report = composite(cogs.urls(server, "bytes"), str(out), extent=EXTENT, workers=1)
    assert (report.width, report.height) == (160, 100)
    same_file(out, local_result)

    requests = server.requests()
    assert requests and all(r.path.startswith("/bytes/scene_") and r.path.endswith(".tif") for r in requests), \
        [r.path for r in requests]                                  # no directory listing, no side-car probe
    assert {r.method for r in requests} <= {"HEAD", "GET"}
    gets = [r for r in requests if r.method == "GET"]
    assert all(r.status == 206 and r.byte_range() for r in gets), gets   # ranged reads only
    with rasterio.open(cogs.local[0]) as src:
        window = from_bounds(*EXTENT, transform=src.transform).round_offsets().round_lengths()
    total_size = 0
    for name, path in zip(cogs.names, cogs.local):
        total_size += os.path.getsize(path)
        needed = block_ranges(path, window=window)
        overviews = [r for level in range(2) for r in block_ranges(path, overview_level=level)]
        assert len(needed) == 1
        data = [r.byte_range() for r in gets if r.path.endswith(name) and r.byte_range()[0] > 0]
        assert data, f"no block of {name} was fetched"
        for rng in data:                                        # every read after the header is a needed block
            assert _overlaps(rng, needed), (name, rng, needed)
            assert not _overlaps(rng, overviews), (name, rng)   # overviews are never downloaded
    fetched = sum(r.sent for r in requests)
    assert fetched < 0.1 * total_size, (fetched, total_size)
    print(f"\nremote small extent: {fetched} bytes fetched in {len(requests)} requests "
          f"for {N_SCENES} COGs of {total_size} bytes in all")


def test_gdal_config_of_the_submitter_is_applied_inside_dask_tasks(cogs, server, local_result, dask_cluster,
                                                                   tmp_path, monkeypatch):
    """The workers were started without it: only the captured configuration can add this header."""
    dask_cluster.ensure_workers()
    monkeypatch.setenv("GDAL_HTTP_HEADERS", "X-Tilewise-Test: from-the-submitter")
    server.clear_log()
    out = tmp_path / "remote.tif"
    composite(cogs.urls(server, "dask"), str(out), extent=EXTENT, tile_size=64, scheduler=dask_cluster.address)
    same_file(out, local_result)
    block_reads = [r for r in server.requests() if r.method == "GET" and r.byte_range() and r.byte_range()[0] > 0]
    assert len(block_reads) >= N_SCENES
    assert {r.marker for r in block_reads} == {"from-the-submitter"}


def test_transient_http_errors_are_retried(cogs, server, local_result, tmp_path, monkeypatch):
    """/busy/ serves a few requests a second and answers 503 to the others, like an overloaded server."""
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.2")          # a user's setting wins over Tilewise's default
    server.clear_log()
    out = tmp_path / "remote.tif"
    composite(cogs.urls(server, "busy"), str(out), extent=EXTENT, workers=1)
    same_file(out, local_result)
    statuses = [r.status for r in server.requests()]
    assert 503 in statuses and set(statuses) <= {200, 206, 503}, statuses


def tilewise_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tilewise", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


def test_missing_url_is_one_clear_message(cogs, server, tmp_path):
    missing = f"{server.url}/cli/no_such_scene.tif"
    proc = tilewise_cli("composite", "-q", "-o", "out.tif", cogs.urls(server, "cli")[0], missing, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"tilewise: error: Input not found: {missing} (HTTP 404 Not Found)."]
    assert leftovers(tmp_path / "out.tif") == []


def test_forbidden_url_names_the_url_and_status(cogs, server, tmp_path):
    forbidden = f"{server.url}/forbidden/scene_0.tif"
    with pytest.raises(InputError) as info:
        composite([cogs.local[0], forbidden], str(tmp_path / "out.tif"), workers=1)
    assert str(info.value).startswith(f"Access to input {forbidden} was refused (HTTP 403 Forbidden)")
    assert leftovers(tmp_path / "out.tif") == []


def test_unreachable_server_names_the_url(cogs, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/scene_0.tif"              # nothing listens there
    with pytest.raises(InputError) as info:
        composite([url], str(tmp_path / "out.tif"), workers=1)
    assert str(info.value).startswith(f"Cannot reach input {url}: ")
    assert leftovers(tmp_path / "out.tif") == []

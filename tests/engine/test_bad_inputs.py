"""Bad inputs: one clear TilewiseError subclass each, raised before anything is written."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tilewise.core import TilewiseError, composite
from tilewise.core.errors import InputError, OutputError, ParameterError

from support import leftovers

SHAPE = (20, 30)


@pytest.fixture
def good(raster):
    """Two valid single-band rasters."""
    rng = np.random.default_rng(0)
    return [raster(f"ok{i}.tif", rng.integers(0, 100, SHAPE).astype("uint8")) for i in range(2)]


def fails_cleanly(error, inputs, output, *args, match=None, **kwargs):
    """``composite`` raises exactly ``error`` (a TilewiseError subclass) and leaves nothing behind."""
    folder = os.path.dirname(str(output))
    before = sorted(os.listdir(folder)) if os.path.isdir(folder) else None
    with pytest.raises(TilewiseError, match=match) as info:
        composite(inputs, str(output), *args, tile_size=16, workers=1, **kwargs)
    assert type(info.value) is error, repr(info.value)
    assert str(info.value).strip() and "\n" not in str(info.value)
    assert leftovers(output) == []
    if before is not None:
        assert sorted(os.listdir(folder)) == before                       # not even a probe file
    return info.value


def test_zero_inputs(tmp_path):
    fails_cleanly(InputError, [], tmp_path / "out.tif", match="No input rasters")


def test_missing_file(good, tmp_path):
    missing = str(tmp_path / "2021-07.tif")
    err = fails_cleanly(InputError, [good[0], missing, good[1]], tmp_path / "out.tif")
    assert missing in str(err) and "not found" in str(err)


@pytest.mark.parametrize("content", [b"date,ndvi\n2020-01-01,0.4\n", b""], ids=["text", "empty"])
def test_not_a_raster(good, tmp_path, content):
    text = tmp_path / "notes.txt"
    text.write_bytes(content)
    err = fails_cleanly(InputError, good + [str(text)], tmp_path / "out.tif")
    assert str(text) in str(err)


def test_inconsistent_band_counts(good, raster, tmp_path):
    three = raster("rgb.tif", np.zeros((3,) + SHAPE, "uint8"))
    fails_cleanly(InputError, good + [three], tmp_path / "out.tif", match="different band counts")


def test_missing_mask_layer(good, tmp_path):
    missing = str(tmp_path / "qa_missing.tif")
    err = fails_cleanly(InputError, good, tmp_path / "out.tif", mask_layers=[good[0], missing],
                        mask_values=[1])
    assert missing in str(err)


def test_output_folder_does_not_exist(good, tmp_path):
    fails_cleanly(OutputError, good, tmp_path / "no" / "such" / "folder" / "out.tif",
                  match="output folder does not exist")
    assert not (tmp_path / "no").exists()


def test_output_path_is_a_folder(good, tmp_path):
    folder = tmp_path / "composite.tif"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="is a folder"):
        composite(good, str(folder), tile_size=16, workers=1)
    assert os.listdir(folder) == ["keep.txt"]
    assert not os.path.exists(tmp_path / ".composite.tif.tilewise-work")
    assert not os.path.exists(tmp_path / ".composite.tif.tilewise-partial.tif")


def test_empty_output_path(good, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError):
        composite(good, "", tile_size=16, workers=1)
    assert sorted(os.listdir(tmp_path)) == ["ok0.tif", "ok1.tif"]


@pytest.mark.parametrize("statistic", ["mode", "Median", "", "nanmedian"])
def test_unknown_statistic(good, tmp_path, statistic):
    fails_cleanly(ParameterError, good, tmp_path / "out.tif", statistic, match="Unknown statistic")


@pytest.mark.parametrize("percentiles", [[-1], [101], [10, 50, 100.5], [float("nan")], []])
def test_percentiles_out_of_range(good, tmp_path, percentiles):
    fails_cleanly(ParameterError, good, tmp_path / "out.tif", "percentile", percentiles)


@pytest.mark.parametrize("option,value", [("output_type", "complex64"), ("compression", "JPEG"),
                                          ("overview_resampling", "lanczos"), ("resampling", "spline")])
def test_unknown_option_values(good, tmp_path, option, value):
    err = fails_cleanly(ParameterError, good, tmp_path / "out.tif", **{option: value})
    assert value in str(err)


@pytest.mark.parametrize("tile_size", [-1, 7])   # 0: from the memory budget (test_faults)
def test_tile_size_too_small(good, tmp_path, tile_size):
    out = tmp_path / "out.tif"
    with pytest.raises(ParameterError, match="at least 8"):
        composite(good, str(out), tile_size=tile_size, workers=1)
    assert leftovers(out) == []


def test_failure_keeps_an_existing_output(good, tmp_path):
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous result")
    with pytest.raises(InputError):
        composite(good + [str(tmp_path / "gone.tif")], str(out), tile_size=16, workers=1)
    assert out.read_bytes() == b"previous result"
    assert leftovers(out) == [str(out)]

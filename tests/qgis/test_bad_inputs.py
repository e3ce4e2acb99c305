"""Each bad input gives one QgsProcessingException that says what is wrong, and nothing is written."""

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from twtest import run, write_raster

ALG_ID = "tilewise:temporalmedian"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    for i in range(3):
        write_raster(folder / f"ok{i}.tif", np.full((20, 30), i + 1, np.uint16), nodata=0)
    (folder / "notes.txt").write_text("these are not pixels\n", encoding="utf-8")
    (folder / "notes.tif").write_text("named like a raster, but not pixels\n", encoding="utf-8")
    return folder


def case(name, folder, out_dir):
    ok = [str(folder / f"ok{i}.tif") for i in range(3)]
    output = str(out_dir / "out.tif")
    cases = {
        "zero layers": ({"INPUT": [], "OUTPUT": output},
                        ["No input rasters were given"]),
        "missing file": ({"INPUT": ok[:2] + [str(folder / "gone.tif")], "OUTPUT": output},
                         [f"Input not found: {folder / 'gone.tif'}"]),
        "not a raster": ({"INPUT": ok[:2] + [str(folder / "notes.txt")], "OUTPUT": output},
                         [str(folder / "notes.txt"), "not a raster"]),
        "text named .tif": ({"INPUT": ok[:2] + [str(folder / "notes.tif")], "OUTPUT": output},
                            [str(folder / "notes.tif"), "not a raster"]),
        "mask list of the wrong length": ({"INPUT": ok, "MASK_LAYERS": ok[:1], "MASK_VALUES": "1", "OUTPUT": output},
                                          ["1 mask layers were given for 3 inputs", "one mask layer per input"]),
        "output folder missing": ({"INPUT": ok, "OUTPUT": str(out_dir / "no such folder" / "out.tif")},
                                  [f"The output folder does not exist: {out_dir / 'no such folder'}"]),
        "percentiles not numbers": ({"INPUT": ok, "STATISTIC": 6, "PERCENTILES": "10,median", "OUTPUT": output},
                                    ["PERCENTILES", "10,median"]),
    }
    return cases[name]


def inputs_folder(folder):
    # QGIS itself may leave GDAL .aux.xml statistics beside a layer it loads
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".aux.xml"))


CASES = ["zero layers", "missing file", "not a raster", "text named .tif", "mask list of the wrong length",
         "output folder missing", "percentiles not numbers"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, folder, out_dir):
    params, expected = case(name, folder, out_dir)
    before = inputs_folder(folder)

    with pytest.raises(QgsProcessingException) as info:
        run(ALG_ID, params)

    message = str(info.value)
    for text in expected:
        assert text.lower() in message.lower(), message
    assert "Traceback" not in message and "Unexpected engine error" not in message, message
    assert list(out_dir.iterdir()) == []
    assert inputs_folder(folder) == before

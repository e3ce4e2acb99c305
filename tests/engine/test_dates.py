"""Acquisition dates from file names, metadata (real GDAL files and side-cars) and DATES lists."""

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilewise.core.dates import (YEARS, date_from_name, date_from_tags, dates_from_days, day_numbers, parse_date,
                                 overridden_warnings, parse_dates, read_date_tags, read_dates,
                                 resolve_dates)
from tilewise.core.errors import InputError, ParameterError

D = dt.date


@pytest.mark.parametrize("name, expected", [
    ("ndvi_2024-05-12.tif", D(2024, 5, 12)),
    ("ndvi_2024_05_12.tif", D(2024, 5, 12)),
    ("ndvi_20240512.tif", D(2024, 5, 12)),
    ("2024-05-12.tif", D(2024, 5, 12)),
    ("monthly_2024-05.tif", D(2024, 5, 1)),
    ("monthly_2024_05.tif", D(2024, 5, 1)),
    # Sentinel-2 L2A product: sensing time first, product discriminator (processing) second
    ("S2A_MSIL2A_20240512T101031_N0510_R022_T32TQM_20240513T142103.SAFE", D(2024, 5, 12)),
    ("T32TQM_20240512T101031_B04_10m.jp2", D(2024, 5, 12)),
    # Landsat Collection 2: acquisition date, then processing date
    ("LC09_L2SP_193027_20240512_20240520_02_T1_SR_B4.TIF", D(2024, 5, 12)),
    # pre-collection Landsat scene id: year and day of year 133 (2024 is a leap year)
    ("LC81930272024133LGN00_B4.TIF", D(2024, 5, 12)),
    # Sentinel-1: start, then stop time
    ("S1A_IW_GRDH_1SDV_20240512T052312_20240512T052337_053845_068A5C_1234.SAFE", D(2024, 5, 12)),
    # MODIS: .AYYYYDDD. acquisition, then a 13-digit production time
    ("MOD13Q1.A2024129.h18v04.061.2024146011512.hdf", D(2024, 5, 8)),
    ("MCD43A4.A2023001.h18v04.061.2023010030419.hdf", D(2023, 1, 1)),
    ("20240512_101031_1034_3B_AnalyticMS_SR.tif", D(2024, 5, 12)),   # Planet
    ("/data/2023-01-01/ndvi_2024-05-12.tif", D(2024, 5, 12)),          # folders are not read
    ("C:\\data\\ndvi_2024-05-12.tif", D(2024, 5, 12)),
    ("ndvi_2024-05-12_minus_2024-06-01.tif", D(2024, 5, 12)),          # leftmost
    ("v2024-06_ndvi_20240512.tif", D(2024, 5, 12)),                    # a full date beats a month
    ("x_2024-02-29.tif", D(2024, 2, 29)),
])
def test_dates_from_names(name, expected):
    assert date_from_name(name) == expected


@pytest.mark.parametrize("name", [
    "/data/2023-01-01/ndvi.tif",       # a date in a folder only
    "tile_12345678.tif",              # 8 digits, not a date (year 1234)
    "T32TQM_193027.tif",              # tile id and path/row
    "h18v04_v061.hdf",
    "S2_2019_10m_B04.tif",            # '2019_10' is followed by '10m': a resolution, not a month
    "scene_20241399.tif",             # month 13
    "a_2024-13-01.tif",
    "a_2023-02-29.tif",               # not a leap year
    "x_202405121.tif",                # 9 digits
    "run_18991231.tif",               # before 1900
    "id_1234567890123.tif",
    "MOD13Q1.A2024400.h18v04.hdf",    # day of year 400
    "ndvi.tif",
])
def test_names_without_dates(name):
    assert date_from_name(name) is None


@settings(max_examples=200, deadline=None)
@given(day=st.dates(D(YEARS[0], 1, 1), D(YEARS[1], 12, 31)),
       fmt=st.sampled_from(["%Y-%m-%d", "%Y_%m_%d", "%Y%m%d", "%Y%m%dT101031"]),
       prefix=st.text("abcXYZ_-.", max_size=6), suffix=st.sampled_from(["", ".tif", "_B04.tif", "-x.TIF"]))
def test_any_date_in_any_format_is_found(day, fmt, prefix, suffix):
    name = prefix + ("_" if prefix and prefix[-1].isalnum() else "") + day.strftime(fmt) + suffix
    if fmt.startswith("%Y-") and prefix.endswith("-"):
        name = "x_" + day.strftime(fmt) + suffix   # 'a-2024-05-12' is still the date, keep the case simple
    assert date_from_name(name) == day


@settings(max_examples=100, deadline=None)
@given(day=st.dates(D(YEARS[0], 1, 1), D(YEARS[1], 12, 31)))
def test_day_numbers_round_trip(day):
    days = day_numbers([day])
    assert days.dtype == np.float64
    assert days[0] == (day - D(1970, 1, 1)).days
    assert dates_from_days(days) == (day,)


@pytest.mark.parametrize("tags, expected, key", [
    ({"TIFFTAG_DATETIME": "2024:05:12 10:10:31"}, D(2024, 5, 12), "TIFFTAG_DATETIME"),
    ({"ACQUISITIONDATETIME": "2024-05-12 10:03:25", "TIFFTAG_DATETIME": "2025:01:01 00:00:00"},
     D(2024, 5, 12), "ACQUISITIONDATETIME"),
    # GDAL's imagery readers write the epoch when they cannot read the time: passed over
    ({"ACQUISITIONDATETIME": "1970-01-01 00:00:00", "L1_METADATA_FILE.PRODUCT_METADATA.DATE_ACQUIRED": "2024-05-12"},
     D(2024, 5, 12), "L1_METADATA_FILE.PRODUCT_METADATA.DATE_ACQUIRED"),
    ({"DATATAKE_1_DATATAKE_SENSING_START": "2015-12-31T23:59:59.999Z", "PRODUCT_START_TIME": "2016-01-01T00:00:00Z"},
     D(2015, 12, 31), "DATATAKE_1_DATATAKE_SENSING_START"),
    ({"RANGEBEGINNINGDATE": "2024-05-08", "RANGEBEGINNINGTIME": "00:00:00.000000"}, D(2024, 5, 8),
     "RANGEBEGINNINGDATE"),
    ({"NC_GLOBAL#time_coverage_start": "2024-05-12T10:10:31Z"}, D(2024, 5, 12), "NC_GLOBAL#time_coverage_start"),
    ({"datetime": "2024-05-12T10:10:31.024000Z"}, D(2024, 5, 12), "datetime"),
    ({"acquisition_time": "\"2024-05-12\""}, D(2024, 5, 12), "acquisition_time"),
    ({"ACQUISITION_DATE": "unknown", "TIFFTAG_DATETIME": "2024:05:12 10:10:31"}, D(2024, 5, 12), "TIFFTAG_DATETIME"),
])
def test_dates_from_tags(tags, expected, key):
    assert date_from_tags(tags) == (expected, key)


@pytest.mark.parametrize("tags", [{}, {"AREA_OR_POINT": "Area"}, {"TIFFTAG_DATETIME": "yesterday"},
                                  {"ACQUISITIONDATETIME": "1970-01-01 00:00:00"},
                                  {"DATE_ACQUIRED": "2024-05-12 garbage"}, {"TIFFTAG_DOCUMENTNAME": "2024-05-12"}])
def test_tags_without_dates(tags):
    assert date_from_tags(tags) is None


@pytest.mark.parametrize("text, expected", [
    ("2024-05-12", D(2024, 5, 12)), ("20240512", D(2024, 5, 12)), ("2024_05_12", D(2024, 5, 12)),
    ("2024/05/12", D(2024, 5, 12)), (" 2024-05-12T10:00:00Z ", D(2024, 5, 12)), ("2024-05", D(2024, 5, 1)),
    ("2024-133", D(2024, 5, 12)), (D(2024, 5, 12), D(2024, 5, 12)),
    (dt.datetime(2024, 5, 12, 23, 59), D(2024, 5, 12)), (np.datetime64("2024-05-12T10:00"), D(2024, 5, 12)),
])
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["2024-02-30", "2024-13", "12/05/2024", "yesterday", "", "20240512x", "1850-01-01"])
def test_parse_date_errors_say_what_and_how(text):
    with pytest.raises(ParameterError) as err:
        parse_date(text, "entry 3 of DATES")
    assert f"entry 3 of DATES {text!r} is not a date" in str(err.value)
    assert "YYYY-MM-DD" in str(err.value)


def test_parse_dates_text_and_list():
    assert parse_dates("2024-05-12,2024-05-22 ;2024-06-01") == (D(2024, 5, 12), D(2024, 5, 22), D(2024, 6, 1))
    assert parse_dates(["20240512", D(2024, 5, 22)]) == (D(2024, 5, 12), D(2024, 5, 22))
    with pytest.raises(ParameterError, match="entry 2 of DATES"):
        parse_dates("2024-05-12,2024-05-32")


def test_series_from_names_in_any_order():
    s = resolve_dates(["b_2024-06-01.tif", "a_2024-05-12.tif", "c_2024-05-22.tif"])
    assert s.dated
    assert s.iso == ("2024-06-01", "2024-05-12", "2024-05-22")
    assert s.order == (1, 2, 0)
    assert s.days.tolist() == day_numbers([D(2024, 6, 1), D(2024, 5, 12), D(2024, 5, 22)]).tolist()
    assert s.sources == ("name",) * 3


def test_series_mixes_names_and_metadata_per_input():
    s = resolve_dates(["a_2024-05-12.tif", "renamed.tif"], [{}, {"TIFFTAG_DATETIME": "2024:05:22 10:00:00"}])
    assert s.dates == (D(2024, 5, 12), D(2024, 5, 22))
    assert s.sources == ("name", "metadata")


def test_undated_series_keeps_the_given_order():
    s = resolve_dates(["z.tif", "a.tif", "m.tif"], [{}, {}, {}])
    assert not s.dated
    assert s.order == (0, 1, 2)
    assert s.sources == ("order",) * 3
    assert s.iso == ("", "", "")
    with pytest.raises(InputError, match="no dates"):
        _ = s.days


def test_some_dated_some_not_names_the_undated():
    with pytest.raises(InputError) as err:
        resolve_dates(["/d/a_2024-05-12.tif", "/d/b.tif", "/d/c.tif"])
    msg = str(err.value)
    assert "2 of 3 inputs have no date" in msg and "b.tif, c.tif" in msg and "DATES" in msg
    assert "a_2024" not in msg


def test_names_and_metadata_come_before_dates_and_disagreements_are_reported():
    """The issue's order: file name, else metadata, else DATES; a DATES entry that another source
    contradicts is not used, and the warning names the file."""
    s = resolve_dates(["/d/a_2024-05-12.tif", "/d/b.tif", "/d/c.tif"],
                      [{}, {"ACQUISITIONDATETIME": "2024-05-20 10:00:00"}, {}],
                      dates="2024-05-13, 2024-05-20, 2024-06-01")
    assert s.dates == (D(2024, 5, 12), D(2024, 5, 20), D(2024, 6, 1))
    assert s.sources == ("name", "metadata", "DATES")
    assert s.overridden == ((0, D(2024, 5, 13), "name"),)
    (message,) = overridden_warnings(s)
    assert message.startswith("a_2024-05-12.tif: DATES gives 2024-05-13 but its name says 2024-05-12")


def test_dates_win_over_the_tiff_datetime_tag():
    """TIFF DateTime is when the file was written: a DATES entry wins over it, without a warning."""
    s = resolve_dates(["a.tif", "b.tif"], [{"TIFFTAG_DATETIME": "2026:01:01 10:00:00"},
                                           {"DATE_ACQUIRED": "2024-05-30"}], dates="2024-05-13,2024-05-22")
    assert s.dates == (D(2024, 5, 13), D(2024, 5, 30)) and s.sources == ("DATES", "metadata")
    assert s.overridden == ((1, D(2024, 5, 22), "metadata DATE_ACQUIRED"),)


@pytest.mark.parametrize("dates", ["2024-05-12", ["2024-05-12", "2024-05-13", "2024-05-14"]])
def test_dates_count_must_match(dates):
    with pytest.raises(ParameterError) as err:
        resolve_dates(["a.tif", "b.tif"], dates=dates)
    assert "for 2 inputs" in str(err.value) and "one date per input" in str(err.value)


@pytest.mark.parametrize("empty", [None, "", "  ", []])
def test_empty_dates_mean_none(empty):
    assert resolve_dates(["a_2024-05-12.tif"], dates=empty).sources == ("name",)


def test_duplicate_dates_are_named():
    s = resolve_dates(["/x/S2A_20240512_T32TQM.tif", "/x/S2B_20240512_T32TQN.tif", "/x/c_20240522.tif"])
    assert s.duplicates() == [(0, 1)]
    with pytest.raises(InputError) as err:
        s.require_distinct()
    assert "2024-05-12" in str(err.value) and "S2A_20240512_T32TQM.tif, S2B_20240512_T32TQN.tif" in str(err.value)
    resolve_dates(["a_20240512.tif", "b_20240513.tif"]).require_distinct()


def test_tag_count_must_match_names():
    with pytest.raises(ParameterError):
        resolve_dates(["a.tif", "b.tif"], [{}])


# -- with real files ---------------------------------------------------------------------------------------

def _tif(raster, name, **tags):
    path = raster(name, np.zeros((1, 4, 4), np.uint16))
    if tags:
        import rasterio
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(**tags)
    return path


_MTL = """GROUP = L1_METADATA_FILE
  GROUP = PRODUCT_METADATA
    SPACECRAFT_ID = "LANDSAT_8"
    SENSOR_ID = "OLI_TIRS"
    DATE_ACQUIRED = 2024-05-12
    SCENE_CENTER_TIME = {time}
  END_GROUP = PRODUCT_METADATA
END_GROUP = L1_METADATA_FILE
END
"""


def test_read_tiff_datetime_tag(raster):
    path = _tif(raster, "scene.tif", TIFFTAG_DATETIME="2024:05:12 10:10:31")
    assert read_date_tags(path) == {"TIFFTAG_DATETIME": "2024:05:12 10:10:31"}
    s = read_dates([path])
    assert s.dates == (D(2024, 5, 12),) and s.sources == ("metadata",)


@pytest.mark.parametrize("time, key", [
    ("10:03:25.1234560Z", "ACQUISITIONDATETIME"),          # GDAL reads it into the IMAGERY domain
    ('"10:03:25.1234560Z"', "L1_METADATA_FILE.PRODUCT_METADATA.DATE_ACQUIRED"),  # GDAL gives 1970: the raw MTL item
])
def test_read_landsat_mtl_side_car(raster, tmp_path, time, key):
    path = _tif(raster, "scene_B4.TIF")
    (tmp_path / "scene_MTL.txt").write_text(_MTL.format(time=time))
    tags = read_date_tags(path)
    assert date_from_tags(tags) == (D(2024, 5, 12), key)
    assert read_dates([path]).dates == (D(2024, 5, 12),)


def test_name_beats_metadata_and_metadata_is_not_read_then(raster):
    a = _tif(raster, "ndvi_2024-05-12.tif", TIFFTAG_DATETIME="2025:01:01 00:00:00")
    b = _tif(raster, "other.tif", TIFFTAG_DATETIME="2024:05:22 00:00:00")
    s = read_dates([a, b])
    assert s.dates == (D(2024, 5, 12), D(2024, 5, 22))
    assert s.sources == ("name", "metadata")


def test_read_dates_opens_only_files_without_a_date_in_their_name(tmp_path):
    missing = [str(tmp_path / "gone_2024-05-12.tif"), str(tmp_path / "gone_2024-05-22.tif")]
    assert read_dates(missing, "2024-05-12,2024-05-23").iso == ("2024-05-12", "2024-05-22")
    with pytest.raises(InputError):
        read_dates([str(tmp_path / "gone.tif")], "2024-05-12")


def test_unreadable_file_is_an_input_error(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="broken.tif"):
        read_dates([str(bad)])

"""Synthetic Sentinel-3 OLCI Level-2 WFR products for the swath tests, written with netCDF4.

The files, variables and attributes are those of real products (``geo_coordinates.nc`` with
int32 latitude/longitude scaled by 1e-6, ``Oa08_reflectance.nc`` uint16 scaled with an offset,
``chl_nn.nc`` with ``CHL_NN`` and ``CHL_NN_err``, ``wqsf.nc`` with the uint64 ``WQSF`` and its
``flag_masks``/``flag_meanings``, an ``xfdumanifest.xml``); the swath is curved and rotated, its
last columns have fill-valued latitude/longitude, and the values encode the pixel's row and
column so a test can tell which pixel was read.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from tilewise.core.kernels.swath import EARTH_RADIUS

R = 6371008.8
INT32_FILL = np.int32(-2147483648)
#: A part of the real WQSF flags, with masks above 2**32 (the ANNOT_ and RWNEG_ flags).
WQSF_FLAGS = (("INVALID", 1), ("WATER", 2), ("LAND", 4), ("CLOUD", 8), ("CLOUD_AMBIGUOUS", 2 ** 21),
              ("CLOUD_MARGIN", 2 ** 22), ("SNOW_ICE", 16), ("INLAND_WATER", 32), ("TIDAL", 64), ("COSMETIC", 128),
              ("SUSPECT", 256), ("HISOLZEN", 512), ("SATURATED", 1024), ("MEGLINT", 2048), ("HIGHGLINT", 4096),
              ("WHITECAPS", 8192), ("ADJAC", 16384), ("WV_FAIL", 32768), ("PAR_FAIL", 65536),
              ("AC_FAIL", 131072), ("OC4ME_FAIL", 262144), ("OCNN_FAIL", 524288), ("KDM_FAIL", 2 ** 23),
              ("BPAC_ON", 2 ** 24), ("WHITE_SCATT", 2 ** 25), ("LOWRW", 2 ** 26), ("HIGHRW", 2 ** 27),
              ("ANNOT_ANGSTROM", 2 ** 32), ("ANNOT_AERO_B", 2 ** 33), ("ANNOT_ABSO_D", 2 ** 34),
              ("ANNOT_ACLIM", 2 ** 35), ("ANNOT_ABSOA", 2 ** 36), ("ANNOT_MIXR1", 2 ** 37), ("ANNOT_DROUT", 2 ** 38),
              ("ANNOT_TAU06", 2 ** 39), ("RWNEG_O1", 2 ** 40), ("RWNEG_O2", 2 ** 41), ("RWNEG_O3", 2 ** 42),
              ("RWNEG_O4", 2 ** 43), ("RWNEG_O5", 2 ** 44), ("RWNEG_O6", 2 ** 45), ("RWNEG_O7", 2 ** 46),
              ("RWNEG_O8", 2 ** 47))
OA_SCALE, OA_OFFSET = 2.0e-5, -0.01
CHL_FILL = np.float32(-999.0)


def product_name(stamp: str = "20240514T134512", platform: str = "S3A") -> str:
    return (f"{platform}_OL_2_WFR____{stamp}_{stamp[:9]}134812_20240516T001234_0179_112_181_2340_MAR_O_NT_003"
            ".SEN3")


def swath_geolocation(rows: int, cols: int, lat0: float, lon0: float, pixel: float = 300.0,
                      rotation: float = 20.0, curvature: float = 2e-6):
    """Latitude and longitude (degrees, lon in -180..180) of a curved, rotated swath centred on lat0, lon0."""
    i, j = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    x = (j - cols / 2) * pixel
    y = -(i - rows / 2) * pixel + curvature * x * x
    a = math.radians(rotation)
    e, n = x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)
    lat = lat0 + np.degrees(n / R)
    lon = lon0 + np.degrees(e / (R * np.cos(np.radians(lat))))
    return lat, (lon + 180.0) % 360.0 - 180.0


def oa_raw(rows: int, cols: int) -> np.ndarray:
    """Oa08 stored values: they encode the pixel (row * 100 + col, kept under 65535)."""
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return ((i * 100 + j) % 60000 + 1000).astype(np.uint16)


def chl(rows: int, cols: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (0.5 + 0.01 * i + 0.001 * j).astype(np.float32)


def wqsf(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """WATER everywhere; CLOUD on a band of rows; RWNEG_O2 (bit 41) and LAND on some pixels."""
    rng = np.random.default_rng(seed)
    out = np.full((rows, cols), 2, np.uint64)
    out[rows // 3: rows // 3 + 3, :] |= np.uint64(8)
    out[rng.random((rows, cols)) < 0.2] |= np.uint64(2 ** 41)
    out[rng.random((rows, cols)) < 0.1] |= np.uint64(4)
    return out


def write_olci_product(folder: str, rows: int = 80, cols: int = 60, lat0: float = -3.2, lon0: float = -60.0,
                       stamp: str = "20240514T134512", platform: str = "S3A", fill_cols: int = 3,
                       rotation: float = 20.0, chunks: Optional[tuple] = (16, 16), seed: int = 0,
                       manifest: bool = True, pixel: float = 300.0, oa_bands=(8,)) -> str:
    """Write a SAFE folder under ``folder``; return its path."""
    import netCDF4
    path = os.path.join(folder, product_name(stamp, platform))
    os.makedirs(path, exist_ok=True)
    lat, lon = swath_geolocation(rows, cols, lat0, lon0, pixel, rotation)
    edge = np.zeros((rows, cols), bool)
    if fill_cols:
        edge[:, cols - fill_cols:] = True

    def grid_file(name):
        f = netCDF4.Dataset(os.path.join(path, name), "w")
        f.createDimension("rows", rows)
        f.createDimension("columns", cols)
        f.start_time = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}.000000Z"
        f.product_name = os.path.basename(path)
        return f

    def var(f, name, dtype, fill, **attrs):
        v = f.createVariable(name, dtype, ("rows", "columns"), fill_value=fill, chunksizes=chunks,
                             zlib=chunks is not None)
        v.set_auto_maskandscale(False)
        for k, val in attrs.items():
            setattr(v, k, val)
        return v

    with grid_file("geo_coordinates.nc") as f:
        for name, values, unit in (("latitude", lat, "degrees_north"), ("longitude", lon, "degrees_east")):
            v = var(f, name, "i4", INT32_FILL, scale_factor=1e-6, units=unit, standard_name=name,
                    long_name=f"DEM corrected {name}", valid_min=np.int32(-180000000), valid_max=np.int32(180000000))
            v[:] = np.where(edge, INT32_FILL, np.round(values * 1e6)).astype(np.int32)
        v = var(f, "altitude", "i2", np.int16(-32768), units="m", standard_name="height_above_reference_ellipsoid")
        v[:] = np.zeros((rows, cols), np.int16)
    coordinates = "time_stamp altitude latitude longitude"
    for band in oa_bands:
        name = f"Oa{band:02d}_reflectance"
        with grid_file(f"{name}.nc") as f:
            v = var(f, name, "u2", np.uint16(65535), scale_factor=OA_SCALE, add_offset=OA_OFFSET,
                    coordinates=coordinates, units="dl",
                    long_name=f"Water leaving reflectance for OLCI acquisition band Oa{band:02d}")
            v[:] = np.where(edge, 65535, oa_raw(rows, cols).astype(np.int64) + (band - 8)).astype(np.uint16)
    with grid_file("chl_nn.nc") as f:
        v = var(f, "CHL_NN", "f4", CHL_FILL, coordinates=coordinates, units="lg(re mg.m-3)")
        v[:] = np.where(edge, CHL_FILL, chl(rows, cols))
        v = var(f, "CHL_NN_err", "f4", CHL_FILL, coordinates=coordinates)
        v[:] = np.full((rows, cols), 0.1, np.float32)
    with grid_file("wqsf.nc") as f:
        v = var(f, "WQSF", "u8", None, coordinates=coordinates,
                flag_masks=np.array([m for _, m in WQSF_FLAGS], np.uint64),
                flag_meanings=" ".join(n for n, _ in WQSF_FLAGS),
                long_name="Level 2 WATER Product, Classification Flags")
        v[:] = wqsf(rows, cols, seed)
    write_tie_geometries(os.path.join(path, "tie_geometries.nc"), rows, cols)
    if manifest:
        with open(os.path.join(path, "xfdumanifest.xml"), "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" '
                    'xmlns:sentinel-safe="http://www.esa.int/safe/sentinel/1.1"><metadataSection>'
                    f'<sentinel-safe:startTime>{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:'
                    f'{stamp[13:15]}.000000Z</sentinel-safe:startTime></metadataSection></xfdu:XFDU>\n')
    return path


TIE_AC = 16          # (real FR products: 64 columns between tie points, every row a tie row)


def angles_truth(rows, cols):
    """The sun and view angles at every pixel: linear in row and column (SAA crossing 360)."""
    i, j = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    return {"SZA": 30 + 0.01 * i + 0.02 * j, "OZA": 5 + 0.3 * j, "SAA": (350 + 0.5 * j + 0.01 * i) % 360,
            "OAA": 100 - 0.2 * j}


def write_tie_geometries(path, rows, cols):
    import netCDF4
    n_tc = (cols - 1) // TIE_AC + 2
    tie_cols = np.arange(n_tc) * TIE_AC
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("tie_rows", rows)
        f.createDimension("tie_columns", n_tc)
        f.ac_subsampling_factor = np.int32(TIE_AC)
        f.al_subsampling_factor = np.int32(1)
        full = angles_truth(rows, int(tie_cols[-1]) + 1)
        for name, values in full.items():
            signed = name in ("SAA", "OAA")
            v = f.createVariable(name, "i4" if signed else "u4", ("tie_rows", "tie_columns"))
            v.set_auto_maskandscale(False)
            v.scale_factor = 1e-6
            v.units = "degrees"
            v[:] = np.round(values[:, tie_cols] * 1e6).astype("i4" if signed else "u4")


def read_truth(path: str, name: str, variable: str):
    """A variable read with netCDF4, masked and scaled by netCDF4 itself (the reference)."""
    import netCDF4
    with netCDF4.Dataset(os.path.join(path, name)) as f:
        v = f.variables[variable]
        v.set_auto_maskandscale(True)
        data = v[:]
    return np.ma.filled(np.ma.asarray(data).astype(np.float64), np.nan)


def geolocation_truth(path: str):
    lat = read_truth(path, "geo_coordinates.nc", "latitude")
    lon = read_truth(path, "geo_coordinates.nc", "longitude")
    return lat, lon


def haversine(lat1, lon1, lat2, lon2):
    """Great-circle distance (m) on the engine's sphere."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS * np.arcsin(np.sqrt(a))


def brute_nearest(lat, lon, qlat, qlon):
    """Flat index and distance (m) of the nearest valid pixel of each query, by haversine over all pixels."""
    flat_lat, flat_lon = lat.ravel(), lon.ravel()
    ok = np.flatnonzero(np.isfinite(flat_lat) & np.isfinite(flat_lon))
    out, dist = [], []
    for a, b in zip(qlat, qlon):
        d = haversine(a, b, flat_lat[ok], flat_lon[ok])
        k = int(np.argmin(d))
        out.append(ok[k])
        dist.append(d[k])
    return np.array(out), np.array(dist)

"""Areas on the ellipsoid for maps in a geographic CRS (degrees), where a pixel's area depends on its latitude.

A north-up pixel of a longitude/latitude grid is a quadrangle; its exact area on the CRS's ellipsoid (semi-axes
a, b, eccentricity e) is ``dlon * |S(lat2) - S(lat1)|`` with ``S(lat) = b^2 / 2 * (sin(lat) / (1 - e^2 sin^2(lat))
+ ln((1 + e sin(lat)) / (1 - e sin(lat))) / (2 e))``, the area between the equator and ``lat`` per radian of
longitude (4 pi S(90 deg) is the ellipsoid's whole area).
"""

from __future__ import annotations

import numpy as np


def is_geographic(crs_wkt: str) -> bool:
    """Whether the CRS is a longitude/latitude one (its units are degrees)."""
    from pyproj import CRS

    return bool(CRS.from_wkt(crs_wkt).is_geographic)


def _band_area(lat: np.ndarray, a: float, b: float) -> np.ndarray:
    """S(lat) (see the module docstring), for latitudes in radians."""
    e2 = 1.0 - (b / a) ** 2
    s = np.sin(lat)
    if e2 <= 0:  # a sphere
        return a * a * s
    e = np.sqrt(e2)
    return b * b / 2.0 * (s / (1.0 - e2 * s * s) + np.log((1.0 + e * s) / (1.0 - e * s)) / (2.0 * e))


def row_areas_m2(crs_wkt: str, transform, row0: int, rows: int) -> np.ndarray:
    """Area in m^2 of one pixel of each row ``row0 .. row0 + rows - 1`` of a north-up geographic grid."""
    from pyproj import CRS

    ellipsoid = CRS.from_wkt(crs_wkt).ellipsoid
    a, b = ellipsoid.semi_major_metre, ellipsoid.semi_minor_metre
    edges = np.radians(transform.f + transform.e * np.arange(row0, row0 + rows + 1, dtype=np.float64))
    edges = np.clip(edges, -np.pi / 2, np.pi / 2)
    strips = np.abs(np.diff(_band_area(edges, a, b)))
    return strips * np.radians(abs(transform.a))


def geodesic_rows(grid):
    """For a geographic north-up grid (``crs`` WKT, ``transform``): ``(row0, rows) -> m^2 per pixel of each row``;
    None for any other grid (its pixel area is ``|a * e|`` in CRS units)."""
    t = grid.transform
    if not is_geographic(grid.crs) or t.b != 0 or t.d != 0:
        return None
    return lambda row0, rows: row_areas_m2(grid.crs, t, row0, rows)

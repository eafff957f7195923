"""A minimum mapping unit given as an area (hectares, as land-cover specifications state it) in pixels of a map."""

from __future__ import annotations

import math

#: square metres in a hectare
HECTARE_M2 = 10_000.0


def pixel_area_m2(crs_wkt: str, res: tuple[float, float], latitude: float | None = None) -> float:
    """The ground area of one pixel of ``res`` in a CRS: from its linear units for a projected CRS, on the
    ellipsoid at ``latitude`` (degrees; the map's centre) for a longitude/latitude one."""
    from affine import Affine
    from pyproj import CRS

    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        from geocamat.outputs.geodesic import row_areas_m2

        top = (latitude or 0.0) + abs(res[1]) / 2
        return float(row_areas_m2(crs_wkt, Affine(abs(res[0]), 0, 0, 0, -abs(res[1]), top), 0, 1)[0])
    metres = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return abs(res[0] * res[1]) * metres * metres


def unit_pixels(hectares: float, crs_wkt: str, res: tuple[float, float], latitude: float | None = None) -> int:
    """The pixels a region needs to reach ``hectares`` (rounded up: no region under the unit stays)."""
    return math.ceil(hectares * HECTARE_M2 / pixel_area_m2(crs_wkt, res, latitude) - 1e-9)

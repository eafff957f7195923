"""A coordinate reference system in words, for messages and summaries."""

from __future__ import annotations


def crs_label(crs) -> str | None:
    """``EPSG:n`` when GDAL matches the CRS to that code exactly, else ``a custom CRS (closest: EPSG:n)``.

    GDAL's own lookup accepts a 70% match: the NC sample's CRS (an unnamed Lambert conformal conic on an unknown
    datum) would read as EPSG:32119, which it is not. Takes a rasterio or pyproj CRS (anything with ``to_wkt``);
    None for None.
    """
    if crs is None:
        return None
    exact, closest = epsg_codes(crs)
    if exact:
        return f"EPSG:{exact}"
    return f"a custom CRS (closest: EPSG:{closest})" if closest else "a custom CRS"


def epsg_codes(crs) -> tuple[int | None, int | None]:
    """(the EPSG code GDAL matches the CRS to at 100%, else None; its 70% match when there is no exact one)."""
    from rasterio.crs import CRS

    crs = CRS.from_wkt(crs.to_wkt())
    exact = crs.to_epsg(confidence_threshold=100)
    return exact, None if exact else crs.to_epsg()


def same_crs(a: str, b: str) -> bool:
    """Whether two CRSs given as WKT are the same (GDAL's comparison, not the text's)."""
    if a == b:
        return True
    from rasterio.crs import CRS

    return CRS.from_wkt(a) == CRS.from_wkt(b)


def metres_per_unit(crs) -> float | None:
    """The metres of one unit of a projected or local (engineering, ``LOCAL_CS``) CRS: 1 for metres, 0.3048006 for
    the US survey foot; None for a geographic or unknown one."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        return None
    try:
        factor = crs.linear_units_factor
    except CRSError:  # a local CRS: GDAL gives no linear unit, its axes have one
        import pyproj

        axes = pyproj.CRS.from_wkt(crs.to_wkt()).axis_info
        linear = [a for a in axes if a.unit_conversion_factor and "degree" not in a.unit_name.lower()
                  and "radian" not in a.unit_name.lower()]
        return float(linear[0].unit_conversion_factor) if axes and len(linear) == len(axes) else None
    return float(factor[1]) if crs.is_projected and factor else None

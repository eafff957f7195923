"""Points in a CSV table (a field survey, a GPS export, reference plots from a spreadsheet) as a vector layer.

The coordinates are two columns: ``lon``/``lat`` (or ``longitude``/``latitude``, ``lng``): WGS 84; ``x``/``y``
(or ``easting``/``northing``): in the CRS of a ``.prj`` beside the table, as a shapefile keeps it. Every other
column is an attribute (the class field).
"""

from __future__ import annotations

from pathlib import Path

from geocamat.errors import GeocamatError

#: Column pairs (lower case) read as coordinates, with the CRS they are in (None: the ``.prj`` beside the table).
COORDINATE_COLUMNS = ((("lon", "lat"), "EPSG:4326"), (("longitude", "latitude"), "EPSG:4326"),
                      (("lng", "lat"), "EPSG:4326"), (("x", "y"), None), (("easting", "northing"), None))


def _dialect(path: Path) -> tuple[str, str]:
    """(separator, decimal mark) of a table: ``,`` and ``.``, a tab, or, as spreadsheets with a decimal comma save
    it, ``;`` and ``,``: the mark that splits the header line most."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    separator = max((",", ";", "\t"), key=header.count)  # the mark that splits the header most
    return separator, "," if separator == ";" else "."


def read_point_table(path: Path, what: str, error: type[GeocamatError]):
    """The rows of a CSV table as points (a GeoDataFrame).

    Raises:
        ``error``: no coordinate columns, coordinates that are not numbers or out of range, or x/y without a
            ``.prj``.
    """
    import geopandas as gpd
    import pandas as pd

    try:
        separator, decimal = _dialect(path)
        table = pd.read_csv(path, sep=separator, decimal=decimal, skipinitialspace=True,
                            encoding="utf-8-sig")  # Excel's byte-order mark would stick to the first column
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path.name} cannot be read as a CSV table ({' '.join(str(exc).split())[:100]})") from exc
    columns = {str(c).strip().lower(): c for c in table.columns}
    found = [(names, crs) for names, crs in COORDINATE_COLUMNS if names[0] in columns and names[1] in columns]
    if not found:
        raise error(f"{what} {path.name} has no coordinate columns: name them lon, lat (WGS 84) or x, y (with the "
                    f"CRS in {path.stem}.prj beside it); its columns: {', '.join(map(str, table.columns))}")
    (x_name, y_name), crs = found[0]
    x_col, y_col = columns[x_name], columns[y_name]
    x, y = pd.to_numeric(table[x_col], errors="coerce"), pd.to_numeric(table[y_col], errors="coerce")
    bad = (x.isna() | y.isna()).to_numpy().nonzero()[0]
    if len(bad):
        raise error(f"{what} {path.name}: {len(bad)} rows without numeric {x_col}, {y_col} (first: line "
                    f"{bad[0] + 2}); fill or delete them")
    prj = path.with_suffix(".prj")
    if crs is None:
        if not prj.is_file():
            raise error(f"{what} {path.name} gives {x_col}, {y_col} without their CRS: put it in {prj.name} beside "
                        "the table (WKT, as a shapefile's .prj), or give lon, lat columns in WGS 84")
        crs = prj.read_text()
    elif (x.abs() > 180).any() or (y.abs() > 90).any():
        raise error(f"{what} {path.name}: {x_col}, {y_col} hold values outside longitude/latitude (e.g. "
                    f"{x.abs().max():.6g}); projected coordinates go in x, y columns with a .prj beside the table")
    return gpd.GeoDataFrame(table.drop(columns=[x_col, y_col]), geometry=gpd.points_from_xy(x, y), crs=crs)

"""A layer filter (QGIS's ``|subset=``, an OGR SQL WHERE clause) applied to a table GDAL does not read for us.

GDAL filters its own layers (GeoPackage, shapefile, ...) as it reads them. CSV point tables and GeoParquet are read
by pandas/pyarrow, so the same clause is run here by SQLite on their attribute columns: the expressions a user
writes in QGIS's Filter... dialog (``"class" = 'forest'``, ``year >= 2020 AND plot IN (1, 2)``, ``name LIKE 'f%'``,
``IS NULL``) mean the same in both.
"""

from __future__ import annotations

import sqlite3

from geocamat.errors import GeocamatError


def rows_matching(frame, where: str, what: str, name: str, error: type[GeocamatError]):
    """The rows of ``frame`` (a GeoDataFrame; its geometry is not visible to the clause) for which ``where`` holds.

    Raises:
        ``error``: a clause SQLite cannot run on the table's columns (an unknown column, a syntax error), in one
            line that quotes it.
    """
    import pandas as pd

    attributes = frame.drop(columns=[frame.geometry.name])
    table = pd.DataFrame({str(column): _sqlite_values(attributes[column]) for column in attributes.columns})
    with sqlite3.connect(":memory:") as db:
        if len(table.columns):
            table.to_sql("layer", db, index_label="geocamat_row")
        else:
            db.execute("CREATE TABLE layer (geocamat_row INTEGER)")
            db.executemany("INSERT INTO layer VALUES (?)", ((i,) for i in range(len(frame))))
        try:
            kept = [row for (row,) in db.execute(f"SELECT geocamat_row FROM layer WHERE {where}")]  # noqa: S608
        except sqlite3.Error as exc:
            raise error(f"{what} {name}: the filter {where!r} cannot be applied ({exc}): write it as an SQL WHERE "
                        f"clause on the table's columns ({', '.join(map(str, attributes.columns))})") from exc
    out = frame.iloc[sorted(kept)]
    out.attrs = dict(frame.attrs)
    return out


def _sqlite_values(column):
    """A column SQLite stores as it is (numbers, text, NULL); other types (dates, mixed objects) as text."""
    if column.dtype.kind in "biuf" or column.dtype == object and column.map(lambda v: v is None or isinstance(
            v, str)).all():
        return column
    return column.astype("string")

"""Layer styles stored in a GeoPackage (QGIS's ``layer_styles`` table), so a layer opens styled."""

from __future__ import annotations

import os
import sqlite3


def store_style(gpkg: str | os.PathLike, qml: str, layer: str, geometry_column: str = "geom") -> None:
    """Store ``qml`` as the default style of ``layer`` in the GeoPackage, as QGIS does when it saves a style."""
    with sqlite3.connect(str(gpkg)) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256),"
            " f_table_schema TEXT(256), f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30),"
            " styleQML TEXT, styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),"
            " update_time DATETIME DEFAULT CURRENT_TIMESTAMP)")
        db.execute("UPDATE layer_styles SET useAsDefault=0 WHERE f_table_name=?", (layer,))
        db.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column,"
                   " styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) VALUES"
                   " ('', '', ?, ?, ?, ?, '', 1, 'geocamat classes', '', '', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                   (layer, geometry_column, layer, qml))
        # registered like QGIS does (QGIS hides this table from its layer list)
        db.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, last_change)"
                   " VALUES ('layer_styles', 'attributes', 'layer_styles', 'QGIS layer styles',"
                   " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")

"""Class names and colours a classified raster carries beside it, so a model trained on it names its classes.

A land-cover raster rarely holds its class names itself: QGIS keeps them in a style beside it (``strata.qml``,
loaded with the layer), GDAL and ArcGIS in an attribute table in ``strata.tif.aux.xml`` (or GDAL's category
names there), ArcGIS also in ``strata.tif.vat.dbf``. Without them a model's classes would be ``class_1`` ...
``class_7`` on every map and legend. The first file that names a class wins, in that order (what the user sees in
QGIS first); the raster's own colour table comes after all of them.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

#: GDAL's raster attribute table field usages (``GDALRATFieldUsage``) geocamat reads.
RAT_NAME, RAT_MINMAX, RAT_RED, RAT_GREEN, RAT_BLUE = 2, 5, 6, 7, 8
#: GDAL's real and string field types in an attribute table.
RAT_REAL, RAT_STRING = 1, 2
#: Column names (lower case) taken as a table's class value and class name when no usage marks them.
VALUE_COLUMNS = ("value", "code", "class_id", "classvalue", "id")
NAME_COLUMNS = ("class_name", "classname", "class", "name", "label", "landcover", "land_cover", "description")


@dataclass
class RasterClasses:
    """What the files beside a classified raster say of its classes.

    Attributes:
        names: class name by code.
        colours: ``#rrggbb`` by code.
        sources: the files that named at least one class.
        notes: sidecar files that could not be read (the classes then keep their codes).
    """

    names: dict[int, str] = field(default_factory=dict)
    colours: dict[int, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def raster_classes(path: str | os.PathLike) -> RasterClasses:
    """The class names and colours of a classified raster from its QGIS style, GDAL ``.aux.xml`` or ArcGIS
    ``.vat.dbf`` (band 1)."""
    path = Path(path)
    found = RasterClasses()
    for reader, sidecar in ((qml_classes, path.with_suffix(".qml")), (pam_classes, Path(f"{path}.aux.xml")),
                            (vat_classes, Path(f"{path}.vat.dbf"))):
        if not sidecar.is_file():
            continue
        try:
            names, colours = reader(sidecar)
        except Exception as exc:  # noqa: BLE001 - a broken sidecar costs the names, not the run
            found.notes.append(f"note: class names in {sidecar.name} cannot be read ({type(exc).__name__}): the "
                               "classes keep their codes unless the settings name them (classes:)")
            continue
        for code, name in names.items():
            found.names.setdefault(code, name)
        for code, colour in colours.items():
            found.colours.setdefault(code, colour)
        if names:
            found.sources.append(sidecar.name)
    return found


def qml_classes(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """(names, colours) by code of a QGIS raster style: a paletted renderer's entries, or the items of an exact
    ("EXACT") colour ramp."""
    names: dict[int, str] = {}
    colours: dict[int, str] = {}
    root = ET.parse(path).getroot()
    entries = list(root.iter("paletteEntry"))
    for shader in root.iter("colorrampshader"):
        if shader.get("colorRampType", "").upper() == "EXACT":
            entries += list(shader.iter("item"))
    for entry in entries:
        code = _code(entry.get("value"))
        if code is None:
            continue
        if entry.get("label"):
            names[code] = entry.get("label")
        if _hex(entry.get("color")):
            colours[code] = _hex(entry.get("color"))
    return names, colours


def pam_classes(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """(names, colours) by code of a GDAL ``.aux.xml``: band 1's attribute table, else its category names (the
    n-th name is class n)."""
    root = ET.parse(path).getroot()
    band = next((b for b in root.iter("PAMRasterBand") if b.get("band", "1") == "1"), None)
    if band is None:
        return {}, {}
    table = band.find("GDALRasterAttributeTable")
    if table is not None:
        fields = [(f.findtext("Name", ""), int(f.findtext("Type", "0")), int(f.findtext("Usage", "0")))
                  for f in table.findall("FieldDefn")]
        rows = [[v.text or "" for v in row.findall("F")] for row in table.findall("Row")]
        names, colours = _table_classes(fields, rows)
        if names or colours:
            return names, colours
    categories = band.find("CategoryNames")
    if categories is None:
        return {}, {}
    return {code: c.text.strip() for code, c in enumerate(categories.findall("Category"))
            if c.text and c.text.strip()}, {}


def vat_classes(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """(names, colours) by code of an ArcGIS value attribute table (``.vat.dbf``)."""
    import pandas as pd
    import pyogrio

    frame = pyogrio.read_dataframe(path, read_geometry=False)

    def kind(column) -> int:
        return RAT_STRING if pd.api.types.is_string_dtype(column) else RAT_REAL if pd.api.types.is_float_dtype(
            column) else 0

    fields = [(str(c), kind(frame[c]), 0) for c in frame.columns]
    rows = [["" if v is None else str(v) for v in row] for row in frame.itertuples(index=False)]
    return _table_classes(fields, rows)


def _table_classes(fields: list[tuple[str, int, int]], rows: list[list[str]]
                   ) -> tuple[dict[int, str], dict[int, str]]:
    """(names, colours) by code of an attribute table: ``fields`` as (name, GDAL type, GDAL usage)."""
    lower = [name.lower() for name, _, _ in fields]

    def column(usage: int, names: tuple[str, ...], string: bool = False) -> int | None:
        marked = [i for i, (_, _, u) in enumerate(fields) if u == usage]
        if marked:
            return marked[0]
        named = [i for n in names for i, low in enumerate(lower) if low == n]
        if not named and string:  # any text column
            named = [i for i, (_, t, _) in enumerate(fields) if t == RAT_STRING]
        return named[0] if named else None

    value, name = column(RAT_MINMAX, VALUE_COLUMNS), column(RAT_NAME, NAME_COLUMNS, string=True)
    rgb = [column(RAT_RED, ("red", "r")), column(RAT_GREEN, ("green", "g")), column(RAT_BLUE, ("blue", "b"))]
    if value is None or value == name:
        return {}, {}
    names: dict[int, str] = {}
    channels: dict[int, list[float]] = {}
    for row in rows:
        code = _code(row[value]) if value < len(row) else None
        if code is None:
            continue
        if name is not None and name < len(row) and row[name].strip():
            names[code] = row[name].strip()
        if None not in rgb and max(rgb) < len(row):
            try:
                channels[code] = [float(row[i]) for i in rgb]
            except ValueError:
                continue
    # real colour columns all within 0-1 are fractions (as GDAL allows), else 0-255
    fractions = channels and all(fields[i][1] == RAT_REAL for i in rgb) and max(map(max, channels.values())) <= 1
    scale = 255 if fractions else 1
    colours = {code: "#" + "".join(f"{min(255, max(0, round(c * scale))):02x}" for c in rgb_values)
               for code, rgb_values in channels.items()}
    return names, colours


def _code(text: str | None) -> int | None:
    """A class code from a table cell or style value (``"3"``, ``"3.0"``), None when it is not a whole number."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _hex(colour: str | None) -> str | None:
    """``#rrggbb`` from a QGIS colour (``#rrggbb``, ``#aarrggbb`` or ``r,g,b,a``)."""
    if not colour:
        return None
    if colour.startswith("#") and len(colour) in (7, 9):
        return "#" + colour[-6:].lower()
    parts = colour.split(",")
    if len(parts) >= 3:
        try:
            return "#" + "".join(f"{int(p):02x}" for p in parts[:3])
        except ValueError:
            return None
    return None

"""A class map's raster attribute table in GDAL's ``.aux.xml`` beside it: the class names and colours for ArcGIS,
gdalinfo and QGIS 3.30+ (which do not read QGIS's ``.qml``), in the form GDAL writes itself
(:meth:`GDALRasterBand.SetDefaultRAT`; tests/test_outputs.py compares with GDAL's own reading)."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

from geocamat.outputs.style import ClassStyle

#: (name, GDAL field type, GDAL field usage) of the table's columns: Value (MinMax), Class_Name (Name), Red,
#: Green, Blue (0-255)
COLUMNS = (("Value", 0, 5), ("Class_Name", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8))


def attribute_table_xml(style: ClassStyle) -> str:
    """The ``.aux.xml`` text of a one-band class map with one table row per class."""
    fields = "".join(f'      <FieldDefn index="{i}">\n        <Name>{name}</Name>\n        <Type>{kind}</Type>\n'
                     f"        <Usage>{usage}</Usage>\n      </FieldDefn>\n"
                     for i, (name, kind, usage) in enumerate(COLUMNS))
    rows = []
    for i, (code, name) in enumerate(zip(style.ids, style.names, strict=True)):
        values = [str(int(code)), escape(str(name)), *map(str, style.rgb(i))]
        rows.append(f'      <Row index="{i}">\n' + "".join(f"        <F>{v}</F>\n" for v in values) + "      </Row>\n")
    return ('<PAMDataset>\n  <PAMRasterBand band="1">\n    <GDALRasterAttributeTable tableType="thematic">\n'
            f"{fields}{''.join(rows)}    </GDALRasterAttributeTable>\n  </PAMRasterBand>\n</PAMDataset>\n")


def write_attribute_table(raster: str | os.PathLike, style: ClassStyle) -> Path:
    """Put the table into ``RASTER.aux.xml``: into what GDAL wrote there (band description, category names),
    replacing a table already in it, or as a new file."""
    import xml.etree.ElementTree as ET

    path = Path(f"{raster}.aux.xml")
    table = ET.fromstring(attribute_table_xml(style))
    if path.is_file():
        root = ET.parse(path).getroot()
        band = next((b for b in root.iter("PAMRasterBand") if b.get("band") == "1"), None)
        if band is None:
            band = ET.SubElement(root, "PAMRasterBand", band="1")
        for old in band.findall("GDALRasterAttributeTable"):
            band.remove(old)
        band.append(table.find("PAMRasterBand/GDALRasterAttributeTable"))
        table = root
    ET.indent(table, space="  ")
    path.write_text(ET.tostring(table, encoding="unicode") + "\n")
    return path

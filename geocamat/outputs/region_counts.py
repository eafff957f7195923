"""Objects counted per region (``--region-field``) as a layer that opens styled in QGIS: ``regions.gpkg``.

One polygon per region value (its part the images cover) with ``region``, ``objects`` (all classes), ``area_ha``,
``imaged_pct`` (the share of the region the images cover), ``objects_per_ha`` and one ``n_<class>`` count per
class. The style (``regions.qml``, also stored in the GeoPackage as its default) is a graduated fill on
``objects_per_ha`` in five quantile classes, light to dark, 60% opaque so that the imagery shows through, with each
region's count written in it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from geocamat.outputs.geopackage import store_style
from geocamat.outputs.qml import QGIS_VERSION

LAYER = "regions"
FIELD = "objects_per_ha"
#: each region's label: its name and object count (a QGIS expression)
LABEL = "concat(\"region\", ': ', \"objects\")"
#: light to dark (ColorBrewer YlOrRd): the densest regions read first
RAMP = ("255,255,178", "254,204,92", "253,141,60", "240,59,32", "189,0,38")


def class_column(name: str) -> str:
    """The count column of a class: ``n_`` and the name made a plain field name."""
    return "n_" + (re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "class")


def graduated_qml(values: np.ndarray, field: str = FIELD, label: str = LABEL) -> str:
    """QML of a graduated fill on ``field``: up to five quantile classes of ``values``, no more than its distinct
    values (one when they are all equal: no empty legend entries), each region labelled with the expression
    ``label`` (its name and count), above the labels of other layers."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    classes = min(len(RAMP), max(1, len(np.unique(v))))
    edges = np.unique(np.quantile(v, np.linspace(0, 1, classes + 1))) if len(v) else np.array([0.0, 0.0])
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0]])
    ranges, symbols = [], []
    n = len(edges) - 1
    for i in range(n):
        lo, hi = float(edges[i]), float(edges[i + 1])
        color = RAMP[round(i * (len(RAMP) - 1) / max(n - 1, 1))]
        ranges.append(f'      <range lower="{lo:.6g}" upper="{hi:.6g}" label="{lo:.3g} - {hi:.3g} per ha" '
                      f'symbol="{i}" render="true"/>\n')
        symbols.append(f'      <symbol type="fill" name="{i}" alpha="0.6" clip_to_extent="1" force_rhr="0">\n'
                       '        <layer class="SimpleFill" enabled="1" locked="0" pass="0">\n'
                       f'          <prop k="color" v="{color},255"/>\n'
                       '          <prop k="outline_color" v="40,40,40,255"/>\n'
                       '          <prop k="outline_width" v="0.3"/>\n'
                       '          <prop k="style" v="solid"/>\n'
                       "        </layer>\n      </symbol>\n")
    label = ("  <labeling type=\"simple\">\n    <settings calloutType=\"simple\">\n"
             f"      <text-style fieldName={quoteattr(label)} fontSize=\"9\" textColor=\"0,0,0,255\" "
             "fontWeight=\"75\" isExpression=\"1\">\n"
             "        <text-buffer bufferDraw=\"1\" bufferSize=\"0.8\" bufferColor=\"255,255,255,255\"/>\n"
             "      </text-style>\n"
             "      <placement placement=\"1\" centroidInside=\"1\" fitInPolygonOnly=\"0\" priority=\"9\"/>\n"
             "      <rendering obstacle=\"0\" displayAll=\"1\"/>\n"
             "    </settings>\n  </labeling>\n")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        f'<qgis version="{QGIS_VERSION}" styleCategories="Symbology|Labeling" labelsEnabled="1">\n'
        f'  <renderer-v2 type="graduatedSymbol" attr={quoteattr(field)} graduatedMethod="GraduatedColor" '
        'symbollevels="0" enableorderby="0" forceraster="0">\n'
        "    <ranges>\n" + "".join(ranges) + "    </ranges>\n"
        "    <symbols>\n" + "".join(symbols) + "    </symbols>\n"
        '    <mode name="quantile"/>\n'
        "  </renderer-v2>\n" + label +
        "  <layerGeometryType>2</layerGeometryType>\n"
        "</qgis>\n")


def write_region_counts(path: str | os.PathLike, table, regions: list, crs, out_crs=None) -> dict:
    """Write ``regions.gpkg`` (temporary name, then rename) and its ``.qml`` from the counts table.

    Args:
        path: output ``.gpkg``.
        table: rows ``region, class_name, objects, area_ha, imaged_pct`` (every region and class).
        regions: ``[(value, geometry)]`` in ``crs``.
        crs: CRS of the region geometries.
        out_crs: CRS of the layer (default: ``crs``).

    Returns:
        ``{"gpkg": path, "qml": path}``.
    """
    import geopandas as gpd

    path = Path(path)
    wide = table.pivot_table(index="region", columns="class_name", values="objects", aggfunc="sum", sort=False)
    rows = []
    for value, _ in regions:
        counts = wide.loc[value] if value in wide.index else None
        area = float(table.loc[table["region"] == value, "area_ha"].iloc[0])
        total = int(counts.sum()) if counts is not None else 0
        rows.append({"region": value, "objects": total, "area_ha": area,
                     "imaged_pct": float(table.loc[table["region"] == value, "imaged_pct"].iloc[0]),
                     FIELD: round(total / area, 3) if area > 0 else None,
                     **({class_column(c): int(n) for c, n in counts.items()} if counts is not None else {})})
    gdf = gpd.GeoDataFrame(rows, geometry=[g for _, g in regions], crs=crs)
    if out_crs is not None:
        gdf = gdf.to_crs(out_crs)
    tmp = path.with_name(path.stem + ".part.gpkg")
    if tmp.exists():
        tmp.unlink()
    gdf.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio", promote_to_multi=True,
                VERSION="1.2")  # what QGIS 3.22's GDAL reads in full
    qml = graduated_qml(gdf[FIELD].to_numpy(dtype=float))
    store_style(tmp, qml, LAYER)
    qml_path = path.with_suffix(".qml")
    qml_tmp = qml_path.with_name(qml_path.name + ".part")
    qml_tmp.write_text(qml)
    os.replace(tmp, path)
    os.replace(qml_tmp, qml_path)
    return {"gpkg": str(path), "qml": str(qml_path)}

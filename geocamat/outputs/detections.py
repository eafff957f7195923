"""Detections as a GeoPackage layer that opens styled in QGIS, and an overlay plot.

The layer ``detections`` holds one polygon per detection (the box's 4 corners, so rotated grids stay
exact) with ``image``, ``class_name``, ``class_id``, ``score``, ``area`` (m², on the ellipsoid for geographic
CRSs; pixels for plain images), ``cam_evidence`` and the pixel box ``xmin, ymin, xmax, ymax``. Georeferenced
images give coordinates in the image CRS (or ``--crs``); plain images give pixel coordinates with the vertical
axis negated (x = column, y = -row), which is how QGIS places an image without georeference, so the boxes overlay it.
A categorized QGIS style that reads on imagery (bright outlines over a dark halo, width graded by score, the
score labelled when zoomed in) is written beside the file (``.qml``) and stored in the GeoPackage's
``layer_styles`` table as the default style.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from geocamat.outputs.geopackage import store_style

LAYER = "detections"

#: Field types of the detections layer, enforced so that an empty layer has the same layout as a full one.
FIELD_TYPES = {"image": "str", "class_id": "int64", "class_name": "str", "score": "float64", "area": "float64",
               "cam_evidence": "float64", "xmin": "float64", "ymin": "float64", "xmax": "float64",
               "ymax": "float64"}

def box_polygons(boxes: np.ndarray, transform=None):
    """Shapely polygons of xyxy pixel boxes, in map coordinates (``transform``) or pixel coordinates (y = -row);
    built as one array (a scene's million boxes in seconds)."""
    import shapely

    b = np.asarray(boxes, float).reshape(-1, 4)
    x = b[:, [0, 2, 2, 0, 0]]
    y = b[:, [1, 1, 3, 3, 1]]
    if transform is not None:
        x, y = transform.a * x + transform.b * y + transform.c, transform.d * x + transform.e * y + transform.f
    else:
        y = -y
    return list(shapely.polygons(np.stack([x, y], axis=-1)))


def polygon_areas_m2(polygons, crs) -> np.ndarray:
    """Areas in square metres of polygons in ``crs``: planar in a projected CRS (its unit converted to metres),
    on the CRS's ellipsoid in a geographic one; None (plain images): planar, in pixels."""
    import shapely

    geoms = np.asarray(polygons, dtype=object)
    if crs is None or len(geoms) == 0:
        return shapely.area(geoms).astype(float) if len(geoms) else np.zeros(0)
    from pyproj import CRS, Geod

    c = CRS.from_user_input(crs)
    if c.is_geographic:
        ellipsoid = c.ellipsoid
        geod = Geod(a=ellipsoid.semi_major_metre, b=ellipsoid.semi_minor_metre)
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms], float)
    factor = c.axis_info[0].unit_conversion_factor if c.axis_info else 1.0
    return shapely.area(geoms).astype(float) * factor ** 2


def _hex_to_rgb(color: str) -> str:
    c = color.lstrip("#")
    return ",".join(str(int(c[i:i + 2], 16)) for i in (0, 2, 4))


# outline colours that read on imagery (vegetation, soil, water, roofs): saturated and light, one per class
# index; land-cover colours (a dark green for trees) vanish on the canopy they outline
OUTLINE_COLOURS = ("#ffff00", "#00ffff", "#ff00ff", "#ff8c00", "#7fff00", "#ff1493", "#1e90ff", "#ffffff")


def outline_colour(index: int) -> str:
    """The bright outline colour of class ``index`` (:data:`OUTLINE_COLOURS`, cycled)."""
    return OUTLINE_COLOURS[index % len(OUTLINE_COLOURS)]


def _line_layer(color: str, alpha: int, width_mm: float, width_expression: str | None = None) -> str:
    defined = ""
    if width_expression:
        defined = (
            '          <data_defined_properties>\n'
            '            <Option type="Map">\n'
            '              <Option name="name" type="QString" value=""/>\n'
            '              <Option name="properties" type="Map">\n'
            '                <Option name="outlineWidth" type="Map">\n'
            '                  <Option name="active" type="bool" value="true"/>\n'
            f'                  <Option name="expression" type="QString" value={quoteattr(width_expression)}/>\n'
            '                  <Option name="type" type="int" value="3"/>\n'
            '                </Option>\n'
            '              </Option>\n'
            '              <Option name="type" type="QString" value="collection"/>\n'
            '            </Option>\n'
            '          </data_defined_properties>\n')
    return (
        '        <layer class="SimpleFill" enabled="1" pass="0" locked="0">\n'
        '          <prop k="color" v="0,0,0,0"/>\n'
        '          <prop k="style" v="no"/>\n'
        f'          <prop k="outline_color" v="{_hex_to_rgb(color)},{alpha}"/>\n'
        '          <prop k="outline_style" v="solid"/>\n'
        f'          <prop k="outline_width" v="{width_mm}"/>\n'
        '          <prop k="outline_width_unit" v="MM"/>\n'
        '          <prop k="joinstyle" v="miter"/>\n'
        f'{defined}'
        '        </layer>\n')


def detections_qml(classes: list, field: str = "class_name", label_scale: int = 5000) -> str:
    """A QGIS style that reads on imagery: bright outlines graded by score over a dark halo, scores as labels.

    Each class (categorized by ``field``) gets a bright colour (:func:`outline_colour`) drawn over a
    semi-transparent black halo, so the outline stands out on light and dark ground alike; its width grows
    with the score (0.35 mm at score 0 to 1.1 mm at 1). The score is written inside each box (white text,
    black buffer) when the map is zoomed in to 1:``label_scale`` or closer.

    Args:
        classes: objects with ``name`` (e.g. :class:`geocamat.bundle.ClassInfo`).
        field: the attribute holding the class name.
        label_scale: the smallest-scale denominator at which scores are labelled.
    """
    cats, syms = [], []
    width = 'coalesce(0.35 + 0.75 * min(max("score", 0), 1), 0.6)'
    for i, c in enumerate(classes):
        cats.append(f'      <category render="true" symbol="{i}" value={quoteattr(c.name)} label={quoteattr(c.name)}/>')
        syms.append(
            f'      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            + _line_layer("#000000", 150, 1.6)
            + _line_layer(outline_colour(i), 255, 0.6, width)
            + '      </symbol>')
    label = (
        "  <labeling type=\"simple\">\n"
        "    <settings calloutType=\"simple\">\n"
        '      <text-style fieldName="format_number(&quot;score&quot;, 2)" isExpression="1" fontSize="7" '
        'fontSizeUnit="Point" textColor="255,255,255,255" textOpacity="1" fontWeight="75" fontFamily="Sans Serif">\n'
        '        <text-buffer bufferDraw="1" bufferSize="0.7" bufferSizeUnits="MM" bufferColor="0,0,0,255" '
        'bufferOpacity="0.85" bufferNoFill="1" bufferJoinStyle="128"/>\n'
        "      </text-style>\n"
        '      <placement placement="1" quadOffset="4" dist="0" fitInPolygonOnly="0" centroidInside="1"/>\n'
        f'      <rendering scaleVisibility="1" scaleMin="0" scaleMax="{int(label_scale)}" obstacle="0" '
        'displayAll="1" upsidedownLabels="0"/>\n'
        "    </settings>\n"
        "  </labeling>\n")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology|Labeling" labelsEnabled="1">\n'
        f'  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" '
        'forceraster="0">\n'
        "    <categories>\n" + "\n".join(cats) + "\n    </categories>\n"
        "    <symbols>\n" + "\n".join(syms) + "\n    </symbols>\n"
        "  </renderer-v2>\n"
        + label +
        "  <layerGeometryType>2</layerGeometryType>\n"
        "</qgis>\n")


def write_detections(path: str | os.PathLike, frame, classes: list, crs=None) -> dict:
    """Write the detections layer (temporary name, then rename), its ``.qml`` and the stored style.

    Args:
        path: output ``.gpkg``.
        frame: a :class:`pandas.DataFrame` with the columns listed in the module docstring and a ``geometry``
            column of polygons (may be empty).
        classes: class list with ``name`` and ``color`` (for the style).
        crs: CRS of the geometries (anything geopandas accepts), None for pixel coordinates.

    Returns:
        ``{"gpkg": path, "qml": path, "style_in_gpkg": bool}``.
    """
    import geopandas as gpd

    path = Path(path)
    gdf = gpd.GeoDataFrame(frame, geometry="geometry", crs=crs)
    gdf = gdf.astype({k: v for k, v in FIELD_TYPES.items() if k in gdf.columns})  # same layout when empty
    tmp = path.with_name(path.stem + ".part.gpkg")
    if tmp.exists():
        tmp.unlink()
    gdf.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio", geometry_type="Polygon",
                VERSION="1.2")  # what QGIS 3.22's GDAL reads in full (1.4 is "only partially supported")
    qml = detections_qml(classes)
    stored = True
    try:
        store_style(tmp, qml, LAYER)
    except sqlite3.Error:
        stored = False
    qml_path = path.with_suffix(".qml")
    qml_tmp = qml_path.with_name(qml_path.name + ".part")
    qml_tmp.write_text(qml)
    os.replace(tmp, path)
    os.replace(qml_tmp, qml_path)
    return {"gpkg": str(path), "qml": str(qml_path), "style_in_gpkg": stored}


def plot_detections(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, classes: list, out_png: str | os.PathLike,
                    truth: np.ndarray | None = None, title: str | None = None) -> None:
    """Draw predicted boxes (bright class outlines, as in the QGIS style) and ground truth (dashed white).

    Args:
        image: (H, W, 3) uint8 or float in [0, 1].
        boxes: (N, 4) xyxy pixel boxes.
        labels: (N,) class indices.
        classes: class list with ``name`` and ``color``.
        out_png: output path.
        truth: optional (M, 4) ground-truth boxes.
        title: optional title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * h / w), dpi=120)
    ax.imshow(image)
    if truth is not None:
        for x0, y0, x1, y1 in np.asarray(truth).reshape(-1, 4):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.0, ls="--"))
    for (x0, y0, x1, y1), lab in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels), strict=True):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="black", lw=2.6, alpha=0.55))
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=outline_colour(int(lab)), lw=1.2))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = Path(out_png).with_name(Path(out_png).stem + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out_png)

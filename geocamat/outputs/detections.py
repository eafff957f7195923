"""Detections as a GeoPackage layer that opens styled in QGIS, and an overlay plot.

The layer ``detections`` holds one polygon per detection (the box's 4 corners, so rotated grids stay
exact) with ``image``, ``class_name``, ``class_id``, ``score``, ``area`` (CRS units squared, or pixels),
``cam_evidence`` and the pixel box ``xmin, ymin, xmax, ymax``. Georeferenced images give coordinates in
the image CRS; plain images give pixel coordinates with the vertical axis negated (x = column,
y = -row), which is how QGIS places an image without georeference, so the boxes overlay it.
A categorized QGIS style (outlines in the class colours) is written beside the file (``.qml``) and stored
in the GeoPackage's ``layer_styles`` table as the default style.
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
    """Shapely polygons of xyxy pixel boxes, in map coordinates (``transform``) or pixel coordinates (y = -row)."""
    from shapely.geometry import Polygon

    polys = []
    for x0, y0, x1, y1 in np.asarray(boxes, float).reshape(-1, 4):
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        if transform is not None:
            corners = [transform @ c for c in corners]
        else:
            corners = [(x, -y) for x, y in corners]
        polys.append(Polygon(corners))
    return polys


def _hex_to_rgb(color: str) -> str:
    c = color.lstrip("#")
    return ",".join(str(int(c[i:i + 2], 16)) for i in (0, 2, 4))


def detections_qml(classes: list, field: str = "class_name", width_mm: float = 0.6) -> str:
    """A QGIS style: categorized by ``field``, one outline-only symbol per class in its colour.

    Args:
        classes: objects with ``name`` and ``color`` (#rrggbb), e.g. :class:`geocamat.bundle.ClassInfo`.
    """
    cats, syms = [], []
    for i, c in enumerate(classes):
        cats.append(f'      <category render="true" symbol="{i}" value={quoteattr(c.name)} label={quoteattr(c.name)}/>')
        syms.append(
            f'      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            f'        <layer class="SimpleFill" enabled="1" pass="0" locked="0">\n'
            f'          <prop k="color" v="0,0,0,0"/>\n'
            f'          <prop k="style" v="no"/>\n'
            f'          <prop k="outline_color" v="{_hex_to_rgb(c.color)},255"/>\n'
            f'          <prop k="outline_style" v="solid"/>\n'
            f'          <prop k="outline_width" v="{width_mm}"/>\n'
            f'          <prop k="outline_width_unit" v="MM"/>\n'
            f'          <prop k="joinstyle" v="miter"/>\n'
            f'        </layer>\n'
            f'      </symbol>')
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology">\n'
        f'  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" '
        'forceraster="0">\n'
        "    <categories>\n" + "\n".join(cats) + "\n    </categories>\n"
        "    <symbols>\n" + "\n".join(syms) + "\n    </symbols>\n"
        "  </renderer-v2>\n"
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
    gdf.to_file(tmp, layer=LAYER, driver="GPKG", engine="pyogrio", geometry_type="Polygon")
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
    """Draw predicted boxes (class colours) and optional ground truth (dashed white) over an RGB image.

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
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=classes[int(lab)].color, lw=1.4))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = Path(out_png).with_name(Path(out_png).stem + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out_png)

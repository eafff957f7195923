"""QGIS layer styles (``.qml``): a paletted raster style and a categorised polygon style, listing exactly
the classes (value, name, colour), so a class map opens in QGIS with its legend instead of 256 numbered,
mostly black palette entries."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import quoteattr

from geocamat.outputs.style import ClassStyle

QGIS_VERSION = "3.22.0"


def paletted_qml(style: ClassStyle, band: int = 1, opacity: float = 1.0) -> str:
    """The QML text of a paletted raster renderer with one entry per class."""
    entries = "".join(
        f"        <paletteEntry value={quoteattr(str(cid))} label={quoteattr(name)} color={quoteattr(color.lower())}"
        ' alpha="255"/>\n'
        for cid, name, color in zip(style.ids, style.names, style.colors, strict=True)
    )
    return _raster_qml(
        f'    <rasterrenderer type="paletted" band="{band}" opacity="{opacity}" alphaBand="-1" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <colorPalette>\n"
        f"{entries}"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n")


def _raster_qml(renderer: str, comment: str = "") -> str:
    """A raster layer's QML around its ``renderer`` element (the pipe's other filters at their defaults)."""
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        f'<qgis version="{QGIS_VERSION}" styleCategories="AllStyleCategories">{comment}\n'
        "  <pipe>\n"
        f"{renderer}"
        '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
        '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
        '    <rasterresampler maxOversampling="2"/>\n'
        "  </pipe>\n"
        "  <blendMode>0</blendMode>\n"
        "</qgis>\n"
    )


#: viridis at five stops: dark purple (low) to yellow (high), readable in grey and by colour-blind readers
VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def pseudocolor_qml(band: int = 1, low: float = 0.0, high: float = 1.0, label: str = "") -> str:
    """The QML text of a single-band pseudocolour renderer (viridis from ``low`` to ``high``, NaN transparent): a
    [0, 1] float raster (confidence, CAM, a class probability) opens as a legible colour ramp, not stretched grey."""
    stops = [low + (high - low) * k / (len(VIRIDIS) - 1) for k in range(len(VIRIDIS))]
    items = "".join(f'            <item alpha="255" value="{v:g}" label="{v:g}" color="{color}"/>\n'
                    for v, color in zip(stops, VIRIDIS, strict=True))
    return _raster_qml(
        f'    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" alphaBand="-1" '
        f'classificationMin="{low:g}" classificationMax="{high:g}" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <rastershader>\n"
        f'        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" '
        f'minimumValue="{low:g}" maximumValue="{high:g}">\n'
        f"{items}"
        "        </colorrampshader>\n"
        "      </rastershader>\n"
        "    </rasterrenderer>\n", f" <!-- {label} -->" if label else "")


def categorized_polygon_qml(style: ClassStyle, field: str = "class_id", opacity: float = 1.0,
                            marker: bool = False) -> str:
    """The QML text of a categorised fill renderer on ``field`` (one category per class); ``opacity`` < 1 lets
    the imagery under the polygons show through. ``marker``: circles for a point layer instead (white outline,
    so that they read on the map of the same colours)."""
    categories, symbols = [], []
    for i, (cid, name) in enumerate(zip(style.ids, style.names, strict=True)):
        r, g, b = style.rgb(i)
        categories.append(f'      <category value={quoteattr(str(cid))} label={quoteattr(name)} symbol="{i}"'
                          ' render="true"/>\n')
        if marker:
            layer = ('        <layer class="SimpleMarker" enabled="1" locked="0" pass="0">\n'
                     f'          <prop k="color" v="{r},{g},{b},255"/>\n'
                     '          <prop k="name" v="circle"/>\n'
                     '          <prop k="outline_color" v="255,255,255,255"/>\n'
                     '          <prop k="outline_width" v="0.4"/>\n'
                     '          <prop k="size" v="3"/>\n'
                     "        </layer>\n")
        else:
            layer = ('        <layer class="SimpleFill" enabled="1" locked="0" pass="0">\n'
                     f'          <prop k="color" v="{r},{g},{b},255"/>\n'
                     '          <prop k="outline_color" v="35,35,35,255"/>\n'
                     '          <prop k="outline_width" v="0.1"/>\n'
                     '          <prop k="style" v="solid"/>\n'
                     "        </layer>\n")
        symbols.append(f'      <symbol type="{"marker" if marker else "fill"}" name="{i}" alpha="{opacity:g}" '
                       'clip_to_extent="1" force_rhr="0">\n' + layer + "      </symbol>\n")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        f'<qgis version="{QGIS_VERSION}" styleCategories="AllStyleCategories">\n'
        f'  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} enableorderby="0" forceraster="0">\n'
        "    <categories>\n" + "".join(categories) + "    </categories>\n"
        "    <symbols>\n" + "".join(symbols) + "    </symbols>\n"
        "  </renderer-v2>\n"
        "</qgis>\n"
    )


def write_paletted_qml(path: str | os.PathLike, style: ClassStyle) -> Path:
    """Write :func:`paletted_qml` to ``path`` (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(paletted_qml(style), encoding="utf-8")
    os.replace(tmp, path)
    return path

"""``partial_bands.tif``: where a land-use map was classified from partly filled input bands.

A pixel whose bands are some nodata and some valid is classified (by default) with the missing bands filled
by their mean. The mask says where: 1 = mapped from partly filled bands, 0 = mapped with every band valid,
:data:`NODATA` where ``landuse.tif`` has no class. It has its own paletted style (two entries, nodata
transparent) so that QGIS opens it as a legend of two classes over the map.
"""

from __future__ import annotations

from geocamat.outputs.style import ClassStyle

#: File name of the mask in the output folder (its QGIS style: :data:`QML`).
NAME = "partial_bands"
TIF = f"{NAME}.tif"
QML = f"{NAME}.qml"
#: Pixel values of the mask.
ALL_VALID, PARTIAL, NODATA = 0, 1, 255
#: Data type of the mask.
DTYPE = "uint8"
#: Palette and category names of the mask (0: light grey, 1: orange; nodata transparent).
STYLE = ClassStyle([ALL_VALID, PARTIAL], ["all bands valid", "some bands nodata (filled)"], ["#d9d9d9", "#ff7f00"])

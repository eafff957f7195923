"""Class rasters of scenes classified in cells: one pixel per cell, for each georeferenced image cut into cells.

``cells/<image stem>.tif`` (a styled COG with its ``.qml``, the land-use map's conventions) holds the class of
each cell, nodata where a cell was not classified (nodata only). Its pixels are the cells: the grid of the image's
pixels scaled by the cell side, so the last row and column of cells, cut by the image's edges in ``scenes.gpkg``,
are drawn full-size here and reach past the image by less than one cell. The grid of one image is a few thousand
to a few million cells, held until that image's last cell is classified (cells of an image come one after another).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the folder of the class rasters in the output
FOLDER = "cells"


class CellMaps:
    """Collects each chipped georeferenced image's cell classes and writes its raster when its cells are done.

    Args:
        folder: where the rasters go (created on the first).
        classes: the model's classes (ids, names, colours).
    """

    def __init__(self, folder: Path, classes) -> None:
        from geocamat.outputs.style import ClassStyle, class_dtype_nodata

        self.folder, self.style = folder, ClassStyle.from_classes(classes)
        self.dtype, self.nodata = class_dtype_nodata(self.style.ids)
        self.path: Path | None = None
        self.grid: np.ndarray | None = None
        self.chip, self.where, self.names, self.written = 0, None, set(), []

    def start(self, plan, crs, transform) -> None:
        """Begin the raster of ``plan`` (an image cut in cells of ``plan.chip`` px) on the image's grid; a plain
        image (no ``crs``) or a whole one gets none."""
        self.finish()
        self.path = plan.path
        if not plan.chip or crs is None:
            return
        rows, cols = -(-plan.height // plan.chip), -(-plan.width // plan.chip)
        self.grid = np.full((rows, cols), self.nodata, self.dtype)
        self.chip, self.where = plan.chip, (crs, transform)

    def add(self, unit, class_id: int) -> None:
        """The class of one cell of the current image."""
        if self.grid is not None and unit.cell is not None and unit.path == self.path:
            col, row = unit.cell[0] // self.chip, unit.cell[1] // self.chip
            self.grid[row, col] = class_id

    def finish(self) -> None:
        """Write the current image's raster."""
        from rasterio.transform import Affine

        from geocamat.outputs.raster import write_class_raster

        if self.grid is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        stem, k = self.path.stem, 1
        while stem in self.names:  # two images of one name in different folders: both kept
            k += 1
            stem = f"{self.path.stem}_{k}"
        self.names.add(stem)
        crs, transform = self.where
        out = write_class_raster(self.folder / f"{stem}.tif", self.grid, transform=transform * Affine.scale(self.chip),
                                 crs=crs, style=self.style, nodata=self.nodata)
        self.written.append(str(out.relative_to(self.folder.parent)))
        self.grid = None

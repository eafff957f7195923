"""Training detection on a partly labelled image: only inside the polygons where every object is labelled.

An analyst labels the trees of a few plots of a large orthophoto. Tiles drawn elsewhere, or reaching past a plot's
edge, show trees nobody boxed, and the detector learns them as background. With ``labelled_area`` the training
images are read through :class:`MaskedImage` (pixels outside the polygons blanked to 0, the normalised mean, as
nodata is), tiles with less than :data:`MIN_INSIDE` of their area inside are dropped, and boxes mostly outside are
left out (:func:`keep_inside`).
"""

from __future__ import annotations

import numpy as np

from geocamat.data.boxes import ImageBoxes, ImageInfo
from geocamat.errors import InvalidLabelsError

#: the share of a tile that must lie inside the labelled area for the tile to be used
MIN_INSIDE = 0.25


def area_in_pixels(path: str, infos: list[ImageInfo]) -> list:
    """The labelled-area polygons in the pixel grid of each image (None where they miss it).

    Raises:
        InvalidLabelsError: unreadable layer, no CRS, no polygon, plain images, or no image met.
    """
    import shapely

    from geocamat.data.vector_layers import read_vector

    frame = read_vector(path, "labelled_area")
    frame = frame[frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty or frame.crs is None:
        raise InvalidLabelsError(f"labelled_area {path} has {'no CRS' if not frame.empty else 'no polygon'}: give "
                                 "polygons, with a CRS, of the areas where every object is labelled")
    if any(i.crs is None for i in infos):
        raise InvalidLabelsError("labelled_area needs georeferenced training images (GeoTIFFs with a CRS)")
    out, cache = [], {}
    for info in infos:
        key = info.crs.to_string()
        if key not in cache:  # reprojected once per CRS
            cache[key] = shapely.union_all(frame.to_crs(info.crs).geometry.values)
        px = info.to_pixels(cache[key], info.crs).intersection(shapely.box(0, 0, info.width, info.height))
        out.append(None if px.is_empty else px)
    if all(p is None for p in out):
        raise InvalidLabelsError(f"labelled_area {path} meets none of the training images: check its CRS and "
                                 "extent (geocamat info)")
    return out


def inside_share(geometry, windows: list[tuple[int, int, int]]) -> np.ndarray:
    """The share of each (col, row, side) window that lies inside ``geometry`` (pixel coordinates)."""
    import shapely

    if geometry is None or not windows:
        return np.zeros(len(windows))
    w = np.asarray(windows, float)
    boxes = shapely.box(w[:, 0], w[:, 1], w[:, 0] + w[:, 2], w[:, 1] + w[:, 2])
    return shapely.area(shapely.intersection(boxes, geometry)) / (w[:, 2] ** 2)


def keep_inside(ib: ImageBoxes, geometry, min_share: float = 0.5) -> ImageBoxes:
    """The boxes with at least ``min_share`` of their area inside ``geometry`` (an image it misses: none)."""
    import shapely

    if len(ib.boxes) == 0:
        return ib
    if geometry is None:
        keep = np.zeros(len(ib.boxes), bool)
    else:
        b = ib.boxes.astype(float)
        boxes = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
        keep = shapely.area(shapely.intersection(boxes, geometry)) / area >= min_share
    return ImageBoxes(ib.image, ib.width, ib.height, ib.boxes[keep], [n for n, k in zip(ib.names, keep,
                                                                                       strict=True) if k])


class MaskedImage:
    """An image source (``read(col, row, width, height)``, ``shape``, ``nbytes``) whose pixels outside ``geometry``
    read as 0."""

    def __init__(self, image, geometry) -> None:
        self.image, self.geometry = image, geometry
        self.shape, self.nbytes = image.shape, image.nbytes

    def read(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        from affine import Affine
        from rasterio.features import rasterize

        x = self.image.read(col, row, width, height)
        if self.geometry is None:
            return np.zeros_like(x)
        inside = rasterize([(self.geometry, 1)], out_shape=(height, width), fill=0, dtype="uint8",
                           transform=Affine.translation(col, row)).astype(bool)  # the geometry is in pixels
        x[:, ~inside] = 0
        return x

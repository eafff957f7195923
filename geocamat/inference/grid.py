"""The output grid and the area of interest (AOI) of a prediction run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from geocamat.errors import ConfigError


@dataclass
class OutputGrid:
    """A north-up pixel grid: CRS (WKT), affine transform, size; ``lattice``: the (row, col) of its top-left pixel in
    the grid of the whole scene, where the tiles of a map start (a region's map tiles as the whole map does)."""

    crs: str
    transform: object  # rasterio Affine
    width: int
    height: int
    lattice: tuple[int, int] = (0, 0)

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f

    def window_transform(self, row_off: int, col_off: int):
        from rasterio.transform import Affine

        return self.transform @ Affine.translation(col_off, row_off)

    def box(self, row0: int, col0: int, row1: int, col1: int):
        """Map-coordinate box of the pixel window [row0, row1) x [col0, col1)."""
        import shapely

        t = self.transform
        return shapely.box(t.c + t.a * col0, t.f + t.e * row1, t.c + t.a * col1, t.f + t.e * row0)


def crs_wkt(crs) -> str:
    """WKT of anything rasterio understands (``EPSG:4326``, WKT, pyproj/rasterio CRS)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        with rasterio.Env():  # PROJ's complaint goes to the exception, not as a second line on stderr
            return CRS.from_user_input(crs).to_wkt()
    except (CRSError, ValueError, TypeError) as exc:
        raise ConfigError(f"unknown CRS {crs!r}: give e.g. EPSG:32618 or a WKT string") from exc


def load_region(region: str | os.PathLike, out_crs: str, field: str | None = None,
                within=None) -> list[tuple[str | None, object]]:
    """Read a vector AOI and reproject it to the output CRS.

    ``within``: ``(bounds, crs)`` of the images (a list for several, as :func:`geocamat.data.vector_layers.read_vector`
    takes it): only the features whose bounding box meets them are read, so a national layer of districts or stands
    costs its part over the scene.

    Returns:
        :class:`RegionParts`: ``[(None, merged geometry)]`` without ``field``, else ``[(value, geometry)]`` per
        distinct value of ``field`` (features sharing a value are merged).

    Raises:
        InputNotFoundError, ConfigError: missing/unreadable file, no CRS, unknown field, no polygon.
    """
    import shapely

    from geocamat.data.vector_layers import read_vector

    frame = read_vector(region, "region file", ConfigError, field, within=within)
    not_read = max(0, int(frame.attrs.get("layer_features") or 0) - len(frame)) if within is not None else 0
    if frame.crs is None:
        raise ConfigError(f"region {region} has no CRS: add a .prj (or save it as GeoPackage with a CRS)")
    if within is not None and frame.empty and frame.attrs.get("layer_features"):
        raise ConfigError(f"region {region} does not overlap the images: none of its {frame.attrs['layer_features']} "
                          "features meets them; check its coordinates and CRS")
    frame = frame[frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise ConfigError(f"region {region} has no polygon: give polygons of the area to map")
    from geocamat.data.labels import repair_geometries

    frame = repair_geometries(frame, region)  # a self-intersecting AOI would break the overlays below
    frame = frame.set_geometry(frame.geometry.map(areas_of))
    frame = frame.to_crs(out_crs)
    if field is None:
        return RegionParts([(None, shapely.union_all(frame.geometry.values))], not_read)
    if field not in frame.columns:
        fields = ", ".join(c for c in frame.columns if c != frame.geometry.name)
        raise ConfigError(f"region field {field!r} not in {region} (fields: {fields})")
    unnamed = int(frame[field].isna().sum())
    if unnamed:
        import warnings

        from geocamat.errors import GeocamatWarning

        warnings.warn(f"{unnamed} of {len(frame)} features of {region} have no {field!r} value: they are left out "
                      "(give them one to map them)", GeocamatWarning, stacklevel=2)
    out = RegionParts([], not_read)
    for value, group in frame.groupby(field, sort=True):
        out.append((str(value), shapely.union_all(group.geometry.values)))
    return out


class RegionParts(list):
    """:func:`load_region`'s ``[(value, geometry)]``, with ``not_read``: the layer's features that do not meet the
    images (not read, so neither mapped nor counted; the user is told how many)."""

    def __init__(self, parts=(), not_read: int = 0) -> None:
        super().__init__(parts)
        self.not_read = not_read


def areas_of(geometry):
    """The polygonal part of a geometry (``make_valid`` may add lines or points to the polygons it returns)."""
    import shapely

    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    return shapely.union_all([p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")])


def bbox_geometry(bbox: tuple[float, float, float, float], bbox_crs: str | None, out_crs: str):
    """The bbox as a polygon in the output CRS (densified so that reprojection keeps its shape)."""
    import geopandas as gpd
    import shapely

    xmin, ymin, xmax, ymax = bbox
    if not (xmin < xmax and ymin < ymax):
        raise ConfigError(f"bbox {bbox} is empty: give xmin ymin xmax ymax with xmin < xmax and ymin < ymax")
    geom = shapely.box(xmin, ymin, xmax, ymax)
    if bbox_crs is None:
        return geom
    geom = shapely.segmentize(geom, max(xmax - xmin, ymax - ymin) / 64)
    return gpd.GeoSeries([geom], crs=crs_wkt(bbox_crs)).to_crs(out_crs).iloc[0]


def on_lattice(grid: OutputGrid, whole: OutputGrid, stride: int) -> OutputGrid:
    """``grid`` (a region's, on ``whole``'s pixels) grown up and left to the nearest tile origin of ``whole``'s
    tiling (multiples of ``stride`` from its top-left pixel), with its place there as ``lattice``: its tiles, and
    their test-time views, are then those of the whole scene's map."""
    from rasterio.transform import Affine

    t, w = grid.transform, whole.transform
    col = max(0, round((t.c - w.c) / w.a))
    row = max(0, round((t.f - w.f) / w.e))
    dc, dr = col % stride, row % stride
    transform = Affine(t.a, 0.0, t.c - dc * t.a, 0.0, t.e, t.f - dr * t.e)
    return OutputGrid(grid.crs, transform, grid.width + dc, grid.height + dr, (row - dr, col - dc))


def snap_grid(bounds: tuple[float, float, float, float], res: tuple[float, float], crs: str,
              origin: tuple[float, float] = (0.0, 0.0)) -> OutputGrid:
    """The smallest grid of pixel size ``res`` aligned on ``origin`` that covers ``bounds``."""
    from rasterio.transform import Affine

    xmin, ymin, xmax, ymax = bounds
    rx, ry = res
    ox, oy = origin
    eps = 1e-6
    c0 = math.floor((xmin - ox) / rx + eps)
    c1 = math.ceil((xmax - ox) / rx - eps)
    r0 = math.floor((oy - ymax) / ry + eps)
    r1 = math.ceil((oy - ymin) / ry - eps)
    transform = Affine(rx, 0.0, ox + c0 * rx if c0 else ox, 0.0, -ry, oy - r0 * ry if r0 else oy)
    return OutputGrid(crs, transform, max(c1 - c0, 1), max(r1 - r0, 1))


def tile_positions(size: int, tile: int, stride: int) -> np.ndarray:
    """Tile origins along one axis: 0, stride, ... until a tile reaches the end (last tile may overhang)."""
    if size <= tile:
        return np.zeros(1, np.int64)
    n = math.ceil((size - tile) / stride) + 1
    return np.arange(n, dtype=np.int64) * stride

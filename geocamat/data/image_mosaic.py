"""Georeferenced images that tile one pixel grid (an orthophoto delivered in sheets), read as one image.

Detection over sheets one by one cuts every object on a sheet edge in two: each sheet finds a piece, and the
inventory counts the object twice, both boxes wrong. :func:`mosaic_groups` finds the images that share a CRS and
a pixel grid (same pixel size, origins a whole number of pixels apart) and touch or overlap; an
:class:`ImageMosaic` reads windows across them, so the sliding windows of detection see such objects whole.
Windows are read sheet by sheet from the files (memory holds a window, not the mosaic); where sheets overlap,
the later one's valid pixels win.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocamat.data.boxes import ImageInfo
from geocamat.data.detection_images import NormalisedImage, read_image
from geocamat.data.footprints import SAME_GROUND_SHARE, touching_pairs

#: origins may be this fraction of a pixel off the common grid (float rounding in the files' transforms)
GRID_TOLERANCE = 0.01


@dataclass(frozen=True)
class Sheet:
    """One image of a mosaic: its file and its place in the mosaic's pixel grid."""

    path: str
    col: int
    row: int
    width: int
    height: int


class ImageMosaic:
    """Images on one pixel grid read as one image (see the module docstring).

    Attributes:
        sheets: the images, with their offsets in the mosaic grid.
        info: the mosaic as an :class:`ImageInfo` (size, CRS, transform of its top-left corner), so that
            vector labels give boxes in its grid.
    """

    def __init__(self, sheets: list[Sheet], info: ImageInfo) -> None:
        self.sheets = sheets
        self.info = info
        self._rects = np.array([[s.col, s.row, s.col + s.width, s.row + s.height] for s in sheets], np.int64)

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.sheets]

    @property
    def name(self) -> str:
        names = [Path(p).name for p in self.paths]
        shown = ", ".join(names[:2]) + (f" ... {names[-1]}" if len(names) > 2 else "")
        return f"mosaic of {len(names)} images ({shown})"

    def _meeting(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        """Indices (in the given order) of the sheets a window meets."""
        r = self._rects
        return np.nonzero((r[:, 0] < col + width) & (r[:, 2] > col) & (r[:, 1] < row + height) & (r[:, 3] > row))[0]

    def covers(self, col: int, row: int, width: int, height: int) -> bool:
        """Whether a window meets at least one sheet (windows over holes of an L-shaped mosaic are skipped)."""
        return len(self._meeting(col, row, width, height)) > 0

    def read(self, window: tuple[int, int, int, int], bands: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A window of the mosaic as :func:`geocamat.data.detection_images.read_image` gives one of an image:
        (float32 (C, H, W) pixels, bool (H, W) validity: false on nodata, holes and outside)."""
        col, row, w, h = window
        data, valid = None, np.zeros((h, w), bool)
        for k in self._meeting(col, row, w, h):
            s = self.sheets[k]
            d, v = read_image(s.path, (col - s.col, row - s.row, w, h), bands)
            if data is None:
                data = np.zeros_like(d)
            data[:, v] = d[:, v]
            valid |= v
        if data is None:  # no sheet there: as many zero bands as the first sheet reads
            d, _ = read_image(self.sheets[0].path, (-w, -h, w, h), bands)
            data = np.zeros_like(d)
        return data, valid

    def sheet_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the sheet holding each point (mosaic pixels; e.g. box centres): the last sheet that contains
        it (the one read on top), else the nearest sheet. Looked up in an R-tree of the sheets, so a million
        objects over ten thousand sheets cost what they hold, not their product."""
        import shapely

        x, y = np.asarray(x, float), np.asarray(y, float)
        out = np.full(len(x), -1, np.int64)
        if len(x) == 0:
            return out
        tree = shapely.STRtree(shapely.box(*self._rects.T.astype(float)))
        points = shapely.points(x, y)
        point, sheet = tree.query(points, predicate="intersects")  # closed boxes: an edge point is in both sheets
        np.maximum.at(out, point, sheet)
        alone = np.nonzero(out < 0)[0]
        if len(alone):
            near_point, near_sheet = tree.query_nearest(points[alone])
            out[alone[near_point]] = near_sheet
        return out


def _grid_key(info: ImageInfo) -> tuple | None:
    """What images must share to lie on one pixel grid (None: no georeference, or a rotated one)."""
    t = info.transform
    if info.crs is None or t is None or t.b != 0 or t.d != 0:
        return None
    return info.crs.to_string(), round(t.a, 12), round(t.e, 12)


def _touching_pairs(infos: list[ImageInfo]) -> list[tuple[int, int, float]]:
    """Pairs of images on one pixel grid that touch or overlap (a corner counts), with the share of the smaller
    image that both cover."""
    pairs = []
    by_key: dict[tuple, list[int]] = {}
    for i, info in enumerate(infos):
        key = _grid_key(info)
        if key is not None:
            by_key.setdefault(key, []).append(i)
    for members in by_key.values():
        if len(members) < 2:
            continue
        first = infos[members[0]].transform
        cols = np.array([(infos[i].transform.c - first.c) / first.a for i in members])
        rows = np.array([(infos[i].transform.f - first.f) / first.e for i in members])
        on_grid = (np.abs(cols - np.round(cols)) <= GRID_TOLERANCE) & (np.abs(rows - np.round(rows)) <= GRID_TOLERANCE)
        idx = np.array(members)[on_grid]
        c0, r0 = np.round(cols[on_grid]), np.round(rows[on_grid])
        c1 = c0 + np.array([infos[i].width for i in idx])
        r1 = r0 + np.array([infos[i].height for i in idx])
        pairs += [(int(idx[a]), int(idx[b]), share) for a, b, share in touching_pairs(np.stack([c0, r0, c1, r1], 1))]
    return pairs


def _stacked(pairs: list[tuple[int, int, float]]) -> set[int]:
    return {k for i, j, share in pairs if share > SAME_GROUND_SHARE for k in (i, j)}


def stacked_images(infos: list[ImageInfo]) -> list[int]:
    """The images that cover the same ground as another one on their grid (:data:`SAME_GROUND_SHARE`)."""
    return sorted(_stacked(_touching_pairs(infos)))


def mosaic_groups(infos: list[ImageInfo]) -> list[list[int]]:
    """The images, grouped: each group one image or several that tile one pixel grid and touch or overlap a little
    (a corner counts), in the order of their first image; group members keep the given order. Images that cover
    the same ground as another (:func:`stacked_images`) stay alone."""
    from geocamat.unionfind import connected_components

    pairs = _touching_pairs(infos)
    stacked = _stacked(pairs)
    edges = [(i, j) for i, j, _ in pairs if i not in stacked and j not in stacked]
    roots = connected_components(len(infos), edges)
    groups: dict[int, list[int]] = {}
    for i in range(len(infos)):
        groups.setdefault(int(roots[i]), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def build_mosaic(infos: list[ImageInfo]) -> ImageMosaic:
    """The mosaic of images that :func:`mosaic_groups` put in one group."""
    from affine import Affine

    first = infos[0].transform
    cols = [int(round((i.transform.c - first.c) / first.a)) for i in infos]
    rows = [int(round((i.transform.f - first.f) / first.e)) for i in infos]
    c0, r0 = min(cols), min(rows)
    sheets = [Sheet(i.path, c - c0, r - r0, i.width, i.height) for i, c, r in zip(infos, cols, rows, strict=True)]
    width = max(s.col + s.width for s in sheets)
    height = max(s.row + s.height for s in sheets)
    transform = first @ Affine.translation(c0, r0)
    name = "mosaic:" + "|".join(i.path for i in infos)
    return ImageMosaic(sheets, ImageInfo(name, width, height, infos[0].crs, transform))


class NormalisedMosaic(NormalisedImage):
    """A mosaic read window by window for training tiles, normalised per band (nodata, holes and outside: 0), with
    :class:`geocamat.data.detection_images.NormalisedImage`'s interface (``read``, ``shape``, ``nbytes``,
    ``load``)."""

    def __init__(self, mosaic: ImageMosaic, mean: list[float], std: list[float], bands: int | None = None) -> None:
        self.mosaic, self.bands, self.path = mosaic, bands, mosaic.info.path
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        first, _ = mosaic.read((0, 0, 1, 1), bands)
        self.shape = (first.shape[0], mosaic.height, mosaic.width)
        self._src, self._pid = None, None

    def read(self, col: int, row: int, width: int, height: int) -> np.ndarray:
        data, valid = self.mosaic.read((col, row, width, height), self.bands)
        x = (data - self.mean) / self.std
        x[:, ~valid] = 0
        return x


"""Single-band files of one scene at different pixel sizes (Sentinel-2's 10/20/60 m bands, Landsat's pan band).

Band files on one grid are stacked as they are (:mod:`geocamat.data.stack`). Groups of band files on different
grids are bands of one scene when they share a CRS, differ in pixel size and cover mostly the same ground
(each pair's footprints overlap on at least :data:`MIN_SHARED` of the smaller one); such a scene is stacked on
the finest of its grids, the coarser bands resampled bilinearly by GDAL as windows are read (nothing is
written but a VRT, so memory stays bounded on any scene size). Groups that do not qualify (another CRS, the
same pixel size, other ground) stay separate scenes, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geocamat.data.crs import same_crs
from geocamat.unionfind import connected_components

#: the share of the smaller footprint two band grids must have in common to be bands of one scene
MIN_SHARED = 0.5


@dataclass(frozen=True)
class BandGrid:
    """A raster's grid: CRS (WKT), affine transform (rasterio's order: a, b, c, d, e, f) and size in pixels."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @classmethod
    def of(cls, src) -> BandGrid:
        """The grid of an open rasterio dataset."""
        return cls(src.crs.to_wkt() if src.crs else "", tuple(src.transform)[:6], src.width, src.height)

    @property
    def pixel_size(self) -> tuple[float, float]:
        return abs(self.transform[0]), abs(self.transform[4])

    @property
    def north_up(self) -> bool:
        return self.transform[1] == 0 and self.transform[3] == 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        a, _, c, _, e, f = self.transform
        xs, ys = (c, c + a * self.width), (f, f + e * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def shared(self, other: BandGrid) -> float:
        """The area both footprints cover, as a share of the smaller footprint."""
        l1, b1, r1, t1 = self.bounds
        l2, b2, r2, t2 = other.bounds
        common = max(0.0, min(r1, r2) - max(l1, l2)) * max(0.0, min(t1, t2) - max(b1, b2))
        smaller = min((r1 - l1) * (t1 - b1), (r2 - l2) * (t2 - b2))
        return common / smaller if smaller > 0 else 0.0

    def dst_rect(self, target: BandGrid) -> tuple[float, float, float, float]:
        """This grid's footprint in ``target``'s pixels: (x offset, y offset, x size, y size), fractional."""
        a, _, c, _, e, f = self.transform
        ta, _, tc, _, te, tf = target.transform
        return (c - tc) / ta, (f - tf) / te, self.width * a / ta, self.height * e / te


def one_scene(a: BandGrid, b: BandGrid) -> bool:
    """Whether band files on these two grids are bands of one scene at different pixel sizes."""
    if not (a.north_up and b.north_up) or a.pixel_size == b.pixel_size:
        return False
    return same_crs(a.crs, b.crs) and a.shared(b) >= MIN_SHARED


def scenes_of_grids(grids: Sequence[BandGrid]) -> list[list[int]]:
    """Indexes of ``grids`` grouped into scenes (see :func:`one_scene`), each in the input's order."""
    edges = [(i, j) for i in range(len(grids)) for j in range(i + 1, len(grids)) if one_scene(grids[i], grids[j])]
    roots = connected_components(len(grids), edges)
    scenes: dict[int, list[int]] = {}
    for i, root in enumerate(roots.tolist()):
        scenes.setdefault(root, []).append(i)
    return list(scenes.values())


def finest(grids: Sequence[BandGrid]) -> int:
    """Index of the grid with the smallest pixels (the first of equals)."""
    areas = [g.pixel_size[0] * g.pixel_size[1] for g in grids]
    return areas.index(min(areas))


def resampling_note(members: Sequence[tuple[Path, BandGrid]], target: BandGrid) -> str:
    """One line telling the user which bands were resampled onto which grid."""
    by_size: dict[tuple[float, float], list[str]] = {}
    for path, grid in members:
        by_size.setdefault(grid.pixel_size, []).append(path.stem)
    sizes = "; ".join(f"{x:g} x {y:g}: {', '.join(names)}" for (x, y), names in sorted(by_size.items()))
    tx, ty = target.pixel_size
    return (f"note: band files at {len(by_size)} pixel sizes ({sizes}) are stacked on the {tx:g} x {ty:g} grid, "
            "the coarser bands resampled bilinearly (resample them yourself first to choose otherwise)")

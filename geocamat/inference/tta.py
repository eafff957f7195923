"""Test-time augmentation of tiled maps: the 8 flips/quarter turns of every tile, or spread over the overlap.

A map blends overlapping tiles, so with tiles a quarter of their side apart (overlap >= 0.75) every pixel is
already covered by at least 4 x 4 tiles. ``spread`` sends each tile through *one* of the 8 dihedral views
(:mod:`geocamat.camat.geometry`), chosen from its position on the global tile grid so that the 4 x 4 tiles
over any pixel hold every view twice: the pixel still averages all 8 views, at the model cost of a map without
TTA (``all``, each tile through all 8, costs 8x). Measured on the NC sample: docs/inference.md.
"""

from __future__ import annotations

#: How test-time augmentation meets the tiles (``PredictOptions.tta_views``).
TTA_VIEWS = ("spread", "all")
#: The default of ``tta_views`` everywhere a map is made (predict, evaluate, training's validation map).
DEFAULT_TTA_VIEWS = "spread"
#: Tiles per pixel and axis that ``spread`` needs: 4 rotations along the rows, flipped or not along the columns.
SPREAD_TILES = 4


def can_spread(tile: int, stride: int) -> bool:
    """Whether every pixel away from the grid's edges is covered by :data:`SPREAD_TILES` tiles per axis."""
    return tile // stride >= SPREAD_TILES


def resolve(tta: bool, views: str, tile: int, stride: int) -> str:
    """The TTA a map runs: ``none``, ``all`` (8 views per tile) or ``spread`` (one view per tile).

    ``spread`` falls back to ``all`` where tiles are too far apart for it (overlap under 0.75: ``--window`` maps,
    window models at their default 0.5).
    """
    if views not in TTA_VIEWS:
        raise ValueError(f"unknown TTA views {views!r}: choose one of {', '.join(TTA_VIEWS)}")
    if not tta:
        return "none"
    return "spread" if views == "spread" and can_spread(tile, stride) else "all"


def tile_views(rows, cols):
    """The dihedral view of each tile from its row and column on the global tile grid (int64, 0..7).

    ``rows % 4`` quarter turns, flipped when the column is odd: any 4 consecutive rows x 4 consecutive
    columns of tiles hold each of the 8 views exactly twice.
    """
    import numpy as np

    return (np.asarray(rows, np.int64) % SPREAD_TILES) + 4 * (np.asarray(cols, np.int64) % 2)

"""The unit plan of a prediction run: the output grid cut into units (a band of rows of a column block).

Memory depends on the unit size, never on the scene size; a unit is also the grain of resume (a finished
unit is recorded in the manifest as soon as its results are on disk), so units hold bounded work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geocamat.inference.grid import OutputGrid, tile_positions

#: Rows of one unit at most (rounded up to a multiple of the tile stride); bounds the memory of a run and the
#: work lost by an interruption (a 4096^2 scene has 8 bands).
BAND_ROWS = 512
#: Columns of one column block (rounded up to a multiple of the tile stride).
BLOCK_COLS = 4096
#: Model evaluations (tiles x test-time transforms) of one unit at most: bands get fewer rows when their tiles
#: are many (small strides, TTA), so that a unit is a few seconds of work on a GPU (H100: ~22,000 tiles/s).
UNIT_EVALUATIONS = 65536
#: Writer threads at most (one per 4 cores). Each holds a finished unit's results and its temporaries
#: (~100 MB at the default unit size) and one more unit waits for a free writer, so this bounds the memory of
#: results in flight: with 8 writers a 4096^2 scene (4 units) never filled the pipeline and the 16384^2 one
#: peaked 1.4x higher (H200 machine, 16 cores).
MAX_WRITERS = 4
#: Row chunks read ahead of the device.
PREFETCH = 2


@dataclass(frozen=True)
class UnitSizes:
    """How a run is cut into units and how much is in flight (the defaults are the module constants).

    Args:
        band_rows: rows of a unit at most (a multiple of the stride, and of the largest overview factor where
            that keeps it under 2x).
        block_cols: columns of a column block.
        evaluations: model evaluations (tiles x TTA transforms) of a unit at most; bands get fewer rows
            (down to one row of tiles) to stay under it. ``None``: no limit.
        max_writers: writer threads at most.
        prefetch: row chunks read ahead of the device.
    """

    band_rows: int = BAND_ROWS
    block_cols: int = BLOCK_COLS
    evaluations: int | None = UNIT_EVALUATIONS
    max_writers: int = MAX_WRITERS
    prefetch: int = PREFETCH


def unit_size(target: int, tile: int, stride: int, factor: int) -> int:
    """Rows (or columns) of a unit: about ``target``, a multiple of ``stride``, and of ``factor`` (the largest
    overview factor) when that keeps it under 2x ``target``."""
    step = math.lcm(stride, factor)
    if step > 2 * max(target, tile):
        step = stride
    return step * max(1, math.ceil(max(target, tile) / step))


def tile_stride(tile: int, overlap: float) -> int:
    """Pixels between the origins of neighbouring tiles of ``tile`` px at ``overlap``."""
    return max(1, int(round(tile * (1 - overlap))))


def band_rows_for_work(sizes: UnitSizes, width: int, block_cols: int, stride: int, views: int) -> int:
    """Target rows of a band: ``sizes.band_rows``, fewer when a band's tiles would exceed ``sizes.evaluations``.

    Args:
        sizes: the unit sizes.
        width: width of the output grid (px).
        block_cols: columns of a column block.
        stride: tile stride (px).
        views: model evaluations per tile (8 with TTA over all views, else 1).
    """
    if sizes.evaluations is None:
        return sizes.band_rows
    tiles_per_row = math.ceil(min(width, block_cols) / stride) * views
    rows_of_tiles = max(1, sizes.evaluations // max(1, tiles_per_row))
    return min(sizes.band_rows, rows_of_tiles * stride)


@dataclass
class Plan:
    """Tile origins of a grid and its units: band ``i`` of column block ``j``."""

    grid: OutputGrid
    tile: int
    stride: int
    band_rows: int
    block_cols: int
    rows: np.ndarray  # tile origins (rows)
    cols: np.ndarray  # tile origins (columns)

    @classmethod
    def over(cls, grid: OutputGrid, tile: int, stride: int, band_rows: int, block_cols: int) -> Plan:
        """The plan of tiles ``tile`` px apart by ``stride`` over ``grid``."""
        return cls(grid, tile, stride, band_rows, block_cols, tile_positions(grid.height, tile, stride),
                   tile_positions(grid.width, tile, stride))

    @property
    def halo(self) -> int:
        """Rows below a band that its tiles still add to (finished by the next band)."""
        return self.tile - self.stride

    @property
    def n_bands(self) -> int:
        return math.ceil(self.grid.height / self.band_rows)

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.grid.width / self.block_cols)

    @property
    def n_units(self) -> int:
        return self.n_bands * self.n_blocks

    def block(self, j: int) -> tuple[int, int, np.ndarray]:
        """Columns [x0, x1) written by column block j and the tile columns it computes."""
        x0 = j * self.block_cols
        x1 = min(self.grid.width, x0 + self.block_cols)
        qs = self.cols[(self.cols < x1) & (self.cols + self.tile > x0)]
        return x0, x1, qs

    def band(self, i: int) -> tuple[int, int, np.ndarray]:
        """Rows [y0, y1) finished by band i and the tile rows it owns."""
        y0 = i * self.band_rows
        y1 = min(self.grid.height, y0 + self.band_rows)
        ps = self.rows[(self.rows >= y0) & (self.rows < y0 + self.band_rows)]
        return y0, y1, ps


def unit_name(j: int, i: int) -> str:
    """File stem and manifest key of band ``i`` of column block ``j``."""
    return f"u{j:04d}_{i:05d}"

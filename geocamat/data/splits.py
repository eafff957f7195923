"""Spatially disjoint train/validation blocks on the label grid."""

from __future__ import annotations

import numpy as np


def checkerboard(shape: tuple[int, int], blocks: int, val_parity: str = "odd") -> np.ndarray:
    """Split a grid into ``blocks`` x ``blocks`` blocks; validation = blocks whose row+column parity matches.

    Args:
        shape: (rows, cols) of the grid.
        blocks: blocks per side.
        val_parity: ``odd`` (validation where row block + column block is odd) or ``even``.

    Returns:
        (rows, cols) int8 array: 0 for training pixels, 1 for validation pixels.
    """
    rows, cols = shape
    rb = (np.arange(rows) * blocks) // rows
    cb = (np.arange(cols) * blocks) // cols
    parity = (rb[:, None] + cb[None, :]) % 2
    return (parity == (1 if val_parity == "odd" else 0)).astype(np.int8)


def block_windows(shape: tuple[int, int], blocks: int) -> list[tuple[int, int, int, int, int, int]]:
    """Pixel extents of every block: (row block, col block, row0, row1, col0, col1), end exclusive."""
    rows, cols = shape
    r_edges = [-(-i * rows // blocks) for i in range(blocks + 1)]
    c_edges = [-(-j * cols // blocks) for j in range(blocks + 1)]
    return [(i, j, r_edges[i], r_edges[i + 1], c_edges[j], c_edges[j + 1])
            for i in range(blocks) for j in range(blocks)]
